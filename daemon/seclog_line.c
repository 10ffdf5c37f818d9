/* The security log line parser. See seclog_line.h for what it proves and why. */
#include <string.h>

#include "ami_event.h"
#include "seclog_line.h"

/* --- the writer's grammar (main/security_events.c sec_events[], res/res_security_log.c) --- */

enum key {
    K_NONE = 0, /* ends a layout */
    K_EVENT_TV,
    K_SEVERITY,
    K_SERVICE,
    K_EVENT_VERSION,
    K_ACCOUNT_ID,
    K_SESSION_ID,
    K_LOCAL_ADDRESS,
    K_REMOTE_ADDRESS,
    K_MODULE,
    K_ACL_NAME,
    K_SESSION_TV,
    K_REQUEST_TYPE,
    K_REQUEST_PARAMS,
    K_AUTH_METHOD,
    K_USING_PASSWORD,
    K_EXPECTED_ADDRESS,
    K_CHALLENGE,
    K_RESPONSE,
    K_EXPECTED_RESPONSE,
    K_RECEIVED_CHALLENGE,
    K_RECEIVED_HASH,
    K_ATTEMPTED_TRANSPORT,
    K_COUNT
};

/* A value Asterisk formats itself (a time, an address, a constant, a number) never holds a
 * double quote: it ends at the next one. Any other value may come, in part or whole, from a
 * client or an admin, and may hold anything. The list errs on the side of "client": treating a
 * fixed value as free only adds readings to compare, while the reverse could drop Asterisk's own
 * reading and leave only a client's. */
static const struct {
    const char *name;
    unsigned char len;
    bool fixed;
} keys[K_COUNT] = {
    [K_EVENT_TV] = {"EventTV", 7, true},
    [K_SEVERITY] = {"Severity", 8, true},
    [K_SERVICE] = {"Service", 7, true},
    [K_EVENT_VERSION] = {"EventVersion", 12, true},
    [K_ACCOUNT_ID] = {"AccountID", 9, false},
    [K_SESSION_ID] = {"SessionID", 9, false},
    [K_LOCAL_ADDRESS] = {"LocalAddress", 12, true},
    [K_REMOTE_ADDRESS] = {"RemoteAddress", 13, true},
    [K_MODULE] = {"Module", 6, false},
    [K_ACL_NAME] = {"ACLName", 7, false},
    [K_SESSION_TV] = {"SessionTV", 9, true},
    [K_REQUEST_TYPE] = {"RequestType", 11, false},
    [K_REQUEST_PARAMS] = {"RequestParams", 13, false},
    [K_AUTH_METHOD] = {"AuthMethod", 10, false},
    [K_USING_PASSWORD] = {"UsingPassword", 13, true},
    [K_EXPECTED_ADDRESS] = {"ExpectedAddress", 15, true},
    [K_CHALLENGE] = {"Challenge", 9, false},
    [K_RESPONSE] = {"Response", 8, false},
    [K_EXPECTED_RESPONSE] = {"ExpectedResponse", 16, false},
    [K_RECEIVED_CHALLENGE] = {"ReceivedChallenge", 17, false},
    [K_RECEIVED_HASH] = {"ReceivedHash", 12, false},
    [K_ATTEMPTED_TRANSPORT] = {"AttemptedTransport", 18, false},
};

#define FIELDS_MAX 16
#define OPT 0x80 /* marks an optional field in a layout */

/* Each event's fields in the order they are written: the required ones, then the optional
 * ones, each written only when the event carries it. */
