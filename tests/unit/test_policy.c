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

static struct policy_wl_entry entry(const char *prefix, const char *label)
{
    struct policy_wl_entry e;
    memset(&e, 0, sizeof(e));
    e.prefix = fx_prefix(prefix);
    snprintf(e.label, sizeof(e.label), "%s", label);
    return e;
}

static void every_special_range_is_protected_and_labelled(void **state)
{
    static const struct {
        const char *addr, *label; /* NULL: not protected */
        bool ignored;             /* never a real source: events ignored */
    } cases[] = {
        {"0.0.0.0", "unspecified", true},
        {"0.1.2.3", "this-network", true},
        {"127.0.0.5", "loopback", false},
        {"169.254.169.254", "link-local", true},
        {"169.255.0.1", NULL, false},
        {"224.0.0.1", "multicast", true},
        {"239.255.255.250", "multicast", true},
        {"240.0.0.1", NULL, false},
        {"255.255.255.255", "broadcast", true},
        {"255.255.255.254", NULL, false},
        {"::", "unspecified", true},
        {"::1", "loopback", false},
        {"::2", NULL, false},
        {"fe80::1", "link-local", true},
        {"febf:ffff::1", "link-local", true},
        {"fec0::1", NULL, false},
        {"ff02::1", "multicast", true},
        {"ff0e::fb", "multicast", true},
        {"::ffff:127.0.0.1", "loopback", false}, /* IPv4-mapped: parsed as IPv4 */
        {"::ffff:169.254.0.1", "link-local", true},
        {"64:ff9b::102:304", NULL, false}, /* NAT64: counted, but never grouped */
        {"2001:db8::1", NULL, false},
        {"192.0.2.1", NULL, false},
    };
    struct cfg_policy c;
    fx_cfg_policy(&c);
    struct policy *p = make(&c, NULL, 0);
    for (size_t i = 0; i < N(cases); i++) {
        struct addr a = fx_addr(cases[i].addr);
        const struct policy_wl_entry *e = policy_whitelist_match(p, &a);
        const struct policy_wl_entry *ign = policy_ignored(p, &a);
        if (!cases[i].label) {
            if (e)
                fail_msg("%s: protected as %s", cases[i].addr, e->label);
            assert_null(ign);
            continue;
        }
        if (!e)
            fail_msg("%s: not protected", cases[i].addr);
        assert_string_equal(e->label, cases[i].label);
        assert_int_equal(e->source, POLICY_SRC_BUILTIN);
        assert_true(policy_source_absolute(e->source));
        assert_int_equal(ign != NULL, cases[i].ignored);
    }
    policy_free(p);
}

static void a_key_never_holds_a_special_range_and_shared_ranges_are_never_grouped(void **state)
{
    static const struct {
        unsigned v4;
        const char *addr, *key;
    } cases[] = {
        {8, "1.2.3.4", "1.0.0.0/8"},
        {8, "126.1.2.3", "126.0.0.0/8"},
        {1, "1.2.3.4", "1.2.3.4"},         /* 0.0.0.0/1 holds 0.0.0.0/8 and loopback */
        {1, "200.1.2.3", "200.1.2.3"},     /* 128.0.0.0/1 holds multicast and broadcast */
        {16, "169.1.2.3", "169.1.0.0/16"}, /* next to 169.254/16, not holding it */
        {32, "::2", "::2"},                /* ::/64 holds :: and ::1 */
        {32, "::1.2.3.4", "::1.2.3.4"},    /* IPv4-compatible: inside ::/64 too */
        {32, "64:ff9b::102:304", "64:ff9b::102:304"},
        {32, "64:ff9b:1::5", "64:ff9b:1::5"},
        {32, "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136:e378:8000:63bf:3fff:fdd2"},
        {32, "2001:db8:1:2::3", "2001:db8:1:2::/64"},
        {32, "2002:c000:204::1", "2002:c000:204::/64"}, /* 6to4: a site's own /48 */
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct cfg_policy c;
        fx_cfg_policy(&c);
        c.ipv4_prefix = cases[i].v4;
        struct policy *p = make(&c, NULL, 0);
        struct addr a = fx_addr(cases[i].addr);
        struct addr_prefix k;
        char buf[ADDR_STRLEN];
        policy_key(p, &a, &k);
        assert_string_equal(addr_prefix_format(&k, buf, sizeof(buf)), cases[i].key);
        policy_free(p);
    }
}

