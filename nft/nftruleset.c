/* The ruleset: what our table looks like (sets, base chains, rules), building it in one
 * transaction, and comparing the kernel's view with it. Setup adopts a table that is already
 * right and replaces one that is not; the check and the monitor's fallback use the same
 * comparison, which only reads.
 *
 * Whose table: ours carries a mark, the table's comment "pbxguard format N". The kernel takes a
 * table's comment only when the table is made, so nobody marks an existing table after the
 * fact. A table of our name without the mark is someone else's, unless it is exactly a table
 * we build with nothing else in it (one from before the mark). Someone else's table is never
 * changed nor deleted: setup and teardown refuse it, and commits send nothing to it. A replace
 * deletes the table by the handle we looked at and creates ours exclusively, so a table that
 * took the name in between makes the transaction fail rather than be deleted or joined.
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
#include <linux/netfilter/nfnetlink.h>

#include "nftset_internal.h"

/* nft's datatype numbers, so `nft list` shows our sets with the right types. */
#define NFT_TYPE_IPADDR 7
#define NFT_TYPE_IP6ADDR 8
#define NFT_TYPE_INET_SERVICE 13

#define FORWARD_CHAIN "forward"
#define NET_SUFFIX "_net"
/* The format of the table setup builds, written in its mark (the table's comment, "pbxguard
 * format 3 ..."). Changing what setup builds changes this, so an older table is replaced, not
 * adopted. Tables from before the mark were format 2. */
#define TABLE_FORMAT 3
#define LEGACY_FORMAT 2
#define MARK_PREFIX "pbxguard format "
#define MARK_WORDS "(managed by pbxguardd: do not add to it)"

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

/* A digest of the table's format and everything the rules depend on, written as a comment on
 * each rule: setup adopts a table only if its rules carry the digest of the current
 * configuration. */
static void make_fingerprint(const struct cfg_nftables *c, unsigned format, char *out,
                             size_t outlen)
{
    char canon[512];
    size_t off = 0;

    off += (size_t)snprintf(canon + off, sizeof(canon) - off, "v%u %s %s tcp", format, c->set4,
                            c->set6);
    for (unsigned i = 0; i < c->ntcp_ports && off < sizeof(canon); i++)
        off += (size_t)snprintf(canon + off, sizeof(canon) - off, ",%u", c->tcp_ports[i]);
    if (off < sizeof(canon))
        off += (size_t)snprintf(canon + off, sizeof(canon) - off, " udp");
    for (unsigned i = 0; i < c->nudp_ports && off < sizeof(canon); i++)
        off += (size_t)snprintf(canon + off, sizeof(canon) - off, ",%u", c->udp_ports[i]);
    snprintf(out, outlen, "pbxguard %016llx", (unsigned long long)fnv1a(canon));
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
    make_fingerprint(cfg, TABLE_FORMAT, s->fingerprint, sizeof(s->fingerprint));
    make_fingerprint(cfg, LEGACY_FORMAT, s->legacy_fingerprint, sizeof(s->legacy_fingerprint));
    s->marks = -1;
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

/* ---- verification (setup's "is it ours, is it right", and the periodic check) ------------ */

/* The first comment (udata type 0, the same number for tables and rules) of an object, or
 * NULL. */
static int comment_cb(const struct nftnl_udata *attr, void *data)
{
    const char **comment = data;
    if (nftnl_udata_type(attr) == NFTNL_UDATA_TABLE_COMMENT && nftnl_udata_len(attr) > 0) {
        const char *v = nftnl_udata_get(attr);
        if (v[nftnl_udata_len(attr) - 1] == '\0')
            *comment = v;
    }
    return 0;
}

static const char *udata_comment(const void *ud, uint32_t len)
{
    const char *comment = NULL;
    if (ud && len > 0)
        nftnl_udata_parse(ud, len, comment_cb, &comment);
    return comment;
}

/* The format a table's comment marks it with ("pbxguard format N", maybe followed by words
 * after a space), or 0 if it carries no mark. */
static unsigned mark_format(const char *comment)
{
    size_t plen = strlen(MARK_PREFIX);
    unsigned v = 0, digits = 0;
    if (!comment || strncmp(comment, MARK_PREFIX, plen) != 0)
        return 0;
    const char *p = comment + plen;
    for (; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
        v = v * 10 + (unsigned)(*p - '0');
    return digits > 0 && (*p == '\0' || *p == ' ') ? v : 0;
}

struct table_info {
    bool found;
    uint64_t handle;
    unsigned format; /* 0 = no mark */
};

static int table_cb(const struct nlmsghdr *nlh, void *data)
{
    struct table_info *ti = data;
    struct nftnl_table *t = nftnl_table_alloc();
    if (!t)
        return MNL_CB_ERROR;
    if (nftnl_table_nlmsg_parse(nlh, t) == 0) {
        uint32_t len = 0;
        const void *ud = nftnl_table_get_data(t, NFTNL_TABLE_USERDATA, &len);
        ti->found = true;
        ti->handle = nftnl_table_get_u64(t, NFTNL_TABLE_HANDLE);
        ti->format = mark_format(udata_comment(ud, len));
    }
    nftnl_table_free(t);
    return MNL_CB_OK;
}

/* Our table's handle and mark: 0 and ret->found, 0 and !ret->found if there is none, or
 * -errno. */
static int get_table(struct nftset *s, struct table_info *ret)
{
    struct nftnl_table *t = nftnl_table_alloc();
    if (!t)
        return -ENOMEM;
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, s->cfg.table);
    struct nlmsghdr *nlh = nftmnl_req(s, NFT_MSG_GETTABLE, 0);
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
    memset(ret, 0, sizeof(*ret));
    int r = nftmnl_talk(s, nlh, table_cb, ret);
    return r == -ENOENT ? 0 : r;
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

/* The rules of one chain, and how many carry each of our fingerprints as their comment. */
struct rules_info {
    const struct nftset *s;
    const char *chain;
    unsigned n, current, legacy;
};

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
        strcmp(table, ri->s->cfg.table) == 0 && (chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN)) &&
        strcmp(chain, ri->chain) == 0) {
        ri->n++;
        uint32_t len = 0;
        const void *ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
        const char *comment = udata_comment(ud, len);
        if (comment && strcmp(comment, ri->s->fingerprint) == 0)
            ri->current++;
        else if (comment && strcmp(comment, ri->s->legacy_fingerprint) == 0)
            ri->legacy++;
    }
    nftnl_rule_free(r);
    return MNL_CB_OK;
}

