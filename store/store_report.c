/* The report's queries. Every value goes in as a bound parameter; the statements are prepared
 * per call (a report runs them once), not at store_open(), so the daemon never pays for them.
 *
 * Cost: the failures of the period are read through failures_ts (ts_ms) a few times (per key,
 * per service/type/bucket, per account); everything else is an indexed lookup per listed key
 * or a scan of the (much smaller) bans table. A day of a 10M-row database is a few hundred
 * thousand rows, read in well under the time a cron job cares about (bench/bench_report). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "store_report.h"

int store_snapshot_begin(struct store *s)
{
    if (!store_is_read_only(s))
        return -EINVAL;
    if (!sqlite3_get_autocommit(store_sqlite(s)))
        return 0; /* already open */
    return store_run_sql(s, "BEGIN");
}

void store_snapshot_end(struct store *s)
{
    sqlite3 *db = store_sqlite(s);
    if (store_is_read_only(s) && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

int store_report_failures(struct store *s, int64_t from_ms, int64_t to_ms, int64_t bucket0_ms,
                          int64_t bucket_ms, store_report_failures_fn fn, void *data)
{
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, &st,
                           "SELECT service, event_type, (ts_ms - ?3) / ?4, count(*) FROM failures "
                           "WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY 1, 2, 3",
                           4, from_ms, to_ms, bucket0_ms, bucket_ms);
    if (rc < 0)
        return rc;
    while ((rc = store_step(s, st)) > 0) {
        char service[SEC_SERVICE_MAX];
        store_column_text(st, 0, service, sizeof(service));
        rc = fn(data, service, sqlite3_column_int(st, 1), sqlite3_column_int64(st, 2),
                store_column_u64(st, 3));
        if (rc)
            break;
    }
    sqlite3_finalize(st);
    return rc;
}

/* The last ban of the source's key that started by now_ms. */
static int last_ban(struct store *s, sqlite3_stmt **cache, int64_t now_ms,
                    struct store_report_source *src)
{
    if (!*cache) {
        int rc = store_prepare(s, cache,
                               "SELECT expires_ms, ended_ms FROM bans WHERE prefix = ?1 AND "
                               "start_ms <= ?2 ORDER BY start_ms DESC, id DESC LIMIT 1",
                               0);
        if (rc < 0)
            return rc;
    }
    sqlite3_stmt *st = *cache;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, src->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    int rc = store_step(s, st);
    if (rc <= 0)
        return rc;
    src->ban_found = true;
    src->ban_expires_ms = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : store_column_u64(st, 0);
    src->ban_ended_ms = sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : store_column_u64(st, 1);
    return 0;
}

/* "PJSIP,SIP" (group_concat) into the source's services. */
static void parse_services(const char *list, struct store_report_source *src)
{
    const char *p = list;
    while (*p && src->nservices < STORE_REPORT_SERVICES_MAX) {
        size_t n = strcspn(p, ",");
        size_t c = n < SEC_SERVICE_MAX - 1 ? n : SEC_SERVICE_MAX - 1;
        memcpy(src->services[src->nservices], p, c);
        src->services[src->nservices][c] = '\0';
        src->nservices++;
        p += n;
        if (*p == ',')
            p++;
    }
}

/* "11,1" (group_concat of event types) into a bit mask. */
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

static int top_sources(struct store *s, int64_t now_ms, unsigned top,
                       const struct store_report_sources_fns *fns, void *data)
{
    sqlite3_stmt *st = NULL, *ban = NULL;
    char services[256], types[256];
    int rc = store_prepare(
        s, &st,
        "SELECT key, n, first_ms, last_ms, accounts, services, types FROM report_keys "
        "ORDER BY n DESC, key LIMIT ?1",
        1, (int64_t)top);
    while (rc == 0 && (rc = store_step(s, st)) > 0) {
        struct store_report_source src = {0};
        store_column_text(st, 0, src.key, sizeof(src.key));
        src.attempts = store_column_u64(st, 1);
        src.first_ms = sqlite3_column_int64(st, 2);
        src.last_ms = sqlite3_column_int64(st, 3);
        src.accounts = store_column_u64(st, 4);
        store_column_text(st, 5, services, sizeof(services));
        parse_services(services, &src);
        store_column_text(st, 6, types, sizeof(types));
        src.types = parse_types(types);
        rc = last_ban(s, &ban, now_ms, &src);
        if (rc == 0 && fns && fns->source)
            rc = fns->source(data, &src);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(ban);
    return rc;
}

static int new_sources(struct store *s, int64_t from_ms, unsigned top,
                       const struct store_report_sources_fns *fns, void *data, uint64_t *ret_n)
{
    sqlite3_stmt *st = NULL;
    uint64_t n = 0;
    /* No failure of the key before the period (as far back as retention keeps). */
    int rc = store_prepare(s, &st,
                           "SELECT key, first_ms, n FROM report_keys AS k WHERE NOT EXISTS "
                           "(SELECT 1 FROM failures AS f WHERE f.key = k.key AND f.ts_ms < ?1) "
                           "ORDER BY n DESC, key",
                           1, from_ms);
    while (rc == 0 && (rc = store_step(s, st)) > 0) {
        rc = 0;
        if (n++ < top && fns && fns->new_source) {
            char key[ADDR_STRLEN];
            store_column_text(st, 0, key, sizeof(key));
            rc = fns->new_source(data, key, sqlite3_column_int64(st, 1), store_column_u64(st, 2));
        }
    }
    sqlite3_finalize(st);
    *ret_n = n;
    return rc;
}

int store_report_sources(struct store *s, int64_t from_ms, int64_t to_ms, int64_t now_ms,
                         unsigned top, const struct store_report_sources_fns *fns, void *data,
                         struct store_report_source_counts *ret_counts)
{
    struct store_report_source_counts counts = {0};
    sqlite3_stmt *st = NULL;

    /* Per-key figures of the period, computed once in a temporary table (the connection's
     * own temp store: the database file stays untouched). */
    int rc = store_run_sql(s, "DROP TABLE IF EXISTS temp.report_keys");
    if (rc == 0)
        rc = store_prepare(
            s, &st,
            "CREATE TEMP TABLE report_keys AS "
            "SELECT key, count(*) AS n, min(ts_ms) AS first_ms, max(ts_ms) AS last_ms, "
            "count(DISTINCT account) AS accounts, group_concat(DISTINCT service) AS "
            "services, group_concat(DISTINCT event_type) AS types "
            "FROM failures WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY key",
            2, from_ms, to_ms);
    if (rc == 0) {
        rc = store_step(s, st);
        sqlite3_finalize(st);
    }
    if (rc == 0) {
        rc = store_prepare(s, &st, "SELECT count(*) FROM report_keys", 0);
        if (rc == 0 && (rc = store_step(s, st)) > 0) {
            counts.sources = store_column_u64(st, 0);
            rc = 0;
        }
        sqlite3_finalize(st);
    }
    if (rc == 0)
        rc = top_sources(s, now_ms, top, fns, data);
    if (rc == 0)
        rc = new_sources(s, from_ms, top, fns, data, &counts.new_sources);
    if (rc == 0) /* (after an error it goes with the connection, or with the next call) */
        rc = store_run_sql(s, "DROP TABLE temp.report_keys");
    if (rc == 0 && ret_counts)
        *ret_counts = counts;
    return rc;
}

int store_report_accounts(struct store *s, int64_t from_ms, int64_t to_ms, unsigned top,
                          store_report_account_fn fn, void *data)
{
    sqlite3_stmt *st = NULL;
    int rc =
        store_prepare(s, &st,
                      "SELECT account, count(*) AS n, count(DISTINCT key) FROM failures "
                      "WHERE ts_ms >= ?1 AND ts_ms < ?2 AND account IS NOT NULL AND account <> '' "
                      "GROUP BY account ORDER BY n DESC, account LIMIT ?3",
                      3, from_ms, to_ms, (int64_t)top);
    if (rc < 0)
        return rc;
    while ((rc = store_step(s, st)) > 0) {
        char name[SEC_ACCOUNT_MAX];
        store_column_text(st, 0, name, sizeof(name));
        rc = fn(data, name, store_column_u64(st, 1), store_column_u64(st, 2));
        if (rc)
            break;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Walks (name, count) rows: ban reasons, incident kinds. */
static int walk_counts(struct store *s, sqlite3_stmt *st, store_report_count_fn fn, void *data)
{
    int rc;
    while ((rc = store_step(s, st)) > 0) {
        char name[STORE_REPORT_NAME_MAX];
        store_column_text(st, 0, name, sizeof(name));
        rc = fn(data, name, store_column_u64(st, 1));
        if (rc)
            break;
    }
    return rc;
}

int store_report_bans(struct store *s, int64_t from_ms, int64_t to_ms, store_report_count_fn reason,
                      void *data, struct store_report_bans *ret_bans)
{
    struct store_report_bans b = {0};
    sqlite3_stmt *st = NULL;
    int rc =
        store_prepare(s, &st,
                      "SELECT reason, count(*) AS n, total(offence > 1), total(expires_ms IS NULL) "
                      "FROM bans WHERE start_ms >= ?1 AND start_ms < ?2 GROUP BY reason "
                      "ORDER BY n DESC, reason",
                      2, from_ms, to_ms);
    if (rc < 0)
        return rc;
    while ((rc = store_step(s, st)) > 0) {
        char name[STORE_REPORT_NAME_MAX];
        store_column_text(st, 0, name, sizeof(name));
        uint64_t n = store_column_u64(st, 1);
        b.bans += n;
        b.escalated += (uint64_t)sqlite3_column_double(st, 2);
        b.permanent += (uint64_t)sqlite3_column_double(st, 3);
        rc = reason ? reason(data, name, n) : 0;
        if (rc)
            break;
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;

    /* A ban the daemon could not mark (it was stopped) still ended at its expiry: the kernel
     * removed it then. */
    rc = store_prepare(s, &st,
                       "SELECT total(end_reason = 'lifted' AND ended_ms >= ?1 AND ended_ms < ?2), "
                       "total(expires_ms >= ?1 AND expires_ms < ?2 AND "
                       "(end_reason = 'expired' OR ended_ms IS NULL OR ended_ms >= ?2)), "
                       "total(start_ms < ?2 AND (expires_ms IS NULL OR expires_ms > ?2) AND "
                       "(ended_ms IS NULL OR ended_ms > ?2)) FROM bans",
                       2, from_ms, to_ms);
    if (rc < 0)
        return rc;
    if ((rc = store_step(s, st)) > 0) {
        b.lifted = (uint64_t)sqlite3_column_double(st, 0);
        b.expired = (uint64_t)sqlite3_column_double(st, 1);
        b.active = (uint64_t)sqlite3_column_double(st, 2);
        rc = 0;
    }
    sqlite3_finalize(st);
    if (rc == 0 && ret_bans)
        *ret_bans = b;
    return rc;
}

int store_report_incidents(struct store *s, int64_t from_ms, int64_t to_ms,
                           store_report_count_fn fn, void *data)
{
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, &st,
                           "SELECT kind, count(*) AS n FROM daemon_events WHERE ts_ms >= ?1 AND "
                           "ts_ms < ?2 GROUP BY kind ORDER BY n DESC, kind",
                           2, from_ms, to_ms);
    if (rc < 0)
        return rc;
    rc = walk_counts(s, st, fn, data);
    sqlite3_finalize(st);
    return rc;
}
