#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int addr_parse(const char *s, size_t len, struct addr *ret_addr)
{
    char buf[INET6_ADDRSTRLEN + 1];
    struct addr a;

    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(&a, 0, sizeof(a));
    if (memchr(buf, ':', len)) {
        if (inet_pton(AF_INET6, buf, a.bytes) != 1)
            return -EINVAL;
        if (memcmp(a.bytes, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
            memmove(a.bytes, a.bytes + 12, 4);
            memset(a.bytes + 4, 0, 12);
            a.family = AF_INET;
        } else {
            a.family = AF_INET6;
        }
    } else {
        if (inet_pton(AF_INET, buf, a.bytes) != 1)
            return -EINVAL;
        a.family = AF_INET;
    }
    *ret_addr = a;
    return 0;
}

unsigned addr_max_len(const struct addr *a)
{
    return a->family == AF_INET ? 32 : 128;
}

static void mask_bytes(uint8_t bytes[16], unsigned len)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned bit = i * 8;
        if (bit >= len)
            bytes[i] = 0;
        else if (len - bit < 8)
            bytes[i] &= (uint8_t)(0xff << (8 - (len - bit)));
    }
}

void addr_prefix_of(const struct addr *a, unsigned len, struct addr_prefix *ret_prefix)
{
    unsigned max = addr_max_len(a);
    struct addr_prefix p = {.addr = *a, .len = (uint8_t)(len > max ? max : len)};
    mask_bytes(p.addr.bytes, p.len);
    *ret_prefix = p;
}

int addr_prefix_parse(const char *s, bool allow_host_bits, struct addr_prefix *ret_prefix)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    struct addr a;
    unsigned len;

    if (addr_parse(s, alen, &a) < 0)
        return -EINVAL;
    if (slash) {
        const char *p = slash + 1;
        char *end;
        if (*p < '0' || *p > '9' || strlen(p) > 3)
            return -EINVAL;
        unsigned long v = strtoul(p, &end, 10);
        if (*end != '\0' || v > addr_max_len(&a))
            return -EINVAL;
        len = (unsigned)v;
        /* An IPv4-mapped address with a length is ambiguous (v6 or v4 bits?): refuse it. */
        if (a.family == AF_INET && memchr(s, ':', alen))
            return -EINVAL;
    } else {
        len = addr_max_len(&a);
    }
    struct addr_prefix p;
    addr_prefix_of(&a, len, &p);
    if (!allow_host_bits && !addr_equal(&p.addr, &a))
        return -EINVAL;
    *ret_prefix = p;
    return 0;
}

bool addr_equal(const struct addr *a, const struct addr *b)
{
    return a->family == b->family && memcmp(a->bytes, b->bytes, 16) == 0;
}

bool addr_prefix_equal(const struct addr_prefix *a, const struct addr_prefix *b)
{
    return a->len == b->len && addr_equal(&a->addr, &b->addr);
}

bool addr_prefix_contains(const struct addr_prefix *p, const struct addr *a)
{
    if (p->addr.family != a->family)
        return false;
    struct addr_prefix q;
    addr_prefix_of(a, p->len, &q);
    return addr_equal(&q.addr, &p->addr);
}

bool addr_prefix_covers(const struct addr_prefix *outer, const struct addr_prefix *inner)
{
    return inner->len >= outer->len && addr_prefix_contains(outer, &inner->addr);
}

bool addr_is_loopback(const struct addr *a)
{
    static const uint8_t v6_loopback[16] = {[15] = 1};
    if (a->family == AF_INET)
        return a->bytes[0] == 127;
    return memcmp(a->bytes, v6_loopback, 16) == 0;
}

const char *addr_format(const struct addr *a, char *buf, size_t buflen)
{
    if (!inet_ntop(a->family == AF_INET ? AF_INET : AF_INET6, a->bytes, buf, (socklen_t)buflen))
        snprintf(buf, buflen, "?");
    return buf;
}

const char *addr_prefix_format(const struct addr_prefix *p, char *buf, size_t buflen)
{
    addr_format(&p->addr, buf, buflen);
    if (p->len != addr_max_len(&p->addr)) {
        size_t n = strlen(buf);
        snprintf(buf + n, buflen - n, "/%u", p->len);
    }
    return buf;
}
