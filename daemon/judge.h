/* The decide step: policy + store. The core hands it each event and each CLI request; it
 * returns verdicts for the sinks (nftables, StatsD, log). No sockets, no kernel, no logging:
 * errors are returned (-errno from store.h) for the core to log once. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "policy.h"
#include "sec_event.h"
#include "store.h"

enum verdict_action { VERDICT_NONE = 0, VERDICT_BAN, VERDICT_UNBAN };
enum verdict_reason {
    VERDICT_THRESHOLD = 0, /* the window reached the threshold */
    VERDICT_MANUAL,        /* a ban or unban asked for on the control socket */
    VERDICT_RESTORE,       /* an active ban re-installed at start or after a repair */
    VERDICT_PROTECTED,     /* an active ban lifted: it holds an address now protected */
    VERDICT_REMOTE,        /* a ban or unban from a remote source (judge_remote_ban()) */
};

struct verdict {
    enum verdict_action action;
    enum verdict_reason reason;
    struct addr_prefix prefix; /* what to add to / remove from the ban sets */
    int64_t timeout_ms;        /* ban: kernel timeout; 0 = permanent */
    double failures;           /* weighted failures in the window when it tripped */
    unsigned offence;          /* n-th offence of the key */
    int64_t ban_id;            /* the bans row (0 for unban) */
    /* About the event itself, for the meters, also when action is VERDICT_NONE: */
    bool counted;        /* it weighed > 0 and was recorded (failed_auth meters) */
    bool whitelisted;    /* recorded but never counted: its source is whitelisted */
    bool already_banned; /* its key is banned now: recorded, no new verdict */
    /* Its source can never be a real one (policy_ignored(): link-local, ::, multicast, ...):
     * the label of that range ("link-local"); nothing was recorded. NULL otherwise. */
    const char *ignored;
    bool authenticated; /* its key logged in successfully within trust_window, so it was held
                           to trusted_maxretry (set once maxretry was reached) */
    /* The key's weighted failures in the window and the threshold they were held to, when the
     * window was summed (a counted event of a key neither protected nor banned); else 0. */
    double window;
    unsigned threshold;
    bool stale; /* backfilled, older than findtime: recorded, not judged */
    enum sec_event_type event_type;
    char service[SEC_SERVICE_MAX];
};

struct judge;

/* Borrows store and policy; both must outlive the judge. NULL + errno (ENOMEM). */
struct judge *judge_new(struct store *store, const struct policy *policy);
void judge_free(struct judge *j); /* accepts NULL */
/* After a reload: windows and bans carry on, counted under the new rules. */
void judge_set_policy(struct judge *j, const struct policy *policy);

/* Records ev (if it weighs anything; whitelisted sources too, marked as such; a source that
 * policy_ignored() names is not recorded at all, see verdict.ignored) and sums its key's
 * window. When the sum reaches the service's threshold and the key is not banned (nor inside an
 * active broader ban), adds a threshold ban whose length follows the key's offence count and
 * returns it as VERDICT_BAN; a ban always starts at now_ms. The threshold is the trusted one
 * for a key whose last SuccessfulAuth (recorded here, with trust_window > 0) lies within
 * trust_window.
 * A live event counts at now_ms (the daemon's wall clock at receipt), over the window
 * [max(now - findtime, end of the key's last ban), now]. A backfilled one (ev->backfilled)
 * counts at its own time ev->occurred_ms (now_ms if later), and is judged on the heaviest
 * findtime-long window that holds that time and ends by now_ms; older than findtime, it is
 * recorded only (verdict.stale). */
int judge_event(struct judge *j, const struct sec_event *ev, int64_t now_ms,
                struct verdict *ret_verdict);

/* A manual ban of prefix (host bits cleared) for duration_ms (0 = permanent). Every ban that
 * does not come from the event path (manual now, remote later) passes policy_ban_check(): a
 * prefix wider than the policy's min_prefix or overlapping an absolute protection (built-in
 * ranges, AMI peers, the host's own addresses) is refused with -EPERM whatever force says; one
 * overlapping another protected entry (the configured whitelist, gateways, resolvers) unless
 * force. policy_ban_check() and policy_ban_refusal() say why. An active ban of the same prefix
 * is replaced (ended as lifted by who). who: "cli:uid=0". note: the admin's reason, kept with
 * the ban (NULL or "" for none; cut to STORE_NOTE_MAX - 1 bytes). */
int judge_manual_ban(struct judge *j, const struct addr_prefix *prefix, int64_t duration_ms,
                     bool force, const char *who, const char *note, int64_t now_ms,
                     struct verdict *ret_verdict);

