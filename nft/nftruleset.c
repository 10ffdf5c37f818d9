/* The ruleset: what our table looks like (sets, base chains, rules), building it in one
 * transaction, and comparing the kernel's view with it. Setup adopts a table that is already
 * right and replaces one that is not; the check and the monitor's fallback use the same
 * comparison, which only reads.
 *
 * Four sets (nftkey.h): single IPv4 addresses and IPv6 /64s in hash sets, other prefixes in
 * interval sets. The kernel fills a hash set about eight times faster than an interval (rbtree)
 * set, and rebuilds part of an rbtree's state on every commit, so restoring a million bans into
 * an interval set took half a minute here; the common keys take the fast path. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include "nftset_internal.h"

/* nft's datatype numbers, so `nft list` shows our sets with the right types. */
#define NFT_TYPE_IPADDR 7
#define NFT_TYPE_IP6ADDR 8
#define NFT_TYPE_INET_SERVICE 13

#define FORWARD_CHAIN "forward"
#define NET_SUFFIX "_net"
/* Changing what setup builds changes this, so an older table is replaced, not adopted. */
#define LAYOUT_VERSION "2"

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static bool name_ok(const char *n)
{
    size_t len = strnlen(n, CFG_NAME_MAX);
    return len > 0 && len < CFG_NAME_MAX && n[0] != '_';
}

/* A digest of everything the rules depend on, written as a comment on each rule: setup adopts a
 * table only if its rules carry the digest of the current configuration. */
static void make_fingerprint(struct nftset *s)
{
    char canon[512];
    size_t off = 0;
    const struct cfg_nftables *c = &s->cfg;

    off += (size_t)snprintf(canon + off, sizeof(canon) - off, "v%s %s %s tcp", LAYOUT_VERSION,
                            c->set4, c->set6);
    for (unsigned i = 0; i < c->ntcp_ports && off < sizeof(canon); i++)
        off += (size_t)snprintf(canon + off, sizeof(canon) - off, ",%u", c->tcp_ports[i]);
    if (off < sizeof(canon))
        off += (size_t)snprintf(canon + off, sizeof(canon) - off, " udp");
    for (unsigned i = 0; i < c->nudp_ports && off < sizeof(canon); i++)
        off += (size_t)snprintf(canon + off, sizeof(canon) - off, ",%u", c->udp_ports[i]);
    snprintf(s->fingerprint, sizeof(s->fingerprint), "pbxguard %016llx",
             (unsigned long long)fnv1a(canon));
}

int nftruleset_init(struct nftset *s, const struct cfg_nftables *cfg)
{
    if (!name_ok(cfg->table) || !name_ok(cfg->set4) || !name_ok(cfg->set6) ||
        !name_ok(cfg->chain) || strcmp(cfg->set4, cfg->set6) == 0 ||
        (cfg->hook_forward && strcmp(cfg->chain, FORWARD_CHAIN) == 0) ||
        cfg->ntcp_ports > CFG_PORTS_MAX || cfg->nudp_ports > CFG_PORTS_MAX)
        return -EINVAL;
    s->cfg = *cfg;
    s->interval = -1;
    snprintf(s->names[NFTKEY_HOST4], sizeof(s->names[0]), "%s", cfg->set4);
    snprintf(s->names[NFTKEY_NET4], sizeof(s->names[0]), "%s" NET_SUFFIX, cfg->set4);
    snprintf(s->names[NFTKEY_NET64], sizeof(s->names[0]), "%s", cfg->set6);
    snprintf(s->names[NFTKEY_NET6], sizeof(s->names[0]), "%s" NET_SUFFIX, cfg->set6);
    for (int k = 0; k < NFTKEY_NSETS; k++) {
        bool clash = false;
        for (int j = 0; j < k; j++)
            clash |= strcmp(s->names[j], s->names[k]) == 0;
        if (strlen(s->names[k]) >= CFG_NAME_MAX || clash)
            return -EINVAL;
    }
    make_fingerprint(s);
    return 0;
}

