/* The control command handlers (ctl_cmd.c) through fake ops: a real store in a temporary file, a
 * real policy and judge, and fake apply/status/reload that record what they were asked and
 * return the kernel's or the reload's answer the test chose. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_cmd.h"
#include "store_fixtures.h"

#define T0 1700000000000LL /* some Unix ms */

struct fake {
    struct verdict applied[16];
    unsigned napplied;
    int kernel_result; /* what apply answers for a ban */
    unsigned statuses;
    unsigned reloads;
    int reload_result;
    const char *reload_errors[4];
    unsigned nreload_errors;
};

struct world {
    char dir[64], db[128];
    struct config cfg;
    struct store *store;
    struct policy *policy;
    struct judge *judge;
    struct fake fake;
    struct ctl_cmd_ops ops;
};

static int fake_apply(void *data, const struct verdict *v)
{
    struct fake *f = data;
    if (f->napplied < 16)
        f->applied[f->napplied] = *v;
    f->napplied++;
    return v->action == VERDICT_BAN ? f->kernel_result : 0;
}

static void fake_status(void *data, json_t *reply)
{
    struct fake *f = data;
    f->statuses++;
    json_object_set_new(reply, "events", json_integer(42));
}

static int fake_reload(void *data, json_t *errors)
{
    struct fake *f = data;
    f->reloads++;
    for (unsigned i = 0; i < f->nreload_errors; i++)
        json_array_append_new(errors, json_string(f->reload_errors[i]));
    return f->reload_result;
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    snprintf(w->dir, sizeof(w->dir), "/tmp/pbxguard-ctlcmd-XXXXXX");
    if (!mkdtemp(w->dir))
        return -1;
    snprintf(w->db, sizeof(w->db), "%s/pbxguard.db", w->dir);
    config_defaults(&w->cfg);
    snprintf(w->cfg.general.database, sizeof(w->cfg.general.database), "%s", w->db);
    fx_cfg_policy(&w->cfg.policy);
    assert_int_equal(store_open(w->db, NULL, &w->store), 0);
    struct addr_prefix wl = fx_prefix("192.0.2.0/24");
    struct cfg_whitelist cw = {.prefixes = &wl, .n = 1};
    w->policy = policy_new(&w->cfg.policy, &cw);
    assert_non_null(w->policy);
    w->judge = judge_new(w->store, w->policy);
    assert_non_null(w->judge);
    w->ops = (struct ctl_cmd_ops){
        .cfg = &w->cfg,
        .store = w->store,
        .judge = w->judge,
        .policy = w->policy,
        .started_ms = T0 - 60000,
        .now_ms = T0,
        .apply = fake_apply,
        .status = fake_status,
        .reload = fake_reload,
        .data = &w->fake,
    };
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    assert_int_equal(store_turn_commit(w->store), 0);
    judge_free(w->judge);
    policy_free(w->policy);
    store_close(w->store);
    config_free(&w->cfg);
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

static const struct ctl_peer root = {.uid = 0, .gid = 0, .pid = 1, .privileged = true};
/* A member of control_group. */
static const struct ctl_peer member = {.uid = 1000, .gid = 1000, .pid = 2};

static json_t *call_as(struct world *w, const struct ctl_peer *peer, const char *request)
{
    json_error_t err;
    json_t *req = json_loads(request, 0, &err);
    assert_non_null(req);
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    assert_non_null(cmd);
    json_t *reply = ctl_cmd_dispatch(&w->ops, cmd, req, peer);
    json_decref(req);
    assert_non_null(reply);
    return reply;
}

/* Sends one request (JSON text) as root; returns the reply. */
static json_t *call(struct world *w, const char *request)
{
    return call_as(w, &root, request);
}

static bool ok(const json_t *r)
{
    return json_is_true(json_object_get(r, "ok"));
}

static json_int_t code(const json_t *r)
{
    return json_integer_value(json_object_get(r, "code"));
}

static const char *error(const json_t *r)
{
    const char *e = json_string_value(json_object_get(r, "error"));
    return e ? e : "";
}

static bool active(struct world *w, const char *prefix)
{
    struct addr_prefix p = fx_prefix(prefix);
    struct store_ban b;
    return store_ban_last(w->store, &p, &b) == 0 && store_ban_active(&b, w->ops.now_ms);
}

static void assert_prefix(const struct addr_prefix *p, const char *want)
{
    char buf[ADDR_STRLEN];
    assert_string_equal(addr_prefix_format(p, buf, sizeof(buf)), want);
}

/* --- ban --- */

static void a_ban_is_decided_applied_and_answered_with_the_ban(void **state)
{
    struct world *w = *state;
    json_t *r = call(w, "{\"cmd\":\"ban\",\"addr\":\"203.0.113.7\",\"duration\":3600,"
                        "\"note\":\"ticket 4711\"}");
    assert_true(ok(r));
    json_t *ban = json_object_get(r, "ban");
    assert_string_equal(json_string_value(json_object_get(ban, "prefix")), "203.0.113.7");
    assert_string_equal(json_string_value(json_object_get(ban, "reason")), "manual");
    assert_string_equal(json_string_value(json_object_get(ban, "origin")), "cli:uid=0");
    assert_string_equal(json_string_value(json_object_get(ban, "note")), "ticket 4711");
    json_decref(r);
    assert_int_equal(w->fake.napplied, 1);
    assert_int_equal(w->fake.applied[0].action, VERDICT_BAN);
    assert_int_equal(w->fake.applied[0].reason, VERDICT_MANUAL);
    assert_int_equal(w->fake.applied[0].timeout_ms, 3600 * 1000);
    assert_prefix(&w->fake.applied[0].prefix, "203.0.113.7");
    assert_true(active(w, "203.0.113.7"));
}

static void a_ban_without_a_duration_takes_the_policys_bantime(void **state)
{
    struct world *w = *state;
    json_t *r = call(w, "{\"cmd\":\"ban\",\"addr\":\"2001:db8:1:2::/64\"}");
    assert_true(ok(r));
    json_decref(r);
    assert_int_equal(w->fake.applied[0].timeout_ms, w->cfg.policy.bantime_s * 1000);
    r = call(w, "{\"cmd\":\"ban\",\"addr\":\"198.51.100.0/24\",\"permanent\":true}");
    assert_true(ok(r));
    assert_true(json_is_null(json_object_get(json_object_get(r, "ban"), "expires")));
    json_decref(r);
    assert_int_equal(w->fake.applied[1].timeout_ms, 0);
}

static void a_ban_the_kernel_refuses_is_lifted_again_and_fails_with_code_1(void **state)
{
    struct world *w = *state;
    w->fake.kernel_result = -ENOTEMPTY;
    json_t *r = call(w, "{\"cmd\":\"ban\",\"addr\":\"198.51.0.0/16\",\"duration\":3600}");
    assert_false(ok(r));
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_non_null(strstr(error(r), "the kernel refused the ban of 198.51.0.0/16"));
    assert_non_null(strstr(error(r), "unban the other prefix first"));
    json_decref(r);
    /* The ban was tried once; nothing else reached the kernel. */
    assert_int_equal(w->fake.napplied, 1);
    assert_int_equal(w->fake.applied[0].action, VERDICT_BAN);
    /* It is not left recorded as active, and the history says why. */
    assert_false(active(w, "198.51.0.0/16"));
    struct addr_prefix p = fx_prefix("198.51.0.0/16");
    struct store_ban b;
    assert_int_equal(store_ban_last(w->store, &p, &b), 0);
    assert_int_equal(b.end, STORE_BAN_LIFTED);
    assert_string_equal(b.lifted_by, "pbxguardd:refused-by-kernel");
}

static void a_whitelisted_prefix_is_refused_without_force_and_banned_with_it(void **state)
{
    struct world *w = *state;
    json_t *r = call(w, "{\"cmd\":\"ban\",\"addr\":\"192.0.2.10\"}");
    assert_false(ok(r));
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_non_null(strstr(error(r), "whitelisted (overlaps 192.0.2.0/24, config)"));
    json_decref(r);
    assert_int_equal(w->fake.napplied, 0);
    r = call(w, "{\"cmd\":\"ban\",\"addr\":\"192.0.2.10\",\"force\":true}");
    assert_true(ok(r));
    json_decref(r);
    assert_int_equal(w->fake.napplied, 1);
}

/* --- unban --- */

static void unban_of_a_banned_prefix_lifts_it(void **state)
{
    struct world *w = *state;
    json_decref(call(w, "{\"cmd\":\"ban\",\"addr\":\"203.0.113.7\"}"));
    json_t *r = call(w, "{\"cmd\":\"unban\",\"addr\":\"203.0.113.7\"}");
    assert_true(ok(r));
    json_t *lifted = json_object_get(r, "lifted");
    assert_int_equal(json_array_size(lifted), 1);
    assert_string_equal(json_string_value(json_array_get(lifted, 0)), "203.0.113.7");
    json_decref(r);
    assert_int_equal(w->fake.napplied, 2);
    assert_int_equal(w->fake.applied[1].action, VERDICT_UNBAN);
    assert_prefix(&w->fake.applied[1].prefix, "203.0.113.7");
    assert_false(active(w, "203.0.113.7"));
}

static void unban_of_an_address_lifts_its_banned_key(void **state)
{
    struct world *w = *state;
    json_decref(call(w, "{\"cmd\":\"ban\",\"addr\":\"2001:db8:1:2::/64\"}"));
    json_t *r = call(w, "{\"cmd\":\"unban\",\"addr\":\"2001:db8:1:2::99\"}");
    assert_true(ok(r));
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "lifted"), 0)),
                        "2001:db8:1:2::/64");
    json_decref(r);
    assert_int_equal(w->fake.applied[1].action, VERDICT_UNBAN);
    assert_prefix(&w->fake.applied[1].prefix, "2001:db8:1:2::/64");
}

