/* The store on real SQLite files in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "schema.h"
#include "store.h"
#include "store_report.h"
#include "store_fixtures.h"

struct tmp {
    char dir[64];
    char db[128];
};

static int setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "/tmp/pbxguard-store-XXXXXX");
    if (!mkdtemp(t->dir))
        return -1;
    snprintf(t->db, sizeof(t->db), "%s/pbxguard.db", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tmp *t = *state;
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", t->db, suffix[i]);
        unlink(p);
    }
    rmdir(t->dir);
    free(t);
    return 0;
}

/* Runs SQL on the file through a separate connection, as an admin or another program would. */
static void raw_exec(const char *db, const char *text)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(h, text, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", text, err);
    sqlite3_close(h);
}

static int64_t raw_int(const char *db, const char *text)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, text, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static char *read_all(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    *ret_len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static struct store *open_ok(const char *db)
{
    struct store *s = NULL;
    int r = store_open(db, NULL, &s);
    if (r < 0)
        fail_msg("store_open: %s (%s)", store_strerror(r), store_errmsg(NULL));
    return s;
}

static void fresh_file_gets_the_newest_schema_in_wal_mode(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    assert_int_equal(store_schema_version(s), (int)schema_nmigrations);
    store_close(s);
    assert_int_equal(raw_int(t->db, "PRAGMA user_version"), schema_nmigrations);
    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(t->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(h);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM event_types"), SEC_EVENT_TYPE_COUNT);
}

static void reopening_a_current_file_keeps_its_data(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    assert_int_equal(store_incident(s, 1000, "start", NULL, "pbxguardd started"), 0);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    s = open_ok(t->db);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM daemon_events"), 1);
}

/* The file a binary of schema version v left behind: its migrations, run as it ran them. */
static void make_old_file(const char *db, unsigned v)
{
    for (unsigned i = 0; i < v; i++)
        raw_exec(db, schema_migrations[i]);
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %u", v);
    raw_exec(db, pragma);
}

static void version_1_file_is_migrated_to_the_ban_note_keeping_its_bans(void **state)
{
    struct tmp *t = *state;
    make_old_file(t->db, 1);
    raw_exec(t->db, "INSERT INTO bans (prefix, family, len, start_ms, reason, origin) "
                    "VALUES ('192.0.2.1', 4, 32, 1, 'threshold', 'ami:x')");
    struct store_ban b = {.prefix = fx_prefix("192.0.2.1")};
    struct store *s = open_ok(t->db);
    struct store_ban got;
    assert_int_equal(store_ban_last(s, &b.prefix, &got), 0);
    assert_string_equal(got.note, "");
    store_close(s);
    assert_int_equal(raw_int(t->db, "PRAGMA user_version"), schema_nmigrations);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM pragma_table_info('bans') "
                                    "WHERE name = 'note'"),
                     1);
}

static void previous_version_file_gets_the_daemon_runs_keeping_its_data(void **state)
{
    struct tmp *t = *state;
    make_old_file(t->db, 3); /* the schema before daemon_runs (004) */
    raw_exec(t->db, "INSERT INTO bans (prefix, family, len, start_ms, reason, origin, note) "
                    "VALUES ('192.0.2.1', 4, 32, 1, 'manual', 'cli:uid=0', 'ticket 7'); "
                    "INSERT INTO failures (ts_ms, key, addr, service, event_type, source, weight) "
                    "VALUES (5, '192.0.2.9', '192.0.2.9', 'PJSIP', 1, 'ami:x', 1); "
                    "INSERT INTO daemon_events (ts_ms, kind, message) VALUES (6, 'start', 'x')");
    struct store *s = open_ok(t->db);
    struct store_ban got;
    struct addr_prefix p = fx_prefix("192.0.2.1");
    assert_int_equal(store_ban_last(s, &p, &got), 0);
    assert_string_equal(got.note, "ticket 7");
    struct store_key_stats ks;
    struct addr_prefix k = fx_prefix("192.0.2.9");
    assert_int_equal(store_key_stats(s, &k, &ks), 0);
    assert_int_equal(ks.count, 1);
    /* The first run recorded: nothing before it is known, not even a death. */
    int64_t id;
    struct store_run prev;
    assert_int_equal(store_run_start(s, 100, "0.1.0", "/etc/x.conf", 42, &id, &prev), 0);
    assert_int_equal(prev.id, 0);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "PRAGMA user_version"), schema_nmigrations);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM daemon_events"), 1);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM daemon_runs WHERE down_ms IS NULL"), 1);
}

static void version_5_file_is_migrated_to_remote_bans_keeping_its_bans(void **state)
{
    struct tmp *t = *state;
    /* The schema before remote bans (006): bans.reason knows no 'remote', no outbox, no
     * cursor. */
    make_old_file(t->db, 5);
    raw_exec(t->db, "INSERT INTO bans (prefix, family, len, start_ms, expires_ms, reason, origin, "
                    "note) VALUES ('192.0.2.1', 4, 32, 1, 5000, 'manual', 'cli:uid=0', 'kept')");
    struct store_ban b = {.prefix = fx_prefix("192.0.2.1")};
    struct store *s = open_ok(t->db);
    struct store_ban got;
    assert_int_equal(store_ban_last(s, &b.prefix, &got), 0);
    assert_int_equal(got.reason, STORE_BAN_MANUAL);
    assert_int_equal(got.expires_ms, 5000);
    assert_string_equal(got.note, "kept");
    struct store_ban r = {.prefix = fx_prefix("198.51.100.0/24"),
                          .start_ms = 2,
                          .reason = STORE_BAN_REMOTE,
                          .event_type = -1};
    snprintf(r.origin, sizeof(r.origin), "cluster:pbx-b");
    assert_int_equal(store_ban_add(s, &r, NULL), 0);
    assert_int_equal(store_turn_commit(s), 0);
    assert_int_equal(store_ban_last(s, &r.prefix, &got), 0);
    assert_int_equal(got.reason, STORE_BAN_REMOTE);
    assert_string_equal(got.origin, "cluster:pbx-b");
    store_close(s);
}

static int count_entry(void *data, const struct store_outbox_entry *e)
{
    (*(int *)data)++;
    return 0;
}

static void outbox_keeps_changes_until_acknowledged_and_cursor_survives_reopen(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_outbox_entry e = {.prefix = fx_prefix("203.0.113.7"),
                                   .start_ms = 10,
                                   .expires_ms = 3600010,
                                   .reason = STORE_BAN_THRESHOLD};
    int64_t id1, id2, pos = -1;
    uint64_t n = 0;
    assert_int_equal(store_outbox_add(s, "cluster", &e, &id1), 0);
    e.unban = true;
    assert_int_equal(store_outbox_add(s, "cluster", &e, &id2), 0);
    assert_true(id2 > id1);
    assert_int_equal(store_cursor_get(s, "cluster", &pos), -ENOENT);
    assert_int_equal(store_cursor_set(s, "cluster", 42, 1000), 0);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);

    s = open_ok(t->db);
    assert_int_equal(store_outbox_count(s, "cluster", &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(store_outbox_count(s, "crowdsec", &n), 0);
    assert_int_equal(n, 0);
    int seen = 0;
    assert_int_equal(store_outbox_list(s, "cluster", id1, 10, count_entry, &seen), 0);
    assert_int_equal(seen, 1);
    assert_int_equal(store_outbox_delete(s, "cluster", id1), 0);
    assert_int_equal(store_outbox_count(s, "cluster", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_cursor_get(s, "cluster", &pos), 0);
    assert_int_equal(pos, 42);
    store_close(s);
}

/* Migration 007 packs old text rows with the store's own SQL functions; a file made by the
 * migrations alone (no rows to pack) needs only their names. */
static void sql_null(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    sqlite3_result_null(ctx);
}

static void make_old_compact_file(const char *db, unsigned v)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_create_function(h, "pbxguard_key", 1, SQLITE_UTF8, NULL, sql_null, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(
        sqlite3_create_function(h, "pbxguard_addr", 2, SQLITE_UTF8, NULL, sql_null, NULL, NULL),
        SQLITE_OK);
    for (unsigned i = 0; i < v; i++) {
        char *err = NULL;
        if (sqlite3_exec(h, schema_migrations[i], NULL, NULL, &err) != SQLITE_OK)
            fail_msg("migration %u: %s", i + 1, err);
    }
    char pragma[64];
    snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %u", v);
    assert_int_equal(sqlite3_exec(h, pragma, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
}

/* A file of the schema before the security log (008: the compact failures and the allowlist)
 * gains the event identity (009): its raw failures and rolled-up hours stay as they were, count
 * in windows and reports, and are never taken for an event the log repeats (no identity). */
static void previous_version_file_gains_the_security_log_columns_keeping_its_failures(void **state)
{
    struct tmp *t = *state;
    make_old_compact_file(t->db, 8);
    raw_exec(t->db, "INSERT INTO failure_kinds (id, service, event_type, source, used_ms) "
                    "VALUES (1, 'PJSIP', 12, 'ami:x', 1000);"
                    /* 192.0.2.7 packed: the key's 4 bytes, the key's own address (x''). */
                    "INSERT INTO failures (key, ts_ms, seq, addr, port, transport, kind, account, "
                    "weight, flags) VALUES (x'c0000207', 1000, 0, x'', 5060, 1, 1, 0, 1, 0);"
                    "INSERT INTO failure_hours (hour, key, addr, kind, account, flags, n, weight, "
                    "first_off, last_off) VALUES (0, x'c0000207', x'', 1, 0, 1, 3, 0, 10, 20);"
                    "INSERT INTO failure_counts (hour, n, last_ms) VALUES (0, 4, 1000);");
    struct addr_prefix key = fx_prefix("192.0.2.7");
    struct store *s = open_ok(t->db);
    assert_int_equal(raw_int(t->db, "PRAGMA user_version"), schema_nmigrations);
    double sum;
    assert_int_equal(store_window_sum(s, &key, 0, 2000, &sum), 0);
    assert_true(sum == 1);
    struct store_seclog_cursor c;
    assert_int_equal(store_seclog_cursor_get(s, "seclog:x", &c), -ENOENT);
    int64_t last = 0;
    assert_int_equal(store_last_failure_ms(s, &last), 0);
    assert_int_equal(last, 1000);
    /* The old row has no identity: an event of the same address and time is not it. */
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "PJSIP", "192.0.2.7");
    ev.event_tv_ms = 1000;
    ev.remote.port = 5060;
    ev.remote.transport = SEC_TRANSPORT_UDP;
    bool seen = true;
    assert_int_equal(store_failure_seen(s, &ev, &key, 0, 2000, &seen), 0);
    assert_false(seen);
    /* A new one has, and is found; a backfilled one is flagged beside the old flags. */
    assert_int_equal(store_failure_add(s, &ev, &key, 1, false, 1002), 0);
    assert_int_equal(store_failure_seen(s, &ev, &key, 0, 2000, &seen), 0);
    assert_true(seen);
    ev.backfilled = true;
    ev.event_tv_ms = 1500;
    assert_int_equal(store_failure_add(s, &ev, &key, 1, false, 1500), 0);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures WHERE tv_off IS NULL AND "
                                    "session IS NULL AND flags = 0 AND ts_ms = 1000"),
                     1);
    assert_int_equal(raw_int(t->db, "SELECT tv_off FROM failures WHERE ts_ms = 1002"), -2);
    assert_int_equal(raw_int(t->db, "SELECT flags FROM failures WHERE ts_ms = 1500"), 2);
    assert_int_equal(raw_int(t->db, "SELECT tv_off FROM failures WHERE ts_ms = 1500"), 0);
    assert_int_equal(raw_int(t->db, "SELECT n FROM failure_hours WHERE flags = 1"), 3);
    /* Nothing but the primary key: the identity lookup is a range of it. */
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' "
                                    "AND tbl_name = 'failures' AND sql IS NOT NULL"),
                     0);
}