/* Which fingerprint every rule of the table carries: the layout is right only if all carry
 * the same one. */
enum fp_seen { FP_NONE = 0, FP_CURRENT, FP_LEGACY };

/* Compares the sets, chains and rules of the table with what setup would build, and tells
 * which fingerprint the rules carry. Sets s->interval from the sets' flags when it was not
 * probed yet and the layout is right. Returns 0 (*ret_fp = FP_NONE: not right), or -errno. */
static int check_layout(struct nftset *s, enum fp_seen *ret_fp)
{
    struct set_info si[NFTKEY_NSETS];
    int r;

    *ret_fp = FP_NONE;
    for (int k = 0; k < NFTKEY_NSETS; k++)
        if ((r = get_set(s, s->names[k], &si[k])) < 0)
            return r;
    int interval = s->interval;
    if (interval < 0)
        interval = si[NFTKEY_NET4].found;
    for (int k = 0; k < NFTKEY_NSETS; k++) {
        if (nftruleset_set_present(interval, k) ? !set_right(s, &si[k], k) : si[k].found)
            return 0;
    }

    struct chains_info ci = {.s = s};
    struct nlmsghdr *nlh = nftmnl_req(s, NFT_MSG_GETCHAIN, NLM_F_DUMP);
    if ((r = nftmnl_talk(s, nlh, chain_cb, &ci)) < 0)
        return r;
    struct want_chain want[2];
    unsigned nwant = want_chains(s, want);
    if (ci.ours != nwant || ci.right != nwant)
        return 0;

    unsigned want_rules = want_rules_per_chain(s, interval);
    unsigned current = 0, legacy = 0;
    for (unsigned i = 0; i < nwant; i++) {
        struct rules_info ri = {.s = s, .chain = want[i].name};
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
        if (ri.n != want_rules)
            return 0;
        current += ri.current;
        legacy += ri.legacy;
    }
    if (current == nwant * want_rules)
        *ret_fp = FP_CURRENT;
    else if (legacy == nwant * want_rules)
        *ret_fp = FP_LEGACY;
    else
        return 0;
    s->interval = interval;
    return 0;
}

/* Counts the objects of one kind (named sets that are not ours, stateful objects, flowtables)
 * in a table of our name. A dump filtered by table; the name is checked again here, as older
 * kernels may send the whole family. */
struct others_info {
    const struct nftset *s;
    uint16_t type;
    unsigned n;
};

