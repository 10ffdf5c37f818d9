/* How long a report takes on a big database. Prints figures; never passes or fails on time.
 *
 *   bench_report [FAILURES [BANS]]     default 10000000 failures, 100000 bans
 *   BENCH_REPORT_DB=PATH bench_report  keep the database at PATH (reused when it exists)
 *
 * Builds a database with the real schema (the embedded migrations) in a temporary directory:
 * FAILURES rows spread over 30 days (the default retention), from 100k sources of which a few
 * hundred do most of the work, and BANS bans over the same days. The rows go in with bulk
 * inserts in big transactions, the indexes dropped and re-created after (same definitions), then
 * the file is switched to WAL as the daemon leaves it. Then it times `pbxguard report`'s own
 * path (open read-only, fill, render) for the last day, 3 runs, and a week once. The page
 * cache is warm (the file was just written). */
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
#include "schema.h"
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

static void die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "bench_report: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    exit(1);
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "bench_report: %s: %s\n", sql, err ? err : "?");
        exit(1);
    }
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

static void build(const char *path, uint64_t nfail, uint64_t nbans, int64_t end_ms)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(db, "open");
    exec(db, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000");
    exec(db, "BEGIN");
    for (unsigned i = 0; i < schema_nmigrations; i++)
        exec(db, schema_migrations[i]);
    char uv[64];
    snprintf(uv, sizeof(uv), "PRAGMA user_version = %u", schema_nmigrations);
    exec(db, uv);
    exec(db, "COMMIT");

    /* Keep the index definitions, drop them, load, and build them again by sorting: the same
     * end state, minutes faster than random inserts into two big B-trees. */
    char *idx[16];
    unsigned nidx = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                           "tbl_name IN ('failures', 'bans') AND sql IS NOT NULL",
                           -1, &st, NULL) != SQLITE_OK)
        die(db, "indexes");
    while (sqlite3_step(st) == SQLITE_ROW && nidx < 16) {
        char drop[256];
        idx[nidx++] = strdup((const char *)sqlite3_column_text(st, 1));
        snprintf(drop, sizeof(drop), "DROP INDEX %s", sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        exec(db, drop);
        if (sqlite3_prepare_v2(db,
                               "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                               "tbl_name IN ('failures', 'bans') AND sql IS NOT NULL",
                               -1, &st, NULL) != SQLITE_OK)
            die(db, "indexes");
    }
    sqlite3_finalize(st);

    static const char *const services[] = {"PJSIP", "PJSIP", "PJSIP", "PJSIP", "PJSIP",
                                           "PJSIP", "PJSIP", "SIP",   "SIP",   "AMI"};
    static const int types[] = {1, 1, 1, 11, 11, 11, 12, 0, 6, 8};
    int64_t start_ms = end_ms - (int64_t)DAYS * 86400 * 1000;
    double step = (double)(end_ms - start_ms) / (double)nfail;
    double t0 = now_s();

    if (sqlite3_prepare_v2(db,
                           "INSERT INTO failures (ts_ms, key, addr, port, transport, service, "
                           "event_type, account, source, weight, whitelisted) VALUES "
                           "(?1, ?2, ?3, 5060, 'UDP', ?4, ?5, ?6, 'ami:pbx1', 1, 0)",
                           -1, &st, NULL) != SQLITE_OK)
        die(db, "prepare failures");
    exec(db, "BEGIN");
    for (uint64_t i = 0; i < nfail; i++) {
        char key[64], addr[64], acc[16];
        unsigned k = pick_key();
        key_of(k, key, sizeof(key));
        if (k % 10 == 9)
            snprintf(addr, sizeof(addr), "2001:db8:%x:%x::%x", k >> 16, k & 0xffff,
                     (unsigned)(rnd() % 64 + 1));
        else
            snprintf(addr, sizeof(addr), "%s", key);
        unsigned s = (unsigned)(rnd() % 10), ty = (unsigned)(rnd() % 10);
        sqlite3_bind_int64(st, 1, start_ms + (int64_t)(step * (double)i));
        sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, addr, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, services[s], -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 5, types[ty]);
        if (types[ty] == 0) {
            sqlite3_bind_null(st, 6);
        } else {
            uint64_t a = rnd() % NACCOUNTS;
            if (a < 20)
                snprintf(acc, sizeof(acc), "%s",
                         (const char *[]){"admin", "test", "100", "1000", "asterisk"}[a % 5]);
            else
                snprintf(acc, sizeof(acc), "%" PRIu64, 100 + a);
            sqlite3_bind_text(st, 6, acc, -1, SQLITE_TRANSIENT);
        }
        if (sqlite3_step(st) != SQLITE_DONE)
            die(db, "insert failure");
        sqlite3_reset(st);
        if (i % 1000000 == 999999) {
            exec(db, "COMMIT");
            exec(db, "BEGIN");
        }
    }
    exec(db, "COMMIT");
    sqlite3_finalize(st);
    double t1 = now_s();

    if (sqlite3_prepare_v2(db,
                           "INSERT INTO bans (prefix, family, len, start_ms, expires_ms, reason, "
                           "origin, failures, offence, service, event_type, ended_ms, "
                           "end_reason, lifted_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 5, ?8, "
                           "'PJSIP', 11, ?9, ?10, ?11)",
                           -1, &st, NULL) != SQLITE_OK)
        die(db, "prepare bans");
    unsigned *offences = calloc(NKEYS, sizeof(*offences));
    double bstep = (double)(end_ms - start_ms) / (double)(nbans ? nbans : 1);
    exec(db, "BEGIN");
    for (uint64_t i = 0; i < nbans; i++) {
        char key[64];
        unsigned k = pick_key();
        key_of(k, key, sizeof(key));
        unsigned off = ++offences[k];
        int64_t bstart = start_ms + (int64_t)(bstep * (double)i);
        bool manual = rnd() % 20 == 0, permanent = off >= 6 && rnd() % 4 == 0;
        int64_t len = 3600000LL << (off - 1 < 7 ? off - 1 : 7);
        int64_t expires = bstart + len;
        bool lifted = !permanent && rnd() % 30 == 0;
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 2, k % 10 == 9 ? 6 : 4);
        sqlite3_bind_int(st, 3, k % 10 == 9 ? 64 : 32);
        sqlite3_bind_int64(st, 4, bstart);
        if (permanent)
            sqlite3_bind_null(st, 5);
        else
            sqlite3_bind_int64(st, 5, expires);
        sqlite3_bind_text(st, 6, manual ? "manual" : "threshold", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, manual ? "cli:uid=0" : "ami:pbx1", -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 8, (int)off);
        if (lifted && bstart + 600000 < end_ms) {
            sqlite3_bind_int64(st, 9, bstart + 600000);
            sqlite3_bind_text(st, 10, "lifted", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 11, "cli:uid=0", -1, SQLITE_STATIC);
        } else if (!permanent && expires <= end_ms) {
            sqlite3_bind_int64(st, 9, expires);
            sqlite3_bind_text(st, 10, "expired", -1, SQLITE_STATIC);
            sqlite3_bind_null(st, 11);
        } else {
            sqlite3_bind_null(st, 9);
            sqlite3_bind_null(st, 10);
            sqlite3_bind_null(st, 11);
        }
        if (sqlite3_step(st) != SQLITE_DONE)
            die(db, "insert ban");
        sqlite3_reset(st);
    }
    exec(db, "COMMIT");
    sqlite3_finalize(st);
    free(offences);

    double t2 = now_s();
    for (unsigned i = 0; i < nidx; i++) {
        exec(db, idx[i]);
        free(idx[i]);
    }
    exec(db, "PRAGMA journal_mode = WAL");
    double t3 = now_s();
    sqlite3_close(db);
    printf("built: %" PRIu64 " failures in %.1f s, %" PRIu64 " bans in %.1f s, indexes "
           "in %.1f s\n",
           nfail, t1 - t0, nbans, t2 - t1, t3 - t2);
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