static void a_key_holding_the_host_narrows_until_the_host_lets_go(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    struct policy *p = make(&c, NULL, 0);
    struct addr neighbour = fx_addr("2001:db8:1::20");
    struct addr_prefix k;
    char buf[ADDR_STRLEN];
    struct policy_wl_entry own[] = {entry("2001:db8:1::1", "own address on eth0"),
                                    entry("192.0.2.1", "own address on eth0")};
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_HOST, own, 2), 0);
    policy_key(p, &neighbour, &k);
    assert_string_equal(addr_prefix_format(&k, buf, sizeof(buf)), "2001:db8:1::20");
    const struct policy_wl_entry *e = policy_whitelist_match(p, &own[0].prefix.addr);
    assert_non_null(e);
    assert_string_equal(e->label, "own address on eth0");
    assert_int_equal(e->source, POLICY_SRC_HOST);
    /* The address is gone from the interface: the /64 is an ordinary key again. */
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_HOST, own + 1, 1), 0);
    policy_key(p, &neighbour, &k);
    assert_string_equal(addr_prefix_format(&k, buf, sizeof(buf)), "2001:db8:1::/64");
    assert_null(policy_whitelist_match(p, &own[0].prefix.addr));
    policy_free(p);
}

static void replacing_one_source_leaves_the_others(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    static const char *const wl[] = {"10.0.0.0/8"};
    struct policy *p = make(&c, wl, 1);
    struct policy_wl_entry gw = entry("198.51.100.1", "gateway on eth0");
    struct policy_wl_entry res[] = {entry("198.51.100.53", "resolver"),
                                    entry("2001:db8::53", "resolver")};
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_GATEWAY, &gw, 1), 0);
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_RESOLVER, res, 2), 0);
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_RESOLVER, res + 1, 1), 0);
    unsigned n, count[POLICY_SRC_COUNT] = {0};
    const struct policy_wl_entry *all = policy_protect_entries(p, &n);
    for (unsigned i = 0; i < n; i++)
        count[all[i].source]++;
    assert_int_equal(count[POLICY_SRC_CONFIG], 1);
    assert_int_equal(count[POLICY_SRC_GATEWAY], 1);
    assert_int_equal(count[POLICY_SRC_RESOLVER], 1);
    struct addr gone = fx_addr("198.51.100.53");
    assert_null(policy_whitelist_match(p, &gone));
    /* The built-in ranges and the configuration are nobody's to replace. */
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_BUILTIN, &gw, 1), -EINVAL);
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_CONFIG, &gw, 1), -EINVAL);
    /* A reload's new policy carries what was learned. */
    struct policy *q = make(&c, wl, 1);
    assert_int_equal(policy_protect_copy(q, p, POLICY_SRC_GATEWAY), 0);
    assert_non_null(policy_whitelist_match(q, &gw.prefix.addr));
    assert_string_equal(policy_whitelist_match(q, &gw.prefix.addr)->label, "gateway on eth0");
    policy_free(q);
    policy_free(p);
}

static void ban_check_applies_the_absolute_rules_whatever_force_says(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    static const char *const wl[] = {"192.0.2.0/24"};
    struct policy *p = make(&c, wl, 1);
    struct policy_wl_entry own = entry("2001:db8:1::1", "own address on eth0");
    struct policy_wl_entry ami = entry("203.0.113.9", "AMI peer ami:pbx1");
    struct policy_wl_entry gw = entry("198.51.100.1", "gateway on eth0");
    struct policy_wl_entry res = entry("198.51.100.53", "resolver");
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_HOST, &own, 1), 0);
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_AMI, &ami, 1), 0);
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_GATEWAY, &gw, 1), 0);
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_RESOLVER, &res, 1), 0);
    static const struct {
        const char *prefix;
        bool force;
        enum policy_ban_rule rule;
        const char *label; /* of the entry named, or NULL */
    } cases[] = {
        {"127.0.0.0/8", true, POLICY_BAN_PROTECTED, "loopback"},
        {"127.0.0.1", true, POLICY_BAN_PROTECTED, "loopback"},
        {"0.0.0.0/1", true, POLICY_BAN_TOO_WIDE, NULL},
        {"128.0.0.0/1", true, POLICY_BAN_TOO_WIDE, NULL},
        {"10.0.0.0/7", true, POLICY_BAN_TOO_WIDE, NULL},
        {"10.0.0.0/8", false, POLICY_BAN_OK, NULL},
        {"0.0.0.0/8", true, POLICY_BAN_PROTECTED, "this-network"},
        {"0.0.0.0/16", true, POLICY_BAN_PROTECTED, "this-network"},
        {"0.0.0.0", true, POLICY_BAN_PROTECTED, "unspecified"},
        {"255.255.255.255", true, POLICY_BAN_PROTECTED, "broadcast"},
        {"224.0.0.0/8", true, POLICY_BAN_PROTECTED, "multicast"},
        {"169.254.169.254", true, POLICY_BAN_PROTECTED, "link-local"},
        {"::", true, POLICY_BAN_PROTECTED, "unspecified"},
        {"::/16", true, POLICY_BAN_PROTECTED, "unspecified"},
        {"::1", true, POLICY_BAN_PROTECTED, "loopback"},
        {"fe80::/64", true, POLICY_BAN_PROTECTED, "link-local"},
        {"fe80::1", true, POLICY_BAN_PROTECTED, "link-local"},
        {"ff02::1", true, POLICY_BAN_PROTECTED, "multicast"},
        {"2000::/15", true, POLICY_BAN_TOO_WIDE, NULL},
        {"2000::/16", false, POLICY_BAN_OK, NULL}, /* holds Teredo: that is no protection */
        {"2001:db8:1::1", true, POLICY_BAN_PROTECTED, "own address on eth0"},
        {"2001:db8:1::/64", true, POLICY_BAN_PROTECTED, "own address on eth0"},
        {"2001:db8:1::2", true, POLICY_BAN_OK, NULL},
        {"203.0.113.0/24", true, POLICY_BAN_PROTECTED, "AMI peer ami:pbx1"},
        {"192.0.2.7", false, POLICY_BAN_WHITELISTED, "config"},
        {"192.0.2.7", true, POLICY_BAN_OK, NULL},
        {"198.51.100.1", false, POLICY_BAN_WHITELISTED, "gateway on eth0"},
        {"198.51.100.0/24", true, POLICY_BAN_OK, NULL},
        {"198.51.100.53", false, POLICY_BAN_WHITELISTED, "resolver"},
        {"198.51.100.53", true, POLICY_BAN_OK, NULL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct addr_prefix q = fx_prefix(cases[i].prefix);
        const struct policy_wl_entry *e = (const void *)1;
        enum policy_ban_rule r = policy_ban_check(p, &q, cases[i].force, &e);
        if (r != cases[i].rule)
            fail_msg("%s%s: rule %s, expected %s", cases[i].prefix,
                     cases[i].force ? " --force" : "", policy_ban_rule_name(r),
                     policy_ban_rule_name(cases[i].rule));
        if (cases[i].label) {
            assert_non_null(e);
            assert_string_equal(e->label, cases[i].label);
        } else {
            assert_null(e);
        }
    }
    policy_free(p);
}