/* The log repeats what AMI delivered: found by EventTV, type, address, port and session. */
static void an_event_recorded_once_is_found_again_by_its_identity(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "PJSIP", "192.0.2.7");
    struct addr_prefix key = fx_prefix("192.0.2.7");
    ev.event_tv_ms = 5000;
    snprintf(ev.session, sizeof(ev.session), "call-1@x");
    assert_int_equal(store_failure_add(s, &ev, &key, 1, false, 5003), 0);
    bool seen = false;
    assert_int_equal(store_failure_seen(s, &ev, &key, 0, 10000, &seen), 0);
    assert_true(seen);
    struct sec_event other = ev;
    other.remote.port = 5061;
    assert_int_equal(store_failure_seen(s, &other, &key, 0, 10000, &seen), 0);
    assert_false(seen);
    other = ev;
    snprintf(other.session, sizeof(other.session), "call-2@x");
    assert_int_equal(store_failure_seen(s, &other, &key, 0, 10000, &seen), 0);
    assert_false(seen);
    other = ev;
    other.event_tv_ms = 5001;
    assert_int_equal(store_failure_seen(s, &other, &key, 0, 10000, &seen), 0);
    assert_false(seen);
    /* Outside the time range asked. */
    assert_int_equal(store_failure_seen(s, &ev, &key, 6000, 10000, &seen), 0);
    assert_false(seen);
    store_close(s);
}

/* A backfill's old failures, deferred: written later in the table's order, a bounded number at
 * a time, each row once however often its place is recorded (a log read again). */
static void deferred_failures_are_written_in_order_and_once_per_place(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", "192.0.2.9");
    struct addr_prefix k9 = fx_prefix("192.0.2.9");
    ev.backfilled = true;
    ev.remote.port = 5060;
    ev.remote.transport = SEC_TRANSPORT_UDP;
    /* No place: nothing to key it by. */
    assert_int_equal(store_failure_defer(s, &ev, &k9, 1, false, 1000), -EINVAL);
    /* More than one run, from sources in no order, at times in no order. */
    const unsigned n = STORE_DEFER_RUN + 100;
    for (unsigned i = 0; i < n; i++) {
        char a[32];
        snprintf(a, sizeof(a), "10.%u.%u.%u", (i * 7919u) % 251u, i % 13u, 1 + i % 200u);
        struct sec_event e = fx_event(SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", a);
        struct addr_prefix ka = fx_prefix(a);
        e.backfilled = true;
        e.event_tv_ms = 3600000 + (int64_t)((i * 104729u) % 5000u);
        e.place = 1 + i;
        assert_int_equal(store_failure_defer(s, &e, &ka, 1, false, e.event_tv_ms), 0);
    }
    assert_int_equal(store_failure_deferred(s), n);
    /* Not in the table yet. */
    uint64_t rows = 99;
    assert_int_equal(store_failures_since(s, 0, &rows), 0);
    assert_int_equal(rows, 0);
    assert_int_equal(store_turn_commit(s), 0);
    unsigned w = 0, total = 0;
    while (store_failure_deferred(s)) {
        assert_int_equal(store_failure_write_deferred(s, 1000, &w), 0);
        assert_true(w > 0 && w <= 1000);
        total += w;
        /* Written in order, nothing comes in until it is done. */
        struct sec_event late = ev;
        late.place = 999999;
        if (store_failure_deferred(s))
            assert_int_equal(store_failure_defer(s, &late, &k9, 1, false, 1000), -ENOSPC);
        assert_int_equal(store_turn_commit(s), 0);
    }
    assert_int_equal(total, n);
    assert_int_equal(store_failure_write_deferred(s, 1000, &w), 0);
    assert_int_equal(w, 0);
    /* The same places again (the log read again after a restart): kept once. */
    for (unsigned i = 0; i < 10; i++) {
        char a[32];
        snprintf(a, sizeof(a), "10.%u.%u.%u", (i * 7919u) % 251u, i % 13u, 1 + i % 200u);
        struct sec_event e = fx_event(SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", a);
        struct addr_prefix ka = fx_prefix(a);
        e.backfilled = true;
        e.event_tv_ms = 3600000 + (int64_t)((i * 104729u) % 5000u);
        e.place = 1 + i;
        if (i % 2)
            assert_int_equal(store_failure_add(s, &e, &ka, 1, false, e.event_tv_ms), 0);
        else
            assert_int_equal(store_failure_defer(s, &e, &ka, 1, false, e.event_tv_ms), 0);
    }
    while (store_failure_deferred(s))
        assert_int_equal(store_failure_write_deferred(s, 3, &w), 0);
    /* Dropped ones are not written. */
    ev.place = 424242;
    assert_int_equal(store_failure_defer(s, &ev, &k9, 1, false, 1000), 0);
    store_failure_drop_deferred(s);
    assert_int_equal(store_failure_deferred(s), 0);
    assert_int_equal(store_turn_commit(s), 0);
    assert_int_equal(store_failures_since(s, 0, &rows), 0);
    assert_int_equal(rows, n);
    int64_t last = 0;
    assert_int_equal(store_last_failure_ms(s, &last), 0);
    assert_true(last >= 3600000 && last < 3605000);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), n);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures WHERE seq >= 0"), 0);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures WHERE flags = 2 AND "
                                    "tv_off = 0 AND session IS NULL"),
                     n);
    assert_int_equal(raw_int(t->db, "SELECT sum(n) FROM failure_counts"), n);
}

static void window_peak_finds_the_heaviest_window_around_a_time(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "PJSIP", "192.0.2.8");
    struct addr_prefix key = fx_prefix("192.0.2.8");
    static const int64_t at[] = {1000, 2000, 3000, 12000, 12500, 30000};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(store_failure_add(s, &ev, &key, 1, false, at[i]), 0);
    double peak;
    /* Windows of 10 s holding 3000: [2000..12000] holds 2000, 3000, 12000 = 3. */
    assert_int_equal(store_window_peak(s, &key, 0, 3000, 13000, 10000, 100, &peak), 0);
    assert_true(peak == 3);
    /* Only up to 3000: [..3000] holds 3. */
    assert_int_equal(store_window_peak(s, &key, 0, 3000, 3000, 10000, 100, &peak), 0);
    assert_true(peak == 3);
    /* From 2500 on (a ban ended then): 3000, 12000, 12500. */
    assert_int_equal(store_window_peak(s, &key, 2500, 3000, 13000, 10000, 100, &peak), 0);
    assert_true(peak == 3);
    /* Stops early once the sum reaches what is asked. */
    assert_int_equal(store_window_peak(s, &key, 0, 1000, 40000, 10000, 2, &peak), 0);
    assert_true(peak >= 2);
    /* Around 30000 alone. */
    assert_int_equal(store_window_peak(s, &key, 20001, 30000, 40000, 10000, 100, &peak), 0);
    assert_true(peak == 1);
    store_close(s);
}

static void seclog_cursor_round_trips(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_seclog_cursor c = {.dev = 2049, .ino = 1234567, .pos = 98765, .line_ms = 77};
    memcpy(c.tail, "last bytes\n", 11);
    c.tail_len = 11;
    assert_int_equal(store_seclog_cursor_put(s, "seclog:a", "/var/log/asterisk/security", &c, 1),
                     0);
    c.pos = 100000;
    assert_int_equal(store_seclog_cursor_put(s, "seclog:a", "/var/log/asterisk/security", &c, 2),
                     0);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    s = open_ok(t->db);
    struct store_seclog_cursor got;
    assert_int_equal(store_seclog_cursor_get(s, "seclog:a", &got), 0);
    assert_int_equal(got.dev, 2049);
    assert_int_equal(got.ino, 1234567);
    assert_int_equal(got.pos, 100000);
    assert_int_equal(got.tail_len, 11);
    assert_memory_equal(got.tail, "last bytes\n", 11);
    assert_int_equal(got.line_ms, 77);
    assert_int_equal(store_seclog_cursor_get(s, "seclog:b", &got), -ENOENT);
    store_close(s);
}

static void empty_version_0_file_is_migrated(void **state)
{
    struct tmp *t = *state;
    raw_exec(t->db, "PRAGMA user_version = 0");
    struct store *s = open_ok(t->db);
    store_close(s);
    assert_int_equal(raw_int(t->db, "PRAGMA user_version"), schema_nmigrations);
}

static void failed_migration_leaves_the_file_as_it_was(void **state)
{
    struct tmp *t = *state;
    /* A stray table in the way: migration 001 fails half-way, so it must all roll back. */
    raw_exec(t->db, "CREATE TABLE bans (x); INSERT INTO bans VALUES (42)");
    struct store *s = NULL;
    assert_int_not_equal(store_open(t->db, NULL, &s), 0);
    assert_null(s);
    assert_int_equal(raw_int(t->db, "PRAGMA user_version"), 0);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM sqlite_master WHERE name = 'failures'"),
                     0);
    assert_int_equal(raw_int(t->db, "SELECT x FROM bans"), 42);
}

static void newer_schema_is_refused_and_left_untouched(void **state)
{
    struct tmp *t = *state;
    raw_exec(t->db, "CREATE TABLE future (x); INSERT INTO future VALUES (1); "
                    "PRAGMA user_version = 999");
    size_t n0, n1;
    char *before = read_all(t->db, &n0);
    struct store *s = NULL;
    assert_int_equal(store_open(t->db, NULL, &s), -EPROTONOSUPPORT);
    assert_null(s);
    assert_non_null(strstr(store_errmsg(NULL), "999"));
    char *after = read_all(t->db, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", t->db);
    assert_false(exists(wal));
    free(before);
    free(after);
}

static void file_that_is_not_a_database_is_refused_untouched(void **state)
{
    struct tmp *t = *state;
    FILE *f = fopen(t->db, "wb");
    for (int i = 0; i < 4096; i++)
        fputc("garbage!"[i % 8], f);
    fclose(f);
    size_t n0, n1;
    char *before = read_all(t->db, &n0);
    struct store *s = NULL;
    assert_int_equal(store_open(t->db, NULL, &s), -EUCLEAN);
    char *after = read_all(t->db, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
}

static void read_only_store_reports_erofs_on_write(void **state)
{
    struct tmp *t = *state;
    store_close(open_ok(t->db));
    struct store_options o = {.flags = STORE_READ_ONLY};
    struct store *s = NULL;
    assert_int_equal(store_open(t->db, &o, &s), 0);
    assert_int_equal(store_incident(s, 1, "x", NULL, "y"), -EROFS);
    double sum = -1;
    struct addr_prefix k = fx_prefix("192.0.2.1");
    assert_int_equal(store_window_sum(s, &k, 0, 10, &sum), 0);
    assert_true(sum == 0);
    store_close(s);
}

static void read_only_open_of_an_older_schema_says_run_the_daemon(void **state)
{
    struct tmp *t = *state;
    store_close(open_ok(t->db));
    raw_exec(t->db, "PRAGMA user_version = 1");
    struct store_options o = {.flags = STORE_READ_ONLY};
    struct store *s = NULL;
    assert_int_equal(store_open(t->db, &o, &s), -ESTALE);
    assert_null(s);
    assert_non_null(strstr(store_errmsg(NULL), "schema version 1 is older"));
    assert_int_equal(raw_int(t->db, "PRAGMA user_version"), 1);
}

static void read_only_open_of_a_file_never_initialized_says_so(void **state)
{
    struct tmp *t = *state;
    raw_exec(t->db, "PRAGMA user_version = 0");
    struct store_options o = {.flags = STORE_READ_ONLY};
    struct store *s = NULL;
    assert_int_equal(store_open(t->db, &o, &s), -ENODATA);
    assert_null(s);
}

static void a_snapshot_is_for_readers_only(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    assert_int_equal(store_snapshot_begin(s), -EINVAL);
    store_close(s);
    struct store_options o = {.flags = STORE_READ_ONLY};
    assert_int_equal(store_open(t->db, &o, &s), 0);
    assert_int_equal(store_snapshot_begin(s), 0);
    struct store_report_bans b;
    assert_int_equal(store_report_bans(s, 0, 1, NULL, NULL, &b), 0);
    assert_int_equal(b.bans, 0);
    store_snapshot_end(s);
    store_close(s);
}

static void read_only_open_never_creates_the_file(void **state)
{
    struct tmp *t = *state;
    char absent[200];
    snprintf(absent, sizeof(absent), "%s.absent", t->db);
    struct store_options o = {.flags = STORE_READ_ONLY};
    struct store *s = NULL;
    assert_int_equal(store_open(absent, &o, &s), -ENOENT);
    assert_false(exists(absent));
}

static void locked_database_reports_ebusy_and_works_once_released(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(t->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(store_incident(s, 1, "db-error", "store", "x"), -EBUSY);
    assert_false(store_in_turn(s));
    assert_int_equal(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(store_incident(s, 2, "db-error", "store", "retried"), 0);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM daemon_events"), 1);
}

static void window_sum_is_exact_at_both_edges(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    static const int64_t ts[] = {999, 1000, 1500, 2000, 2001};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, ts[i]), 0);
    static const struct {
        int64_t from, to;
        double sum;
    } cases[] = {{1000, 2000, 3}, {999, 2001, 5}, {1001, 1999, 1}, {2002, 3000, 0}};
    for (size_t i = 0; i < 4; i++) {
        double sum = -1;
        assert_int_equal(store_window_sum(s, &k, cases[i].from, cases[i].to, &sum), 0);
        assert_true(sum == cases[i].sum);
    }
    struct addr_prefix other = fx_prefix("192.0.2.2");
    double sum = -1;
    assert_int_equal(store_window_sum(s, &other, 0, 5000, &sum), 0);
    assert_true(sum == 0);
    store_close(s);
}

static void commit_ends_the_turn_and_makes_it_durable(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 10), 0);
    assert_true(store_in_turn(s));
    assert_int_equal(store_turn_commit(s), 0);
    assert_false(store_in_turn(s));
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 1);
}

