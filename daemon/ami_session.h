/* One AMI session per [ami:NAME]: connects, logs in (plain or MD5), asks for the security class
 * (and the system class when it learns trust), keeps the connection alive with Ping, reconnects
 * with exponential backoff and jitter, and hands every normalized security event to a struct
 * sec_sink. With learn_trust it also asks Asterisk which addresses it talks to (ami_learn.h).
 * Everything runs on the event loop; nothing here ever blocks it (non-blocking sockets,
 * getaddrinfo_a for host names).
 *
 * Sessions decide about their connection, so they log its state changes: one line per change,
 * never one per attempt. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "ami_learn.h"
#include "config.h"
#include "loop.h"
#include "policy.h"
#include "sec_event.h"

struct ami_session;

struct ami_session_stats {
    uint64_t events;           /* security events handed to the sink */
    uint64_t frames_discarded; /* oversized or garbage frames thrown away by the parser */
    uint64_t frames_oversized; /* of those, frames over a bound (line, header count, size) */
    uint64_t unknown_events;   /* security events with a name we do not know */
    uint64_t malformed_events; /* security events we could not use (e.g. bad RemoteAddress) */
    uint64_t connects;         /* connection attempts */
    uint64_t logins;           /* successful logins */
    uint64_t reconnects;       /* sessions lost after a successful login */
    uint64_t auth_failures;    /* logins refused */
};

/* Starts connecting at once (in the next loop turn). cfg is copied. Returns NULL with errno set
 * (EINVAL: username or secret holds CR/LF, or no host; ENOMEM). */
struct ami_session *ami_session_new(struct loop *l, const struct cfg_ami *cfg,
                                    struct sec_sink sink);
/* Closes the connection (logging off is not worth a round trip). Accepts NULL. */
void ami_session_free(struct ami_session *s);

/* "ami:NAME", as put in sec_event.source. */
const char *ami_session_name(const struct ami_session *s);
/* "resolving", "connecting", "banner", "challenge", "login", "up", "backoff". */
const char *ami_session_state_name(const struct ami_session *s);
/* Logged in: security events are being delivered (the log source fills the times it is not). */
bool ami_session_is_up(const struct ami_session *s);
/* The AMI version from the banner ("9.0.0"); "" before the first banner. */
const char *ami_session_version(const struct ami_session *s);
/* The address of the Asterisk we are (or were last) connected to, so the core can whitelist
 * it; for a numeric host, that address from the start. Returns 0, or -ENOTCONN if a host name
 * has not been connected to yet. */
int ami_session_peer(const struct ami_session *s, struct addr *ret_addr);
/* Wall-clock Unix ms of the last security event; 0 if none yet. */
int64_t ami_session_last_event_ms(const struct ami_session *s);
void ami_session_get_stats(const struct ami_session *s, struct ami_session_stats *ret_stats);

/* After a login, if no security event arrives within this many ms (Asterisk reports our own
 * login as SuccessfulAuth), warn that the AMI user probably lacks "read = security".
 * Default 10 s; for tests. */
void ami_session_set_quiet_warning(struct ami_session *s, int64_t ms);

/* Learns trust from this Asterisk if its configuration says learn_trust (otherwise does
 * nothing): learned() gets each complete set, source being "ami:NAME". Call before the first
 * loop turn (the login asks for the system class only then). Returns 0 or -errno. */
int ami_session_learn_trust(struct ami_session *s,
                            void (*learned)(void *data, const char *source,
                                            const struct policy_wl_entry *entries, unsigned n),
                            void *data);
/* The learner's state; false if this session does not learn trust. */
bool ami_session_trust_status(const struct ami_session *s, struct ami_learn_status *ret_status);
