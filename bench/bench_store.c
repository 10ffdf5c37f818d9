/* Store + policy benchmark. Prints figures; never passes or fails on time.
 *
 *   bench_store [DIR] [BIG_ROWS]
 *
 * DIR (default /var/tmp) holds the scratch databases, deleted afterwards. BIG_ROWS (default
 * 10000000) is the size of the largest table for the window-count figure. */
#include <errno.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "judge.h"
#include "policy.h"
#include "store.h"

#define TURN 1000
#define T0 1700000000000LL

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This process's CPU time: on a busy machine the wall time also counts the waits for a core. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long max_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void unlink_db(const char *db)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[600];
        snprintf(p, sizeof(p), "%s%s", db, suffix[i]);
        unlink(p);
    }
}

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_store: %s: %s (%s)\n", what, store_strerror(r), store_errmsg(NULL));
    exit(1);
}

/* The daemon's own defaults: the benchmark measures what a stock install runs. */
static void cfg_defaults(struct cfg_policy *c)
{
    struct config full;
    config_defaults(&full);
    *c = full.policy;
    config_free(&full);
}

static void event_for(struct sec_event *ev, uint32_t source)
{
    ev->remote.addr.family = AF_INET;
    ev->remote.addr.bytes[0] = 10;
    ev->remote.addr.bytes[1] = (uint8_t)(source >> 16);
    ev->remote.addr.bytes[2] = (uint8_t)(source >> 8);
    ev->remote.addr.bytes[3] = (uint8_t)source;
}

/* Protects ntrunks learned trunk addresses (198.18.x.y), as learn_trust would. */
static void add_trunks(struct policy *p, unsigned ntrunks)
{
    struct policy_wl_entry *e = calloc(ntrunks ? ntrunks : 1, sizeof(*e));
    for (unsigned i = 0; i < ntrunks; i++) {
        e[i].prefix.addr.family = AF_INET;
        e[i].prefix.addr.bytes[0] = 198;
        e[i].prefix.addr.bytes[1] = 18;
        e[i].prefix.addr.bytes[2] = (uint8_t)(i >> 8);
        e[i].prefix.addr.bytes[3] = (uint8_t)i;
        e[i].prefix.len = 32;
        snprintf(e[i].label, sizeof(e[i].label), "pjsip:identify/t%u (ami:pbx1)", i);
    }
    if (policy_protect_replace(p, POLICY_SRC_TRUNK, e, ntrunks) < 0)
        die("policy_protect_replace", -ENOMEM);
    free(e);
}

/* Pushes n events of type through judge + store in TURN-event transactions, the sources
 * cycling over nsources addresses, with ntrunks learned trunks protected; 1 ms of wall clock
 * per turn. Returns events per second. */
static double flood(const char *db, unsigned nsources, unsigned n, enum sec_event_type type,
                    unsigned ntrunks, unsigned *ret_bans)
{
    struct store *s;
    int r = store_open(db, NULL, &s);
    if (r < 0)
        die("store_open", r);
    struct cfg_policy c;
    cfg_defaults(&c);
    struct policy *p = policy_new(&c, NULL);
    add_trunks(p, ntrunks);
    struct judge *j = judge_new(s, p);
    struct sec_event ev = {.type = type,
                           .service = "PJSIP",
                           .remote = {.port = 5060, .transport = SEC_TRANSPORT_UDP},
                           .account = "1001",
                           .source = "ami:pbx1"};
    unsigned bans = 0;
    double t = now_s();
    for (unsigned i = 0; i < n; i++) {
        event_for(&ev, i % nsources);
        struct verdict v;
        r = judge_event(j, &ev, T0 + i / TURN, &v);
        if (r < 0)
            die("judge_event", r);
        bans += v.action == VERDICT_BAN;
        if ((i + 1) % TURN == 0 && (r = store_turn_commit(s)) < 0)
            die("commit", r);
    }
    if ((r = store_turn_commit(s)) < 0)
        die("commit", r);
    double el = now_s() - t;
    judge_free(j);
    policy_free(p);
    store_close(s);
    *ret_bans = bans;
    return n / el;
}

/* Fills failures with rows spread over 100k keys, in time order, through the store itself (the
 * rows are what the daemon writes), 100k rows per transaction. */
