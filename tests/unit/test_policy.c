/* Policy: pure rules, table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "store_fixtures.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct policy *make(const struct cfg_policy *c, const char *const *wl, unsigned nwl)
{
    struct addr_prefix pfx[8];
    for (unsigned i = 0; i < nwl; i++)
        pfx[i] = fx_prefix(wl[i]);
    struct cfg_whitelist w = {.prefixes = pfx, .n = nwl};
    struct policy *p = policy_new(c, &w);
    assert_non_null(p);
    return p;
}

static void default_weights_count_failures_not_benign_events(void **state)
{
    static const struct {
        enum sec_event_type type;
        double weight;
    } cases[] = {
        {SEC_INVALID_ACCOUNT_ID, 1},        {SEC_INVALID_PASSWORD, 1},
        {SEC_CHALLENGE_RESPONSE_FAILED, 1}, {SEC_FAILED_ACL, 1},
        {SEC_REQUEST_NOT_ALLOWED, 1},       {SEC_REQUEST_BAD_FORMAT, 1},
        {SEC_SUCCESSFUL_AUTH, 0},           {SEC_CHALLENGE_SENT, 0},
    };
    struct cfg_policy c;
    fx_cfg_policy(&c);
    struct policy *p = make(&c, NULL, 0);
    for (size_t i = 0; i < N(cases); i++)
        assert_true(policy_weight(p, cases[i].type, "PJSIP") == cases[i].weight);
    policy_free(p);
}

static void service_override_wins_over_event_weight_and_threshold(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    c.weight[SEC_INVALID_PASSWORD] = 2;
    c.nservices = 1;
    snprintf(c.services[0].service, sizeof(c.services[0].service), "AMI");
    c.services[0].maxretry = 3;
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++)
        c.services[0].weight[t] = -1;
    c.services[0].weight[SEC_INVALID_PASSWORD] = 0.5;
    struct policy *p = make(&c, NULL, 0);
    static const struct {
        const char *service;
        double weight;
        unsigned threshold;
    } cases[] = {{"AMI", 0.5, 3}, {"PJSIP", 2, 5}, {"SIP", 2, 5}};
    for (size_t i = 0; i < N(cases); i++) {
        assert_true(policy_weight(p, SEC_INVALID_PASSWORD, cases[i].service) == cases[i].weight);
        assert_int_equal(policy_threshold(p, cases[i].service), cases[i].threshold);
    }
    /* A type the override leaves alone keeps its [events] weight. */
    assert_true(policy_weight(p, SEC_FAILED_ACL, "AMI") == 1);
    policy_free(p);
}