const char *nftset_mode(const struct nftset *s)
{
    return s->interval != 0
               ? "hash+timeout for addresses and /64s, interval+timeout for other prefixes"
               : "hash+timeout only: IPv4 addresses and IPv6 /64s (kernel lacks interval+timeout)";
}

/* ---- what our table should look like ----------------------------------------------------- */

struct want_chain {
    const char *name;
    uint32_t hooknum;
};

static unsigned want_chains(const struct nftset *s, struct want_chain out[2])
{
    unsigned n = 0;
    out[n++] = (struct want_chain){s->cfg.chain, NF_INET_LOCAL_IN};
    if (s->cfg.hook_forward)
        out[n++] = (struct want_chain){FORWARD_CHAIN, NF_INET_FORWARD};
    return n;
}

/* Without interval support (an old kernel) only the two hash sets exist. */
bool nftruleset_set_present(int interval, int k)
{
    return interval || !nftkey_set_is_interval(k);
}

static unsigned sets_present(int interval)
{
    return interval ? NFTKEY_NSETS : NFTKEY_NSETS - 2;
}

/* Rules per chain: per set, one rule for all traffic, or one per protocol with ports. */
static unsigned want_rules_per_chain(const struct nftset *s, int interval)
{
    unsigned per_set = 0;
    if (s->cfg.ntcp_ports == 0 && s->cfg.nudp_ports == 0)
        per_set = 1;
    else
        per_set = (s->cfg.ntcp_ports > 0) + (s->cfg.nudp_ports > 0);
    return sets_present(interval) * per_set;
}

/* ---- verification (setup's "is it right", and the periodic check) ------------------------- */

static int table_cb(const struct nlmsghdr *nlh, void *data)
{
    *(bool *)data = true;
    return MNL_CB_OK;
}

struct set_info {
    bool found;
    uint32_t flags, key_type, key_len, size;
};

static int set_cb(const struct nlmsghdr *nlh, void *data)
{
    struct set_info *si = data;
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set)
        return MNL_CB_ERROR;
    if (nftnl_set_nlmsg_parse(nlh, set) == 0) {
        si->found = true;
        si->flags = nftnl_set_get_u32(set, NFTNL_SET_FLAGS);
        si->key_type = nftnl_set_get_u32(set, NFTNL_SET_KEY_TYPE);
        si->key_len = nftnl_set_get_u32(set, NFTNL_SET_KEY_LEN);
        si->size = nftnl_set_is_set(set, NFTNL_SET_DESC_SIZE)
                       ? nftnl_set_get_u32(set, NFTNL_SET_DESC_SIZE)
                       : 0;
    }
    nftnl_set_free(set);
    return MNL_CB_OK;
}

struct chains_info {
    const struct nftset *s;
    unsigned ours, right;
};

static int chain_cb(const struct nlmsghdr *nlh, void *data)
{
    struct chains_info *ci = data;
    struct nftnl_chain *c = nftnl_chain_alloc();
    struct want_chain want[2];
    unsigned nwant = want_chains(ci->s, want);

    if (!c)
        return MNL_CB_ERROR;
    if (nftnl_chain_nlmsg_parse(nlh, c) == 0 &&
        strcmp(nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE), ci->s->cfg.table) == 0) {
        ci->ours++;
        const char *name = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
        for (unsigned i = 0; i < nwant; i++) {
            if (strcmp(name, want[i].name) != 0)
                continue;
            if (nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM) &&
                nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM) == want[i].hooknum &&
                (int32_t)nftnl_chain_get_u32(c, NFTNL_CHAIN_PRIO) == ci->s->cfg.priority &&
                nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE) &&
                strcmp(nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE), "filter") == 0 &&
                nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY) == NF_ACCEPT)
                ci->right++;
        }
    }
    nftnl_chain_free(c);
    return MNL_CB_OK;
}

struct rules_info {
    const char *table, *chain;
    const char *fingerprint;
    unsigned n, marked;
};

