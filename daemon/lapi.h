/* CrowdSec Local API (LAPI) wire formats, pure: no I/O, no logging. What LAPI sends is
 * untrusted input (a LAPI is another machine, reached over the network, fed by community
 * lists): every field is checked for type, length and form, every number for range, and the
 * decision stream is read one decision at a time, so a reply of any size costs memory for one
 * decision beside its bytes.
 *
 * Formats as LAPI 1.4.6 speaks them (its swagger, pkg/models/localapi_swagger.yaml):
 *   POST /v1/watchers/login   {"machine_id","password","scenarios":[...]}
 *                             -> {"code":200,"expire":"2006-01-02T15:04:05Z","token":"..."}
 *   POST /v1/alerts           [Alert, ...] with decisions -> ["alert id", ...]
 *   GET  /v1/decisions/stream {"new":[Decision...]|null,"deleted":[Decision...]|null}
 * where a Decision is {"id":N,"origin","type","scope","value","duration":"59m59.8s",
 * "scenario",...} and durations are Go's time.Duration text. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define LAPI_ORIGIN_MAX 32
#define LAPI_TYPE_MAX 16
#define LAPI_SCOPE_MAX 16
#define LAPI_VALUE_MAX 64
#define LAPI_SCENARIO_MAX 128
#define LAPI_TOKEN_MAX 2048

/* Parses a Go duration ("59m59.8s", "1h", "-3s", "1h2m3.5s", "300ms", "0") into milliseconds,
 * truncated toward zero. Units: ns, us, µs, μs, ms, s, m, h; a sign may lead; "0" alone needs
 * no unit. -EINVAL for anything else (empty, a unit missing or unknown, a bare sign, spaces),
 * -ERANGE beyond +-100 years. */
int lapi_duration_parse(const char *s, size_t len, int64_t *ret_ms);
/* Writes ms as a Go duration in whole seconds ("3599s"), rounded up so a ban is never cut
 * short; 0 becomes "1s". Returns buf. */
const char *lapi_duration_format(int64_t ms, char *buf, size_t len);

/* Why a decision of the stream cannot be used; LAPI_OK for one that can. */
enum lapi_bad {
    LAPI_OK = 0,
    LAPI_BAD_SHAPE,    /* not an object, or a field of the wrong type or missing */
    LAPI_BAD_TEXT,     /* a text field too long or holding control characters */
    LAPI_BAD_TYPE,     /* type is not "ban" (captcha, throttle: nothing we can enforce) */
    LAPI_BAD_SCOPE,    /* scope is not Ip or Range (Country, AS, username, ...) */
    LAPI_BAD_VALUE,    /* value is not an address (Ip) or a prefix (Range) */
    LAPI_BAD_DURATION, /* not a Go duration, or out of range */
};
const char *lapi_bad_name(enum lapi_bad b);

struct lapi_decision {
    bool deleted; /* from the "deleted" list */
    int64_t id;   /* LAPI's decision id (> 0) */
    char origin[LAPI_ORIGIN_MAX];
    char type[LAPI_TYPE_MAX];
    char scope[LAPI_SCOPE_MAX];
    char value[LAPI_VALUE_MAX];
    char scenario[LAPI_SCENARIO_MAX]; /* free text from whoever made it: escape before display */
    int64_t duration_ms;              /* remaining time as LAPI sent it (may be <= 0) */
    struct addr_prefix prefix;        /* value parsed (Ip: full length; host bits refused) */
    enum lapi_bad bad;                /* LAPI_OK, or why the fields above are not all valid */
};

/* Called once per decision, in document order ("new" and "deleted" in whichever order they
 * come). A negative return stops the walk and is returned. */
typedef int (*lapi_decision_fn)(void *data, const struct lapi_decision *d);

/* Walks a decision stream reply of len bytes. Returns 0, -EBADMSG if the document itself is
 * not a stream reply (not JSON, not an object, "new"/"deleted" neither a list nor null, an
 * element that is not JSON: the walk stops there, what came before was delivered), or fn's
 * negative return. A well-formed element with bad fields is delivered with bad set. */
int lapi_stream_parse(const char *buf, size_t len, lapi_decision_fn fn, void *data);

/* The same walk in steps, so that a large reply is read a loop turn at a time: begin, then
 * lapi_stream_next() until it returns anything but 1. The buffer must stay as it is until
 * then. */
struct lapi_stream {
    const char *buf;
    size_t len, pos;
    int state;
    bool deleted;   /* the list being walked is "deleted" */
    bool reference; /* every element read by jansson, none in place (tests compare the two) */
};
void lapi_stream_begin(struct lapi_stream *st, const char *buf, size_t len);
/* Delivers up to max decisions. Returns 1 if more remain, 0 at the document's end, -EBADMSG,
 * or fn's negative return (as lapi_stream_parse()). */
int lapi_stream_next(struct lapi_stream *st, unsigned max, lapi_decision_fn fn, void *data);

/* A login reply: the token (copied, at most LAPI_TOKEN_MAX - 1 bytes of printable ASCII) and
 * its expiry as Unix ms (0 if "expire" is missing or not RFC 3339). -EBADMSG otherwise. */
int lapi_login_parse(const char *buf, size_t len, char *ret_token, size_t token_size,
                     int64_t *ret_expire_ms);
/* The login request's body (malloc'd, NUL-terminated), NULL on ENOMEM. */
char *lapi_login_body(const char *machine_id, const char *password, const char *scenario);

/* One ban published as an alert with its decision. */
struct lapi_alert {
    struct addr_prefix prefix;
    int64_t start_ms;     /* when the ban was decided (wall clock) */
    int64_t now_ms;       /* when it is sent: stop_at; LAPI counts the duration from there */
    int64_t remaining_ms; /* 0 = permanent (sent as 100 years) */
    const char *scenario; /* "pbxguard/asterisk-bf" */
    const char *reason;   /* "threshold", "manual" */
    unsigned events;      /* events that led to it (failures; 1 for a manual ban) */
    const char *message;  /* human text; may be NULL */
};
/* Appends one alert to a JSON array being built (json_t *, from lapi_alerts_new()). */
struct lapi_alerts;
struct lapi_alerts *lapi_alerts_new(void);
int lapi_alerts_add(struct lapi_alerts *a, const struct lapi_alert *alert);
unsigned lapi_alerts_count(const struct lapi_alerts *a);
/* The body of POST /v1/alerts (malloc'd), NULL on ENOMEM. */
char *lapi_alerts_dump(const struct lapi_alerts *a, size_t *ret_len);
void lapi_alerts_free(struct lapi_alerts *a);
/* The number of ids in an alerts reply (a JSON array of strings), or -EBADMSG. */
int lapi_alerts_reply(const char *buf, size_t len);

/* The "message" of an error reply ({"message":"..."}), cut to fit and made printable; "" if
 * none. Returns buf. */
const char *lapi_error_message(const char *buf, size_t len, char *out, size_t out_len);

/* Formats Unix ms as RFC 3339 UTC ("2026-11-26T10:20:31Z"). Returns buf. */
const char *lapi_time_format(int64_t ms, char *buf, size_t len);
/* Parses RFC 3339 ("2026-11-26T10:20:31Z", "...31.123+01:00") into Unix ms; -EINVAL if not. */
int lapi_time_parse(const char *s, int64_t *ret_ms);
