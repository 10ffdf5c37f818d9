/* The runtime allowlist: its bookkeeping (bound, replace, expiry) and the policy's index of its
 * prefixes, checked against a plain walk of the same entries. */
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

#include "allowlist.h"
#include "policy.h"
#include "store_fixtures.h"

static struct store_allow entry(const char *prefix, int64_t added, int64_t expires)
{
    struct store_allow e = {.prefix = fx_prefix(prefix), .added_ms = added, .expires_ms = expires};
    snprintf(e.added_by, sizeof(e.added_by), "cli:uid=0");
    return e;
}

static void a_full_list_refuses_more_but_replaces_an_entry(void **state)
{
    struct allowlist *al = allowlist_new(2);
    struct store_allow a = entry("203.0.113.7", 1000, 0), b = entry("198.51.100.0/24", 1000, 0);
    bool replaced = true;
    assert_int_equal(allowlist_add(al, &a, &replaced), 0);
    assert_false(replaced);
    assert_int_equal(allowlist_add(al, &b, NULL), 0);
    struct store_allow c = entry("192.0.2.1", 1000, 0);
    assert_int_equal(allowlist_add(al, &c, NULL), -ENOSPC);
    /* The same prefix again is a new reason and expiry, not a new entry. */
    struct store_allow a2 = entry("203.0.113.7", 2000, 9000);
    snprintf(a2.reason, sizeof(a2.reason), "again");
    assert_int_equal(allowlist_add(al, &a2, &replaced), 0);
    assert_true(replaced);
    unsigned n;
    allowlist_entries(al, &n);
    assert_int_equal(n, 2);
    const struct store_allow *f = allowlist_find(al, &a.prefix);
    assert_non_null(f);
    assert_string_equal(f->reason, "again");
    assert_int_equal(f->expires_ms, 9000);
    assert_int_equal(allowlist_remove(al, &b.prefix), 0);
    assert_int_equal(allowlist_remove(al, &b.prefix), -ENOENT);
    assert_int_equal(allowlist_add(al, &c, NULL), 0);
    allowlist_free(al);
}

static void an_expiry_must_come_after_the_entry_was_added(void **state)
{
    struct allowlist *al = allowlist_new(4);
    struct store_allow e = entry("203.0.113.7", 5000, 5000);
    assert_int_equal(allowlist_add(al, &e, NULL), -EINVAL);
    e.expires_ms = 4000;
    assert_int_equal(allowlist_add(al, &e, NULL), -EINVAL);
    allowlist_free(al);
}

static int expired_count;
static void count_expired(void *data, const struct store_allow *e)
{
    expired_count++;
    assert_string_equal(data, "ctx");
}

static void entries_expire_when_due_and_not_before(void **state)
{
    struct allowlist *al = allowlist_new(8);
    struct store_allow a = entry("203.0.113.1", 0, 3000), b = entry("203.0.113.2", 0, 0),
                       c = entry("203.0.113.3", 0, 1000);
    allowlist_add(al, &a, NULL);
    allowlist_add(al, &b, NULL);
    allowlist_add(al, &c, NULL);
    assert_int_equal(allowlist_next_expiry(al), 1000);
    expired_count = 0;
    assert_int_equal(allowlist_expire(al, 999, count_expired, "ctx"), 0);
    assert_int_equal(allowlist_expire(al, 1000, count_expired, "ctx"), 1);
    assert_int_equal(expired_count, 1);
    assert_null(allowlist_find(al, &c.prefix));
    assert_int_equal(allowlist_next_expiry(al), 3000);
    assert_int_equal(allowlist_expire(al, 100000, count_expired, "ctx"), 1);
    assert_int_equal(allowlist_next_expiry(al), 0); /* b never expires */
    assert_non_null(allowlist_find(al, &b.prefix));
    allowlist_free(al);
}

static void the_narrowest_entry_holding_an_address_is_shown(void **state)
{
    struct allowlist *al = allowlist_new(8);
    struct store_allow a = entry("203.0.113.0/24", 0, 0), b = entry("203.0.113.128/25", 0, 0);
    allowlist_add(al, &a, NULL);
    allowlist_add(al, &b, NULL);
    struct addr x = fx_addr("203.0.113.200"), y = fx_addr("203.0.113.1"), z = fx_addr("192.0.2.1");
    assert_int_equal(allowlist_holding(al, &x)->prefix.len, 25);
    assert_int_equal(allowlist_holding(al, &y)->prefix.len, 24);
    assert_null(allowlist_holding(al, &z));
    allowlist_free(al);
}

static struct policy *policy_default(void)
{
    struct cfg_policy c;
    fx_cfg_policy(&c);
    struct policy *p = policy_new(&c, NULL);
    assert_non_null(p);
    return p;
}

