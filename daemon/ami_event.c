#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "ami_event.h"

/* Copies at most cap-1 bytes and NUL-terminates; returns true if it had to cut. */
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
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > max)
            return -EINVAL;
    }
    *ret = v;
    return 0;
}

static int transport_from(const char *s, size_t len, enum sec_transport *ret)
{
    static const struct {
        const char *name;
        enum sec_transport t;
    } names[] = {{"UDP", SEC_TRANSPORT_UDP},
                 {"TCP", SEC_TRANSPORT_TCP},
                 {"TLS", SEC_TRANSPORT_TLS},
                 {"WS", SEC_TRANSPORT_WS},
                 {"WSS", SEC_TRANSPORT_WSS}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i].name) == len && ami_caseeq(s, names[i].name, len)) {
            *ret = names[i].t;
            return 0;
        }
    }
    return -EINVAL;
}

/* Dotted-quad IPv4, strictly (no leading zeros beyond "0", four parts): the common case, done
 * without the copy and the generic path of inet_pton(). Returns 0 or -EINVAL. */
static int parse_ipv4(const char *s, size_t len, struct addr *ret)
{
    struct addr a;
    memset(&a, 0, sizeof(a));
    unsigned part = 0, v = 0, ndig = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (ndig == 0 || v > 255 || part > 3 || (ndig > 1 && s[i - ndig] == '0'))
                return -EINVAL;
            a.bytes[part++] = (uint8_t)v;
            v = 0;
            ndig = 0;
        } else if (s[i] >= '0' && s[i] <= '9' && ndig < 3) {
            v = v * 10 + (unsigned)(s[i] - '0');
            ndig++;
        } else {
            return -EINVAL;
        }
    }
    if (part != 4)
        return -EINVAL;
    a.family = AF_INET;
    *ret = a;
    return 0;
}

int ami_event_parse_address(const char *s, size_t len, struct sec_endpoint *ret_ep)
{
    /* Up to four parts; IPv6 addresses never hold '/', so splitting on it is safe. */
    const char *part[5];
    size_t plen[5];
    unsigned n = 0;
    const char *p = s, *e = s + len;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(e - p));
        if (n == 4)
            return -EINVAL;
        part[n] = p;
        plen[n] = slash ? (size_t)(slash - p) : (size_t)(e - p);
        n++;
        if (!slash)
            break;
        p = slash + 1;
    }
    if (n < 3)
        return -EINVAL;

    struct sec_endpoint ep;
    memset(&ep, 0, sizeof(ep));
    int want_family;
    if (plen[0] == 4 && ami_caseeq(part[0], "IPV4", 4))
        want_family = AF_INET;
    else if (plen[0] == 4 && ami_caseeq(part[0], "IPV6", 4))
        want_family = AF_INET6;
    else
        return -EINVAL;
    if (n == 4 && transport_from(part[1], plen[1], &ep.transport) < 0)
        return -EINVAL;

    const char *a = part[n - 2];
    size_t alen = plen[n - 2];
    const char *pct = memchr(a, '%', alen);
    if (pct) {
        size_t slen = alen - (size_t)(pct - a) - 1;
        if (want_family != AF_INET6 || slen == 0 || slen >= sizeof(ep.scope))
            return -EINVAL;
        memcpy(ep.scope, pct + 1, slen);
        alen = (size_t)(pct - a);
    }
    if (want_family == AF_INET ? parse_ipv4(a, alen, &ep.addr) < 0
                               : addr_parse(a, alen, &ep.addr) < 0)
        return -EINVAL;
    /* "IPV6/::ffff:192.0.2.1" folds to IPv4 and is fine; "IPV4/2001:db8::1" is not. */
    if (want_family == AF_INET && (ep.addr.family != AF_INET || memchr(a, ':', alen)))
        return -EINVAL;
    if (want_family == AF_INET6 && !memchr(a, ':', alen))
        return -EINVAL;

    unsigned port;
    if (parse_uint(part[n - 1], plen[n - 1], 65535, &port) < 0)
        return -EINVAL;
    ep.port = (uint16_t)port;
    *ret_ep = ep;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, size_t n, unsigned *ret)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *ret = v;
    return 0;
}