static int comment_cb(const struct nftnl_udata *attr, void *data)
{
    const char **comment = data;
    if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT && nftnl_udata_len(attr) > 0) {
        const char *v = nftnl_udata_get(attr);
        if (v[nftnl_udata_len(attr) - 1] == '\0')
            *comment = v;
    }
    return 0;
}

static int rule_cb(const struct nlmsghdr *nlh, void *data)
{
    struct rules_info *ri = data;
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (!r)
        return MNL_CB_ERROR;
    /* Older kernels ignore the table and chain of a rule dump and send every rule of the
     * family: counting the admin's rules as ours would make every check see damage. */
    const char *table = NULL, *chain = NULL;
    if (nftnl_rule_nlmsg_parse(nlh, r) == 0 && (table = nftnl_rule_get_str(r, NFTNL_RULE_TABLE)) &&
        strcmp(table, ri->table) == 0 && (chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN)) &&
        strcmp(chain, ri->chain) == 0) {
        ri->n++;
        uint32_t len = 0;
        const void *ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
        const char *comment = NULL;
        if (ud && len > 0)
            nftnl_udata_parse(ud, len, comment_cb, &comment);
        if (comment && strcmp(comment, ri->fingerprint) == 0)
            ri->marked++;
    }
    nftnl_rule_free(r);
    return MNL_CB_OK;
}

static int get_set(struct nftset *s, const char *name, struct set_info *ret)
{
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set)
        return -ENOMEM;
    nftnl_set_set_str(set, NFTNL_SET_TABLE, s->cfg.table);
    nftnl_set_set_str(set, NFTNL_SET_NAME, name);
    struct nlmsghdr *nlh = nftmnl_req(s, NFT_MSG_GETSET, 0);
    nftnl_set_nlmsg_build_payload(nlh, set);
    nftnl_set_free(set);
    memset(ret, 0, sizeof(*ret));
    int r = nftmnl_talk(s, nlh, set_cb, ret);
    return r == -ENOENT ? 0 : r;
}

static bool set_right(const struct nftset *s, const struct set_info *si, int k)
{
    bool v6 = nftkey_set_is_v6(k);
    uint32_t flags = NFT_SET_TIMEOUT | (nftkey_set_is_interval(k) ? NFT_SET_INTERVAL : 0);
    return si->found && si->key_type == (v6 ? NFT_TYPE_IP6ADDR : NFT_TYPE_IPADDR) &&
           si->key_len == (v6 ? 16u : 4u) && si->flags == flags && si->size == s->cfg.set_size;
}

/* Compares the kernel's view of our table with what setup would build. Sets s->interval from
 * the sets' flags when it was not probed yet. Returns an enum verdict or -errno. */