static void unban_inside_a_wider_banned_prefix_names_it_and_lifts_nothing(void **state)
{
    struct world *w = *state;
    json_decref(call(w, "{\"cmd\":\"ban\",\"addr\":\"198.51.100.0/24\"}"));
    json_t *r = call(w, "{\"cmd\":\"unban\",\"addr\":\"198.51.100.77\"}");
    assert_false(ok(r));
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_string_equal(json_string_value(json_object_get(r, "covered_by")), "198.51.100.0/24");
    assert_non_null(strstr(error(r), "lies inside the banned prefix 198.51.100.0/24"));
    json_decref(r);
    assert_int_equal(w->fake.napplied, 1); /* the ban only */
    assert_true(active(w, "198.51.100.0/24"));
}

static void unban_of_an_address_not_banned_fails_with_code_1(void **state)
{
    struct world *w = *state;
    json_t *r = call(w, "{\"cmd\":\"unban\",\"addr\":\"203.0.113.8\"}");
    assert_false(ok(r));
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_string_equal(error(r), "203.0.113.8 is not banned");
    assert_null(json_object_get(r, "covered_by"));
    json_decref(r);
    assert_int_equal(w->fake.napplied, 0);
}

/* --- reload, status --- */

static void reload_success_answers_ok(void **state)
{
    struct world *w = *state;
    json_t *r = call(w, "{\"cmd\":\"reload\"}");
    assert_true(ok(r));
    json_decref(r);
    assert_int_equal(w->fake.reloads, 1);
}

