#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"

static struct addr parsed[8];
static unsigned next_parsed;

/* Returns a pointer to the parsed address (a small ring, enough for one assertion). */
static const struct addr *P(const char *s)
{
    struct addr *a = &parsed[next_parsed++ % 8];
    assert_int_equal(addr_parse(s, strlen(s), a), 0);
    return a;
}

static struct addr parse_ok(const char *s)
{
    return *P(s);
}

static void ipv4_parses_and_formats_back(void **state)
{
    char buf[ADDR_STRLEN];
    struct addr a = parse_ok("198.51.100.23");
    assert_int_equal(a.family, AF_INET);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "198.51.100.23");
}

static void ipv6_parses_and_formats_canonically(void **state)
{
    char buf[ADDR_STRLEN];
    struct addr a = parse_ok("2001:0db8:0:0::0001");
    assert_int_equal(a.family, AF_INET6);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "2001:db8::1");
}

static void ipv4_mapped_ipv6_folds_to_ipv4(void **state)
{
    char buf[ADDR_STRLEN];
    struct addr a = parse_ok("::ffff:192.0.2.7");
    assert_int_equal(a.family, AF_INET);
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "192.0.2.7");
}

static void garbage_is_rejected(void **state)
{
    static const char *const bad[] = {"",         "1.2.3", "1.2.3.4.5",    "256.1.1.1",      "abc",
                                      "1.2.3.4 ", "[::1]", "fe80::1%eth0", "2001:db8::1/64", "::g"};
    struct addr a;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(addr_parse(bad[i], strlen(bad[i]), &a), -EINVAL);
}

static void parse_uses_only_len_bytes(void **state)
{
    struct addr a;
    assert_int_equal(addr_parse("10.0.0.1/5060", 8, &a), 0);
    char buf[ADDR_STRLEN];
    assert_string_equal(addr_format(&a, buf, sizeof(buf)), "10.0.0.1");
}

static void prefix_with_host_bits_is_refused_unless_allowed(void **state)
{
    struct addr_prefix p;
    char buf[ADDR_STRLEN];
    assert_int_equal(addr_prefix_parse("2001:db8::1/64", false, &p), -EINVAL);
    assert_int_equal(addr_prefix_parse("2001:db8::1/64", true, &p), 0);
    assert_string_equal(addr_prefix_format(&p, buf, sizeof(buf)), "2001:db8::/64");
    assert_int_equal(addr_prefix_parse("192.0.2.0/24", false, &p), 0);
    assert_int_equal(p.len, 24);
}

static void prefix_length_out_of_range_is_refused(void **state)
{
    struct addr_prefix p;
    assert_int_equal(addr_prefix_parse("192.0.2.0/33", true, &p), -EINVAL);
    assert_int_equal(addr_prefix_parse("2001:db8::/129", true, &p), -EINVAL);
    assert_int_equal(addr_prefix_parse("192.0.2.0/", true, &p), -EINVAL);
    assert_int_equal(addr_prefix_parse("192.0.2.0/-1", true, &p), -EINVAL);
    assert_int_equal(addr_prefix_parse("192.0.2.0/2x", true, &p), -EINVAL);
}

static void bare_address_is_a_full_length_prefix(void **state)
{
    struct addr_prefix p;
    char buf[ADDR_STRLEN];
    assert_int_equal(addr_prefix_parse("2001:db8::5", false, &p), 0);
    assert_int_equal(p.len, 128);
    assert_string_equal(addr_prefix_format(&p, buf, sizeof(buf)), "2001:db8::5");
}

static void contains_and_covers(void **state)
{
    struct addr_prefix p64, p128, v4;
    assert_int_equal(addr_prefix_parse("2001:db8:1:2::/64", false, &p64), 0);
    assert_int_equal(addr_prefix_parse("2001:db8:1:2::99", false, &p128), 0);
    assert_int_equal(addr_prefix_parse("192.0.2.0/24", false, &v4), 0);
    assert_true(addr_prefix_contains(&p64, P("2001:db8:1:2:ffff::1")));
    assert_false(addr_prefix_contains(&p64, P("2001:db8:1:3::1")));
    assert_false(addr_prefix_contains(&v4, P("2001:db8:1:2::1")));
    assert_true(addr_prefix_contains(&v4, P("192.0.2.255")));
    assert_true(addr_prefix_covers(&p64, &p128));
    assert_false(addr_prefix_covers(&p128, &p64));
}

static void prefix_of_clamps_and_masks(void **state)
{
    struct addr_prefix p;
    char buf[ADDR_STRLEN];
    struct addr a = parse_ok("2001:db8:aaaa:bbbb:cccc::1");
    addr_prefix_of(&a, 48, &p);
    assert_string_equal(addr_prefix_format(&p, buf, sizeof(buf)), "2001:db8:aaaa::/48");
    struct addr b = parse_ok("203.0.113.77");
    addr_prefix_of(&b, 64, &p);
    assert_int_equal(p.len, 32);
    addr_prefix_of(&b, 20, &p);
    assert_string_equal(addr_prefix_format(&p, buf, sizeof(buf)), "203.0.112.0/20");
}

static void loopback_is_recognized(void **state)
{
    assert_true(addr_is_loopback(P("127.0.0.1")));
    assert_true(addr_is_loopback(P("127.255.0.9")));
    assert_true(addr_is_loopback(P("::1")));
    assert_false(addr_is_loopback(P("::2")));
    assert_false(addr_is_loopback(P("192.0.2.1")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ipv4_parses_and_formats_back),
        cmocka_unit_test(ipv6_parses_and_formats_canonically),
        cmocka_unit_test(ipv4_mapped_ipv6_folds_to_ipv4),
        cmocka_unit_test(garbage_is_rejected),
        cmocka_unit_test(parse_uses_only_len_bytes),
        cmocka_unit_test(prefix_with_host_bits_is_refused_unless_allowed),
        cmocka_unit_test(prefix_length_out_of_range_is_refused),
        cmocka_unit_test(bare_address_is_a_full_length_prefix),
        cmocka_unit_test(contains_and_covers),
        cmocka_unit_test(prefix_of_clamps_and_masks),
        cmocka_unit_test(loopback_is_recognized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