static void fill(const char *db, unsigned rows)
{
    struct store *s;
    struct store_options opt = {.cache_kib = 262144}; /* the fill's speed only */
    int r = store_open(db, &opt, &s);
    if (r < 0)
        die("store_open", r);
    struct sec_event ev = {.type = SEC_CHALLENGE_RESPONSE_FAILED,
                           .service = "PJSIP",
                           .remote = {.port = 5060, .transport = SEC_TRANSPORT_UDP},
                           .account = "1001",
                           .source = "ami:pbx1"};
    for (unsigned i = 0; i < rows; i++) {
        event_for(&ev, (i * 7919u) % 100000u);
        struct addr_prefix k;
        addr_prefix_of(&ev.remote.addr, 32, &k);
        if ((r = store_failure_add(s, &ev, &k, 1, false, T0 + i)) < 0)
            die("store_failure_add", r);
        if (i % 100000 == 99999 && (r = store_turn_commit(s)) < 0)
            die("commit", r);
    }
    if ((r = store_turn_commit(s)) < 0)
        die("commit", r);
    store_close(s);
    /* The file as the daemon's checkpoints leave it: the log copied in and cut. */
    sqlite3 *h;
    sqlite3_open(db, &h);
    sqlite3_exec(h, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(h);
}

static double file_mib(const char *db)
{
    struct stat st;
    return stat(db, &st) == 0 ? (double)st.st_size / (1024.0 * 1024.0) : 0;
}

/* Median cost of one window count (store_window_sum) on a table of `rows` failures. */
static void window_cost(const char *db, unsigned rows)
{
    /* BENCH_KEEP_DB=1: the table is kept for the next run (and reused if there). */
    bool keep = getenv("BENCH_KEEP_DB") != NULL;
    double t = now_s();
    if (!keep || access(db, F_OK) < 0) {
        unlink_db(db);
        fill(db, rows);
    }
    double fill_s = now_s() - t;
    struct store *s;
    /* The daemon's own options: the defaults (page cache, no map), or BENCH_MMAP_MIB. */
    struct store_options opt = {.mmap_mib =
                                    getenv("BENCH_MMAP_MIB") ? atoi(getenv("BENCH_MMAP_MIB")) : 0};
    int r = store_open(db, &opt, &s);
    if (r < 0)
        die("store_open", r);
    enum { ROUNDS = 5, COUNTS = 20000 };
    double best[ROUNDS], cpu[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        t = now_s();
        double c = cpu_s();
        double sum = 0, total = 0;
        for (unsigned i = 0; i < COUNTS; i++) {
            struct addr_prefix k = {.addr = {.family = AF_INET}, .len = 32};
            unsigned src = (i * 104729u) % 100000u;
            k.addr.bytes[0] = 10;
            k.addr.bytes[1] = (uint8_t)(src >> 16);
            k.addr.bytes[2] = (uint8_t)(src >> 8);
            k.addr.bytes[3] = (uint8_t)src;
            /* The last 10 minutes of the table, as the live window would be. */
            int64_t end = T0 + rows;
            if ((r = store_window_sum(s, &k, end - 600000, end, &sum)) < 0)
                die("window", r);
            total += sum;
        }
        store_turn_commit(s);
        best[round] = (now_s() - t) / COUNTS * 1e6;
        cpu[round] = (cpu_s() - c) / COUNTS * 1e6;
        if (total < 0)
            printf("?");
    }
    qsort(best, ROUNDS, sizeof(best[0]), cmp_double); /* for the medians */
    qsort(cpu, ROUNDS, sizeof(cpu[0]), cmp_double);
    store_close(s);
    printf("window count, table of %u failures (100k keys): median %.2f us over %d rounds of "
           "%d counts (min %.2f, max %.2f), CPU median %.2f us (min %.2f, max %.2f); filled in "
           "%.1f s; file %.0f MiB = %.1f MiB per million failures\n",
           rows, best[ROUNDS / 2], ROUNDS, COUNTS, best[0], best[ROUNDS - 1], cpu[ROUNDS / 2],
           cpu[0], cpu[ROUNDS - 1], fill_s, file_mib(db), file_mib(db) / (rows / 1e6));
    if (!keep)
        unlink_db(db);
}

int main(int argc, char **argv)
{
    if (getenv("BENCH_WINDOW_ONLY")) {
        char wdb[512];
        snprintf(wdb, sizeof(wdb), "%s/pbxguard-bench-w.db", argc > 1 ? argv[1] : "/var/tmp");
        window_cost(wdb, argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 10000000);
        return 0;
    }
    const char *dir = argc > 1 ? argv[1] : "/var/tmp";
    unsigned big = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 10000000;
    char db[512];
    snprintf(db, sizeof(db), "%s/pbxguard-bench-%d.db", dir, (int)getpid());
    printf("bench_store: judge + store, %d events per transaction, WAL, synchronous=NORMAL, "
           "database in %s\n",
           TURN, dir);

    unsigned bans;
    unlink_db(db);
    double eps = flood(db, 1, 1000000, SEC_CHALLENGE_RESPONSE_FAILED, 0, &bans);
    printf("one hot source: %.0f events/s (1M events, %u ban), max RSS %ld KiB\n", eps, bans,
           max_rss_kib());
    unlink_db(db);

    eps = flood(db, 100000, 1000000, SEC_CHALLENGE_RESPONSE_FAILED, 0, &bans);
    printf("100k distinct sources: %.0f events/s (1M events, 10 each, %u bans), max RSS %ld KiB, "
           "file %.0f MiB = %.1f MiB per million failures\n",
           eps, bans, max_rss_kib(), file_mib(db), file_mib(db));
    unlink_db(db);

    /* What trust costs: successful logins are one upsert each, and every learned trunk is
     * one more protected entry for each event's lookups. */
    eps = flood(db, 100000, 1000000, SEC_SUCCESSFUL_AUTH, 0, &bans);
    printf("100k distinct sources logging in (SuccessfulAuth): %.0f events/s (1M events)\n", eps);
    unlink_db(db);
    for (unsigned nt = 10; nt <= 1000; nt *= 10) {
        eps = flood(db, 100000, 1000000, SEC_CHALLENGE_RESPONSE_FAILED, nt, &bans);
        printf("100k distinct sources, %u learned trunks protected: %.0f events/s (1M events)\n",
               nt, eps);
        unlink_db(db);
    }

    window_cost(db, 1000000);
    if (big > 1000000)
        window_cost(db, big);
    printf("max RSS %ld KiB\n", max_rss_kib());
    return 0;
}
