/* Policy: pure functions over a copy of the configuration and the protected prefixes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy.h"

/* The allowlist's entries, sorted by (family, length, address), and the lengths in use per
 * family: a lookup is a binary search per length in use, whatever the list's size. */
struct allow_index {
    struct policy_wl_entry *v;
    unsigned n, cap;
    unsigned per_len[2][129]; /* entries per family (0: IPv4, 1: IPv6) and length */
    uint8_t lens[2][129];     /* the lengths in use, longest first */
    unsigned nlens[2];
};

struct policy {
    struct cfg_policy cfg;
    unsigned min_prefix4, min_prefix6;
    struct policy_wl_entry *wl; /* configured and run-time entries, but the allowlist's */
    unsigned nwl, wl_cap;
    struct allow_index allow;
};

/* What a built-in range means for a source inside it. */
enum special_kind {
    SPECIAL_IGNORED,   /* never a real remote source: its events are ignored */
    SPECIAL_LOOPBACK,  /* ourselves: recorded as whitelisted, never counted */
    SPECIAL_UNGROUPED, /* counted and banned one address at a time, never as a /64 */
};

struct special {
    struct policy_wl_entry e;
    enum special_kind kind;
};

#define V4(a, b, c, d, len, label, kind)                                                           \
    {                                                                                              \
        {{{AF_INET, {a, b, c, d}}, len}, label, POLICY_SRC_BUILTIN}, kind                          \
    }
#define V6(b0, b1, b2, b3, b4, b5, b15, len, label, kind)                                          \
    {                                                                                              \
        {{{AF_INET6, {b0, b1, b2, b3, b4, b5, [15] = b15}}, len}, label, POLICY_SRC_BUILTIN}, kind \
    }

/* The ranges no event and no ban may touch (and the two that are never grouped). The more
 * specific entry comes first where two overlap, so its label is the one shown. IPv4-mapped IPv6
 * addresses are folded to IPv4 when parsed (addr_parse()), so they meet the IPv4 rows; a key or
 * ban of ::/96 (IPv4-compatible) holds :: and ::1 and is narrowed or refused by those. 169.254/16
 * is IPv4's link-local range, where clouds also serve their metadata (169.254.169.254). */
static const struct special specials[] = {
    V4(0, 0, 0, 0, 32, "unspecified", SPECIAL_IGNORED),
    V4(0, 0, 0, 0, 8, "this-network", SPECIAL_IGNORED),
    V4(127, 0, 0, 0, 8, "loopback", SPECIAL_LOOPBACK),
    V4(169, 254, 0, 0, 16, "link-local", SPECIAL_IGNORED),
    V4(224, 0, 0, 0, 4, "multicast", SPECIAL_IGNORED),
    V4(255, 255, 255, 255, 32, "broadcast", SPECIAL_IGNORED),
    V6(0, 0, 0, 0, 0, 0, 0, 128, "unspecified", SPECIAL_IGNORED),
    V6(0, 0, 0, 0, 0, 0, 1, 128, "loopback", SPECIAL_LOOPBACK),
    V6(0xfe, 0x80, 0, 0, 0, 0, 0, 10, "link-local", SPECIAL_IGNORED),
    V6(0xff, 0, 0, 0, 0, 0, 0, 8, "multicast", SPECIAL_IGNORED),
    V6(0, 0x64, 0xff, 0x9b, 0, 0, 0, 96, "NAT64", SPECIAL_UNGROUPED),
    V6(0, 0x64, 0xff, 0x9b, 0, 1, 0, 48, "NAT64", SPECIAL_UNGROUPED),
    V6(0x20, 0x01, 0, 0, 0, 0, 0, 32, "Teredo", SPECIAL_UNGROUPED),
};
#define NSPECIALS (sizeof(specials) / sizeof(specials[0]))

