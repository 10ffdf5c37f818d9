#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_format.h"

#define NOW 1764151200 /* 2025-11-26 10:00:00 UTC */

/* Formats the reply (given as JSON text) for cmd and returns the output (a static buffer). */
static const char *render(const char *cmd, const char *json)
{
    static char out[8192];
    json_error_t e;
    json_t *reply = json_loads(json, 0, &e);
    if (!reply)
        fail_msg("bad test JSON: %s", e.text);
    FILE *f = fmemopen(out, sizeof(out), "w");
    assert_non_null(f);
    assert_int_equal(cli_format_reply(cmd, reply, NOW, f), 0);
    fclose(f);
    json_decref(reply);
    return out;
}

static void list_is_an_aligned_table_with_remaining_time(void **state)
{
    const char *s =
        render("list", "{\"ok\":true,\"bans\":["
                       "{\"prefix\":\"192.0.2.1\",\"expires\":1764154800,\"reason\":\"threshold\","
                       "\"failures\":5,\"first_seen\":1764150000,\"last_seen\":1764151000},"
                       "{\"prefix\":\"2001:db8:1:2::/64\",\"expires\":null,\"reason\":\"manual\","
                       "\"failures\":0}]}");
    assert_string_equal(
        s, "PREFIX             REMAINING   REASON     FAILURES  FIRST SEEN           LAST SEEN\n"
           "192.0.2.1          1h          threshold         5  2025-11-26 09:40:00  "
           "2025-11-26 09:56:40\n"
           "2001:db8:1:2::/64  permanent   manual            0  -                    -\n"
           "2 active bans\n");
}

static void remaining_time_drops_seconds_on_long_bans(void **state)
{
    const char *s = render("list", "{\"ok\":true,\"bans\":["
                                   "{\"prefix\":\"192.0.2.1\",\"expires\":1764755999},"
                                   "{\"prefix\":\"192.0.2.2\",\"expires\":1764165599},"
                                   "{\"prefix\":\"192.0.2.3\",\"expires\":1764151259}]}");
    assert_non_null(strstr(s, "192.0.2.1  6d23h "));
    assert_non_null(strstr(s, "192.0.2.2  3h59m "));
    assert_non_null(strstr(s, "192.0.2.3  59s "));
}

static void a_truncated_list_says_how_many_more(void **state)
{
    const char *s = render("list", "{\"ok\":true,\"total\":5000,\"truncated\":true,\"bans\":["
                                   "{\"prefix\":\"192.0.2.1\",\"expires\":null}]}");
    assert_non_null(strstr(s, "\n1 of 5000 active bans shown (--limit N or --all for more)\n"));
}

static void an_empty_list_says_so(void **state)
{
    assert_string_equal(render("list", "{\"ok\":true,\"bans\":[]}"), "no active bans\n");
}

static void ban_reports_length_and_end(void **state)
{
    assert_string_equal(render("ban", "{\"ok\":true,\"ban\":{\"prefix\":\"192.0.2.1\","
                                      "\"expires\":1764156600}}"),
                        "banned 192.0.2.1 for 1h30m (until 2025-11-26 11:30:00)\n");
    assert_string_equal(
        render("ban", "{\"ok\":true,\"ban\":{\"prefix\":\"192.0.2.0/24\",\"expires\":null}}"),
        "banned 192.0.2.0/24 permanently\n");
}

static void unban_lists_what_was_lifted(void **state)
{
    assert_string_equal(render("unban", "{\"ok\":true,\"lifted\":[\"192.0.2.1\"]}"),
                        "unbanned 192.0.2.1\n");
}

static void status_aligns_its_fields(void **state)
{
    const char *s = render(
        "status", "{\"ok\":true,\"version\":\"0.1.0\",\"uptime\":3725,"
                  "\"database\":{\"path\":\"/var/lib/pbxguard/pbxguard.db\",\"size\":1572864},"
                  "\"nftables\":{\"ok\":true,\"detail\":\"table inet pbxguard\"},"
                  "\"events\":120,\"bans\":3,\"active_bans\":{\"v4\":2,\"v6\":1},"
                  "\"ami\":[{\"name\":\"pbx1\",\"state\":\"connected\",\"host\":\"127.0.0.1\","
                  "\"port\":5038,\"last_event\":1764151188}]}");
    assert_string_equal(s, "pbxguardd 0.1.0, up 1h2m5s\n"
                           "database     /var/lib/pbxguard/pbxguard.db (1.5 MiB)\n"
                           "nftables     ok (table inet pbxguard)\n"
                           "since start  120 events, 3 bans\n"
                           "active       3 bans (2 IPv4, 1 IPv6)\n"
                           "AMI sessions:\n"
                           "  pbx1         connected    127.0.0.1:5038  last event 12s ago\n");
}