#define COMMON K_EVENT_TV, K_SEVERITY, K_SERVICE, K_EVENT_VERSION, K_ACCOUNT_ID, K_SESSION_ID,
#define ADDRS K_LOCAL_ADDRESS, K_REMOTE_ADDRESS
#define TAIL OPT | K_MODULE, OPT | K_SESSION_TV
static const unsigned char layouts[SEC_EVENT_TYPE_COUNT][FIELDS_MAX] = {
    [SEC_FAILED_ACL] = {COMMON ADDRS, OPT | K_MODULE, OPT | K_ACL_NAME, OPT | K_SESSION_TV},
    [SEC_INVALID_ACCOUNT_ID] = {COMMON ADDRS, TAIL},
    [SEC_SESSION_LIMIT] = {COMMON ADDRS, TAIL},
    [SEC_MEMORY_LIMIT] = {COMMON ADDRS, TAIL},
    [SEC_LOAD_AVERAGE_LIMIT] = {COMMON ADDRS, TAIL},
    [SEC_REQUEST_NOT_SUPPORTED] = {COMMON ADDRS, K_REQUEST_TYPE, TAIL},
    [SEC_REQUEST_NOT_ALLOWED] = {COMMON ADDRS, K_REQUEST_TYPE, TAIL, OPT | K_REQUEST_PARAMS},
    [SEC_AUTH_METHOD_NOT_ALLOWED] = {COMMON ADDRS, K_AUTH_METHOD, TAIL},
    [SEC_REQUEST_BAD_FORMAT] = {K_EVENT_TV, K_SEVERITY, K_SERVICE, K_EVENT_VERSION, K_SESSION_ID,
                                ADDRS, K_REQUEST_TYPE, TAIL, OPT | K_ACCOUNT_ID,
                                OPT | K_REQUEST_PARAMS},
    [SEC_SUCCESSFUL_AUTH] = {COMMON ADDRS, K_USING_PASSWORD, TAIL},
    [SEC_UNEXPECTED_ADDRESS] = {COMMON ADDRS, K_EXPECTED_ADDRESS, TAIL},
    [SEC_CHALLENGE_RESPONSE_FAILED] = {COMMON ADDRS, K_CHALLENGE, K_RESPONSE, K_EXPECTED_RESPONSE,
                                       TAIL},
    [SEC_INVALID_PASSWORD] = {COMMON ADDRS, TAIL, OPT | K_CHALLENGE, OPT | K_RECEIVED_CHALLENGE,
                              OPT | K_RECEIVED_HASH},
    [SEC_CHALLENGE_SENT] = {COMMON ADDRS, K_CHALLENGE, TAIL},
    [SEC_INVALID_TRANSPORT] = {COMMON ADDRS, K_ATTEMPTED_TRANSPORT, TAIL},
};
#undef COMMON
#undef ADDRS
#undef TAIL

/* A layout prepared for the walk: field i's key, whether it is fixed, and how many required
 * fields come before it (two fields can be neighbours in a reading when no required field lies
 * between them). Built once. */
struct layout {
    unsigned n;
    unsigned char key[FIELDS_MAX];
    bool fixed[FIELDS_MAX];
    unsigned char req_before[FIELDS_MAX + 1];
    signed char pos_of[K_COUNT]; /* the key's field index, -1 if the event has no such field */
};

static struct layout prepared[SEC_EVENT_TYPE_COUNT];
static bool prepared_done;

static void prepare(void)
{
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++) {
        struct layout *l = &prepared[t];
        memset(l->pos_of, -1, sizeof(l->pos_of));
        unsigned req = 0;
        for (unsigned i = 0; i < FIELDS_MAX && layouts[t][i]; i++) {
            unsigned k = layouts[t][i] & ~OPT;
            l->key[i] = (unsigned char)k;
            l->fixed[i] = keys[k].fixed;
            l->req_before[i] = (unsigned char)req;
            l->pos_of[k] = (signed char)i;
            if (!(layouts[t][i] & OPT))
                req++;
            l->n = i + 1;
        }
        l->req_before[l->n] = (unsigned char)req;
    }
    prepared_done = true;
}

/* No required field strictly between fields a and b (a < b; a = -1: before the first). */
static inline bool adjacent(const struct layout *l, int a, int b)
{
    return l->req_before[b] == l->req_before[a + 1];
}

/* The key a boundary `",Key="` names, or -1. */
static int key_at(const char *s, size_t avail, size_t *ret_len)
{
    size_t n = 0;
    while (n < avail && ((s[n] | 0x20) >= 'a' && (s[n] | 0x20) <= 'z'))
        n++;
    if (n < 6 || n > 18 || n + 2 > avail || s[n] != '=' || s[n + 1] != '"')
        return -1;
    switch (n) {
    case 6:
    case 7:
    case 8:
    case 9:
    case 10:
    case 11:
    case 12:
    case 13:
    case 15:
    case 16:
    case 17:
    case 18:
        for (int k = 0; k < K_COUNT; k++)
            if (keys[k].len == n && memcmp(keys[k].name, s, n) == 0) {
                *ret_len = n;
                return k;
            }
        break;
    }
    return -1;
}