static const struct {
    const char *name;
    bool absolute;
    const char *hint; /* how to change it, for a refusal */
} sources[POLICY_SRC_COUNT] = {
    [POLICY_SRC_BUILTIN] = {"builtin", true, "this range is built in and cannot be turned off"},
    [POLICY_SRC_CONFIG] = {"config", false, "[whitelist] cidr"},
    [POLICY_SRC_AMI] = {"ami", true, "the Asterisk of an [ami:NAME] section is always protected"},
    [POLICY_SRC_HOST] = {"host", true, "[protect] own_addresses = no turns this protection off"},
    [POLICY_SRC_GATEWAY] = {"gateway", false, "[protect] gateways = no"},
    [POLICY_SRC_RESOLVER] = {"resolver", false, "[protect] resolvers = no"},
    [POLICY_SRC_TRUNK] = {"trunk", true,
                          "Asterisk is configured to talk to it (learned over AMI): remove it "
                          "from Asterisk's configuration, or set learn_trust = no in [ami:NAME]"},
    [POLICY_SRC_FLEET] = {"fleet", true,
                          "the fleet's database servers ([cluster] conninfo) are always "
                          "protected"},
    [POLICY_SRC_ALLOW] = {"allow", false, "pbxguard allow --remove lifts it"},
};

const char *policy_source_name(enum policy_source src)
{
    return (unsigned)src < POLICY_SRC_COUNT ? sources[src].name : "?";
}

bool policy_source_absolute(enum policy_source src)
{
    return (unsigned)src < POLICY_SRC_COUNT && sources[src].absolute;
}

double policy_default_weight(enum sec_event_type type)
{
    switch (type) {
    case SEC_INVALID_ACCOUNT_ID:
    case SEC_INVALID_PASSWORD:
    case SEC_CHALLENGE_RESPONSE_FAILED:
    case SEC_FAILED_ACL:
    case SEC_REQUEST_NOT_ALLOWED:
    case SEC_REQUEST_BAD_FORMAT:
        return 1.0;
    default:
        return 0.0;
    }
}

/* True if a and b share their first min(a.len, b.len) bits: one covers the other. The hot
 * path (every event's key is checked against every entry), so no masking copies. */
