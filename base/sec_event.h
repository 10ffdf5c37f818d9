/* The normalized security event: what every source produces and all the core knows about.
 * Nothing downstream of a source sees AMI framing or address strings. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

/* Asterisk's own order (include/asterisk/security_events_defs.h). */
enum sec_event_type {
    SEC_FAILED_ACL = 0,
    SEC_INVALID_ACCOUNT_ID,
    SEC_SESSION_LIMIT,
    SEC_MEMORY_LIMIT,
    SEC_LOAD_AVERAGE_LIMIT,
    SEC_REQUEST_NOT_SUPPORTED,
    SEC_REQUEST_NOT_ALLOWED,
    SEC_AUTH_METHOD_NOT_ALLOWED,
    SEC_REQUEST_BAD_FORMAT,
    SEC_SUCCESSFUL_AUTH,
    SEC_UNEXPECTED_ADDRESS,
    SEC_CHALLENGE_RESPONSE_FAILED,
    SEC_INVALID_PASSWORD,
    SEC_CHALLENGE_SENT,
    SEC_INVALID_TRANSPORT,
    SEC_EVENT_TYPE_COUNT
};

/* Asterisk's enum ast_transport, as named in address fields. NONE: the segment was absent. */
enum sec_transport {
    SEC_TRANSPORT_NONE = 0,
    SEC_TRANSPORT_UDP,
    SEC_TRANSPORT_TCP,
    SEC_TRANSPORT_TLS,
    SEC_TRANSPORT_WS,
    SEC_TRANSPORT_WSS,
};

/* Bounds on attacker-controlled text. Longer values are truncated (and flagged), never rejected. */
#define SEC_SERVICE_MAX 16 /* "AMI", "PJSIP", "SIP" */
#define SEC_ACCOUNT_MAX 128
#define SEC_SESSION_MAX 128
#define SEC_SOURCE_MAX 48 /* "ami:NAME" */
#define SEC_SCOPE_MAX 16  /* IF_NAMESIZE */

struct sec_endpoint {
    struct addr addr;
    uint16_t port;
    enum sec_transport transport;
    char scope[SEC_SCOPE_MAX]; /* link-local scope id ("eth0"), usually empty */
};

struct sec_event {
    enum sec_event_type type;
    char service[SEC_SERVICE_MAX];
    int version; /* EventVersion */
    struct sec_endpoint remote;
    struct sec_endpoint local;
    bool has_local;
    char account[SEC_ACCOUNT_MAX]; /* may be empty; data, never a format string */
    bool account_truncated;
    char session[SEC_SESSION_MAX];
    int64_t event_tv_ms;         /* EventTV as Unix ms (UTC); 0 if absent or unparsable */
    int64_t received_ms;         /* the daemon's wall clock at receipt */
    char source[SEC_SOURCE_MAX]; /* which source produced it, e.g. "ami:pbx1" */
    /* Set by a source that read the event after the fact (the security log filling a gap in
     * the AMI stream): the window counts it at occurred_ms, its own time (EventTV, else the log
     * line's), instead of at receipt. */
    bool backfilled;
    int64_t occurred_ms;
    /* Set by a source that can name the event's place for good (the security log: its file and
     * the line's offset), > 0; 0 if none. Recording the same place twice keeps one row: a line
     * read again after a restart counts once. */
    int64_t place;
};

/* How a source hands events to the core: the one narrow interface between them. */
struct sec_sink {
    void (*submit)(void *data, const struct sec_event *ev);
    void *data;
};

/* "InvalidAccountID" etc.; NULL for an out-of-range value. */
const char *sec_event_type_name(enum sec_event_type type);
/* Exact, case-sensitive match of len bytes; -1 if unknown. */
int sec_event_type_from_name(const char *name, size_t len);
const char *sec_transport_name(enum sec_transport t); /* "UDP"...; "" for NONE */
