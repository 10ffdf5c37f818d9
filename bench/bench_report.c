/* How long a report takes on a big database. Prints figures; never passes or fails on time.
 *
 *   bench_report [FAILURES [BANS]]     default 10000000 failures, 100000 bans
 *   BENCH_REPORT_DB=PATH bench_report  keep the database at PATH (reused when it exists)
 *
 * Builds a database in a temporary directory through the store, as the daemon writes it, on a
 * simulated clock: FAILURES failures spread over 30 days (the default retention), from 100k
 * sources of which a few hundred do most of the work, 1000 per transaction, the history rolled
 * up every simulated hour as the daemon's housekeeping does (raw rows kept for an hour), and
 * BANS bans over the same days. Then it times `pbxguard report`'s own path (open read-only,
 * fill, render) for the last day, 3 runs, a week once, and a week that does not end at
 * midnight (UTC: whole days come from the daily roll-ups, part days from the hourly ones) once.
 * The page cache is warm (the file was just written). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "report.h"
#include "store.h"

#define DAYS 30
#define NKEYS 100000
#define NHEAVY 300
#define NACCOUNTS 5000

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The counting key of source i: mostly IPv4 addresses, one in ten an IPv6 /64. */
static void key_of(unsigned i, char *buf, size_t len)
{
    if (i % 10 == 9)
        snprintf(buf, len, "2001:db8:%x:%x::/64", i >> 16, i & 0xffff);
    else
        snprintf(buf, len, "%u.%u.%u.%u", 11 + i % 200, (i >> 8) & 0xff, i & 0xff, 1 + i % 250);
}

static unsigned pick_key(void)
{
    /* a third of all attempts come from a few hundred busy scanners */
    if (rnd() % 3 == 0)
        return (unsigned)(rnd() % NHEAVY);
    return (unsigned)(rnd() % NKEYS);
}

static void store_die(struct store *st, const char *what, int rc)
{
    fprintf(stderr, "bench_report: %s: %s (%s)\n", what, store_strerror(rc), store_errmsg(st));
    exit(1);
}

/* The daemon's housekeeping: everything older than an hour rolled up. */
static void rollup(struct store *st, int64_t now_ms)
{
    bool done = false;
    while (!done) {
        int rc = store_rollup(st, now_ms - 3600000, 4096, NULL, &done);
        if (rc < 0 || (rc = store_turn_commit(st)) < 0)
            store_die(st, "rollup", rc);
    }
}