static void allowed_prefixes_protect_like_the_whitelist_but_yield_to_force(void **state)
{
    struct policy *p = policy_default();
    struct addr_prefix a = fx_prefix("203.0.113.0/24");
    assert_int_equal(policy_protect_add(p, POLICY_SRC_ALLOW, &a, "allowlist"), 0);
    struct addr x = fx_addr("203.0.113.9");
    const struct policy_wl_entry *e = policy_whitelist_match(p, &x);
    assert_non_null(e);
    assert_int_equal(e->source, POLICY_SRC_ALLOW);
    struct addr_prefix one = fx_prefix("203.0.113.9");
    assert_int_equal(policy_ban_check(p, &one, false, NULL), POLICY_BAN_WHITELISTED);
    assert_int_equal(policy_ban_check(p, &one, true, NULL), POLICY_BAN_OK);
    struct addr_prefix wide = fx_prefix("203.0.0.0/16");
    assert_int_equal(policy_ban_check(p, &wide, false, NULL), POLICY_BAN_WHITELISTED);
    assert_string_equal(policy_source_name(POLICY_SRC_ALLOW), "allow");
    assert_false(policy_source_absolute(POLICY_SRC_ALLOW));
    /* Not twice; removed once. */
    assert_int_equal(policy_protect_add(p, POLICY_SRC_ALLOW, &a, "allowlist"), 0);
    unsigned n;
    policy_allow_entries(p, &n);
    assert_int_equal(n, 1);
    assert_int_equal(policy_protect_remove(p, POLICY_SRC_ALLOW, &a), 0);
    assert_int_equal(policy_protect_remove(p, POLICY_SRC_ALLOW, &a), -ENOENT);
    assert_null(policy_whitelist_match(p, &x));
    assert_int_equal(policy_protect_remove(p, POLICY_SRC_CONFIG, &a), -EINVAL);
    policy_free(p);
}

static void a_reload_copies_the_allowed_prefixes(void **state)
{
    struct policy *p = policy_default(), *q = policy_default();
    struct addr_prefix a = fx_prefix("2001:db8:1::/48");
    policy_protect_add(p, POLICY_SRC_ALLOW, &a, "allowlist");
    assert_int_equal(policy_protect_copy(q, p, POLICY_SRC_ALLOW), 0);
    struct addr x = fx_addr("2001:db8:1::5");
    assert_non_null(policy_whitelist_match(q, &x));
    policy_free(p);
    policy_free(q);
}

/* A deterministic generator, so a failure replays. */
static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return rnd_state >> 8;
}

static void random_prefix(struct addr_prefix *ret, bool v6)
{
    struct addr a = {.family = v6 ? AF_INET6 : AF_INET};
    /* A small space, so entries nest and overlap often. */
    if (v6) {
        a.bytes[0] = 0x20;
        a.bytes[1] = 0x01;
        a.bytes[2] = 0x0d;
        a.bytes[3] = 0xb8;
        a.bytes[4] = (uint8_t)(rnd() % 4);
        a.bytes[15] = (uint8_t)(rnd() % 8);
    } else {
        a.bytes[0] = 203;
        a.bytes[1] = 0;
        a.bytes[2] = (uint8_t)(rnd() % 4);
        a.bytes[3] = (uint8_t)rnd();
    }
    static const unsigned lens4[] = {16, 22, 24, 28, 30, 32}, lens6[] = {32, 40, 48, 64, 120, 128};
    unsigned len = v6 ? lens6[rnd() % 6] : lens4[rnd() % 6];
    addr_prefix_of(&a, len, ret);
}

static bool overlaps(const struct addr_prefix *a, const struct addr_prefix *b)
{
    return addr_prefix_covers(a, b) || addr_prefix_covers(b, a);
}

/* The index answers what a walk of the same entries answers, for matches and overlaps, through
 * additions and removals. */
static void the_index_agrees_with_a_walk(void **state)
{
    struct policy *p = policy_default();
    enum { N = 400 };
    struct addr_prefix in[N];
    unsigned n = 0;
    for (int round = 0; round < 3000; round++) {
        bool v6 = rnd() % 2;
        struct addr_prefix q;
        random_prefix(&q, v6);
        unsigned op = rnd() % 10;
        if (op < 3 && n < N) {
            bool dup = false;
            for (unsigned i = 0; i < n; i++)
                dup |= addr_prefix_equal(&in[i], &q);
            assert_int_equal(policy_protect_add(p, POLICY_SRC_ALLOW, &q, "allowlist"), 0);
            if (!dup)
                in[n++] = q;
        } else if (op < 4 && n) {
            unsigned k = rnd() % n;
            assert_int_equal(policy_protect_remove(p, POLICY_SRC_ALLOW, &in[k]), 0);
            in[k] = in[--n];
        } else {
            bool want_overlap = false, want_match = false;
            struct addr_prefix host;
            addr_prefix_of(&q.addr, addr_max_len(&q.addr), &host);
            for (unsigned i = 0; i < n; i++) {
                want_overlap |= overlaps(&in[i], &q);
                want_match |= addr_prefix_covers(&in[i], &host);
            }
            const struct policy_wl_entry *o = policy_whitelist_overlap(p, &q);
            const struct policy_wl_entry *m = policy_whitelist_match(p, &q.addr);
            assert_int_equal(o != NULL, want_overlap);
            assert_int_equal(m != NULL, want_match);
            if (o)
                assert_true(overlaps(&o->prefix, &q));
            if (m)
                assert_true(addr_prefix_covers(&m->prefix, &host));
        }
    }
    unsigned have;
    policy_allow_entries(p, &have);
    assert_int_equal(have, n);
    policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_full_list_refuses_more_but_replaces_an_entry),
        cmocka_unit_test(an_expiry_must_come_after_the_entry_was_added),
        cmocka_unit_test(entries_expire_when_due_and_not_before),
        cmocka_unit_test(the_narrowest_entry_holding_an_address_is_shown),
        cmocka_unit_test(allowed_prefixes_protect_like_the_whitelist_but_yield_to_force),
        cmocka_unit_test(a_reload_copies_the_allowed_prefixes),
        cmocka_unit_test(the_index_agrees_with_a_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
