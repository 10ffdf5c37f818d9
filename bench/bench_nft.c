/* bench_nft: how fast the nftables layer installs bans, through the real library and kernel.
 * It moves itself into a new network namespace first, so the host's ruleset is never touched.
 *
 *   bench_nft [-n N]... [-s SINGLE] [-r RUNS]
 *
 * Prints, per N: the time to install N IPv4 bans (each with its own timeout) in one commit
 * (chunked into transactions by the library), wall and CPU (the kernel's work is done in our
 * sendto(), so it is in our system time), and for N up to 100k the same N again over the installed
 * ones (each replaced); and for SINGLE bans, each in its own commit, the
 * median and p99 latency. Figures only: nothing here passes or fails on time. */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nftset.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The i-th distinct address of 10.0.0.0/8 (enough for 16M bans). */
static void nth_addr(unsigned long i, struct addr_prefix *p)
{
    memset(p, 0, sizeof(*p));
    p->addr.family = AF_INET;
    p->addr.bytes[0] = 10;
    p->addr.bytes[1] = (uint8_t)(i >> 16);
    p->addr.bytes[2] = (uint8_t)(i >> 8);
    p->addr.bytes[3] = (uint8_t)i;
    p->len = 32;
}

static int fresh_table(struct nftset *s)
{
    enum nftset_setup_action a;
    int r = nftset_teardown(s);
    /* The kernel frees a big old table's elements in the background; let that finish so it
     * does not run during the next measurement. */
    sleep(2);
    if (r == 0)
        r = nftset_setup(s, &a);
    if (r < 0)
        fprintf(stderr, "bench_nft: setup: %s\n", nftset_strerror(r));
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_batch(struct nftset *s, unsigned long n)
{
    struct addr_prefix p;
    if (fresh_table(s) < 0)
        return -1;
    double w0 = now_s(), c0 = cpu_s();
    for (unsigned long i = 0; i < n; i++) {
        nth_addr(i, &p);
        if (nftset_queue_ban(s, &p, 3600000 + i % 1000) < 0)
            return -1;
    }
    long failed = nftset_commit(s, NULL, NULL);
    double wall = now_s() - w0, cpu = cpu_s() - c0;
    printf("batched   N=%-8lu wall %8.3f s   cpu %8.3f s   %10.0f bans/s   failed %ld\n", n, wall,
           cpu, (double)n / wall, failed);
    return failed == 0 ? 0 : -1;
}

/* The same N again over the installed ones: each exists, so each is replaced (delete + add) to
 * take its new timeout. What a restore costs when the table was adopted with its bans. */
static int bench_rebatch(struct nftset *s, unsigned long n)
{
    struct addr_prefix p;
    for (unsigned long i = 0; i < n; i++) {
        nth_addr(i, &p);
        if (nftset_queue_ban(s, &p, 7200000 + i % 1000) < 0)
            return -1;
    }
    double w0 = now_s(), c0 = cpu_s();
    long failed = nftset_commit(s, NULL, NULL);
    double wall = now_s() - w0, cpu = cpu_s() - c0;
    printf("re-banned N=%-8lu wall %8.3f s   cpu %8.3f s   %10.0f bans/s   failed %ld  "
           "(all existed: each replaced)\n",
           n, wall, cpu, (double)n / wall, failed);
    return failed == 0 ? 0 : -1;
}

static int bench_single(struct nftset *s, unsigned long n)
{
    struct addr_prefix p;
    double *lat = malloc(n * sizeof(*lat));
    long failed = 0;
    if (!lat || fresh_table(s) < 0) {
        free(lat);
        return -1;
    }
    for (unsigned long i = 0; i < n; i++) {
        nth_addr(i, &p);
        double t0 = now_s();
        nftset_queue_ban(s, &p, 3600000);
        failed += nftset_commit(s, NULL, NULL) != 0;
        lat[i] = now_s() - t0;
    }
    qsort(lat, n, sizeof(*lat), cmp_double);
    printf("single    N=%-8lu median %.4f ms   p99 %.4f ms   max %.4f ms   failed %ld\n", n,
           lat[n / 2] * 1e3, lat[(size_t)((double)n * 0.99)] * 1e3, lat[n - 1] * 1e3, failed);
    free(lat);
    return failed == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    unsigned long sizes[8];
    unsigned nsizes = 0;
    unsigned long single = 10000;
    int runs = 1;
    struct cfg_nftables cfg = {.priority = -10};

    for (int c; (c = getopt(argc, argv, "n:s:r:")) != -1;) {
        switch (c) {
        case 'n':
            if (nsizes < 8)
                sizes[nsizes++] = strtoul(optarg, NULL, 10);
            break;
        case 's':
            single = strtoul(optarg, NULL, 10);
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: bench_nft [-n N]... [-s SINGLE] [-r RUNS]\n");
            return 2;
        }
    }
    if (nsizes == 0) {
        sizes[nsizes++] = 1000;
        sizes[nsizes++] = 100000;
        sizes[nsizes++] = 1000000;
    }
    if (unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr, "bench_nft: needs root for a private network namespace: %s\n",
                strerror(errno));
        return 77;
    }
    snprintf(cfg.table, sizeof(cfg.table), "pbxguard");
    snprintf(cfg.set4, sizeof(cfg.set4), "banned4");
    snprintf(cfg.set6, sizeof(cfg.set6), "banned6");
    snprintf(cfg.chain, sizeof(cfg.chain), "input");
    struct nftset *s = nftset_open(&cfg);
    if (!s) {
        fprintf(stderr, "bench_nft: %s\n", nftset_strerror(errno));
        return 1;
    }
    if (fresh_table(s) < 0)
        return 1;
    printf("# bench_nft: libnftnl over netlink, private netns, sets: %s, %ld CPUs online, "
           "%d run(s)\n",
           nftset_mode(s), sysconf(_SC_NPROCESSORS_ONLN), runs);
    int rc = 0;
    for (int r = 0; r < runs; r++) {
        for (unsigned i = 0; i < nsizes; i++) {
            rc |= bench_batch(s, sizes[i]);
            if (sizes[i] <= 100000)
                rc |= bench_rebatch(s, sizes[i]);
        }
        if (single)
            rc |= bench_single(s, single);
    }
    nftset_teardown(s);
    nftset_free(s);
    return rc ? 1 : 0;
}