/* --- small helpers --- */

static bool copy_bounded(char *dst, size_t cap, const char *src, size_t len)
{
    bool cut = len > cap - 1;
    if (cut)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return cut;
}

static int parse_uint(const char *s, size_t len, unsigned max, unsigned *ret)
{
    unsigned v = 0;
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > max)
            return -1;
    }
    *ret = v;
    return 0;
}

void seclog_line_wipe(char *buf, size_t len)
{
    static const char tag[] = "ExpectedResponse=\"";
    const size_t tl = sizeof(tag) - 1;
    char *p = buf, *e = buf + len;
    while ((size_t)(e - p) >= tl && (p = memmem(p, (size_t)(e - p), tag, tl))) {
        p += tl;
        char *q = memchr(p, '"', (size_t)(e - p));
        if (!q)
            q = e;
        memset(p, '*', (size_t)(q - p));
        p = q;
    }
}

/* --- the prefix: "[DATE] SECURITY[LWP][C-xxxxxxxx] res_security_log.c: " --- */

static int digits_n(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int month_of(const char *s)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int m = 0; m < 12; m++)
        if (memcmp(names + 3 * m, s, 3) == 0)
            return m + 1;
    return 0;
}

/* "HH:MM:SS[.fff]" at s; returns the bytes used or 0. */
static size_t parse_hms(const char *s, size_t n, struct seclog_line_date *d)
{
    if (n < 8 || s[2] != ':' || s[5] != ':')
        return 0;
    d->hour = digits_n(s, 2);
    d->min = digits_n(s + 3, 2);
    d->sec = digits_n(s + 6, 2);
    if (d->hour < 0 || d->hour > 23 || d->min < 0 || d->min > 59 || d->sec < 0 || d->sec > 60)
        return 0;
    size_t i = 8;
    d->ms = 0;
    if (i < n && s[i] == '.') {
        int scale = 100;
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            d->ms += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
    }
    return i;
}

/* The logger's date, in the two layouts worth reading: "%F %T[.%3q]" and Asterisk's default
 * "%b %e %T". Anything else leaves the date invalid (EventTV is what counts anyway). */
static void parse_date(const char *s, size_t n, struct seclog_line_date *d)
{
    memset(d, 0, sizeof(*d));
    if (n >= 19 && s[4] == '-' && s[7] == '-' && s[10] == ' ') {
        d->year = digits_n(s, 4);
        d->mon = digits_n(s + 5, 2);
        d->day = digits_n(s + 8, 2);
        if (d->year < 1970 || d->mon < 1 || d->mon > 12 || d->day < 1 || d->day > 31)
            return;
        if (parse_hms(s + 11, n - 11, d) != n - 11)
            return;
        d->has_year = true;
        d->valid = true;
    } else if (n >= 15 && s[3] == ' ') {
        d->mon = month_of(s);
        size_t i = 4;
        if (s[i] == ' ')
            i++;
        size_t j = i;
        while (j < n && j < i + 2 && s[j] >= '0' && s[j] <= '9')
            j++;
        d->day = digits_n(s + i, j - i);
        if (!d->mon || j == i || d->day < 1 || d->day > 31 || j >= n || s[j] != ' ')
            return;
        if (parse_hms(s + j + 1, n - j - 1, d) != n - j - 1)
            return;
        d->valid = true;
    }
}

/* Finds the body (`SecurityEvent="...`) of a security line; returns its offset, or -1 for a
 * line of another kind. Cheap on the lines it rejects. */
