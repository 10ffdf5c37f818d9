/* The nftables layer's object: opening and closing it, lookups of single addresses, and words
 * for its errors. See nftset.h for the contract and nftset_internal.h for how the work is
 * divided between the files. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libnftnl/set.h>
#include <linux/netfilter/nf_tables.h>

#include "nftset_internal.h"

/* ---- open / free ------------------------------------------------------------------------ */

struct nftset *nftset_open(const struct cfg_nftables *cfg)
{
    struct nftset *s = calloc(1, sizeof(*s));
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    s->destroy = -1;
    int r = nftruleset_init(s, cfg);
    if (r == 0)
        r = nftmnl_open(s);
    if (r < 0) {
        nftset_free(s);
        errno = -r;
        return NULL;
    }
    return s;
}

void nftset_free(struct nftset *s)
{
    if (!s)
        return;
    nftmnl_close(s);
    free(s->q);
    free(s);
}

/* ---- single-element lookup ---------------------------------------------------------------- */

struct elem_info {
    bool found;
    uint8_t key[16];
    uint32_t flags;
    uint64_t expires_ms;
    bool has_timeout;
};

static int elem_cb(const struct nlmsghdr *nlh, void *data)
{
    struct elem_info *ei = data;
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set)
        return MNL_CB_ERROR;
    if (nftnl_set_elems_nlmsg_parse(nlh, set) == 0) {
        struct nftnl_set_elems_iter *it = nftnl_set_elems_iter_create(set);
        struct nftnl_set_elem *el = it ? nftnl_set_elems_iter_next(it) : NULL;
        if (el) {
            uint32_t len = 0;
            const void *key = nftnl_set_elem_get(el, NFTNL_SET_ELEM_KEY, &len);
            if (key && len <= sizeof(ei->key)) {
                ei->found = true;
                memcpy(ei->key, key, len);
                ei->flags = nftnl_set_elem_is_set(el, NFTNL_SET_ELEM_FLAGS)
                                ? nftnl_set_elem_get_u32(el, NFTNL_SET_ELEM_FLAGS)
                                : 0;
                ei->has_timeout = nftnl_set_elem_is_set(el, NFTNL_SET_ELEM_TIMEOUT);
                ei->expires_ms = nftnl_set_elem_is_set(el, NFTNL_SET_ELEM_EXPIRATION)
                                     ? nftnl_set_elem_get_u64(el, NFTNL_SET_ELEM_EXPIRATION)
                                     : 0;
            }
        }
        if (it)
            nftnl_set_elems_iter_destroy(it);
    }
    nftnl_set_free(set);
    return MNL_CB_OK;
}

static int get_elem(struct nftset *s, const char *set, const uint8_t *key, unsigned len,
                    uint32_t flags, struct elem_info *ret)
{
    struct nlmsghdr *nlh = nftmnl_req(s, NFT_MSG_GETSETELEM, 0);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, s->cfg.table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set);
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    nftmnl_put_key(nlh, key, len, flags, 0);
    mnl_attr_nest_end(nlh, list);
    memset(ret, 0, sizeof(*ret));
    int r = nftmnl_talk(s, nlh, elem_cb, ret);
    if (r == 0 && !ret->found)
        r = -ENOENT;
    return r;
}

int nftset_contains(struct nftset *s, const struct addr *a, struct addr_prefix *ret_prefix,
                    uint64_t *ret_expires_ms)
{
    struct addr_prefix host, p;
    struct nftkey_interval iv;
    struct elem_info start, end;

    if (a->family != AF_INET && a->family != AF_INET6)
        return -EINVAL;
    /* First the hash set of the common keys: the address itself, or its /64. */
    addr_prefix_of(a, a->family == AF_INET ? 32 : 64, &host);
    nftkey_interval_of(&host, &iv);
    int r = get_elem(s, s->names[nftkey_set_of(&host)], iv.start, iv.len, 0, &start);
    if (r < 0 && r != -ENOENT)
        return r;
    if (r == 0) {
        p = host;
    } else if (!s->interval) {
        return -ENOENT;
    } else {
        /* In an interval set the kernel answers with the start of the interval holding the
         * key; asked for an interval end, with the end that closes it. */
        const char *set = s->names[a->family == AF_INET ? NFTKEY_NET4 : NFTKEY_NET6];
        addr_prefix_of(a, addr_max_len(a), &host);
        nftkey_interval_of(&host, &iv);
        r = get_elem(s, set, iv.start, iv.len, 0, &start);
        if (r < 0)
            return r;
        r = get_elem(s, set, iv.start, iv.len, NFT_SET_ELEM_INTERVAL_END, &end);
        if (r < 0 && r != -ENOENT)
            return r;
        if (nftkey_prefix_of(a->family, start.key, r == 0 ? end.key : NULL, &p) < 0)
            return -EIO;
    }
    *ret_prefix = p;
    if (ret_expires_ms)
        *ret_expires_ms = start.has_timeout ? (start.expires_ms ? start.expires_ms : 1) : 0;
    return 0;
}

/* ---- words -------------------------------------------------------------------------------- */

const char *nftset_strerror(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case EPERM:
        return "needs CAP_NET_ADMIN (run as root or grant the capability)";
    case EAFNOSUPPORT:
    case EPROTONOSUPPORT:
    case EOPNOTSUPP:
        return "the kernel lacks nf_tables support (load nf_tables or use a kernel with it)";
    case ENOSPC:
        return "the set is full (raise [nftables] set_size)";
    case ENOTEMPTY:
        return "overlaps another banned prefix";
    case ENOENT:
        return "not in the set";
    case ECANCELED:
        return "not applied: its transaction kept failing";
    case EEXIST:
        return "the table of the configured name is not pbxguard's (it lacks the pbxguard mark)";
    case EBUSY:
        return "the table kept changing while it was being set up";
    default:
        return strerror(err);
    }
}