static void key_is_the_address_or_its_configured_prefix(void **state)
{
    static const struct {
        unsigned v4, v6;
        const char *addr, *key;
    } cases[] = {
        {32, 64, "198.51.100.23", "198.51.100.23"},
        {24, 64, "198.51.100.23", "198.51.100.0/24"},
        {32, 64, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
        {32, 48, "2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"},
        {32, 128, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct cfg_policy c;
        fx_cfg_policy(&c);
        c.ipv4_prefix = cases[i].v4;
        c.ipv6_prefix = cases[i].v6;
        struct policy *p = make(&c, NULL, 0);
        struct addr a = fx_addr(cases[i].addr);
        struct addr_prefix k;
        char buf[ADDR_STRLEN];
        policy_key(p, &a, &k);
        assert_string_equal(addr_prefix_format(&k, buf, sizeof(buf)), cases[i].key);
        policy_free(p);
    }
}

static void two_ipv6_addresses_in_one_64_share_a_key(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    struct policy *p = make(&c, NULL, 0);
    struct addr a = fx_addr("2001:db8:0:1::1"), b = fx_addr("2001:db8:0:1:ffff::2");
    struct addr other = fx_addr("2001:db8:0:2::1");
    struct addr_prefix ka, kb, ko;
    policy_key(p, &a, &ka);
    policy_key(p, &b, &kb);
    policy_key(p, &other, &ko);
    assert_true(addr_prefix_equal(&ka, &kb));
    assert_false(addr_prefix_equal(&ka, &ko));
    policy_free(p);
}

static void key_holding_a_whitelisted_address_narrows_to_the_address(void **state)
{
    static const struct {
        const char *wl, *addr, *key;
    } cases[] = {
        {"198.51.100.16/28", "198.51.100.23", "198.51.100.23"}, /* the /24 holds the /28 */
        {"198.51.100.16/28", "198.51.101.23", "198.51.101.0/24"},
        {"2001:db8:1:2::5", "2001:db8:1:2::bad", "2001:db8:1:2::bad"},
        {"2001:db8:1:2::5", "2001:db8:1:3::bad", "2001:db8:1:3::/64"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct cfg_policy c;
        fx_cfg_policy(&c);
        c.ipv4_prefix = 24;
        struct policy *p = make(&c, &cases[i].wl, 1);
        struct addr a = fx_addr(cases[i].addr);
        struct addr_prefix k;
        char buf[ADDR_STRLEN];
        policy_key(p, &a, &k);
        assert_string_equal(addr_prefix_format(&k, buf, sizeof(buf)), cases[i].key);
        policy_free(p);
    }
}

static void prefix_lengths_out_of_range_are_refused(void **state)
{
    static const struct {
        unsigned v4, v6;
    } bad[] = {{0, 64}, {33, 64}, {32, 31}, {32, 129}};
    for (size_t i = 0; i < N(bad); i++) {
        struct cfg_policy c;
        fx_cfg_policy(&c);
        c.ipv4_prefix = bad[i].v4;
        c.ipv6_prefix = bad[i].v6;
        errno = 0;
        assert_null(policy_new(&c, NULL));
        assert_int_equal(errno, EINVAL);
    }
}

static void ban_length_escalates_and_is_capped(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    c.bantime_s = 3600;
    c.bantime_factor = 2;
    c.bantime_max_s = 86400; /* 24h: the 6th offence (32h) is capped */
    struct policy *p = make(&c, NULL, 0);
    static const struct {
        unsigned offence;
        int64_t hours;
    } cases[] = {{0, 1}, {1, 1}, {2, 2}, {3, 4}, {4, 8}, {5, 16}, {6, 24}, {7, 24}, {1000, 24}};
    for (size_t i = 0; i < N(cases); i++)
        assert_int_equal(policy_ban_ms(p, cases[i].offence), cases[i].hours * 3600 * 1000);
    policy_free(p);
}

static void nth_offence_is_permanent_when_configured(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    c.permanent_after = 3;
    struct policy *p = make(&c, NULL, 0);
    assert_int_equal(policy_ban_ms(p, 2), 2 * 3600 * 1000);
    assert_int_equal(policy_ban_ms(p, 3), 0);
    assert_int_equal(policy_ban_ms(p, 4), 0);
    policy_free(p);
}

static void loopback_is_always_whitelisted(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    struct policy *p = make(&c, NULL, 0);
    static const char *const lo[] = {"127.0.0.1", "127.1.2.3", "::1"};
    for (size_t i = 0; i < N(lo); i++) {
        struct addr a = fx_addr(lo[i]);
        const struct policy_wl_entry *e = policy_whitelist_match(p, &a);
        assert_non_null(e);
        assert_string_equal(e->label, "loopback");
    }
    struct addr a = fx_addr("128.0.0.1");
    assert_null(policy_whitelist_match(p, &a));
    policy_free(p);
}

static void whitelist_matches_v4_and_v6_cidrs_and_says_which(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    static const char *const wl[] = {"192.0.2.0/24", "2001:db8:aa::/48"};
    struct policy *p = make(&c, wl, 2);
    struct addr_prefix peer = fx_prefix("203.0.113.9");
    assert_int_equal(policy_whitelist_add(p, &peer, "ami:pbx1"), 0);
    static const struct {
        const char *addr, *label; /* NULL: not whitelisted */
    } cases[] = {
        {"192.0.2.200", "config"}, {"192.0.3.1", NULL},         {"2001:db8:aa:1::5", "config"},
        {"2001:db8:ab::5", NULL},  {"203.0.113.9", "ami:pbx1"}, {"203.0.113.10", NULL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct addr a = fx_addr(cases[i].addr);
        const struct policy_wl_entry *e = policy_whitelist_match(p, &a);
        if (cases[i].label) {
            assert_non_null(e);
            assert_string_equal(e->label, cases[i].label);
        } else {
            assert_null(e);
        }
    }
    policy_free(p);
}

static void a_prefix_overlapping_the_whitelist_is_flagged(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    static const char *const wl[] = {"192.0.2.0/24"};
    struct policy *p = make(&c, wl, 1);
    static const struct {
        const char *prefix;
        bool overlaps;
    } cases[] = {{"192.0.2.7", true},   {"192.0.0.0/16", true}, {"192.0.3.0/24", false},
                 {"127.0.0.0/8", true}, {"0.0.0.0/0", true},    {"2001:db8::/32", false}};
    for (size_t i = 0; i < N(cases); i++) {
        struct addr_prefix q = fx_prefix(cases[i].prefix);
        assert_int_equal(policy_whitelist_overlap(p, &q) != NULL, cases[i].overlaps);
    }
    policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_weights_count_failures_not_benign_events),
        cmocka_unit_test(service_override_wins_over_event_weight_and_threshold),
        cmocka_unit_test(key_is_the_address_or_its_configured_prefix),
        cmocka_unit_test(two_ipv6_addresses_in_one_64_share_a_key),
        cmocka_unit_test(key_holding_a_whitelisted_address_narrows_to_the_address),
        cmocka_unit_test(prefix_lengths_out_of_range_are_refused),
        cmocka_unit_test(ban_length_escalates_and_is_capped),
        cmocka_unit_test(nth_offence_is_permanent_when_configured),
        cmocka_unit_test(loopback_is_always_whitelisted),
        cmocka_unit_test(whitelist_matches_v4_and_v6_cidrs_and_says_which),
        cmocka_unit_test(a_prefix_overlapping_the_whitelist_is_flagged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