int nftruleset_verify(struct nftset *s)
{
    bool found = false;
    struct nftnl_table *t = nftnl_table_alloc();
    if (!t)
        return -ENOMEM;
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, s->cfg.table);
    struct nlmsghdr *nlh = nftmnl_req(s, NFT_MSG_GETTABLE, 0);
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
    int r = nftmnl_talk(s, nlh, table_cb, &found);
    if (r == -ENOENT || (r == 0 && !found))
        return NFTRULESET_MISSING;
    if (r < 0)
        return r;

    struct set_info si[NFTKEY_NSETS];
    for (int k = 0; k < NFTKEY_NSETS; k++)
        if ((r = get_set(s, s->names[k], &si[k])) < 0)
            return r;
    int interval = s->interval;
    if (interval < 0)
        interval = si[NFTKEY_NET4].found;
    for (int k = 0; k < NFTKEY_NSETS; k++) {
        if (nftruleset_set_present(interval, k) ? !set_right(s, &si[k], k) : si[k].found)
            return NFTRULESET_WRONG;
    }

    struct chains_info ci = {.s = s};
    nlh = nftmnl_req(s, NFT_MSG_GETCHAIN, NLM_F_DUMP);
    if ((r = nftmnl_talk(s, nlh, chain_cb, &ci)) < 0)
        return r;
    struct want_chain want[2];
    unsigned nwant = want_chains(s, want);
    if (ci.ours != nwant || ci.right != nwant)
        return NFTRULESET_WRONG;

    for (unsigned i = 0; i < nwant; i++) {
        struct rules_info ri = {
            .table = s->cfg.table, .chain = want[i].name, .fingerprint = s->fingerprint};
        struct nftnl_rule *rule = nftnl_rule_alloc();
        if (!rule)
            return -ENOMEM;
        nftnl_rule_set_str(rule, NFTNL_RULE_TABLE, s->cfg.table);
        nftnl_rule_set_str(rule, NFTNL_RULE_CHAIN, want[i].name);
        nlh = nftmnl_req(s, NFT_MSG_GETRULE, NLM_F_DUMP);
        nftnl_rule_nlmsg_build_payload(nlh, rule);
        nftnl_rule_free(rule);
        if ((r = nftmnl_talk(s, nlh, rule_cb, &ri)) < 0)
            return r;
        if (ri.n != want_rules_per_chain(s, interval) || ri.marked != ri.n)
            return NFTRULESET_WRONG;
    }
    s->interval = interval;
    return NFTRULESET_RIGHT;
}

int nftset_check(struct nftset *s, bool *ret_damaged)
{
    int r = nftruleset_verify(s);
    if (r < 0)
        return r;
    *ret_damaged = r != NFTRULESET_RIGHT;
    return 0;
}

/* ---- setup -------------------------------------------------------------------------------- */

static int add_expr(struct nftnl_rule *r, struct nftnl_expr *e)
{
    if (!e)
        return -ENOMEM;
    nftnl_rule_add_expr(r, e);
    return 0;
}

static struct nftnl_expr *expr_meta(uint32_t key)
{
    struct nftnl_expr *e = nftnl_expr_alloc("meta");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
    }
    return e;
}

static struct nftnl_expr *expr_cmp(const void *data, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("cmp");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
        nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    }
    return e;
}

static struct nftnl_expr *expr_payload(uint32_t base, uint32_t offset, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("payload");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    }
    return e;
}

static struct nftnl_expr *expr_lookup(const char *set, uint32_t set_id)
{
    struct nftnl_expr *e = nftnl_expr_alloc("lookup");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
    }
    return e;
}

static struct nftnl_expr *expr_drop(void)
{
    struct nftnl_expr *e = nftnl_expr_alloc("immediate");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_DROP);
    }
    return e;
}

static void put_set(struct nftmnl_txn *t, const char *name, uint32_t id, uint32_t flags,
                    uint32_t type, uint32_t len, uint32_t size)
{
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set)
        return;
    nftnl_set_set_str(set, NFTNL_SET_TABLE, t->s->cfg.table);
    nftnl_set_set_str(set, NFTNL_SET_NAME, name);
    nftnl_set_set_u32(set, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(set, NFTNL_SET_FLAGS, flags);
    nftnl_set_set_u32(set, NFTNL_SET_KEY_TYPE, type);
    nftnl_set_set_u32(set, NFTNL_SET_KEY_LEN, len);
    nftnl_set_set_u32(set, NFTNL_SET_ID, id);
    if (size)
        nftnl_set_set_u32(set, NFTNL_SET_DESC_SIZE, size);
    struct nlmsghdr *nlh = nftmnl_txn_msg(t, NFT_MSG_NEWSET, NLM_F_CREATE);
    nftnl_set_nlmsg_build_payload(nlh, set);
    nftnl_set_free(set);
}

