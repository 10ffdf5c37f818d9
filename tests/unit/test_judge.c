/* The decide step, policy + store on a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "judge.h"
#include "store_fixtures.h"

#define MIN_MS (60 * 1000)
#define HOUR_MS (3600 * 1000)
#define T0 1700000000000LL /* some Unix ms */

struct world {
    char dir[64], db[128];
    struct cfg_policy cfg;
    struct store *store;
    struct policy *policy;
    struct judge *judge;
};

static void world_open(struct world *w)
{
    assert_int_equal(store_open(w->db, NULL, &w->store), 0);
    struct addr_prefix wl = fx_prefix("192.0.2.0/24");
    struct cfg_whitelist cw = {.prefixes = &wl, .n = 1};
    w->policy = policy_new(&w->cfg, &cw);
    assert_non_null(w->policy);
    w->judge = judge_new(w->store, w->policy);
    assert_non_null(w->judge);
}

static void world_close(struct world *w)
{
    if (w->store)
        assert_int_equal(store_turn_commit(w->store), 0);
    judge_free(w->judge);
    policy_free(w->policy);
    store_close(w->store);
    w->judge = NULL;
    w->policy = NULL;
    w->store = NULL;
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    snprintf(w->dir, sizeof(w->dir), "/tmp/pbxguard-judge-XXXXXX");
    if (!mkdtemp(w->dir))
        return -1;
    snprintf(w->db, sizeof(w->db), "%s/pbxguard.db", w->dir);
    fx_cfg_policy(&w->cfg);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    world_close(w);
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", w->db, suffix[i]);
        unlink(p);
    }
    rmdir(w->dir);
    free(w);
    return 0;
}

/* Judges one event of type from addr at t; returns the verdict. */
static struct verdict judge_at(struct world *w, enum sec_event_type type, const char *addr,
                               int64_t t)
{
    struct sec_event ev = fx_event(type, "PJSIP", addr);
    struct verdict v;
    int r = judge_event(w->judge, &ev, t, &v);
    if (r < 0)
        fail_msg("judge_event: %s (%s)", store_strerror(r), store_errmsg(w->store));
    return v;
}

static struct verdict fail_at(struct world *w, const char *addr, int64_t t)
{
    return judge_at(w, SEC_CHALLENGE_RESPONSE_FAILED, addr, t);
}

