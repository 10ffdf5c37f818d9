/* The host's own facts, followed live so that pbxguardd never bans the machine it guards nor
 * what that machine depends on:
 *   - its own addresses: read over rtnetlink at start, then RTM_NEWADDR/RTM_DELADDR as they
 *     come (RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR);
 *   - its default gateways: every unicast default route's gateway (RTA_GATEWAY, RTA_VIA and
 *     the next hops of RTA_MULTIPATH), in any routing table, read at start and read again when a
 *     default route changes (RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE);
 *   - its resolvers: the nameservers of resolv.conf (resolv_conf.h), read at start and again
 *     when inotify reports a change to the file, in its directory (it is often replaced by a
 *     rename) and, if it is a symlink, in its target's directory.
 * No polling: one netlink socket and one inotify descriptor on the loop. A lost notification
 * (ENOBUFS, an inotify overflow) makes it read everything again.
 *
 * Each source (POLICY_SRC_HOST, POLICY_SRC_GATEWAY, POLICY_SRC_RESOLVER) is reported as its
 * whole current list, labelled ("own address on eth0", "gateway on eth0", "resolver"), when
 * it changes; the caller puts it into the policy. It logs its own I/O trouble; what the lists
 * mean is the caller's to log. */
#pragma once

#include "config.h"
#include "loop.h"
#include "policy.h"

struct hostaddr;

/* The whole current list of src; called from hostaddr_new() and hostaddr_reconfigure() for
 * every source (an empty list for one turned off) and from the loop when a list changes. */
typedef void (*hostaddr_fn)(void *data, enum policy_source src,
                            const struct policy_wl_entry *entries, unsigned n);

/* Reads what cfg enables and starts following it. NULL + errno if the host's addresses or
 * routes cannot be read over rtnetlink (the reason has been logged): the daemon would otherwise
 * run without knowing what it must never ban. A resolv.conf that is missing or cannot be
 * watched is not an error (logged; its nameservers are read when it appears). */
struct hostaddr *hostaddr_new(struct loop *l, const struct cfg_protect *cfg, hostaddr_fn fn,
                              void *data);
/* Applies a new [protect]: sources turned on are read and followed, sources turned off are
 * reported empty, a new resolv_conf path is watched instead of the old one. 0 or -errno (the
 * old setting keeps running, the reason has been logged). */
int hostaddr_reconfigure(struct hostaddr *h, const struct cfg_protect *cfg);
void hostaddr_free(struct hostaddr *h); /* accepts NULL */
