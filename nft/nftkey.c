#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "nftkey.h"

void nftkey_interval_of(const struct addr_prefix *p, struct nftkey_interval *ret_iv)
{
    struct nftkey_interval iv;
    unsigned max = addr_max_len(&p->addr);
    unsigned len = p->len > max ? max : p->len;

    memset(&iv, 0, sizeof(iv));
    iv.len = (uint8_t)(max / 8);
    memcpy(iv.start, p->addr.bytes, iv.len);
    memcpy(iv.end, p->addr.bytes, iv.len);
    /* end = start + 2^(max - len): add one at the prefix's last bit and carry leftwards. */
    if (len == 0) {
        iv.has_end = false;
        *ret_iv = iv;
        return;
    }
    unsigned bit = len - 1;
    int i = (int)(bit / 8);
    unsigned add = 1u << (7 - bit % 8);
    iv.has_end = false;
    for (; i >= 0; i--) {
        unsigned v = iv.end[i] + add;
        iv.end[i] = (uint8_t)v;
        if (v < 0x100) {
            iv.has_end = true;
            break;
        }
        add = 1;
    }
    if (!iv.has_end)
        memset(iv.end, 0, sizeof(iv.end));
    *ret_iv = iv;
}

int nftkey_prefix_of(int family, const uint8_t *start, const uint8_t *end,
                     struct addr_prefix *ret_prefix)
{
    struct addr_prefix p;
    struct nftkey_interval iv;

    if (family != AF_INET && family != AF_INET6)
        return -EINVAL;
    memset(&p, 0, sizeof(p));
    p.addr.family = (uint8_t)family;
    unsigned max = family == AF_INET ? 32 : 128;
    memcpy(p.addr.bytes, start, max / 8);
    /* The longest prefix whose host bits in start are all zero and whose end matches. */
    for (unsigned len = max + 1; len-- > 0;) {
        struct addr_prefix q;
        addr_prefix_of(&p.addr, len, &q);
        if (!addr_equal(&q.addr, &p.addr))
            break;
        nftkey_interval_of(&q, &iv);
        if (end ? (iv.has_end && memcmp(iv.end, end, iv.len) == 0) : !iv.has_end) {
            *ret_prefix = q;
            return 0;
        }
    }
    return -EINVAL;
}

enum nftkey_set nftkey_set_of(const struct addr_prefix *p)
{
    if (p->addr.family == AF_INET)
        return p->len >= 32 ? NFTKEY_HOST4 : NFTKEY_NET4;
    return p->len == 64 ? NFTKEY_NET64 : NFTKEY_NET6;
}

bool nftkey_set_is_interval(enum nftkey_set k)
{
    return k == NFTKEY_NET4 || k == NFTKEY_NET6;
}

bool nftkey_set_is_v6(enum nftkey_set k)
{
    return k == NFTKEY_NET64 || k == NFTKEY_NET6;
}