/* How the active bans hold a prefix, as an unban sees it. This is the whole unban policy: an
 * unban lifts the prefix's own ban, or, for an address whose counting key is banned (an IPv6
 * address inside its banned /64), that key's ban, which is how the daemon bans that address.
 * A wider prefix banned for another reason (a manual /24) is never lifted because one address
 * inside it was named: that would free the whole prefix, so it is named for the admin instead. */
enum judge_hold {
    JUDGE_NOT_BANNED = 0, /* no active ban holds it */
    JUDGE_BANNED,         /* it has an active ban of its own */
    JUDGE_BANNED_AS_KEY,  /* an address whose counting key is banned */
    JUDGE_INSIDE_PREFIX,  /* only a wider banned prefix, not its key, holds it */
};

struct judge_cover {
    enum judge_hold hold;
    /* JUDGE_BANNED, JUDGE_BANNED_AS_KEY: the ban an unban lifts; JUDGE_INSIDE_PREFIX: the
     * narrowest wider banned prefix that holds it. */
    struct addr_prefix prefix;
};

/* Says what holds prefix (host bits cleared) at now_ms and what an unban of it would lift. */
int judge_unban_target(struct judge *j, const struct addr_prefix *prefix, int64_t now_ms,
                       struct judge_cover *ret_cover);

/* Lifts what judge_unban_target() names (ended as lifted by who) and returns its VERDICT_UNBAN.
 * -ENOENT: nothing an unban may lift (not banned, or only inside a wider banned prefix);
 * ret_cover (may be NULL) says which, and is written in every case but a store error. */
int judge_unban(struct judge *j, const struct addr_prefix *prefix, const char *who, int64_t now_ms,
                struct verdict *ret_verdict, struct judge_cover *ret_cover);

/* Marks up to max bans whose time has passed as ended (the kernel drops them by itself). */
int judge_expire(struct judge *j, int64_t now_ms, unsigned max, unsigned *ret_n);

/* Calls fn with a VERDICT_BAN (reason RESTORE, timeout = remaining time) for every active ban:
 * for restore at start and whenever the nftables table must be rebuilt. An active ban that the
 * rules no longer allow (judge_ban_allowed()) is not restored: it is lifted, and fn gets a
 * VERDICT_UNBAN with reason PROTECTED for it (the kernel may still hold it from before). */
typedef int (*judge_verdict_fn)(void *data, const struct verdict *v);
int judge_active_bans(struct judge *j, int64_t now_ms, judge_verdict_fn fn, void *data);
/* The same, a slice at a time: up to max bans of the walk after *cursor (see
 * store_bans_active_slice() for the order, and why bans lifted or expired between two slices
 * are never restored), then the lifts of those no longer allowed. *ret_n (may be NULL) gets
 * how many bans were visited; cursor->done says the walk is over. */
int judge_restore_slice(struct judge *j, int64_t now_ms, struct store_ban_cursor *cursor,
                        unsigned max, judge_verdict_fn fn, void *data, unsigned *ret_n);

/* Whether an active ban may stay: a manual one must pass policy_ban_check() as if forced (the
 * admin may have forced it), a threshold one as if not (its key would have been narrowed). */
bool judge_ban_allowed(const struct judge *j, const struct store_ban *b);

/* After prefix became protected (the host got a new address, ...): lifts every active ban
 * holding prefix's first address that judge_ban_allowed() refuses now, as VERDICT_UNBAN with
 * reason PROTECTED (up to max of them; *ret_n gets their number). Returns 0 or -errno. */
int judge_protect(struct judge *j, const struct addr_prefix *prefix, int64_t now_ms,
                  struct verdict *ret_verdicts, unsigned max, unsigned *ret_n);

/* After prefix was allowed (pbxguard allow; the policy holds it already): lifts, as lifted by
 * who, every active ban of prefix itself or inside it, and every wider one that holds it and
 * that the rules refuse now (a threshold or remote ban); fn gets a VERDICT_UNBAN (reason
 * VERDICT_MANUAL) for each. A wider manual ban holding it stays, since an admin banned that
 * whole range on purpose: *ret_kept (may be NULL) gets the narrowest such, and *ret_has_kept
 * says whether there is one. Finding the bans inside a prefix wider than one address walks
 * every active ban (the store keeps prefixes as text); an address costs one indexed lookup per
 * length banned. Returns 0 or -errno (fn's own errors too). */
int judge_allow(struct judge *j, const struct addr_prefix *prefix, const char *who, int64_t now_ms,
                judge_verdict_fn fn, void *data, struct addr_prefix *ret_kept, bool *ret_has_kept);

