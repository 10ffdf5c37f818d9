/* Fills a report from the database, read-only. Every value goes in as a bound parameter.
 *
 * Cost: the failures of the period are read through failures_ts (ts_ms) a few times (per key,
 * per service/type/bucket, per account); everything else is an indexed lookup per listed key
 * or a scan of the (much smaller) bans table. A day of a 10M-row database is a few hundred
 * thousand rows, read in well under the time a cron job cares about (bench/bench_report). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "report_query.h"
#include "schema.h"

#define BUSY_TIMEOUT_MS 10000

struct report_db {
    sqlite3 *db;
    int version;
};

int report_db_open(const char *path, struct report_db **ret_db)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;

    struct report_db *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    /* Read-only: no migration, no checkpoint, no write ever. */
    int rc = sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int err = rc == SQLITE_CANTOPEN ? -EACCES : rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
        report_db_close(d);
        return err;
    }
    sqlite3_busy_timeout(d->db, BUSY_TIMEOUT_MS);

    sqlite3_stmt *st_v = NULL;
    rc = sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &st_v, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st_v);
    if (rc == SQLITE_ROW)
        d->version = sqlite3_column_int(st_v, 0);
    sqlite3_finalize(st_v);
    if (rc != SQLITE_ROW) {
        int err = (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT  ? -EUCLEAN
                  : (rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_PERM ? -EACCES
                                                                                 : -EIO;
        report_db_close(d);
        return err;
    }
    *ret_db = d;
    return 0;
}

void report_db_close(struct report_db *db)
{
    if (!db)
        return;
    sqlite3_close(db->db);
    free(db);
}

int report_db_version(const struct report_db *db)
{
    return db->version;
}

int report_db_check(const struct report_db *db)
{
    if (db->version == 0)
        return -ENODATA;
    if (db->version < 0 || (unsigned)db->version > schema_nmigrations)
        return -EPROTONOSUPPORT;
    return 0;
}

const char *report_db_errmsg(const struct report_db *db)
{
    if (!db || sqlite3_errcode(db->db) == SQLITE_OK)
        return "";
    return sqlite3_errmsg(db->db);
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Prepares sql and binds the int64 arguments to ?1, ?2, ... */
static int prep(struct report_db *d, sqlite3_stmt **ret, const char *sql, int n, ...)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    va_list ap;
    va_start(ap, n);
    for (int i = 1; i <= n; i++)
        sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
    va_end(ap);
    *ret = st;
    return 0;
}

/* Steps once; returns 1 for a row, 0 when done, -EIO on error. */
static int step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static uint64_t col_u64(sqlite3_stmt *st, int i)
{
    sqlite3_int64 v = sqlite3_column_int64(st, i);
    return v < 0 ? 0 : (uint64_t)v;
}

/* Copies a text column (arbitrary bytes, no NUL) into buf, cut to fit. */
static void col_text(sqlite3_stmt *st, int i, char *buf, size_t len)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    size_t n = s ? (size_t)sqlite3_column_bytes(st, i) : 0;
    if (n >= len)
        n = len - 1;
    if (n)
        memcpy(buf, s, n);
    buf[n] = '\0';
    /* an embedded NUL would cut it anyway; make that explicit */
    buf[strnlen(buf, n)] = '\0';
}

static int64_t sec_to_ms(int64_t s)
{
    return s * 1000;
}

