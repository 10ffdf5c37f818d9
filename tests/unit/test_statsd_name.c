#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "statsd_name.h"

static struct sec_endpoint ep(const char *addr, enum sec_transport t, const char *scope)
{
    struct sec_endpoint e = {.transport = t, .port = 5060};
    assert_int_equal(addr_parse(addr, strlen(addr), &e.addr), 0);
    if (scope)
        strncpy(e.scope, scope, sizeof(e.scope) - 1);
    return e;
}

/* No byte that StatsD or a line-oriented protocol gives meaning to survives in a name. */
static void assert_line_safe(const char *name)
{
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        assert_true(c > ' ' && c < 0x7f);
        assert_null(strchr(":|@#,=", c));
    }
}

static void ipv4_address_drops_the_port_and_underscores_the_dots(void **state)
{
    char buf[STATSD_NAME_MAX];
    struct sec_endpoint e = ep("1.2.3.4", SEC_TRANSPORT_UDP, NULL);
    assert_int_equal(statsd_name_address(&e, buf, sizeof(buf)), (int)strlen("IPV4/UDP/1_2_3_4"));
    assert_string_equal(buf, "IPV4/UDP/1_2_3_4");
}

static void ipv6_address_has_its_colons_made_underscores(void **state)
{
    char buf[STATSD_NAME_MAX];
    struct sec_endpoint e = ep("2001:db8::1", SEC_TRANSPORT_UDP, NULL);
    statsd_name_address(&e, buf, sizeof(buf));
    assert_string_equal(buf, "IPV6/UDP/2001_db8__1");
    assert_line_safe(buf);
}

static void address_without_transport_has_no_transport_segment(void **state)
{
    char buf[STATSD_NAME_MAX];
    struct sec_endpoint e = ep("2001:db8:bad::66", SEC_TRANSPORT_NONE, NULL);
    statsd_name_address(&e, buf, sizeof(buf));
    assert_string_equal(buf, "IPV6/2001_db8_bad__66");
    e = ep("192.0.2.44", SEC_TRANSPORT_NONE, NULL);
    statsd_name_address(&e, buf, sizeof(buf));
    assert_string_equal(buf, "IPV4/192_0_2_44");
}

static void scoped_link_local_keeps_its_scope_as_a_safe_suffix(void **state)
{
    char buf[STATSD_NAME_MAX];
    struct sec_endpoint e = ep("fe80::1", SEC_TRANSPORT_TCP, "eth0");
    statsd_name_address(&e, buf, sizeof(buf));
    assert_string_equal(buf, "IPV6/TCP/fe80__1_eth0");
}

static void hostile_scope_cannot_break_the_name(void **state)
{
    char buf[STATSD_NAME_MAX];
    struct sec_endpoint e = ep("fe80::1", SEC_TRANSPORT_WSS, "a:1|c\n@ x");
    statsd_name_address(&e, buf, sizeof(buf));
    assert_string_equal(buf, "IPV6/WSS/fe80__1_a_1_c___x");
    assert_line_safe(buf);
}

static void every_transport_is_named_as_asterisk_does(void **state)
{
    static const struct {
        enum sec_transport t;
        const char *want;
    } cases[] = {{SEC_TRANSPORT_UDP, "IPV4/UDP/10_0_0_1"},
                 {SEC_TRANSPORT_TCP, "IPV4/TCP/10_0_0_1"},
                 {SEC_TRANSPORT_TLS, "IPV4/TLS/10_0_0_1"},
                 {SEC_TRANSPORT_WS, "IPV4/WS/10_0_0_1"},
                 {SEC_TRANSPORT_WSS, "IPV4/WSS/10_0_0_1"}};
    char buf[STATSD_NAME_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sec_endpoint e = ep("10.0.0.1", cases[i].t, NULL);
        statsd_name_address(&e, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].want);
    }
}

static void unknown_family_is_refused(void **state)
{
    char buf[STATSD_NAME_MAX];
    struct sec_endpoint e = {0};
    assert_int_equal(statsd_name_address(&e, buf, sizeof(buf)), -EAFNOSUPPORT);
}

static void address_into_a_short_buffer_is_refused_not_cut(void **state)
{
    char buf[10];
    struct sec_endpoint e = ep("1.2.3.4", SEC_TRANSPORT_UDP, NULL);
    assert_int_equal(statsd_name_address(&e, buf, sizeof(buf)), -ENOBUFS);
}

static void failed_auth_names_are_those_of_res_auth_stats(void **state)
{
    char buf[STATSD_NAME_MAX];
    struct sec_endpoint e = ep("198.51.100.23", SEC_TRANSPORT_UDP, NULL);
    statsd_name_failed_auth("PJSIP", NULL, buf, sizeof(buf));
    assert_string_equal(buf, "security.failed_auth.PJSIP.count");
    statsd_name_failed_auth("PJSIP", &e, buf, sizeof(buf));
    assert_string_equal(buf, "security.failed_auth.PJSIP.IPV4/UDP/198_51_100_23");
}

static void hostile_service_becomes_one_safe_segment(void **state)
{
    char buf[STATSD_NAME_MAX];
    statsd_name_failed_auth("a:b|c@d e\n", NULL, buf, sizeof(buf));
    assert_string_equal(buf, "security.failed_auth.a_b_c_d_e_.count");
    /* A dot would add a level to the hierarchy; bytes >= 0x80 and control bytes are replaced. */
    statsd_name_failed_auth("x.y\t\x01\xc3\xa9", NULL, buf, sizeof(buf));
    assert_string_equal(buf, "security.failed_auth.x_y____.count");
    assert_line_safe(buf);
}

