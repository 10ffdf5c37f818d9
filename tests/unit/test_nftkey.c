#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "nftkey.h"

static struct addr_prefix P(const char *s) {
    struct addr_prefix p;
    assert_int_equal(addr_prefix_parse(s, false, &p), 0);
    return p;
}

static void
check_end(const char *prefix, const char *want_end)
{
    struct addr_prefix p = P(prefix), e = P(want_end);
    struct nftkey_interval iv;
    nftkey_interval_of(&p, &iv);
    assert_int_equal(iv.len, p.addr.family == AF_INET ? 4 : 16);
    assert_memory_equal(iv.start, p.addr.bytes, iv.len);
    assert_true(iv.has_end);
    assert_memory_equal(iv.end, e.addr.bytes, iv.len);
}

static void single_ipv4_address_ends_at_the_next_address(void **state)
{
    check_end("192.0.2.7", "192.0.2.8");
    check_end("192.0.2.255", "192.0.3.0");
}

static void ipv4_prefix_ends_after_its_last_address(void **state)
{
    check_end("192.0.2.0/24", "192.0.3.0");
    check_end("10.0.0.0/8", "11.0.0.0");
    check_end("192.0.2.128/25", "192.0.3.0");
}

static void ipv6_prefix_ends_after_its_last_address(void **state)
{
    check_end("2001:db8::/64", "2001:db8:0:1::");
    check_end("2001:db8::1", "2001:db8::2");
    check_end("2001:db8:0:ffff::/64", "2001:db8:1::");
}

static void prefix_reaching_the_top_has_no_end(void **state)
{
    struct nftkey_interval iv;
    struct addr_prefix p = P("255.255.255.255");
    nftkey_interval_of(&p, &iv);
    assert_false(iv.has_end);
    p = P("ffff::/16");
    nftkey_interval_of(&p, &iv);
    assert_false(iv.has_end);
    p = P("0.0.0.0/0");
    nftkey_interval_of(&p, &iv);
    assert_false(iv.has_end);
}

static void interval_converts_back_to_its_prefix(void **state)
{
    static const char *const cases[] = {"192.0.2.0/24",    "192.0.2.7",     "0.0.0.0/0",
                                        "255.255.255.255", "2001:db8::/64", "2001:db8::1",
                                        "ffff::/16",       "10.0.0.0/8"};
    char buf[ADDR_STRLEN], want[ADDR_STRLEN];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct addr_prefix p = P(cases[i]), back;
        struct nftkey_interval iv;
        nftkey_interval_of(&p, &iv);
        assert_int_equal(
            nftkey_prefix_of(p.addr.family, iv.start, iv.has_end ? iv.end : NULL, &back), 0);
        assert_string_equal(addr_prefix_format(&back, buf, sizeof(buf)),
                            addr_prefix_format(&p, want, sizeof(want)));
    }
}

static void range_that_is_not_one_prefix_is_refused(void **state)
{
    struct addr_prefix a = P("192.0.2.0"), b = P("192.0.2.3"), out;
    assert_int_equal(nftkey_prefix_of(AF_INET, a.addr.bytes, b.addr.bytes, &out), -EINVAL);
    a = P("192.0.2.1");
    b = P("192.0.2.3");
    assert_int_equal(nftkey_prefix_of(AF_INET, a.addr.bytes, b.addr.bytes, &out), -EINVAL);
}

static void hosts_and_slash64_go_to_hash_sets_other_prefixes_to_interval_sets(void **state)
{
    struct addr_prefix p = P("192.0.2.7");
    assert_int_equal(nftkey_set_of(&p), NFTKEY_HOST4);
    p = P("192.0.2.0/24");
    assert_int_equal(nftkey_set_of(&p), NFTKEY_NET4);
    p = P("2001:db8::/64");
    assert_int_equal(nftkey_set_of(&p), NFTKEY_NET64);
    p = P("2001:db8::1");
    assert_int_equal(nftkey_set_of(&p), NFTKEY_NET6);
    p = P("2001:db8::/48");
    assert_int_equal(nftkey_set_of(&p), NFTKEY_NET6);
    assert_false(nftkey_set_is_interval(NFTKEY_HOST4));
    assert_false(nftkey_set_is_interval(NFTKEY_NET64));
    assert_true(nftkey_set_is_interval(NFTKEY_NET4));
    assert_true(nftkey_set_is_interval(NFTKEY_NET6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_ipv4_address_ends_at_the_next_address),
        cmocka_unit_test(ipv4_prefix_ends_after_its_last_address),
        cmocka_unit_test(ipv6_prefix_ends_after_its_last_address),
        cmocka_unit_test(prefix_reaching_the_top_has_no_end),
        cmocka_unit_test(interval_converts_back_to_its_prefix),
        cmocka_unit_test(range_that_is_not_one_prefix_is_refused),
        cmocka_unit_test(hosts_and_slash64_go_to_hash_sets_other_prefixes_to_interval_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
