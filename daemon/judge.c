/* The decide step. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "judge.h"

struct judge {
    struct store *store;
    const struct policy *policy;
};

struct judge *judge_new(struct store *store, const struct policy *policy)
{
    struct judge *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->store = store;
    j->policy = policy;
    return j;
}

void judge_free(struct judge *j)
{
    free(j);
}

void judge_set_policy(struct judge *j, const struct policy *policy)
{
    j->policy = policy;
}

struct broader {
    unsigned max_len; /* as broad as the key or broader */
    struct store_ban ban;
};

static int first_broader(void *data, const struct store_ban *b)
{
    struct broader *c = data;
    if (b->prefix.len > c->max_len)
        return 0; /* narrower than the key (a host ban on its network address): go on */
    c->ban = *b;
    return 1; /* found: stop */
}

static void verdict_from_ban(const struct store_ban *b, enum verdict_action action,
                             enum verdict_reason reason, int64_t now_ms, struct verdict *v)
{
    v->action = action;
    v->reason = reason;
    v->prefix = b->prefix;
    v->timeout_ms = b->expires_ms ? b->expires_ms - now_ms : 0;
    if (action == VERDICT_BAN && b->expires_ms && v->timeout_ms < 1)
        v->timeout_ms = 1;
    v->failures = b->failures;
    v->offence = b->offence;
    v->ban_id = b->id;
    if (b->event_type >= 0)
        v->event_type = (enum sec_event_type)b->event_type;
    snprintf(v->service, sizeof(v->service), "%s", b->service);
}

static unsigned next_offence(struct judge *j, const struct addr_prefix *key, int64_t now_ms,
                             int *ret_err)
{
    unsigned n = 0;
    *ret_err =
        store_offences_since(j->store, key, now_ms - policy_offence_window_ms(j->policy), &n);
    return n + 1;
}

int judge_event(struct judge *j, const struct sec_event *ev, int64_t now_ms,
                struct verdict *ret_verdict)
{
    struct verdict v = {.event_type = ev->type};
    snprintf(v.service, sizeof(v.service), "%.*s", SEC_SERVICE_MAX - 1, ev->service);
    struct addr_prefix key;
    int r;
    /* A live event counts now. A backfilled one counts at its own time, never in the future
     * (a clock set back, a forged date): the window it falls in is the one it happened in. */
    int64_t at = now_ms;
    if (ev->backfilled && ev->occurred_ms > 0 && ev->occurred_ms < now_ms)
        at = ev->occurred_ms;
    /* A successful login is remembered for its key, whatever it weighs: one upsert. Not for a
     * whitelisted source (our own AMI login among them), which is never counted anyway. */
    if (ev->type == SEC_SUCCESSFUL_AUTH && policy_trust_window_ms(j->policy) > 0 &&
        !policy_whitelist_match(j->policy, &ev->remote.addr)) {
        policy_key(j->policy, &ev->remote.addr, &key);
        r = store_success_add(j->store, ev, &key, at);
        if (r < 0)
            return r;
    }
    double w = policy_weight(j->policy, ev->type, ev->service);
    if (w <= 0) {
        *ret_verdict = v;
        return 0;
    }
    const struct policy_wl_entry *ign = policy_ignored(j->policy, &ev->remote.addr);
    if (ign) {
        v.ignored = ign->label;
        *ret_verdict = v;
        return 0;
    }
    int64_t findtime = policy_findtime_ms(j->policy);
    policy_key(j->policy, &ev->remote.addr, &key);
    v.whitelisted = policy_whitelist_match(j->policy, &ev->remote.addr) != NULL;
    /* Older than any window that ends now: kept for reports, judged by nobody. */
    v.stale = at < now_ms - findtime;
    /* Such a failure read after the fact from a place that names it is deferred, to be written
     * with its neighbours in the table (store_failure_defer()); written at once if the store
     * holds as many as it takes. */
    r = -ENOSPC;
    if (v.stale && ev->backfilled && ev->place > 0)
        r = store_failure_defer(j->store, ev, &key, v.whitelisted ? 0 : w, v.whitelisted, at);
    if (r == -ENOSPC)
        r = store_failure_add(j->store, ev, &key, v.whitelisted ? 0 : w, v.whitelisted, at);
    if (r < 0)
        return r;
    v.counted = true;
    if (v.whitelisted || v.stale) {
        *ret_verdict = v;
        return 0;
    }