int ami_event_parse_time(const char *s, size_t len, int64_t *ret_ms)
{
    unsigned y, mo, d, h, mi, sec, ms = 0;

    if (len >= 19 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':') {
        if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
            digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
            return -EINVAL;
        if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
            return -EINVAL;
        size_t i = 19;
        if (i < len && s[i] == '.') {
            size_t f0 = ++i;
            unsigned scale = 100;
            while (i < len && s[i] >= '0' && s[i] <= '9') {
                ms += (unsigned)(s[i] - '0') * scale;
                scale /= 10;
                i++;
            }
            if (i == f0)
                return -EINVAL;
        }
        int offset_min = 0;
        if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
            i++;
        } else if (i < len && (s[i] == '+' || s[i] == '-')) {
            unsigned oh, om;
            int sign = s[i] == '-' ? -1 : 1;
            i++;
            if (len - i == 4 && !digits(s + i, 2, &oh) && !digits(s + i + 2, 2, &om))
                i += 4;
            else if (len - i == 5 && s[i + 2] == ':' && !digits(s + i, 2, &oh) &&
                     !digits(s + i + 3, 2, &om))
                i += 5;
            else
                return -EINVAL;
            if (oh > 23 || om > 59)
                return -EINVAL;
            offset_min = sign * (int)(oh * 60 + om);
        }
        if (i != len)
            return -EINVAL;
        int64_t days = days_from_civil(y, mo, d);
        int64_t t = ((days * 24 + h) * 60 + mi) * 60 + sec - (int64_t)offset_min * 60;
        *ret_ms = t * 1000 + ms;
        return 0;
    }

    /* Asterisk 1.8-11: "<sec>-<usec>". */
    const char *dash = memchr(s, '-', len);
    if (!dash || dash == s)
        return -EINVAL;
    size_t slen = (size_t)(dash - s), ulen = len - slen - 1;
    if (slen > 12 || ulen == 0 || ulen > 6)
        return -EINVAL;
    uint64_t secs = 0;
    for (size_t i = 0; i < slen; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        secs = secs * 10 + (uint64_t)(s[i] - '0');
    }
    unsigned usec;
    if (digits(dash + 1, ulen, &usec))
        return -EINVAL;
    *ret_ms = (int64_t)secs * 1000 + usec / 1000;
    return 0;
}

/* The headers normalization reads, told apart by length first so the common case is one
 * integer compare and one memcmp per header. */
enum field {
    F_NONE = 0,
    F_SERVICE,
    F_VERSION,
    F_ACCOUNT,
    F_SESSION,
    F_LOCAL,
    F_REMOTE,
    F_EVENT_TV,
};

/* Header names are matched caselessly, as Asterisk itself reads them. */
static inline bool name_is(const char *n, const char *want, size_t len)
{
    return ami_caseeq(n, want, len);
}

static enum field field_of(const struct ami_header *h)
{
    const char *n = h->name;
    switch (h->name_len) {
    case 7:
        if (name_is(n, "Service", 7))
            return F_SERVICE;
        if (name_is(n, "EventTV", 7))
            return F_EVENT_TV;
        break;
    case 9:
        if (name_is(n, "AccountID", 9))
            return F_ACCOUNT;
        if (name_is(n, "SessionID", 9))
            return F_SESSION;
        break;
    case 12:
        if (name_is(n, "EventVersion", 12))
            return F_VERSION;
        if (name_is(n, "LocalAddress", 12))
            return F_LOCAL;
        break;
    case 13:
        if (name_is(n, "RemoteAddress", 13))
            return F_REMOTE;
        break;
    }
    return F_NONE;
}

