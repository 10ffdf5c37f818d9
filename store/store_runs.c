/* The daemon's runs (daemon_runs, schema 004): a row per start, a clean stop, and the death
 * of a run that left none, found by the next start. A few statements a minute at most: they
 * are prepared when used, not at store_open(). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store_internal.h"
#include "store_report.h"

#define RUN_COLUMNS                                                                                \
    "id, start_ms, version, config, pid, alive_ms, stop_ms, stop_reason, uptime_ms, died_ms, "     \
    "down_ms"

static int64_t col_or(sqlite3_stmt *st, int i, int64_t null_value)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? null_value : sqlite3_column_int64(st, i);
}

/* Fills r from a row of RUN_COLUMNS. */
static void read_run(sqlite3_stmt *st, struct store_run *r)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(st, 0);
    r->start_ms = sqlite3_column_int64(st, 1);
    store_column_text(st, 2, r->version, sizeof(r->version));
    store_column_text(st, 3, r->config, sizeof(r->config));
    r->pid = (unsigned)store_column_u64(st, 4);
    r->alive_ms = sqlite3_column_int64(st, 5);
    r->stop_ms = col_or(st, 6, 0);
    store_column_text(st, 7, r->stop_reason, sizeof(r->stop_reason));
    r->uptime_ms = col_or(st, 8, 0);
    r->died_ms = col_or(st, 9, 0);
    r->down_ms = col_or(st, 10, -1);
}

static void bind_text(sqlite3_stmt *st, int i, const char *t, size_t max)
{
    sqlite3_bind_text(st, i, t ? t : "", (int)strnlen(t ? t : "", max), SQLITE_TRANSIENT);
}

/* The time of the last thing the daemon wrote up to now_ms, at least since_ms: the newest
 * failure (from the per-hour counts, a few hundred rows at most), ban or incident (each an
 * indexed max()). */
static int last_write(struct store *s, int64_t since_ms, int64_t now_ms, int64_t *ret_ms)
{
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, &st,
                           "SELECT max((SELECT coalesce(max(last_ms), 0) FROM failure_counts "
                           "WHERE last_ms <= ?1), (SELECT coalesce(max(start_ms), 0) FROM bans "
                           "WHERE start_ms <= ?1), (SELECT coalesce(max(ts_ms), 0) FROM "
                           "daemon_events WHERE ts_ms <= ?1))",
                           1, now_ms);
    if (rc == 0 && (rc = store_step(s, st)) > 0) {
        int64_t t = sqlite3_column_int64(st, 0);
        *ret_ms = t > since_ms ? t : since_ms;
        rc = 0;
    } else if (rc == 0) {
        rc = -EIO;
    }
    sqlite3_finalize(st);
    return rc;
}

