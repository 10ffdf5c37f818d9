/* Policy: pure judgement, no I/O. What an event weighs, which key it counts under, whether its
 * source is protected, whether a ban may be placed at all, how many weighted failures earn a
 * ban, and how long the n-th offence's ban lasts. Built from the configuration plus protected
 * prefixes with labels: the built-in ranges always, and what the core learns at run time (each
 * AMI peer's address, the host's own addresses, gateways and resolvers). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "sec_event.h"

#define POLICY_LABEL_MAX 96

struct policy;

/* Where a protected prefix comes from. The built-in ranges, the AMI peers and the host's own
 * addresses are absolute: nobody bans them, not even with --force. --force overrides the
 * others. Each run-time source replaces its whole list at once (policy_protect_replace()), so a
 * module that learns protected addresses (the host's, Asterisk's trunks, ...) adds a source:
 * one value here and one row of sources[] in policy.c (its JSON name, whether --force may
 * override it, and the hint a refusal gives for changing it). */
enum policy_source {
    POLICY_SRC_BUILTIN = 0, /* loopback, link-local, multicast, ...: fixed, in policy.c */
    POLICY_SRC_CONFIG,      /* [whitelist] cidr */
    POLICY_SRC_AMI,         /* the address of an AMI server we talk to */
    POLICY_SRC_HOST,        /* one of the host's own addresses */
    POLICY_SRC_GATEWAY,     /* a default gateway of the host */
    POLICY_SRC_RESOLVER,    /* a nameserver of resolv.conf */
    POLICY_SRC_TRUNK,       /* an address an Asterisk is configured to talk to (ami_learn.c) */
    POLICY_SRC_FLEET,       /* an address of the fleet's PostgreSQL servers (cluster.c) */
    POLICY_SRC_ALLOW,       /* the runtime allowlist (pbxguard allow, allowlist.c) */
    POLICY_SRC_COUNT
};

struct policy_wl_entry {
    struct addr_prefix prefix;
    char label[POLICY_LABEL_MAX]; /* "loopback", "config", "AMI peer ami:pbx1", "own address on
                                     eth0", "gateway on eth0", "resolver" */
    enum policy_source source;
};

/* "builtin", "config", "ami", "host", "gateway", "resolver", "trunk", "fleet", "allow" (the
 * JSON names). */
const char *policy_source_name(enum policy_source src);
/* True for the sources --force cannot override. */
bool policy_source_absolute(enum policy_source src);

/* The weight an event type carries by default (DESIGN.md "Events"): 1 for the failures, 0 for
 * the benign ones (SuccessfulAuth, ChallengeSent, ...). config_defaults() can use this. */
double policy_default_weight(enum sec_event_type type);

/* Copies what it needs; cfg and wl may be freed afterwards. The built-in ranges (loopback and
 * the addresses that are never a real source, see policy_ignored()) are always protected.
 * The widest bans allowed start at /8 and /16 (policy_set_min_prefix()). NULL + errno: EINVAL
 * (ipv4_prefix not 1..32, ipv6_prefix not 32..128, maxretry 0, bantime <= 0, factor < 1),
 * ENOMEM. */
struct policy *policy_new(const struct cfg_policy *cfg, const struct cfg_whitelist *wl);
void policy_free(struct policy *p); /* accepts NULL */

/* The widest prefix any ban may have, manual or remote, forced or not: /min4 for IPv4, /min6
 * for IPv6 ([protect] min_prefix4, min_prefix6). Returns 0, or -EINVAL if out of 1..32 /
 * 1..128 or wider than the counting keys (ipv4_prefix, ipv6_prefix). */
int policy_set_min_prefix(struct policy *p, unsigned min4, unsigned min6);

/* Adds a [whitelist]-like entry (source POLICY_SRC_CONFIG) at run time. Host bits of prefix
 * are cleared; label is copied (truncated to fit). Returns 0 or -ENOMEM. */
int policy_whitelist_add(struct policy *p, const struct addr_prefix *prefix, const char *label);
/* The same for any run-time source (not POLICY_SRC_BUILTIN: -EINVAL). */
int policy_protect_add(struct policy *p, enum policy_source src, const struct addr_prefix *prefix,
                       const char *label);
/* Replaces every entry of src with the n given ones (their source field is ignored). Returns 0,
 * or -ENOMEM with the old entries of src left in place, or -EINVAL for POLICY_SRC_BUILTIN or
 * POLICY_SRC_CONFIG (the configuration's are fixed for the policy's life). */
int policy_protect_replace(struct policy *p, enum policy_source src,
                           const struct policy_wl_entry *entries, unsigned n);
/* Removes the entry of exactly prefix from src (not POLICY_SRC_BUILTIN nor POLICY_SRC_CONFIG:
 * -EINVAL). Returns 0, or -ENOENT if src has no such entry.
 *
 * The entries of POLICY_SRC_ALLOW (the runtime allowlist, up to thousands) are kept apart, in
 * an index sorted by family, length and address: every lookup below (match, overlap, ban check,
 * key) costs a binary search per prefix length in use there instead of a walk of the list. An
 * allowed prefix that is already in the index is not added twice. */
