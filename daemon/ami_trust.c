#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "ami_trust.h"

const char *ami_trust_kind_name(enum ami_trust_kind kind)
{
    switch (kind) {
    case AMI_TRUST_IDENTIFY:
        return "pjsip:identify";
    case AMI_TRUST_REGISTRATION:
        return "pjsip:registration";
    case AMI_TRUST_CONTACT:
        return "pjsip:contact";
    case AMI_TRUST_SIP_PEER:
        return "sip:peer";
    case AMI_TRUST_IAX_PEER:
        return "iax2:peer";
    case AMI_TRUST_KIND_COUNT:
        break;
    }
    return "?";
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *len)
{
    while (*len && is_blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len && is_blank((*s)[*len - 1]))
        (*len)--;
}

/* --- masks and Match lists --- */

int ami_trust_mask_len(const char *s, size_t len, int family, unsigned *ret_len)
{
    unsigned max = family == AF_INET ? 32 : 128;
    if (len == 0)
        return -EINVAL;
    if (len <= 3 && !memchr(s, '.', len) && !memchr(s, ':', len)) {
        unsigned v = 0;
        for (size_t i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9')
                return -EINVAL;
            v = v * 10 + (unsigned)(s[i] - '0');
        }
        if (v > max)
            return -EINVAL;
        *ret_len = v;
        return 0;
    }
    struct addr m;
    if (addr_parse(s, len, &m) < 0 || m.family != family)
        return -EINVAL;
    /* Leading ones, then nothing but zeros. */
    unsigned n = 0;
    bool zero = false;
    for (unsigned i = 0; i < max; i++) {
        bool bit = m.bytes[i / 8] & (0x80 >> (i % 8));
        if (bit && zero)
            return -EINVAL;
        if (!bit)
            zero = true;
        else
            n++;
    }
    *ret_len = n;
    return 0;
}

/* "ADDR", "ADDR:PORT" (IPv4), "[ADDR]" or "[ADDR]:PORT" (IPv6): the address alone. */
static int parse_match_addr(const char *s, size_t len, struct addr *ret)
{
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return -EINVAL;
        return addr_parse(s + 1, (size_t)(close - s - 1), ret);
    }
    const char *colon = memchr(s, ':', len);
    if (colon && !memchr(colon + 1, ':', len - (size_t)(colon - s) - 1) && memchr(s, '.', len))
        len = (size_t)(colon - s); /* an IPv4 address with a port */
    return addr_parse(s, len, ret);
}

static int parse_match_one(const char *s, size_t len, struct addr_prefix *ret)
{
    trim(&s, &len);
    if (len == 0 || s[0] == '!')
        return -EINVAL;
    const char *slash = NULL;
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == '/') {
            slash = s + i - 1;
            break;
        }
    }
    size_t alen = slash ? (size_t)(slash - s) : len;
    struct addr a;
    if (parse_match_addr(s, alen, &a) < 0)
        return -EINVAL;
    unsigned plen = addr_max_len(&a);
    if (slash) {
        const char *m = slash + 1;
        size_t mlen = len - alen - 1;
        trim(&m, &mlen);
        if (ami_trust_mask_len(m, mlen, a.family, &plen) < 0)
            return -EINVAL;
    }
    addr_prefix_of(&a, plen, ret);
    return 0;
}

unsigned ami_trust_parse_match(const char *s, size_t len,
                               void (*fn)(void *data, const struct addr_prefix *p), void *data)
{
    unsigned n = 0;
    const char *e = s + len;
    while (s < e) {
        const char *comma = memchr(s, ',', (size_t)(e - s));
        size_t l = comma ? (size_t)(comma - s) : (size_t)(e - s);
        struct addr_prefix p;
        if (parse_match_one(s, l, &p) == 0) {
            fn(data, &p);
            n++;
        }
        if (!comma)
            break;
        s = comma + 1;
    }
    return n;
}

/* --- SIP URIs --- */

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

