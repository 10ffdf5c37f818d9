/* Live view records: what became of an event, and attacker text carried safely. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "cli_format.h"
#include "store_fixtures.h"
#include "watch.h"

static struct sec_event event(const char *ip, const char *account)
{
    struct sec_event ev = {.type = SEC_INVALID_PASSWORD};
    snprintf(ev.service, sizeof(ev.service), "PJSIP");
    snprintf(ev.source, sizeof(ev.source), "ami:pbx1");
    snprintf(ev.account, sizeof(ev.account), "%s", account);
    ev.remote.addr = fx_addr(ip);
    return ev;
}

static void outcomes_follow_the_verdict(void **state)
{
    struct policy_wl_entry cfg = {.source = POLICY_SRC_CONFIG},
                           allow = {.source = POLICY_SRC_ALLOW}, host = {.source = POLICY_SRC_HOST};
    struct verdict v = {.counted = true};
    assert_int_equal(watch_outcome_of(&v, NULL), WATCH_BELOW);
    v.already_banned = true;
    assert_int_equal(watch_outcome_of(&v, NULL), WATCH_ALREADY_BANNED);
    v = (struct verdict){.counted = true, .action = VERDICT_BAN};
    assert_int_equal(watch_outcome_of(&v, NULL), WATCH_BAN);
    v = (struct verdict){.counted = true, .whitelisted = true};
    assert_int_equal(watch_outcome_of(&v, &cfg), WATCH_ALLOWLISTED);
    assert_int_equal(watch_outcome_of(&v, &allow), WATCH_ALLOWLISTED);
    assert_int_equal(watch_outcome_of(&v, &host), WATCH_PROTECTED);
    v = (struct verdict){.ignored = "link-local"};
    assert_int_equal(watch_outcome_of(&v, NULL), WATCH_IGNORED);
    v = (struct verdict){0};
    assert_int_equal(watch_outcome_of(&v, NULL), WATCH_NOT_COUNTED);
    assert_string_equal(watch_outcome_name(WATCH_BELOW), "below-threshold");
    assert_string_equal(watch_outcome_name(WATCH_ALREADY_BANNED), "already-banned");
}

static void an_event_record_holds_the_window_against_the_threshold(void **state)
{
    struct sec_event ev = event("203.0.113.7", "1001");
    struct verdict v = {.counted = true, .window = 3, .threshold = 5};
    json_t *r = watch_event_json(&ev, NULL, &v, 1.0, NULL, 1764151200123);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "type")), "event");
    assert_string_equal(json_string_value(json_object_get(r, "addr")), "203.0.113.7");
    assert_string_equal(json_string_value(json_object_get(r, "source")), "ami:pbx1");
    assert_string_equal(json_string_value(json_object_get(r, "event")), "InvalidPassword");
    assert_true(json_number_value(json_object_get(r, "window")) == 3);
    assert_int_equal(json_integer_value(json_object_get(r, "threshold")), 5);
    assert_string_equal(json_string_value(json_object_get(r, "verdict")), "below-threshold");
    assert_null(json_object_get(r, "ban"));
    json_decref(r);

    v = (struct verdict){.counted = true,
                         .action = VERDICT_BAN,
                         .window = 5,
                         .threshold = 5,
                         .timeout_ms = 3600000,
                         .offence = 2,
                         .prefix = fx_prefix("203.0.113.7")};
    r = watch_event_json(&ev, NULL, &v, 1.0, NULL, 1764151200123);
    json_t *ban = json_object_get(r, "ban");
    assert_string_equal(json_string_value(json_object_get(ban, "prefix")), "203.0.113.7");
    assert_int_equal(json_integer_value(json_object_get(ban, "duration")), 3600);
    assert_int_equal(json_integer_value(json_object_get(ban, "offence")), 2);
    json_decref(r);
}

static void a_protected_source_names_its_entry(void **state)
{
    struct sec_event ev = event("198.51.100.9", "1001");
    struct policy_wl_entry e = {
        .prefix = fx_prefix("198.51.100.0/24"), .label = "allowlist", .source = POLICY_SRC_ALLOW};
    struct verdict v = {.counted = true, .whitelisted = true};
    json_t *r = watch_event_json(&ev, NULL, &v, 1.0, &e, 1764151200000);
    assert_string_equal(json_string_value(json_object_get(r, "verdict")), "allowlisted");
    json_t *why = json_object_get(r, "why");
    assert_string_equal(json_string_value(json_object_get(why, "prefix")), "198.51.100.0/24");
    assert_string_equal(json_string_value(json_object_get(why, "source")), "allow");
    assert_true(json_is_null(json_object_get(r, "window")));
    json_decref(r);
}

/* Renders a record through the CLI's text line. */
static const char *line(json_t *r)
{
    static char out[2048];
    FILE *f = fmemopen(out, sizeof(out), "w");
    assert_non_null(f);
    cli_format_watch(r, f);
    fclose(f);
    return out;
}

