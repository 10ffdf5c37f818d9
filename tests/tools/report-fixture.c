/* Builds the report tests' fixture database from known events, through the real store API (so
 * the schema and the way rows are written are the daemon's own).
 *
 *   report-fixture DB            the day 2026-11-25 (UTC) described below, with the daemon
 *                                stopped cleanly at 06:00 and killed at 10:00
 *   report-fixture --empty DB    an initialized database with nothing in it
 *   report-fixture --rollup H DB    the day, then its failures before 2026-11-25 + H hours
 *                                rolled up into the hourly history as the daemon does it
 *   report-fixture --open DB     opens DB read-write (migrating an older schema) and closes
 *
 * The expected reports are tests/fixtures/report/db.{txt,csv,json}; tests/integration/report.py
 * checks them. Change this file and those together. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sec_event.h"
#include "store.h"

#define DAY0_MS 1795564800000LL /* 2026-11-25T00:00:00Z */
#define H (3600 * 1000LL)
#define M (60 * 1000LL)
#define S 1000LL

static struct store *st;

static void die(const char *what, int rc)
{
    fprintf(stderr, "report-fixture: %s: %s (%s)\n", what, store_strerror(rc), store_errmsg(st));
    exit(1);
}

static struct addr_prefix key_of(const char *addr)
{
    struct addr a;
    struct addr_prefix p;
    if (addr_parse(addr, strlen(addr), &a) < 0) {
        fprintf(stderr, "report-fixture: bad address %s\n", addr);
        exit(1);
    }
    addr_prefix_of(&a, a.family == AF_INET ? 32 : 64, &p);
    return p;
}

static void failure(int64_t ts_ms, const char *addr, const char *service, enum sec_event_type type,
                    const char *account, bool whitelisted)
{
    struct sec_event ev = {.type = type, .version = 1, .event_tv_ms = ts_ms, .received_ms = ts_ms};
    snprintf(ev.service, sizeof(ev.service), "%s", service);
    snprintf(ev.source, sizeof(ev.source), "ami:pbx1");
    if (addr_parse(addr, strlen(addr), &ev.remote.addr) < 0)
        exit(1);
    ev.remote.port = 5060;
    ev.remote.transport = SEC_TRANSPORT_UDP;
    if (account)
        snprintf(ev.account, sizeof(ev.account), "%s", account);
    struct addr_prefix key = key_of(addr);
    int rc = store_failure_add(st, &ev, &key, whitelisted ? 0.0 : 1.0, whitelisted, ts_ms);
    if (rc < 0)
        die("store_failure_add", rc);
}

static void ban(const char *prefix, int64_t start_ms, int64_t expires_ms,
                enum store_ban_reason reason, unsigned offence)
{
    struct store_ban b = {.start_ms = start_ms,
                          .expires_ms = expires_ms,
                          .reason = reason,
                          .offence = offence,
                          .event_type = -1};
    b.prefix = key_of(prefix);
    if (reason == STORE_BAN_THRESHOLD) {
        snprintf(b.origin, sizeof(b.origin), "ami:pbx1");
        snprintf(b.service, sizeof(b.service), "PJSIP");
        b.event_type = SEC_CHALLENGE_RESPONSE_FAILED;
        b.failures = 5;
    } else if (reason == STORE_BAN_REMOTE) {
        snprintf(b.origin, sizeof(b.origin), "cluster:pbx-b");
    } else {
        snprintf(b.origin, sizeof(b.origin), "cli:uid=0");
    }
    int rc = store_ban_add(st, &b, NULL);
    if (rc < 0)
        die("store_ban_add", rc);
}

static void incident(int64_t ts_ms, const char *kind, const char *source)
{
    int rc = store_incident(st, ts_ms, kind, source, kind);
    if (rc < 0)
        die("store_incident", rc);
}

/* A start of pbxguardd, as the daemon records it. */
static int64_t run_start(int64_t ts_ms, unsigned pid)
{
    int64_t id;
    int rc = store_run_start(st, ts_ms, "0.1.0", "/etc/pbxguard/pbxguard.conf", pid, &id, NULL);
    if (rc < 0)
        die("store_run_start", rc);
    return id;
}

