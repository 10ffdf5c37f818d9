#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"

static char err[512];
static const struct cli_command *hint;

/* Parses a NULL-terminated argument list (the program name is added). */
static int parse_v(struct cli_args *a, const char *first, va_list ap)
{
    char *argv[32] = {"pbxguard"};
    int argc = 1;
    for (const char *s = first; s && argc < 31; s = va_arg(ap, const char *))
        argv[argc++] = (char *)s;
    err[0] = '\0';
    return cli_args_parse(argc, argv, a, &hint, err, sizeof(err));
}

static int parse(struct cli_args *a, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int r = parse_v(a, first, ap);
    va_end(ap);
    return r;
}

/* Parses and returns the request as compact JSON with sorted keys (a static buffer). */
static const char *request(const char *first, ...)
{
    static char out[1024];
    struct cli_args a;
    va_list ap;
    va_start(ap, first);
    int r = parse_v(&a, first, ap);
    va_end(ap);
    assert_int_equal(r, 0);
    char *s = json_dumps(a.request, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(out, sizeof(out), "%s", s);
    free(s);
    cli_args_release(&a);
    return out;
}

/* Expects a usage error whose message contains want. */
static void rejects(const char *want, const char *first, ...)
{
    struct cli_args a;
    va_list ap;
    va_start(ap, first);
    int r = parse_v(&a, first, ap);
    va_end(ap);
    assert_int_equal(r, -EINVAL);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not mention \"%s\"", err, want);
    assert_null(strchr(err, '\n'));
}

static void status_sends_just_the_command(void **state)
{
    assert_string_equal(request("status", NULL), "{\"cmd\":\"status\"}");
}

static void ban_canonicalizes_the_address(void **state)
{
    assert_string_equal(request("ban", "2001:0db8::0001", NULL),
                        "{\"addr\":\"2001:db8::1\",\"cmd\":\"ban\"}");
    assert_string_equal(request("ban", "::ffff:192.0.2.1", NULL),
                        "{\"addr\":\"192.0.2.1\",\"cmd\":\"ban\"}");
    assert_string_equal(request("ban", "198.51.100.0/24", NULL),
                        "{\"addr\":\"198.51.100.0/24\",\"cmd\":\"ban\"}");
}

static void ban_takes_a_duration_in_seconds(void **state)
{
    assert_string_equal(request("ban", "192.0.2.1", "--for", "1h30m", NULL),
                        "{\"addr\":\"192.0.2.1\",\"cmd\":\"ban\",\"duration\":5400}");
    assert_string_equal(request("ban", "192.0.2.1", "--for=2d", NULL),
                        "{\"addr\":\"192.0.2.1\",\"cmd\":\"ban\",\"duration\":172800}");
}

static void ban_permanent_force_and_note(void **state)
{
    assert_string_equal(
        request("ban", "--permanent", "192.0.2.1", "--force", "--reason", "ticket 42", NULL),
        "{\"addr\":\"192.0.2.1\",\"cmd\":\"ban\",\"force\":true,\"note\":\"ticket 42\","
        "\"permanent\":true}");
}

static void global_options_go_anywhere(void **state)
{
    struct cli_args a;
    assert_int_equal(parse(&a, "--json", "-s", "/tmp/x.sock", "list", "--v6", NULL), 0);
    assert_true(a.json);
    assert_string_equal(a.socket, "/tmp/x.sock");
    cli_args_release(&a);
    assert_int_equal(parse(&a, "list", "--socket=/tmp/y.sock", "--json", NULL), 0);
    assert_true(a.json);
    assert_string_equal(a.socket, "/tmp/y.sock");
    cli_args_release(&a);
}

static void list_filters_family_and_reason(void **state)
{
    assert_string_equal(request("list", "--v4", NULL), "{\"cmd\":\"list\",\"family\":4}");
    assert_string_equal(request("list", "--v6", "--reason", "manual", NULL),
                        "{\"cmd\":\"list\",\"family\":6,\"reason\":\"manual\"}");
}

static void list_takes_a_limit_or_all(void **state)
{
    assert_string_equal(request("list", "--limit", "50", NULL), "{\"cmd\":\"list\",\"limit\":50}");
    assert_string_equal(request("list", "--all", NULL), "{\"cmd\":\"list\",\"limit\":0}");
    rejects("--limit \"0\" is not a number of bans", "list", "--limit", "0", NULL);
    rejects("--limit \"ten\" is not a number of bans", "list", "--limit=ten", NULL);
    rejects("exclude each other", "list", "--all", "--limit", "5", NULL);
}