static int64_t ms_to_sec(int64_t ms)
{
    return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

/* ---- the parts of the report ------------------------------------------------------------ */

static int fill_counts(struct report_db *d, struct report *r, int64_t F, int64_t T)
{
    sqlite3_stmt *st;
    /* one pass for failures by service, by type and per bucket */
    int rc = prep(d, &st,
                  "SELECT service, event_type, (ts_ms - ?3) / ?4, count(*) FROM failures "
                  "WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY 1, 2, 3",
                  4, F, T, sec_to_ms(r->bucket_start), sec_to_ms(r->bucket_s));
    if (rc < 0)
        return rc;
    while ((rc = step(st)) > 0) {
        char service[SEC_SERVICE_MAX];
        col_text(st, 0, service, sizeof(service));
        int type = sqlite3_column_int(st, 1);
        int64_t b = sqlite3_column_int64(st, 2);
        uint64_t n = col_u64(st, 3);

        r->totals.failures += n;
        if (type >= 0 && type < SEC_EVENT_TYPE_COUNT)
            r->by_type[type] += n;
        if (b >= 0 && b < r->nbuckets)
            r->buckets[b] += n;
        unsigned i;
        for (i = 0; i < r->nby_service; i++)
            if (strcmp(r->by_service[i].name, service) == 0)
                break;
        if (i == r->nby_service &&
            report_add_count(&r->by_service, &r->nby_service, service, 0) < 0) {
            rc = -ENOMEM;
            break;
        }
        r->by_service[i].n += n;
    }
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;

    /* most failures first, then by name, so the order is stable */
    for (unsigned i = 1; i < r->nby_service; i++) {
        struct report_count c = r->by_service[i];
        unsigned j = i;
        while (j > 0 &&
               (r->by_service[j - 1].n < c.n ||
                (r->by_service[j - 1].n == c.n && strcmp(r->by_service[j - 1].name, c.name) > 0))) {
            r->by_service[j] = r->by_service[j - 1];
            j--;
        }
        r->by_service[j] = c;
    }
    return 0;
}

/* The last ban of key that started by now, as the state it is in at now. */
static int ban_state(struct report_db *d, sqlite3_stmt **cache, const char *key, int64_t from_ms,
                     int64_t now_ms, struct report_source *s)
{
    if (!*cache && prep(d, cache,
                        "SELECT expires_ms, ended_ms FROM bans WHERE prefix = ?1 AND "
                        "start_ms <= ?2 ORDER BY start_ms DESC, id DESC LIMIT 1",
                        0) < 0)
        return -EIO;
    sqlite3_stmt *st = *cache;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    int rc = step(st);
    if (rc <= 0)
        return rc;

    bool permanent = sqlite3_column_type(st, 0) == SQLITE_NULL;
    int64_t expires = sqlite3_column_int64(st, 0);
    bool ended = sqlite3_column_type(st, 1) != SQLITE_NULL;
    int64_t ended_ms = sqlite3_column_int64(st, 1);

    if ((!ended || ended_ms > now_ms) && (permanent || expires > now_ms)) {
        s->ban = permanent ? REPORT_BAN_PERMANENT : REPORT_BAN_ACTIVE;
        s->ban_until = permanent ? 0 : ms_to_sec(expires);
        return 0;
    }
    int64_t end = ended && ended_ms <= now_ms ? ended_ms : expires;
    if (end >= from_ms) {
        s->ban = REPORT_BAN_ENDED;
        s->ban_until = ms_to_sec(end);
    }
    return 0;
}

static void parse_services(const char *list, struct report_source *s)
{
    const char *p = list;
    while (*p && s->nservices < REPORT_SERVICES_MAX) {
        size_t n = strcspn(p, ",");
        size_t c = n < SEC_SERVICE_MAX - 1 ? n : SEC_SERVICE_MAX - 1;
        memcpy(s->services[s->nservices], p, c);
        s->services[s->nservices][c] = '\0';
        s->nservices++;
        p += n;
        if (*p == ',')
            p++;
    }
}

static uint32_t parse_types(const char *list)
{
    uint32_t mask = 0;
    for (const char *p = list; *p;) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p)
            break;
        if (t >= 0 && t < SEC_EVENT_TYPE_COUNT)
            mask |= 1u << t;
        p = *end == ',' ? end + 1 : end;
    }
    return mask;
}