static long find_body(const char *s, size_t n, struct seclog_line_date *date)
{
    static const char level[] = "] SECURITY[";
    static const char file[] = "res_security_log.c:";
    static const char body[] = "SecurityEvent=\"";
    if (n < 48 || s[0] != '[')
        return -1;
    /* The date is the admin's dateformat: up to the level tag, within a sane length. */
    size_t lim = n < 96 ? n : 96;
    const char *lv = s;
    for (;;) {
        lv = memchr(lv + 1, ']', lim - (size_t)(lv + 1 - s));
        if (!lv || (size_t)(lv - s) + sizeof(level) - 1 > n)
            return -1;
        if (memcmp(lv, level, sizeof(level) - 1) == 0)
            break;
    }
    size_t i = (size_t)(lv - s) + sizeof(level) - 1;
    size_t d0 = i;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i - d0 < 10)
        i++;
    if (i == d0 || i >= n || s[i] != ']')
        return -1;
    i++;
    /* "[C-%08x]": the call id, when the event happened on a call's thread. */
    if (i + 12 <= n && s[i] == '[' && s[i + 1] == 'C' && s[i + 2] == '-' && s[i + 11] == ']')
        i += 12;
    /* Default formatter: " res_security_log.c: "; [plain]: ": res_security_log.c:LINE FUNC: ". */
    if (i < n && s[i] == ':')
        i++;
    if (i >= n || s[i] != ' ')
        return -1;
    i++;
    if (n - i < sizeof(file) - 1 || memcmp(s + i, file, sizeof(file) - 1) != 0)
        return -1;
    i += sizeof(file) - 1;
    if (i < n && s[i] >= '0' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i >= n || s[i] != ' ')
            return -1;
        i++;
        while (i < n && (s[i] == '_' || ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z')))
            i++;
        if (i >= n || s[i] != ':')
            return -1;
        i++;
    }
    if (i >= n || s[i] != ' ')
        return -1;
    i++;
    if (n - i < sizeof(body) - 1 || memcmp(s + i, body, sizeof(body) - 1) != 0)
        return -1;
    parse_date(s + 1, (size_t)(lv - s) - 1, date);
    return (long)i;
}

/* --- the readings --- */

struct bound {
    unsigned q;      /* the quote closing the previous value (offset in the body) */
    unsigned v;      /* the first byte of this field's value */
    unsigned nq;     /* the first quote at or after v (a fixed value ends there); len if none */
    signed char pos; /* the field's index in the layout */
};

struct walk {
    const char *b;
    unsigned len;
    const struct layout *l;
    struct bound bd[SECLOG_BOUNDS_MAX];
    unsigned n;
    bool fwd[SECLOG_BOUNDS_MAX];
    /* Fields in the longest reading from this boundary to the end of the line; 0 if none. */
    unsigned char best[SECLOG_BOUNDS_MAX];
};

/* May field i be followed by field j in a reading? */
static inline bool edge(const struct walk *w, unsigned i, unsigned j)
{
    const struct bound *a = &w->bd[i], *c = &w->bd[j];
    if (c->pos <= a->pos || c->q < a->v || !adjacent(w->l, a->pos, c->pos))
        return false;
    return !w->l->fixed[a->pos] || c->q == a->nq;
}

/* May field i be the last one, its value running to the line's closing quote? */
static inline bool last(const struct walk *w, unsigned i)
{
    const struct bound *a = &w->bd[i];
    const struct layout *l = w->l;
    if (w->len == 0 || w->b[w->len - 1] != '"' || w->len - 1 < a->v)
        return false;
    if (l->req_before[l->n] != l->req_before[a->pos + 1])
        return false;
    return !l->fixed[a->pos] || a->nq == w->len - 1;
}

enum seclog_line_result seclog_line_parse(char *line, size_t len, const char *source,
                                          struct sec_event *ret_ev,
                                          struct seclog_line_info *ret_info)
{
    struct seclog_line_info info;
    memset(&info, 0, sizeof(info));
    *ret_info = info;
    if (!prepared_done)
        prepare();

