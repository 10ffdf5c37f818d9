/* CrowdSec LAPI wire formats. The decision stream is walked by hand at its top level (an
 * object whose "new" and "deleted" members are lists), so 100k decisions never become 100k
 * jansson objects at once. Each list element is read in place when it has the plain shape LAPI
 * gives decisions (fast_decision(): no allocation, a few hundred nanoseconds); any other
 * element is handed to jansson alone (JSON_DISABLE_EOF_CHECK stops at the element's end and
 * says where that is), which accepts or refuses it. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lapi.h"

#define HUNDRED_YEARS_MS (100LL * 365 * 86400 * 1000)

/* --- Go durations --- */

int lapi_duration_parse(const char *s, size_t len, int64_t *ret_ms)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (i == len)
        return -EINVAL;
    if (len - i == 1 && s[i] == '0') {
        *ret_ms = 0;
        return 0;
    }
    /* Sum in nanoseconds as a long double would lose exactness on long values; milliseconds
     * with a nanosecond remainder keep it, within the +-100 years bound. */
    int64_t total_ms = 0, rem_ns = 0;
    while (i < len) {
        /* A number: digits, optionally a fraction; at least one digit on either side. */
        uint64_t whole = 0;
        unsigned ndig = 0, nfrac = 0;
        uint64_t frac = 0; /* the fraction's first 18 digits */
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (whole > (uint64_t)HUNDRED_YEARS_MS * 1000000ULL)
                return -ERANGE;
            whole = whole * 10 + (uint64_t)(s[i++] - '0');
            ndig++;
        }
        if (i < len && s[i] == '.') {
            i++;
            while (i < len && s[i] >= '0' && s[i] <= '9') {
                if (nfrac < 18) {
                    frac = frac * 10 + (uint64_t)(s[i] - '0');
                    nfrac++;
                }
                i++;
                ndig++;
            }
        }
        if (ndig == 0)
            return -EINVAL;
        /* The unit. */
        int64_t unit_ns;
        if (i + 2 <= len && s[i] == 'n' && s[i + 1] == 's') {
            unit_ns = 1, i += 2;
        } else if (i + 2 <= len && s[i] == 'u' && s[i + 1] == 's') {
            unit_ns = 1000, i += 2;
        } else if (i + 3 <= len && (unsigned char)s[i] == 0xc2 && (unsigned char)s[i + 1] == 0xb5 &&
                   s[i + 2] == 's') {
            unit_ns = 1000, i += 3; /* U+00B5 micro sign */
        } else if (i + 3 <= len && (unsigned char)s[i] == 0xce && (unsigned char)s[i + 1] == 0xbc &&
                   s[i + 2] == 's') {
            unit_ns = 1000, i += 3; /* U+03BC Greek mu */
        } else if (i + 2 <= len && s[i] == 'm' && s[i + 1] == 's') {
            unit_ns = 1000000, i += 2;
        } else if (i < len && s[i] == 's') {
            unit_ns = 1000000000LL, i++;
        } else if (i < len && s[i] == 'm') {
            unit_ns = 60 * 1000000000LL, i++;
        } else if (i < len && s[i] == 'h') {
            unit_ns = 3600 * 1000000000LL, i++;
        } else {
            return -EINVAL;
        }
        /* whole * unit, split into ms and ns. */
        int64_t unit_ms = unit_ns / 1000000, unit_rem = unit_ns % 1000000;
        if (unit_ms && whole > (uint64_t)(HUNDRED_YEARS_MS / unit_ms))
            return -ERANGE;
        total_ms += (int64_t)whole * unit_ms;
        /* whole * unit_rem < 1e6 * whole: only for ns and us, whole bounded above. */
        if (unit_rem) {
            if (whole > (uint64_t)HUNDRED_YEARS_MS * 1000ULL)
                return -ERANGE;
            __int128 ns = (__int128)whole * unit_rem + rem_ns;
            total_ms += (int64_t)(ns / 1000000);
            rem_ns = (int64_t)(ns % 1000000);
        }
        /* The fraction: frac / 10^nfrac units. */
        if (nfrac) {
            __int128 p = 1;
            for (unsigned k = 0; k < nfrac; k++)
                p *= 10;
            __int128 ns = (__int128)frac * unit_ns / p + rem_ns;
            total_ms += (int64_t)(ns / 1000000);
            rem_ns = (int64_t)(ns % 1000000);
        }
        if (total_ms > HUNDRED_YEARS_MS)
            return -ERANGE;
    }
    *ret_ms = neg ? -total_ms : total_ms;
    return 0;
}