static int others_cb(const struct nlmsghdr *nlh, void *data)
{
    struct others_info *oi = data;
    const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);
    const char *table = NULL, *name = NULL;
    uint32_t flags = 0;
    const struct nlattr *attr;

    /* Attribute 1 is the table's name and 2 the object's in all three (NFTA_SET_TABLE,
     * NFTA_SET_NAME, NFTA_OBJ_TABLE, NFTA_OBJ_NAME, NFTA_FLOWTABLE_TABLE,
     * NFTA_FLOWTABLE_NAME); a set's flags are NFTA_SET_FLAGS. */
    mnl_attr_for_each(attr, nlh, sizeof(*g))
    {
        uint16_t type = mnl_attr_get_type(attr);
        if ((type == 1 || type == 2) && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
            *(type == 1 ? &table : &name) = mnl_attr_get_str(attr);
        else if (oi->type == NFT_MSG_GETSET && type == NFTA_SET_FLAGS &&
                 mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
            flags = ntohl(mnl_attr_get_u32(attr));
    }
    if (!table || strcmp(table, oi->s->cfg.table) != 0)
        return MNL_CB_OK;
    if (oi->type == NFT_MSG_GETSET) {
        if (flags & NFT_SET_ANONYMOUS)
            return MNL_CB_OK; /* a rule's own set: the rules are checked on their own */
        for (int k = 0; k < NFTKEY_NSETS; k++)
            if (name && strcmp(name, oi->s->names[k]) == 0)
                return MNL_CB_OK;
    }
    oi->n++;
    return MNL_CB_OK;
}

/* Whether the table holds anything setup does not build: sets of other names, stateful
 * objects (counters, quotas, ...), flowtables. Extra chains and rules are found by
 * check_layout(). 0 or 1, or -errno. */
static int has_others(struct nftset *s)
{
    static const uint16_t kinds[][2] = {
        {NFT_MSG_GETSET, NFTA_SET_TABLE},
        {NFT_MSG_GETOBJ, NFTA_OBJ_TABLE},
        {NFT_MSG_GETFLOWTABLE, NFTA_FLOWTABLE_TABLE},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        struct others_info oi = {.s = s, .type = kinds[i][0]};
        struct nlmsghdr *nlh = nftmnl_req(s, kinds[i][0], NLM_F_DUMP);
        mnl_attr_put_strz(nlh, kinds[i][1], s->cfg.table);
        int r = nftmnl_talk(s, nlh, others_cb, &oi);
        /* A kernel that does not know the kind cannot hold one. */
        if (r == -EOPNOTSUPP || r == -EINVAL)
            continue;
        if (r < 0)
            return r;
        if (oi.n)
            return 1;
    }
    return 0;
}

/* What a table of our name is. Marked: ours; right if it is of our format and as setup would
 * build it, else to be replaced. Unmarked: ours only if it is exactly a table we build, with
 * nothing else in it: one from before tables carried the mark (its rules carry the old
 * fingerprint; replaced to get the mark), or one built by us on a kernel that does not keep
 * a table's userdata. Anything else is someone else's. */
static int judge_table(struct nftset *s, const struct table_info *ti)
{
    enum fp_seen fp;
    int r;

    if (ti->format)
        s->marks = 1; /* the kernel keeps a table's userdata */
    if (ti->format && ti->format != TABLE_FORMAT)
        return NFTRULESET_WRONG;
    if ((r = check_layout(s, &fp)) < 0)
        return r;
    if (ti->format)
        return fp == FP_CURRENT ? NFTRULESET_RIGHT : NFTRULESET_WRONG;
    if (fp == FP_NONE)
        return NFTRULESET_FOREIGN;
    if ((r = has_others(s)) < 0)
        return r;
    if (r)
        return NFTRULESET_FOREIGN;
    if (fp == FP_CURRENT && s->marks == 0)
        return NFTRULESET_RIGHT;
    return NFTRULESET_WRONG;
}

int nftruleset_verify(struct nftset *s)
{
    struct table_info ti;
    int r = get_table(s, &ti);
    if (r < 0)
        return r;
    if (!ti.found) {
        s->foreign = false;
        return NFTRULESET_MISSING;
    }
    s->table_handle = ti.handle;
    r = judge_table(s, &ti);
    if (r >= 0)
        s->foreign = r == NFTRULESET_FOREIGN;
    return r;
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

/* Deletes the table we looked at, by its handle: if another table has taken the name since,
 * the transaction fails (ENOENT) instead of deleting it. */
static int put_del_table(struct nftmnl_txn *t)
{
    struct nftnl_table *tab = nftnl_table_alloc();
    if (!tab)
        return -ENOMEM;
    nftnl_table_set_u32(tab, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nftnl_table_set_u64(tab, NFTNL_TABLE_HANDLE, t->s->table_handle);
    nftnl_table_nlmsg_build_payload(nftmnl_txn_msg(t, NFT_MSG_DELTABLE, 0), tab);
    nftnl_table_free(tab);
    return 0;
}

/* Creates our table with its mark. Exclusive: if a table of the name has appeared since we
 * looked, the transaction fails (EEXIST) instead of adding our sets and chains to it. */
static int put_new_table(struct nftmnl_txn *t)
{
    char mark[NFTNL_UDATA_COMMENT_MAXLEN];
    struct nftnl_table *tab = nftnl_table_alloc();
    struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFTNL_UDATA_COMMENT_MAXLEN + 8);
    int ret = -ENOMEM;

    snprintf(mark, sizeof(mark), MARK_PREFIX "%u " MARK_WORDS, TABLE_FORMAT);
    if (!tab || !ud || !nftnl_udata_put_strz(ud, NFTNL_UDATA_TABLE_COMMENT, mark))
        goto out;
    nftnl_table_set_str(tab, NFTNL_TABLE_NAME, t->s->cfg.table);
    nftnl_table_set_u32(tab, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nftnl_table_set_data(tab, NFTNL_TABLE_USERDATA, nftnl_udata_buf_data(ud),
                         nftnl_udata_buf_len(ud));
    nftnl_table_nlmsg_build_payload(nftmnl_txn_msg(t, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL),
                                    tab);
    ret = 0;
out:
    nftnl_udata_buf_free(ud);
    nftnl_table_free(tab);
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
    if (replace && (r = put_del_table(&t)) < 0)
        return r;
    if ((r = put_new_table(&t)) < 0)
        return r;

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

/* After our first build: whether the kernel kept the table's mark (kernels before 5.13 drop a
 * table's userdata), so that judge_table() knows an unmarked table of our exact layout as
 * ours. */
static int learn_marks(struct nftset *s)
{
    struct table_info ti;
    int r = get_table(s, &ti);
    if (r < 0)
        return r;
    if (ti.found) {
        s->marks = ti.format == TABLE_FORMAT;
        s->table_handle = ti.handle;
    }
    return 0;
}

/* One look and one build. -EAGAIN: the table changed between the two (a build that would
 * have deleted or joined a table that is not the one we looked at fails as a whole). */
static int setup_once(struct nftset *s, enum nftset_setup_action *ret_action)
{
    int v = nftruleset_verify(s);
    if (v < 0)
        return v;
    if (v == NFTRULESET_FOREIGN)
        return -EEXIST;
    if (v == NFTRULESET_RIGHT) {
        *ret_action = NFTSET_ADOPTED;
        return 0;
    }
    bool replace = v == NFTRULESET_WRONG;
    int want = s->interval != 0;
    int r = create(s, replace, want);
    if (r < 0 && s->interval < 0 && (r == -EOPNOTSUPP || r == -EINVAL)) {
        /* The probe: this kernel has no set type with interval + timeout. */
        want = 0;
        r = create(s, replace, want);
    }
    if (r == (replace ? -ENOENT : -EEXIST))
        return -EAGAIN;
    if (r < 0)
        return r;
    s->interval = want;
    if (s->marks < 0 && (r = learn_marks(s)) < 0)
        return r;
    *ret_action = replace ? NFTSET_REPLACED : NFTSET_CREATED;
    return 0;
}

int nftset_setup(struct nftset *s, enum nftset_setup_action *ret_action)
{
    int r = setup_once(s, ret_action);
    if (r == -EAGAIN)
        r = setup_once(s, ret_action);
    return r == -EAGAIN ? -EBUSY : r;
}

int nftset_teardown(struct nftset *s)
{
    int v = nftruleset_verify(s);
    if (v < 0)
        return v;
    if (v == NFTRULESET_MISSING)
        return 0;
    if (v == NFTRULESET_FOREIGN)
        return -EEXIST;
    struct nftmnl_txn t;
    nftmnl_txn_begin(s, &t);
    int r = put_del_table(&t);
    if (r == 0)
        r = nftmnl_txn_send(&t);
    if (r == 0)
        r = s->msgs[0].err;
    return r == -ENOENT ? 0 : r;
}
