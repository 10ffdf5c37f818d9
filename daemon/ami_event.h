/* AMI security event -> struct sec_event. Pure: no I/O, no allocation, no logging. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "ami_frame.h"
#include "sec_event.h"

enum ami_event_result {
    AMI_EVENT_OK = 0,
    AMI_EVENT_NOT_SECURITY, /* a response, or an event of another class: ignore */
    AMI_EVENT_MALFORMED,    /* a security event we cannot use; see the reason */
    AMI_EVENT_UNKNOWN,      /* a security event whose name we do not know: count it */
};

enum ami_event_bad {
    AMI_BAD_NONE = 0,
    AMI_BAD_NO_REMOTE,      /* no RemoteAddress */
    AMI_BAD_REMOTE_ADDRESS, /* RemoteAddress does not parse */
    AMI_BAD_LOCAL_ADDRESS,  /* LocalAddress present but does not parse */
    AMI_BAD_VERSION,        /* EventVersion is not a small number */
    AMI_BAD_COUNT
};

/* Normalizes one frame. On AMI_EVENT_OK fills *ret_ev (received_ms is left 0: the caller stamps
 * it with its own clock) with source copied in (truncated to fit). On AMI_EVENT_MALFORMED sets
 * *ret_bad (if not NULL). ExpectedResponse is never read. */
enum ami_event_result ami_event_from_frame(const struct ami_frame *f, const char *source,
                                           struct sec_event *ret_ev, enum ami_event_bad *ret_bad);

/* Parses an address field: "IPV4|IPV6/[UDP|TCP|TLS|WS|WSS/]ADDR/PORT" (3 or 4 parts; IPv6
 * without brackets, maybe with "%scope"; IPv4-mapped IPv6 folded to IPv4). Returns 0 or
 * -EINVAL. */
int ami_event_parse_address(const char *s, size_t len, struct sec_endpoint *ret_ep);

/* Parses EventTV: "%FT%T.%q%z" ("2025-06-02T14:07:31.402+0200"; fraction optional, any number
 * of digits; offset +hhmm, +hh:mm or Z) or the old "<sec>-<usec>" form, into Unix ms (UTC).
 * Returns 0 or -EINVAL. */
int ami_event_parse_time(const char *s, size_t len, int64_t *ret_ms);

const char *ami_event_bad_name(enum ami_event_bad bad);