int policy_protect_remove(struct policy *p, enum policy_source src,
                          const struct addr_prefix *prefix);
/* Copies every entry of src from one policy to another (a reload keeps what was learned). */
int policy_protect_copy(struct policy *to, const struct policy *from, enum policy_source src);
/* The run-time and configured entries (not the built-in ranges nor the allowlist's, see
 * policy_allow_entries()), in no promised order; the pointer is valid until the next change. */
const struct policy_wl_entry *policy_protect_entries(const struct policy *p, unsigned *ret_n);
/* The allowlist's entries (POLICY_SRC_ALLOW), sorted; valid until the next change. */
const struct policy_wl_entry *policy_allow_entries(const struct policy *p, unsigned *ret_n);

/* The first protected entry holding a (built-in ranges first, the allowlist last), or NULL. The
 * pointer lives until the policy's entries change. */
const struct policy_wl_entry *policy_whitelist_match(const struct policy *p, const struct addr *a);
/* The first protected entry that overlaps prefix (either one covers the other), or NULL: a ban
 * of that prefix would ban a protected address. */
const struct policy_wl_entry *policy_whitelist_overlap(const struct policy *p,
                                                       const struct addr_prefix *prefix);
/* The built-in range holding a if a can never be a real remote source (unspecified, 0.0.0.0/8,
 * link-local, multicast, broadcast): such events are ignored, never counted nor banned. NULL
 * otherwise. A link-local address names a host on one link only (fe80::1 exists on every
 * link), so it is never grouped, counted or banned: a ban would hit every interface. */
const struct policy_wl_entry *policy_ignored(const struct policy *p, const struct addr *a);

/* Whether a ban of a prefix may be placed (manual, restored or remote): */
enum policy_ban_rule {
    POLICY_BAN_OK = 0,
    POLICY_BAN_TOO_WIDE,    /* wider than min_prefix4/6: nobody may, not even with --force */
    POLICY_BAN_PROTECTED,   /* overlaps an absolute entry (built-in, AMI peer, own address) */
    POLICY_BAN_WHITELISTED, /* overlaps another entry, and not forced */
};
/* The first rule that refuses a ban of prefix (force overrides POLICY_BAN_WHITELISTED only);
 * *ret_entry (may be NULL) gets the entry it overlaps (NULL for TOO_WIDE and OK). */
enum policy_ban_rule policy_ban_check(const struct policy *p, const struct addr_prefix *prefix,
                                      bool force, const struct policy_wl_entry **ret_entry);
/* "too-wide", "protected", "whitelisted", "ok". */
const char *policy_ban_rule_name(enum policy_ban_rule rule);
/* One sentence that says why a ban of prefix is refused and how to change that, e.g.
 * "0.0.0.0/1 is wider than /8, the widest ban allowed ([protect] min_prefix4): nobody may ban
 * it, not even with --force". Returns buf. */
const char *policy_ban_refusal(const struct policy *p, const struct addr_prefix *prefix,
                               enum policy_ban_rule rule, const struct policy_wl_entry *entry,
                               char *buf, size_t len);

/* What one event of this type from this service adds to its key's window (>= 0). A
 * [policy:SERVICE] override wins over [events]. Service names compare case-sensitively. */
double policy_weight(const struct policy *p, enum sec_event_type type, const char *service);
/* Weighted failures within findtime that earn a ban for this service (>= 1). */
unsigned policy_threshold(const struct policy *p, const char *service);
/* The same for a source that authenticated successfully within policy_trust_window_ms():
 * trusted_maxretry, or 4 x the service's threshold when it is 0; never below the service's
 * threshold. */
unsigned policy_trusted_threshold(const struct policy *p, const char *service);
/* How long a SuccessfulAuth raises its key's threshold, in ms; 0 = never (trust_window = 0). */
int64_t policy_trust_window_ms(const struct policy *p);

/* The counting key: the /ipv4_prefix of an IPv4 address, the /ipv6_prefix of an IPv6 one; the
 * address itself when that prefix would hold a protected address or range (the key is what a
 * threshold ban bans, and we never ban ourselves), or when the address lies in a range whose
 * prefixes are shared by unrelated hosts (NAT64 64:ff9b::/96 and 64:ff9b:1::/48, Teredo
 * 2001::/32: their /64 holds a whole IPv4 internet or a Teredo server's every client). */
void policy_key(const struct policy *p, const struct addr *a, struct addr_prefix *ret_key);

/* Ban length for the n-th offence (n >= 1; 0 is taken as 1), in ms:
 * bantime * factor^(n-1), capped at bantime_max; 0 = permanent (n >= permanent_after > 0). */
int64_t policy_ban_ms(const struct policy *p, unsigned offence);

int64_t policy_findtime_ms(const struct policy *p);
/* Offences (threshold bans) started within this long before a new one escalate it. */
int64_t policy_offence_window_ms(const struct policy *p);