int ami_trust_uri_host(const char *s, size_t len, char *ret_host, size_t hostlen,
                       struct addr *ret_addr, bool *ret_numeric)
{
    trim(&s, &len);
    if (len && s[0] == '<') {
        const char *close = memchr(s, '>', len);
        if (!close)
            return -EINVAL;
        s++;
        len = (size_t)(close - s);
    }
    if (len >= 4 && ami_caseeq(s, "sip:", 4)) {
        s += 4;
        len -= 4;
    } else if (len >= 5 && ami_caseeq(s, "sips:", 5)) {
        s += 5;
        len -= 5;
    } else {
        return -EINVAL;
    }
    /* Headers (?...) end the URI; the user part ends at the last '@' before them. */
    const char *q = memchr(s, '?', len);
    if (q)
        len = (size_t)(q - s);
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == '@') {
            s += i;
            len -= i;
            break;
        }
    }
    const char *host = s;
    size_t hlen;
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return -EINVAL;
        host = s + 1;
        hlen = (size_t)(close - host);
        const char *pct = memchr(host, '%', hlen); /* a link-local scope */
        if (pct)
            hlen = (size_t)(pct - host);
        struct addr a;
        if (addr_parse(host, hlen, &a) < 0)
            return -EINVAL;
        *ret_addr = a;
        *ret_numeric = true;
        return 0;
    }
    hlen = 0;
    while (hlen < len && s[hlen] != ':' && s[hlen] != ';' && s[hlen] != '>')
        hlen++;
    if (hlen == 0 || hlen > 253 || hlen >= hostlen)
        return -EINVAL;
    for (size_t i = 0; i < hlen; i++)
        if (!name_char(host[i]))
            return -EINVAL;
    struct addr a;
    if (addr_parse(host, hlen, &a) == 0) {
        *ret_addr = a;
        *ret_numeric = true;
        return 0;
    }
    /* Dotted digits that are not an IPv4 address ("192.0.2.300") are not a name either. */
    bool digits_only = true;
    for (size_t i = 0; i < hlen && digits_only; i++)
        digits_only = (host[i] >= '0' && host[i] <= '9') || host[i] == '.';
    if (digits_only || host[0] == '.' || host[0] == '-')
        return -EINVAL;
    memcpy(ret_host, host, hlen);
    ret_host[hlen] = '\0';
    *ret_numeric = false;
    return 0;
}

/* --- frames --- */