const char *lapi_duration_format(int64_t ms, char *buf, size_t len)
{
    int64_t s = ms <= 0 ? 1 : (ms + 999) / 1000;
    snprintf(buf, len, "%llds", (long long)s);
    return buf;
}

/* --- times --- */

const char *lapi_time_format(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, len, "1970-01-01T00:00:00Z");
    return buf;
}

int lapi_time_parse(const char *s, int64_t *ret_ms)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
        return -EINVAL;
    const char *p = s + n;
    int64_t frac_ms = 0;
    if (*p == '.') {
        int64_t scale = 100;
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        while (*p >= '0' && *p <= '9') {
            frac_ms += (*p - '0') * scale;
            scale /= 10;
            p++;
        }
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, m2 = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m2) != 2 || m2 != 5 || oh > 23 || om > 59)
            return -EINVAL;
        off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    *ret_ms = ((int64_t)t - off) * 1000 + frac_ms;
    return 0;
}

/* --- reading --- */

static bool printable_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

const char *lapi_bad_name(enum lapi_bad b)
{
    switch (b) {
    case LAPI_OK:
        return "ok";
    case LAPI_BAD_SHAPE:
        return "malformed";
    case LAPI_BAD_TEXT:
        return "bad-text";
    case LAPI_BAD_TYPE:
        return "not-ban";
    case LAPI_BAD_SCOPE:
        return "scope";
    case LAPI_BAD_VALUE:
        return "value";
    case LAPI_BAD_DURATION:
        return "duration";
    }
    return "?";
}

/* A decision's members as the element holds them, before they are checked: each text member
 * is a view into the element's bytes (the fast reader) or into jansson's string (the reference
 * reader), so both readers share one set of rules below. */
enum field_kind { F_MISSING = 0, F_OTHER, F_STRING, F_INT };
struct field {
    enum field_kind kind;
    const char *s; /* F_STRING: its bytes (decoded), n of them */
    size_t n;
    int64_t i; /* F_INT */
};
enum { K_ID = 0, K_ORIGIN, K_TYPE, K_SCOPE, K_VALUE, K_SCENARIO, K_DURATION, K_COUNT };
static const char *const field_names[K_COUNT] = {"id",    "origin",   "type",    "scope",
                                                 "value", "scenario", "duration"};

/* Copies a text field into out: LAPI_BAD_SHAPE if missing or not a string, LAPI_BAD_TEXT if too
 * long or holding control characters (a NUL among them). */
static enum lapi_bad get_text(const struct field *f, char *out, size_t size)
{
    if (f->kind != F_STRING)
        return LAPI_BAD_SHAPE;
    if (f->n >= size || !printable_ascii(f->s, f->n))
        return LAPI_BAD_TEXT;
    memcpy(out, f->s, f->n);
    out[f->n] = '\0';
    return LAPI_OK;
}