/* An anonymous constant set of ports, bound to the rule that follows it. */
static void put_port_set(struct nftmnl_txn *t, uint32_t id, const uint16_t *ports, unsigned n)
{
    put_set(t, "__set%d", id, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT, NFT_TYPE_INET_SERVICE, 2, 0);
    struct nlmsghdr *nlh = nftmnl_txn_msg(t, NFT_MSG_NEWSETELEM, NLM_F_CREATE);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, t->s->cfg.table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, "__set%d");
    mnl_attr_put_u32(nlh, NFTA_SET_ELEM_LIST_SET_ID, htonl(id));
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    for (unsigned i = 0; i < n; i++) {
        uint16_t port = htons(ports[i]);
        struct nlattr *el = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);
        struct nlattr *key = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
        mnl_attr_put(nlh, NFTA_DATA_VALUE, sizeof(port), &port);
        mnl_attr_nest_end(nlh, key);
        mnl_attr_nest_end(nlh, el);
    }
    mnl_attr_nest_end(nlh, list);
}

static struct nftnl_expr *expr_mask64(void)
{
    static const uint8_t mask[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t zero[16];
    struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof(mask));
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, sizeof(mask));
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, sizeof(zero));
    }
    return e;
}

/* "ip saddr @set", "ip6 saddr & ffff:ffff:ffff:ffff:: @set" or "ip6 saddr @set", then
 * optionally "meta l4proto P th dport @ports", then "counter drop", with our fingerprint. */
static int put_rule(struct nftmnl_txn *t, const char *chain, int k, uint8_t l4proto,
                    uint32_t ports_id)
{
    struct nftset *s = t->s;
    bool v6 = nftkey_set_is_v6(k);
    uint32_t set_id = (uint32_t)k + 1;
    struct nftnl_rule *r = nftnl_rule_alloc();
    struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFTNL_UDATA_COMMENT_MAXLEN + 8);
    uint8_t nfproto = v6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
    int ret = -ENOMEM;

    if (!r || !ud)
        goto out;
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, s->cfg.table);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
    if (add_expr(r, expr_meta(NFT_META_NFPROTO)) < 0 || add_expr(r, expr_cmp(&nfproto, 1)) < 0 ||
        add_expr(r, expr_payload(NFT_PAYLOAD_NETWORK_HEADER, v6 ? 8 : 12, v6 ? 16 : 4)) < 0 ||
        (k == NFTKEY_NET64 && add_expr(r, expr_mask64()) < 0) ||
        add_expr(r, expr_lookup(s->names[k], set_id)) < 0)
        goto out;
    if (l4proto) {
        if (add_expr(r, expr_meta(NFT_META_L4PROTO)) < 0 ||
            add_expr(r, expr_cmp(&l4proto, 1)) < 0 ||
            add_expr(r, expr_payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)) < 0 ||
            add_expr(r, expr_lookup("__set%d", ports_id)) < 0)
            goto out;
    }
    if (add_expr(r, nftnl_expr_alloc("counter")) < 0 || add_expr(r, expr_drop()) < 0)
        goto out;
    if (!nftnl_udata_put_strz(ud, NFTNL_UDATA_RULE_COMMENT, s->fingerprint))
        goto out;
    nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud), nftnl_udata_buf_len(ud));
    struct nlmsghdr *nlh = nftmnl_txn_msg(t, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    ret = 0;
out:
    nftnl_udata_buf_free(ud);
    nftnl_rule_free(r);
    return ret;
}