    /* Failures before the end of the key's last ban do not count again: an unbanned source
     * starts from a clean window. */
    int64_t from = at - findtime;
    struct store_ban last;
    r = store_ban_last(j->store, &key, &last);
    if (r == 0) {
        if (store_ban_active(&last, now_ms)) {
            v.already_banned = true;
            *ret_verdict = v;
            return 0;
        }
        int64_t end = last.ended_ms ? last.ended_ms : last.expires_ms;
        if (end > from)
            from = end;
    } else if (r != -ENOENT) {
        return r;
    }
    double sum;
    unsigned threshold = policy_threshold(j->policy, ev->service);
    if (at == now_ms) {
        r = store_window_sum(j->store, &key, from, now_ms, &sum);
    } else {
        /* In the past, the event may complete a window with events before it or after it
         * (AMI's, while the log was being read): the heaviest window that holds it. */
        int64_t to = at + findtime < now_ms ? at + findtime : now_ms;
        r = store_window_peak(j->store, &key, from, at, to, findtime, (double)threshold, &sum);
    }
    if (r < 0)
        return r;
    v.window = sum;
    v.threshold = threshold;
    /* Weights are decimal fractions: allow for the last bits of a sum like 0.1 * 10. */
    if (sum + 1e-9 < (double)v.threshold) {
        *ret_verdict = v;
        return 0;
    }
    /* A ban is due under maxretry. A key that logged in successfully within trust_window is an
     * office or a phone that works: it is held to the higher trusted threshold. Asked only on
     * this path, so an ordinary failure costs nothing more. */
    int64_t window = policy_trust_window_ms(j->policy);
    if (window > 0) {
        struct store_success ok;
        r = store_success_get(j->store, &key, &ok);
        if (r == 0 && ok.last_ms >= now_ms - window) {
            v.authenticated = true;
            v.threshold = policy_trusted_threshold(j->policy, ev->service);
            if (sum + 1e-9 < (double)v.threshold) {
                *ret_verdict = v;
                return 0;
            }
        } else if (r < 0 && r != -ENOENT) {
            return r;
        }
    }

    /* Rare path (a ban is due): a broader active ban (a manual /24) already covers the key. */
    struct broader cover = {.max_len = key.len};
    r = store_bans_covering(j->store, &key.addr, true, now_ms, first_broader, &cover);
    if (r < 0)
        return r;
    if (r == 1) {
        v.already_banned = true;
        *ret_verdict = v;
        return 0;
    }

    struct store_ban b = {.prefix = key,
                          .start_ms = now_ms,
                          .reason = STORE_BAN_THRESHOLD,
                          .failures = sum,
                          .event_type = (int)ev->type};
    b.offence = next_offence(j, &key, now_ms, &r);
    if (r < 0)
        return r;
    int64_t len = policy_ban_ms(j->policy, b.offence);
    b.expires_ms = len ? now_ms + len : 0;
    snprintf(b.origin, sizeof(b.origin), "%.*s", SEC_SOURCE_MAX - 1, ev->source);
    snprintf(b.service, sizeof(b.service), "%s", v.service);
    r = store_ban_add(j->store, &b, &b.id);
    if (r < 0)
        return r;
    verdict_from_ban(&b, VERDICT_BAN, VERDICT_THRESHOLD, now_ms, &v);
    *ret_verdict = v;
    return 0;
}

int judge_manual_ban(struct judge *j, const struct addr_prefix *prefix, int64_t duration_ms,
                     bool force, const char *who, const char *note, int64_t now_ms,
                     struct verdict *ret_verdict)
{
    if (duration_ms < 0)
        return -EINVAL;
    struct addr_prefix p;
    addr_prefix_of(&prefix->addr, prefix->len, &p);
    if (policy_ban_check(j->policy, &p, force, NULL) != POLICY_BAN_OK)
        return -EPERM;
    int r = store_ban_lift(j->store, &p, now_ms, who, NULL);
    if (r < 0)
        return r;
    struct store_ban b = {
        .prefix = p, .start_ms = now_ms, .reason = STORE_BAN_MANUAL, .event_type = -1};
    b.expires_ms = duration_ms ? now_ms + duration_ms : 0;
    b.offence = next_offence(j, &p, now_ms, &r);
    if (r < 0)
        return r;
    snprintf(b.origin, sizeof(b.origin), "%s", who ? who : "");
    snprintf(b.note, sizeof(b.note), "%s", note ? note : "");
    r = store_ban_add(j->store, &b, &b.id);
    if (r < 0)
        return r;
    struct verdict v = {0};
    verdict_from_ban(&b, VERDICT_BAN, VERDICT_MANUAL, now_ms, &v);
    *ret_verdict = v;
    return 0;
}

