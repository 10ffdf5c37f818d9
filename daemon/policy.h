/* Policy: pure judgement, no I/O. What an event weighs, which key it counts under, whether its
 * source is whitelisted, how many weighted failures earn a ban, and how long the n-th offence's
 * ban lasts. Built from the configuration plus run-time whitelist entries (loopback always; the
 * core adds each AMI peer's own address). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "sec_event.h"

#define POLICY_LABEL_MAX 48

struct policy;

struct policy_wl_entry {
    struct addr_prefix prefix;
    char label[POLICY_LABEL_MAX]; /* "loopback", "config", "ami:pbx1" */
};

/* The weight an event type carries by default (DESIGN.md "Events"): 1 for the failures, 0 for
 * the benign ones (SuccessfulAuth, ChallengeSent, ...). config_defaults() can use this. */
double policy_default_weight(enum sec_event_type type);

/* Copies what it needs; cfg and wl may be freed afterwards. Loopback (127.0.0.0/8, ::1/128) is
 * always whitelisted. NULL + errno: EINVAL (ipv4_prefix not 1..32, ipv6_prefix not 32..128,
 * maxretry 0, bantime <= 0, factor < 1), ENOMEM. */
struct policy *policy_new(const struct cfg_policy *cfg, const struct cfg_whitelist *wl);
void policy_free(struct policy *p); /* accepts NULL */

/* Adds a whitelist entry at run time (an AMI peer's address). Host bits of prefix are cleared.
 * label is copied (truncated to fit). Returns 0 or -ENOMEM. */
int policy_whitelist_add(struct policy *p, const struct addr_prefix *prefix, const char *label);

/* The first whitelist entry holding a, or NULL. The pointer lives as long as the policy. */
const struct policy_wl_entry *policy_whitelist_match(const struct policy *p, const struct addr *a);
/* The first whitelist entry that overlaps prefix (either one covers the other), or NULL: a ban
 * of that prefix would ban a whitelisted address. */
const struct policy_wl_entry *policy_whitelist_overlap(const struct policy *p,
                                                       const struct addr_prefix *prefix);

/* What one event of this type from this service adds to its key's window (>= 0). A
 * [policy:SERVICE] override wins over [events]. Service names compare case-sensitively. */
double policy_weight(const struct policy *p, enum sec_event_type type, const char *service);
/* Weighted failures within findtime that earn a ban for this service (>= 1). */
unsigned policy_threshold(const struct policy *p, const char *service);

/* The counting key: the /ipv4_prefix of an IPv4 address, the /ipv6_prefix of an IPv6 one; the
 * address itself when that prefix would hold a whitelisted address (the key is what a threshold
 * ban bans, and we never ban ourselves). */
void policy_key(const struct policy *p, const struct addr *a, struct addr_prefix *ret_key);

/* Ban length for the n-th offence (n >= 1; 0 is taken as 1), in ms:
 * bantime * factor^(n-1), capped at bantime_max; 0 = permanent (n >= permanent_after > 0). */
int64_t policy_ban_ms(const struct policy *p, unsigned offence);

int64_t policy_findtime_ms(const struct policy *p);
/* Offences (threshold bans) started within this long before a new one escalate it. */
int64_t policy_offence_window_ms(const struct policy *p);