/* A failure read from the security log at now, which happened at t. */
static struct verdict backfill_at(struct world *w, const char *addr, int64_t t, int64_t now)
{
    struct sec_event ev = fx_event(SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", addr);
    ev.backfilled = true;
    ev.occurred_ms = t;
    ev.event_tv_ms = t;
    struct verdict v;
    int r = judge_event(w->judge, &ev, now, &v);
    if (r < 0)
        fail_msg("judge_event: %s (%s)", store_strerror(r), store_errmsg(w->store));
    return v;
}

/* Five failures while the daemon was down, read at start: banned at once, from now. */
static void gap_that_crossed_the_threshold_bans_at_once(void **state)
{
    struct world *w = *state;
    world_open(w);
    int64_t now = T0 + 5 * MIN_MS;
    for (int i = 0; i < 4; i++)
        assert_int_equal(backfill_at(w, "198.51.100.9", T0 + i * 1000, now).action, VERDICT_NONE);
    struct verdict v = backfill_at(w, "198.51.100.9", T0 + 4000, now);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_int_equal(v.timeout_ms, HOUR_MS); /* the ban starts when it is judged */
    assert_true(v.failures == 5);
    struct store_ban b;
    struct addr_prefix key = fx_prefix("198.51.100.9");
    assert_int_equal(store_ban_last(w->store, &key, &b), 0);
    assert_int_equal(b.start_ms, now);
}

/* Spread over findtime and more: each failure counts at its own time, so five failures that
 * never stood within one window earn nothing. */
static void backfilled_failures_count_at_their_own_time(void **state)
{
    struct world *w = *state;
    world_open(w);
    int64_t now = T0 + 30 * MIN_MS;
    for (int i = 0; i < 5; i++)
        assert_int_equal(backfill_at(w, "198.51.100.10", T0 + i * 3 * MIN_MS, now).action,
                         VERDICT_NONE);
}

/* Three failures in the gap, two live ones after it that were judged first (the log was read
 * later): the backfill finds the window that holds all five. */
static void backfill_completes_a_window_with_later_live_failures(void **state)
{
    struct world *w = *state;
    world_open(w);
    int64_t now = T0 + 2 * MIN_MS;
    assert_int_equal(fail_at(w, "198.51.100.11", T0 + MIN_MS).action, VERDICT_NONE);
    assert_int_equal(fail_at(w, "198.51.100.11", T0 + MIN_MS + 10).action, VERDICT_NONE);
    assert_int_equal(backfill_at(w, "198.51.100.11", T0, now).action, VERDICT_NONE);
    assert_int_equal(backfill_at(w, "198.51.100.11", T0 + 10, now).action, VERDICT_NONE);
    assert_int_equal(backfill_at(w, "198.51.100.11", T0 + 20, now).action, VERDICT_BAN);
}

/* Older than findtime: recorded for reports, never judged; from the future: counted now. */
static void stale_and_future_backfills(void **state)
{
    struct world *w = *state;
    world_open(w);
    int64_t now = T0 + HOUR_MS;
    for (int i = 0; i < 5; i++) {
        struct verdict v = backfill_at(w, "198.51.100.12", T0 + i, now);
        assert_int_equal(v.action, VERDICT_NONE);
        assert_true(v.stale && v.counted);
    }
    struct store_key_stats ks;
    struct addr_prefix key = fx_prefix("198.51.100.12");
    assert_int_equal(store_key_stats(w->store, &key, &ks), 0);
    assert_int_equal(ks.count, 5);
    assert_int_equal(ks.last_ms, T0 + 4);
    /* A date a year ahead counts now (the window that ends now), not in a year. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(backfill_at(w, "198.51.100.13", now + 365LL * 86400000, now).action,
                         VERDICT_NONE);
    assert_int_equal(fail_at(w, "198.51.100.13", now).action, VERDICT_BAN);
}

static void threshold_bans_exactly_at_the_nth_failure(void **state)
{
    struct world *w = *state;
    static const unsigned maxretry[] = {1, 3, 5};
    for (size_t c = 0; c < 3; c++) {
        w->cfg.maxretry = maxretry[c];
        world_open(w);
        char addr[32];
        snprintf(addr, sizeof(addr), "198.51.100.%zu", c + 1);
        for (unsigned i = 1; i < maxretry[c]; i++)
            assert_int_equal(fail_at(w, addr, T0 + i).action, VERDICT_NONE);
        struct verdict v = fail_at(w, addr, T0 + 100);
        assert_int_equal(v.action, VERDICT_BAN);
        assert_int_equal(v.reason, VERDICT_THRESHOLD);
        assert_true(v.failures == maxretry[c]);
        assert_int_equal(v.timeout_ms, HOUR_MS);
        assert_int_equal(v.offence, 1);
        world_close(w);
    }
}

static void failures_older_than_findtime_slide_out_of_the_window(void **state)
{
    struct world *w = *state;
    world_open(w);
    /* 4 failures, then the 5th 10 minutes and 1 ms after the first: only 4 in the window. */
    for (int i = 0; i < 4; i++)
        fail_at(w, "198.51.100.1", T0 + i * MIN_MS / 10);
    assert_int_equal(fail_at(w, "198.51.100.1", T0 + 10 * MIN_MS + 1).action, VERDICT_NONE);
    /* Exactly findtime after the second one, it is still in: 5 in [now - findtime, now]. */
    assert_int_equal(fail_at(w, "198.51.100.1", T0 + MIN_MS / 10 + 10 * MIN_MS).action,
                     VERDICT_BAN);
}

static void benign_events_weigh_nothing_and_are_not_recorded(void **state)
{
    struct world *w = *state;
    world_open(w);
    for (int i = 0; i < 20; i++) {
        struct verdict v = judge_at(w, SEC_CHALLENGE_SENT, "198.51.100.1", T0 + i);
        assert_int_equal(v.action, VERDICT_NONE);
        assert_false(v.counted);
    }
    struct store_key_stats ks;
    struct addr_prefix k = fx_prefix("198.51.100.1");
    assert_int_equal(store_key_stats(w->store, &k, &ks), 0);
    assert_int_equal(ks.count, 0);
}

static void weights_add_up_to_the_threshold(void **state)
{
    struct world *w = *state;
    w->cfg.weight[SEC_INVALID_ACCOUNT_ID] = 2.5;
    world_open(w);
    assert_int_equal(judge_at(w, SEC_INVALID_ACCOUNT_ID, "198.51.100.1", T0).action, VERDICT_NONE);
    struct verdict v = judge_at(w, SEC_INVALID_ACCOUNT_ID, "198.51.100.1", T0 + 1);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_true(v.failures == 5);
}

static void fractional_weights_reach_the_threshold_despite_rounding(void **state)
{
    struct world *w = *state;
    w->cfg.maxretry = 1;
    w->cfg.weight[SEC_FAILED_ACL] = 0.1;
    world_open(w);
    for (int i = 0; i < 9; i++)
        assert_int_equal(judge_at(w, SEC_FAILED_ACL, "198.51.100.1", T0 + i).action, VERDICT_NONE);
    assert_int_equal(judge_at(w, SEC_FAILED_ACL, "198.51.100.1", T0 + 9).action, VERDICT_BAN);
}

static void a_restarted_store_carries_on_4_then_5(void **state)
{
    struct world *w = *state;
    world_open(w);
    for (int i = 0; i < 4; i++)
        assert_int_equal(fail_at(w, "198.51.100.9", T0 + i).action, VERDICT_NONE);
    world_close(w);
    world_open(w);
    struct verdict v = fail_at(w, "198.51.100.9", T0 + 10);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_true(v.failures == 5);
}

static void events_of_a_banned_key_are_recorded_without_a_new_verdict(void **state)
{
    struct world *w = *state;
    world_open(w);
    for (int i = 0; i < 5; i++)
        fail_at(w, "198.51.100.1", T0 + i);
    for (int i = 0; i < 10; i++) {
        struct verdict v = fail_at(w, "198.51.100.1", T0 + 10 + i);
        assert_int_equal(v.action, VERDICT_NONE);
        assert_true(v.already_banned);
        assert_true(v.counted);
    }
    struct store_key_stats ks;
    struct addr_prefix k = fx_prefix("198.51.100.1");
    assert_int_equal(store_key_stats(w->store, &k, &ks), 0);
    assert_int_equal(ks.count, 15);
}

static void two_addresses_in_one_ipv6_64_are_banned_together(void **state)
{
    struct world *w = *state;
    world_open(w);
    for (int i = 0; i < 4; i++)
        fail_at(w, i % 2 ? "2001:db8:5:6::1" : "2001:db8:5:6:ffff::9", T0 + i);
    struct verdict other = fail_at(w, "2001:db8:5:7::1", T0 + 5);
    assert_int_equal(other.action, VERDICT_NONE);
    struct verdict v = fail_at(w, "2001:db8:5:6::abcd", T0 + 6);
    assert_int_equal(v.action, VERDICT_BAN);
    char buf[ADDR_STRLEN];
    assert_string_equal(addr_prefix_format(&v.prefix, buf, sizeof(buf)), "2001:db8:5:6::/64");
}

static void whitelisted_sources_are_recorded_but_never_banned(void **state)
{
    struct world *w = *state;
    world_open(w);
    static const char *const wl[] = {"192.0.2.77", "127.0.0.1", "::1"};
    for (size_t a = 0; a < 3; a++) {
        for (int i = 0; i < 20; i++) {
            struct verdict v = fail_at(w, wl[a], T0 + i);
            assert_int_equal(v.action, VERDICT_NONE);
            assert_true(v.whitelisted);
            assert_true(v.counted);
        }
    }
    struct store_key_stats ks;
    struct addr_prefix k = fx_prefix("192.0.2.77");
    assert_int_equal(store_key_stats(w->store, &k, &ks), 0);
    assert_int_equal(ks.count, 20);
    assert_true(ks.weight == 0);
}

static void a_threshold_ban_never_covers_a_whitelisted_address(void **state)
{
    struct world *w = *state;
    w->cfg.ipv4_prefix = 16; /* the whitelisted 192.0.2.0/24 lies in 192.0.0.0/16 */
    world_open(w);
    for (int i = 0; i < 4; i++)
        assert_int_equal(fail_at(w, "192.0.3.1", T0 + i).action, VERDICT_NONE);
    struct verdict v = fail_at(w, "192.0.3.1", T0 + 4);
    assert_int_equal(v.action, VERDICT_BAN);
    char buf[ADDR_STRLEN];
    assert_string_equal(addr_prefix_format(&v.prefix, buf, sizeof(buf)), "192.0.3.1");
    /* Elsewhere the configured prefix still counts and bans as one. */
    for (int i = 0; i < 4; i++)
        fail_at(w, i % 2 ? "198.51.1.1" : "198.51.2.2", T0 + i);
    v = fail_at(w, "198.51.3.3", T0 + 5);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_string_equal(addr_prefix_format(&v.prefix, buf, sizeof(buf)), "198.51.0.0/16");
}

static void a_key_inside_a_broader_active_ban_is_not_banned_again(void **state)
{
    struct world *w = *state;
    w->cfg.ipv4_prefix = 24;
    world_open(w);
    struct verdict m;
    /* A host ban on the key's own network address is found first (longest prefix first). */
    struct addr_prefix host = fx_prefix("198.51.100.0"), net = fx_prefix("198.51.0.0/16");
    assert_int_equal(judge_manual_ban(w->judge, &net, 0, false, "cli:uid=0", NULL, T0, &m), 0);
    assert_int_equal(judge_manual_ban(w->judge, &host, 0, false, "cli:uid=0", NULL, T0, &m), 0);
    for (int i = 0; i < 4; i++)
        fail_at(w, "198.51.100.7", T0 + i);
    struct verdict v = fail_at(w, "198.51.100.7", T0 + 4);
    assert_int_equal(v.action, VERDICT_NONE);
    assert_true(v.already_banned);
}

static void repeat_offences_escalate_up_to_the_cap(void **state)
{
    struct world *w = *state;
    w->cfg.bantime_max_s = 3 * 3600;
    world_open(w);
    static const int64_t expect_hours[] = {1, 2, 3, 3};
    int64_t t = T0;
    for (size_t n = 0; n < 4; n++) {
        struct verdict v = {0};
        for (int i = 0; i < 5; i++)
            v = fail_at(w, "198.51.100.1", t + i);
        assert_int_equal(v.action, VERDICT_BAN);
        assert_int_equal(v.offence, n + 1);
        assert_int_equal(v.timeout_ms, expect_hours[n] * HOUR_MS);
        t += v.timeout_ms + 1000; /* after the ban ran out */
    }
}

static void offences_outside_the_offence_window_do_not_escalate(void **state)
{
    struct world *w = *state;
    w->cfg.offence_window_s = 86400;
    world_open(w);
    for (int i = 0; i < 5; i++)
        fail_at(w, "198.51.100.1", T0 + i);
    struct verdict v = {0};
    for (int i = 0; i < 5; i++)
        v = fail_at(w, "198.51.100.1", T0 + 2 * 86400000LL + i);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_int_equal(v.offence, 1);
    assert_int_equal(v.timeout_ms, HOUR_MS);
}

static void nth_offence_earns_a_permanent_ban(void **state)
{
    struct world *w = *state;
    w->cfg.permanent_after = 2;
    world_open(w);
    struct verdict v = {0};
    for (int i = 0; i < 5; i++)
        v = fail_at(w, "198.51.100.1", T0 + i);
    int64_t t = T0 + v.timeout_ms + 1000;
    for (int i = 0; i < 5; i++)
        v = fail_at(w, "198.51.100.1", t + i);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_int_equal(v.timeout_ms, 0);
    assert_true(fail_at(w, "198.51.100.1", t + 400LL * 86400000).already_banned);
}

static void manual_ban_refuses_the_whitelist_unless_forced(void **state)
{
    struct world *w = *state;
    world_open(w);
    struct verdict v;
    struct addr_prefix p = fx_prefix("192.0.2.0/25");
    assert_int_equal(judge_manual_ban(w->judge, &p, HOUR_MS, false, "cli:uid=0", NULL, T0, &v),
                     -EPERM);
    struct addr_prefix lo = fx_prefix("127.0.0.1");
    assert_int_equal(judge_manual_ban(w->judge, &lo, HOUR_MS, false, "cli:uid=0", NULL, T0, &v),
                     -EPERM);
    assert_int_equal(judge_manual_ban(w->judge, &p, HOUR_MS, true, "cli:uid=0", NULL, T0, &v), 0);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_int_equal(v.reason, VERDICT_MANUAL);
}

static void manual_ban_is_recorded_as_manual_with_who_and_length(void **state)
{
    struct world *w = *state;
    world_open(w);
    struct verdict v;
    struct addr_prefix p = fx_prefix("203.0.113.0/24");
    assert_int_equal(judge_manual_ban(w->judge, &p, 0, false, "cli:uid=0", NULL, T0, &v), 0);
    assert_int_equal(v.timeout_ms, 0);
    struct store_ban b;
    assert_int_equal(store_ban_last(w->store, &p, &b), 0);
    assert_int_equal(b.reason, STORE_BAN_MANUAL);
    assert_string_equal(b.origin, "cli:uid=0");
    assert_int_equal(b.expires_ms, 0);
    /* An address inside it is already banned: its failures earn no second verdict. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(fail_at(w, "203.0.113.5", T0 + i).action, VERDICT_NONE);
}

static void unban_lifts_the_ban_and_the_window_starts_clean(void **state)
{
    struct world *w = *state;
    world_open(w);
    for (int i = 0; i < 5; i++)
        fail_at(w, "198.51.100.1", T0 + i);
    struct verdict out;
    struct judge_cover cover;
    struct addr_prefix p = fx_prefix("198.51.100.1");
    assert_int_equal(judge_unban(w->judge, &p, "cli:uid=0", T0 + 100, &out, &cover), 0);
    assert_int_equal(cover.hold, JUDGE_BANNED);
    assert_int_equal(out.action, VERDICT_UNBAN);
    assert_true(addr_prefix_equal(&out.prefix, &p));
    /* The 5 failures before the unban do not count again. */
    assert_int_equal(fail_at(w, "198.51.100.1", T0 + 200).action, VERDICT_NONE);
    struct store_ban b;
    assert_int_equal(store_ban_last(w->store, &p, &b), 0);
    assert_string_equal(b.lifted_by, "cli:uid=0");
    assert_int_equal(judge_unban(w->judge, &p, "cli:uid=0", T0 + 300, &out, &cover), -ENOENT);
    assert_int_equal(cover.hold, JUDGE_NOT_BANNED);
}

static void unban_of_an_address_inside_a_banned_prefix_names_the_prefix(void **state)
{
    struct world *w = *state;
    world_open(w);
    for (int i = 0; i < 5; i++)
        fail_at(w, "2001:db8:9:9::1", T0 + i);
    struct verdict out;
    struct judge_cover cover;
    struct addr_prefix a = fx_prefix("2001:db8:9:9::77");
    assert_int_equal(judge_unban(w->judge, &a, "cli:uid=0", T0 + 100, &out, &cover), 0);
    assert_int_equal(cover.hold, JUDGE_BANNED_AS_KEY);
    char buf[ADDR_STRLEN];
    assert_string_equal(addr_prefix_format(&out.prefix, buf, sizeof(buf)), "2001:db8:9:9::/64");
}

static void unban_of_an_address_inside_a_wider_manual_ban_lifts_nothing_and_names_it(void **state)
{
    struct world *w = *state;
    world_open(w);
    struct verdict v;
    struct addr_prefix wide = fx_prefix("203.0.113.0/24");
    assert_int_equal(judge_manual_ban(w->judge, &wide, HOUR_MS, false, "cli:uid=0", NULL, T0, &v),
                     0);
    struct judge_cover cover;
    struct addr_prefix a = fx_prefix("203.0.113.9");
    assert_int_equal(judge_unban_target(w->judge, &a, T0 + 1, &cover), 0);
    assert_int_equal(cover.hold, JUDGE_INSIDE_PREFIX);
    assert_true(addr_prefix_equal(&cover.prefix, &wide));
    assert_int_equal(judge_unban(w->judge, &a, "cli:uid=0", T0 + 1, &v, &cover), -ENOENT);
    assert_int_equal(cover.hold, JUDGE_INSIDE_PREFIX);
    /* The /24 is still in force. */
    struct store_ban b;
    assert_int_equal(store_ban_last(w->store, &wide, &b), 0);
    assert_true(store_ban_active(&b, T0 + 2));
}

static void a_wider_manual_ban_wins_over_the_addresss_banned_key(void **state)
{
    struct world *w = *state;
    world_open(w);
    for (int i = 0; i < 5; i++)
        fail_at(w, "2001:db8:7:7::1", T0 + i);
    struct verdict v;
    struct addr_prefix wide = fx_prefix("2001:db8::/32");
    assert_int_equal(
        judge_manual_ban(w->judge, &wide, HOUR_MS, false, "cli:uid=0", NULL, T0 + 10, &v), 0);
    /* Lifting the /64 would not free the address: the /32 is named instead. */
    struct judge_cover cover;
    struct addr_prefix a = fx_prefix("2001:db8:7:7::1");
    assert_int_equal(judge_unban(w->judge, &a, "cli:uid=0", T0 + 20, &v, &cover), -ENOENT);
    assert_int_equal(cover.hold, JUDGE_INSIDE_PREFIX);
    assert_true(addr_prefix_equal(&cover.prefix, &wide));
    /* Once the /32 is lifted by name, the address's key can be. */
    assert_int_equal(judge_unban(w->judge, &wide, "cli:uid=0", T0 + 30, &v, &cover), 0);
    assert_int_equal(cover.hold, JUDGE_BANNED);
    assert_int_equal(judge_unban(w->judge, &a, "cli:uid=0", T0 + 40, &v, &cover), 0);
    assert_int_equal(cover.hold, JUDGE_BANNED_AS_KEY);
}

struct verdicts {
    struct verdict v[8];
    unsigned n;
};

static int collect(void *data, const struct verdict *v)
{
    struct verdicts *out = data;
    if (out->n < 8)
        out->v[out->n++] = *v;
    return 0;
}

static void active_bans_are_restored_with_their_remaining_time(void **state)
{
    struct world *w = *state;
    world_open(w);
    for (int i = 0; i < 5; i++)
        fail_at(w, "198.51.100.1", T0 + i);
    struct verdict v;
    struct addr_prefix p = fx_prefix("203.0.113.0/24");
    assert_int_equal(judge_manual_ban(w->judge, &p, 0, false, "cli:uid=0", NULL, T0, &v), 0);
    world_close(w);
    world_open(w);
    struct verdicts out = {0};
    assert_int_equal(judge_active_bans(w->judge, T0 + 10 * MIN_MS, collect, &out), 0);
    assert_int_equal(out.n, 2);
    /* Longest first: the permanent manual one, then the threshold one. */
    assert_int_equal(out.v[0].reason, VERDICT_RESTORE);
    assert_true(addr_prefix_equal(&out.v[0].prefix, &p));
    assert_int_equal(out.v[0].timeout_ms, 0); /* permanent */
    assert_int_equal(out.v[1].timeout_ms, HOUR_MS + 4 - 10 * MIN_MS);
    /* After the hour, only the permanent one is left, and expiry marks the other ended. */
    unsigned n = 0;
    assert_int_equal(judge_expire(w->judge, T0 + 2 * HOUR_MS, 100, &n), 0);
    assert_int_equal(n, 1);
}

static void events_from_sources_that_are_never_real_are_ignored(void **state)
{
    struct world *w = *state;
    world_open(w);
    static const struct {
        const char *addr, *range;
    } cases[] = {
        {"fe80::1", "link-local"},   {"::", "unspecified"},
        {"ff02::1", "multicast"},    {"0.0.0.0", "unspecified"},
        {"0.0.0.7", "this-network"}, {"169.254.3.4", "link-local"},
        {"224.0.0.5", "multicast"},  {"255.255.255.255", "broadcast"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int k = 0; k < 20; k++) {
            struct verdict v = fail_at(w, cases[i].addr, T0 + k);
            assert_int_equal(v.action, VERDICT_NONE);
            assert_false(v.counted);
            assert_non_null(v.ignored);
            assert_string_equal(v.ignored, cases[i].range);
        }
        /* Nothing recorded under the address, nor under its /64 (fe80::/64 on every link). */
        struct addr_prefix keys[2] = {fx_prefix(cases[i].addr)};
        addr_prefix_of(&keys[0].addr, keys[0].addr.family == AF_INET ? 24 : 64, &keys[1]);
        for (int k = 0; k < 2; k++) {
            double sum = -1;
            assert_int_equal(store_window_sum(w->store, &keys[k], 0, T0 + 100, &sum), 0);
            assert_true(sum == 0);
        }
    }
    /* Loopback is not ignored: recorded as whitelisted, as before, never counted. */
    struct verdict v = fail_at(w, "127.0.0.1", T0);
    assert_null(v.ignored);
    assert_true(v.whitelisted);
}

static void a_neighbour_in_the_hosts_64_is_banned_alone(void **state)
{
    struct world *w = *state;
    world_open(w);
    struct policy_wl_entry own = {.prefix = fx_prefix("2001:db8:1::1")};
    snprintf(own.label, sizeof(own.label), "own address on eth0");
    assert_int_equal(policy_protect_replace(w->policy, POLICY_SRC_HOST, &own, 1), 0);
    struct verdict v = {0};
    for (int i = 0; i < 5; i++)
        v = fail_at(w, "2001:db8:1::20", T0 + i);
    assert_int_equal(v.action, VERDICT_BAN);
    char buf[ADDR_STRLEN];
    assert_string_equal(addr_prefix_format(&v.prefix, buf, sizeof(buf)), "2001:db8:1::20");
    /* The host's own address floods too: recorded as protected, never banned. */
    for (int i = 0; i < 20; i++) {
        v = fail_at(w, "2001:db8:1::1", T0 + 10 + i);
        assert_int_equal(v.action, VERDICT_NONE);
        assert_true(v.whitelisted);
    }
}

static void manual_ban_refuses_the_absolute_rules_even_forced(void **state)
{
    struct world *w = *state;
    world_open(w);
    struct policy_wl_entry own = {.prefix = fx_prefix("198.51.100.5")};
    assert_int_equal(policy_protect_replace(w->policy, POLICY_SRC_HOST, &own, 1), 0);
    static const char *const refused[] = {
        "127.0.0.0/8", "0.0.0.0/1",      "128.0.0.0/1", "198.51.100.5", "198.51.100.0/24",
        "::",          "fe80::/64",      "ff02::1",     "::/8",         "255.255.255.255",
        "224.0.0.0/4", "169.254.0.0/16",
    };
    struct verdict v;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct addr_prefix p = fx_prefix(refused[i]);
        assert_int_equal(judge_manual_ban(w->judge, &p, HOUR_MS, true, "cli:uid=0", NULL, T0, &v),
                         -EPERM);
        struct store_ban b;
        assert_int_equal(store_ban_last(w->store, &p, &b), -ENOENT);
    }
    struct addr_prefix ok = fx_prefix("198.51.100.6");
    assert_int_equal(judge_manual_ban(w->judge, &ok, HOUR_MS, true, "cli:uid=0", NULL, T0, &v), 0);
}