static void hostile_accounts_are_carried_and_shown_escaped(void **state)
{
    /* An escape sequence and quotes (valid UTF-8), then bytes that are not UTF-8. */
    struct sec_event ev = event("203.0.113.7", "\x1b[31mred\"q\\");
    struct verdict v = {.counted = true, .window = 1, .threshold = 5};
    json_t *r = watch_event_json(&ev, NULL, &v, 1.0, NULL, 1764151200000);
    assert_string_equal(json_string_value(json_object_get(r, "account")), "\x1b[31mred\"q\\");
    char *s = json_dumps(r, JSON_COMPACT | JSON_ENSURE_ASCII);
    assert_true(strstr(s, "\\u001b[31mred\\\"q\\\\") || strstr(s, "\\u001B[31mred\\\"q\\\\"));
    free(s);
    const char *text = line(r);
    assert_null(strchr(text, '\x1b'));
    assert_non_null(strstr(text, "account \"\\x1b[31mred\\\"q\\\\\""));
    assert_non_null(strstr(text, "1/5  below threshold\n"));
    json_decref(r);

    ev = event("203.0.113.7", "bad\xff\xfe");
    r = watch_event_json(&ev, NULL, &v, 1.0, NULL, 1764151200000);
    assert_string_equal(json_string_value(json_object_get(r, "account")), "bad\\xff\\xfe");
    text = line(r);
    assert_null(strchr(text, '\xff'));
    json_decref(r);
}

static void a_ban_and_a_manual_verdict_read_as_one_line_each(void **state)
{
    struct sec_event ev = event("203.0.113.7", "1001");
    struct verdict v = {.counted = true,
                        .action = VERDICT_BAN,
                        .window = 5,
                        .threshold = 5,
                        .timeout_ms = 3600000,
                        .offence = 1,
                        .prefix = fx_prefix("203.0.113.7")};
    json_t *r = watch_event_json(&ev, NULL, &v, 1.0, NULL, 1764151200000);
    assert_non_null(strstr(line(r), "5/5  BAN 203.0.113.7 for 1h (offence 1)\n"));
    json_decref(r);
    struct verdict m = {
        .action = VERDICT_UNBAN, .reason = VERDICT_MANUAL, .prefix = fx_prefix("192.0.2.0/24")};
    r = watch_verdict_json(&m, 1764151200000);
    assert_non_null(strstr(line(r), "  manual unban 192.0.2.0/24\n"));
    json_decref(r);
}

static void an_ipv6_window_names_the_key_it_counts_under(void **state)
{
    struct sec_event ev = event("2001:db8:1:2::66", "1001");
    struct addr_prefix key = fx_prefix("2001:db8:1:2::/64");
    struct verdict v = {.counted = true, .window = 3, .threshold = 5};
    json_t *r = watch_event_json(&ev, &key, &v, 1.0, NULL, 1764151200000);
    assert_string_equal(json_string_value(json_object_get(r, "key")), "2001:db8:1:2::/64");
    assert_non_null(strstr(line(r), "3/5 in 2001:db8:1:2::/64  below threshold\n"));
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(outcomes_follow_the_verdict),
        cmocka_unit_test(an_event_record_holds_the_window_against_the_threshold),
        cmocka_unit_test(a_protected_source_names_its_entry),
        cmocka_unit_test(hostile_accounts_are_carried_and_shown_escaped),
        cmocka_unit_test(a_ban_and_a_manual_verdict_read_as_one_line_each),
        cmocka_unit_test(an_ipv6_window_names_the_key_it_counts_under),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
