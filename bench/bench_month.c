/* A month of steady scanning on a simulated clock: how big the database gets. Prints figures;
 * never passes or fails on time.
 *
 *   bench_month [DAYS [RATE [SOURCES]]]   default 30 days, 100 failures/s, 10000 sources
 *   BENCH_MONTH_ENUMERATE=1 bench_month   every attempt a new account name (the worst case)
 *   BENCH_MONTH_DIR=DIR                   where the scratch database goes (default /var/tmp)
 *
 * RATE failures per second from SOURCES IPv4 sources, round robin, go through the judge and the
 * store with the default policy (the judge takes the time as a parameter: the month runs as
 * fast as the machine can), 100000 per transaction. Each source keeps to its habits: one service
 * (PJSIP, one in five chan_sip), one or two extensions it guesses passwords for
 * (ChallengeResponseFailed) out of 200 common ones, and one failure in ten a probe of a third
 * name (InvalidAccountID). Every simulated minute the daemon's housekeeping runs as in the
 * daemon: expiry of the bans whose time is up, the roll-up of what is older than the raw
 * window (an hour), the retention (30 days). At the end: the file's size (the write-ahead log
 * checkpointed and cut, as the daemon's checkpoints leave it), what is in it, and how long
 * `pbxguard report`'s own path takes for the last day and the last week of it. */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "judge.h"
#include "policy.h"
#include "report.h"
#include "store.h"

#define T0 1795564800000LL /* 2026-11-25T00:00:00Z */
/* Failures per transaction, and SQLite's page cache: the simulation's own speed (the month
 * must run in minutes); neither changes what the file holds. */
#define TURN 100000
#define CACHE_KIB 262144
#define HOUSEKEEPING_MS 60000LL
#define RAW_KEEP_MS 3600000LL
#define STEP 4096

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(struct store *s, const char *what, int r)
{
    fprintf(stderr, "bench_month: %s: %s (%s)\n", what, store_strerror(r), store_errmsg(s));
    exit(1);
}

static uint32_t mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352d;
    x ^= x >> 15;
    x *= 0x846ca68b;
    x ^= x >> 16;
    return x;
}