static void reload_errors_in_the_file_are_carried_in_the_reply(void **state)
{
    struct world *w = *state;
    w->fake.reload_result = -EINVAL;
    w->fake.reload_errors[0] = "pbxguard.conf:14: [whitelist] cidr: \"192.0.2.300\" is not a CIDR";
    w->fake.nreload_errors = 1;
    json_t *r = call(w, "{\"cmd\":\"reload\"}");
    assert_false(ok(r));
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_non_null(strstr(error(r), "configuration not reloaded (1 error)"));
    json_t *errors = json_object_get(r, "errors");
    assert_int_equal(json_array_size(errors), 1);
    assert_string_equal(json_string_value(json_array_get(errors, 0)), w->fake.reload_errors[0]);
    json_decref(r);
}

static void a_failure_to_apply_a_valid_file_is_carried_in_the_reply(void **state)
{
    struct world *w = *state;
    /* A valid file the core could not apply (e.g. the StatsD server's name does not resolve). */
    w->fake.reload_result = -EADDRNOTAVAIL;
    json_t *r = call(w, "{\"cmd\":\"reload\"}");
    assert_false(ok(r));
    assert_int_equal(code(r), CTL_CODE_FAILED);
    char want[200];
    snprintf(want, sizeof(want), "configuration not reloaded: %s", strerror(EADDRNOTAVAIL));
    assert_non_null(strstr(error(r), want));
    assert_non_null(strstr(error(r), "the previous one keeps running"));
    json_decref(r);
}