static void attacker_text_is_stored_as_data(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_ACCOUNT_ID, "PJSIP", "192.0.2.1");
    snprintf(ev.account, sizeof(ev.account), "x'); DROP TABLE bans; --");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 10), 0);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures JOIN accounts "
                                    "ON accounts.id = failures.account WHERE name = "
                                    "'x''); DROP TABLE bans; --'"),
                     1);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM bans"), 0);
}

#define H 3600000LL

static void prune_deletes_old_rows_in_chunks_and_keeps_active_bans(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    /* 25 sources in the first hour, 5 failures of one of them three hours later. */
    for (int i = 0; i < 25; i++) {
        ev.remote.addr.bytes[3] = (uint8_t)(1 + i);
        struct addr_prefix k;
        addr_prefix_of(&ev.remote.addr, 32, &k);
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 100 + i), 0);
    }
    struct addr_prefix k = fx_prefix("192.0.2.1");
    ev.remote.addr = k.addr;
    for (int i = 0; i < 5; i++)
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 3 * H + i), 0);
    struct store_ban old_ended = {.prefix = fx_prefix("192.0.2.7"),
                                  .start_ms = 50,
                                  .expires_ms = 60,
                                  .ended_ms = 60,
                                  .end = STORE_BAN_EXPIRED,
                                  .event_type = -1};
    struct store_ban old_permanent = {.prefix = fx_prefix("192.0.2.8"),
                                      .start_ms = 50,
                                      .event_type = -1,
                                      .reason = STORE_BAN_MANUAL};
    assert_int_equal(store_ban_add(s, &old_ended, NULL), 0);
    assert_int_equal(store_ban_add(s, &old_permanent, NULL), 0);
    assert_int_equal(store_turn_commit(s), 0);

    /* Raw rows wait for the roll-up: nothing of them is pruned. */
    unsigned n = 99;
    bool done = false;
    assert_int_equal(store_prune(s, 2 * H, 100, &n), 0);
    assert_int_equal(n, 1); /* the ended ban */
    assert_int_equal(store_turn_commit(s), 0);
    for (int calls = 0; !done && calls < 100; calls++) {
        assert_int_equal(store_rollup(s, 2 * H, 4, &n, &done), 0);
        assert_int_equal(store_turn_commit(s), 0);
    }
    assert_true(done);

    unsigned total = 0, calls = 0;
    do {
        assert_int_equal(store_prune(s, 2 * H, 10, &n), 0);
        assert_true(n <= 10);
        assert_int_equal(store_turn_commit(s), 0);
        total += n;
    } while (n == 10 && ++calls < 100);
    /* One rolled-up row per source and the hour's row by kind; the accounts are in use. */
    assert_int_equal(total, 26);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 5);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failure_hours"), 0);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failure_key_hours"), 0);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failure_kind_hours"), 0);
    /* The day of the cutoff still has hours after it: its daily rows stay. */
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failure_key_days"), 25);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM bans"), 1);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM bans WHERE prefix = '192.0.2.8'"), 1);
}

static void successes_are_one_row_per_key_with_the_latest_login(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct addr_prefix k = fx_prefix("2001:db8:1:2::/64");
    struct store_success ok;
    assert_int_equal(store_success_get(s, &k, &ok), -ENOENT);
    struct sec_event a = fx_event(SEC_SUCCESSFUL_AUTH, "PJSIP", "2001:db8:1:2::10");
    struct sec_event b = fx_event(SEC_SUCCESSFUL_AUTH, "SIP", "2001:db8:1:2::11");
    snprintf(b.account, sizeof(b.account), "x'); DROP TABLE successes; --");
    assert_int_equal(store_success_add(s, &a, &k, 1000), 0);
    assert_int_equal(store_success_add(s, &b, &k, 3000), 0);
    assert_int_equal(store_success_add(s, &a, &k, 2000), 0); /* late: the latest time stays */
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    s = open_ok(t->db);
    assert_int_equal(store_success_get(s, &k, &ok), 0);
    assert_int_equal(ok.first_ms, 1000);
    assert_int_equal(ok.last_ms, 3000);
    assert_int_equal(ok.count, 3);
    assert_string_equal(ok.service, "SIP"); /* of the latest login, not the last written */
    assert_string_equal(ok.account, "x'); DROP TABLE successes; --");
    assert_true(addr_equal(&ok.addr, &b.remote.addr));
    /* Pruned with the retention, by the time of the latest login. */
    unsigned n = 0;
    assert_int_equal(store_prune(s, 3000, 10, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_prune(s, 3001, 10, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_success_get(s, &k, &ok), -ENOENT);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM successes"), 0);
}

static void ban_round_trips_with_every_field(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_ban b = {.prefix = fx_prefix("2001:db8:1:2::/64"),
                          .start_ms = 1000,
                          .expires_ms = 3601000,
                          .reason = STORE_BAN_THRESHOLD,
                          .failures = 5.5,
                          .offence = 2,
                          .event_type = SEC_CHALLENGE_RESPONSE_FAILED};
    snprintf(b.origin, sizeof(b.origin), "ami:pbx1");
    snprintf(b.service, sizeof(b.service), "PJSIP");
    snprintf(b.note, sizeof(b.note), "ticket 4711, \"quoted\"");
    int64_t id = 0;
    assert_int_equal(store_ban_add(s, &b, &id), 0);
    assert_true(id > 0);
    struct store_ban got;
    assert_int_equal(store_ban_last(s, &b.prefix, &got), 0);
    assert_int_equal(got.id, id);
    assert_true(addr_prefix_equal(&got.prefix, &b.prefix));
    assert_int_equal(got.expires_ms, b.expires_ms);
    assert_int_equal(got.offence, 2);
    assert_true(got.failures == 5.5);
    assert_string_equal(got.origin, "ami:pbx1");
    assert_string_equal(got.service, "PJSIP");
    assert_int_equal(got.event_type, SEC_CHALLENGE_RESPONSE_FAILED);
    assert_string_equal(got.note, "ticket 4711, \"quoted\"");
    assert_int_equal(got.end, STORE_BAN_ACTIVE);
    unsigned n = 0;
    assert_int_equal(store_ban_lift(s, &b.prefix, 2000, "cli:uid=0", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_ban_last(s, &b.prefix, &got), 0);
    assert_int_equal(got.end, STORE_BAN_LIFTED);
    assert_int_equal(got.ended_ms, 2000);
    assert_string_equal(got.lifted_by, "cli:uid=0");
    struct addr_prefix none = fx_prefix("2001:db8:1:3::/64");
    assert_int_equal(store_ban_last(s, &none, &got), -ENOENT);
    store_close(s);
}

/* The child floods the store, one transaction per 1000 events, and reports each committed total
 * on a pipe; the parent kills it with SIGKILL mid-flood. */
#define FLOOD_TURN 1000

static void flood(const char *db, int fd)
{
    struct store *s = NULL;
    if (store_open(db, NULL, &s) < 0)
        _exit(2);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    for (int64_t turn = 1; turn <= 100000; turn++) {
        for (int i = 0; i < FLOOD_TURN; i++) {
            ev.remote.addr.bytes[3] = (uint8_t)i;
            struct addr_prefix k;
            addr_prefix_of(&ev.remote.addr, 32, &k);
            if (store_failure_add(s, &ev, &k, 1, false, turn * 1000 + i) < 0)
                _exit(3);
        }
        if (store_turn_commit(s) < 0)
            _exit(4);
        int64_t committed = turn * FLOOD_TURN;
        if (write(fd, &committed, sizeof(committed)) != sizeof(committed))
            _exit(5);
    }
    _exit(0);
}

static void kill_9_mid_flood_keeps_every_committed_turn_and_integrity(void **state)
{
    struct tmp *t = *state;
    store_close(open_ok(t->db));
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        flood(t->db, p[1]);
    }
    close(p[1]);
    int64_t committed = 0, v;
    /* Bounded: stop after 20 commits, or if the child ends early. */
    for (int n = 0; n < 20 && read(p[0], &v, sizeof(v)) == sizeof(v); n++)
        committed = v;
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    /* Commits the child made after its last report we read are in the file too. */
    while (read(p[0], &v, sizeof(v)) == sizeof(v))
        committed = v;
    close(p[0]);
    assert_true(WIFSIGNALED(status));
    assert_true(committed >= 20 * FLOOD_TURN);

    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(t->db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(h);
    int64_t rows = raw_int(t->db, "SELECT count(*) FROM failures");
    /* Every reported commit is there; at most one more turn committed between its report and
     * the kill; never a partial turn. */
    assert_true(rows == committed || rows == committed + FLOOD_TURN);
    /* And the store opens it again. */
    store_close(open_ok(t->db));
}

static int count_ban(void *data, const struct store_ban *b)
{
    (*(unsigned *)data)++;
    return 0;
}

static void active_bans_exclude_ended_and_expired(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_ban b[] = {
        {.prefix = fx_prefix("192.0.2.1"), .start_ms = 0, .expires_ms = 5000, .event_type = -1},
        {.prefix = fx_prefix("192.0.2.2"), .start_ms = 0, .expires_ms = 500, .event_type = -1},
        {.prefix = fx_prefix("192.0.2.3"), .start_ms = 0, .event_type = -1},
        {.prefix = fx_prefix("192.0.2.4"),
         .start_ms = 0,
         .expires_ms = 5000,
         .ended_ms = 100,
         .end = STORE_BAN_LIFTED,
         .event_type = -1},
    };
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(store_ban_add(s, &b[i], NULL), 0);
    unsigned n = 0;
    assert_int_equal(store_bans_active(s, 1000, count_ban, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(store_bans_expire(s, 1000, 100, &n), 0);
    assert_int_equal(n, 1);
    struct store_ban got;
    assert_int_equal(store_ban_last(s, &b[1].prefix, &got), 0);
    assert_int_equal(got.end, STORE_BAN_EXPIRED);
    assert_int_equal(got.ended_ms, 500);
    store_close(s);
}

static void version_4_file_gets_the_active_bans_index_and_tally(void **state)
{
    struct tmp *t = *state;
    make_old_file(t->db, 5); /* the schema before the active-bans index and tally (005) */
    raw_exec(t->db, "INSERT INTO bans (prefix, family, len, start_ms, reason, origin) VALUES "
                    "('192.0.2.1', 4, 32, 1, 'threshold', 'ami:x'), "
                    "('192.0.2.2', 4, 32, 1, 'manual', 'cli:uid=0'), "
                    "('2001:db8::/64', 6, 64, 1, 'threshold', 'ami:x')");
    raw_exec(t->db, "INSERT INTO bans (prefix, family, len, start_ms, reason, origin, ended_ms, "
                    "end_reason) VALUES ('192.0.2.3', 4, 32, 1, 'threshold', 'ami:x', 100, "
                    "'lifted')");
    struct store *s = open_ok(t->db);
    struct store_active_tally tally;
    assert_int_equal(store_bans_active_tally(s, 1000, &tally), 0);
    assert_int_equal(tally.n[0][STORE_BAN_THRESHOLD], 1);
    assert_int_equal(tally.n[0][STORE_BAN_MANUAL], 1);
    assert_int_equal(tally.n[1][STORE_BAN_THRESHOLD], 1);
    store_close(s);
    assert_int_equal(raw_int(t->db, "PRAGMA user_version"), schema_nmigrations);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                    "AND name = 'bans_active_list'"),
                     1);
}

static void the_active_tally_follows_adds_lifts_expiry_and_pruning(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    uint64_t v4, v6;
    for (int i = 1; i <= 4; i++) {
        char a[32];
        snprintf(a, sizeof(a), "198.51.100.%d", i);
        struct store_ban b = {.prefix = fx_prefix(a), .start_ms = 10, .event_type = -1};
        b.expires_ms = i <= 2 ? 500 : 5000;
        assert_int_equal(store_ban_add(s, &b, NULL), 0);
    }
    assert_int_equal(store_bans_active_count(s, 100, &v4, &v6), 0);
    assert_int_equal(v4, 4);
    /* Two have run out: not active at 1000, marked or not. */
    assert_int_equal(store_bans_active_count(s, 1000, &v4, &v6), 0);
    assert_int_equal(v4, 2);
    unsigned n;
    assert_int_equal(store_bans_expire(s, 1000, 1, &n), 0);
    assert_int_equal(store_bans_active_count(s, 1000, &v4, &v6), 0);
    assert_int_equal(v4, 2);
    assert_int_equal(store_bans_expire(s, 1000, 10, &n), 0);
    struct addr_prefix p = fx_prefix("198.51.100.3");
    assert_int_equal(store_ban_lift(s, &p, 1100, "cli:uid=0", NULL), 0);
    assert_int_equal(store_bans_active_count(s, 1100, &v4, &v6), 0);
    assert_int_equal(v4, 1);
    /* Pruning the ended bans leaves the tally as it is. */
    assert_int_equal(store_turn_commit(s), 0);
    assert_int_equal(store_prune(s, 1000000, 100, &n), 0);
    assert_int_equal(store_bans_active_count(s, 1200, &v4, &v6), 0);
    assert_int_equal(v4, 1);
    assert_int_equal(raw_int(t->db, "SELECT sum(n) FROM bans_open"), 1);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT sum(n) FROM bans_open"), 1);
}

struct page {
    int64_t ids[16];
    char prefixes[16][ADDR_STRLEN];
    unsigned n;
};

static int page_ban(void *data, const struct store_ban *b)
{
    struct page *p = data;
    p->ids[p->n] = b->id;
    addr_prefix_format(&b->prefix, p->prefixes[p->n], sizeof(p->prefixes[0]));
    p->n++;
    return 0;
}

static void active_bans_page_in_id_order_from_a_cursor(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    /* Seven bans; the 3rd is lifted and the 5th has expired by t = 1000. */
    for (int i = 1; i <= 7; i++) {
        char a[32];
        snprintf(a, sizeof(a), "198.51.100.%d", i);
        struct store_ban b = {.prefix = fx_prefix(a),
                              .start_ms = 10 - i, /* start order is not id order */
                              .expires_ms = i == 5 ? 500 : 0,
                              .event_type = -1};
        if (i == 3) {
            b.ended_ms = 100;
            b.end = STORE_BAN_LIFTED;
        }
        assert_int_equal(store_ban_add(s, &b, NULL), 0);
    }
    struct page p = {0};
    assert_int_equal(store_bans_active_page(s, 1000, 0, 3, page_ban, &p), 0);
    assert_int_equal(p.n, 3);
    assert_string_equal(p.prefixes[0], "198.51.100.1");
    assert_string_equal(p.prefixes[1], "198.51.100.2");
    assert_string_equal(p.prefixes[2], "198.51.100.4");
    int64_t cursor = p.ids[2];
    p.n = 0;
    assert_int_equal(store_bans_active_page(s, 1000, cursor, 3, page_ban, &p), 0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.prefixes[0], "198.51.100.6");
    assert_string_equal(p.prefixes[1], "198.51.100.7");
    p.n = 0;
    assert_int_equal(store_bans_active_page(s, 1000, p.ids[1] + 0, 3, page_ban, &p), 0);
    assert_int_equal(p.n, 0);
    store_close(s);
}

static void key_seen_gives_the_first_and_last_failure(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct addr_prefix k = fx_prefix("203.0.113.5");
    int64_t first = -1, last = -1;
    assert_int_equal(store_key_seen(s, &k, &first, &last), 0);
    assert_int_equal(first, 0);
    assert_int_equal(last, 0);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "PJSIP", "203.0.113.5");
    for (int64_t ts = 3000; ts >= 1000; ts -= 1000)
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, ts), 0);
    assert_int_equal(store_key_seen(s, &k, &first, &last), 0);
    assert_int_equal(first, 1000);
    assert_int_equal(last, 3000);
    store_close(s);
}