struct target {
    struct addr_prefix asked, key;
    bool asked_is_address;
    bool exact, key_banned, wider;
    struct store_ban exact_ban, key_ban;
    struct addr_prefix wider_prefix; /* the narrowest one */
};

/* Bans come longest prefix first (newest first within one prefix). */
static int target_one(void *data, const struct store_ban *b)
{
    struct target *t = data;
    if (b->prefix.len > t->asked.len)
        return 0; /* narrower than the asked prefix (a host ban on its network address) */
    if (addr_prefix_equal(&b->prefix, &t->asked)) {
        if (!t->exact)
            t->exact_ban = *b;
        t->exact = true;
    } else if (t->asked_is_address && addr_prefix_equal(&b->prefix, &t->key)) {
        if (!t->key_banned)
            t->key_ban = *b;
        t->key_banned = true;
    } else if (!t->wider) {
        t->wider = true;
        t->wider_prefix = b->prefix;
    }
    return 0;
}

/* The prefix's own ban wins; then a wider prefix banned for its own sake, which the admin must
 * lift by name (lifting the address's key would not free the address then); then the key. */
static int find_target(struct judge *j, const struct addr_prefix *prefix, int64_t now_ms,
                       struct target *t, struct judge_cover *ret_cover,
                       const struct store_ban **ret_ban)
{
    memset(t, 0, sizeof(*t));
    addr_prefix_of(&prefix->addr, prefix->len, &t->asked);
    t->asked_is_address = t->asked.len == addr_max_len(&t->asked.addr);
    policy_key(j->policy, &t->asked.addr, &t->key);
    /* Every active ban that holds the asked prefix (its own ban included). */
    int r = store_bans_covering(j->store, &t->asked.addr, true, now_ms, target_one, t);
    if (r < 0)
        return r;
    struct judge_cover c = {.hold = JUDGE_NOT_BANNED};
    *ret_ban = NULL;
    if (t->exact) {
        c = (struct judge_cover){JUDGE_BANNED, t->exact_ban.prefix};
        *ret_ban = &t->exact_ban;
    } else if (t->wider) {
        c = (struct judge_cover){JUDGE_INSIDE_PREFIX, t->wider_prefix};
    } else if (t->key_banned) {
        c = (struct judge_cover){JUDGE_BANNED_AS_KEY, t->key_ban.prefix};
        *ret_ban = &t->key_ban;
    }
    *ret_cover = c;
    return 0;
}

int judge_unban_target(struct judge *j, const struct addr_prefix *prefix, int64_t now_ms,
                       struct judge_cover *ret_cover)
{
    struct target t;
    const struct store_ban *b;
    return find_target(j, prefix, now_ms, &t, ret_cover, &b);
}

int judge_unban(struct judge *j, const struct addr_prefix *prefix, const char *who, int64_t now_ms,
                struct verdict *ret_verdict, struct judge_cover *ret_cover)
{
    struct target t;
    struct judge_cover cover;
    const struct store_ban *b;
    int r = find_target(j, prefix, now_ms, &t, &cover, &b);
    if (r < 0)
        return r;
    if (ret_cover)
        *ret_cover = cover;
    if (!b)
        return -ENOENT;
    /* One lift ends every active ban of the prefix. */
    r = store_ban_lift(j->store, &b->prefix, now_ms, who, NULL);
    if (r < 0)
        return r;
    struct verdict v = {0};
    verdict_from_ban(b, VERDICT_UNBAN, VERDICT_MANUAL, now_ms, &v);
    v.timeout_ms = 0;
    *ret_verdict = v;
    return 0;
}

int judge_expire(struct judge *j, int64_t now_ms, unsigned max, unsigned *ret_n)
{
    return store_bans_expire(j->store, now_ms, max, ret_n);
}