static void status_flags_a_failing_nftables_layer(void **state)
{
    const char *s = render("status", "{\"ok\":true,\"nftables\":{\"ok\":false,"
                                     "\"detail\":\"table missing\"},\"ami\":[]}");
    assert_non_null(strstr(s, "nftables     FAILING (table missing)\n"));
    assert_non_null(strstr(s, "AMI          none configured\n"));
}

static void status_says_when_ban_changes_are_missing_from_the_history(void **state)
{
    const char *s = render("status", "{\"ok\":true,\"database\":{\"path\":\"/db\",\"size\":0,"
                                     "\"journal_lost\":3},\"ami\":[]}");
    assert_non_null(strstr(s, "database     /db (0 B)\nhistory      3 ban changes missing (made "
                              "while the database failed; the kernel enforced them)\n"));
    s = render("status", "{\"ok\":true,\"database\":{\"path\":\"/db\",\"size\":0,"
                         "\"journal_lost\":0},\"ami\":[]}");
    assert_null(strstr(s, "history"));
}

static void status_shows_a_recent_unclean_stop(void **state)
{
    const char *s = render("status", "{\"ok\":true,\"version\":\"0.1.0\",\"uptime\":60,"
                                     "\"last_unclean_stop\":{\"last_write\":1764151000,"
                                     "\"restarted\":1764151130,\"down\":130,\"pid\":4242,"
                                     "\"version\":\"0.1.0\"},\"ami\":[]}");
    assert_non_null(strstr(s, "\nunclean stop pid 4242 died after 2025-11-26 09:56:40, restarted "
                              "2025-11-26 09:58:50 (2m10s not running)\n"));
}

static void status_shows_the_longest_loop_turn_and_a_restore_under_way(void **state)
{
    const char *s = render("status", "{\"ok\":true,\"nftables\":{\"ok\":true},"
                                     "\"restoring\":{\"installed\":65536},"
                                     "\"loop\":{\"turns\":1000,\"longest_ms\":1890.5,"
                                     "\"window_s\":60,\"window_turns\":500,\"max_ms\":4.25,"
                                     "\"p99_ms\":0.31},\"ami\":[]}");
    assert_non_null(strstr(s, "restoring    65536 active bans installed so far\n"
                              "loop         longest turn 4.2 ms in the last 60 s (99% under "
                              "0.3 ms), 1890.5 ms since start\n"));
}

static void show_explains_a_ban_and_escapes_accounts(void **state)
{
    const char *s = render(
        "show",
        "{\"ok\":true,\"addr\":\"192.0.2.7\",\"key\":\"192.0.2.7\",\"whitelist\":null,"
        "\"ban\":{\"prefix\":\"192.0.2.0/24\",\"reason\":\"manual\",\"expires\":1764154800,"
        "\"start\":1764150000,\"origin\":\"cli:uid=0\",\"note\":\"ticket 42\"},"
        "\"first_seen\":1764150000,\"last_seen\":1764151000,"
        "\"failures\":[{\"service\":\"PJSIP\",\"event\":\"InvalidPassword\",\"count\":7}],"
        "\"accounts\":[{\"account\":\"1001\\u001b[31m\",\"count\":7}],"
        "\"past_bans\":[{\"prefix\":\"192.0.2.7\",\"reason\":\"threshold\",\"start\":1764060000,"
        "\"ended\":1764063600,\"end_reason\":\"lifted\",\"lifted_by\":\"cli:uid=0\"}]}");
    assert_string_equal(s, "address      192.0.2.7\n"
                           "counted as   192.0.2.7\n"
                           "protected    no\n"
                           "banned       yes, as 192.0.2.0/24 (manual, 1h left, until "
                           "2025-11-26 11:00:00)\n"
                           "since        2025-11-26 09:40:00 by cli:uid=0: ticket 42\n"
                           "first seen   2025-11-26 09:40:00\n"
                           "last seen    2025-11-26 09:56:40\n"
                           "failures:\n"
                           "  PJSIP    InvalidPassword                 7\n"
                           "accounts tried:\n"
                           "  1001\\x1b[31m                             7\n"
                           "past bans:\n"
                           "  2025-11-25 08:40:00  192.0.2.7          threshold 1h       "
                           "lifted by cli:uid=0\n");
}

static void show_names_the_whitelist_entry(void **state)
{
    const char *s = render("show", "{\"ok\":true,\"addr\":\"10.1.2.3\","
                                   "\"whitelist\":\"10.0.0.0/8\",\"ban\":null}");
    assert_non_null(strstr(s, "protected    yes, matches 10.0.0.0/8"));
    assert_non_null(strstr(s, "banned       no\n"));
    assert_non_null(strstr(s, "failures     none recorded\n"));
}