static int64_t sql_int(sqlite3 *h, const char *q)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(h, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static double file_mib(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (double)st.st_size / (1 << 20) : 0;
}

/* One text report of [end - len, end), as `pbxguard report` makes it: wall seconds. */
static double one_report(const char *path, int64_t end, int64_t len, uint64_t *ret_failures)
{
    double t0 = now_s();
    struct store *db;
    struct report rep;
    struct store_options opt = {.flags = STORE_READ_ONLY, .busy_timeout_ms = 10000};
    int r = store_open(path, &opt, &db);
    if (r < 0)
        die(NULL, "open read-only", r);
    if (report_init(&rep, end - len, end) < 0 || report_fill(db, &rep, end, 10) < 0)
        die(db, "report", -EIO);
    store_close(db);
    FILE *out = fopen("/dev/null", "w");
    if (!out || report_render(&rep, REPORT_TEXT, out) < 0)
        exit(1);
    fclose(out);
    *ret_failures = rep.totals.failures;
    report_release(&rep);
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    double days = argc > 1 ? atof(argv[1]) : 30;
    unsigned rate = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 100;
    unsigned nsources = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 10000;
    bool enumerate = getenv("BENCH_MONTH_ENUMERATE") != NULL;
    const char *dir = getenv("BENCH_MONTH_DIR") ? getenv("BENCH_MONTH_DIR") : "/var/tmp";
    if (days <= 0 || rate == 0 || nsources == 0 || nsources > 16000000) {
        fprintf(stderr, "usage: bench_month [DAYS [RATE [SOURCES]]]\n");
        return 2;
    }
    char db[512], wal[520], shm[520];
    snprintf(db, sizeof(db), "%s/pbxguard-bench-month-%d.db", dir, (int)getpid());
    snprintf(wal, sizeof(wal), "%s-wal", db);
    snprintf(shm, sizeof(shm), "%s-shm", db);

    struct config cfg;
    config_defaults(&cfg);
    struct store *s;
    struct store_options opt = {.flags = STORE_OWN_CHECKPOINTS, .cache_kib = CACHE_KIB};
    int r = store_open(db, &opt, &s);
    if (r < 0)
        die(NULL, "store_open", r);
    struct policy *p = policy_new(&cfg.policy, NULL);
    struct judge *j = judge_new(s, p);
    int64_t retention_ms = cfg.general.retention_s * 1000;

    uint64_t n = (uint64_t)(days * 86400 * rate);
    uint64_t bans = 0, expired = 0, pruned = 0, rolled = 0, peak_raw = 0;
    double peak_wal = 0;
    int64_t next_hk = T0 + HOUSEKEEPING_MS;
    double t0 = now_s(), hk_s = 0;
    printf("bench_month: %g days at %u failures/s from %u sources (%" PRIu64
           " failures), accounts: %s\n",
           days, rate, nsources, n,
           enumerate ? "a new name every attempt" : "one or two per source, and probes");
    fflush(stdout);
    for (uint64_t i = 0; i < n; i++) {
        int64_t now = T0 + (int64_t)(i * 1000 / rate);
        uint32_t src = (uint32_t)(i % nsources), h = mix(src);
        struct sec_event ev = {
            .remote = {.port = (uint16_t)(5060 + h % 3), .transport = SEC_TRANSPORT_UDP},
            .source = "ami:pbx1"};
        ev.remote.addr.family = AF_INET;
        ev.remote.addr.bytes[0] = (uint8_t)(11 + h % 200);
        ev.remote.addr.bytes[1] = (uint8_t)(src >> 16);
        ev.remote.addr.bytes[2] = (uint8_t)(src >> 8);
        ev.remote.addr.bytes[3] = (uint8_t)src;
        snprintf(ev.service, sizeof(ev.service), "%s", h % 5 == 0 ? "SIP" : "PJSIP");
        uint64_t round = i / nsources;
        if (enumerate) {
            ev.type = SEC_INVALID_ACCOUNT_ID;
            snprintf(ev.account, sizeof(ev.account), "u%" PRIu64, i);
        } else if (round % 10 == 9) {
            ev.type = SEC_INVALID_ACCOUNT_ID;
            snprintf(ev.account, sizeof(ev.account), "%u", 100 + (h >> 8) % 200);
        } else {
            ev.type = SEC_CHALLENGE_RESPONSE_FAILED;
            unsigned pick = h % 3 == 0 ? (unsigned)(round & 1) : 0;
            snprintf(ev.account, sizeof(ev.account), "%u", 1000 + (h >> (12 + pick)) % 200);
        }
        struct verdict v;
        if ((r = judge_event(j, &ev, now, &v)) < 0)
            die(s, "judge_event", r);
        bans += v.action == VERDICT_BAN;
        if (i % TURN == TURN - 1 && (r = store_turn_commit(s)) < 0)
            die(s, "commit", r);
        if (now >= next_hk) {
            double h0 = now_s();
            if ((r = store_turn_commit(s)) < 0)
                die(s, "commit", r);
            unsigned k;
            do {
                if ((r = judge_expire(j, now, STEP, &k)) < 0)
                    die(s, "expire", r);
                expired += k;
            } while (k == STEP);
            bool done = false;
            bool new_hour = now / 3600000 != (now - HOUSEKEEPING_MS) / 3600000;
            /* A pass per hour, as the daemon starts one when the cutoff reaches a new hour. */
            if (new_hour) {
                while (!done) {
                    if ((r = store_rollup(s, now - RAW_KEEP_MS, STEP, &k, &done)) < 0)
                        die(s, "rollup", r);
                    rolled += k;
                }
            }
            do {
                if ((r = store_prune(s, now - retention_ms, STEP, &k)) < 0)
                    die(s, "prune", r);
                pruned += k;
            } while (k == STEP);
            if ((r = store_turn_commit(s)) < 0)
                die(s, "commit", r);
            /* A checkpoint every hour, with no transaction open, as the daemon's helper runs
             * one when events pause: the next write then restarts the log from its beginning.
             * (Asked for inside a transaction it copies the log but the log never restarts: it
             * grew by 17 GB a simulated day.) */
            if (new_hour) {
                double w = file_mib(wal);
                if (w > peak_wal)
                    peak_wal = w;
                store_checkpoint_request(s);
                store_checkpoint_wait(s);
            }
            hk_s += now_s() - h0;
            next_hk += HOUSEKEEPING_MS;
            if (now % 86400000 < HOUSEKEEPING_MS) {
                printf("  day %3lld: database %.0f MiB + log %.0f MiB, %.0f s so far\n",
                       (long long)((now - T0) / 86400000), file_mib(db), file_mib(wal),
                       now_s() - t0);
                fflush(stdout);
            }
        }
    }
    if ((r = store_turn_commit(s)) < 0)
        die(s, "commit", r);
    double el = now_s() - t0;
    judge_free(j);
    policy_free(p);
    store_close(s);
    config_free(&cfg);

    sqlite3 *hdb;
    sqlite3_open(db, &hdb);
    sqlite3_exec(hdb, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    int64_t raw = sql_int(hdb, "SELECT count(*) FROM failures");
    int64_t hours = sql_int(hdb, "SELECT count(*) FROM failure_hours");
    int64_t key_hours = sql_int(hdb, "SELECT count(*) FROM failure_key_hours");
    int64_t accounts = sql_int(hdb, "SELECT count(*) FROM accounts");
    int64_t nbans = sql_int(hdb, "SELECT count(*) FROM bans");
    int64_t freelist = sql_int(hdb, "PRAGMA freelist_count");
    int64_t pages = sql_int(hdb, "PRAGMA page_count");
    sqlite3_close(hdb);
    (void)peak_raw;
    printf("after %g days: database %.1f MiB (%.2f GB), %" PRId64 " of %" PRId64
           " pages free; raw failures %" PRId64 ", rolled-up rows %" PRId64 " (+ %" PRId64
           " key-hours), %" PRId64 " account names, %" PRId64 " bans\n",
           days, file_mib(db), file_mib(db) * 1048576 / 1e9, freelist, pages, raw, hours, key_hours,
           accounts, nbans);
    printf("simulated in %.0f s (%.0f failures/s through judge and store; housekeeping %.0f s); "
           "%" PRIu64 " bans placed, %" PRIu64 " expired, %" PRIu64 " rows rolled up, %" PRIu64
           " pruned\n",
           el, n / el, hk_s, bans, expired, rolled, pruned);
    int64_t end_s = (T0 + (int64_t)(days * 86400000)) / 1000;
    uint64_t nday = 0, nweek = 0;
    double tday = one_report(db, end_s, 86400, &nday);
    double tweek = days >= 7 ? one_report(db, end_s, 7 * 86400, &nweek) : 0;
    printf("report of the last 24 h (%" PRIu64 " failures): %.3f s; of the last 7 days (%" PRIu64
           " failures): %.3f s\n",
           nday, tday, nweek, tweek);
    printf("write-ahead log: at most %.1f MiB before an hourly checkpoint\n", peak_wal);
    unlink(db);
    unlink(wal);
    unlink(shm);
    return 0;
}