static void copy_name(char *dst, size_t cap, const struct ami_header *h)
{
    size_t n = 0;
    if (h) {
        for (; n < h->value_len && n + 1 < cap; n++) {
            unsigned char c = (unsigned char)h->value[n];
            dst[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
    }
    dst[n] = '\0';
}

static bool value_is(const struct ami_header *h, const char *s)
{
    size_t n = strlen(s);
    return h && h->value_len == n && ami_caseeq(h->value, s, n);
}

static bool event_is(const struct ami_header *ev, const char *name)
{
    size_t n = strlen(name);
    return ev->value_len == n && memcmp(ev->value, name, n) == 0;
}

struct match_ctx {
    const struct ami_trust_fns *fns;
    void *data;
    struct ami_trust_item *item;
};

static void match_item(void *data, const struct addr_prefix *p)
{
    struct match_ctx *m = data;
    m->item->numeric = true;
    m->item->prefix = *p;
    m->fns->item(m->data, m->item);
}

/* A URI header: its host, numeric or a name, as an item of kind. */
static void uri_item(const struct ami_frame *f, const char *header, enum ami_trust_kind kind,
                     const struct ami_header *name, const struct ami_trust_fns *fns, void *data)
{
    const struct ami_header *h = ami_frame_get(f, header);
    if (!h || !h->value_len || !fns->item)
        return;
    struct ami_trust_item it;
    memset(&it, 0, sizeof(it));
    it.kind = kind;
    copy_name(it.name, sizeof(it.name), name);
    struct addr a;
    if (ami_trust_uri_host(h->value, h->value_len, it.host, sizeof(it.host), &a, &it.numeric) < 0)
        return;
    if (it.numeric)
        addr_prefix_of(&a, addr_max_len(&a), &it.prefix);
    fns->item(data, &it);
}

/* A static peer's IPaddress. */
static void peer_item(const struct ami_frame *f, const struct ami_trust_fns *fns, void *data)
{
    const struct ami_header *type = ami_frame_get(f, "Channeltype");
    const struct ami_header *ip = ami_frame_get(f, "IPaddress");
    if (!fns->item || !ip || !value_is(ami_frame_get(f, "Dynamic"), "no"))
        return;
    struct ami_trust_item it;
    memset(&it, 0, sizeof(it));
    if (value_is(type, "SIP"))
        it.kind = AMI_TRUST_SIP_PEER;
    else if (value_is(type, "IAX") || value_is(type, "IAX2"))
        it.kind = AMI_TRUST_IAX_PEER;
    else
        return;
    struct addr a;
    /* "-none-" (chan_sip) and "(null)" (chan_iax2) for a peer without an address do not parse;
     * neither does the unspecified address, which is no peer either. */
    if (addr_parse(ip->value, ip->value_len, &a) < 0)
        return;
    static const uint8_t zero[16];
    if (memcmp(a.bytes, zero, sizeof(zero)) == 0)
        return;
    copy_name(it.name, sizeof(it.name), ami_frame_get(f, "ObjectName"));
    it.numeric = true;
    addr_prefix_of(&a, addr_max_len(&a), &it.prefix);
    fns->item(data, &it);
}

static bool endpoint_name_ok(const struct ami_header *h)
{
    if (!h || h->value_len == 0 || h->value_len > 255)
        return false;
    for (size_t i = 0; i < h->value_len; i++) {
        unsigned char c = (unsigned char)h->value[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

bool ami_trust_from_frame(const struct ami_frame *f, const struct ami_trust_fns *fns, void *data,
                          bool *ret_complete)
{
    if (f->kind != AMI_FRAME_EVENT || f->nheaders == 0)
        return false;
    const struct ami_header *ev = &f->headers[0];
    const struct ami_header *name = ami_frame_get(f, "ObjectName");

    if (event_is(ev, "EndpointList")) {
        if (fns->endpoint && endpoint_name_ok(name))
            fns->endpoint(data, name->value, name->value_len);
        return true;
    }
    if (event_is(ev, "IdentifyDetail")) {
        const struct ami_header *m = ami_frame_get(f, "Match");
        if (m && fns->item) {
            struct ami_trust_item it;
            memset(&it, 0, sizeof(it));
            it.kind = AMI_TRUST_IDENTIFY;
            copy_name(it.name, sizeof(it.name), name);
            struct match_ctx ctx = {fns, data, &it};
            ami_trust_parse_match(m->value, m->value_len, match_item, &ctx);
        }
        return true;
    }
    if (event_is(ev, "ContactStatusDetail")) {
        /* Only static contacts: "AOR@@HASH" (a registered one is "AOR;@HASH"). */
        const struct ami_header *id = ami_frame_get(f, "ID");
        if (!id || !memmem(id->value, id->value_len, "@@", 2))
            return true;
        const struct ami_header *aor = ami_frame_get(f, "AOR");
        uri_item(f, "URI", AMI_TRUST_CONTACT, aor, fns, data);
        uri_item(f, "OutboundProxy", AMI_TRUST_CONTACT, aor, fns, data);
        return true;
    }
    if (event_is(ev, "OutboundRegistrationDetail")) {
        uri_item(f, "ServerUri", AMI_TRUST_REGISTRATION, name, fns, data);
        uri_item(f, "OutboundProxy", AMI_TRUST_REGISTRATION, name, fns, data);
        return true;
    }
    if (event_is(ev, "PeerEntry")) {
        peer_item(f, fns, data);
        return true;
    }
    const struct ami_header *list = ami_frame_get(f, "EventList");
    if (value_is(list, "Complete")) {
        if (ret_complete)
            *ret_complete = true;
        return true;
    }
    return false;
}