static void help_needs_no_command_and_sends_nothing(void **state)
{
    struct cli_args a;
    assert_int_equal(parse(&a, "--help", NULL), 0);
    assert_true(a.help);
    assert_null(a.command);
    assert_null(a.request);
    assert_int_equal(parse(&a, "ban", "--help", NULL), 0);
    assert_true(a.help);
    assert_string_equal(a.command->name, "ban");
    assert_null(a.request);
}

static void invalid_addresses_are_named(void **state)
{
    rejects("\"1.2.3.400\" is not an IP address", "ban", "1.2.3.400", NULL);
    rejects("\"example.com\" is not an IP address", "unban", "example.com", NULL);
    rejects("\"[::1]\" is not an IP address", "show", "[::1]", NULL);
    rejects("\"fe80::1%eth0\" is not an IP address", "show", "fe80::1%eth0", NULL);
}

static void invalid_prefix_lengths_are_named(void **state)
{
    rejects("\"/33\" is not a prefix length for IPv4 (0-32)", "ban", "192.0.2.1/33", NULL);
    rejects("\"/129\" is not a prefix length for IPv6 (0-128)", "ban", "2001:db8::/129", NULL);
    rejects("\"/x\" is not a prefix length", "ban", "192.0.2.1/x", NULL);
    rejects("\"/\" is not a prefix length", "ban", "192.0.2.1/", NULL);
    rejects("\"/-1\" is not a prefix length", "ban", "192.0.2.1/-1", NULL);
}

static void host_bits_suggest_the_network(void **state)
{
    rejects("did you mean 192.0.2.0/24?", "ban", "192.0.2.1/24", NULL);
}

static void a_zero_length_prefix_is_refused(void **state)
{
    rejects("every address", "ban", "0.0.0.0/0", NULL);
    rejects("every address", "ban", "::/0", NULL);
}

static void invalid_durations_are_named(void **state)
{
    rejects("--for \"1x\" is not a duration", "ban", "192.0.2.1", "--for", "1x", NULL);
    rejects("--for \"\" is not a duration", "ban", "192.0.2.1", "--for=", NULL);
    rejects("--for \"-5m\" is not a duration", "ban", "192.0.2.1", "--for", "-5m", NULL);
    rejects("longer than 0s", "ban", "192.0.2.1", "--for", "0", NULL);
    rejects("too long", "ban", "192.0.2.1", "--for", "99999999999999999999w", NULL);
    rejects("--for needs a value", "ban", "192.0.2.1", "--for", NULL);
}

static void for_and_permanent_exclude_each_other(void **state)
{
    rejects("exclude each other", "ban", "192.0.2.1", "--for", "1h", "--permanent", NULL);
    rejects("exclude each other", "list", "--v4", "--v6", NULL);
}

static void unknown_options_and_commands_are_named(void **state)
{
    rejects("unknown option \"--frobnicate\" for ban", "ban", "192.0.2.1", "--frobnicate", NULL);
    assert_string_equal(hint->name, "ban");
    rejects("unknown option \"--permanent\" for unban", "unban", "192.0.2.1", "--permanent", NULL);
    rejects("unknown option \"--force\" for list", "list", "--force", NULL);
    rejects("unknown command \"bna\"", "bna", "192.0.2.1", NULL);
    assert_null(hint);
    rejects("no command given", "--json", NULL);
}

static void missing_and_extra_arguments_are_named(void **state)
{
    rejects("ban needs an address", "ban", NULL);
    rejects("show needs an address", "show", "--json", NULL);
    rejects("unexpected argument \"192.0.2.2\" for unban", "unban", "192.0.2.1", "192.0.2.2", NULL);
    rejects("unexpected argument \"now\" for status", "status", "now", NULL);
}

static void reasons_are_checked(void **state)
{
    rejects("not a ban reason", "list", "--reason", "angry", NULL);
    rejects("one line", "ban", "192.0.2.1", "--reason", "two\nlines", NULL);
    char long_reason[300];
    memset(long_reason, 'r', sizeof(long_reason) - 1);
    long_reason[sizeof(long_reason) - 1] = '\0';
    rejects("at most 200 bytes", "ban", "192.0.2.1", "--reason", long_reason, NULL);
}