    long bo = find_body(line, len, &info.date);
    if (bo < 0)
        return SECLOG_LINE_OTHER;
    *ret_info = info;
    enum seclog_bad early = SECLOG_BAD_NONE;
    if (len > SECLOG_RECORD_MAX)
        early = SECLOG_BAD_TOO_LONG;
    else if (memchr(line, '\0', len))
        early = SECLOG_BAD_NUL;
    else if (len > SECLOG_MERGE_MIN &&
             memmem(line + SECLOG_MERGE_MIN, len - SECLOG_MERGE_MIN, "SecurityEvent=\"", 15))
        early = SECLOG_BAD_TWO_RECORDS;
    char *body = line + bo + sizeof("SecurityEvent=") - 1;
    const char *b = body;
    unsigned blen = (unsigned)(len - (size_t)bo - (sizeof("SecurityEvent=") - 1));
    /* b starts at the opening quote of the event's name; the name ends at the next quote. */
    const char *nq = early ? NULL : memchr(b + 1, '"', blen - 1);
    int type = -1;
    if (!early && !nq)
        early = SECLOG_BAD_STRUCTURE;
    else if (!early && (type = sec_event_type_from_name(b + 1, (size_t)(nq - b - 1))) < 0)
        early = SECLOG_BAD_UNKNOWN_EVENT;
    if (early) {
        seclog_line_wipe(body, blen);
        ret_info->bad = early;
        return SECLOG_LINE_MALFORMED;
    }

    struct walk w;
    w.b = b;
    w.len = blen;
    w.l = &prepared[type];
    w.n = 0;
    /* Every `",Key="` naming a field of this event is where a value may end. A fixed value
     * ends at the first quote at or after its start: found by the same pass (pending). */
    unsigned first_q = (unsigned)(nq - b);
    int pending = -1;
    for (unsigned q = first_q; q < blen;) {
        if (pending >= 0 && q >= w.bd[pending].v) {
            w.bd[pending].nq = q;
            pending = -1;
        }
        if (q + 1 < blen && b[q + 1] == ',') {
            size_t kl;
            int k = key_at(b + q + 2, blen - q - 2, &kl);
            unsigned v = q + 2 + (unsigned)kl + 2;
            if (k == K_EXPECTED_RESPONSE) {
                /* Someone else's correct MD5 key, on AMI digest failures: gone at once. */
                char *e = memchr(body + v, '"', blen - v);
                memset(body + v, '*', (e ? (unsigned)(e - body) : blen) - v);
            }
            if (k >= 0 && w.l->pos_of[k] >= 0) {
                if (w.n == SECLOG_BOUNDS_MAX) {
                    seclog_line_wipe(body, blen);
                    ret_info->bad = SECLOG_BAD_TOO_MANY;
                    return SECLOG_LINE_MALFORMED;
                }
                struct bound *bd = &w.bd[w.n];
                bd->q = q;
                bd->v = v;
                bd->nq = blen;
                bd->pos = w.l->pos_of[k];
                pending = (int)w.n++;
            }
        }
        const char *next = q + 1 < blen ? memchr(b + q + 1, '"', blen - q - 1) : NULL;
        q = next ? (unsigned)(next - b) : blen;
    }

    /* Readings are paths from the first field (right after the name) to one that may end the
     * line. Mark the boundaries reachable from the start, then those that reach an end. */
    for (unsigned i = 0; i < w.n; i++) {
        bool f = w.bd[i].q == first_q && adjacent(w.l, -1, w.bd[i].pos);
        for (unsigned j = 0; !f && j < i; j++)
            f = w.fwd[j] && edge(&w, j, i);
        w.fwd[i] = f;
    }
    for (unsigned i = w.n; i-- > 0;) {
        unsigned char best = last(&w, i) ? 1 : 0;
        for (unsigned j = i + 1; j < w.n; j++)
            if (w.best[j] && w.best[j] + 1 > best && edge(&w, i, j))
                best = (unsigned char)(w.best[j] + 1);
        w.best[i] = best;
    }

    /* The RemoteAddress of every reading: all the same text, or the line proves nothing. */
    const struct bound *ra = NULL;
    bool any = false;
    for (unsigned i = 0; i < w.n; i++) {
        if (!w.fwd[i] || !w.best[i])
            continue;
        any = true;
        if (w.l->key[w.bd[i].pos] != K_REMOTE_ADDRESS)
            continue;
        const struct bound *c = &w.bd[i];
        if (ra && (ra->nq - ra->v != c->nq - c->v || memcmp(b + ra->v, b + c->v, c->nq - c->v))) {
            ret_info->bad = SECLOG_BAD_AMBIGUOUS;
            return SECLOG_LINE_MALFORMED;
        }
        if (!ra)
            ra = c;
    }
    if (!any || !ra) {
        ret_info->bad = SECLOG_BAD_STRUCTURE;
        return SECLOG_LINE_MALFORMED;
    }