/* The most recent run, if any (*ret id 0 if none). */
static int latest_run(struct store *s, struct store_run *ret)
{
    sqlite3_stmt *st = NULL;
    memset(ret, 0, sizeof(*ret));
    int rc = store_prepare(s, &st,
                           "SELECT " RUN_COLUMNS " FROM daemon_runs ORDER BY id DESC LIMIT 1", 0);
    if (rc == 0 && (rc = store_step(s, st)) > 0) {
        read_run(st, ret);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

int store_run_start(struct store *s, int64_t now_ms, const char *version, const char *config,
                    unsigned pid, int64_t *ret_id, struct store_run *ret_prev)
{
    struct store_run prev;
    int64_t down_ms = -1;
    sqlite3_stmt *st = NULL;
    int rc = store_turn_begin(s);
    if (rc == 0)
        rc = latest_run(s, &prev);
    if (rc == 0 && prev.id && !prev.stop_ms && !prev.died_ms) {
        /* It left no clean stop: it died, after the last thing it wrote. */
        int64_t last = prev.alive_ms;
        rc = last_write(s, prev.alive_ms, now_ms, &last);
        if (rc == 0)
            rc = store_prepare(s, &st, "UPDATE daemon_runs SET died_ms = ?2 WHERE id = ?1", 2,
                               prev.id, last);
        if (rc == 0)
            rc = store_step(s, st);
        sqlite3_finalize(st);
        st = NULL;
        prev.died_ms = last;
    }
    if (rc == 0 && prev.id) {
        int64_t end = prev.stop_ms ? prev.stop_ms : prev.died_ms;
        down_ms = now_ms > end ? now_ms - end : 0;
    }
    if (rc == 0)
        rc = store_prepare(s, &st,
                           "INSERT INTO daemon_runs (start_ms, pid, alive_ms, down_ms, version, "
                           "config) VALUES (?1, ?2, ?1, ?3, ?4, ?5)",
                           2, now_ms, (int64_t)pid);
    if (rc == 0) {
        if (down_ms >= 0)
            sqlite3_bind_int64(st, 3, down_ms);
        else
            sqlite3_bind_null(st, 3);
        bind_text(st, 4, version, STORE_RUN_VERSION_MAX - 1);
        bind_text(st, 5, config, STORE_RUN_CONFIG_MAX - 1);
        rc = store_step(s, st);
    }
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;
    *ret_id = sqlite3_last_insert_rowid(store_sqlite(s));
    if (ret_prev)
        *ret_prev = prev;
    return 0;
}

/* Runs an UPDATE of one run: 0, or -ENOENT if the row is gone. */
static int update_run(struct store *s, sqlite3_stmt *st)
{
    int rc = store_step(s, st);
    if (rc == 0 && sqlite3_changes(store_sqlite(s)) == 0)
        rc = -ENOENT;
    sqlite3_finalize(st);
    return rc;
}

int store_run_alive(struct store *s, int64_t id, int64_t now_ms)
{
    sqlite3_stmt *st = NULL;
    int rc = store_turn_begin(s);
    if (rc == 0)
        rc = store_prepare(s, &st, "UPDATE daemon_runs SET alive_ms = ?2 WHERE id = ?1", 2, id,
                           now_ms);
    return rc < 0 ? rc : update_run(s, st);
}

int store_run_stop(struct store *s, int64_t id, int64_t now_ms, const char *reason,
                   int64_t uptime_ms)
{
    sqlite3_stmt *st = NULL;
    int rc = store_turn_begin(s);
    if (rc == 0)
        rc = store_prepare(s, &st,
                           "UPDATE daemon_runs SET alive_ms = ?2, stop_ms = ?2, uptime_ms = ?3, "
                           "stop_reason = ?4 WHERE id = ?1",
                           3, id, now_ms, uptime_ms);
    if (rc < 0)
        return rc;
    bind_text(st, 4, reason, STORE_RUN_REASON_MAX - 1);
    return update_run(s, st);
}

int store_run_last_died(struct store *s, int64_t since_ms, struct store_run *ret_run,
                        int64_t *ret_restart_ms)
{
    sqlite3_stmt *st = NULL;
    int rc = store_turn_begin(s);
    if (rc == 0)
        rc = store_prepare(s, &st,
                           "SELECT " RUN_COLUMNS ", (SELECT start_ms FROM daemon_runs AS n "
                           "WHERE n.id > r.id ORDER BY n.id LIMIT 1) FROM daemon_runs AS r "
                           "WHERE died_ms IS NOT NULL ORDER BY id DESC LIMIT 1",
                           0);
    if (rc == 0 && (rc = store_step(s, st)) > 0) {
        struct store_run r;
        read_run(st, &r);
        rc = -ENOENT;
        if (r.died_ms >= since_ms) {
            *ret_run = r;
            *ret_restart_ms = sqlite3_column_int64(st, 11);
            rc = 0;
        }
    } else if (rc == 0) {
        rc = -ENOENT;
    }
    sqlite3_finalize(st);
    return rc;
}

int store_report_runs(struct store *s, int64_t from_ms, int64_t to_ms, int64_t now_ms,
                      store_report_run_fn fn, void *data)
{
    sqlite3_stmt *st = NULL;
    int64_t latest = 0;
    /* The runs alive in the period, and those whose start ends a stretch of downtime that
     * reaches into it; the latest always (a stop before the period and no start since is
     * downtime all through it). */
    int rc = store_prepare(
        s, &st,
        "SELECT " RUN_COLUMNS ", id = (SELECT max(id) FROM daemon_runs), (SELECT died_ms IS "
        "NOT NULL FROM daemon_runs AS p WHERE p.id < r.id ORDER BY p.id DESC LIMIT 1) "
        "FROM daemon_runs AS r "
        "WHERE start_ms - coalesce(down_ms, 0) < ?2 AND (coalesce(stop_ms, died_ms) IS NULL OR "
        "coalesce(stop_ms, died_ms) >= ?1 OR id = (SELECT max(id) FROM daemon_runs)) "
        "ORDER BY start_ms, id",
        2, from_ms, to_ms);
    while (rc == 0 && (rc = store_step(s, st)) > 0) {
        struct store_run r;
        read_run(st, &r);
        r.prev_died = sqlite3_column_int(st, 12) != 0;
        rc = 0;
        if (sqlite3_column_int(st, 11)) {
            latest = r.id;
            /* Its last sign of life: the heartbeat, or a newer row it wrote. */
            if (!r.stop_ms)
                rc = last_write(s, r.alive_ms, now_ms, &r.alive_ms);
        }
        if (rc == 0)
            rc = fn(data, &r, r.id == latest);
    }
    sqlite3_finalize(st);
    return rc;
}