/* The rules of a decision, whichever reader found its members. */
static void check_decision(const struct field *f, bool deleted, struct lapi_decision *d)
{
    memset(d, 0, sizeof(*d));
    d->deleted = deleted;
    if (f[K_ID].kind != F_INT || f[K_ID].i <= 0) {
        d->bad = LAPI_BAD_SHAPE;
        return;
    }
    d->id = f[K_ID].i;
    enum lapi_bad b;
    if ((b = get_text(&f[K_ORIGIN], d->origin, sizeof(d->origin))) ||
        (b = get_text(&f[K_TYPE], d->type, sizeof(d->type))) ||
        (b = get_text(&f[K_SCOPE], d->scope, sizeof(d->scope))) ||
        (b = get_text(&f[K_VALUE], d->value, sizeof(d->value)))) {
        d->bad = b;
        return;
    }
    /* The scenario is free text (a blocklist's name, cscli's "manual 'ban' from 'x'"): kept
     * when it is missing or odd, since it is only shown. */
    if (get_text(&f[K_SCENARIO], d->scenario, sizeof(d->scenario)) != LAPI_OK)
        snprintf(d->scenario, sizeof(d->scenario), "?");
    char dur[64];
    if ((b = get_text(&f[K_DURATION], dur, sizeof(dur)))) {
        d->bad = b == LAPI_BAD_TEXT ? LAPI_BAD_DURATION : b;
        return;
    }
    if (lapi_duration_parse(dur, strlen(dur), &d->duration_ms) < 0) {
        d->bad = LAPI_BAD_DURATION;
        return;
    }
    if (strcasecmp(d->type, "ban") != 0) {
        d->bad = LAPI_BAD_TYPE;
        return;
    }
    bool ip = strcasecmp(d->scope, "ip") == 0, range = strcasecmp(d->scope, "range") == 0;
    if (!ip && !range) {
        d->bad = LAPI_BAD_SCOPE;
        return;
    }
    if (addr_prefix_parse(d->value, false, &d->prefix) < 0 ||
        (ip && d->prefix.len != addr_max_len(&d->prefix.addr))) {
        d->bad = LAPI_BAD_VALUE;
        return;
    }
}

/* The reference reader: the element parsed by jansson. */
static void read_decision(json_t *o, bool deleted, struct lapi_decision *d)
{
    struct field f[K_COUNT] = {0};
    if (!json_is_object(o)) {
        memset(d, 0, sizeof(*d));
        d->deleted = deleted;
        d->bad = LAPI_BAD_SHAPE;
        return;
    }
    for (unsigned k = 0; k < K_COUNT; k++) {
        json_t *v = json_object_get(o, field_names[k]);
        if (!v)
            continue;
        f[k].kind = F_OTHER;
        if (json_is_string(v)) {
            f[k].kind = F_STRING;
            f[k].s = json_string_value(v);
            f[k].n = json_string_length(v);
        } else if (json_is_integer(v)) {
            f[k].kind = F_INT;
            f[k].i = (int64_t)json_integer_value(v);
        }
    }
    check_decision(f, deleted, d);
}

/* The fast reader, for the shape LAPI gives every decision: an object whose keys are plain
 * strings and whose values are plain strings (printable ASCII, no escapes), integers of at
 * most 18 digits, true, false or null; no key it reads twice. Such an element is valid JSON
 * and means to jansson what it means here, so the rules see the same members. Anything else
 * (an escape, a byte beyond ASCII, a nested value, a fraction, a repeated key, broken JSON)
 * returns 0 and the element goes to jansson, which decides. Returns the bytes read (past the
 * closing brace) when it read the element. */