/* Writes a ban straight into the store, as an older pbxguardd (or a changed host) left it. */
static void old_ban(struct world *w, const char *prefix, enum store_ban_reason reason)
{
    struct store_ban b = {.prefix = fx_prefix(prefix),
                          .start_ms = T0,
                          .expires_ms = T0 + HOUR_MS,
                          .reason = reason,
                          .event_type = -1,
                          .offence = 1};
    assert_int_equal(store_ban_add(w->store, &b, NULL), 0);
}

static void a_restore_lifts_the_bans_the_rules_no_longer_allow(void **state)
{
    struct world *w = *state;
    world_open(w);
    old_ban(w, "127.0.0.0/8", STORE_BAN_MANUAL);
    old_ban(w, "0.0.0.0/1", STORE_BAN_MANUAL);
    old_ban(w, "fe80::/64", STORE_BAN_THRESHOLD);
    old_ban(w, "2001:db8:1::/64", STORE_BAN_THRESHOLD); /* the host's /64 */
    old_ban(w, "192.0.2.0/28", STORE_BAN_MANUAL);       /* forced over the whitelist: kept */
    old_ban(w, "192.0.2.77", STORE_BAN_THRESHOLD);      /* whitelisted since: lifted */
    old_ban(w, "203.0.113.7", STORE_BAN_THRESHOLD);     /* an attacker: kept */
    struct policy_wl_entry own = {.prefix = fx_prefix("2001:db8:1::1")};
    assert_int_equal(policy_protect_replace(w->policy, POLICY_SRC_HOST, &own, 1), 0);

    struct verdicts out = {0};
    assert_int_equal(judge_active_bans(w->judge, T0 + MIN_MS, collect, &out), 0);
    char buf[ADDR_STRLEN], kept[256] = "", lifted[256] = "";
    for (unsigned i = 0; i < out.n; i++) {
        char *to = out.v[i].action == VERDICT_BAN ? kept : lifted;
        if (out.v[i].action == VERDICT_UNBAN)
            assert_int_equal(out.v[i].reason, VERDICT_PROTECTED);
        strcat(to, addr_prefix_format(&out.v[i].prefix, buf, sizeof(buf)));
        strcat(to, " ");
    }
    /* One expiry for all: newest first. */
    assert_string_equal(kept, "203.0.113.7 192.0.2.0/28 ");
    assert_string_equal(lifted, "192.0.2.77 2001:db8:1::/64 fe80::/64 0.0.0.0/1 127.0.0.0/8 ");
    struct store_ban b;
    struct addr_prefix lo = fx_prefix("127.0.0.0/8");
    assert_int_equal(store_ban_last(w->store, &lo, &b), 0);
    assert_int_equal(b.end, STORE_BAN_LIFTED);
    assert_string_equal(b.lifted_by, "pbxguardd:protected");
    /* Lifted for good: the next restore has only the allowed ones. */
    out.n = 0;
    assert_int_equal(judge_active_bans(w->judge, T0 + 2 * MIN_MS, collect, &out), 0);
    assert_int_equal(out.n, 2);
}

