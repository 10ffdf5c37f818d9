/* Shared by the policy, store and judge tests: a default policy configuration and events. */
#pragma once
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "policy.h"
#include "sec_event.h"

/* The documented defaults (DESIGN.md, config.h comments). */
static inline void fx_cfg_policy(struct cfg_policy *c)
{
    memset(c, 0, sizeof(*c));
    c->maxretry = 5;
    c->findtime_s = 600;
    c->bantime_s = 3600;
    c->bantime_factor = 2;
    c->bantime_max_s = 7 * 86400;
    c->offence_window_s = 30 * 86400;
    c->ipv4_prefix = 32;
    c->ipv6_prefix = 64;
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++)
        c->weight[t] = policy_default_weight((enum sec_event_type)t);
}

static inline struct sec_event fx_event(enum sec_event_type type, const char *service,
                                        const char *addr)
{
    struct sec_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    snprintf(ev.service, sizeof(ev.service), "%s", service);
    if (addr_parse(addr, strlen(addr), &ev.remote.addr) < 0)
        ev.remote.addr.family = 0;
    ev.remote.port = 5060;
    ev.remote.transport = SEC_TRANSPORT_UDP;
    snprintf(ev.account, sizeof(ev.account), "100");
    snprintf(ev.source, sizeof(ev.source), "ami:pbx1");
    return ev;
}

static inline struct addr_prefix fx_prefix(const char *s)
{
    struct addr_prefix p;
    memset(&p, 0, sizeof(p));
    if (addr_prefix_parse(s, true, &p) < 0)
        p.len = 255;
    return p;
}

static inline struct addr fx_addr(const char *s)
{
    struct addr a;
    memset(&a, 0, sizeof(a));
    addr_parse(s, strlen(s), &a);
    return a;
}
