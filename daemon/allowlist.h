/* The runtime allowlist: prefixes an admin allowed on the control socket (pbxguard allow), with
 * who allowed each, why, and until when. Pure bookkeeping, no I/O: the control command writes
 * each change to the store and hands the prefix to the policy (POLICY_SRC_ALLOW), which is
 * what every "is this address protected" question asks; the core expires entries when due and
 * loads the list from the store at start.
 *
 * Bounded: at most CTL_ALLOW_MAX entries (a full list refuses more with -ENOSPC). Expiry runs
 * on the wall clock of the daemon, not on the kernel: an entry is dropped by
 * allowlist_expire() once its time has come. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "store.h"

struct allowlist;

/* An empty list of at most max entries. NULL + errno (ENOMEM, EINVAL for max 0). */
struct allowlist *allowlist_new(unsigned max);
void allowlist_free(struct allowlist *al); /* accepts NULL */

/* Adds e (host bits of its prefix cleared), or replaces the entry of the same prefix (its
 * reason, expiry and author are the new ones; *ret_replaced, may be NULL, says so). Returns 0,
 * -ENOSPC when the list is full, -EINVAL for an expiry not after added_ms (0 is "until
 * removed"), -ENOMEM. */
int allowlist_add(struct allowlist *al, const struct store_allow *e, bool *ret_replaced);
/* Removes the entry of exactly prefix: 0, or -ENOENT. */
int allowlist_remove(struct allowlist *al, const struct addr_prefix *prefix);
/* The entry of exactly prefix, or NULL. Valid until the next change. */
const struct store_allow *allowlist_find(const struct allowlist *al,
                                         const struct addr_prefix *prefix);
/* The narrowest entry that holds a, or NULL (a walk: for show, not for the event path). */
const struct store_allow *allowlist_holding(const struct allowlist *al, const struct addr *a);
/* The entries, in the order they were added; valid until the next change. */
const struct store_allow *allowlist_entries(const struct allowlist *al, unsigned *ret_n);
unsigned allowlist_max(const struct allowlist *al);

/* The earliest expiry of an entry, or 0 when none expires. */
int64_t allowlist_next_expiry(const struct allowlist *al);
/* Removes every entry whose expiry is at or before now_ms, calling fn (may be NULL) with each
 * before it goes. Returns how many were removed. */
typedef void (*allowlist_fn)(void *data, const struct store_allow *e);
unsigned allowlist_expire(struct allowlist *al, int64_t now_ms, allowlist_fn fn, void *data);