static void status_counts_the_active_bans_and_asks_the_core_for_the_rest(void **state)
{
    struct world *w = *state;
    json_decref(call(w, "{\"cmd\":\"ban\",\"addr\":\"203.0.113.7\"}"));
    json_decref(call(w, "{\"cmd\":\"ban\",\"addr\":\"2001:db8::/48\"}"));
    json_t *r = call(w, "{\"cmd\":\"status\"}");
    assert_true(ok(r));
    json_t *act = json_object_get(r, "active_bans");
    assert_int_equal(json_integer_value(json_object_get(act, "v4")), 1);
    assert_int_equal(json_integer_value(json_object_get(act, "v6")), 1);
    assert_int_equal(json_integer_value(json_object_get(r, "uptime")), 60);
    assert_int_equal(json_integer_value(json_object_get(r, "events")), 42);
    json_decref(r);
    assert_int_equal(w->fake.statuses, 1);
}

/* --- what a member of control_group may do --- */

static void a_member_may_ban_and_unban_addresses_and_narrow_prefixes(void **state)
{
    struct world *w = *state;
    json_t *r = call_as(w, &member, "{\"cmd\":\"ban\",\"addr\":\"203.0.113.7\"}");
    assert_true(ok(r));
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "ban"), "origin")),
                        "cli:uid=1000");
    json_decref(r);
    r = call_as(w, &member, "{\"cmd\":\"ban\",\"addr\":\"198.51.100.0/24\"}");
    assert_true(ok(r));
    json_decref(r);
    r = call_as(w, &member, "{\"cmd\":\"ban\",\"addr\":\"2001:db8:5::/48\"}");
    assert_true(ok(r));
    json_decref(r);
    r = call_as(w, &member, "{\"cmd\":\"unban\",\"addr\":\"198.51.100.0/24\"}");
    assert_true(ok(r));
    json_decref(r);
    static const char *const reads[] = {"{\"cmd\":\"status\"}", "{\"cmd\":\"list\"}",
                                        "{\"cmd\":\"show\",\"addr\":\"203.0.113.7\"}"};
    for (size_t i = 0; i < 3; i++) {
        r = call_as(w, &member, reads[i]);
        assert_true(ok(r));
        json_decref(r);
    }
    assert_int_equal(w->fake.napplied, 4);
}

static void a_members_force_is_refused_naming_the_rule(void **state)
{
    struct world *w = *state;
    json_t *r = call_as(w, &member, "{\"cmd\":\"ban\",\"addr\":\"192.0.2.10\",\"force\":true}");
    assert_false(ok(r));
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_non_null(strstr(error(r), "permission denied: --force"));
    assert_non_null(strstr(error(r), "is for root"));
    assert_string_equal(json_string_value(json_object_get(r, "rule")), "root-only");
    json_decref(r);
    /* Not even for an address nobody whitelisted. */
    r = call_as(w, &member, "{\"cmd\":\"ban\",\"addr\":\"203.0.113.9\",\"force\":true}");
    assert_int_equal(code(r), CTL_CODE_FAILED);
    json_decref(r);
    assert_int_equal(w->fake.napplied, 0);
    assert_false(active(w, "192.0.2.10"));
}

static void a_members_wide_prefix_is_refused_naming_the_setting(void **state)
{
    struct world *w = *state;
    json_t *r = call_as(w, &member, "{\"cmd\":\"ban\",\"addr\":\"10.0.0.0/7\"}");
    assert_false(ok(r));
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_non_null(strstr(error(r), "10.0.0.0/7 is wider than /24"));
    assert_non_null(strstr(error(r), "[general] group_min_prefix4 = 24"));
    assert_string_equal(json_string_value(json_object_get(r, "rule")), "group-prefix");
    json_decref(r);
    r = call_as(w, &member, "{\"cmd\":\"ban\",\"addr\":\"2001:db8::/47\"}");
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_non_null(strstr(error(r), "[general] group_min_prefix6 = 48"));
    json_decref(r);
    assert_int_equal(w->fake.napplied, 0);
    /* The setting moves the line; root is not bound by it. */
    w->cfg.general.group_min_prefix4 = 16;
    r = call_as(w, &member, "{\"cmd\":\"ban\",\"addr\":\"10.1.0.0/16\"}");
    assert_true(ok(r));
    json_decref(r);
    r = call(w, "{\"cmd\":\"ban\",\"addr\":\"10.16.0.0/12\"}");
    assert_true(ok(r));
    json_decref(r);
    /* A member may not lift a wide ban either. */
    r = call_as(w, &member, "{\"cmd\":\"unban\",\"addr\":\"10.16.0.0/12\"}");
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_non_null(strstr(error(r), "permission denied: 10.16.0.0/12 is wider than /16"));
    json_decref(r);
    assert_true(active(w, "10.16.0.0/12"));
}