static bool overlap(const struct addr_prefix *a, const struct addr_prefix *b)
{
    if (a->addr.family != b->addr.family)
        return false;
    unsigned n = a->len < b->len ? a->len : b->len;
    unsigned full = n / 8, rest = n % 8;
    if (memcmp(a->addr.bytes, b->addr.bytes, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return ((a->addr.bytes[full] ^ b->addr.bytes[full]) & mask) == 0;
}

static bool holds(const struct addr_prefix *p, const struct addr *a)
{
    struct addr_prefix q = {.addr = *a, .len = (uint8_t)addr_max_len(a)};
    return overlap(p, &q);
}

/* --- the allowlist's index --- */

static int fam_index(const struct addr *a)
{
    return a->family == AF_INET ? 0 : 1;
}

/* Orders prefixes by family, length, then address (host bits are clear in both). */
static int allow_cmp(const struct addr_prefix *a, const struct addr_prefix *b)
{
    if (a->addr.family != b->addr.family)
        return a->addr.family < b->addr.family ? -1 : 1;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return memcmp(a->addr.bytes, b->addr.bytes, addr_max_len(&a->addr) / 8);
}

/* The first entry not below key. */
static unsigned allow_lower_bound(const struct allow_index *x, const struct addr_prefix *key)
{
    unsigned lo = 0, hi = x->n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (allow_cmp(&x->v[mid].prefix, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const struct policy_wl_entry *allow_find(const struct allow_index *x,
                                                const struct addr_prefix *key)
{
    unsigned i = allow_lower_bound(x, key);
    return i < x->n && allow_cmp(&x->v[i].prefix, key) == 0 ? &x->v[i] : NULL;
}

static void allow_lens_update(struct allow_index *x, int f)
{
    unsigned n = 0;
    for (int len = f ? 128 : 32; len >= 0; len--)
        if (x->per_len[f][len])
            x->lens[f][n++] = (uint8_t)len;
    x->nlens[f] = n;
}

static int allow_insert(struct allow_index *x, const struct addr_prefix *prefix, const char *label)
{
    struct addr_prefix k;
    addr_prefix_of(&prefix->addr, prefix->len, &k);
    unsigned i = allow_lower_bound(x, &k);
    if (i < x->n && allow_cmp(&x->v[i].prefix, &k) == 0)
        return 0;
    if (x->n == x->cap) {
        unsigned cap = x->cap ? x->cap * 2 : 16;
        struct policy_wl_entry *m = realloc(x->v, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        x->v = m;
        x->cap = cap;
    }
    memmove(&x->v[i + 1], &x->v[i], (x->n - i) * sizeof(x->v[0]));
    struct policy_wl_entry *e = &x->v[i];
    memset(e, 0, sizeof(*e));
    e->prefix = k;
    snprintf(e->label, sizeof(e->label), "%s", label ? label : "");
    e->source = POLICY_SRC_ALLOW;
    x->n++;
    int f = fam_index(&k.addr);
    if (x->per_len[f][k.len]++ == 0)
        allow_lens_update(x, f);
    return 0;
}

static int allow_remove(struct allow_index *x, const struct addr_prefix *prefix)
{
    struct addr_prefix k;
    addr_prefix_of(&prefix->addr, prefix->len, &k);
    unsigned i = allow_lower_bound(x, &k);
    if (i >= x->n || allow_cmp(&x->v[i].prefix, &k) != 0)
        return -ENOENT;
    memmove(&x->v[i], &x->v[i + 1], (x->n - i - 1) * sizeof(x->v[0]));
    x->n--;
    int f = fam_index(&k.addr);
    if (--x->per_len[f][k.len] == 0)
        allow_lens_update(x, f);
    return 0;
}

/* The entry holding a, the longest first. */
static const struct policy_wl_entry *allow_match(const struct allow_index *x, const struct addr *a)
{
    int f = fam_index(a);
    for (unsigned i = 0; i < x->nlens[f]; i++) {
        struct addr_prefix k;
        addr_prefix_of(a, x->lens[f][i], &k);
        const struct policy_wl_entry *e = allow_find(x, &k);
        if (e)
            return e;
    }
    return NULL;
}

/* An entry that covers q or lies inside it. Inside: the entries of one length under q are
 * neighbours in the order, and the first of them is the first not below q's own address at
 * that length. */
static const struct policy_wl_entry *allow_overlap(const struct allow_index *x,
                                                   const struct addr_prefix *prefix)
{
    struct addr_prefix q;
    addr_prefix_of(&prefix->addr, prefix->len, &q);
    int f = fam_index(&q.addr);
    for (unsigned i = 0; i < x->nlens[f]; i++) {
        unsigned len = x->lens[f][i];
        struct addr_prefix k;
        if (len <= q.len) {
            addr_prefix_of(&q.addr, len, &k);
            const struct policy_wl_entry *e = allow_find(x, &k);
            if (e)
                return e;
            continue;
        }
        k = q;
        k.len = (uint8_t)len;
        unsigned at = allow_lower_bound(x, &k);
        if (at < x->n && x->v[at].prefix.len == len && overlap(&x->v[at].prefix, &q))
            return &x->v[at];
    }
    return NULL;
}

static int append(struct policy *p, enum policy_source src, const struct addr_prefix *prefix,
                  const char *label)
{
    if (src == POLICY_SRC_ALLOW)
        return allow_insert(&p->allow, prefix, label);
    if (p->nwl == p->wl_cap) {
        unsigned cap = p->wl_cap ? p->wl_cap * 2 : 8;
        struct policy_wl_entry *n = realloc(p->wl, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        p->wl = n;
        p->wl_cap = cap;
    }
    struct policy_wl_entry *e = &p->wl[p->nwl++];
    memset(e, 0, sizeof(*e));
    addr_prefix_of(&prefix->addr, prefix->len, &e->prefix);
    snprintf(e->label, sizeof(e->label), "%s", label ? label : "");
    e->source = src;
    return 0;
}

int policy_whitelist_add(struct policy *p, const struct addr_prefix *prefix, const char *label)
{
    return append(p, POLICY_SRC_CONFIG, prefix, label);
}

int policy_protect_add(struct policy *p, enum policy_source src, const struct addr_prefix *prefix,
                       const char *label)
{
    if (src == POLICY_SRC_BUILTIN || (unsigned)src >= POLICY_SRC_COUNT)
        return -EINVAL;
    return append(p, src, prefix, label);
}

int policy_protect_replace(struct policy *p, enum policy_source src,
                           const struct policy_wl_entry *entries, unsigned n)
{
    if (src == POLICY_SRC_BUILTIN || src == POLICY_SRC_CONFIG || (unsigned)src >= POLICY_SRC_COUNT)
        return -EINVAL;
    if (src == POLICY_SRC_ALLOW) {
        struct allow_index fresh = {0};
        for (unsigned i = 0; i < n; i++) {
            if (allow_insert(&fresh, &entries[i].prefix, entries[i].label) < 0) {
                free(fresh.v);
                return -ENOMEM;
            }
        }
        free(p->allow.v);
        p->allow = fresh;
        return 0;
    }
    unsigned keep = 0;
    for (unsigned i = 0; i < p->nwl; i++)
        if (p->wl[i].source != src)
            keep++;
    /* Room first, so a failure leaves the old list whole. */
    if (keep + n > p->wl_cap) {
        unsigned cap = keep + n + 8;
        struct policy_wl_entry *m = realloc(p->wl, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        p->wl = m;
        p->wl_cap = cap;
    }
    unsigned o = 0;
    for (unsigned i = 0; i < p->nwl; i++)
        if (p->wl[i].source != src)
            p->wl[o++] = p->wl[i];
    p->nwl = o;
    for (unsigned i = 0; i < n; i++)
        append(p, src, &entries[i].prefix, entries[i].label); /* cannot fail: room is there */
    return 0;
}

int policy_protect_remove(struct policy *p, enum policy_source src,
                          const struct addr_prefix *prefix)
{
    if (src == POLICY_SRC_BUILTIN || src == POLICY_SRC_CONFIG || (unsigned)src >= POLICY_SRC_COUNT)
        return -EINVAL;
    if (src == POLICY_SRC_ALLOW)
        return allow_remove(&p->allow, prefix);
    struct addr_prefix k;
    addr_prefix_of(&prefix->addr, prefix->len, &k);
    for (unsigned i = 0; i < p->nwl; i++) {
        if (p->wl[i].source == src && addr_prefix_equal(&p->wl[i].prefix, &k)) {
            memmove(&p->wl[i], &p->wl[i + 1], (p->nwl - i - 1) * sizeof(p->wl[0]));
            p->nwl--;
            return 0;
        }
    }
    return -ENOENT;
}

int policy_protect_copy(struct policy *to, const struct policy *from, enum policy_source src)
{
    if (src == POLICY_SRC_ALLOW)
        return policy_protect_replace(to, src, from->allow.v, from->allow.n);
    for (unsigned i = 0; i < from->nwl; i++) {
        if (from->wl[i].source != src)
            continue;
        int r = policy_protect_add(to, src, &from->wl[i].prefix, from->wl[i].label);
        if (r < 0)
            return r;
    }
    return 0;
}

const struct policy_wl_entry *policy_protect_entries(const struct policy *p, unsigned *ret_n)
{
    *ret_n = p->nwl;
    return p->wl;
}

const struct policy_wl_entry *policy_allow_entries(const struct policy *p, unsigned *ret_n)
{
    *ret_n = p->allow.n;
    return p->allow.v;
}

struct policy *policy_new(const struct cfg_policy *cfg, const struct cfg_whitelist *wl)
{
    if (cfg->ipv4_prefix < 1 || cfg->ipv4_prefix > 32 || cfg->ipv6_prefix < 32 ||
        cfg->ipv6_prefix > 128 || cfg->maxretry == 0 || cfg->bantime_s <= 0 ||
        !(cfg->bantime_factor >= 1.0) || cfg->findtime_s <= 0 ||
        cfg->nservices > CFG_SERVICES_MAX) {
        errno = EINVAL;
        return NULL;
    }
    struct policy *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->cfg = *cfg;
    if (p->cfg.bantime_max_s < p->cfg.bantime_s)
        p->cfg.bantime_max_s = p->cfg.bantime_s;
    p->min_prefix4 = cfg->ipv4_prefix < 8 ? cfg->ipv4_prefix : 8;
    p->min_prefix6 = 16;
    int r = 0;
    for (unsigned i = 0; r == 0 && wl && i < wl->n; i++)
        r = policy_whitelist_add(p, &wl->prefixes[i], "config");
    if (r < 0) {
        policy_free(p);
        errno = -r;
        return NULL;
    }
    return p;
}

int policy_set_min_prefix(struct policy *p, unsigned min4, unsigned min6)
{
    if (min4 < 1 || min4 > 32 || min6 < 1 || min6 > 128 || min4 > p->cfg.ipv4_prefix ||
        min6 > p->cfg.ipv6_prefix)
        return -EINVAL;
    p->min_prefix4 = min4;
    p->min_prefix6 = min6;
    return 0;
}

void policy_free(struct policy *p)
{
    if (!p)
        return;
    free(p->wl);
    free(p->allow.v);
    free(p);
}

const struct policy_wl_entry *policy_whitelist_match(const struct policy *p, const struct addr *a)
{
    for (unsigned i = 0; i < NSPECIALS; i++)
        if (specials[i].kind != SPECIAL_UNGROUPED && holds(&specials[i].e.prefix, a))
            return &specials[i].e;
    for (unsigned i = 0; i < p->nwl; i++)
        if (holds(&p->wl[i].prefix, a))
            return &p->wl[i];
    return allow_match(&p->allow, a);
}

const struct policy_wl_entry *policy_whitelist_overlap(const struct policy *p,
                                                       const struct addr_prefix *prefix)
{
    for (unsigned i = 0; i < NSPECIALS; i++)
        if (specials[i].kind != SPECIAL_UNGROUPED && overlap(&specials[i].e.prefix, prefix))
            return &specials[i].e;
    for (unsigned i = 0; i < p->nwl; i++)
        if (overlap(&p->wl[i].prefix, prefix))
            return &p->wl[i];
    return allow_overlap(&p->allow, prefix);
}

const struct policy_wl_entry *policy_ignored(const struct policy *p, const struct addr *a)
{
    (void)p;
    for (unsigned i = 0; i < NSPECIALS; i++)
        if (specials[i].kind == SPECIAL_IGNORED && holds(&specials[i].e.prefix, a))
            return &specials[i].e;
    return NULL;
}

enum policy_ban_rule policy_ban_check(const struct policy *p, const struct addr_prefix *prefix,
                                      bool force, const struct policy_wl_entry **ret_entry)
{
    const struct policy_wl_entry *soft = NULL;
    if (ret_entry)
        *ret_entry = NULL;
    if (prefix->len < (prefix->addr.family == AF_INET ? p->min_prefix4 : p->min_prefix6))
        return POLICY_BAN_TOO_WIDE;
    /* The range the prefix lies in names it best (0.0.0.0/8 is "this-network", though it also
     * holds 0.0.0.0); else the first range it holds. */
    const struct policy_wl_entry *special = NULL;
    for (unsigned i = 0; i < NSPECIALS; i++) {
        if (specials[i].kind == SPECIAL_UNGROUPED || !overlap(&specials[i].e.prefix, prefix))
            continue;
        if (!special || specials[i].e.prefix.len <= prefix->len)
            special = &specials[i].e;
        if (special->prefix.len <= prefix->len)
            break;
    }
    if (special) {
        if (ret_entry)
            *ret_entry = special;
        return POLICY_BAN_PROTECTED;
    }
    for (unsigned i = 0; i < p->nwl; i++) {
        if (!overlap(&p->wl[i].prefix, prefix))
            continue;
        if (sources[p->wl[i].source].absolute) {
            if (ret_entry)
                *ret_entry = &p->wl[i];
            return POLICY_BAN_PROTECTED;
        }
        if (!soft)
            soft = &p->wl[i];
    }
    if (!soft)
        soft = allow_overlap(&p->allow, prefix);
    if (soft && !force) {
        if (ret_entry)
            *ret_entry = soft;
        return POLICY_BAN_WHITELISTED;
    }
    return POLICY_BAN_OK;
}

const char *policy_ban_rule_name(enum policy_ban_rule rule)
{
    switch (rule) {
    case POLICY_BAN_OK:
        return "ok";
    case POLICY_BAN_TOO_WIDE:
        return "too-wide";
    case POLICY_BAN_PROTECTED:
        return "protected";
    case POLICY_BAN_WHITELISTED:
        return "whitelisted";
    }
    return "?";
}

const char *policy_ban_refusal(const struct policy *p, const struct addr_prefix *prefix,
                               enum policy_ban_rule rule, const struct policy_wl_entry *entry,
                               char *buf, size_t len)
{
    char ps[ADDR_STRLEN], es[ADDR_STRLEN];
    bool v4 = prefix->addr.family == AF_INET;
    addr_prefix_format(prefix, ps, sizeof(ps));
    if (entry)
        addr_prefix_format(&entry->prefix, es, sizeof(es));
    const char *hint = entry ? sources[entry->source].hint : NULL;
    switch (rule) {
    case POLICY_BAN_OK:
        snprintf(buf, len, "%s may be banned", ps);
        break;
    case POLICY_BAN_TOO_WIDE:
        snprintf(buf, len,
                 "%s is wider than /%u, the widest ban allowed: nobody may ban it, not even with "
                 "--force ([protect] min_prefix%c sets the limit)",
                 ps, v4 ? p->min_prefix4 : p->min_prefix6, v4 ? '4' : '6');
        break;
    case POLICY_BAN_PROTECTED:
        if (!entry)
            snprintf(buf, len, "%s is protected: never banned, not even with --force", ps);
        else if (addr_prefix_equal(&entry->prefix, prefix))
            snprintf(buf, len, "%s is protected (%s): never banned, not even with --force%s%s", ps,
                     entry->label, hint ? "; " : "", hint ? hint : "");
        else
            snprintf(buf, len, "%s %s %s (%s): never banned, not even with --force%s%s", ps,
                     addr_prefix_covers(&entry->prefix, prefix) ? "lies in" : "holds", es,
                     entry->label, hint ? "; " : "", hint ? hint : "");
        break;
    case POLICY_BAN_WHITELISTED:
        snprintf(buf, len, "%s is whitelisted (overlaps %s, %s); use --force to ban it anyway%s%s",
                 ps, entry ? es : "?", entry ? entry->label : "?",
                 hint && entry->source != POLICY_SRC_CONFIG ? ", or " : "",
                 hint && entry->source != POLICY_SRC_CONFIG ? hint : "");
        break;
    }
    return buf;
}

static const struct cfg_service_override *override_for(const struct policy *p, const char *service)
{
    for (unsigned i = 0; i < p->cfg.nservices; i++)
        if (strcmp(p->cfg.services[i].service, service) == 0)
            return &p->cfg.services[i];
    return NULL;
}

double policy_weight(const struct policy *p, enum sec_event_type type, const char *service)
{
    if ((unsigned)type >= SEC_EVENT_TYPE_COUNT)
        return 0.0;
    const struct cfg_service_override *o = override_for(p, service);
    double w = o && o->weight[type] >= 0 ? o->weight[type] : p->cfg.weight[type];
    return w > 0 ? w : 0.0;
}

unsigned policy_threshold(const struct policy *p, const char *service)
{
    const struct cfg_service_override *o = override_for(p, service);
    return o && o->maxretry ? o->maxretry : p->cfg.maxretry;
}

unsigned policy_trusted_threshold(const struct policy *p, const char *service)
{
    unsigned base = policy_threshold(p, service);
    uint64_t t = p->cfg.trusted_maxretry ? p->cfg.trusted_maxretry : (uint64_t)base * 4;
    if (t < base)
        t = base;
    return t > UINT32_MAX ? UINT32_MAX : (unsigned)t;
}

int64_t policy_trust_window_ms(const struct policy *p)
{
    return p->cfg.trust_window_s * 1000;
}

void policy_key(const struct policy *p, const struct addr *a, struct addr_prefix *ret_key)
{
    struct addr_prefix k;
    unsigned max = addr_max_len(a);
    addr_prefix_of(a, a->family == AF_INET ? p->cfg.ipv4_prefix : p->cfg.ipv6_prefix, &k);
    /* A key is what gets banned: one that holds a protected address (the AMI peer or the host
     * itself in the attacker's /64, an office /28 inside a counted /24, ::1 in ::/64) would ban
     * us too. Such sources count and are banned one address at a time, as are the ranges whose
     * prefixes are shared by strangers. */
    if (k.len < max) {
        bool narrow = false;
        for (unsigned i = 0; !narrow && i < NSPECIALS; i++)
            narrow = overlap(&specials[i].e.prefix, &k);
        for (unsigned i = 0; !narrow && i < p->nwl; i++)
            narrow = overlap(&p->wl[i].prefix, &k);
        if (!narrow)
            narrow = allow_overlap(&p->allow, &k) != NULL;
        if (narrow)
            addr_prefix_of(a, max, &k);
    }
    *ret_key = k;
}

int64_t policy_ban_ms(const struct policy *p, unsigned offence)
{
    if (offence == 0)
        offence = 1;
    if (p->cfg.permanent_after && offence >= p->cfg.permanent_after)
        return 0;
    /* In doubles, so a long history cannot overflow; the cap bounds the result. */
    double s = (double)p->cfg.bantime_s * pow(p->cfg.bantime_factor, (double)(offence - 1));
    if (!(s < (double)p->cfg.bantime_max_s))
        s = (double)p->cfg.bantime_max_s;
    return (int64_t)s * 1000;
}

int64_t policy_findtime_ms(const struct policy *p)
{
    return p->cfg.findtime_s * 1000;
}

int64_t policy_offence_window_ms(const struct policy *p)
{
    return p->cfg.offence_window_s * 1000;
}