static void the_widest_ban_is_configurable_but_never_wider_than_a_key(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    c.ipv4_prefix = 24;
    struct policy *p = make(&c, NULL, 0);
    assert_int_equal(policy_set_min_prefix(p, 16, 32), 0);
    struct addr_prefix q = fx_prefix("10.0.0.0/15"), r = fx_prefix("10.0.0.0/16");
    assert_int_equal(policy_ban_check(p, &q, true, NULL), POLICY_BAN_TOO_WIDE);
    assert_int_equal(policy_ban_check(p, &r, true, NULL), POLICY_BAN_OK);
    q = fx_prefix("2001:db8::/31");
    assert_int_equal(policy_ban_check(p, &q, true, NULL), POLICY_BAN_TOO_WIDE);
    /* A limit narrower than the counting key would refuse every threshold ban. */
    assert_int_equal(policy_set_min_prefix(p, 25, 32), -EINVAL);
    assert_int_equal(policy_set_min_prefix(p, 8, 65), -EINVAL);
    assert_int_equal(policy_set_min_prefix(p, 0, 16), -EINVAL);
    policy_free(p);
}

static void a_refusal_names_the_rule_and_how_to_change_it(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    static const char *const wl[] = {"192.0.2.0/24"};
    struct policy *p = make(&c, wl, 1);
    struct policy_wl_entry own = entry("2001:db8:1::1", "own address on eth0");
    struct policy_wl_entry gw = entry("198.51.100.1", "gateway on eth0");
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_HOST, &own, 1), 0);
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_GATEWAY, &gw, 1), 0);
    static const struct {
        const char *prefix, *text;
    } cases[] = {
        {"0.0.0.0/1", "0.0.0.0/1 is wider than /8, the widest ban allowed: nobody may ban it, not "
                      "even with --force ([protect] min_prefix4 sets the limit)"},
        {"2000::/8", "2000::/8 is wider than /16, the widest ban allowed: nobody may ban it, not "
                     "even with --force ([protect] min_prefix6 sets the limit)"},
        {"127.0.0.0/8", "127.0.0.0/8 is protected (loopback): never banned, not even with --force; "
                        "this range is built in and cannot be turned off"},
        {"ff02::1", "ff02::1 lies in ff00::/8 (multicast): never banned, not even with --force; "
                    "this range is built in and cannot be turned off"},
        {"2001:db8:1::/64",
         "2001:db8:1::/64 holds 2001:db8:1::1 (own address on eth0): never banned, not even with "
         "--force; [protect] own_addresses = no turns this protection off"},
        {"192.0.2.10",
         "192.0.2.10 is whitelisted (overlaps 192.0.2.0/24, config); use --force to ban it anyway"},
        {"198.51.100.1",
         "198.51.100.1 is whitelisted (overlaps 198.51.100.1, gateway on eth0); use "
         "--force to ban it anyway, or [protect] gateways = no"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct addr_prefix q = fx_prefix(cases[i].prefix);
        const struct policy_wl_entry *e;
        char buf[512];
        enum policy_ban_rule r = policy_ban_check(p, &q, false, &e);
        assert_string_equal(policy_ban_refusal(p, &q, r, e, buf, sizeof(buf)), cases[i].text);
    }
    policy_free(p);
}