static void a_member_cannot_lift_a_wide_key_through_an_address_in_it(void **state)
{
    struct world *w = *state;
    /* IPv6 sources counted by /40: an address's ban is its /40. */
    w->cfg.policy.ipv6_prefix = 40;
    struct policy *wide = policy_new(&w->cfg.policy, NULL);
    assert_non_null(wide);
    judge_set_policy(w->judge, wide);
    w->ops.policy = wide;
    json_decref(call(w, "{\"cmd\":\"ban\",\"addr\":\"2001:db8:ab00::/40\"}"));
    json_t *r = call_as(w, &member, "{\"cmd\":\"unban\",\"addr\":\"2001:db8:ab00::1\"}");
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_non_null(strstr(error(r), "2001:db8:ab00::/40 is wider than /48"));
    json_decref(r);
    assert_true(active(w, "2001:db8:ab00::/40"));
    r = call(w, "{\"cmd\":\"unban\",\"addr\":\"2001:db8:ab00::1\"}");
    assert_true(ok(r));
    json_decref(r);
    judge_set_policy(w->judge, w->policy);
    policy_free(wide);
}

static void a_members_reload_is_refused_and_not_attempted(void **state)
{
    struct world *w = *state;
    json_t *r = call_as(w, &member, "{\"cmd\":\"reload\"}");
    assert_false(ok(r));
    assert_int_equal(code(r), CTL_CODE_FAILED);
    assert_non_null(strstr(error(r), "permission denied: reload is for root"));
    json_decref(r);
    assert_int_equal(w->fake.reloads, 0);
}

/* --- list pages --- */

static void list_pages_with_a_cursor_and_counts_on_the_first_page(void **state)
{
    struct world *w = *state;
    for (int i = 0; i < 5; i++) {
        char req[128];
        snprintf(req, sizeof(req), "{\"cmd\":\"ban\",\"addr\":\"203.0.113.%d\"}", i + 1);
        json_decref(call(w, req));
    }
    json_decref(call(w, "{\"cmd\":\"ban\",\"addr\":\"2001:db8::/48\"}"));
    json_t *r = call(w, "{\"cmd\":\"list\",\"limit\":2,\"family\":4}");
    assert_true(ok(r));
    assert_int_equal(json_array_size(json_object_get(r, "bans")), 2);
    assert_int_equal(json_integer_value(json_object_get(r, "total")), 5);
    assert_true(json_is_true(json_object_get(r, "truncated")));
    char next[512];
    snprintf(next, sizeof(next), "{\"cmd\":\"list\",\"limit\":2,\"family\":4,\"cursor\":\"%s\"}",
             json_string_value(json_object_get(r, "cursor")));
    json_decref(r);
    unsigned seen = 2, pages = 1;
    while (next[0]) {
        r = call(w, next);
        assert_true(ok(r));
        assert_null(json_object_get(r, "total")); /* the first page's */
        seen += json_array_size(json_object_get(r, "bans"));
        pages++;
        const char *cursor = json_string_value(json_object_get(r, "cursor"));
        if (cursor)
            snprintf(next, sizeof(next),
                     "{\"cmd\":\"list\",\"limit\":2,\"family\":4,\"cursor\":\"%s\"}", cursor);
        else
            next[0] = 0;
        assert_int_equal(json_is_true(json_object_get(r, "truncated")), cursor != NULL);
        json_decref(r);
        assert_true(pages < 10);
    }
    assert_int_equal(seen, 5);
}

static void a_page_of_long_rows_is_cut_by_bytes_and_continues(void **state)
{
    struct world *w = *state;
    char note[CTL_NOTE_MAX + 1];
    memset(note, 'n', CTL_NOTE_MAX);
    note[CTL_NOTE_MAX] = 0;
    for (int i = 0; i < 300; i++) {
        char req[512];
        snprintf(req, sizeof(req), "{\"cmd\":\"ban\",\"addr\":\"10.9.%d.%d\",\"note\":\"%s\"}",
                 i / 256, i % 256, note);
        json_decref(call(w, req));
    }
    json_t *r = call(w, "{\"cmd\":\"list\"}");
    size_t first = json_array_size(json_object_get(r, "bans"));
    char *text = json_dumps(r, JSON_COMPACT);
    assert_true(strlen(text) < CTL_PAGE_BYTES_MAX);
    free(text);
    assert_true(first > 50 && first < 300);
    char next[128];
    snprintf(next, sizeof(next), "{\"cmd\":\"list\",\"cursor\":\"%s\"}",
             json_string_value(json_object_get(r, "cursor")));
    json_decref(r);
    size_t seen = first;
    for (int pages = 0; next[0] && pages < 10; pages++) {
        r = call(w, next);
        seen += json_array_size(json_object_get(r, "bans"));
        const char *cursor = json_string_value(json_object_get(r, "cursor"));
        if (cursor)
            snprintf(next, sizeof(next), "{\"cmd\":\"list\",\"cursor\":\"%s\"}", cursor);
        else
            next[0] = 0;
        json_decref(r);
    }
    assert_int_equal(seen, 300);
}

