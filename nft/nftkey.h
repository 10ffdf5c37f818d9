/* Pure logic of the nftables layer, kept apart from the netlink I/O so it can be unit tested:
 * how a prefix becomes the [start, end) keys of an interval set, and back. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

/* Keys of an interval set element: the prefix's first address, and the first address after it
 * (flagged "interval end"). The prefix that ends at the top of the address space has no end
 * key: the kernel treats an open start as reaching to the end. */
struct nftkey_interval {
    uint8_t len; /* key length: 4 or 16 */
    uint8_t start[16];
    uint8_t end[16];
    bool has_end;
};

void nftkey_interval_of(const struct addr_prefix *p, struct nftkey_interval *ret_iv);

/* The prefix whose interval is [start, end) (end NULL = to the top of the address space).
 * Returns 0, or -EINVAL if the range is not exactly one prefix. */
int nftkey_prefix_of(int family, const uint8_t *start, const uint8_t *end,
                     struct addr_prefix *ret_prefix);

/* Our sets. Single IPv4 addresses and IPv6 /64 networks (the policy's default keys) live in hash
 * sets, which the kernel fills several times faster than interval (rbtree) sets; the /64 set is
 * matched with the source address masked to /64. Every other prefix lives in an interval set. */
enum nftkey_set {
    NFTKEY_HOST4 = 0, /* set4: IPv4 /32, hash */
    NFTKEY_NET4,      /* set4 + "_net": other IPv4 prefixes, interval */
    NFTKEY_NET64,     /* set6: IPv6 /64, hash, masked lookup */
    NFTKEY_NET6,      /* set6 + "_net": other IPv6 prefixes, interval */
    NFTKEY_NSETS
};

enum nftkey_set nftkey_set_of(const struct addr_prefix *p);
bool nftkey_set_is_interval(enum nftkey_set k);
bool nftkey_set_is_v6(enum nftkey_set k);