static void show_says_why_an_address_is_protected_and_how_firmly(void **state)
{
    static const struct {
        const char *protected_json, *line;
    } cases[] = {
        {"{\"prefix\":\"2001:db8:1::1\",\"reason\":\"own address on eth0\",\"source\":\"host\","
         "\"absolute\":true,\"ignored\":false}",
         "protected    yes: own address on eth0 (2001:db8:1::1); never banned, not even with "
         "--force\n"},
        {"{\"prefix\":\"192.0.2.0/24\",\"reason\":\"config\",\"source\":\"config\","
         "\"absolute\":false,\"ignored\":false}",
         "protected    yes: config (192.0.2.0/24); never banned automatically (ban --force "
         "overrides it)\n"},
        {"{\"prefix\":\"fe80::/10\",\"reason\":\"link-local\",\"source\":\"builtin\","
         "\"absolute\":true,\"ignored\":true}",
         "protected    yes: link-local (fe80::/10); its events are ignored, never counted nor "
         "banned\n"},
        {"{\"prefix\":\"192.0.2.1\",\"reason\":\"gateway on eth0\\u001b[2J\","
         "\"source\":\"gateway\",\"absolute\":false,\"ignored\":false}",
         "protected    yes: gateway on eth0\\x1b[2J (192.0.2.1); never banned automatically (ban "
         "--force overrides it)\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 "{\"ok\":true,\"addr\":\"192.0.2.1\",\"whitelist\":\"x\",\"protected\":%s,"
                 "\"ban\":null}",
                 cases[i].protected_json);
        const char *s = render("show", json);
        assert_non_null(strstr(s, cases[i].line));
    }
}

/* No terminal control byte reaches the terminal: C1 (U+009B is CSI), DEL, ESC, raw bytes. */
static void show_escapes_c1_del_and_raw_bytes_in_accounts_and_services(void **state)
{
    const char *s =
        render("show", "{\"ok\":true,\"addr\":\"192.0.2.7\",\"ban\":null,"
                       "\"failures\":[{\"service\":\"\\\\xff\\u009bSIP\","
                       "\"event\":\"InvalidAccountID\",\"count\":3}],"
                       "\"accounts\":[{\"account\":\"a\\u009b[2J\\u007fb\",\"count\":3}]}");
    assert_non_null(strstr(s, "  \\\\xff\\xc2\\x9bSIP InvalidAccountID"));
    assert_non_null(strstr(s, "  a\\xc2\\x9b[2J\\x7fb "));
    for (const char *c = s; *c; c++)
        assert_true(*c == '\n' || (*c >= 0x20 && *c < 0x7f));
}

static void safe_text_keeps_ascii_and_escapes_every_other_byte(void **state)
{
    char buf[64];
    assert_string_equal(cli_format_safe("\"addr\" is missing", buf, sizeof(buf)),
                        "\"addr\" is missing");
    assert_string_equal(cli_format_safe("a\x1b[2J\xc2\x9b\x7f\x9b", buf, sizeof(buf)),
                        "a\\x1b[2J\\xc2\\x9b\\x7f\\x9b");
    assert_string_equal(cli_format_safe("abc\x01", buf, 6), "abc"); /* no half escape */
}

static void sizes_and_times_read_naturally(void **state)
{
    char buf[32];
    assert_string_equal(cli_format_size(512, buf, sizeof(buf)), "512 B");
    assert_string_equal(cli_format_size(1536, buf, sizeof(buf)), "1.5 KiB");
    assert_string_equal(cli_format_size(3LL << 30, buf, sizeof(buf)), "3.0 GiB");
    assert_string_equal(cli_format_time(NOW, buf, sizeof(buf)), "2025-11-26 10:00:00");
    assert_string_equal(cli_format_time(0, buf, sizeof(buf)), "-");
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_is_an_aligned_table_with_remaining_time),
        cmocka_unit_test(remaining_time_drops_seconds_on_long_bans),
        cmocka_unit_test(a_truncated_list_says_how_many_more),
        cmocka_unit_test(an_empty_list_says_so),
        cmocka_unit_test(ban_reports_length_and_end),
        cmocka_unit_test(unban_lists_what_was_lifted),
        cmocka_unit_test(status_aligns_its_fields),
        cmocka_unit_test(status_flags_a_failing_nftables_layer),
        cmocka_unit_test(status_says_when_ban_changes_are_missing_from_the_history),
        cmocka_unit_test(status_shows_a_recent_unclean_stop),
        cmocka_unit_test(status_shows_the_longest_loop_turn_and_a_restore_under_way),
        cmocka_unit_test(show_explains_a_ban_and_escapes_accounts),
        cmocka_unit_test(show_names_the_whitelist_entry),
        cmocka_unit_test(show_says_why_an_address_is_protected_and_how_firmly),
        cmocka_unit_test(show_escapes_c1_del_and_raw_bytes_in_accounts_and_services),
        cmocka_unit_test(safe_text_keeps_ascii_and_escapes_every_other_byte),
        cmocka_unit_test(sizes_and_times_read_naturally),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