/* (Re)creates the whole table in one transaction. */
static int create(struct nftset *s, bool replace, int interval)
{
    struct nftmnl_txn t;
    struct want_chain want[2];
    unsigned nwant = want_chains(s, want);
    uint32_t next_id = NFTKEY_NSETS + 1;
    int r;

    nftmnl_txn_begin(s, &t);
    struct nftnl_table *tab = nftnl_table_alloc();
    if (!tab)
        return -ENOMEM;
    nftnl_table_set_str(tab, NFTNL_TABLE_NAME, s->cfg.table);
    nftnl_table_set_u32(tab, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    if (replace)
        nftnl_table_nlmsg_build_payload(nftmnl_txn_msg(&t, NFT_MSG_DELTABLE, 0), tab);
    nftnl_table_nlmsg_build_payload(nftmnl_txn_msg(&t, NFT_MSG_NEWTABLE, NLM_F_CREATE), tab);
    nftnl_table_free(tab);

    for (int k = 0; k < NFTKEY_NSETS; k++) {
        if (!nftruleset_set_present(interval, k))
            continue;
        bool v6 = nftkey_set_is_v6(k);
        put_set(&t, s->names[k], (uint32_t)k + 1,
                NFT_SET_TIMEOUT | (nftkey_set_is_interval(k) ? NFT_SET_INTERVAL : 0),
                v6 ? NFT_TYPE_IP6ADDR : NFT_TYPE_IPADDR, v6 ? 16 : 4, s->cfg.set_size);
    }

    for (unsigned i = 0; i < nwant; i++) {
        struct nftnl_chain *c = nftnl_chain_alloc();
        if (!c)
            return -ENOMEM;
        nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, s->cfg.table);
        nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, want[i].name);
        nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, want[i].hooknum);
        nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, s->cfg.priority);
        nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter");
        nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
        nftnl_chain_nlmsg_build_payload(nftmnl_txn_msg(&t, NFT_MSG_NEWCHAIN, NLM_F_CREATE), c);
        nftnl_chain_free(c);

        for (int k = 0; k < NFTKEY_NSETS; k++) {
            if (!nftruleset_set_present(interval, k))
                continue;
            if (s->cfg.ntcp_ports == 0 && s->cfg.nudp_ports == 0) {
                if ((r = put_rule(&t, want[i].name, k, 0, 0)) < 0)
                    return r;
                continue;
            }
            if (s->cfg.ntcp_ports > 0) {
                put_port_set(&t, next_id, s->cfg.tcp_ports, s->cfg.ntcp_ports);
                if ((r = put_rule(&t, want[i].name, k, IPPROTO_TCP, next_id++)) < 0)
                    return r;
            }
            if (s->cfg.nudp_ports > 0) {
                put_port_set(&t, next_id, s->cfg.udp_ports, s->cfg.nudp_ports);
                if ((r = put_rule(&t, want[i].name, k, IPPROTO_UDP, next_id++)) < 0)
                    return r;
            }
        }
    }
    r = nftmnl_txn_send(&t);
    if (r < 0)
        return r;
    for (unsigned i = 0; i < t.n; i++)
        if (s->msgs[i].err)
            return s->msgs[i].err;
    return 0;
}

int nftset_setup(struct nftset *s, enum nftset_setup_action *ret_action)
{
    int v = nftruleset_verify(s);
    if (v < 0)
        return v;
    if (v == NFTRULESET_RIGHT) {
        *ret_action = NFTSET_ADOPTED;
        return 0;
    }
    int want = s->interval != 0;
    int r = create(s, v == NFTRULESET_WRONG, want);
    if (r < 0 && s->interval < 0 && (r == -EOPNOTSUPP || r == -EINVAL)) {
        /* The probe: this kernel has no set type with interval + timeout. */
        want = 0;
        r = create(s, v == NFTRULESET_WRONG, want);
    }
    if (r < 0)
        return r;
    s->interval = want;
    *ret_action = v == NFTRULESET_WRONG ? NFTSET_REPLACED : NFTSET_CREATED;
    return 0;
}

int nftset_teardown(struct nftset *s)
{
    struct nftmnl_txn t;
    struct nftnl_table *tab = nftnl_table_alloc();
    if (!tab)
        return -ENOMEM;
    nftmnl_txn_begin(s, &t);
    nftnl_table_set_str(tab, NFTNL_TABLE_NAME, s->cfg.table);
    nftnl_table_nlmsg_build_payload(nftmnl_txn_msg(&t, NFT_MSG_DELTABLE, 0), tab);
    nftnl_table_free(tab);
    int r = nftmnl_txn_send(&t);
    if (r == 0)
        r = s->msgs[0].err;
    return r == -ENOENT ? 0 : r;
}