static void active_ban_counts_are_by_family_and_skip_ended_and_expired(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_ban b[] = {
        {.prefix = fx_prefix("192.0.2.1"), .expires_ms = 5000, .event_type = -1},
        {.prefix = fx_prefix("192.0.2.2"), .expires_ms = 500, .event_type = -1},
        {.prefix = fx_prefix("192.0.2.3"), .reason = STORE_BAN_MANUAL, .event_type = -1},
        {.prefix = fx_prefix("192.0.2.4"),
         .expires_ms = 5000,
         .ended_ms = 100,
         .end = STORE_BAN_LIFTED,
         .event_type = -1},
        {.prefix = fx_prefix("2001:db8::1"), .expires_ms = 5000, .event_type = -1},
    };
    for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++)
        assert_int_equal(store_ban_add(s, &b[i], NULL), 0);
    uint64_t v4 = 99, v6 = 99;
    assert_int_equal(store_bans_active_count(s, 1000, &v4, &v6), 0);
    assert_int_equal(v4, 2);
    assert_int_equal(v6, 1);
    struct store_active_tally tally;
    assert_int_equal(store_bans_active_tally(s, 1000, &tally), 0);
    assert_int_equal(tally.n[0][STORE_BAN_THRESHOLD], 1);
    assert_int_equal(tally.n[0][STORE_BAN_MANUAL], 1);
    assert_int_equal(tally.n[1][STORE_BAN_THRESHOLD], 1);
    assert_int_equal(tally.n[1][STORE_BAN_MANUAL], 0);
    store_close(s);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

static void ban_decided_in_a_turn_whose_commit_failed_is_replayed_next_turn(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    assert_int_equal(store_incident(s, 1, "start", NULL, "x"), 0);
    assert_int_equal(store_turn_commit(s), 0);

    /* The WAL may not grow any more: the next commit fails as on a full disk. */
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", t->db);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)file_size(wal);
    signal(SIGXFSZ, SIG_IGN);
    struct store_ban b = {.prefix = fx_prefix("198.51.100.1"),
                          .start_ms = 10,
                          .expires_ms = 3600010,
                          .event_type = -1};
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "198.51.100.1");
    for (int i = 0; i < 50; i++)
        assert_int_equal(store_failure_add(s, &ev, &b.prefix, 1, false, 10), 0);
    assert_int_equal(store_ban_add(s, &b, NULL), 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int r = store_turn_commit(s);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_true(r < 0);
    assert_false(store_in_turn(s));
    struct store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.commit_failures, 1);
    assert_int_equal(st.journal_pending, 1);

    /* The next turn replays the ban (its failures are gone: the window restarts). */
    double sum = -1;
    assert_int_equal(store_window_sum(s, &b.prefix, 0, 100, &sum), 0);
    assert_true(sum == 0);
    assert_int_equal(store_turn_commit(s), 0);
    store_get_stats(s, &st);
    assert_int_equal(st.journal_replayed, 1);
    assert_int_equal(st.journal_pending, 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM bans WHERE prefix = '198.51.100.1' "
                                    "AND ended_ms IS NULL AND expires_ms = 3600010"),
                     1);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 0);
}

static void turn_rolled_back_by_sqlite_midway_is_replayed_once(void **state)
{
    struct tmp *t = *state;
    struct store_options opt = {.cache_kib = 64}; /* a small cache spills to the WAL mid-turn */
    struct store *s = NULL;
    assert_int_equal(store_open(t->db, &opt, &s), 0);
    assert_int_equal(store_incident(s, 1, "start", NULL, "x"), 0);
    assert_int_equal(store_turn_commit(s), 0);

    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", t->db);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)file_size(wal);
    signal(SIGXFSZ, SIG_IGN);
    struct store_ban a = {.prefix = fx_prefix("198.51.100.1"),
                          .start_ms = 10,
                          .expires_ms = 3600010,
                          .event_type = -1};
    struct store_ban b = {.prefix = fx_prefix("198.51.100.2"),
                          .start_ms = 20,
                          .expires_ms = 3600020,
                          .event_type = -1};
    assert_int_equal(store_ban_add(s, &a, NULL), 0);
    /* Failures until a cache spill cannot grow the WAL: SQLite rolls the turn back itself. */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "198.51.100.1");
    int r = 0;
    for (int i = 0; i < 100000 && r == 0; i++)
        r = store_failure_add(s, &ev, &a.prefix, 1, false, 10);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_true(r < 0);

    /* The turn goes on: b lands in a new transaction, which also replays a. */
    assert_int_equal(store_ban_add(s, &b, NULL), 0);
    assert_int_equal(store_turn_commit(s), 0);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM bans WHERE prefix = '198.51.100.1'"), 1);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM bans WHERE prefix = '198.51.100.2'"), 1);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 0);
}

static int64_t run_start(struct store *s, int64_t now, struct store_run *prev)
{
    int64_t id = 0;
    assert_int_equal(
        store_run_start(s, now, "0.1.0", "/etc/pbxguard/pbxguard.conf", 4242, &id, prev), 0);
    assert_int_equal(store_turn_commit(s), 0);
    assert_true(id > 0);
    return id;
}

