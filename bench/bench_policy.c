/* The protected-prefix lookups every event makes (policy_whitelist_match() and policy_key()),
 * with the runtime allowlist empty, full (2048 entries, the index), and the same number of
 * [whitelist] entries for comparison (walked one by one). Prints figures; never passes or
 * fails on time.
 *
 *   bench_policy [LOOKUPS]      (default 2000000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "ctl_proto.h"
#include "policy.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct cfg_policy cfg(void)
{
    struct cfg_policy c = {.maxretry = 5,
                           .findtime_s = 600,
                           .bantime_s = 3600,
                           .bantime_max_s = 86400,
                           .bantime_factor = 1,
                           .ipv4_prefix = 32,
                           .ipv6_prefix = 64};
    return c;
}

/* Entries spread over 100.64.0.0/10 in a mix of lengths, as an admin's list might be. */
static void entry(unsigned i, struct addr_prefix *ret)
{
    static const unsigned lens[] = {32, 32, 32, 29, 28, 24};
    struct addr a = {.family = AF_INET};
    uint32_t v = 0x64400000u + i * 2654435761u % 0x400000u;
    a.bytes[0] = (uint8_t)(v >> 24);
    a.bytes[1] = (uint8_t)(v >> 16);
    a.bytes[2] = (uint8_t)(v >> 8);
    a.bytes[3] = (uint8_t)v;
    addr_prefix_of(&a, lens[i % 6], ret);
}

static double run(struct policy *p, unsigned n, unsigned *ret_hits)
{
    unsigned hits = 0;
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++) {
        /* Sources across the Internet, a few of them inside the list's range. */
        uint32_t v = i * 2246822519u;
        struct addr a = {
            .family = AF_INET,
            .bytes = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v}};
        if (i % 16 == 0)
            a.bytes[0] = 100, a.bytes[1] = (uint8_t)(64 + (a.bytes[1] & 63));
        struct addr_prefix key;
        hits += policy_whitelist_match(p, &a) != NULL;
        policy_key(p, &a, &key);
    }
    *ret_hits = hits;
    return (now_s() - t0) / n * 1e9;
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 2000000;
    struct cfg_policy c = cfg();
    struct addr_prefix *list = calloc(CTL_ALLOW_MAX, sizeof(*list));
    for (unsigned i = 0; i < CTL_ALLOW_MAX; i++)
        entry(i, &list[i]);

    struct policy *empty = policy_new(&c, NULL);
    struct policy *allow = policy_new(&c, NULL);
    for (unsigned i = 0; i < CTL_ALLOW_MAX; i++)
        policy_protect_add(allow, POLICY_SRC_ALLOW, &list[i], "allowlist");
    struct cfg_whitelist wl = {.prefixes = list, .n = CTL_ALLOW_MAX};
    struct policy *linear = policy_new(&c, &wl);
    if (!empty || !allow || !linear)
        return 1;

    unsigned hits;
    printf("lookups per event: policy_whitelist_match() + policy_key(), %u sources\n", n);
    double ns = run(empty, n, &hits);
    printf("  allowlist empty                      %8.1f ns/event  (%u protected)\n", ns, hits);
    ns = run(allow, n, &hits);
    printf("  allowlist of %u (sorted index)     %8.1f ns/event  (%u protected)\n", CTL_ALLOW_MAX,
           ns, hits);
    ns = run(linear, n / 20, &hits);
    printf("  [whitelist] of %u (walked)         %8.1f ns/event  (%u protected)\n", CTL_ALLOW_MAX,
           ns, hits);
    policy_free(empty);
    policy_free(allow);
    policy_free(linear);
    free(list);
    return 0;
}