static void trusted_threshold_is_four_times_maxretry_unless_set(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    c.trust_window_s = 3600;
    c.nservices = 1;
    snprintf(c.services[0].service, sizeof(c.services[0].service), "AMI");
    c.services[0].maxretry = 3;
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++)
        c.services[0].weight[t] = -1;
    struct policy *p = make(&c, NULL, 0);
    assert_int_equal(policy_trusted_threshold(p, "PJSIP"), 20);
    assert_int_equal(policy_trusted_threshold(p, "AMI"), 12);
    assert_int_equal(policy_trust_window_ms(p), 3600 * 1000);
    policy_free(p);
    c.trusted_maxretry = 8;
    p = make(&c, NULL, 0);
    assert_int_equal(policy_trusted_threshold(p, "PJSIP"), 8);
    policy_free(p);
    c.trusted_maxretry = 2; /* never below the ordinary threshold */
    p = make(&c, NULL, 0);
    assert_int_equal(policy_trusted_threshold(p, "PJSIP"), 5);
    policy_free(p);
}

static void a_learned_trunk_is_absolute_and_goes_when_asterisk_drops_it(void **state)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    struct policy *p = make(&c, NULL, 0);
    struct policy_wl_entry trunks[] = {
        entry("192.0.2.50", "pjsip:identify/carrier1 (ami:pbx1)"),
        entry("2001:db8:50::1", "pjsip:registration/carrier2 sip.carrier2.example (ami:pbx1)")};
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_TRUNK, trunks, 2), 0);
    assert_string_equal(policy_source_name(POLICY_SRC_TRUNK), "trunk");
    assert_true(policy_source_absolute(POLICY_SRC_TRUNK));
    struct addr a = fx_addr("192.0.2.50");
    const struct policy_wl_entry *m = policy_whitelist_match(p, &a);
    assert_non_null(m);
    assert_int_equal(m->source, POLICY_SRC_TRUNK);
    assert_string_equal(m->label, "pjsip:identify/carrier1 (ami:pbx1)");
    /* The label is long enough for a host name's. */
    struct addr b = fx_addr("2001:db8:50::1");
    assert_string_equal(policy_whitelist_match(p, &b)->label,
                        "pjsip:registration/carrier2 sip.carrier2.example (ami:pbx1)");
    /* The /64 around it narrows; nobody bans it, not even with --force. */
    struct addr_prefix k;
    struct addr nb = fx_addr("2001:db8:50::66");
    policy_key(p, &nb, &k);
    assert_int_equal(k.len, 128);
    struct addr_prefix net = fx_prefix("192.0.2.0/24");
    const struct policy_wl_entry *why = NULL;
    assert_int_equal(policy_ban_check(p, &net, true, &why), POLICY_BAN_PROTECTED);
    assert_non_null(why);
    char buf[512];
    assert_non_null(strstr(policy_ban_refusal(p, &net, POLICY_BAN_PROTECTED, why, buf, sizeof(buf)),
                           "learn_trust = no"));
    /* Asterisk no longer reports the first one: bannable again. */
    assert_int_equal(policy_protect_replace(p, POLICY_SRC_TRUNK, trunks + 1, 1), 0);
    assert_null(policy_whitelist_match(p, &a));
    assert_int_equal(policy_ban_check(p, &net, false, NULL), POLICY_BAN_OK);
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
        cmocka_unit_test(every_special_range_is_protected_and_labelled),
        cmocka_unit_test(a_key_never_holds_a_special_range_and_shared_ranges_are_never_grouped),
        cmocka_unit_test(a_key_holding_the_host_narrows_until_the_host_lets_go),
        cmocka_unit_test(replacing_one_source_leaves_the_others),
        cmocka_unit_test(ban_check_applies_the_absolute_rules_whatever_force_says),
        cmocka_unit_test(the_widest_ban_is_configurable_but_never_wider_than_a_key),
        cmocka_unit_test(a_refusal_names_the_rule_and_how_to_change_it),
        cmocka_unit_test(trusted_threshold_is_four_times_maxretry_unless_set),
        cmocka_unit_test(a_learned_trunk_is_absolute_and_goes_when_asterisk_drops_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