static void run_alive(int64_t id, int64_t ts_ms)
{
    int rc = store_run_alive(st, id, ts_ms);
    if (rc < 0)
        die("store_run_alive", rc);
}

static void run_stop(int64_t id, int64_t ts_ms, const char *reason, int64_t uptime_ms)
{
    int rc = store_run_stop(st, id, ts_ms, reason, uptime_ms);
    if (rc < 0)
        die("store_run_stop", rc);
}

static void commit(void)
{
    int rc = store_turn_commit(st);
    if (rc < 0)
        die("store_turn_commit", rc);
}

/* The story of 2026-11-25, in the order the daemon would have written it. */
static void the_day(void)
{
    /* the day before: 203.0.113.5 and 192.0.2.200 were already known; pbxguardd (pid 1000)
     * has run since the morning before */
    failure(DAY0_MS - 5 * 86400 * S, "203.0.113.5", "PJSIP", SEC_INVALID_ACCOUNT_ID, "100", false);
    int64_t run = run_start(DAY0_MS - 86400 * S, 1000);
    incident(DAY0_MS - 86400 * S, "start", NULL);
    failure(DAY0_MS - 1 * S, "192.0.2.200", "PJSIP", SEC_FAILED_ACL, NULL, false);
    ban("192.0.2.200", DAY0_MS - 1 * H, DAY0_MS + 1 * H, STORE_BAN_THRESHOLD, 1);
    commit();

    /* 203.0.113.5 scans extensions, then guesses the password of 100: banned at 02:11 */
    for (int i = 0; i < 12; i++) {
        char acc[8];
        snprintf(acc, sizeof(acc), "%d", 100 + i % 4);
        failure(DAY0_MS + 1 * H + i * M, "203.0.113.5", "PJSIP", SEC_INVALID_ACCOUNT_ID, acc,
                false);
    }
    for (int i = 0; i < 6; i++)
        failure(DAY0_MS + 2 * H + 10 * M + i * 10 * S, "203.0.113.5", "PJSIP",
                SEC_CHALLENGE_RESPONSE_FAILED, "100", false);
    ban("203.0.113.5", DAY0_MS + 2 * H + 11 * M, DAY0_MS + 3 * H + 11 * M, STORE_BAN_THRESHOLD, 1);
    incident(DAY0_MS + 3 * H, "ami-disconnect", "ami:pbx1");
    incident(DAY0_MS + 3 * H + 5 * S, "ami-connect", "ami:pbx1");
    commit();

    /* an upgrade at 06:00: pbxguardd stops (SIGTERM) after 30 hours and starts again (pid
     * 1001) 5 minutes later */
    run_stop(run, DAY0_MS + 6 * H, "SIGTERM", 30 * H);
    commit();
    run = run_start(DAY0_MS + 6 * H + 5 * M, 1001);
    commit();

    /* ... comes back after its ban and earns a second, longer one (until the next morning) */
    for (int i = 0; i < 8; i++)
        failure(DAY0_MS + 5 * H + i * 30 * S, "203.0.113.5", "PJSIP", SEC_CHALLENGE_RESPONSE_FAILED,
                "100", false);
    ban("203.0.113.5", DAY0_MS + 5 * H + 4 * M, DAY0_MS + 33 * H + 4 * M, STORE_BAN_THRESHOLD, 2);
    commit();

    /* an IPv6 /64 tries the AMI admin password; banned by hand (permanently), lifted at noon */
    for (int i = 0; i < 5; i++)
        failure(DAY0_MS + 9 * H + 30 * M + i * M, i % 2 ? "2001:db8:77:1::11" : "2001:db8:77:1::10",
                "AMI", SEC_INVALID_PASSWORD, "admin", false);
    run_alive(run, DAY0_MS + 9 * H + 5 * M);
    ban("2001:db8:77:1::", DAY0_MS + 10 * H, 0, STORE_BAN_MANUAL, 1);
    commit();

    /* another node of the fleet banned a scanner: a remote ban here, counted apart */
    ban("203.0.113.64", DAY0_MS + 11 * H, DAY0_MS + 13 * H, STORE_BAN_REMOTE, 1);
    commit();

    /* pid 1001 is killed (the OOM killer) without a word: the ban at 10:00 was the last thing
     * it wrote. Started again (pid 1002) at 10:20, which finds the unclean stop. */
    run = run_start(DAY0_MS + 10 * H + 20 * M, 1002);
    commit();

    struct addr_prefix p6 = key_of("2001:db8:77:1::");
    int rc = store_ban_lift(st, &p6, DAY0_MS + 12 * H, "cli:uid=0", NULL);
    if (rc < 0)
        die("store_ban_lift", rc);
    commit();

    /* a phone on the LAN (whitelisted) with a stale password: recorded and reported, never
     * counted toward a ban */
    failure(DAY0_MS + 14 * H + 1 * S, "10.0.0.5", "PJSIP", SEC_INVALID_PASSWORD, "201", true);
    incident(DAY0_MS + 15 * H, "ami-disconnect", "ami:pbx1");
    incident(DAY0_MS + 15 * H + 2 * S, "ami-connect", "ami:pbx1");
    incident(DAY0_MS + 16 * H, "nft-repair", "nft");
    commit();

    /* chan_sip probing with account names meant for spreadsheets, browsers and terminals */
    failure(DAY0_MS + 20 * H + 15 * M, "198.51.100.77", "SIP", SEC_INVALID_ACCOUNT_ID,
            "=cmd|' /C calc'!A0", false);
    failure(DAY0_MS + 20 * H + 16 * M, "198.51.100.77", "SIP", SEC_INVALID_ACCOUNT_ID,
            "<script>alert(1)</script>", false);
    failure(DAY0_MS + 20 * H + 17 * M, "198.51.100.77", "SIP", SEC_INVALID_ACCOUNT_ID,
            "bad\x1b[2Jname", false);
    commit();

    /* the last second of the day, and the first of the next (outside the period) */
    failure(DAY0_MS + 24 * H - 1 * S, "192.0.2.200", "PJSIP", SEC_FAILED_ACL, NULL, false);
    failure(DAY0_MS + 24 * H, "192.0.2.200", "PJSIP", SEC_FAILED_ACL, NULL, false);
    commit();

    /* the daemon marks what ran out, as it does on its expiry timer */
    rc = store_bans_expire(st, DAY0_MS + 30 * H, 1000, NULL);
    if (rc < 0)
        die("store_bans_expire", rc);
    /* ... and pid 1002 still runs when the report is made (--now 2026-11-26T06:00) */
    run_alive(run, DAY0_MS + 30 * H);
    commit();
}

/* Rolls up everything before cutoff_ms in small batches, as the daemon's maintenance does. */
static void rollup(int64_t cutoff_ms)
{
    bool done = false;
    for (int calls = 0; !done && calls < 100000; calls++) {
        int rc = store_rollup(st, cutoff_ms, 5, NULL, &done);
        if (rc < 0)
            die("store_rollup", rc);
        commit();
    }
}

int main(int argc, char **argv)
{
    bool empty = argc == 3 && strcmp(argv[1], "--empty") == 0;
    bool open_only = argc == 3 && strcmp(argv[1], "--open") == 0;
    bool roll = argc == 4 && strcmp(argv[1], "--rollup") == 0;
    if (argc != 2 && !empty && !open_only && !roll) {
        fprintf(stderr, "usage: report-fixture [--empty | --open | --rollup HOURS] DB\n");
        return 2;
    }
    int rc = store_open(argv[argc - 1], NULL, &st);
    if (rc < 0)
        die("store_open", rc);
    if (!empty && !open_only)
        the_day();
    if (roll)
        rollup(DAY0_MS + strtoll(argv[2], NULL, 10) * H);
    store_close(st);
    return 0;
}