static int fill_sources(struct report_db *d, struct report *r, int64_t F, int64_t T, int64_t now_ms,
                        unsigned top)
{
    sqlite3_stmt *st = NULL, *ban = NULL;
    char services[256], types[256];

    /* Per-key figures of the period, computed once in a temporary table (the connection's
     * own temp store: the database file stays untouched). */
    int rc = prep(d, &st, "DROP TABLE IF EXISTS temp.report_keys", 0);
    if (rc == 0)
        rc = step(st);
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;
    rc = prep(d, &st,
              "CREATE TEMP TABLE report_keys AS "
              "SELECT key, count(*) AS n, min(ts_ms) AS first_ms, max(ts_ms) AS last_ms, "
              "count(DISTINCT account) AS accounts, group_concat(DISTINCT service) AS "
              "services, group_concat(DISTINCT event_type) AS types "
              "FROM failures WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY key",
              2, F, T);
    if (rc == 0)
        rc = step(st);
    sqlite3_finalize(st);
    st = NULL;
    if (rc < 0)
        return rc;

    rc = prep(d, &st, "SELECT count(*) FROM report_keys", 0);
    if (rc == 0 && (rc = step(st)) > 0)
        r->totals.sources = col_u64(st, 0);
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;

    rc = prep(d, &st,
              "SELECT key, n, first_ms, last_ms, accounts, services, types FROM report_keys "
              "ORDER BY n DESC, key LIMIT ?1",
              1, (int64_t)top);
    while (rc == 0 && (rc = step(st)) > 0) {
        struct report_source s = {0};
        col_text(st, 0, s.key, sizeof(s.key));
        s.attempts = col_u64(st, 1);
        s.first_seen = ms_to_sec(sqlite3_column_int64(st, 2));
        s.last_seen = ms_to_sec(sqlite3_column_int64(st, 3));
        s.accounts = col_u64(st, 4);
        col_text(st, 5, services, sizeof(services));
        parse_services(services, &s);
        col_text(st, 6, types, sizeof(types));
        s.types = parse_types(types);
        rc = ban_state(d, &ban, s.key, F, now_ms, &s);
        if (rc == 0)
            rc = report_add_source(r, &s);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(ban);
    if (rc < 0)
        return rc;

    /* First seen: no failure of the key before the period (as far back as retention keeps). */
    rc = prep(d, &st,
              "SELECT key, first_ms, n FROM report_keys AS k WHERE NOT EXISTS "
              "(SELECT 1 FROM failures AS f WHERE f.key = k.key AND f.ts_ms < ?1) "
              "ORDER BY n DESC, key",
              1, F);
    while (rc == 0 && (rc = step(st)) > 0) {
        r->totals.new_sources++;
        if (r->nnew_sources < top) {
            char key[ADDR_STRLEN];
            col_text(st, 0, key, sizeof(key));
            rc = report_add_new_source(r, key, ms_to_sec(sqlite3_column_int64(st, 1)),
                                       col_u64(st, 2));
        }
    }
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;

    rc = prep(d, &st, "DROP TABLE temp.report_keys", 0);
    if (rc == 0)
        rc = step(st);
    sqlite3_finalize(st);
    return rc < 0 ? rc : 0;
}

static int fill_accounts(struct report_db *d, struct report *r, int64_t F, int64_t T, unsigned top)
{
    sqlite3_stmt *st;
    int rc = prep(d, &st,
                  "SELECT account, count(*) AS n, count(DISTINCT key) FROM failures "
                  "WHERE ts_ms >= ?1 AND ts_ms < ?2 AND account IS NOT NULL AND account <> '' "
                  "GROUP BY account ORDER BY n DESC, account LIMIT ?3",
                  3, F, T, (int64_t)top);
    while (rc == 0 && (rc = step(st)) > 0) {
        char name[SEC_ACCOUNT_MAX];
        col_text(st, 0, name, sizeof(name));
        rc = report_add_account(r, name, col_u64(st, 1), col_u64(st, 2));
    }
    sqlite3_finalize(st);
    return rc < 0 ? rc : 0;
}

static int fill_bans(struct report_db *d, struct report *r, int64_t F, int64_t E)
{
    sqlite3_stmt *st;
    int rc = prep(d, &st,
                  "SELECT reason, count(*) AS n, total(offence > 1), total(expires_ms IS NULL) "
                  "FROM bans WHERE start_ms >= ?1 AND start_ms < ?2 GROUP BY reason "
                  "ORDER BY n DESC, reason",
                  2, F, E);
    while (rc == 0 && (rc = step(st)) > 0) {
        char reason[REPORT_NAME_MAX];
        col_text(st, 0, reason, sizeof(reason));
        uint64_t n = col_u64(st, 1);
        r->totals.bans += n;
        r->totals.escalated += (uint64_t)sqlite3_column_double(st, 2);
        r->totals.permanent += (uint64_t)sqlite3_column_double(st, 3);
        rc = report_add_count(&r->ban_reasons, &r->nban_reasons, reason, n);
    }
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;

    /* A ban the daemon could not mark (it was stopped) still ended at its expiry: the kernel
     * removed it then. */
    rc = prep(d, &st,
              "SELECT total(end_reason = 'lifted' AND ended_ms >= ?1 AND ended_ms < ?2), "
              "total(expires_ms >= ?1 AND expires_ms < ?2 AND "
              "(end_reason = 'expired' OR ended_ms IS NULL OR ended_ms >= ?2)), "
              "total(start_ms < ?2 AND (expires_ms IS NULL OR expires_ms > ?2) AND "
              "(ended_ms IS NULL OR ended_ms > ?2)) FROM bans",
              2, F, E);
    if (rc == 0 && (rc = step(st)) > 0) {
        r->totals.lifted = (uint64_t)sqlite3_column_double(st, 0);
        r->totals.expired = (uint64_t)sqlite3_column_double(st, 1);
        r->totals.active = (uint64_t)sqlite3_column_double(st, 2);
    }
    sqlite3_finalize(st);
    return rc < 0 ? rc : 0;
}

static int fill_incidents(struct report_db *d, struct report *r, int64_t F, int64_t T)
{
    sqlite3_stmt *st;
    int rc = prep(d, &st,
                  "SELECT kind, count(*) AS n FROM daemon_events WHERE ts_ms >= ?1 AND "
                  "ts_ms < ?2 GROUP BY kind ORDER BY n DESC, kind",
                  2, F, T);
    if (rc < 0)
        return rc;
    r->incidents_recorded = true;
    while ((rc = step(st)) > 0) {
        char kind[REPORT_NAME_MAX];
        col_text(st, 0, kind, sizeof(kind));
        rc = report_add_count(&r->incidents, &r->nincidents, kind, col_u64(st, 1));
        if (rc < 0)
            break;
    }
    sqlite3_finalize(st);
    return rc < 0 ? rc : 0;
}

int report_db_fill(struct report_db *d, struct report *r, int64_t now, unsigned top)
{
    int64_t F = sec_to_ms(r->from), T = sec_to_ms(r->to), now_ms = sec_to_ms(now);
    /* Bans are counted up to now when the period reaches into the future. */
    int64_t E = T < now_ms ? T : now_ms;
    if (E < F)
        E = F;
    r->generated = now;

    /* One read transaction: every figure comes from the same snapshot, even while the daemon
     * commits a turn between two queries. */
    sqlite3_stmt *st;
    int rc = prep(d, &st, "BEGIN", 0);
    if (rc == 0)
        rc = step(st);
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;

    rc = fill_counts(d, r, F, T);
    if (rc == 0)
        rc = fill_sources(d, r, F, T, now_ms, top);
    if (rc == 0)
        rc = fill_accounts(d, r, F, T, top);
    if (rc == 0)
        rc = fill_bans(d, r, F, E);
    if (rc == 0)
        rc = fill_incidents(d, r, F, T);

    if (rc < 0 && sqlite3_errcode(d->db) == SQLITE_NOMEM)
        rc = -ENOMEM;
    /* The error message must survive the rollback. */
    if (rc == 0)
        sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL);
    return rc;
}