/* sec_event_type_from_name() with the lengths compared first: most names differ in length. */
static int type_from_name(const char *s, size_t len)
{
    static uint8_t lens[SEC_EVENT_TYPE_COUNT];
    static const char *names[SEC_EVENT_TYPE_COUNT];
    if (!names[0]) {
        for (int i = 0; i < SEC_EVENT_TYPE_COUNT; i++) {
            names[i] = sec_event_type_name((enum sec_event_type)i);
            lens[i] = (uint8_t)strlen(names[i]);
        }
    }
    for (int i = 0; i < SEC_EVENT_TYPE_COUNT; i++)
        if (lens[i] == len && memcmp(names[i], s, len) == 0)
            return i;
    return -1;
}

enum ami_event_result ami_event_from_frame(const struct ami_frame *f, const char *source,
                                           struct sec_event *ret_ev, enum ami_event_bad *ret_bad)
{
    if (!ami_frame_is_security(f))
        return AMI_EVENT_NOT_SECURITY;

    const struct ami_header *name = &f->headers[0];
    int type = type_from_name(name->value, name->value_len);
    if (type < 0)
        return AMI_EVENT_UNKNOWN;

    struct sec_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = (enum sec_event_type)type;
    enum ami_event_bad bad = AMI_BAD_NONE;
    bool have_remote = false;

    /* From header 1: Privilege is usually there, but ami_frame_is_security() accepts it
     * anywhere, and field_of() ignores it wherever it is. */
    for (unsigned i = 1; i < f->nheaders && bad == AMI_BAD_NONE; i++) {
        const struct ami_header *h = &f->headers[i];
        switch (field_of(h)) {
        case F_SERVICE:
            copy_bounded(ev.service, sizeof(ev.service), h->value, h->value_len);
            break;
        case F_VERSION: {
            unsigned v;
            if (parse_uint(h->value, h->value_len, 1000, &v) < 0)
                bad = AMI_BAD_VERSION;
            else
                ev.version = (int)v;
            break;
        }
        case F_ACCOUNT:
            ev.account_truncated =
                copy_bounded(ev.account, sizeof(ev.account), h->value, h->value_len);
            break;
        case F_SESSION:
            copy_bounded(ev.session, sizeof(ev.session), h->value, h->value_len);
            break;
        case F_LOCAL:
            if (ami_event_parse_address(h->value, h->value_len, &ev.local) < 0)
                bad = AMI_BAD_LOCAL_ADDRESS;
            else
                ev.has_local = true;
            break;
        case F_REMOTE:
            if (ami_event_parse_address(h->value, h->value_len, &ev.remote) < 0)
                bad = AMI_BAD_REMOTE_ADDRESS;
            else
                have_remote = true;
            break;
        case F_EVENT_TV:
            if (ami_event_parse_time(h->value, h->value_len, &ev.event_tv_ms) < 0)
                ev.event_tv_ms = 0; /* informative only: the window uses our own clock */
            break;
        case F_NONE:
            break;
        }
    }
    if (bad == AMI_BAD_NONE && !have_remote)
        bad = AMI_BAD_NO_REMOTE;
    if (bad != AMI_BAD_NONE) {
        if (ret_bad)
            *ret_bad = bad;
        return AMI_EVENT_MALFORMED;
    }
    if (source)
        copy_bounded(ev.source, sizeof(ev.source), source, strlen(source));
    *ret_ev = ev;
    return AMI_EVENT_OK;
}

const char *ami_event_bad_name(enum ami_event_bad bad)
{
    switch (bad) {
    case AMI_BAD_NONE:
        return "none";
    case AMI_BAD_NO_REMOTE:
        return "no RemoteAddress";
    case AMI_BAD_REMOTE_ADDRESS:
        return "unparsable RemoteAddress";
    case AMI_BAD_LOCAL_ADDRESS:
        return "unparsable LocalAddress";
    case AMI_BAD_VERSION:
        return "unparsable EventVersion";
    case AMI_BAD_COUNT:
        break;
    }
    return "?";
}