static void a_clean_stop_then_a_start_records_the_downtime(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_run prev;
    int64_t a = run_start(s, 1000000, &prev);
    assert_int_equal(prev.id, 0);
    assert_int_equal(store_run_alive(s, a, 1060000), 0);
    assert_int_equal(store_run_stop(s, a, 1090000, "SIGTERM", 90000), 0);
    assert_int_equal(store_turn_commit(s), 0);
    int64_t b = run_start(s, 1100000, &prev);
    assert_int_equal(prev.id, a);
    assert_int_equal(prev.stop_ms, 1090000);
    assert_string_equal(prev.stop_reason, "SIGTERM");
    assert_int_equal(prev.uptime_ms, 90000);
    assert_int_equal(prev.died_ms, 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT down_ms FROM daemon_runs WHERE id = 2"), 10000);
    assert_int_equal(b, 2);
}

static void a_run_without_a_clean_stop_died_at_its_last_write(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_run prev;
    int64_t a = run_start(s, 1000000, &prev);
    assert_int_equal(store_run_alive(s, a, 1060000), 0);
    /* A failure after the last heartbeat: the last thing it wrote. */
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 1075000), 0);
    assert_int_equal(store_turn_commit(s), 0);
    /* ... killed here; started again 25 s later */
    run_start(s, 1100000, &prev);
    assert_int_equal(prev.id, a);
    assert_int_equal(prev.stop_ms, 0);
    assert_int_equal(prev.died_ms, 1075000);
    int64_t restart = 0;
    struct store_run died;
    assert_int_equal(store_run_last_died(s, 1000000, &died, &restart), 0);
    assert_int_equal(died.id, a);
    assert_int_equal(died.died_ms, 1075000);
    assert_int_equal(restart, 1100000);
    assert_int_equal(store_run_last_died(s, 1080000, &died, &restart), -ENOENT);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT down_ms FROM daemon_runs WHERE id = 2"), 25000);
}

static void a_death_with_only_a_heartbeat_is_placed_at_the_heartbeat(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_run prev;
    int64_t a = run_start(s, 1000000, &prev);
    assert_int_equal(store_run_alive(s, a, 1120000), 0);
    assert_int_equal(store_turn_commit(s), 0);
    /* The wall clock went back: the downtime is never negative. */
    run_start(s, 1110000, &prev);
    assert_int_equal(prev.died_ms, 1120000);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT down_ms FROM daemon_runs WHERE id = 2"), 0);
}

struct runs_seen {
    int64_t ids[8];
    int64_t alive[8];
    bool latest[8];
    unsigned n;
};

static int collect_run(void *data, const struct store_run *r, bool latest)
{
    struct runs_seen *rs = data;
    if (rs->n < 8) {
        rs->ids[rs->n] = r->id;
        rs->alive[rs->n] = r->alive_ms;
        rs->latest[rs->n++] = latest;
    }
    return 0;
}

static void report_runs_are_those_that_touch_the_period(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_run prev;
    int64_t a = run_start(s, 1000, &prev); /* stops long before the period */
    assert_int_equal(store_run_stop(s, a, 2000, "SIGTERM", 1000), 0);
    int64_t b = run_start(s, 3000, &prev); /* alive into the period, then stops */
    assert_int_equal(store_run_stop(s, b, 11000, "SIGINT", 8000), 0);
    int64_t c = run_start(s, 12000, &prev); /* runs through it, then dies */
    assert_int_equal(store_run_alive(s, c, 25000), 0);
    assert_int_equal(store_turn_commit(s), 0);
    int64_t d = run_start(s, 40000, &prev); /* after the period, ending a downtime within */
    store_close(s);

    struct store_options o = {.flags = STORE_READ_ONLY};
    assert_int_equal(store_open(t->db, &o, &s), 0);
    struct runs_seen rs = {0};
    assert_int_equal(store_report_runs(s, 10000, 30000, 50000, collect_run, &rs), 0);
    assert_int_equal(rs.n, 3);
    assert_int_equal(rs.ids[0], b);
    assert_int_equal(rs.ids[1], c);
    assert_int_equal(rs.ids[2], d);
    assert_true(rs.latest[2] && !rs.latest[0] && !rs.latest[1]);
    memset(&rs, 0, sizeof(rs));
    /* Long after: only the latest, still running, its last sign of life its start. */
    assert_int_equal(store_report_runs(s, 90000, 100000, 100000, collect_run, &rs), 0);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.ids[0], d);
    assert_int_equal(rs.alive[0], 40000);
    store_close(s);
}

static void prune_keeps_the_latest_run(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_run prev;
    for (int i = 0; i < 3; i++)
        run_start(s, 1000 + i * 1000, &prev);
    unsigned n = 0;
    assert_int_equal(store_prune(s, 1000000, 100, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM daemon_runs WHERE start_ms = 3000"), 1);
}

/* --- compact rows, migration, roll-up --- */

static void failures_are_small_integers_packed_against_their_key(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct {
        const char *addr, *key, *key_hex, *addr_hex;
    } cases[] = {
        {"192.0.2.1", "192.0.2.1", "C0000201", ""},
        {"192.0.2.77", "192.0.2.0/24", "C000020018", "4D"},
        {"2001:db8:1:2::77", "2001:db8:1:2::/64", "20010DB800010002", "0000000000000077"},
        {"2001:db8::5", "2001:db8::5", "20010DB8000000000000000000000005", ""},
        {"2001:db8:1:2::77", "2001:db8:1::/48",
         "20010DB8000100000000000000000000"
         "30",
         "00020000000000000077"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", cases[i].addr);
        struct addr_prefix k = fx_prefix(cases[i].key);
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 1000 + (int64_t)i), 0);
    }
    /* An address outside its key is refused, not stored under the wrong key. */
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "198.51.100.1");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 2000), -EINVAL);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char q[256];
        snprintf(q, sizeof(q),
                 "SELECT count(*) FROM failures WHERE hex(key) = '%s' AND hex(addr) = '%s' "
                 "AND ts_ms = %zu",
                 cases[i].key_hex, cases[i].addr_hex, 1000 + i);
        if (raw_int(t->db, q) != 1)
            fail_msg("case %zu (%s under %s) not packed as expected", i, cases[i].addr,
                     cases[i].key);
    }
    /* One kind and one account name for all of them. */
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failure_kinds"), 1);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM accounts"), 1);
}

static void failures_of_one_millisecond_and_of_a_clock_gone_back_are_all_kept(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    for (int i = 0; i < 50; i++)
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 5000), 0);
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 6000), 0);
    /* The wall clock stepped back: the same milliseconds again. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 5000), 0);
    double sum = 0;
    assert_int_equal(store_window_sum(s, &k, 5000, 5000, &sum), 0);
    assert_true(sum == 55);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 56);
}

/* What show says about one address, as text, for comparing before and after. */
struct show_text {
    char buf[2048];
    size_t len;
};

static int show_type_text(void *data, const char *service, int type, int64_t count, double w)
{
    struct show_text *x = data;
    x->len += (size_t)snprintf(x->buf + x->len, sizeof(x->buf) - x->len, "type %s/%d %lld %g;",
                               service, type, (long long)count, w);
    return 0;
}

static int show_account_text(void *data, const char *account, int64_t count, int64_t last_ms)
{
    struct show_text *x = data;
    x->len += (size_t)snprintf(x->buf + x->len, sizeof(x->buf) - x->len, "acct %s %lld %lld;",
                               account, (long long)count, (long long)last_ms);
    return 0;
}

static void show_text(struct store *s, const char *addr, const char *key, struct show_text *x)
{
    struct addr a = fx_addr(addr);
    struct addr_prefix k = fx_prefix(key);
    struct store_show_fns fns = {.by_type = show_type_text, .account = show_account_text};
    struct store_addr_summary sum;
    memset(x, 0, sizeof(*x));
    assert_int_equal(store_show(s, &a, &k, &fns, x, &sum), 0);
    struct store_key_stats ks;
    assert_int_equal(store_key_stats(s, &k, &ks), 0);
    x->len += (size_t)snprintf(x->buf + x->len, sizeof(x->buf) - x->len,
                               "sum %lld %lld %lld %lld; key %lld %g %lld %lld",
                               (long long)sum.count, (long long)sum.whitelisted,
                               (long long)sum.first_ms, (long long)sum.last_ms, (long long)ks.count,
                               ks.weight, (long long)ks.first_ms, (long long)ks.last_ms);
}

/* Three days of one IPv6 /64 (two addresses), one IPv4 source that was whitelisted for a while,
 * services, types and accounts mixed. */
static void three_days(struct store *s)
{
    static const char *const accounts[] = {"100", "admin", "", "1001"};
    for (int i = 0; i < 300; i++) {
        int64_t ts = (int64_t)i * 15 * 60000 + (i % 7) * 1000; /* every 15 min, 75 hours */
        struct sec_event ev =
            fx_event(i % 3 ? SEC_CHALLENGE_RESPONSE_FAILED : SEC_INVALID_ACCOUNT_ID,
                     i % 5 ? "PJSIP" : "SIP", i % 2 ? "2001:db8:1:2::10" : "2001:db8:1:2::11");
        snprintf(ev.account, sizeof(ev.account), "%s", accounts[i % 4]);
        struct addr_prefix k = fx_prefix("2001:db8:1:2::/64");
        assert_int_equal(store_failure_add(s, &ev, &k, i % 4 ? 1 : 0.5, false, ts), 0);
        ev = fx_event(SEC_INVALID_PASSWORD, "AMI", "198.51.100.9");
        k = fx_prefix("198.51.100.9");
        bool wl = i % 10 == 0;
        assert_int_equal(store_failure_add(s, &ev, &k, wl ? 0 : 1, wl, ts + 500), 0);
        if (i % 50 == 49)
            assert_int_equal(store_turn_commit(s), 0);
    }
    assert_int_equal(store_turn_commit(s), 0);
}

static void rollup_keeps_recent_windows_raw_and_show_and_list_say_the_same(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    three_days(s);
    struct show_text before[3], after[3];
    show_text(s, "2001:db8:1:2::10", "2001:db8:1:2::/64", &before[0]);
    show_text(s, "2001:db8:1:2::11", "2001:db8:1:2::/64", &before[1]);
    show_text(s, "198.51.100.9", "198.51.100.9", &before[2]);
    uint64_t failures_before = 0;
    assert_int_equal(store_failures_since(s, 24 * H, &failures_before), 0);
    struct addr_prefix k6 = fx_prefix("2001:db8:1:2::/64");
    int64_t end = 75 * H;
    double w_before = 0, w_after = -1;
    assert_int_equal(store_window_sum(s, &k6, end - 600000, end, &w_before), 0);
    assert_int_equal(store_turn_commit(s), 0);

    /* Everything before the last two hours, in batches of 7 rows. */
    unsigned rows, total = 0;
    bool done = false;
    for (int calls = 0; !done && calls < 1000; calls++) {
        assert_int_equal(store_rollup(s, end - 2 * H, 7, &rows, &done), 0);
        assert_true(rows <= 7);
        total += rows;
        assert_int_equal(store_turn_commit(s), 0);
    }
    assert_true(done);
    assert_true(total > 500);

    show_text(s, "2001:db8:1:2::10", "2001:db8:1:2::/64", &after[0]);
    show_text(s, "2001:db8:1:2::11", "2001:db8:1:2::/64", &after[1]);
    show_text(s, "198.51.100.9", "198.51.100.9", &after[2]);
    for (int i = 0; i < 3; i++)
        assert_string_equal(after[i].buf, before[i].buf);
    uint64_t failures_after = 0;
    assert_int_equal(store_failures_since(s, 24 * H, &failures_after), 0);
    assert_int_equal(failures_after, failures_before);
    assert_int_equal(store_window_sum(s, &k6, end - 600000, end, &w_after), 0);
    assert_true(w_after == w_before);
    /* A second pass finds nothing more to do. */
    assert_int_equal(store_rollup(s, end - 2 * H, 1000, &rows, &done), 0);
    assert_int_equal(rows, 0);
    assert_true(done);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures WHERE ts_ms < 73 * 3600000"), 0);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 2 * 8);
    assert_int_equal(raw_int(t->db, "SELECT sum(n) FROM failure_hours"), 600 - 16);
    assert_int_equal(raw_int(t->db, "SELECT sum(n) FROM failure_key_hours"), 600 - 16);
    assert_true(raw_int(t->db, "SELECT count(*) FROM failure_hours") < 600 - 16);
}