static size_t fast_decision(const char *b, size_t len, bool deleted, struct lapi_decision *d)
{
    struct field f[K_COUNT] = {0};
    size_t i = 0;
#define WS()                                                                                       \
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))               \
    i++
    if (i >= len || b[i] != '{')
        return 0;
    i++;
    WS();
    if (i < len && b[i] == '}') {
        check_decision(f, deleted, d);
        return i + 1;
    }
    for (;;) {
        /* A key. */
        if (i >= len || b[i] != '"')
            return 0;
        size_t k0 = ++i;
        while (i < len && (unsigned char)b[i] >= 0x20 && (unsigned char)b[i] < 0x7f &&
               b[i] != '"' && b[i] != '\\')
            i++;
        if (i >= len || b[i] != '"')
            return 0;
        size_t klen = i - k0;
        int k = -1;
        for (unsigned j = 0; j < K_COUNT; j++)
            if (strlen(field_names[j]) == klen && memcmp(b + k0, field_names[j], klen) == 0)
                k = (int)j;
        if (k >= 0 && f[k].kind != F_MISSING)
            return 0; /* a repeated key: jansson's rule (the last wins) decides */
        i++;
        WS();
        if (i >= len || b[i] != ':')
            return 0;
        i++;
        WS();
        /* A value. */
        if (i >= len)
            return 0;
        struct field v = {.kind = F_OTHER};
        if (b[i] == '"') {
            size_t v0 = ++i;
            while (i < len && (unsigned char)b[i] >= 0x20 && (unsigned char)b[i] < 0x7f &&
                   b[i] != '"' && b[i] != '\\')
                i++;
            if (i >= len || b[i] != '"')
                return 0;
            v = (struct field){.kind = F_STRING, .s = b + v0, .n = i - v0};
            i++;
        } else if (b[i] == '-' || (b[i] >= '0' && b[i] <= '9')) {
            bool neg = b[i] == '-';
            if (neg)
                i++;
            size_t d0 = i;
            int64_t n = 0;
            while (i < len && b[i] >= '0' && b[i] <= '9')
                n = n * 10 + (b[i++] - '0');
            size_t nd = i - d0;
            /* No digit, a leading zero, a fraction or exponent, or beyond 18 digits. */
            if (nd == 0 || nd > 18 || (nd > 1 && b[d0] == '0') ||
                (i < len && (b[i] == '.' || b[i] == 'e' || b[i] == 'E')))
                return 0;
            v = (struct field){.kind = F_INT, .i = neg ? -n : n};
        } else if (len - i >= 4 && memcmp(b + i, "true", 4) == 0) {
            i += 4;
        } else if (len - i >= 5 && memcmp(b + i, "false", 5) == 0) {
            i += 5;
        } else if (len - i >= 4 && memcmp(b + i, "null", 4) == 0) {
            i += 4;
        } else {
            return 0; /* a nested value, or not JSON */
        }
        if (k >= 0)
            f[k] = v;
        WS();
        if (i < len && b[i] == ',') {
            i++;
            WS();
            continue;
        }
        if (i < len && b[i] == '}')
            break;
        return 0;
    }
#undef WS
    check_decision(f, deleted, d);
    return i + 1;
}

static size_t skip_ws(const char *b, size_t len, size_t i)
{
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
        i++;
    return i;
}

/* The walk is a small state machine over the top-level object, so that it can stop after any
 * decision and carry on later (a loop turn at a time). */
enum {
    W_START = 0, /* before '{' */
    W_KEY,       /* a key, or '}' (just after '{') */
    W_NEXT_KEY,  /* a key (after ',') */
    W_LIST,      /* inside "new" or "deleted": an element or ']' (just after '[') */
    W_ELEM,      /* inside a list, after ',': an element */
    W_NEXT_ELEM, /* inside a list, after an element: ',' or ']' */
    W_MEMBER,    /* after a member's value: ',' or '}' */
    W_DONE,
    W_BROKEN,
};

void lapi_stream_begin(struct lapi_stream *st, const char *buf, size_t len)
{
    memset(st, 0, sizeof(*st));
    st->buf = buf;
    st->len = len;
    st->state = W_START;
}

/* One member's key and value start, from a key on: a list of decisions enters W_LIST; null and
 * members this version does not know are read past. */
static int walk_member(struct lapi_stream *st)
{
    const char *b = st->buf;
    size_t len = st->len, i = st->pos;
    /* A key: a plain string (no escapes, which LAPI's keys never need). */
    if (i >= len || b[i] != '"')
        return -EBADMSG;
    size_t k0 = ++i;
    while (i < len && b[i] != '"' && b[i] != '\\')
        i++;
    if (i >= len || b[i] != '"')
        return -EBADMSG;
    size_t klen = i - k0;
    bool is_new = klen == 3 && memcmp(b + k0, "new", 3) == 0;
    bool is_del = klen == 7 && memcmp(b + k0, "deleted", 7) == 0;
    i = skip_ws(b, len, i + 1);
    if (i >= len || b[i] != ':')
        return -EBADMSG;
    i = skip_ws(b, len, i + 1);
    if (i + 4 <= len && memcmp(b + i, "null", 4) == 0) {
        st->pos = i + 4;
        st->state = W_MEMBER;
    } else if (i < len && b[i] == '[' && (is_new || is_del)) {
        st->pos = i + 1;
        st->deleted = is_del;
        st->state = W_LIST;
    } else if (i < len && (b[i] == '[' || b[i] == '{')) {
        json_error_t err;
        json_t *o = json_loadb(b + i, len - i, JSON_DISABLE_EOF_CHECK, &err);
        if (!o)
            return -EBADMSG;
        json_decref(o);
        st->pos = i + (size_t)err.position;
        st->state = W_MEMBER;
    } else {
        return -EBADMSG;
    }
    return 0;
}