    /* One reading for the other fields: the one with the most fields, and of those, the one
     * whose values run longest. A line without planted fields has one reading that uses every
     * boundary. When a client planted fields inside a value, Asterisk's own fields are the last
     * ones, so this is the reading Asterisk wrote; where it is not, only the account and
     * session text differ (the address is the same in every reading). */
    struct sec_event *ev = ret_ev;
    memset(ev, 0, sizeof(*ev));
    ev->type = (enum sec_event_type)type;
    unsigned used = 0;
    int cur = -1;
    for (unsigned i = 0; i < w.n; i++)
        if (w.bd[i].q == first_q && w.fwd[i] && w.best[i])
            cur = (int)i;
    enum seclog_bad bad = SECLOG_BAD_NONE;
    while (cur >= 0 && bad == SECLOG_BAD_NONE) {
        const struct bound *c = &w.bd[cur];
        int nxt = -1;
        if (w.best[cur] > 1) {
            for (unsigned j = w.n; j-- > (unsigned)cur + 1;)
                if (w.best[j] + 1 == w.best[cur] && edge(&w, (unsigned)cur, j)) {
                    nxt = (int)j;
                    break;
                }
        }
        unsigned end = nxt >= 0 ? w.bd[nxt].q : blen - 1;
        const char *v = b + c->v;
        size_t vl = end - c->v;
        used++;
        switch (w.l->key[c->pos]) {
        case K_EVENT_TV:
            if (ami_event_parse_time(v, vl, &ev->event_tv_ms) < 0)
                ev->event_tv_ms = 0;
            break;
        case K_SERVICE:
            copy_bounded(ev->service, sizeof(ev->service), v, vl);
            break;
        case K_EVENT_VERSION: {
            unsigned ver;
            if (parse_uint(v, vl, 1000, &ver) < 0)
                bad = SECLOG_BAD_VERSION;
            else
                ev->version = (int)ver;
            break;
        }
        case K_ACCOUNT_ID:
            ev->account_truncated = copy_bounded(ev->account, sizeof(ev->account), v, vl);
            break;
        case K_SESSION_ID:
            copy_bounded(ev->session, sizeof(ev->session), v, vl);
            break;
        case K_LOCAL_ADDRESS:
            if (ami_event_parse_address(v, vl, &ev->local) < 0)
                bad = SECLOG_BAD_LOCAL;
            else
                ev->has_local = true;
            break;
        default:
            break;
        }
        cur = nxt;
    }
    if (bad == SECLOG_BAD_NONE &&
        ami_event_parse_address(b + ra->v, ra->nq - ra->v, &ev->remote) < 0)
        bad = SECLOG_BAD_REMOTE;
    if (bad != SECLOG_BAD_NONE) {
        ret_info->bad = bad;
        return SECLOG_LINE_MALFORMED;
    }
    ret_info->injected = used != w.n;
    if (source)
        copy_bounded(ev->source, sizeof(ev->source), source, strlen(source));
    return SECLOG_LINE_EVENT;
}

const char *seclog_bad_name(enum seclog_bad bad)
{
    switch (bad) {
    case SECLOG_BAD_NONE:
        return "none";
    case SECLOG_BAD_UNKNOWN_EVENT:
        return "unknown event";
    case SECLOG_BAD_STRUCTURE:
        return "no reading fits the event's fields";
    case SECLOG_BAD_AMBIGUOUS:
        return "readings name different addresses";
    case SECLOG_BAD_TOO_MANY:
        return "too many fields";
    case SECLOG_BAD_REMOTE:
        return "unparsable RemoteAddress";
    case SECLOG_BAD_LOCAL:
        return "unparsable LocalAddress";
    case SECLOG_BAD_VERSION:
        return "unparsable EventVersion";
    case SECLOG_BAD_TOO_LONG:
        return "longer than one record";
    case SECLOG_BAD_TWO_RECORDS:
        return "two records in one line";
    case SECLOG_BAD_NUL:
        return "NUL byte";
    case SECLOG_BAD_COUNT:
        break;
    }
    return "?";
}