/* The page cache follows the raw rows of the window (the hot path's pages), not the file, and
 * stays within the bounds given: so the daemon's memory does not grow with its history. */
static void page_cache_follows_the_raw_window_within_its_bounds(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    int kib = 0;
    assert_int_equal(store_size_cache(s, 0, 256, 65536, &kib), 0);
    assert_int_equal(kib, 256); /* nothing raw: the floor */
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    for (int i = 0; i < 40000; i++)
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 10 * H + i), 0);
    assert_int_equal(store_turn_commit(s), 0);
    /* 40k rows of about 32 bytes, a quarter more for the tree, half the floor for the rest. */
    assert_int_equal(store_size_cache(s, 10 * H, 256, 65536, &kib), 0);
    assert_in_range(kib, 1500, 1800);
    assert_int_equal(store_size_cache(s, 10 * H, 256, 1024, &kib), 0);
    assert_int_equal(kib, 1024); /* the ceiling */
    /* Rows older than the window's start do not count, however many. */
    assert_int_equal(store_size_cache(s, 11 * H, 256, 65536, &kib), 0);
    assert_int_equal(kib, 256);
    store_close(s);
}

static int sum_failures(void *data, const char *service, int event_type, int64_t bucket, uint64_t n,
                        uint64_t backfilled)
{
    uint64_t *t = data;
    t[0] += n;
    t[1] += backfilled;
    return 0;
}

/* Backfilled failures stay apart through the roll-up: the report counts them from the raw rows
 * and from the hours alike. */
static void backfilled_failures_are_counted_apart_raw_and_rolled_up(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, H + i), 0);
    ev.backfilled = true;
    for (int i = 0; i < 2; i++)
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, H + 100 + i), 0);
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 6 * H + 1), 0); /* stays raw */
    assert_int_equal(store_turn_commit(s), 0);
    bool done = false;
    assert_int_equal(store_rollup(s, 5 * H, 100, NULL, &done), 0);
    assert_true(done);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 1);
    assert_int_equal(raw_int(t->db, "SELECT n FROM failure_hours WHERE flags = 2"), 2);
    assert_int_equal(raw_int(t->db, "SELECT n FROM failure_hours WHERE flags = 0"), 3);

    struct store_options opt = {.flags = STORE_READ_ONLY};
    assert_int_equal(store_open(t->db, &opt, &s), 0);
    assert_int_equal(store_snapshot_begin(s), 0);
    uint64_t tot[2] = {0};
    assert_int_equal(store_report_failures(s, 0, 7 * H, 0, H, sum_failures, tot), 0);
    assert_int_equal(tot[0], 6);
    assert_int_equal(tot[1], 3);
    store_snapshot_end(s);
    store_close(s);
}

static void failure_recorded_in_a_rolled_up_hour_is_added_to_it(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, H + 10), 0);
    bool done = false;
    unsigned rows = 0;
    assert_int_equal(store_rollup(s, 5 * H, 100, &rows, &done), 0);
    assert_int_equal(rows, 1);
    /* A failure of that hour arrives late (a log read after the fact). */
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, H + 5), 0);
    assert_int_equal(store_rollup(s, 5 * H, 100, &rows, &done), 0);
    assert_int_equal(rows, 1);
    assert_int_equal(store_turn_commit(s), 0);
    struct store_key_stats ks;
    assert_int_equal(store_key_stats(s, &k, &ks), 0);
    assert_int_equal(ks.count, 2);
    assert_int_equal(ks.first_ms, H + 5);
    assert_int_equal(ks.last_ms, H + 10);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT n FROM failure_hours"), 2);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 0);
}

static void version_2_file_is_migrated_keeping_its_failures(void **state)
{
    struct tmp *t = *state;
    make_old_file(t->db, 2);
    raw_exec(t->db,
             "INSERT INTO failures (ts_ms, key, addr, port, transport, service, event_type, "
             "account, source, weight, whitelisted) VALUES "
             "(1000, '192.0.2.1', '192.0.2.1', 5060, 'UDP', 'PJSIP', 11, '100', 'ami:pbx1', 1, 0),"
             "(2000, '192.0.2.1', '192.0.2.1', NULL, NULL, 'PJSIP', 1, NULL, 'ami:pbx1', 1, 0),"
             "(2000, '192.0.2.1', '192.0.2.1', 5061, 'TCP', 'SIP', 12, '100', 'ami:pbx1', 1, 0),"
             "(3000, '2001:db8:1:2::/64', '2001:db8:1:2::10', 5060, 'WSS', 'PJSIP', 11, "
             "'admin', 'ami:pbx2', 0.5, 0),"
             "(4000, '10.0.0.5', '10.0.0.5', 5060, 'UDP', 'PJSIP', 12, '201', 'ami:pbx1', 0, 1),"
             "(5000, 'garbage', 'garbage', 5060, 'UDP', 'PJSIP', 12, '201', 'ami:pbx1', 1, 0);"
             "INSERT INTO bans (prefix, family, len, start_ms, reason, origin) "
             "VALUES ('192.0.2.1', 4, 32, 2500, 'threshold', 'ami:pbx1')");
    struct store *s = open_ok(t->db);
    struct addr_prefix k = fx_prefix("192.0.2.1");
    double sum = 0;
    assert_int_equal(store_window_sum(s, &k, 0, 10000, &sum), 0);
    assert_true(sum == 3);
    struct show_text x;
    show_text(s, "192.0.2.1", "192.0.2.1", &x);
    assert_string_equal(x.buf, "type PJSIP/1 1 1;type PJSIP/11 1 1;type SIP/12 1 1;"
                               "acct 100 2 2000;sum 3 0 1000 2000; key 3 3 1000 2000");
    show_text(s, "2001:db8:1:2::10", "2001:db8:1:2::/64", &x);
    assert_string_equal(x.buf, "type PJSIP/11 1 0.5;acct admin 1 3000;sum 1 0 3000 3000; "
                               "key 1 0.5 3000 3000");
    show_text(s, "10.0.0.5", "10.0.0.5", &x);
    assert_string_equal(x.buf, "type PJSIP/12 1 0;acct 201 1 4000;sum 1 1 4000 4000; "
                               "key 1 0 4000 4000");
    struct store_ban b;
    assert_int_equal(store_ban_last(s, &k, &b), 0);
    assert_int_equal(b.start_ms, 2500);
    store_close(s);
    /* The row no pbxguardd could have written is the only one left out. */
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 5);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures WHERE transport = 5 "
                                    "AND port = 5060"),
                     1);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures WHERE transport IS NULL "
                                    "AND port IS NULL"),
                     1);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failure_kinds"), 5);
    assert_int_equal(raw_int(t->db, "SELECT sum(n) FROM failure_counts"), 5);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
                                    "AND tbl_name = 'failures'"),
                     0);
}

/* --- WAL checkpoints off the daemon's thread --- */

/* One turn of n failures from n sources (a flood touches pages all over the B-tree). */
static void turn_of_failures(struct store *s, int64_t ts, unsigned n)
{
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "10.0.0.1");
    for (unsigned i = 0; i < n; i++) {
        uint32_t a = (uint32_t)(ts * 7919 + i * 104729);
        ev.remote.addr.bytes[1] = (uint8_t)(a >> 16);
        ev.remote.addr.bytes[2] = (uint8_t)(a >> 8);
        ev.remote.addr.bytes[3] = (uint8_t)a;
        struct addr_prefix k;
        addr_prefix_of(&ev.remote.addr, 32, &k);
        assert_int_equal(store_failure_add(s, &ev, &k, 1, false, ts), 0);
    }
    assert_int_equal(store_turn_commit(s), 0);
}

static void commits_never_checkpoint_and_the_helper_keeps_the_log_bounded(void **state)
{
    struct tmp *t = *state;
    struct store_options opt = {.flags = STORE_OWN_CHECKPOINTS};
    struct store *s = NULL;
    assert_int_equal(store_open(t->db, &opt, &s), 0);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", t->db);
    assert_int_equal(store_checkpoint_request(s), 0);
    assert_int_equal(store_checkpoint_wait(s), 0);
    off_t db0 = file_size(t->db);

    /* Far more than SQLite's autocheckpoint threshold (1000 pages): nothing reaches the file,
     * the log only grows. */
    off_t last = 0;
    for (int64_t turn = 1; turn <= 40; turn++) {
        turn_of_failures(s, turn, 2000);
        off_t w = file_size(wal);
        assert_true(w >= last);
        last = w;
    }
    assert_true(last > 8 << 20);
    assert_int_equal(file_size(t->db), db0);

    /* The helper copies it all; from then on the log restarts after every checkpoint and
     * stays within what one turn writes (or the size it is cut back to). */
    assert_int_equal(store_checkpoint_request(s), 0);
    assert_int_equal(store_checkpoint_wait(s), 0);
    assert_true(file_size(t->db) > db0);
    struct store_wal_stats st;
    store_wal_stats(s, &st);
    assert_int_equal(st.checkpoints, 2);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.copied_frames, st.log_frames);
    off_t one_turn = 0, most = 0;
    for (int64_t turn = 41; turn <= 80; turn++) {
        turn_of_failures(s, turn, 2000);
        assert_int_equal(store_checkpoint_request(s), 0);
        assert_int_equal(store_checkpoint_wait(s), 0);
        off_t w = file_size(wal);
        if (turn == 42)
            one_turn = w;
        if (turn > 42 && w > most)
            most = w;
    }
    store_wal_stats(s, &st);
    assert_int_equal(st.checkpoints, 42);
    assert_true(most <= (one_turn > STORE_WAL_KEEP_BYTES ? one_turn : STORE_WAL_KEEP_BYTES) +
                            (one_turn / 2));
    assert_true(most < last);
    store_close(s);
}

/* What a backfill waits on past its bound of write-ahead log: behind while the log is bigger
 * than the bound and not all copied (asking the helper for a checkpoint), caught up once a
 * checkpoint copied it whole and nothing was written since, behind again at the next write. */