static void list_limit_zero_is_refused_and_a_large_one_is_capped(void **state)
{
    struct world *w = *state;
    json_t *r = call(w, "{\"cmd\":\"list\",\"limit\":0}");
    assert_int_equal(code(r), CTL_CODE_USAGE);
    assert_non_null(strstr(error(r), "cursor"));
    json_decref(r);
    r = call(w, "{\"cmd\":\"list\",\"limit\":100000000}");
    assert_true(ok(r));
    json_decref(r);
    r = call(w, "{\"cmd\":\"list\",\"cursor\":\"12; DROP\"}");
    assert_int_equal(code(r), CTL_CODE_USAGE);
    json_decref(r);
}

/* --- bad requests --- */

static void bad_arguments_are_usage_errors_with_code_2(void **state)
{
    struct world *w = *state;
    static const char *const bad[] = {
        "{\"cmd\":\"ban\"}",
        "{\"cmd\":\"ban\",\"addr\":\"300.1.1.1\"}",
        "{\"cmd\":\"ban\",\"addr\":\"203.0.113.7/24\"}",
        "{\"cmd\":\"ban\",\"addr\":\"0.0.0.0/0\"}",
        "{\"cmd\":\"ban\",\"addr\":\"203.0.113.7\",\"duration\":-5}",
        "{\"cmd\":\"ban\",\"addr\":\"203.0.113.7\",\"duration\":\"1h\"}",
        "{\"cmd\":\"ban\",\"addr\":\"203.0.113.7\",\"duration\":60,\"permanent\":true}",
        "{\"cmd\":\"ban\",\"addr\":\"203.0.113.7\",\"note\":7}",
        "{\"cmd\":\"unban\",\"addr\":42}",
        "{\"cmd\":\"show\"}",
        "{\"cmd\":\"list\",\"family\":5}",
        "{\"cmd\":\"list\",\"reason\":\"whim\"}",
        "{\"cmd\":\"list\",\"limit\":\"all\"}",
        "{\"cmd\":\"frobnicate\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *r = call(w, bad[i]);
        if (ok(r) || code(r) != CTL_CODE_USAGE)
            fail_msg("%s: want a usage error, got %s", bad[i], error(r));
        json_decref(r);
    }
    assert_int_equal(w->fake.napplied, 0);
    assert_int_equal(w->fake.reloads, 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(a_ban_is_decided_applied_and_answered_with_the_ban),
        T(a_ban_without_a_duration_takes_the_policys_bantime),
        T(a_ban_the_kernel_refuses_is_lifted_again_and_fails_with_code_1),
        T(a_whitelisted_prefix_is_refused_without_force_and_banned_with_it),
        T(unban_of_a_banned_prefix_lifts_it),
        T(unban_of_an_address_lifts_its_banned_key),
        T(unban_inside_a_wider_banned_prefix_names_it_and_lifts_nothing),
        T(unban_of_an_address_not_banned_fails_with_code_1),
        T(reload_success_answers_ok),
        T(reload_errors_in_the_file_are_carried_in_the_reply),
        T(a_failure_to_apply_a_valid_file_is_carried_in_the_reply),
        T(status_counts_the_active_bans_and_asks_the_core_for_the_rest),
        T(a_member_may_ban_and_unban_addresses_and_narrow_prefixes),
        T(a_members_force_is_refused_naming_the_rule),
        T(a_members_wide_prefix_is_refused_naming_the_setting),
        T(a_member_cannot_lift_a_wide_key_through_an_address_in_it),
        T(a_members_reload_is_refused_and_not_attempted),
        T(list_pages_with_a_cursor_and_counts_on_the_first_page),
        T(a_page_of_long_rows_is_cut_by_bytes_and_continues),
        T(list_limit_zero_is_refused_and_a_large_one_is_capped),
        T(bad_arguments_are_usage_errors_with_code_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