static void usage_lines_are_made_from_the_option_table(void **state)
{
    char buf[256];
    assert_string_equal(cli_command_usage(cli_command_find("status"), buf, sizeof(buf)),
                        "status [--json]");
    assert_string_equal(cli_command_usage(cli_command_find("ban"), buf, sizeof(buf)),
                        "ban ADDR[/LEN] [--for DURATION | --permanent] [--reason TEXT] [--force] "
                        "[--json]");
    assert_string_equal(cli_command_usage(cli_command_find("list"), buf, sizeof(buf)),
                        "list [--v4 | --v6] [--reason threshold|manual|remote] [--limit N | --all] "
                        "[--json]");
    assert_string_equal(cli_command_usage(cli_command_find("unban"), buf, sizeof(buf)),
                        "unban ADDR[/LEN] [--json]");
}

static void help_lists_a_commands_options_and_no_other(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cli_command_help(cli_command_find("list"), f);
    fclose(f);
    assert_non_null(strstr(buf, "  -4, --v4 "));
    assert_non_null(strstr(buf, "  --limit N "));
    assert_null(strstr(buf, "--permanent"));
    assert_null(strstr(buf, "TEXT"));
    free(buf);
}

static void an_option_repeated_is_taken_once_and_aliases_work(void **state)
{
    assert_string_equal(request("list", "--v4", "-4", NULL), "{\"cmd\":\"list\",\"family\":4}");
    assert_string_equal(request("ban", "192.0.2.1", "--for", "1h", "--for", "2h", NULL),
                        "{\"addr\":\"192.0.2.1\",\"cmd\":\"ban\",\"duration\":7200}");
    rejects("exclude each other", "list", "-6", "--v4", NULL);
    rejects("--socket needs a value", "status", "-s", NULL);
    rejects("unknown option \"--json=yes\"", "status", "--json=yes", NULL);
}

static void allow_takes_a_length_a_reason_or_remove(void **state)
{
    assert_string_equal(
        request("allow", "203.0.113.0/24", "--for", "2h", "--reason", "office", NULL),
        "{\"addr\":\"203.0.113.0/24\",\"cmd\":\"allow\",\"duration\":7200,"
        "\"note\":\"office\"}");
    assert_string_equal(request("allow", "--remove", "2001:db8::1", NULL),
                        "{\"addr\":\"2001:db8::1\",\"cmd\":\"allow\",\"remove\":true}");
    assert_string_equal(request("allowlist", NULL), "{\"cmd\":\"allowlist\"}");
    assert_string_equal(request("watch", "--json", NULL), "{\"cmd\":\"watch\"}");
    rejects("needs an address", "allow", NULL);
    rejects("\"0.0.0.0/0\": a /0 prefix", "allow", "0.0.0.0/0", NULL);
    rejects("one line", "allow", "192.0.2.1", "--reason", "two\nlines", NULL);
    rejects("unknown option \"--permanent\" for allow", "allow", "192.0.2.1", "--permanent", NULL);
    rejects("unexpected argument", "watch", "192.0.2.1", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_sends_just_the_command),
        cmocka_unit_test(ban_canonicalizes_the_address),
        cmocka_unit_test(ban_takes_a_duration_in_seconds),
        cmocka_unit_test(ban_permanent_force_and_note),
        cmocka_unit_test(global_options_go_anywhere),
        cmocka_unit_test(list_filters_family_and_reason),
        cmocka_unit_test(list_takes_a_limit_or_all),
        cmocka_unit_test(help_needs_no_command_and_sends_nothing),
        cmocka_unit_test(invalid_addresses_are_named),
        cmocka_unit_test(invalid_prefix_lengths_are_named),
        cmocka_unit_test(host_bits_suggest_the_network),
        cmocka_unit_test(a_zero_length_prefix_is_refused),
        cmocka_unit_test(invalid_durations_are_named),
        cmocka_unit_test(for_and_permanent_exclude_each_other),
        cmocka_unit_test(unknown_options_and_commands_are_named),
        cmocka_unit_test(missing_and_extra_arguments_are_named),
        cmocka_unit_test(reasons_are_checked),
        cmocka_unit_test(usage_lines_are_made_from_the_option_table),
        cmocka_unit_test(help_lists_a_commands_options_and_no_other),
        cmocka_unit_test(an_option_repeated_is_taken_once_and_aliases_work),
        cmocka_unit_test(allow_takes_a_length_a_reason_or_remove),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