/* --- Remote bans: untrusted input from other nodes or services ---
 *
 * A remote source (the fleet's shared PostgreSQL table, daemon/cluster.c; a CrowdSec LAPI's
 * decisions; ...) hands every ban it reads to judge_remote_ban() before anything reaches the
 * kernel. The sender is not trusted: the same absolute rules as for a manual ban apply
 * (policy_ban_check() unforced: built-in ranges, loopback, the host's own addresses, gateways,
 * resolvers, AMI peers, learned trunks, [whitelist], nothing wider than [protect] min_prefix),
 * plus the source's own widest prefix and a sane expiry. A refused ban is not stored; the
 * caller counts and logs it (rate-limited). An accepted one is stored with reason
 * STORE_BAN_REMOTE and the given origin, so a restart restores it like any other ban while the
 * source is unreachable, and `list`/`show` name its origin.
 *
 * To add a remote source: fill a struct judge_remote per ban it reads (origin "NAME:WHO",
 * e.g. "crowdsec:cscli"), call judge_remote_ban() and hand a VERDICT_BAN to the core's sinks;
 * count each refusal by its judge_remote_refusal_name(); lift with judge_remote_unban(). */

/* Why a remote ban was refused. */
enum judge_remote_refusal {
    JUDGE_REMOTE_OK = 0,
    JUDGE_REMOTE_TOO_WIDE,            /* wider than [protect] min_prefix: nobody may ban it */
    JUDGE_REMOTE_PROTECTED,           /* overlaps an absolute protection (policy_ban_check()) */
    JUDGE_REMOTE_WHITELISTED,         /* overlaps [whitelist], a gateway, a resolver, a trunk */
    JUDGE_REMOTE_WIDER_THAN_ACCEPTED, /* wider than the source's max_prefix4/6 */
    JUDGE_REMOTE_BAD_EXPIRY,          /* further away than JUDGE_REMOTE_MAX_MS (not "permanent") */
    JUDGE_REMOTE_MALFORMED, /* the source's row did not parse (set by the source itself) */
    JUDGE_REMOTE_REFUSAL_COUNT
};
/* "too-wide", "protected", "whitelisted", "wider-than-accepted", "bad-expiry", "malformed":
 * one safe meter segment each. */
const char *judge_remote_refusal_name(enum judge_remote_refusal why);

/* The longest finite remote ban, as for a manual one (100 years): a sender that means forever
 * says permanent; an expiry beyond this is a broken or hostile sender. */
#define JUDGE_REMOTE_MAX_MS (100LL * 365 * 86400 * 1000)
/* A remote ban that outlasts the active ban of its prefix by no more than this is the same ban
 * read again (as the fleet's publish function sees a re-send). */
#define JUDGE_REMOTE_SLACK_MS 2000

struct judge_remote {
    struct addr_prefix prefix; /* host bits must be clear */
    int64_t remaining_ms;      /* > 0; 0 = permanent (the sender said so) */
    const char *origin;        /* stored as the ban's origin: "cluster:NODE", "crowdsec:..." */
    const char *note;          /* may be NULL; already escaped (it is shown as is) */
    unsigned max_prefix4;      /* the widest IPv4 prefix this source may ban (1..32) */
    unsigned max_prefix6;      /* the same for IPv6 (1..128) */
};

/* Judges one remote ban at now_ms. Returns 0 with *ret_refusal JUDGE_REMOTE_OK and a VERDICT_BAN
 * (reason VERDICT_REMOTE, timeout = remaining time) when it is stored and is to be enforced;
 * 0 with VERDICT_NONE when an active ban of the prefix already lasts as long or longer (within
 * JUDGE_REMOTE_SLACK_MS), or a
 * wider active ban holds it (nothing to do); -EPERM with *ret_refusal saying why (nothing
 * stored); -EINVAL (host bits set, remaining_ms < 0); or a store error. A remote ban that lasts
 * longer than the active one of the same prefix replaces it (the old one is ended as lifted by
 * the origin). */
int judge_remote_ban(struct judge *j, const struct judge_remote *rb, int64_t now_ms,
                     struct verdict *ret_verdict, enum judge_remote_refusal *ret_refusal);

/* A remote unban (a tombstone in the fleet's table): lifts the active ban of exactly prefix,
 * whatever its origin, as lifted by origin. Returns 0 with a VERDICT_UNBAN (reason
 * VERDICT_REMOTE), -ENOENT if no active ban of that prefix exists, or a store error. Lifting
 * harms nobody, so no rule refuses it. */
int judge_remote_unban(struct judge *j, const struct addr_prefix *prefix, const char *origin,
                       int64_t now_ms, struct verdict *ret_verdict);