int lapi_stream_next(struct lapi_stream *st, unsigned max, lapi_decision_fn fn, void *data)
{
    const char *b = st->buf;
    size_t len = st->len;
    unsigned n = 0;
    int r = 0;
    while (r == 0) {
        size_t i = skip_ws(b, len, st->pos);
        st->pos = i;
        switch (st->state) {
        case W_START:
            if (i >= len || b[i] != '{')
                r = -EBADMSG;
            st->pos = i + 1;
            st->state = W_KEY;
            break;
        case W_KEY:
            if (i < len && b[i] == '}') {
                st->pos = i + 1;
                st->state = W_DONE;
                break;
            }
            /* fall through */
        case W_NEXT_KEY:
            r = walk_member(st);
            break;
        case W_LIST:
            if (i < len && b[i] == ']') {
                st->pos = i + 1;
                st->state = W_MEMBER;
                break;
            }
            /* fall through */
        case W_ELEM: {
            if (n >= max)
                return 1; /* more to come: the caller carries on later */
            struct lapi_decision d;
            size_t used = st->reference ? 0 : fast_decision(b + i, len - i, st->deleted, &d);
            if (used) {
                st->pos = i + used;
            } else {
                json_error_t err;
                json_t *o = json_loadb(b + i, len - i, JSON_DISABLE_EOF_CHECK, &err);
                if (!o) {
                    r = -EBADMSG;
                    break;
                }
                st->pos = i + (size_t)err.position;
                read_decision(o, st->deleted, &d);
                json_decref(o);
            }
            st->state = W_NEXT_ELEM;
            n++;
            r = fn(data, &d);
            break;
        }
        case W_NEXT_ELEM:
            if (i < len && b[i] == ',') {
                st->pos = i + 1;
                st->state = W_ELEM;
            } else if (i < len && b[i] == ']') {
                st->pos = i + 1;
                st->state = W_MEMBER;
            } else {
                r = -EBADMSG;
            }
            break;
        case W_MEMBER:
            if (i < len && b[i] == ',') {
                st->pos = i + 1;
                st->state = W_NEXT_KEY;
            } else if (i < len && b[i] == '}') {
                st->pos = i + 1;
                st->state = W_DONE;
            } else {
                r = -EBADMSG;
            }
            break;
        case W_DONE:
            return skip_ws(b, len, i) == len ? 0 : -EBADMSG;
        default:
            return -EBADMSG;
        }
    }
    if (r == -EBADMSG)
        st->state = W_BROKEN;
    return r;
}

int lapi_stream_parse(const char *buf, size_t len, lapi_decision_fn fn, void *data)
{
    struct lapi_stream st;
    lapi_stream_begin(&st, buf, len);
    return lapi_stream_next(&st, UINT_MAX, fn, data);
}

int lapi_login_parse(const char *buf, size_t len, char *ret_token, size_t token_size,
                     int64_t *ret_expire_ms)
{
    json_error_t err;
    json_t *o = json_loadb(buf, len, 0, &err);
    int r = -EBADMSG;
    if (!json_is_object(o))
        goto out;
    json_t *t = json_object_get(o, "token");
    if (!json_is_string(t))
        goto out;
    const char *s = json_string_value(t);
    size_t n = json_string_length(t);
    if (n == 0 || n >= token_size || n >= LAPI_TOKEN_MAX || strlen(s) != n)
        goto out;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            goto out;
    memcpy(ret_token, s, n + 1);
    int64_t exp = 0;
    json_t *e = json_object_get(o, "expire");
    if (json_is_string(e) && lapi_time_parse(json_string_value(e), &exp) < 0)
        exp = 0;
    *ret_expire_ms = exp;
    r = 0;
out:
    json_decref(o);
    return r;
}