static void build(const char *path, uint64_t nfail, uint64_t nbans, int64_t end_ms)
{
    struct store *st;
    int rc = store_open(path, NULL, &st);
    if (rc < 0)
        store_die(NULL, "open", rc);
    static const char *const services[] = {"PJSIP", "PJSIP", "PJSIP", "PJSIP", "PJSIP",
                                           "PJSIP", "PJSIP", "SIP",   "SIP",   "AMI"};
    static const int types[] = {1, 1, 1, 11, 11, 11, 12, 0, 6, 8};
    int64_t start_ms = end_ms - (int64_t)DAYS * 86400 * 1000;
    double step = (double)(end_ms - start_ms) / (double)nfail;
    double bstep = (double)(end_ms - start_ms) / (double)(nbans ? nbans : 1);
    unsigned *offences = calloc(NKEYS, sizeof(*offences));
    double t0 = now_s();
    int64_t hour = start_ms / 3600000;
    uint64_t b = 0;

    for (uint64_t i = 0; i < nfail; i++) {
        int64_t ts = start_ms + (int64_t)(step * (double)i);
        char key[64], addr[64];
        unsigned k = pick_key();
        key_of(k, key, sizeof(key));
        if (k % 10 == 9)
            snprintf(addr, sizeof(addr), "2001:db8:%x:%x::%x", k >> 16, k & 0xffff,
                     (unsigned)(rnd() % 64 + 1));
        else
            snprintf(addr, sizeof(addr), "%s", key);
        unsigned sv = (unsigned)(rnd() % 10), ty = (unsigned)(rnd() % 10);
        struct sec_event ev = {.type = (enum sec_event_type)types[ty],
                               .remote = {.port = 5060, .transport = SEC_TRANSPORT_UDP},
                               .source = "ami:pbx1"};
        snprintf(ev.service, sizeof(ev.service), "%s", services[sv]);
        struct addr_prefix kp;
        if (addr_parse(addr, strlen(addr), &ev.remote.addr) < 0 ||
            addr_prefix_parse(key, false, &kp) < 0)
            exit(1);
        if (types[ty] != 0) {
            uint64_t a = rnd() % NACCOUNTS;
            if (a < 20)
                snprintf(ev.account, sizeof(ev.account), "%s",
                         (const char *[]){"admin", "test", "100", "1000", "asterisk"}[a % 5]);
            else
                snprintf(ev.account, sizeof(ev.account), "%" PRIu64, 100 + a);
        }
        if ((rc = store_failure_add(st, &ev, &kp, 1, false, ts)) < 0)
            store_die(st, "failure", rc);
        /* The bans of the same moment. */
        while (b < nbans && start_ms + (int64_t)(bstep * (double)b) <= ts) {
            unsigned bk = pick_key();
            struct store_ban ban = {.start_ms = start_ms + (int64_t)(bstep * (double)b),
                                    .failures = 5,
                                    .event_type = 11};
            key_of(bk, key, sizeof(key));
            addr_prefix_parse(key, false, &ban.prefix);
            unsigned off = ++offences[bk];
            bool manual = rnd() % 20 == 0, permanent = off >= 6 && rnd() % 4 == 0;
            int64_t len = 3600000LL << (off - 1 < 7 ? off - 1 : 7);
            ban.reason = manual ? STORE_BAN_MANUAL : STORE_BAN_THRESHOLD;
            ban.offence = off;
            ban.expires_ms = permanent ? 0 : ban.start_ms + len;
            snprintf(ban.origin, sizeof(ban.origin), "%s", manual ? "cli:uid=0" : "ami:pbx1");
            snprintf(ban.service, sizeof(ban.service), "PJSIP");
            bool lifted = !permanent && rnd() % 30 == 0;
            if (lifted && ban.start_ms + 600000 < end_ms) {
                ban.ended_ms = ban.start_ms + 600000;
                ban.end = STORE_BAN_LIFTED;
                snprintf(ban.lifted_by, sizeof(ban.lifted_by), "cli:uid=0");
            } else if (!permanent && ban.expires_ms <= end_ms) {
                ban.ended_ms = ban.expires_ms;
                ban.end = STORE_BAN_EXPIRED;
            }
            if ((rc = store_ban_add(st, &ban, NULL)) < 0)
                store_die(st, "ban", rc);
            b++;
        }
        if (i % 1000 == 999 && (rc = store_turn_commit(st)) < 0)
            store_die(st, "commit", rc);
        if (ts / 3600000 != hour) {
            hour = ts / 3600000;
            if ((rc = store_turn_commit(st)) < 0)
                store_die(st, "commit", rc);
            rollup(st, ts);
        }
    }
    if ((rc = store_turn_commit(st)) < 0)
        store_die(st, "commit", rc);
    free(offences);
    double t1 = now_s();
    store_close(st);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(db);
    printf("built through the store: %" PRIu64 " failures (rolled up hourly), %" PRIu64
           " bans in %.1f s\n",
           nfail, b, t1 - t0);
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One report, as `pbxguard report` makes it; returns wall seconds, *ret_cpu CPU seconds (on a
 * busy machine the wall time includes waiting for a core). */
static double one_report(const char *path, int64_t end, int64_t len, enum report_format fmt,
                         uint64_t *ret_failures, double *ret_cpu)
{
    double t0 = now_s(), c0 = cpu_s();
    struct store *db;
    struct report r;
    struct store_options opt = {.flags = STORE_READ_ONLY, .busy_timeout_ms = 10000};
    int rc = store_open(path, &opt, &db);
    if (rc < 0) {
        fprintf(stderr, "bench_report: open: %s (%s)\n", store_strerror(rc), store_errmsg(NULL));
        exit(1);
    }
    if (report_init(&r, end - len, end) < 0 || report_fill(db, &r, end, 10) < 0) {
        fprintf(stderr, "bench_report: fill: %s\n", store_errmsg(db));
        exit(1);
    }
    store_close(db);
    FILE *out = fopen("/dev/null", "w");
    if (!out || report_render(&r, fmt, out) < 0)
        exit(1);
    fclose(out);
    *ret_failures = r.totals.failures;
    report_release(&r);
    *ret_cpu = cpu_s() - c0;
    return now_s() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    uint64_t nfail = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
    uint64_t nbans = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
    if (nfail == 0) {
        fprintf(stderr, "usage: bench_report [FAILURES [BANS]]\n");
        return 2;
    }
    char dir[] = "/tmp/pbxguard-bench-report-XXXXXX", path[512], wal[600], shm[600];
    int64_t end = 1795564800; /* 2026-11-25T00:00:00Z */
    /* BENCH_REPORT_DB=PATH keeps the database there and reuses it on the next run. */
    const char *keep = getenv("BENCH_REPORT_DB");
    if (keep) {
        snprintf(path, sizeof(path), "%s", keep);
        if (access(path, F_OK) < 0)
            build(path, nfail, nbans, end * 1000);
    } else {
        if (!mkdtemp(dir)) {
            perror("bench_report: mkdtemp");
            return 1;
        }
        snprintf(path, sizeof(path), "%s/pbxguard.db", dir);
        build(path, nfail, nbans, end * 1000);
    }
    struct stat stt;
    stat(path, &stt);
    printf("database: %.0f MiB\n", (double)stt.st_size / (1 << 20));

    uint64_t n = 0;
    double t[3], c[3], cpu;
    for (int i = 0; i < 3; i++)
        t[i] = one_report(path, end, 86400, REPORT_TEXT, &n, &c[i]);
    qsort(t, 3, sizeof(t[0]), cmp_double);
    qsort(c, 3, sizeof(c[0]), cmp_double);
    printf("report, last 24 h (%" PRIu64 " failures), text: median %.3f s wall, %.3f s CPU "
           "(wall runs %.3f %.3f %.3f)\n",
           n, t[1], c[1], t[0], t[1], t[2]);
    double th = one_report(path, end, 86400, REPORT_HTML, &n, &cpu);
    printf("report, last 24 h, html: %.3f s wall, %.3f s CPU\n", th, cpu);
    double tw = one_report(path, end, 7 * 86400, REPORT_TEXT, &n, &cpu);
    printf("report, last 7 days (%" PRIu64 " failures), text: %.3f s wall, %.3f s CPU\n", n, tw,
           cpu);
    /* Most periods do not start at a UTC midnight: the whole days between are read from the
     * daily roll-ups, the hours before and after from the hourly ones. */
    tw = one_report(path, end - 37380, 7 * 86400, REPORT_TEXT, &n, &cpu);
    printf("report, 7 days to 13:37 UTC, part days at both ends (%" PRIu64
           " failures), text: %.3f s wall, %.3f s CPU\n",
           n, tw, cpu);

    if (keep)
        return 0;
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(shm, sizeof(shm), "%s-shm", path);
    unlink(wal);
    unlink(shm);
    unlink(path);
    rmdir(dir);
    return 0;
}