bool judge_ban_allowed(const struct judge *j, const struct store_ban *b)
{
    return policy_ban_check(j->policy, &b->prefix, b->reason == STORE_BAN_MANUAL, NULL) ==
           POLICY_BAN_OK;
}

/* Bans to lift, collected during a walk of the store and lifted after it. */
struct lift_list {
    struct store_ban *bans;
    unsigned n, cap;
};

static int lift_list_add(struct lift_list *l, const struct store_ban *b)
{
    if (l->n == l->cap) {
        unsigned cap = l->cap ? l->cap * 2 : 8;
        struct store_ban *m = realloc(l->bans, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        l->bans = m;
        l->cap = cap;
    }
    l->bans[l->n++] = *b;
    return 0;
}

#define PROTECT_WHO "pbxguardd:protected"

struct restore {
    struct judge *j;
    int64_t now_ms;
    judge_verdict_fn fn;
    void *data;
    struct lift_list lift;
};

static int restore_one(void *data, const struct store_ban *b)
{
    struct restore *rs = data;
    if (!judge_ban_allowed(rs->j, b))
        return lift_list_add(&rs->lift, b);
    struct verdict v = {0};
    verdict_from_ban(b, VERDICT_BAN, VERDICT_RESTORE, rs->now_ms, &v);
    return rs->fn(rs->data, &v);
}

/* Lifts the bans a walk collected as no longer allowed, each reported to fn as an unban. */
static int lift_collected(struct restore *rs)
{
    int r = 0;
    for (unsigned i = 0; r >= 0 && i < rs->lift.n; i++) {
        const struct store_ban *b = &rs->lift.bans[i];
        r = store_ban_lift(rs->j->store, &b->prefix, rs->now_ms, PROTECT_WHO, NULL);
        if (r < 0)
            break;
        struct verdict v = {0};
        verdict_from_ban(b, VERDICT_UNBAN, VERDICT_PROTECTED, rs->now_ms, &v);
        v.timeout_ms = 0;
        r = rs->fn(rs->data, &v);
    }
    free(rs->lift.bans);
    rs->lift = (struct lift_list){0};
    return r;
}

int judge_restore_slice(struct judge *j, int64_t now_ms, struct store_ban_cursor *cursor,
                        unsigned max, judge_verdict_fn fn, void *data, unsigned *ret_n)
{
    struct restore rs = {.j = j, .now_ms = now_ms, .fn = fn, .data = data};
    int r = store_bans_active_slice(j->store, now_ms, cursor, max, restore_one, &rs, ret_n);
    if (r < 0) {
        free(rs.lift.bans);
        return r;
    }
    return lift_collected(&rs);
}

int judge_active_bans(struct judge *j, int64_t now_ms, judge_verdict_fn fn, void *data)
{
    struct store_ban_cursor cur = {0};
    int r = 0;
    while (r >= 0 && !cur.done)
        r = judge_restore_slice(j, now_ms, &cur, 4096, fn, data, NULL);
    return r;
}

static int collect_unallowed(void *data, const struct store_ban *b)
{
    struct restore *rs = data;
    return judge_ban_allowed(rs->j, b) ? 0 : lift_list_add(&rs->lift, b);
}

int judge_protect(struct judge *j, const struct addr_prefix *prefix, int64_t now_ms,
                  struct verdict *ret_verdicts, unsigned max, unsigned *ret_n)
{
    struct restore rs = {.j = j, .now_ms = now_ms};
    unsigned n = 0;
    int r = store_bans_covering(j->store, &prefix->addr, true, now_ms, collect_unallowed, &rs);
    for (unsigned i = 0; r >= 0 && i < rs.lift.n && n < max; i++) {
        const struct store_ban *b = &rs.lift.bans[i];
        /* A prefix banned more than once shows up once per row: one lift ends them all. */
        bool seen = false;
        for (unsigned k = 0; k < n; k++)
            seen |= addr_prefix_equal(&ret_verdicts[k].prefix, &b->prefix);
        if (seen)
            continue;
        r = store_ban_lift(j->store, &b->prefix, now_ms, PROTECT_WHO, NULL);
        if (r < 0)
            break;
        struct verdict v = {0};
        verdict_from_ban(b, VERDICT_UNBAN, VERDICT_PROTECTED, now_ms, &v);
        v.timeout_ms = 0;
        ret_verdicts[n++] = v;
    }
    free(rs.lift.bans);
    if (r < 0)
        return r;
    *ret_n = n;
    return 0;
}

/* --- the allowlist --- */

struct allow_walk {
    struct judge *j;
    struct addr_prefix prefix;
    struct lift_list lift;
    bool has_kept;
    struct addr_prefix kept;
};

/* A ban holding the allowed prefix's first address: inside it, the same, or wider. */
static int allow_holding(void *data, const struct store_ban *b)
{
    struct allow_walk *w = data;
    if (b->prefix.len >= w->prefix.len)
        return lift_list_add(&w->lift, b);
    if (b->reason == STORE_BAN_MANUAL) {
        if (!w->has_kept || b->prefix.len > w->kept.len)
            w->kept = b->prefix;
        w->has_kept = true;
        return 0;
    }
    return judge_ban_allowed(w->j, b) ? 0 : lift_list_add(&w->lift, b);
}

/* Any active ban strictly inside the allowed prefix (those holding its first address are
 * found already, and deduplicated below). */
static int allow_inside(void *data, const struct store_ban *b)
{
    struct allow_walk *w = data;
    if (b->prefix.len > w->prefix.len && addr_prefix_covers(&w->prefix, &b->prefix))
        return lift_list_add(&w->lift, b);
    return 0;
}

int judge_allow(struct judge *j, const struct addr_prefix *prefix, const char *who, int64_t now_ms,
                judge_verdict_fn fn, void *data, struct addr_prefix *ret_kept, bool *ret_has_kept)
{
    struct allow_walk w = {.j = j};
    addr_prefix_of(&prefix->addr, prefix->len, &w.prefix);
    int r = store_bans_covering(j->store, &w.prefix.addr, true, now_ms, allow_holding, &w);
    if (r >= 0 && w.prefix.len < addr_max_len(&w.prefix.addr))
        r = store_bans_active(j->store, now_ms, allow_inside, &w);
    for (unsigned i = 0; r >= 0 && i < w.lift.n; i++) {
        const struct store_ban *b = &w.lift.bans[i];
        /* A prefix banned more than once, or found by both walks: one lift ends them all. */
        bool seen = false;
        for (unsigned k = 0; k < i && !seen; k++)
            seen = addr_prefix_equal(&w.lift.bans[k].prefix, &b->prefix);
        if (seen)
            continue;
        r = store_ban_lift(j->store, &b->prefix, now_ms, who, NULL);
        if (r < 0)
            break;
        struct verdict v = {0};
        verdict_from_ban(b, VERDICT_UNBAN, VERDICT_MANUAL, now_ms, &v);
        v.timeout_ms = 0;
        r = fn(data, &v);
    }
    free(w.lift.bans);
    if (r < 0)
        return r;
    if (ret_has_kept)
        *ret_has_kept = w.has_kept;
    if (ret_kept && w.has_kept)
        *ret_kept = w.kept;
    return 0;
}

/* --- remote bans --- */

const char *judge_remote_refusal_name(enum judge_remote_refusal why)
{
    switch (why) {
    case JUDGE_REMOTE_OK:
        return "ok";
    case JUDGE_REMOTE_TOO_WIDE:
        return "too-wide";
    case JUDGE_REMOTE_PROTECTED:
        return "protected";
    case JUDGE_REMOTE_WHITELISTED:
        return "whitelisted";
    case JUDGE_REMOTE_WIDER_THAN_ACCEPTED:
        return "wider-than-accepted";
    case JUDGE_REMOTE_BAD_EXPIRY:
        return "bad-expiry";
    case JUDGE_REMOTE_MALFORMED:
    case JUDGE_REMOTE_REFUSAL_COUNT:
        break;
    }
    return "malformed";
}

struct remote_cover {
    struct addr_prefix prefix;
    bool exact, wider;
    struct store_ban exact_ban;
};

static int remote_cover_one(void *data, const struct store_ban *b)
{
    struct remote_cover *c = data;
    if (b->prefix.len > c->prefix.len)
        return 0; /* narrower (a host ban on the network address): not a cover */
    if (addr_prefix_equal(&b->prefix, &c->prefix)) {
        if (!c->exact)
            c->exact_ban = *b;
        c->exact = true;
    } else {
        c->wider = true;
    }
    return 0;
}

int judge_remote_ban(struct judge *j, const struct judge_remote *rb, int64_t now_ms,
                     struct verdict *ret_verdict, enum judge_remote_refusal *ret_refusal)
{
    struct addr_prefix p;
    *ret_refusal = JUDGE_REMOTE_OK;
    if (rb->remaining_ms < 0)
        return -EINVAL;
    addr_prefix_of(&rb->prefix.addr, rb->prefix.len, &p);
    if (!addr_prefix_equal(&p, &rb->prefix))
        return -EINVAL;
    enum judge_remote_refusal why = JUDGE_REMOTE_OK;
    switch (policy_ban_check(j->policy, &p, false, NULL)) {
    case POLICY_BAN_OK:
        break;
    case POLICY_BAN_TOO_WIDE:
        why = JUDGE_REMOTE_TOO_WIDE;
        break;
    case POLICY_BAN_PROTECTED:
        why = JUDGE_REMOTE_PROTECTED;
        break;
    case POLICY_BAN_WHITELISTED:
        why = JUDGE_REMOTE_WHITELISTED;
        break;
    }
    unsigned widest = p.addr.family == AF_INET ? rb->max_prefix4 : rb->max_prefix6;
    if (why == JUDGE_REMOTE_OK && p.len < widest)
        why = JUDGE_REMOTE_WIDER_THAN_ACCEPTED;
    if (why == JUDGE_REMOTE_OK && rb->remaining_ms > JUDGE_REMOTE_MAX_MS)
        why = JUDGE_REMOTE_BAD_EXPIRY;
    if (why != JUDGE_REMOTE_OK) {
        *ret_refusal = why;
        return -EPERM;
    }

    struct verdict v = {0};
    int64_t expires = rb->remaining_ms ? now_ms + rb->remaining_ms : 0;
    struct remote_cover cover = {.prefix = p};
    int r = store_bans_covering(j->store, &p.addr, true, now_ms, remote_cover_one, &cover);
    if (r < 0)
        return r;
    /* Already enforced as long or longer, here or by a wider ban: nothing to do. */
    /* Remaining times read at different moments differ by the delays on the way: a ban that
     * outlasts the active one by less than this is the same ban. */
    if (cover.exact &&
        (!cover.exact_ban.expires_ms ||
         (expires && cover.exact_ban.expires_ms + JUDGE_REMOTE_SLACK_MS >= expires))) {
        *ret_verdict = v;
        return 0;
    }
    if (cover.wider && !cover.exact) {
        *ret_verdict = v;
        return 0;
    }
    const char *origin = rb->origin ? rb->origin : "remote";
    if (cover.exact) {
        r = store_ban_lift(j->store, &p, now_ms, origin, NULL);
        if (r < 0)
            return r;
    }
    struct store_ban b = {.prefix = p,
                          .start_ms = now_ms,
                          .expires_ms = expires,
                          .reason = STORE_BAN_REMOTE,
                          .offence = 1,
                          .event_type = -1};
    snprintf(b.origin, sizeof(b.origin), "%s", origin);
    snprintf(b.note, sizeof(b.note), "%s", rb->note ? rb->note : "");
    r = store_ban_add(j->store, &b, &b.id);
    if (r < 0)
        return r;
    verdict_from_ban(&b, VERDICT_BAN, VERDICT_REMOTE, now_ms, &v);
    *ret_verdict = v;
    return 0;
}

int judge_remote_unban(struct judge *j, const struct addr_prefix *prefix, const char *origin,
                       int64_t now_ms, struct verdict *ret_verdict)
{
    struct addr_prefix p;
    addr_prefix_of(&prefix->addr, prefix->len, &p);
    struct remote_cover cover = {.prefix = p};
    int r = store_bans_covering(j->store, &p.addr, true, now_ms, remote_cover_one, &cover);
    if (r < 0)
        return r;
    if (!cover.exact)
        return -ENOENT;
    r = store_ban_lift(j->store, &p, now_ms, origin ? origin : "remote", NULL);
    if (r < 0)
        return r;
    struct verdict v = {0};
    verdict_from_ban(&cover.exact_ban, VERDICT_UNBAN, VERDICT_REMOTE, now_ms, &v);
    v.timeout_ms = 0;
    *ret_verdict = v;
    return 0;
}