char *lapi_login_body(const char *machine_id, const char *password, const char *scenario)
{
    json_t *o = json_pack("{s:s, s:s, s:[s]}", "machine_id", machine_id, "password", password,
                          "scenarios", scenario);
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* --- writing alerts --- */

struct lapi_alerts {
    json_t *array;
};

struct lapi_alerts *lapi_alerts_new(void)
{
    struct lapi_alerts *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->array = json_array();
    if (!a->array) {
        free(a);
        return NULL;
    }
    return a;
}

void lapi_alerts_free(struct lapi_alerts *a)
{
    if (!a)
        return;
    json_decref(a->array);
    free(a);
}

unsigned lapi_alerts_count(const struct lapi_alerts *a)
{
    return (unsigned)json_array_size(a->array);
}

int lapi_alerts_add(struct lapi_alerts *a, const struct lapi_alert *al)
{
    char value[ADDR_STRLEN], start[32], stop[32], dur[32], msg[256];
    addr_prefix_format(&al->prefix, value, sizeof(value));
    bool ip = al->prefix.len == addr_max_len(&al->prefix.addr);
    const char *scope = ip ? "Ip" : "Range";
    lapi_time_format(al->start_ms, start, sizeof(start));
    lapi_time_format(al->now_ms, stop, sizeof(stop));
    lapi_duration_format(al->remaining_ms ? al->remaining_ms : HUNDRED_YEARS_MS, dur, sizeof(dur));
    if (al->message)
        snprintf(msg, sizeof(msg), "%s", al->message);
    else
        snprintf(msg, sizeof(msg), "pbxguard: %s banned (%s, %u events)", value,
                 al->reason ? al->reason : "ban", al->events);
    json_t *source =
        ip ? json_pack("{s:s, s:s, s:s}", "scope", scope, "value", value, "ip", value)
           : json_pack("{s:s, s:s, s:s}", "scope", scope, "value", value, "range", value);
    json_t *decision = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "origin", "crowdsec",
                                 "type", "ban", "scope", scope, "value", value, "duration", dur,
                                 "scenario", al->scenario, "simulated", 0);
    json_t *o = NULL;
    if (source && decision)
        o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:i, s:s, s:b, s:b, s:[], s:O, s:[O]}",
                      "scenario", al->scenario, "scenario_hash", "", "scenario_version", "",
                      "message", msg, "events_count", (json_int_t)al->events, "start_at", start,
                      "stop_at", stop, "capacity", (json_int_t)0, "leakspeed", "0", "simulated", 0,
                      "remediation", 1, "events", "source", source, "decisions", decision);
    json_decref(source);
    json_decref(decision);
    if (!o)
        return -ENOMEM;
    if (json_array_append_new(a->array, o) < 0)
        return -ENOMEM;
    return 0;
}

char *lapi_alerts_dump(const struct lapi_alerts *a, size_t *ret_len)
{
    char *s = json_dumps(a->array, JSON_COMPACT);
    if (s && ret_len)
        *ret_len = strlen(s);
    return s;
}

int lapi_alerts_reply(const char *buf, size_t len)
{
    json_error_t err;
    json_t *o = json_loadb(buf, len, 0, &err);
    int r = json_is_array(o) ? (int)json_array_size(o) : -EBADMSG;
    json_decref(o);
    return r;
}

const char *lapi_error_message(const char *buf, size_t len, char *out, size_t out_len)
{
    out[0] = '\0';
    json_error_t err;
    json_t *o = json_loadb(buf, len, 0, &err);
    json_t *m = json_object_get(o, "message");
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = 0;
        for (; *s && n + 1 < out_len && n < 200; s++)
            out[n++] = ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f) ? '?' : *s;
        out[n] = '\0';
    }
    json_decref(o);
    return out;
}