/* --- the reader --- */

void seclog_reader_init(struct seclog_reader *r, uint64_t off, const void *tail, size_t tail_len)
{
    memset(r->buf, 0, sizeof(r->buf));
    if (!tail || tail_len > SECLOG_TAIL_MAX)
        tail_len = 0;
    if (tail_len)
        memcpy(r->buf, tail, tail_len);
    r->off = off;
    r->skip_from = 0;
    r->tail_from = 0;
    r->start = r->scan = r->end = tail_len;
    r->skipping = false;
    r->lines = r->skipped = 0;
}

char *seclog_reader_space(struct seclog_reader *r, size_t *ret_len)
{
    if (r->start > SECLOG_TAIL_MAX && sizeof(r->buf) - r->end < SECLOG_READER_BUF / 4) {
        /* Keep the tail before the position and the unfinished line; zero the rest. */
        size_t keep =
            r->start - r->tail_from < SECLOG_TAIL_MAX ? r->start - r->tail_from : SECLOG_TAIL_MAX;
        size_t from = r->start - keep, held = r->end - from;
        memmove(r->buf, r->buf + from, held);
        memset(r->buf + held, 0, r->end - held);
        r->scan -= from;
        r->start -= from;
        r->end = held;
        r->tail_from = 0;
    }
    *ret_len = sizeof(r->buf) - r->end;
    return r->buf + r->end;
}

void seclog_reader_commit(struct seclog_reader *r, size_t n)
{
    r->end += n;
}

bool seclog_reader_next(struct seclog_reader *r, struct seclog_chunk *ret)
{
    for (;;) {
        char *nl = r->scan < r->end ? memchr(r->buf + r->scan, '\n', r->end - r->scan) : NULL;
        if (r->skipping) {
            size_t upto = nl ? (size_t)(nl - r->buf) + 1 : r->end;
            memset(r->buf + r->start, 0, upto - r->start);
            r->skipped += upto - r->start;
            r->off += upto - r->start;
            r->start = r->scan = upto;
            /* What lies before the position now is zeroes, not the file. */
            r->tail_from = r->start;
            if (!nl)
                return false;
            r->skipping = false;
            continue;
        }
        size_t held = (nl ? (size_t)(nl - r->buf) : r->end) - r->start;
        if (held > SECLOG_LINE_MAX) {
            /* Returned once, cut; the rest is dropped as it comes. */
            ret->data = r->buf + r->start;
            ret->len = SECLOG_LINE_MAX;
            ret->oversized = true;
            ret->end_off = 0;
            r->skip_from = r->off;
            r->lines++;
            r->off += SECLOG_LINE_MAX;
            r->start += SECLOG_LINE_MAX;
            r->scan = r->start;
            r->skipping = true;
            return true;
        }
        if (!nl) {
            r->scan = r->end;
            return false;
        }
        ret->data = r->buf + r->start;
        ret->len = held;
        ret->oversized = false;
        r->off += held + 1;
        ret->end_off = r->off;
        r->start += held + 1;
        r->scan = r->start;
        r->lines++;
        return true;
    }
}

void seclog_reader_unread(struct seclog_reader *r, const struct seclog_chunk *c)
{
    if (c->oversized || c->data + c->len + 1 != r->buf + r->start)
        return;
    r->start -= c->len + 1;
    r->scan = r->start;
    r->off -= c->len + 1;
    r->lines--;
    if (r->tail_from > r->start)
        r->tail_from = r->start;
}

uint64_t seclog_reader_offset(const struct seclog_reader *r)
{
    return r->skipping ? r->skip_from : r->off;
}

const char *seclog_reader_tail(const struct seclog_reader *r, size_t *ret_len)
{
    size_t n = r->skipping ? 0 : r->start - r->tail_from;
    if (n > SECLOG_TAIL_MAX)
        n = SECLOG_TAIL_MAX;
    *ret_len = n;
    return r->buf + r->start - n;
}

size_t seclog_reader_pending(const struct seclog_reader *r)
{
    return r->end - r->start;
}

const char *seclog_reader_pending_data(const struct seclog_reader *r)
{
    return r->buf + r->start;
}
