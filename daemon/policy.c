/* Policy: pure functions over a copy of the configuration. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy.h"

struct policy {
    struct cfg_policy cfg;
    struct policy_wl_entry *wl;
    unsigned nwl, wl_cap;
};

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

int policy_whitelist_add(struct policy *p, const struct addr_prefix *prefix, const char *label)
{
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
    return 0;
}

static int add_loopback(struct policy *p)
{
    struct addr_prefix v4 = {.addr = {.family = AF_INET, .bytes = {127}}, .len = 8};
    struct addr_prefix v6 = {.addr = {.family = AF_INET6, .bytes = {[15] = 1}}, .len = 128};
    int r = policy_whitelist_add(p, &v4, "loopback");
    return r < 0 ? r : policy_whitelist_add(p, &v6, "loopback");
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
    int r = add_loopback(p);
    for (unsigned i = 0; r == 0 && wl && i < wl->n; i++)
        r = policy_whitelist_add(p, &wl->prefixes[i], "config");
    if (r < 0) {
        policy_free(p);
        errno = -r;
        return NULL;
    }
    return p;
}

void policy_free(struct policy *p)
{
    if (!p)
        return;
    free(p->wl);
    free(p);
}

const struct policy_wl_entry *policy_whitelist_match(const struct policy *p, const struct addr *a)
{
    for (unsigned i = 0; i < p->nwl; i++)
        if (addr_prefix_contains(&p->wl[i].prefix, a))
            return &p->wl[i];
    return NULL;
}

const struct policy_wl_entry *policy_whitelist_overlap(const struct policy *p,
                                                       const struct addr_prefix *prefix)
{
    for (unsigned i = 0; i < p->nwl; i++)
        if (addr_prefix_covers(&p->wl[i].prefix, prefix) ||
            addr_prefix_covers(prefix, &p->wl[i].prefix))
            return &p->wl[i];
    return NULL;
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

void policy_key(const struct policy *p, const struct addr *a, struct addr_prefix *ret_key)
{
    struct addr_prefix k;
    addr_prefix_of(a, a->family == AF_INET ? p->cfg.ipv4_prefix : p->cfg.ipv6_prefix, &k);
    /* A key is what gets banned: one that holds a whitelisted address (the AMI peer in the
     * attacker's /64, an office /28 inside a counted /24) would ban us too. Such sources count
     * and are banned one address at a time. */
    if (k.len < addr_max_len(a) && policy_whitelist_overlap(p, &k))
        addr_prefix_of(a, addr_max_len(a), &k);
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