static void unterminated_service_is_read_only_to_its_bound(void **state)
{
    char svc[SEC_SERVICE_MAX];
    memset(svc, 'S', sizeof(svc)); /* no NUL */
    char buf[STATSD_NAME_MAX];
    assert_true(statsd_name_failed_auth(svc, NULL, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "security.failed_auth.SSSSSSSSSSSSSSS.count");
}

static void empty_service_is_named_unknown(void **state)
{
    char buf[STATSD_NAME_MAX];
    statsd_name_failed_auth("", NULL, buf, sizeof(buf));
    assert_string_equal(buf, "security.failed_auth.unknown.count");
}

static void prefix_gets_exactly_one_trailing_dot(void **state)
{
    char buf[STATSD_PREFIX_MAX];
    statsd_name_prefix("", buf, sizeof(buf));
    assert_string_equal(buf, "");
    statsd_name_prefix("pbxguard", buf, sizeof(buf));
    assert_string_equal(buf, "pbxguard.");
    statsd_name_prefix("pbxguard.", buf, sizeof(buf));
    assert_string_equal(buf, "pbxguard.");
    statsd_name_prefix(".a..b.", buf, sizeof(buf));
    assert_string_equal(buf, "a.b.");
    statsd_name_prefix("...", buf, sizeof(buf));
    assert_string_equal(buf, "");
}

static void prefix_is_sanitized_but_keeps_its_dots(void **state)
{
    char buf[STATSD_PREFIX_MAX];
    statsd_name_prefix("pbx 1:prod|x.host", buf, sizeof(buf));
    assert_string_equal(buf, "pbx_1_prod_x.host.");
}

static void line_has_the_statsd_format(void **state)
{
    char buf[STATSD_LINE_MAX];
    int n = statsd_line(buf, sizeof(buf), "", "security.failed_auth.AMI.count", 1, "c");
    assert_string_equal(buf, "security.failed_auth.AMI.count:1|c");
    assert_int_equal(n, (int)strlen(buf));
    statsd_line(buf, sizeof(buf), "pbx.", "security.failed_auth.AMI.count", 1, "m");
    assert_string_equal(buf, "pbx.security.failed_auth.AMI.count:1|m");
    statsd_line(buf, sizeof(buf), "pbxguard.", "bans.active.ipv6", -3, "g");
    assert_string_equal(buf, "pbxguard.bans.active.ipv6:-3|g");
}

static void line_filters_a_hostile_name_handed_in_directly(void **state)
{
    char buf[STATSD_LINE_MAX];
    statsd_line(buf, sizeof(buf), "p.", "a:1|c\n@b c", 2, "c");
    assert_string_equal(buf, "p.a_1_c__b_c:2|c");
}

static void line_that_does_not_fit_is_refused(void **state)
{
    char buf[16];
    /* 11 bytes of name + ":1|c" = 15 bytes and the NUL: exactly fits. */
    assert_int_equal(statsd_line(buf, sizeof(buf), "", "abcdefghijk", 1, "c"), 15);
    assert_string_equal(buf, "abcdefghijk:1|c");
    assert_int_equal(statsd_line(buf, sizeof(buf), "", "abcdefghijk", 10, "c"), -ENOBUFS);
    assert_int_equal(statsd_line(buf, sizeof(buf), "p.", "abcdefghijk", 1, "c"), -ENOBUFS);
}

static void longest_inputs_fit_the_name_bound(void **state)
{
    char buf[STATSD_NAME_MAX];
    char svc[SEC_SERVICE_MAX];
    memset(svc, 'W', sizeof(svc) - 1);
    svc[sizeof(svc) - 1] = '\0';
    struct sec_endpoint e = ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", SEC_TRANSPORT_WSS, NULL);
    memset(e.scope, 'z', sizeof(e.scope)); /* unterminated scope: read to its bound only */
    int n = statsd_name_failed_auth(svc, &e, buf, sizeof(buf));
    assert_true(n > 0);
    assert_line_safe(buf);
    char line[STATSD_LINE_MAX];
    char prefix[STATSD_PREFIX_MAX];
    memset(prefix, 'p', sizeof(prefix) - 2);
    prefix[sizeof(prefix) - 2] = '.';
    prefix[sizeof(prefix) - 1] = '\0';
    assert_true(statsd_line(line, sizeof(line), prefix, buf, INT64_MIN, "c") > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ipv4_address_drops_the_port_and_underscores_the_dots),
        cmocka_unit_test(ipv6_address_has_its_colons_made_underscores),
        cmocka_unit_test(address_without_transport_has_no_transport_segment),
        cmocka_unit_test(scoped_link_local_keeps_its_scope_as_a_safe_suffix),
        cmocka_unit_test(hostile_scope_cannot_break_the_name),
        cmocka_unit_test(every_transport_is_named_as_asterisk_does),
        cmocka_unit_test(unknown_family_is_refused),
        cmocka_unit_test(address_into_a_short_buffer_is_refused_not_cut),
        cmocka_unit_test(failed_auth_names_are_those_of_res_auth_stats),
        cmocka_unit_test(hostile_service_becomes_one_safe_segment),
        cmocka_unit_test(unterminated_service_is_read_only_to_its_bound),
        cmocka_unit_test(empty_service_is_named_unknown),
        cmocka_unit_test(prefix_gets_exactly_one_trailing_dot),
        cmocka_unit_test(prefix_is_sanitized_but_keeps_its_dots),
        cmocka_unit_test(line_has_the_statsd_format),
        cmocka_unit_test(line_filters_a_hostile_name_handed_in_directly),
        cmocka_unit_test(line_that_does_not_fit_is_refused),
        cmocka_unit_test(longest_inputs_fit_the_name_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