static void an_address_that_becomes_protected_lifts_the_bans_holding_it(void **state)
{
    struct world *w = *state;
    world_open(w);
    for (int i = 0; i < 5; i++)
        fail_at(w, "2001:db8:5::20", T0 + i); /* bans 2001:db8:5::/64 */
    old_ban(w, "198.51.100.0/24", STORE_BAN_MANUAL);
    old_ban(w, "198.51.100.7", STORE_BAN_THRESHOLD);

    /* The host takes an address in the banned /64: the /64 is lifted. */
    struct policy_wl_entry own = {.prefix = fx_prefix("2001:db8:5::1")};
    assert_int_equal(policy_protect_replace(w->policy, POLICY_SRC_HOST, &own, 1), 0);
    struct verdict v[4];
    unsigned n = 0;
    assert_int_equal(judge_protect(w->judge, &own.prefix, T0 + 100, v, 4, &n), 0);
    assert_int_equal(n, 1);
    char buf[ADDR_STRLEN];
    assert_int_equal(v[0].action, VERDICT_UNBAN);
    assert_int_equal(v[0].reason, VERDICT_PROTECTED);
    assert_string_equal(addr_prefix_format(&v[0].prefix, buf, sizeof(buf)), "2001:db8:5::/64");

    /* A new gateway at 198.51.100.7: its own threshold ban goes, the admin's /24 stays (--force
     * may ban a gateway). */
    struct policy_wl_entry gw = {.prefix = fx_prefix("198.51.100.7")};
    assert_int_equal(policy_protect_replace(w->policy, POLICY_SRC_GATEWAY, &gw, 1), 0);
    assert_int_equal(judge_protect(w->judge, &gw.prefix, T0 + 200, v, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(addr_prefix_format(&v[0].prefix, buf, sizeof(buf)), "198.51.100.7");
    /* Nothing left to lift. */
    assert_int_equal(judge_protect(w->judge, &gw.prefix, T0 + 300, v, 4, &n), 0);
    assert_int_equal(n, 0);
}

static void a_source_that_logged_in_is_banned_at_trusted_maxretry(void **state)
{
    struct world *w = *state;
    w->cfg.trust_window_s = 3600;
    world_open(w);
    judge_at(w, SEC_SUCCESSFUL_AUTH, "198.51.100.1", T0);
    for (int i = 1; i < 20; i++) {
        struct verdict v = fail_at(w, "198.51.100.1", T0 + i);
        assert_int_equal(v.action, VERDICT_NONE);
        assert_int_equal(v.authenticated, i >= 5);
    }
    struct verdict v = fail_at(w, "198.51.100.1", T0 + 20);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_true(v.authenticated);
    assert_true(v.failures == 20);
    /* Another source, without a success, is judged as ever. */
    for (int i = 1; i < 5; i++)
        assert_int_equal(fail_at(w, "198.51.100.2", T0 + i).action, VERDICT_NONE);
    v = fail_at(w, "198.51.100.2", T0 + 5);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_false(v.authenticated);
}

static void the_trust_of_a_login_runs_out_after_trust_window(void **state)
{
    struct world *w = *state;
    w->cfg.trust_window_s = 60;
    world_open(w);
    judge_at(w, SEC_SUCCESSFUL_AUTH, "198.51.100.1", T0);
    for (int i = 1; i < 5; i++)
        fail_at(w, "198.51.100.1", T0 + i);
    /* Within the window: the 5th failure is not enough. */
    assert_int_equal(fail_at(w, "198.51.100.1", T0 + 60 * 1000).action, VERDICT_NONE);
    /* One ms later the login is older than trust_window: 6 failures >= maxretry. */
    struct verdict v = fail_at(w, "198.51.100.1", T0 + 60 * 1000 + 1);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_false(v.authenticated);
}

static void trust_window_zero_ignores_logins(void **state)
{
    struct world *w = *state;
    w->cfg.trust_window_s = 0;
    world_open(w);
    judge_at(w, SEC_SUCCESSFUL_AUTH, "198.51.100.1", T0);
    for (int i = 1; i < 5; i++)
        fail_at(w, "198.51.100.1", T0 + i);
    assert_int_equal(fail_at(w, "198.51.100.1", T0 + 5).action, VERDICT_BAN);
    struct store_success ok;
    struct addr_prefix key = fx_prefix("198.51.100.1");
    assert_int_equal(store_success_get(w->store, &key, &ok), -ENOENT); /* not even recorded */
}

static void a_login_counts_for_its_whole_ipv6_key_and_survives_a_restart(void **state)
{
    struct world *w = *state;
    w->cfg.trust_window_s = 3600;
    world_open(w);
    judge_at(w, SEC_SUCCESSFUL_AUTH, "2001:db8:1:2::10", T0);
    world_close(w);
    world_open(w);
    /* Another phone of the same office /64, with a stale password. */
    for (int i = 1; i < 20; i++)
        assert_int_equal(fail_at(w, "2001:db8:1:2::11", T0 + i).action, VERDICT_NONE);
    struct verdict v = fail_at(w, "2001:db8:1:2::11", T0 + 20);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_int_equal(v.prefix.len, 64);
}

static void a_learned_trunk_is_never_counted_nor_banned_and_its_old_bans_go(void **state)
{
    struct world *w = *state;
    world_open(w);
    /* Banned before Asterisk said it is a trunk (a spoofed flood while the AMI was down). */
    for (int i = 0; i < 5; i++)
        fail_at(w, "203.0.113.50", T0 + i);
    struct policy_wl_entry e = {.prefix = fx_prefix("203.0.113.50")};
    snprintf(e.label, sizeof(e.label), "pjsip:identify/carrier1 (ami:pbx1)");
    assert_int_equal(policy_protect_replace(w->policy, POLICY_SRC_TRUNK, &e, 1), 0);
    struct verdict v[4];
    unsigned n = 0;
    assert_int_equal(judge_protect(w->judge, &e.prefix, T0 + 10, v, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].action, VERDICT_UNBAN);
    for (int i = 0; i < 50; i++) {
        struct verdict x = fail_at(w, "203.0.113.50", T0 + 100 + i);
        assert_int_equal(x.action, VERDICT_NONE);
        assert_true(x.whitelisted);
    }
    struct addr_prefix p = fx_prefix("203.0.113.0/24");
    assert_int_equal(judge_manual_ban(w->judge, &p, HOUR_MS, true, "cli:uid=0", NULL, T0, v),
                     -EPERM);
    /* Dropped from Asterisk's configuration: bannable again, from a clean window. */
    assert_int_equal(policy_protect_replace(w->policy, POLICY_SRC_TRUNK, NULL, 0), 0);
    for (int i = 1; i < 5; i++)
        assert_int_equal(fail_at(w, "203.0.113.50", T0 + 200 + i).action, VERDICT_NONE);
    assert_int_equal(fail_at(w, "203.0.113.50", T0 + 300).action, VERDICT_BAN);
}

static struct judge_remote remote(const char *prefix, int64_t remaining_ms)
{
    struct judge_remote rb = {.prefix = fx_prefix(prefix),
                              .remaining_ms = remaining_ms,
                              .origin = "cluster:pbx-b",
                              .note = "",
                              .max_prefix4 = 24,
                              .max_prefix6 = 48};
    return rb;
}

static void a_remote_ban_is_stored_with_its_origin_and_enforced(void **state)
{
    struct world *w = *state;
    world_open(w);
    struct judge_remote rb = remote("203.0.113.9", HOUR_MS);
    struct verdict v;
    enum judge_remote_refusal why;
    assert_int_equal(judge_remote_ban(w->judge, &rb, T0, &v, &why), 0);
    assert_int_equal(why, JUDGE_REMOTE_OK);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_int_equal(v.reason, VERDICT_REMOTE);
    assert_int_equal(v.timeout_ms, HOUR_MS);
    struct store_ban b;
    assert_int_equal(store_ban_last(w->store, &rb.prefix, &b), 0);
    assert_int_equal(b.reason, STORE_BAN_REMOTE);
    assert_string_equal(b.origin, "cluster:pbx-b");
    /* The same again a minute later (a second of delay more), or shorter: nothing to do.
     * Longer: it replaces the ban. */
    rb.remaining_ms = HOUR_MS - MIN_MS + 1000;
    assert_int_equal(judge_remote_ban(w->judge, &rb, T0 + MIN_MS, &v, &why), 0);
    assert_int_equal(v.action, VERDICT_NONE);
    rb.remaining_ms = MIN_MS;
    assert_int_equal(judge_remote_ban(w->judge, &rb, T0 + MIN_MS, &v, &why), 0);
    assert_int_equal(v.action, VERDICT_NONE);
    rb.remaining_ms = 5 * HOUR_MS;
    assert_int_equal(judge_remote_ban(w->judge, &rb, T0 + MIN_MS, &v, &why), 0);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_int_equal(v.timeout_ms, 5 * HOUR_MS);
    /* A restart restores it like any other ban. */
    world_close(w);
    world_open(w);
    struct verdicts got = {0};
    assert_int_equal(judge_active_bans(w->judge, T0 + 2 * MIN_MS, collect, &got), 0);
    assert_int_equal(got.n, 1);
}

static void remote_bans_that_break_the_rules_are_refused_and_not_stored(void **state)
{
    struct world *w = *state;
    world_open(w);
    struct verdict v;
    enum judge_remote_refusal why;
    static const struct {
        const char *prefix;
        int64_t ms;
        enum judge_remote_refusal why;
    } cases[] = {
        {"0.0.0.0/0", HOUR_MS, JUDGE_REMOTE_TOO_WIDE},
        {"::/0", HOUR_MS, JUDGE_REMOTE_TOO_WIDE},
        {"128.0.0.0/1", HOUR_MS, JUDGE_REMOTE_TOO_WIDE},
        {"127.0.0.1", HOUR_MS, JUDGE_REMOTE_PROTECTED},
        {"fe80::1", HOUR_MS, JUDGE_REMOTE_PROTECTED},
        {"192.0.2.7", HOUR_MS, JUDGE_REMOTE_WHITELISTED},
        {"198.51.100.0/23", HOUR_MS, JUDGE_REMOTE_WIDER_THAN_ACCEPTED},
        {"2001:db8::/40", HOUR_MS, JUDGE_REMOTE_WIDER_THAN_ACCEPTED},
        {"203.0.113.99", 975LL * 365 * 86400 * 1000, JUDGE_REMOTE_BAD_EXPIRY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct judge_remote rb = remote(cases[i].prefix, cases[i].ms);
        assert_int_equal(judge_remote_ban(w->judge, &rb, T0, &v, &why), -EPERM);
        assert_int_equal(why, cases[i].why);
        struct store_ban b;
        assert_int_equal(store_ban_last(w->store, &rb.prefix, &b), -ENOENT);
    }
    /* The host's own address, learned at run time, is refused too. */
    struct addr_prefix own = fx_prefix("198.51.100.10");
    assert_int_equal(policy_protect_add(w->policy, POLICY_SRC_HOST, &own, "own address on eth0"),
                     0);
    struct judge_remote rb = remote("198.51.100.10", HOUR_MS);
    assert_int_equal(judge_remote_ban(w->judge, &rb, T0, &v, &why), -EPERM);
    assert_int_equal(why, JUDGE_REMOTE_PROTECTED);
    /* Host bits set: not a prefix at all. */
    rb = remote("203.0.113.0/24", HOUR_MS);
    rb.prefix.addr.bytes[3] = 1;
    assert_int_equal(judge_remote_ban(w->judge, &rb, T0, &v, &why), -EINVAL);
    /* Permanent is fine when the sender says so. */
    rb = remote("203.0.113.0/24", 0);
    assert_int_equal(judge_remote_ban(w->judge, &rb, T0, &v, &why), 0);
    assert_int_equal(v.action, VERDICT_BAN);
    assert_int_equal(v.timeout_ms, 0);
}

static void a_remote_ban_inside_a_wider_active_ban_changes_nothing(void **state)
{
    struct world *w = *state;
    world_open(w);
    struct verdict v;
    enum judge_remote_refusal why;
    struct addr_prefix p = fx_prefix("203.0.113.0/24");
    assert_int_equal(judge_manual_ban(w->judge, &p, HOUR_MS, false, "cli:uid=0", NULL, T0, &v), 0);
    struct judge_remote rb = remote("203.0.113.9", HOUR_MS);
    assert_int_equal(judge_remote_ban(w->judge, &rb, T0, &v, &why), 0);
    assert_int_equal(v.action, VERDICT_NONE);
}

static void a_remote_unban_lifts_whatever_banned_the_prefix(void **state)
{
    struct world *w = *state;
    world_open(w);
    struct verdict v;
    for (int i = 0; i < 5; i++)
        fail_at(w, "203.0.113.50", T0 + i);
    struct addr_prefix p = fx_prefix("203.0.113.50");
    assert_int_equal(judge_remote_unban(w->judge, &p, "cluster:pbx-c", T0 + MIN_MS, &v), 0);
    assert_int_equal(v.action, VERDICT_UNBAN);
    assert_int_equal(v.reason, VERDICT_REMOTE);
    struct store_ban b;
    assert_int_equal(store_ban_last(w->store, &p, &b), 0);
    assert_int_equal(b.end, STORE_BAN_LIFTED);
    assert_string_equal(b.lifted_by, "cluster:pbx-c");
    assert_int_equal(judge_remote_unban(w->judge, &p, "cluster:pbx-c", T0 + MIN_MS, &v), -ENOENT);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(gap_that_crossed_the_threshold_bans_at_once),
        T(backfilled_failures_count_at_their_own_time),
        T(backfill_completes_a_window_with_later_live_failures),
        T(stale_and_future_backfills),
        T(threshold_bans_exactly_at_the_nth_failure),
        T(failures_older_than_findtime_slide_out_of_the_window),
        T(benign_events_weigh_nothing_and_are_not_recorded),
        T(weights_add_up_to_the_threshold),
        T(fractional_weights_reach_the_threshold_despite_rounding),
        T(a_restarted_store_carries_on_4_then_5),
        T(events_of_a_banned_key_are_recorded_without_a_new_verdict),
        T(two_addresses_in_one_ipv6_64_are_banned_together),
        T(whitelisted_sources_are_recorded_but_never_banned),
        T(a_threshold_ban_never_covers_a_whitelisted_address),
        T(a_key_inside_a_broader_active_ban_is_not_banned_again),
        T(repeat_offences_escalate_up_to_the_cap),
        T(offences_outside_the_offence_window_do_not_escalate),
        T(nth_offence_earns_a_permanent_ban),
        T(manual_ban_refuses_the_whitelist_unless_forced),
        T(manual_ban_is_recorded_as_manual_with_who_and_length),
        T(unban_lifts_the_ban_and_the_window_starts_clean),
        T(unban_of_an_address_inside_a_banned_prefix_names_the_prefix),
        T(unban_of_an_address_inside_a_wider_manual_ban_lifts_nothing_and_names_it),
        T(a_wider_manual_ban_wins_over_the_addresss_banned_key),
        T(active_bans_are_restored_with_their_remaining_time),
        T(events_from_sources_that_are_never_real_are_ignored),
        T(a_neighbour_in_the_hosts_64_is_banned_alone),
        T(manual_ban_refuses_the_absolute_rules_even_forced),
        T(a_restore_lifts_the_bans_the_rules_no_longer_allow),
        T(an_address_that_becomes_protected_lifts_the_bans_holding_it),
        T(a_source_that_logged_in_is_banned_at_trusted_maxretry),
        T(the_trust_of_a_login_runs_out_after_trust_window),
        T(trust_window_zero_ignores_logins),
        T(a_login_counts_for_its_whole_ipv6_key_and_survives_a_restart),
        T(a_learned_trunk_is_never_counted_nor_banned_and_its_old_bans_go),
        T(a_remote_ban_is_stored_with_its_origin_and_enforced),
        T(remote_bans_that_break_the_rules_are_refused_and_not_stored),
        T(a_remote_ban_inside_a_wider_active_ban_changes_nothing),
        T(a_remote_unban_lifts_whatever_banned_the_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