static void the_log_is_behind_until_a_checkpoint_copied_all_of_it(void **state)
{
    struct tmp *t = *state;
    struct store_options opt = {.flags = STORE_OWN_CHECKPOINTS};
    struct store *s = NULL;
    assert_int_equal(store_open(t->db, &opt, &s), 0);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", t->db);
    turn_of_failures(s, 1, 2000);
    off_t w = file_size(wal);
    assert_true(w > 64 << 10);
    /* Within the bound: never behind, and no checkpoint is asked for. */
    assert_false(store_wal_behind(s, (uint64_t)w));
    struct store_wal_stats st;
    store_wal_stats(s, &st);
    assert_int_equal(st.checkpoints, 0);
    /* Past it: behind, and the helper is asked; once it copied everything, caught up. */
    assert_true(store_wal_behind(s, 64 << 10));
    assert_int_equal(store_checkpoint_wait(s), 0);
    store_wal_stats(s, &st);
    assert_int_equal(st.checkpoints, 1);
    assert_int_equal(st.copied_frames, st.log_frames);
    assert_false(store_wal_behind(s, 64 << 10));
    /* A reader holding an old snapshot keeps the new frames from being copied: behind. */
    sqlite3 *r;
    assert_int_equal(sqlite3_open_v2(t->db, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(r, "BEGIN; SELECT count(*) FROM failures", NULL, NULL, NULL),
                     SQLITE_OK);
    turn_of_failures(s, 2, 4000);
    /* (The log started over in the same file: its size alone cannot tell.) */
    assert_true(store_wal_behind(s, 64 << 10));
    assert_int_equal(store_checkpoint_wait(s), 0);
    assert_true(store_wal_behind(s, 64 << 10));
    assert_int_equal(store_checkpoint_wait(s), 0);
    /* With the reader gone the next checkpoint copies it all. */
    assert_int_equal(sqlite3_exec(r, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(r);
    assert_true(store_wal_behind(s, 64 << 10));
    assert_int_equal(store_checkpoint_wait(s), 0);
    assert_false(store_wal_behind(s, 64 << 10));
    store_close(s);
}

static void a_reader_holds_the_log_back_and_truncate_is_the_hard_bound(void **state)
{
    struct tmp *t = *state;
    struct store_options opt = {.flags = STORE_OWN_CHECKPOINTS};
    struct store *s = NULL;
    assert_int_equal(store_open(t->db, &opt, &s), 0);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", t->db);
    turn_of_failures(s, 1, 100);
    /* A report reading an old snapshot: the frames after it cannot be copied yet. */
    sqlite3 *r;
    assert_int_equal(sqlite3_open_v2(t->db, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(r, "BEGIN; SELECT count(*) FROM failures", NULL, NULL, NULL),
                     SQLITE_OK);
    turn_of_failures(s, 2, 2000);
    assert_int_equal(store_checkpoint_request(s), 0);
    assert_int_equal(store_checkpoint_wait(s), 0);
    struct store_wal_stats st;
    store_wal_stats(s, &st);
    assert_int_equal(st.incomplete, 1);
    assert_true(st.copied_frames < st.log_frames);
    assert_int_equal(sqlite3_exec(r, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(r);
    /* With the reader gone the log can be copied and cut to nothing. */
    assert_true(file_size(wal) > 0);
    assert_int_equal(store_checkpoint_truncate(s), 0);
    assert_int_equal(file_size(wal), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failures"), 2100);
}

struct walked {
    char order[512];
    unsigned n;
};

static int walk_text(void *data, const struct store_ban *b)
{
    struct walked *w = data;
    char buf[ADDR_STRLEN];
    size_t len = strlen(w->order);
    snprintf(w->order + len, sizeof(w->order) - len, "%s ",
             addr_prefix_format(&b->prefix, buf, sizeof(buf)));
    w->n++;
    return 0;
}

static void restore_walk_goes_longest_first_in_slices_and_skips_what_ended_meanwhile(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    /* ten timed bans (expiring at 10000 + i * 1000), two permanent ones */
    for (int i = 0; i < 10; i++) {
        char p[32];
        snprintf(p, sizeof(p), "192.0.2.%d", i);
        struct store_ban b = {.prefix = fx_prefix(p),
                              .start_ms = 100,
                              .expires_ms = 10000 + i * 1000,
                              .event_type = -1};
        assert_int_equal(store_ban_add(s, &b, NULL), 0);
    }
    for (int i = 0; i < 2; i++) {
        char p[32];
        snprintf(p, sizeof(p), "198.51.100.%d", i);
        struct store_ban b = {.prefix = fx_prefix(p), .start_ms = 100, .event_type = -1};
        assert_int_equal(store_ban_add(s, &b, NULL), 0);
    }
    struct store_ban_cursor cur = {0};
    assert_int_equal(store_ban_max_id(s, &cur.max_id), 0);
    assert_int_equal(cur.max_id, 12);
    struct walked w = {0};
    unsigned n;
    assert_int_equal(store_bans_active_slice(s, 1000, &cur, 4, walk_text, &w, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(w.order, "198.51.100.1 198.51.100.0 192.0.2.9 192.0.2.8 ");
    assert_false(cur.done);
    /* Between two slices: one not yet restored is lifted, two run out, and a new ban comes. */
    unsigned lifted = 0;
    struct addr_prefix p5 = fx_prefix("192.0.2.5");
    assert_int_equal(store_ban_lift(s, &p5, 2000, "cli:uid=0", &lifted), 0);
    assert_int_equal(lifted, 1);
    struct store_ban late = {
        .prefix = fx_prefix("203.0.113.1"), .start_ms = 2000, .event_type = -1};
    assert_int_equal(store_ban_add(s, &late, NULL), 0);
    memset(&w, 0, sizeof(w));
    for (int calls = 0; !cur.done && calls < 10; calls++)
        assert_int_equal(store_bans_active_slice(s, 11500, &cur, 2, walk_text, &w, &n), 0);
    assert_true(cur.done);
    assert_string_equal(w.order, "192.0.2.7 192.0.2.6 192.0.2.4 192.0.2.3 192.0.2.2 ");
    /* A finished walk stays finished. */
    assert_int_equal(store_bans_active_slice(s, 11500, &cur, 2, walk_text, &w, &n), 0);
    assert_int_equal(n, 0);
    store_close(s);
}

static void a_keys_first_failure_follows_the_retention(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct sec_event ev = fx_event(SEC_INVALID_PASSWORD, "SIP", "192.0.2.1");
    struct addr_prefix k = fx_prefix("192.0.2.1");
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 10 * 60000), 0);
    assert_int_equal(store_failure_add(s, &ev, &k, 1, false, 5 * H + 20 * 60000), 0);
    bool done = false;
    while (!done)
        assert_int_equal(store_rollup(s, 8 * H, 100, NULL, &done), 0);
    assert_int_equal(store_turn_commit(s), 0);
    assert_int_equal(raw_int(t->db, "SELECT first_ms FROM failure_keys"), 10 * 60000);
    /* The first hour goes: the key was first seen in its next one. */
    unsigned n = 0;
    assert_int_equal(store_prune(s, 2 * H, 100, &n), 0);
    assert_int_equal(store_turn_commit(s), 0);
    assert_int_equal(raw_int(t->db, "SELECT first_ms FROM failure_keys"), 5 * H + 20 * 60000);
    /* Then the last one: nothing is left to remember. */
    assert_int_equal(store_prune(s, 6 * H, 100, &n), 0);
    assert_int_equal(store_turn_commit(s), 0);
    store_close(s);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failure_keys"), 0);
}

static void a_prefix_known_to_have_no_ban_is_found_once_banned(void **state)
{
    struct tmp *t = *state;
    struct store *s = open_ok(t->db);
    struct store_ban got, b = {.prefix = fx_prefix("198.51.100.9"),
                               .start_ms = 10,
                               .expires_ms = 3600010,
                               .event_type = -1};
    /* Asked twice: the second answer comes from what the first learned. */
    assert_int_equal(store_ban_last(s, &b.prefix, &got), -ENOENT);
    assert_int_equal(store_ban_last(s, &b.prefix, &got), -ENOENT);
    assert_int_equal(store_ban_add(s, &b, NULL), 0);
    assert_int_equal(store_ban_last(s, &b.prefix, &got), 0);
    assert_int_equal(got.expires_ms, 3600010);
    /* Lifted, it still has a last ban. */
    assert_int_equal(store_ban_lift(s, &b.prefix, 20, "cli:uid=0", NULL), 0);
    assert_int_equal(store_ban_last(s, &b.prefix, &got), 0);
    assert_int_equal(got.end, STORE_BAN_LIFTED);
    store_close(s);
}

/* --- the daily tier ------------------------------------------------------------------------ */

#define DAY (24 * H)
#define D0 (20000 * DAY) /* a UTC midnight */

/* Ten days of failures from 40 sources (a few IPv6 /64s), a dozen accounts and none, three
 * event types on two services, some backfilled, in no particular order of time; rolled up
 * before day 9 12:00 (the rest stays raw) and, with prune_before, pruned before it. */
static void ten_days(const char *db, int64_t prune_before)
{
    static const char *const names[] = {"",    "100",   "101",  "admin", "1000", "test",
                                        "200", "guest", "root", "sip",   "300",  "4000"};
    static const enum sec_event_type types[] = {SEC_INVALID_PASSWORD, SEC_CHALLENGE_RESPONSE_FAILED,
                                                SEC_INVALID_ACCOUNT_ID};
    struct store *s = open_ok(db);
    uint64_t x = 0x2545f4914f6cdd1dULL;
    for (int i = 0; i < 3000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned src = (unsigned)(x % 40);
        char addr[64], key[64];
        if (src % 8 == 7) {
            snprintf(addr, sizeof(addr), "2001:db8:%x::%x", src, (unsigned)(x >> 40) % 5 + 1);
            snprintf(key, sizeof(key), "2001:db8:%x::/64", src);
        } else {
            snprintf(addr, sizeof(addr), "198.51.100.%u", src + 1);
            snprintf(key, sizeof(key), "%s", addr);
        }
        struct sec_event ev = fx_event(types[(x >> 8) % 3], (x >> 12) % 4 ? "PJSIP" : "SIP", addr);
        snprintf(ev.account, sizeof(ev.account), "%s", names[(x >> 16) % 12]);
        ev.backfilled = (x >> 20) % 7 == 0;
        struct addr_prefix k = fx_prefix(key);
        int64_t ts = D0 + (int64_t)((x >> 24) % (uint64_t)(10 * DAY));
        assert_int_equal(store_failure_add(s, &ev, &k, 1, (x >> 30) % 11 == 0, ts), 0);
        if (i % 100 == 99)
            assert_int_equal(store_turn_commit(s), 0);
    }
    assert_int_equal(store_turn_commit(s), 0);
    bool done = false;
    for (int calls = 0; !done && calls < 1000; calls++) {
        assert_int_equal(store_rollup(s, D0 + 9 * DAY + 12 * H, 37, NULL, &done), 0);
        assert_int_equal(store_turn_commit(s), 0);
    }
    assert_true(done);
    unsigned n = 50;
    for (int calls = 0; prune_before && n >= 50 && calls < 1000; calls++) {
        assert_int_equal(store_prune(s, prune_before, 50, &n), 0);
        assert_int_equal(store_turn_commit(s), 0);
    }
    assert_true(!prune_before || n < 50);
    store_close(s);
}

static int dump_failure(void *data, const char *service, int type, int64_t bucket, uint64_t n,
                        uint64_t backfilled)
{
    fprintf(data, "f %s %d %lld %llu %llu\n", service, type, (long long)bucket,
            (unsigned long long)n, (unsigned long long)backfilled);
    return 0;
}

static int dump_source(void *data, const struct store_report_source *src)
{
    fprintf(data, "s %s %llu %lld %lld %llu %u %u %s %s %d\n", src->key,
            (unsigned long long)src->attempts, (long long)src->first_ms, (long long)src->last_ms,
            (unsigned long long)src->accounts, src->nservices, src->types, src->services[0],
            src->nservices > 1 ? src->services[1] : "-", src->ban_found);
    return 0;
}

static int dump_new_source(void *data, const char *key, int64_t first_ms, uint64_t attempts)
{
    fprintf(data, "n %s %lld %llu\n", key, (long long)first_ms, (unsigned long long)attempts);
    return 0;
}

static int dump_account(void *data, const char *account, uint64_t attempts, uint64_t sources)
{
    fprintf(data, "a %s %llu %llu\n", account, (unsigned long long)attempts,
            (unsigned long long)sources);
    return 0;
}

/* Everything the failures give a report of [from, to), as text: what the comparisons compare.
 * The buckets' totals are sorted by the callers' order (the store's), so both modes must agree
 * on it too. */
static char *period_text(struct store *s, bool hours_only, int64_t from, int64_t to,
                         int64_t bucket0, int64_t bucket)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    store_report_hours_only(s, hours_only);
    assert_int_equal(store_snapshot_begin(s), 0);
    assert_int_equal(store_report_failures(s, from, to, bucket0, bucket, dump_failure, f), 0);
    struct store_report_sources_fns fns = {dump_source, dump_new_source};
    struct store_report_source_counts counts;
    assert_int_equal(store_report_sources(s, from, to, to, 1000, &fns, f, &counts), 0);
    fprintf(f, "c %llu %llu\n", (unsigned long long)counts.sources,
            (unsigned long long)counts.new_sources);
    assert_int_equal(store_report_accounts(s, from, to, 1000, dump_account, f), 0);
    store_snapshot_end(s);
    fclose(f);
    return text;
}

/* The lines of a period text that count failures by bucket, summed (0 for an empty period). */
static uint64_t text_failures(const char *text)
{
    uint64_t sum = 0;
    for (const char *p = text; (p = strstr(p, "f ")) != NULL; p++) {
        if (p != text && p[-1] != '\n')
            continue;
        unsigned long long n;
        char service[32];
        int type;
        long long b;
        if (sscanf(p, "f %31s %d %lld %llu", service, &type, &b, &n) == 4)
            sum += n;
    }
    return sum;
}

struct period_case {
    int64_t from, to, bucket0, bucket;
    const char *what;
};

/* Each period, read with the daily tier and from the hourly rows alone: the same figures. */
static void compare_periods(const char *db, const struct period_case *cases, size_t ncases)
{
    struct store *s;
    struct store_options opt = {.flags = STORE_READ_ONLY};
    assert_int_equal(store_open(db, &opt, &s), 0);
    for (size_t i = 0; i < ncases; i++) {
        const struct period_case *c = &cases[i];
        char *days = period_text(s, false, c->from, c->to, c->bucket0, c->bucket);
        char *hours = period_text(s, true, c->from, c->to, c->bucket0, c->bucket);
        if (strcmp(days, hours) != 0)
            fail_msg("%s: the daily tier says\n%s\nthe hours say\n%s", c->what, days, hours);
        free(days);
        free(hours);
    }
    store_close(s);
}

static const struct period_case ten_day_cases[] = {
    {D0 + 2 * DAY, D0 + 3 * DAY, D0 + 2 * DAY, H, "a whole UTC day"},
    {D0 + 2 * DAY + 30 * 60000, D0 + 3 * DAY + 30 * 60000, D0 + 2 * DAY, H, "a day from 00:30"},
    {D0 + 2 * DAY + 7 * H + 10 * 60000, D0 + 9 * DAY + 7 * H + 10 * 60000, D0 + 2 * DAY + 7 * H, H,
     "a week from 07:10, into the raw rows"},
    {D0 + 2 * DAY, D0 + 9 * DAY, D0 + 2 * DAY, H, "a week of whole days"},
    /* Local days of UTC+2 and UTC+05:30 (buckets on the half hour: the hours are read). */
    {D0 + 3 * DAY - 2 * H, D0 + 4 * DAY - 2 * H, D0 + 3 * DAY - 2 * H, H, "a day of UTC+2"},
    {D0 + 3 * DAY - 11 * H / 2, D0 + 10 * DAY - 11 * H / 2, D0 + 3 * DAY - 11 * H / 2, H,
     "a week of UTC+05:30"},
    {D0 + 3 * DAY - 11 * H / 2, D0 + 5 * DAY - 11 * H / 2, D0 + 3 * DAY - 11 * H / 2, DAY,
     "two days of UTC+05:30, daily buckets"},
    {D0 - 10 * DAY, D0 + 20 * DAY, D0 - 10 * DAY, DAY, "a month with daily buckets"},
    {D0 + DAY, D0 + 4 * DAY, D0 + DAY, H, "from the day the retention cut into"},
    {D0 + 5 * DAY + 3 * H, D0 + 5 * DAY + 9 * H, D0 + 5 * DAY + 3 * H, H, "hours within a day"},
    {D0 + 8 * DAY, D0 + 10 * DAY, D0 + 8 * DAY, H, "the last two days, half of one raw"},
};

static void daily_tier_gives_the_hours_figures_across_days_and_time_zones(void **state)
{
    struct tmp *t = *state;
    ten_days(t->db, D0 + DAY + 13 * H); /* the retention cuts into day 1 */
    assert_true(raw_int(t->db, "SELECT count(*) FROM failure_key_days") > 0);
    assert_int_equal(raw_int(t->db, "SELECT before_hour FROM failure_retention"),
                     (D0 + DAY + 13 * H) / H);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failure_key_days WHERE day < 20001"), 0);
    assert_int_equal(raw_int(t->db, "SELECT count(*) FROM failure_hours WHERE hour < 480037"), 0);
    /* The tier holds what the hours do, day by day, for the days the retention left whole. */
    assert_int_equal(raw_int(t->db, "SELECT (SELECT total(n) FROM failure_key_days WHERE "
                                    "day >= 20002) = (SELECT total(n) FROM failure_hours WHERE "
                                    "hour >= 20002 * 24)"),
                     1);
    compare_periods(t->db, ten_day_cases, sizeof(ten_day_cases) / sizeof(ten_day_cases[0]));

    /* And a whole day is read from the tier: with its hourly rows gone, it still counts. */
    struct store *s;
    struct store_options opt = {.flags = STORE_READ_ONLY};
    assert_int_equal(store_open(t->db, &opt, &s), 0);
    char *before = period_text(s, false, D0 + 4 * DAY, D0 + 5 * DAY, D0 + 4 * DAY, H);
    store_close(s);
    raw_exec(t->db, "DELETE FROM failure_hours WHERE hour >= 20004 * 24 AND hour < 20005 * 24");
    assert_int_equal(store_open(t->db, &opt, &s), 0);
    char *days = period_text(s, false, D0 + 4 * DAY, D0 + 5 * DAY, D0 + 4 * DAY, H);
    char *hours = period_text(s, true, D0 + 4 * DAY, D0 + 5 * DAY, D0 + 4 * DAY, H);
    store_close(s);
    assert_true(text_failures(before) > 200);
    assert_int_equal(text_failures(days), text_failures(before));
    assert_int_equal(text_failures(hours), 0);
    free(before);
    free(days);
    free(hours);
}

/* The rows of the tier's tables, in order, as text. */
static char *tier_text(const char *db)
{
    static const char *const q[] = {
        "SELECT day, hex(key), n, first_off, last_off FROM failure_key_days ORDER BY 1, 2",
        "SELECT day, account, n FROM failure_account_days ORDER BY 1, 2",
        "SELECT day, account, hex(key) FROM failure_account_keys ORDER BY 1, 2, 3",
        "SELECT hour, kind, flags, n FROM failure_kind_hours ORDER BY 1, 2, 3"};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (size_t i = 0; i < 4; i++) {
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(h, q[i], -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++)
                fprintf(f, "%s ", (const char *)sqlite3_column_text(st, c));
            fputc('\n', f);
        }
        sqlite3_finalize(st);
        fputc('-', f);
    }
    sqlite3_close(h);
    fclose(f);
    return text;
}

/* A file of the schema before the daily tier, its history rolled up by the hour: the migration
 * rolls that history up by the day, to the same rows the roll-up writes as it goes, and the
 * reports read the same figures from it. */
static void version_9_file_gets_the_daily_tier_of_its_history(void **state)
{
    struct tmp *t = *state;
    ten_days(t->db, 0);
    char *written = tier_text(t->db);
    assert_true(strlen(written) > 1000);
    /* What schema 9 left: the same failures, hours and keys, without the tier. */
    raw_exec(t->db, "DROP TABLE failure_key_days; DROP TABLE failure_account_days; "
                    "DROP TABLE failure_account_keys; DROP TABLE failure_kind_hours; "
                    "DROP TABLE failure_retention; PRAGMA user_version = 9");
    store_close(open_ok(t->db));
    assert_int_equal(raw_int(t->db, "PRAGMA user_version"), schema_nmigrations);
    char *migrated = tier_text(t->db);
    assert_string_equal(migrated, written);
    free(written);
    free(migrated);
    compare_periods(t->db, ten_day_cases, sizeof(ten_day_cases) / sizeof(ten_day_cases[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fresh_file_gets_the_newest_schema_in_wal_mode, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reopening_a_current_file_keeps_its_data, setup, teardown),
        cmocka_unit_test_setup_teardown(version_1_file_is_migrated_to_the_ban_note_keeping_its_bans,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(previous_version_file_gets_the_daemon_runs_keeping_its_data,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(version_5_file_is_migrated_to_remote_bans_keeping_its_bans,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            outbox_keeps_changes_until_acknowledged_and_cursor_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(
            previous_version_file_gains_the_security_log_columns_keeping_its_failures, setup,
            teardown),
        cmocka_unit_test_setup_teardown(an_event_recorded_once_is_found_again_by_its_identity,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(deferred_failures_are_written_in_order_and_once_per_place,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(window_peak_finds_the_heaviest_window_around_a_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(seclog_cursor_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(backfilled_failures_are_counted_apart_raw_and_rolled_up,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(empty_version_0_file_is_migrated, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_migration_leaves_the_file_as_it_was, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused_and_left_untouched, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(file_that_is_not_a_database_is_refused_untouched, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(read_only_store_reports_erofs_on_write, setup, teardown),
        cmocka_unit_test_setup_teardown(read_only_open_of_an_older_schema_says_run_the_daemon,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(read_only_open_of_a_file_never_initialized_says_so, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_snapshot_is_for_readers_only, setup, teardown),
        cmocka_unit_test_setup_teardown(read_only_open_never_creates_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(locked_database_reports_ebusy_and_works_once_released,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(window_sum_is_exact_at_both_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(commit_ends_the_turn_and_makes_it_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(attacker_text_is_stored_as_data, setup, teardown),
        cmocka_unit_test_setup_teardown(successes_are_one_row_per_key_with_the_latest_login, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(prune_deletes_old_rows_in_chunks_and_keeps_active_bans,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(ban_round_trips_with_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_9_mid_flood_keeps_every_committed_turn_and_integrity,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(active_ban_counts_are_by_family_and_skip_ended_and_expired,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(active_bans_exclude_ended_and_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(version_4_file_gets_the_active_bans_index_and_tally, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_active_tally_follows_adds_lifts_expiry_and_pruning,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(active_bans_page_in_id_order_from_a_cursor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(key_seen_gives_the_first_and_last_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(
            ban_decided_in_a_turn_whose_commit_failed_is_replayed_next_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(turn_rolled_back_by_sqlite_midway_is_replayed_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_clean_stop_then_a_start_records_the_downtime, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_run_without_a_clean_stop_died_at_its_last_write, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_death_with_only_a_heartbeat_is_placed_at_the_heartbeat,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(report_runs_are_those_that_touch_the_period, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(prune_keeps_the_latest_run, setup, teardown),
        cmocka_unit_test_setup_teardown(failures_are_small_integers_packed_against_their_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            failures_of_one_millisecond_and_of_a_clock_gone_back_are_all_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(
            rollup_keeps_recent_windows_raw_and_show_and_list_say_the_same, setup, teardown),
        cmocka_unit_test_setup_teardown(failure_recorded_in_a_rolled_up_hour_is_added_to_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(page_cache_follows_the_raw_window_within_its_bounds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(version_2_file_is_migrated_keeping_its_failures, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            commits_never_checkpoint_and_the_helper_keeps_the_log_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(the_log_is_behind_until_a_checkpoint_copied_all_of_it,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_reader_holds_the_log_back_and_truncate_is_the_hard_bound,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            restore_walk_goes_longest_first_in_slices_and_skips_what_ended_meanwhile, setup,
            teardown),
        cmocka_unit_test_setup_teardown(a_keys_first_failure_follows_the_retention, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_prefix_known_to_have_no_ban_is_found_once_banned, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            daily_tier_gives_the_hours_figures_across_days_and_time_zones, setup, teardown),
        cmocka_unit_test_setup_teardown(version_9_file_gets_the_daily_tier_of_its_history, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
