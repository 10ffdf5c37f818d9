/* The runtime allowlist's bookkeeping: an array in insertion order. Commands and expiry walk it
 * (thousands of entries at most, a few times a second at most); the event path never does, it
 * asks the policy's index. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "allowlist.h"

struct allowlist {
    struct store_allow *v;
    unsigned n, cap, max;
    int64_t next_expiry; /* cached; 0 = none */
};

struct allowlist *allowlist_new(unsigned max)
{
    if (!max) {
        errno = EINVAL;
        return NULL;
    }
    struct allowlist *al = calloc(1, sizeof(*al));
    if (al)
        al->max = max;
    return al;
}

void allowlist_free(struct allowlist *al)
{
    if (!al)
        return;
    free(al->v);
    free(al);
}

static void recompute_expiry(struct allowlist *al)
{
    int64_t next = 0;
    for (unsigned i = 0; i < al->n; i++)
        if (al->v[i].expires_ms && (!next || al->v[i].expires_ms < next))
            next = al->v[i].expires_ms;
    al->next_expiry = next;
}

static int index_of(const struct allowlist *al, const struct addr_prefix *prefix)
{
    struct addr_prefix k;
    addr_prefix_of(&prefix->addr, prefix->len, &k);
    for (unsigned i = 0; i < al->n; i++)
        if (addr_prefix_equal(&al->v[i].prefix, &k))
            return (int)i;
    return -1;
}

int allowlist_add(struct allowlist *al, const struct store_allow *e, bool *ret_replaced)
{
    if (e->expires_ms && e->expires_ms <= e->added_ms)
        return -EINVAL;
    int i = index_of(al, &e->prefix);
    bool replaced = i >= 0;
    if (i < 0) {
        if (al->n >= al->max)
            return -ENOSPC;
        if (al->n == al->cap) {
            unsigned cap = al->cap ? al->cap * 2 : 16;
            if (cap > al->max)
                cap = al->max;
            struct store_allow *m = realloc(al->v, cap * sizeof(*m));
            if (!m)
                return -ENOMEM;
            al->v = m;
            al->cap = cap;
        }
        i = (int)al->n++;
    }
    if (ret_replaced)
        *ret_replaced = replaced;
    al->v[i] = *e;
    addr_prefix_of(&e->prefix.addr, e->prefix.len, &al->v[i].prefix);
    recompute_expiry(al);
    return 0;
}

int allowlist_remove(struct allowlist *al, const struct addr_prefix *prefix)
{
    int i = index_of(al, prefix);
    if (i < 0)
        return -ENOENT;
    memmove(&al->v[i], &al->v[i + 1], (al->n - (unsigned)i - 1) * sizeof(al->v[0]));
    al->n--;
    recompute_expiry(al);
    return 0;
}

const struct store_allow *allowlist_find(const struct allowlist *al,
                                         const struct addr_prefix *prefix)
{
    int i = index_of(al, prefix);
    return i < 0 ? NULL : &al->v[i];
}

const struct store_allow *allowlist_holding(const struct allowlist *al, const struct addr *a)
{
    const struct store_allow *best = NULL;
    struct addr_prefix q = {.addr = *a, .len = (uint8_t)addr_max_len(a)};
    for (unsigned i = 0; i < al->n; i++)
        if (addr_prefix_covers(&al->v[i].prefix, &q) &&
            (!best || al->v[i].prefix.len > best->prefix.len))
            best = &al->v[i];
    return best;
}

const struct store_allow *allowlist_entries(const struct allowlist *al, unsigned *ret_n)
{
    *ret_n = al->n;
    return al->v;
}

unsigned allowlist_max(const struct allowlist *al)
{
    return al->max;
}

int64_t allowlist_next_expiry(const struct allowlist *al)
{
    return al->next_expiry;
}

unsigned allowlist_expire(struct allowlist *al, int64_t now_ms, allowlist_fn fn, void *data)
{
    if (!al->next_expiry || al->next_expiry > now_ms)
        return 0;
    unsigned o = 0, gone = 0;
    for (unsigned i = 0; i < al->n; i++) {
        if (al->v[i].expires_ms && al->v[i].expires_ms <= now_ms) {
            if (fn)
                fn(data, &al->v[i]);
            gone++;
            continue;
        }
        al->v[o++] = al->v[i];
    }
    al->n = o;
    recompute_expiry(al);
    return gone;
}
