/* Failures: the raw rows the windows count, their hourly roll-ups, and the dictionaries that
 * keep both small (schema/004-compact.sql says how each column is packed).
 *
 * The hot path, store_failure_add() and store_window_sum(), touches one B-tree: failures,
 * clustered on (key, ts_ms, seq). Names are turned into ids through small direct-mapped caches,
 * so a flood costs one insert per event, plus an update of a name's used_ms at most once an
 * hour. Everything older than the window is moved into failure_hours and failure_key_hours by
 * store_rollup(), a bounded batch at a time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "store_internal.h"

enum {
    FS_ADD,
    FS_WINDOW,
    FS_KIND_GET,
    FS_KIND_ADD,
    FS_KIND_USED,
    FS_ACCOUNT_GET,
    FS_ACCOUNT_ADD,
    FS_ACCOUNT_USED,
    FS_COUNT_ADD,
    FS_KEY_RAW,
    FS_KEY_HOURS,
    FS_COUNTS_SINCE,
    FS_RAW_ROWS,
    FS_SEEN_RAW,
    FS_SEEN_HOURS,
    FS_NEXT_KEY,
    FS_OLD_ROWS,
    FS_HOUR_UPSERT,
    FS_KEYHOUR_UPSERT,
    FS_DELETE_OLD,
    FS_KEY_FIRST,
    FS_KEY_NEXT_FIRST,
    FS_KEY_FIRST_SET,
    FS_KEY_FIRST_DELETE,
    FS_PRUNE_PAIRS,
    FS_PRUNE_HOUR,
    FS_PRUNE_KEYHOUR,
    FS_PRUNE_COUNTS,
    FS_KEYDAY_UPSERT,
    FS_ACCOUNTDAY_UPSERT,
    FS_ACCOUNTKEY_ADD,
    FS_KINDHOUR_UPSERT,
    FS_PRUNE_KEYDAYS,
    FS_PRUNE_ACCOUNTDAYS,
    FS_PRUNE_ACCOUNTKEYS,
    FS_PRUNE_KINDHOURS,
    FS_PRUNE_MARK,
    FS_PRUNE_ACCOUNTS_END,
    FS_PRUNE_ACCOUNTS,
    FS_PRUNE_KINDS,
    FS_SHOW_SUMMARY,
    FS_SHOW_BY_TYPE,
    FS_SHOW_ACCOUNTS,
    FS_EVENT_SEEN,
    FS_ROWS_HEAD,
    FS_ROWS_TAIL,
    FS_LAST_MS,
    FS_COUNT
};

/* One address's failures, raw and rolled up alike: (kind, account, flags, n, weight, first,
 * last). ?1 is the packed key, ?2 the packed address. The hours are found through
 * failure_key_hours, then each read with one seek into failure_hours. */
#define ADDR_ROWS                                                                                  \
    "SELECT kind, account, flags, 1 AS n, weight, ts_ms AS first_ms, ts_ms AS last_ms "            \
    "FROM failures WHERE key = ?1 AND addr = ?2 "                                                  \
    "UNION ALL "                                                                                   \
    "SELECT h.kind, h.account, h.flags, h.n, h.weight, h.hour * 3600000 + h.first_off, "           \
    "h.hour * 3600000 + h.last_off FROM failure_key_hours AS kh CROSS JOIN failure_hours AS h "    \
    "ON h.hour = kh.hour AND h.key = kh.key WHERE kh.key = ?1 AND h.addr = ?2"

static const char *const sql[FS_COUNT] = {
    /* One range of the key's rows (the primary key), then the identity; the kind's row gives
     * the event type (the source differs: AMI's event and the log's twin have kinds of their
     * own). */
    [FS_EVENT_SEEN] = "SELECT 1 FROM failures AS f CROSS JOIN failure_kinds AS k ON k.id = f.kind "
                      "WHERE f.key = ?1 AND f.ts_ms >= ?2 AND f.ts_ms <= ?3 "
                      "AND f.ts_ms + f.tv_off = ?4 AND k.event_type = ?5 AND f.addr = ?6 "
                      "AND f.port IS ?7 AND f.transport IS ?8 AND f.session IS ?9 LIMIT 1",
    /* Two cursors over the same rows: a window's head and its tail. */
    [FS_ROWS_HEAD] = "SELECT ts_ms, weight FROM failures WHERE key = ?1 AND ts_ms >= ?2 "
                     "AND ts_ms <= ?3 ORDER BY ts_ms",
    [FS_ROWS_TAIL] = "SELECT ts_ms, weight FROM failures WHERE key = ?1 AND ts_ms >= ?2 "
                     "AND ts_ms <= ?3 ORDER BY ts_ms",
    [FS_LAST_MS] = "SELECT last_ms FROM failure_counts ORDER BY hour DESC LIMIT 1",
    [FS_ADD] = "INSERT INTO failures (key, ts_ms, seq, addr, port, transport, kind, account, "
               "weight, flags, tv_off, session) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
               "?11, ?12)",
    [FS_WINDOW] = "SELECT total(weight) FROM failures WHERE key = ?1 AND ts_ms >= ?2 "
                  "AND ts_ms <= ?3",
    [FS_KIND_GET] = "SELECT id, used_ms FROM failure_kinds WHERE service = ?1 AND "
                    "event_type = ?2 AND source = ?3",
    [FS_KIND_ADD] = "INSERT INTO failure_kinds (service, event_type, source, used_ms) "
                    "VALUES (?1, ?2, ?3, ?4)",
    [FS_KIND_USED] = "UPDATE failure_kinds SET used_ms = max(used_ms, ?2) WHERE id = ?1",
    [FS_ACCOUNT_GET] = "SELECT id, used_ms FROM accounts WHERE name = ?1",
    [FS_ACCOUNT_ADD] = "INSERT INTO accounts (name, used_ms) VALUES (?1, ?2)",
    [FS_ACCOUNT_USED] = "UPDATE accounts SET used_ms = max(used_ms, ?2) WHERE id = ?1",
    [FS_COUNT_ADD] = "INSERT INTO failure_counts (hour, n, last_ms) VALUES (?1, ?2, ?3) "
                     "ON CONFLICT (hour) DO UPDATE SET n = n + excluded.n, "
                     "last_ms = max(last_ms, excluded.last_ms)",
    [FS_KEY_RAW] = "SELECT count(*), total(weight), min(ts_ms), max(ts_ms) FROM failures "
                   "WHERE key = ?1",
    [FS_KEY_HOURS] = "SELECT total(n), total(weight), min(hour * 3600000 + first_off), "
                     "max(hour * 3600000 + last_off) FROM failure_key_hours WHERE key = ?1",
    [FS_COUNTS_SINCE] = "SELECT total(n) FROM failure_counts WHERE hour >= ?1",
    [FS_RAW_ROWS] = "SELECT total(n) FROM failure_counts WHERE hour >= ?1",
    /* A key's first and last failure: two seeks into each of its B-tree ranges. */
    [FS_SEEN_RAW] = "SELECT (SELECT min(ts_ms) FROM failures WHERE key = ?1), "
                    "(SELECT max(ts_ms) FROM failures WHERE key = ?1)",
    [FS_SEEN_HOURS] = "SELECT (SELECT hour * 3600000 + first_off FROM failure_key_hours WHERE "
                      "key = ?1 ORDER BY hour LIMIT 1), (SELECT hour * 3600000 + last_off FROM "
                      "failure_key_hours WHERE key = ?1 ORDER BY hour DESC LIMIT 1)",
    [FS_NEXT_KEY] = "SELECT key FROM failures WHERE key > ?1 ORDER BY key LIMIT 1",
    [FS_OLD_ROWS] = "SELECT ts_ms, seq, addr, kind, account, flags, weight FROM failures "
                    "WHERE key = ?1 AND ts_ms < ?2 ORDER BY ts_ms, seq LIMIT ?3",
    [FS_HOUR_UPSERT] = "INSERT INTO failure_hours (hour, key, addr, kind, account, flags, n, "
                       "weight, first_off, last_off) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                       "?10) ON CONFLICT (hour, key, addr, kind, account, flags) DO UPDATE SET "
                       "n = n + excluded.n, weight = weight + excluded.weight, "
                       "first_off = min(first_off, excluded.first_off), "
                       "last_off = max(last_off, excluded.last_off)",
    [FS_KEYHOUR_UPSERT] = "INSERT INTO failure_key_hours (key, hour, n, weight, first_off, "
                          "last_off) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key, hour) "
                          "DO UPDATE SET n = n + excluded.n, weight = weight + excluded.weight, "
                          "first_off = min(first_off, excluded.first_off), "
                          "last_off = max(last_off, excluded.last_off)",
    [FS_DELETE_OLD] = "DELETE FROM failures WHERE key = ?1 AND (ts_ms, seq) <= (?2, ?3)",
    [FS_KEY_FIRST] = "INSERT INTO failure_keys (key, first_ms) VALUES (?1, ?2) "
                     "ON CONFLICT (key) DO UPDATE SET first_ms = min(first_ms, excluded.first_ms)",
    /* After a key's hour is pruned: its first failure is the first of its next hour. */
    [FS_KEY_NEXT_FIRST] = "SELECT hour * 3600000 + first_off FROM failure_key_hours "
                          "WHERE key = ?1 ORDER BY hour LIMIT 1",
    [FS_KEY_FIRST_SET] = "UPDATE failure_keys SET first_ms = ?2 WHERE key = ?1",
    [FS_KEY_FIRST_DELETE] = "DELETE FROM failure_keys WHERE key = ?1",
    [FS_PRUNE_PAIRS] = "SELECT DISTINCT hour, key FROM failure_hours WHERE hour < ?1 "
                       "ORDER BY hour, key LIMIT ?2",
    [FS_PRUNE_HOUR] = "DELETE FROM failure_hours WHERE hour = ?1 AND key = ?2",
    [FS_PRUNE_KEYHOUR] = "DELETE FROM failure_key_hours WHERE key = ?2 AND hour = ?1",
    [FS_PRUNE_COUNTS] = "DELETE FROM failure_counts WHERE hour < ?1",
    /* The daily tier (schema/010-day-rollups.sql), written beside the hourly rows. */
    [FS_KEYDAY_UPSERT] = "INSERT INTO failure_key_days (day, key, n, first_off, last_off) "
                         "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (day, key) DO UPDATE SET "
                         "n = n + excluded.n, first_off = min(first_off, excluded.first_off), "
                         "last_off = max(last_off, excluded.last_off)",
    [FS_ACCOUNTDAY_UPSERT] = "INSERT INTO failure_account_days (day, account, n) VALUES (?1, ?2, "
                             "?3) ON CONFLICT (day, account) DO UPDATE SET n = n + excluded.n",
    [FS_ACCOUNTKEY_ADD] = "INSERT OR IGNORE INTO failure_account_keys (day, account, key) "
                          "VALUES (?1, ?2, ?3)",
    [FS_KINDHOUR_UPSERT] = "INSERT INTO failure_kind_hours (hour, kind, flags, n) VALUES (?1, ?2, "
                           "?3, ?4) ON CONFLICT (hour, kind, flags) DO UPDATE SET "
                           "n = n + excluded.n",
    [FS_PRUNE_MARK] = "UPDATE failure_retention SET before_hour = ?1 WHERE before_hour < ?1",
    /* Whole days before the cutoff's day, a bounded batch each. */
    [FS_PRUNE_KEYDAYS] = "DELETE FROM failure_key_days WHERE (day, key) IN (SELECT day, key FROM "
                         "failure_key_days WHERE day < ?1 ORDER BY day, key LIMIT ?2)",
    [FS_PRUNE_ACCOUNTDAYS] = "DELETE FROM failure_account_days WHERE (day, account) IN (SELECT "
                             "day, account FROM failure_account_days WHERE day < ?1 "
                             "ORDER BY day, account LIMIT ?2)",
    [FS_PRUNE_ACCOUNTKEYS] = "DELETE FROM failure_account_keys WHERE (day, account, key) IN "
                             "(SELECT day, account, key FROM failure_account_keys WHERE day < ?1 "
                             "ORDER BY day, account, key LIMIT ?2)",
    [FS_PRUNE_KINDHOURS] = "DELETE FROM failure_kind_hours WHERE (hour, kind, flags) IN (SELECT "
                           "hour, kind, flags FROM failure_kind_hours WHERE hour < ?1 "
                           "ORDER BY hour, kind, flags LIMIT ?2)",
    [FS_PRUNE_ACCOUNTS_END] = "SELECT max(id), count(*) FROM (SELECT id FROM accounts "
                              "WHERE id > ?1 ORDER BY id LIMIT ?2)",
    [FS_PRUNE_ACCOUNTS] = "DELETE FROM accounts WHERE id > ?1 AND id <= ?2 AND used_ms < ?3",
    [FS_PRUNE_KINDS] = "DELETE FROM failure_kinds WHERE used_ms < ?1",
    [FS_SHOW_SUMMARY] = "SELECT total(n), total(CASE WHEN flags & 1 THEN n END), min(first_ms), "
                        "max(last_ms) FROM (" ADDR_ROWS ")",
    [FS_SHOW_BY_TYPE] = "SELECT k.service, k.event_type, total(u.n), total(u.weight) "
                        "FROM (" ADDR_ROWS ") AS u JOIN failure_kinds AS k ON k.id = u.kind "
                        "GROUP BY k.service, k.event_type ORDER BY 3 DESC, 1, 2",
    [FS_SHOW_ACCOUNTS] = "SELECT a.name, total(u.n), max(u.last_ms) FROM (" ADDR_ROWS ") AS u "
                         "JOIN accounts AS a ON a.id = u.account GROUP BY u.account "
                         "ORDER BY 2 DESC, 3 DESC LIMIT 100",
};

#define KIND_CACHE 64
#define ACCOUNT_CACHE 1024
#define COUNT_HOURS 16
/* A name's used_ms is brought up to date at most this often (pruning keeps a day's margin). */
#define USED_STEP_MS STORE_HOUR_MS

struct kind_entry {
    bool valid;
    int event_type;
    char service[SEC_SERVICE_MAX];
    char source[SEC_SOURCE_MAX];
    int64_t id, used_ms;
};

struct account_entry {
    bool valid;
    char name[SEC_ACCOUNT_MAX];
    int64_t id, used_ms;
};

struct hour_count {
    int64_t hour, n, last_ms;
};

/* A deferred failure, packed as its row will be (store_failure_defer()). */
struct deferred {
    int64_t ts_ms, seq, kind, account, tv_off, session; /* session -1: none */
    double weight;
    uint16_t port;
    uint8_t transport, flags, has_tv;
    uint8_t klen, alen;
    uint8_t key[STORE_KEY_PACKED_MAX];
    uint8_t addr[16];
};

#define DEFER_RUNS (STORE_DEFER_MAX / STORE_DEFER_RUN)

struct store_failures {
    sqlite3_stmt *st[FS_COUNT];
    /* Deferred failures: [0, ndefer), sorted by runs of STORE_DEFER_RUN up to nsorted; while
     * they are written (merging), head[i] is the next row of run i. */
    struct deferred *defer;
    unsigned ndefer, nsorted, nwritten;
    bool merging;
    unsigned head[DEFER_RUNS];
    struct kind_entry kinds[KIND_CACHE];
    struct account_entry *accounts; /* ACCOUNT_CACHE entries */
    /* The packed form of the last key, since record + window count use the same key. */
    struct addr_prefix key;
    bool key_valid;
    uint8_t key_blob[STORE_KEY_PACKED_MAX];
    size_t key_len;
    /* seq: failures already written with ts_ms == seq_ts. A turn's events share the loop's
     * clock, so this counts them; a collision (the clock went back) takes a spare number. */
    int64_t seq_ts, seq_next, seq_spare;
    /* Failures written this turn, by hour, for failure_counts at commit. */
    struct hour_count counts[COUNT_HOURS];
    unsigned ncounts;
    /* The roll-up's position: it walks the keys in order, one pass after another. */
    uint8_t rollup_key[STORE_KEY_PACKED_MAX];
    size_t rollup_key_len;
    bool rollup_resume; /* the batch stopped inside rollup_key: start there again */
    int64_t prune_account_id;
};

/* --- packing ---------------------------------------------------------------------------- */

size_t store_key_pack(const struct addr_prefix *key, uint8_t out[STORE_KEY_PACKED_MAX])
{
    if (key->addr.family == AF_INET) {
        memcpy(out, key->addr.bytes, 4);
        if (key->len == 32)
            return 4;
        out[4] = key->len;
        return 5;
    }
    if (key->len == 64) {
        memcpy(out, key->addr.bytes, 8);
        return 8;
    }
    memcpy(out, key->addr.bytes, 16);
    if (key->len == 128)
        return 16;
    out[16] = key->len;
    return 17;
}

int store_key_unpack(const void *blob, size_t n, struct addr_prefix *ret_key)
{
    const uint8_t *b = blob;
    struct addr_prefix k;
    memset(&k, 0, sizeof(k));
    switch (n) {
    case 4:
    case 5:
        k.addr.family = AF_INET;
        memcpy(k.addr.bytes, b, 4);
        k.len = n == 4 ? 32 : b[4];
        if (k.len > 32)
            return -EUCLEAN;
        break;
    case 8:
        k.addr.family = AF_INET6;
        memcpy(k.addr.bytes, b, 8);
        k.len = 64;
        break;
    case 16:
    case 17:
        k.addr.family = AF_INET6;
        memcpy(k.addr.bytes, b, 16);
        k.len = n == 16 ? 128 : b[16];
        if (k.len > 128)
            return -EUCLEAN;
        break;
    default:
        return -EUCLEAN;
    }
    /* What we pack has no host bits; anything else was not written by us. */
    struct addr_prefix clean;
    addr_prefix_of(&k.addr, k.len, &clean);
    if (!addr_prefix_equal(&clean, &k))
        return -EUCLEAN;
    *ret_key = k;
    return 0;
}

int store_addr_pack(const struct addr *a, const struct addr_prefix *key, uint8_t out[16],
                    size_t *ret_n)
{
    if (!addr_prefix_contains(key, a))
        return -EINVAL;
    size_t from = key->len / 8, to = a->family == AF_INET ? 4 : 16;
    memcpy(out, a->bytes + from, to - from);
    *ret_n = to - from;
    return 0;
}

int store_addr_unpack(const void *blob, size_t n, const struct addr_prefix *key,
                      struct addr *ret_addr)
{
    size_t from = key->len / 8, to = key->addr.family == AF_INET ? 4 : 16;
    if (n != to - from)
        return -EUCLEAN;
    struct addr a = key->addr;
    if (n)
        memcpy(a.bytes + from, blob, n);
    *ret_addr = a;
    return 0;
}

/* pbxguard_key(TEXT) -> BLOB, NULL if the text is not a prefix we could have written. */
static void sql_key(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const unsigned char *t = sqlite3_value_text(argv[0]);
    struct addr_prefix k;
    uint8_t b[STORE_KEY_PACKED_MAX];
    if (!t || addr_prefix_parse((const char *)t, false, &k) < 0) {
        sqlite3_result_null(ctx);
        return;
    }
    sqlite3_result_blob(ctx, b, (int)store_key_pack(&k, b), SQLITE_TRANSIENT);
}

/* pbxguard_addr(TEXT address, TEXT key) -> BLOB, NULL if either does not parse or the address
 * lies outside the key. */
static void sql_addr(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const unsigned char *t = sqlite3_value_text(argv[0]), *kt = sqlite3_value_text(argv[1]);
    struct addr a;
    struct addr_prefix k;
    uint8_t b[16];
    size_t n;
    if (!t || !kt || addr_parse((const char *)t, strlen((const char *)t), &a) < 0 ||
        addr_prefix_parse((const char *)kt, false, &k) < 0 || store_addr_pack(&a, &k, b, &n) < 0) {
        sqlite3_result_null(ctx);
        return;
    }
    sqlite3_result_blob(ctx, b, (int)n, SQLITE_TRANSIENT);
}

/* pbxguard_key_text(BLOB) -> TEXT: a packed key as addr_prefix_format() writes it (reports
 * order their ties by it, as they did when keys were text); NULL if it is not one. */
static void sql_key_text(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    struct addr_prefix k;
    char buf[ADDR_STRLEN];
    if (sqlite3_value_type(argv[0]) != SQLITE_BLOB ||
        store_key_unpack(sqlite3_value_blob(argv[0]), (size_t)sqlite3_value_bytes(argv[0]), &k) <
            0) {
        sqlite3_result_null(ctx);
        return;
    }
    sqlite3_result_text(ctx, addr_prefix_format(&k, buf, sizeof(buf)), -1, SQLITE_TRANSIENT);
}

int store_failures_register(sqlite3 *db)
{
    int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
    int rc =
        sqlite3_create_function_v2(db, "pbxguard_key", 1, flags, NULL, sql_key, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function_v2(db, "pbxguard_addr", 2, flags, NULL, sql_addr, NULL, NULL,
                                        NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function_v2(db, "pbxguard_key_text", 1, flags, NULL, sql_key_text, NULL,
                                        NULL, NULL);
    return rc;
}

/* --- life cycle --------------------------------------------------------------------------- */

struct store_failures *store_failures_new(struct store *s, int *ret_err)
{
    struct store_failures *f = calloc(1, sizeof(*f));
    if (!f || !(f->accounts = calloc(ACCOUNT_CACHE, sizeof(*f->accounts)))) {
        free(f);
        *ret_err = -ENOMEM;
        return NULL;
    }
    for (int i = 0; i < FS_COUNT; i++) {
        int rc = sqlite3_prepare_v3(store_sqlite(s), sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &f->st[i], NULL);
        if (rc != SQLITE_OK) {
            *ret_err = store_sqlite_error(s, rc);
            store_failures_free(f);
            return NULL;
        }
    }
    f->seq_spare = 1 << 20;
    return f;
}

void store_failures_free(struct store_failures *f)
{
    if (!f)
        return;
    for (int i = 0; i < FS_COUNT; i++)
        sqlite3_finalize(f->st[i]);
    free(f->accounts);
    free(f->defer);
    free(f);
}

/* Forgets the cached ids: their rows may be gone (rolled back or pruned). */
static void forget_names(struct store_failures *f)
{
    for (int i = 0; i < KIND_CACHE; i++)
        f->kinds[i].valid = false;
    for (int i = 0; i < ACCOUNT_CACHE; i++)
        f->accounts[i].valid = false;
}

void store_failures_lost(struct store_failures *f)
{
    if (!f)
        return;
    forget_names(f);
    f->ncounts = 0;
    /* Deferred rows name kinds and accounts by ids that may be gone with the transaction. */
    f->ndefer = f->nsorted = f->nwritten = 0;
    f->merging = false;
}

/* --- helpers ------------------------------------------------------------------------------ */

static int run(struct store *s, sqlite3_stmt *st)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    int r = rc == SQLITE_DONE ? 0 : store_sqlite_error(s, rc);
    sqlite3_reset(st);
    return r;
}

static int row_error(struct store *s, int rc)
{
    int r = store_sqlite_error(s, rc);
    return r ? r : -EIO;
}

static uint32_t hash_bytes(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u; /* FNV-1a */
    return h;
}

static const uint8_t *key_blob(struct store_failures *f, const struct addr_prefix *key,
                               size_t *ret_len)
{
    if (!f->key_valid || !addr_prefix_equal(&f->key, key)) {
        f->key_len = store_key_pack(key, f->key_blob);
        f->key = *key;
        f->key_valid = true;
    }
    *ret_len = f->key_len;
    return f->key_blob;
}

static int64_t hour_of(int64_t ms)
{
    return ms >= 0 ? ms / STORE_HOUR_MS : -((-ms + STORE_HOUR_MS - 1) / STORE_HOUR_MS);
}

static int64_t day_of_hour(int64_t hour)
{
    return hour >= 0 ? hour / 24 : -((-hour + 23) / 24);
}

/* Brings a name's used_ms up to ts_ms when it lags by an hour or more. */
static int touch(struct store *s, sqlite3_stmt *st, int64_t id, int64_t *used_ms, int64_t ts_ms)
{
    if (ts_ms < *used_ms + USED_STEP_MS)
        return 0;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, ts_ms);
    int r = run(s, st);
    if (r == 0)
        *used_ms = ts_ms;
    return r;
}

static int kind_id(struct store *s, const struct sec_event *ev, int64_t ts_ms, int64_t *ret_id)
{
    struct store_failures *f = store_failures_of(s);
    size_t ls = strnlen(ev->service, SEC_SERVICE_MAX - 1);
    size_t lo = strnlen(ev->source, SEC_SOURCE_MAX - 1);
    uint32_t h = hash_bytes(2166136261u, ev->service, ls);
    h = hash_bytes(h, &ev->type, sizeof(ev->type));
    h = hash_bytes(h, ev->source, lo);
    struct kind_entry *e = &f->kinds[h % KIND_CACHE];
    if (e->valid && e->event_type == (int)ev->type && strlen(e->service) == ls &&
        memcmp(e->service, ev->service, ls) == 0 && strlen(e->source) == lo &&
        memcmp(e->source, ev->source, lo) == 0) {
        *ret_id = e->id;
        return touch(s, f->st[FS_KIND_USED], e->id, &e->used_ms, ts_ms);
    }
    struct kind_entry n = {.valid = true, .event_type = (int)ev->type};
    memcpy(n.service, ev->service, ls);
    memcpy(n.source, ev->source, lo);
    sqlite3_stmt *st = f->st[FS_KIND_GET];
    sqlite3_bind_text(st, 1, n.service, (int)ls, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, n.event_type);
    sqlite3_bind_text(st, 3, n.source, (int)lo, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW) {
        n.id = sqlite3_column_int64(st, 0);
        n.used_ms = sqlite3_column_int64(st, 1);
    } else if (rc != SQLITE_DONE) {
        r = store_sqlite_error(s, rc);
    }
    sqlite3_reset(st);
    if (r < 0)
        return r;
    if (rc == SQLITE_DONE) {
        st = f->st[FS_KIND_ADD];
        sqlite3_bind_text(st, 1, n.service, (int)ls, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, n.event_type);
        sqlite3_bind_text(st, 3, n.source, (int)lo, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, ts_ms);
        if ((r = run(s, st)) < 0)
            return r;
        n.id = sqlite3_last_insert_rowid(store_sqlite(s));
        n.used_ms = ts_ms;
    } else if ((r = touch(s, f->st[FS_KIND_USED], n.id, &n.used_ms, ts_ms)) < 0) {
        return r;
    }
    *e = n;
    *ret_id = n.id;
    return 0;
}

/* The id of an account name (0 for none), added on first use. */
static int account_id(struct store *s, const char *name, int64_t ts_ms, int64_t *ret_id)
{
    struct store_failures *f = store_failures_of(s);
    size_t len = strnlen(name, SEC_ACCOUNT_MAX - 1);
    if (len == 0) {
        *ret_id = 0;
        return 0;
    }
    struct account_entry *e = &f->accounts[hash_bytes(2166136261u, name, len) % ACCOUNT_CACHE];
    if (e->valid && strlen(e->name) == len && memcmp(e->name, name, len) == 0) {
        *ret_id = e->id;
        return touch(s, f->st[FS_ACCOUNT_USED], e->id, &e->used_ms, ts_ms);
    }
    int64_t id = 0, used = ts_ms;
    sqlite3_stmt *st = f->st[FS_ACCOUNT_GET];
    sqlite3_bind_text(st, 1, name, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(st, 0);
        used = sqlite3_column_int64(st, 1);
    } else if (rc != SQLITE_DONE) {
        r = store_sqlite_error(s, rc);
    }
    sqlite3_reset(st);
    if (r < 0)
        return r;
    if (rc == SQLITE_DONE) {
        st = f->st[FS_ACCOUNT_ADD];
        sqlite3_bind_text(st, 1, name, (int)len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, ts_ms);
        if ((r = run(s, st)) < 0)
            return r;
        id = sqlite3_last_insert_rowid(store_sqlite(s));
    } else if ((r = touch(s, f->st[FS_ACCOUNT_USED], id, &used, ts_ms)) < 0) {
        return r;
    }
    e->valid = true;
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    e->id = id;
    e->used_ms = used;
    *ret_id = id;
    return 0;
}

static int count_add(struct store *s, int64_t ts_ms)
{
    struct store_failures *f = store_failures_of(s);
    int64_t hour = hour_of(ts_ms);
    for (unsigned i = 0; i < f->ncounts; i++) {
        if (f->counts[i].hour == hour) {
            f->counts[i].n++;
            if (ts_ms > f->counts[i].last_ms)
                f->counts[i].last_ms = ts_ms;
            return 0;
        }
    }
    if (f->ncounts == COUNT_HOURS) {
        int r = store_failures_flush(s); /* a backfill over many hours: write them now */
        if (r < 0)
            return r;
    }
    f->counts[f->ncounts++] = (struct hour_count){hour, 1, ts_ms};
    return 0;
}

int store_failures_flush(struct store *s)
{
    struct store_failures *f = store_failures_of(s);
    int r = 0;
    for (unsigned i = 0; r == 0 && i < f->ncounts; i++) {
        sqlite3_stmt *st = f->st[FS_COUNT_ADD];
        sqlite3_bind_int64(st, 1, f->counts[i].hour);
        sqlite3_bind_int64(st, 2, f->counts[i].n);
        sqlite3_bind_int64(st, 3, f->counts[i].last_ms);
        r = run(s, st);
    }
    f->ncounts = 0;
    return r;
}

/* --- the hot path ------------------------------------------------------------------------- */

/* SessionID as failures.session: FNV-1a over its bytes, 32 bits; -1 for none (NULL). */
static int64_t session_hash(const struct sec_event *ev)
{
    size_t n = strnlen(ev->session, SEC_SESSION_MAX);
    if (n == 0)
        return -1;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)ev->session[i]) * 16777619u;
    return (int64_t)h;
}

static void bind_identity(sqlite3_stmt *st, int i_session, const struct sec_event *ev)
{
    int64_t h = session_hash(ev);
    if (h >= 0)
        sqlite3_bind_int64(st, i_session, h);
    else
        sqlite3_bind_null(st, i_session);
}

static void bind_port_transport(sqlite3_stmt *st, int i_port, const struct sec_event *ev)
{
    if (ev->remote.port)
        sqlite3_bind_int(st, i_port, ev->remote.port);
    else
        sqlite3_bind_null(st, i_port);
    if (ev->remote.transport != SEC_TRANSPORT_NONE)
        sqlite3_bind_int(st, i_port + 1, (int)ev->remote.transport);
    else
        sqlite3_bind_null(st, i_port + 1);
}

int store_failure_add(struct store *s, const struct sec_event *ev, const struct addr_prefix *key,
                      double weight, bool whitelisted, int64_t ts_ms)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    struct store_failures *f = store_failures_of(s);
    uint8_t abuf[16];
    size_t alen, klen;
    if (store_addr_pack(&ev->remote.addr, key, abuf, &alen) < 0)
        return -EINVAL;
    int64_t kind, account;
    if ((r = kind_id(s, ev, ts_ms, &kind)) < 0 ||
        (r = account_id(s, ev->account, ts_ms, &account)) < 0)
        return r;
    const uint8_t *kb = key_blob(f, key, &klen);
    if (ts_ms != f->seq_ts) {
        f->seq_ts = ts_ms;
        f->seq_next = 0;
    }
    sqlite3_stmt *st = f->st[FS_ADD];
    sqlite3_bind_blob(st, 1, kb, (int)klen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, ts_ms);
    sqlite3_bind_blob(st, 4, abuf, (int)alen, SQLITE_STATIC);
    bind_port_transport(st, 5, ev);
    sqlite3_bind_int64(st, 7, kind);
    sqlite3_bind_int64(st, 8, account);
    sqlite3_bind_double(st, 9, weight);
    sqlite3_bind_int(st, 10,
                     (whitelisted ? STORE_FLAG_WHITELISTED : 0) |
                         (ev->backfilled ? STORE_FLAG_BACKFILLED : 0));
    if (ev->event_tv_ms)
        sqlite3_bind_int64(st, 11, ev->event_tv_ms - ts_ms);
    else
        sqlite3_bind_null(st, 11);
    bind_identity(st, 12, ev);
    if (ev->place > 0) {
        /* Numbered by its place, below every live number: recorded already if it exists. */
        sqlite3_bind_int64(st, 3, -ev->place);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            return 0;
        if (rc != SQLITE_DONE)
            return store_sqlite_error(s, rc);
        return count_add(s, ts_ms);
    }
    for (int attempt = 0;; attempt++) {
        sqlite3_bind_int64(st, 3, attempt ? f->seq_spare++ : f->seq_next++);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            break;
        /* The same key, millisecond and number already exist: the clock went back, or an event
         * is recorded at a time of the past. Take a spare number. */
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY && attempt < 4)
            continue;
        return store_sqlite_error(s, rc);
    }
    return count_add(s, ts_ms);
}

/* --- deferred failures ------------------------------------------------------------------- */

/* The table's order: key as SQLite compares BLOBs (bytes, then length), ts_ms, seq. */
static int deferred_cmp(const void *pa, const void *pb)
{
    const struct deferred *a = pa, *b = pb;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(a->key, b->key, n);
    if (c)
        return c;
    if (a->klen != b->klen)
        return a->klen < b->klen ? -1 : 1;
    if (a->ts_ms != b->ts_ms)
        return a->ts_ms < b->ts_ms ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

int store_failure_defer(struct store *s, const struct sec_event *ev, const struct addr_prefix *key,
                        double weight, bool whitelisted, int64_t ts_ms)
{
    struct store_failures *f = store_failures_of(s);
    if (ev->place <= 0)
        return -EINVAL;
    if (f->merging || f->ndefer == STORE_DEFER_MAX)
        return -ENOSPC;
    if (!f->defer) {
        f->defer = malloc(STORE_DEFER_MAX * sizeof(*f->defer));
        if (!f->defer)
            return -ENOMEM;
    }
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    struct deferred *d = &f->defer[f->ndefer];
    size_t alen, klen;
    if (store_addr_pack(&ev->remote.addr, key, d->addr, &alen) < 0)
        return -EINVAL;
    if ((r = kind_id(s, ev, ts_ms, &d->kind)) < 0 ||
        (r = account_id(s, ev->account, ts_ms, &d->account)) < 0)
        return r;
    klen = store_key_pack(key, d->key);
    d->klen = (uint8_t)klen;
    d->alen = (uint8_t)alen;
    d->ts_ms = ts_ms;
    d->seq = -ev->place;
    d->port = ev->remote.port;
    d->transport = (uint8_t)ev->remote.transport;
    d->weight = weight;
    d->flags = (uint8_t)((whitelisted ? STORE_FLAG_WHITELISTED : 0) |
                         (ev->backfilled ? STORE_FLAG_BACKFILLED : 0));
    d->has_tv = ev->event_tv_ms != 0;
    d->tv_off = ev->event_tv_ms - ts_ms;
    d->session = session_hash(ev);
    f->ndefer++;
    /* A run is sorted as soon as it is complete: a bounded piece of work (about a millisecond). */
    if (f->ndefer - f->nsorted == STORE_DEFER_RUN) {
        qsort(&f->defer[f->nsorted], STORE_DEFER_RUN, sizeof(*f->defer), deferred_cmp);
        f->nsorted = f->ndefer;
    }
    return 0;
}

unsigned store_failure_deferred(const struct store *s)
{
    const struct store_failures *f = store_failures_of((struct store *)s);
    return f->ndefer - f->nwritten;
}

void store_failure_drop_deferred(struct store *s)
{
    struct store_failures *f = store_failures_of(s);
    f->ndefer = f->nsorted = f->nwritten = 0;
    f->merging = false;
}

static int write_deferred(struct store *s, const struct deferred *d)
{
    struct store_failures *f = store_failures_of(s);
    sqlite3_stmt *st = f->st[FS_ADD];
    sqlite3_bind_blob(st, 1, d->key, d->klen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, d->ts_ms);
    sqlite3_bind_int64(st, 3, d->seq);
    sqlite3_bind_blob(st, 4, d->addr, d->alen, SQLITE_STATIC);
    if (d->port)
        sqlite3_bind_int(st, 5, d->port);
    else
        sqlite3_bind_null(st, 5);
    if (d->transport != SEC_TRANSPORT_NONE)
        sqlite3_bind_int(st, 6, d->transport);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, d->kind);
    sqlite3_bind_int64(st, 8, d->account);
    sqlite3_bind_double(st, 9, d->weight);
    sqlite3_bind_int(st, 10, d->flags);
    if (d->has_tv)
        sqlite3_bind_int64(st, 11, d->tv_off);
    else
        sqlite3_bind_null(st, 11);
    if (d->session >= 0)
        sqlite3_bind_int64(st, 12, d->session);
    else
        sqlite3_bind_null(st, 12);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return 0; /* written before (this place was read again) */
    if (rc != SQLITE_DONE)
        return store_sqlite_error(s, rc);
    return count_add(s, d->ts_ms);
}

int store_failure_write_deferred(struct store *s, unsigned max, unsigned *ret_written)
{
    struct store_failures *f = store_failures_of(s);
    unsigned n = 0;
    *ret_written = 0;
    if (f->nwritten == f->ndefer)
        return 0;
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    unsigned runs = (f->ndefer + STORE_DEFER_RUN - 1) / STORE_DEFER_RUN;
    if (!f->merging) {
        if (f->nsorted < f->ndefer)
            qsort(&f->defer[f->nsorted], f->ndefer - f->nsorted, sizeof(*f->defer), deferred_cmp);
        f->nsorted = f->ndefer;
        for (unsigned i = 0; i < runs; i++)
            f->head[i] = i * STORE_DEFER_RUN;
        f->merging = true;
    }
    while (n < max && f->nwritten < f->ndefer) {
        /* The smallest head of the runs (at most DEFER_RUNS: a scan is enough). */
        const struct deferred *best = NULL;
        unsigned bi = 0;
        for (unsigned i = 0; i < runs; i++) {
            unsigned end =
                (i + 1) * STORE_DEFER_RUN < f->ndefer ? (i + 1) * STORE_DEFER_RUN : f->ndefer;
            if (f->head[i] == end)
                continue;
            const struct deferred *d = &f->defer[f->head[i]];
            if (!best || deferred_cmp(d, best) < 0) {
                best = d;
                bi = i;
            }
        }
        if ((r = write_deferred(s, best)) < 0)
            break;
        f->head[bi]++;
        f->nwritten++;
        n++;
    }
    if (f->nwritten == f->ndefer) {
        f->ndefer = f->nsorted = f->nwritten = 0;
        f->merging = false;
    }
    *ret_written = n;
    return r;
}

int store_window_sum(struct store *s, const struct addr_prefix *key, int64_t from_ms, int64_t to_ms,
                     double *ret_sum)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    struct store_failures *f = store_failures_of(s);
    size_t klen;
    const uint8_t *kb = key_blob(f, key, &klen);
    sqlite3_stmt *st = f->st[FS_WINDOW];
    sqlite3_bind_blob(st, 1, kb, (int)klen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, from_ms);
    sqlite3_bind_int64(st, 3, to_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret_sum = sqlite3_column_double(st, 0);
    else
        r = row_error(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_failure_seen(struct store *s, const struct sec_event *ev, const struct addr_prefix *key,
                       int64_t from_ms, int64_t to_ms, bool *ret_seen)
{
    *ret_seen = false;
    if (!ev->event_tv_ms)
        return 0;
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    struct store_failures *f = store_failures_of(s);
    uint8_t abuf[16];
    size_t alen, klen;
    if (store_addr_pack(&ev->remote.addr, key, abuf, &alen) < 0)
        return 0; /* not under this key: never recorded there */
    const uint8_t *kb = key_blob(f, key, &klen);
    sqlite3_stmt *st = f->st[FS_EVENT_SEEN];
    sqlite3_bind_blob(st, 1, kb, (int)klen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, from_ms);
    sqlite3_bind_int64(st, 3, to_ms);
    sqlite3_bind_int64(st, 4, ev->event_tv_ms);
    sqlite3_bind_int(st, 5, (int)ev->type);
    sqlite3_bind_blob(st, 6, abuf, (int)alen, SQLITE_STATIC);
    bind_port_transport(st, 7, ev);
    bind_identity(st, 9, ev);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        *ret_seen = rc == SQLITE_ROW;
    else
        r = store_sqlite_error(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_window_peak(struct store *s, const struct addr_prefix *key, int64_t from_ms,
                      int64_t at_ms, int64_t to_ms, int64_t span_ms, double stop_at,
                      double *ret_peak)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    struct store_failures *f = store_failures_of(s);
    size_t klen;
    const uint8_t *kb = key_blob(f, key, &klen);
    sqlite3_stmt *head = f->st[FS_ROWS_HEAD], *tail = f->st[FS_ROWS_TAIL];
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st = i ? tail : head;
        sqlite3_bind_blob(st, 1, kb, (int)klen, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, from_ms);
        sqlite3_bind_int64(st, 3, to_ms);
    }
    /* The head walks the rows in time order, each a window's end e; the tail follows, leaving
     * out the rows before e - span. Windows ending before at_ms do not hold the event. */
    double sum = 0, peak = 0;
    int rc_head, rc_tail = SQLITE_ROW;
    bool tail_row = false;
    while ((rc_head = sqlite3_step(head)) == SQLITE_ROW) {
        int64_t e = sqlite3_column_int64(head, 0);
        sum += sqlite3_column_double(head, 1);
        for (;;) {
            if (!tail_row) {
                rc_tail = sqlite3_step(tail);
                if (rc_tail != SQLITE_ROW)
                    break;
                tail_row = true;
            }
            if (sqlite3_column_int64(tail, 0) >= e - span_ms)
                break;
            sum -= sqlite3_column_double(tail, 1);
            tail_row = false;
        }
        if (rc_tail != SQLITE_ROW && rc_tail != SQLITE_DONE)
            break;
        if (e >= at_ms && sum > peak)
            peak = sum;
        if (peak + 1e-9 >= stop_at)
            break;
    }
    if (rc_head != SQLITE_ROW && rc_head != SQLITE_DONE)
        r = store_sqlite_error(s, rc_head);
    else if (rc_tail != SQLITE_ROW && rc_tail != SQLITE_DONE)
        r = store_sqlite_error(s, rc_tail);
    sqlite3_reset(head);
    sqlite3_reset(tail);
    if (r == 0)
        *ret_peak = peak;
    return r;
}

int store_last_failure_ms(struct store *s, int64_t *ret_ms)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    struct store_failures *f = store_failures_of(s);
    /* This turn's failures are in memory until the commit. */
    int64_t last = 0;
    for (unsigned i = 0; i < f->ncounts; i++)
        if (f->counts[i].last_ms > last)
            last = f->counts[i].last_ms;
    sqlite3_stmt *st = f->st[FS_LAST_MS];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_int64(st, 0) > last)
            last = sqlite3_column_int64(st, 0);
    } else if (rc != SQLITE_DONE) {
        r = store_sqlite_error(s, rc);
    }
    sqlite3_reset(st);
    if (r == 0)
        *ret_ms = last;
    return r;
}

/* --- what the control commands ask ---------------------------------------------------------- */

int store_key_stats(struct store *s, const struct addr_prefix *key, struct store_key_stats *ret)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    struct store_failures *f = store_failures_of(s);
    size_t klen;
    const uint8_t *kb = key_blob(f, key, &klen);
    struct store_key_stats k = {0};
    for (int i = 0; r == 0 && i < 2; i++) {
        sqlite3_stmt *st = f->st[i ? FS_KEY_HOURS : FS_KEY_RAW];
        sqlite3_bind_blob(st, 1, kb, (int)klen, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            int64_t n = (int64_t)sqlite3_column_double(st, 0);
            if (n > 0) {
                int64_t first = sqlite3_column_int64(st, 2), last = sqlite3_column_int64(st, 3);
                if (k.count == 0 || first < k.first_ms)
                    k.first_ms = first;
                if (k.count == 0 || last > k.last_ms)
                    k.last_ms = last;
                k.count += n;
                k.weight += sqlite3_column_double(st, 1);
            }
        } else {
            r = row_error(s, rc);
        }
        sqlite3_reset(st);
    }
    if (r == 0)
        *ret = k;
    return r;
}

int store_failures_since(struct store *s, int64_t since_ms, uint64_t *ret_n)
{
    struct store_failures *f = store_failures_of(s);
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    /* This turn's failures are in memory until the commit. */
    uint64_t pending = 0;
    for (unsigned i = 0; i < f->ncounts; i++)
        if (f->counts[i].hour >= hour_of(since_ms))
            pending += (uint64_t)f->counts[i].n;
    sqlite3_stmt *st = f->st[FS_COUNTS_SINCE];
    sqlite3_bind_int64(st, 1, hour_of(since_ms));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret_n = (uint64_t)sqlite3_column_double(st, 0) + pending;
    else
        r = row_error(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_key_seen(struct store *s, const struct addr_prefix *key, int64_t *ret_first_ms,
                   int64_t *ret_last_ms)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    struct store_failures *f = store_failures_of(s);
    size_t klen;
    const uint8_t *kb = key_blob(f, key, &klen);
    int64_t first = 0, last = 0;
    for (int i = 0; r == 0 && i < 2; i++) {
        sqlite3_stmt *st = f->st[i ? FS_SEEN_HOURS : FS_SEEN_RAW];
        sqlite3_bind_blob(st, 1, kb, (int)klen, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
                int64_t a = sqlite3_column_int64(st, 0), b = sqlite3_column_int64(st, 1);
                if (!first || a < first)
                    first = a;
                if (b > last)
                    last = b;
            }
        } else {
            r = row_error(s, rc);
        }
        sqlite3_reset(st);
    }
    if (r == 0) {
        *ret_first_ms = first;
        *ret_last_ms = last;
    }
    return r;
}

/* What one raw row takes in the B-tree, pages' slack included (bench_store measures 27-31 bytes
 * per row). */
#define RAW_ROW_BYTES 32

int store_size_cache(struct store *s, int64_t raw_since_ms, int min_kib, int max_kib, int *ret_kib)
{
    struct store_failures *f = store_failures_of(s);
    sqlite3_stmt *st = f->st[FS_RAW_ROWS];
    sqlite3_bind_int64(st, 1, hour_of(raw_since_ms));
    int rc = sqlite3_step(st);
    int r = 0;
    double rows = 0;
    if (rc == SQLITE_ROW)
        rows = sqlite3_column_double(st, 0);
    else
        r = row_error(s, rc);
    sqlite3_reset(st);
    if (r < 0)
        return r;
    /* The raw rows, their interior pages, and room for the bans' and the history's index pages
     * the same turns touch. */
    double kib = rows * RAW_ROW_BYTES * 1.25 / 1024 + min_kib / 2.0;
    int want = kib < min_kib ? min_kib : kib > max_kib ? max_kib : (int)kib;
    char text[64];
    snprintf(text, sizeof(text), "PRAGMA cache_size = -%d", want);
    rc = sqlite3_exec(store_sqlite(s), text, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return store_sqlite_error(s, rc);
    if (ret_kib)
        *ret_kib = want;
    return 0;
}

int store_failures_show(struct store *s, const struct addr *a, const struct addr_prefix *key,
                        const struct store_show_fns *fns, void *data,
                        struct store_addr_summary *ret)
{
    struct store_failures *f = store_failures_of(s);
    struct store_addr_summary sum = {0};
    uint8_t abuf[16];
    size_t alen, klen;
    if (store_addr_pack(a, key, abuf, &alen) < 0) {
        *ret = sum; /* not under this key: nothing can be recorded for it there */
        return 0;
    }
    const uint8_t *kb = key_blob(f, key, &klen);
    int r = 0, rc;
    for (int q = FS_SHOW_SUMMARY; r == 0 && q <= FS_SHOW_ACCOUNTS; q++) {
        if ((q == FS_SHOW_BY_TYPE && !(fns && fns->by_type)) ||
            (q == FS_SHOW_ACCOUNTS && !(fns && fns->account)))
            continue;
        sqlite3_stmt *st = f->st[q];
        sqlite3_bind_blob(st, 1, kb, (int)klen, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, abuf, (int)alen, SQLITE_STATIC);
        while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (q == FS_SHOW_SUMMARY) {
                sum.count = (int64_t)sqlite3_column_double(st, 0);
                sum.whitelisted = (int64_t)sqlite3_column_double(st, 1);
                sum.first_ms = sqlite3_column_int64(st, 2);
                sum.last_ms = sqlite3_column_int64(st, 3);
            } else if (q == FS_SHOW_BY_TYPE) {
                r = fns->by_type(data, (const char *)sqlite3_column_text(st, 0),
                                 sqlite3_column_int(st, 1), (int64_t)sqlite3_column_double(st, 2),
                                 sqlite3_column_double(st, 3));
            } else {
                r = fns->account(data, (const char *)sqlite3_column_text(st, 0),
                                 (int64_t)sqlite3_column_double(st, 1),
                                 sqlite3_column_int64(st, 2));
            }
        }
        if (r == 0 && rc != SQLITE_DONE)
            r = store_sqlite_error(s, rc);
        sqlite3_reset(st);
    }
    if (r == 0)
        *ret = sum;
    return r;
}

/* --- roll-up ------------------------------------------------------------------------------ */

struct group {
    int64_t hour, kind, account, flags, n;
    double weight;
    int64_t first_ms, last_ms;
    uint8_t addr[16];
    size_t addr_len;
};

/* The groups of one key's batch: a hash of slot indexes into g, which holds them in the order
 * they were made. Rows come in time order, so the groups of one hour are next to each other. */
struct groups {
    struct group *g;
    int32_t *slot; /* -1 = free */
    unsigned cap, n;
};

static void groups_clear(struct groups *gs)
{
    for (unsigned i = 0; i < gs->cap; i++)
        gs->slot[i] = -1;
    gs->n = 0;
}

static struct group *group_of(struct groups *gs, int64_t hour, const void *addr, size_t alen,
                              int64_t kind, int64_t account, int64_t flags)
{
    uint32_t h = hash_bytes(2166136261u, &hour, sizeof(hour));
    h = hash_bytes(h, addr, alen);
    h = hash_bytes(h, &kind, sizeof(kind));
    h = hash_bytes(h, &account, sizeof(account));
    h = hash_bytes(h, &flags, sizeof(flags));
    for (unsigned i = h % gs->cap;; i = (i + 1) % gs->cap) {
        if (gs->slot[i] < 0) {
            struct group *g = &gs->g[gs->n];
            *g = (struct group){
                .hour = hour, .kind = kind, .account = account, .flags = flags, .addr_len = alen};
            memcpy(g->addr, addr, alen);
            gs->slot[i] = (int32_t)gs->n++;
            return g;
        }
        struct group *g = &gs->g[gs->slot[i]];
        if (g->hour == hour && g->kind == kind && g->account == account && g->flags == flags &&
            g->addr_len == alen && memcmp(g->addr, addr, alen) == 0)
            return g;
    }
}

/* Writes one key's groups into failure_hours and its per-hour totals into failure_key_hours. */
static int groups_write(struct store *s, const uint8_t *key, size_t klen, struct groups *gs)
{
    struct store_failures *f = store_failures_of(s);
    int r = 0;
    for (unsigned i = 0; r == 0 && i < gs->n; i++) {
        struct group *g = &gs->g[i];
        int64_t base = g->hour * STORE_HOUR_MS;
        sqlite3_stmt *st = f->st[FS_HOUR_UPSERT];
        sqlite3_bind_int64(st, 1, g->hour);
        sqlite3_bind_blob(st, 2, key, (int)klen, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, g->addr, (int)g->addr_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, g->kind);
        sqlite3_bind_int64(st, 5, g->account);
        sqlite3_bind_int64(st, 6, g->flags);
        sqlite3_bind_int64(st, 7, g->n);
        sqlite3_bind_double(st, 8, g->weight);
        sqlite3_bind_int64(st, 9, g->first_ms - base);
        sqlite3_bind_int64(st, 10, g->last_ms - base);
        r = run(s, st);
        if (r == 0) {
            st = f->st[FS_KINDHOUR_UPSERT];
            sqlite3_bind_int64(st, 1, g->hour);
            sqlite3_bind_int64(st, 2, g->kind);
            sqlite3_bind_int64(st, 3, g->flags);
            sqlite3_bind_int64(st, 4, g->n);
            r = run(s, st);
        }
        if (r == 0 && g->account != 0) {
            int64_t day = day_of_hour(g->hour);
            st = f->st[FS_ACCOUNTDAY_UPSERT];
            sqlite3_bind_int64(st, 1, day);
            sqlite3_bind_int64(st, 2, g->account);
            sqlite3_bind_int64(st, 3, g->n);
            r = run(s, st);
            if (r == 0) {
                st = f->st[FS_ACCOUNTKEY_ADD];
                sqlite3_bind_int64(st, 1, day);
                sqlite3_bind_int64(st, 2, g->account);
                sqlite3_bind_blob(st, 3, key, (int)klen, SQLITE_STATIC);
                r = run(s, st);
            }
        }
    }
    /* The key's hours: each run of groups of one hour, summed. */
    for (unsigned i = 0; r == 0 && i < gs->n;) {
        const struct group *g = &gs->g[i];
        int64_t n = 0, first = g->first_ms, last = g->last_ms;
        double w = 0;
        unsigned k;
        for (k = i; k < gs->n && gs->g[k].hour == g->hour; k++) {
            const struct group *o = &gs->g[k];
            n += o->n;
            w += o->weight;
            first = o->first_ms < first ? o->first_ms : first;
            last = o->last_ms > last ? o->last_ms : last;
        }
        int64_t base = g->hour * STORE_HOUR_MS;
        sqlite3_stmt *st = f->st[FS_KEYHOUR_UPSERT];
        sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, g->hour);
        sqlite3_bind_int64(st, 3, n);
        sqlite3_bind_double(st, 4, w);
        sqlite3_bind_int64(st, 5, first - base);
        sqlite3_bind_int64(st, 6, last - base);
        r = run(s, st);
        if (r == 0) {
            int64_t day = day_of_hour(g->hour), dbase = day * 24 * STORE_HOUR_MS;
            st = f->st[FS_KEYDAY_UPSERT];
            sqlite3_bind_int64(st, 1, day);
            sqlite3_bind_blob(st, 2, key, (int)klen, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, n);
            sqlite3_bind_int64(st, 4, first - dbase);
            sqlite3_bind_int64(st, 5, last - dbase);
            r = run(s, st);
        }
        i = k;
    }
    if (r == 0 && gs->n) {
        int64_t first = gs->g[0].first_ms;
        for (unsigned i = 1; i < gs->n; i++)
            if (gs->g[i].first_ms < first)
                first = gs->g[i].first_ms;
        sqlite3_stmt *st = f->st[FS_KEY_FIRST];
        sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, first);
        r = run(s, st);
    }
    return r;
}

/* Rolls up one key's rows older than before_ms, at most max of them. */
static int rollup_key(struct store *s, const uint8_t *key, size_t klen, int64_t before_ms,
                      unsigned max, struct groups *gs, unsigned *ret_rows)
{
    struct store_failures *f = store_failures_of(s);
    sqlite3_stmt *st = f->st[FS_OLD_ROWS];
    sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, before_ms);
    sqlite3_bind_int64(st, 3, max);
    groups_clear(gs);
    unsigned rows = 0;
    int64_t last_ts = 0, last_seq = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t ts = sqlite3_column_int64(st, 0);
        last_ts = ts;
        last_seq = sqlite3_column_int64(st, 1);
        size_t alen = (size_t)sqlite3_column_bytes(st, 2);
        const void *addr = sqlite3_column_blob(st, 2);
        if (!addr || alen > 16) { /* not ours: its address does not go into the history */
            addr = "";
            alen = 0;
        }
        struct group *g = group_of(gs, hour_of(ts), addr, alen, sqlite3_column_int64(st, 3),
                                   sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 5));
        if (g->n == 0 || ts < g->first_ms)
            g->first_ms = ts;
        if (g->n == 0 || ts > g->last_ms)
            g->last_ms = ts;
        g->n++;
        g->weight += sqlite3_column_double(st, 6);
        rows++;
    }
    int r = rc == SQLITE_DONE ? 0 : store_sqlite_error(s, rc);
    sqlite3_reset(st);
    if (r == 0 && rows)
        r = groups_write(s, key, klen, gs);
    if (r == 0 && rows) {
        st = f->st[FS_DELETE_OLD];
        sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, last_ts);
        sqlite3_bind_int64(st, 3, last_seq);
        r = run(s, st);
    }
    *ret_rows = rows;
    return r;
}

int store_rollup(struct store *s, int64_t before_ms, unsigned max, unsigned *ret_rows,
                 bool *ret_done)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    if (store_is_read_only(s))
        return -EROFS;
    struct store_failures *f = store_failures_of(s);
    before_ms = hour_of(before_ms) * STORE_HOUR_MS; /* whole hours only */
    if (max == 0)
        max = 1;
    struct groups gs = {.cap = 2 * max + 1};
    gs.g = malloc(max * sizeof(*gs.g));
    gs.slot = malloc(gs.cap * sizeof(*gs.slot));
    if (!gs.g || !gs.slot) {
        free(gs.g);
        free(gs.slot);
        return -ENOMEM;
    }
    unsigned budget = max, total = 0;
    bool done = false;
    while (r == 0 && budget > 0) {
        uint8_t key[STORE_KEY_PACKED_MAX];
        size_t klen = 0;
        if (f->rollup_resume) {
            memcpy(key, f->rollup_key, f->rollup_key_len);
            klen = f->rollup_key_len;
        } else {
            sqlite3_stmt *st = f->st[FS_NEXT_KEY];
            sqlite3_bind_blob(st, 1, f->rollup_key, (int)f->rollup_key_len, SQLITE_STATIC);
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                klen = (size_t)sqlite3_column_bytes(st, 0);
                if (klen > sizeof(key))
                    klen = sizeof(key); /* never ours; the next seek moves past it */
                memcpy(key, sqlite3_column_blob(st, 0), klen);
            } else if (rc != SQLITE_DONE) {
                r = store_sqlite_error(s, rc);
            }
            sqlite3_reset(st);
            if (r < 0)
                break;
            if (rc == SQLITE_DONE) { /* the end of the keys: the pass is over */
                f->rollup_key_len = 0;
                done = true;
                break;
            }
        }
        unsigned rows = 0;
        r = rollup_key(s, key, klen, before_ms, budget, &gs, &rows);
        if (r < 0)
            break;
        memcpy(f->rollup_key, key, klen);
        f->rollup_key_len = klen;
        f->rollup_resume = rows == budget; /* maybe more of this key */
        total += rows;
        budget -= rows ? rows : 1; /* a key without old rows still costs a seek */
    }
    free(gs.g);
    free(gs.slot);
    if (r == 0) {
        if (ret_rows)
            *ret_rows = total;
        if (ret_done)
            *ret_done = done;
    }
    return r;
}

/* --- retention ---------------------------------------------------------------------------- */

int store_failures_prune(struct store *s, int64_t cutoff_ms, unsigned max, unsigned *ret_n)
{
    struct store_failures *f = store_failures_of(s);
    int64_t cutoff_hour = hour_of(cutoff_ms);
    unsigned n = 0;
    int r = 0, rc;

    /* Reports stop reading the daily rows of the days this prune cuts into, in the transaction
     * of its first deletion (written when the cutoff moves on, once an hour: an idle prune
     * dirties no page). */
    sqlite3_stmt *mark = f->st[FS_PRUNE_MARK];
    sqlite3_bind_int64(mark, 1, cutoff_hour);
    if ((r = run(s, mark)) < 0)
        return r;

    /* Whole (hour, key) pairs: their detail rows and their key-hour row go together. */
    sqlite3_stmt *pairs = f->st[FS_PRUNE_PAIRS];
    sqlite3_bind_int64(pairs, 1, cutoff_hour);
    sqlite3_bind_int64(pairs, 2, max);
    struct {
        int64_t hour;
        uint8_t key[STORE_KEY_PACKED_MAX];
        int klen;
    } *todo = calloc(max ? max : 1, sizeof(*todo));
    unsigned ntodo = 0;
    if (!todo) {
        sqlite3_reset(pairs);
        return -ENOMEM;
    }
    while (ntodo < max && (rc = sqlite3_step(pairs)) == SQLITE_ROW) {
        int klen = sqlite3_column_bytes(pairs, 1);
        todo[ntodo].hour = sqlite3_column_int64(pairs, 0);
        todo[ntodo].klen = klen > STORE_KEY_PACKED_MAX ? STORE_KEY_PACKED_MAX : klen;
        memcpy(todo[ntodo].key, sqlite3_column_blob(pairs, 1), (size_t)todo[ntodo].klen);
        ntodo++;
    }
    sqlite3_reset(pairs);
    for (unsigned i = 0; r == 0 && i < ntodo && n < max; i++) {
        for (int q = FS_PRUNE_HOUR; r == 0 && q <= FS_PRUNE_KEYHOUR; q++) {
            sqlite3_stmt *st = f->st[q];
            sqlite3_bind_int64(st, 1, todo[i].hour);
            sqlite3_bind_blob(st, 2, todo[i].key, todo[i].klen, SQLITE_STATIC);
            r = run(s, st);
            if (r == 0 && q == FS_PRUNE_HOUR)
                n += (unsigned)sqlite3_changes(store_sqlite(s));
        }
        /* Hours go oldest first: the key's first failure is now its next hour's, if any. */
        if (r == 0) {
            sqlite3_stmt *st = f->st[FS_KEY_NEXT_FIRST];
            sqlite3_bind_blob(st, 1, todo[i].key, todo[i].klen, SQLITE_STATIC);
            int rc2 = sqlite3_step(st);
            int64_t next = rc2 == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
            if (rc2 != SQLITE_ROW && rc2 != SQLITE_DONE)
                r = store_sqlite_error(s, rc2);
            sqlite3_reset(st);
            if (r == 0) {
                st = f->st[rc2 == SQLITE_ROW ? FS_KEY_FIRST_SET : FS_KEY_FIRST_DELETE];
                sqlite3_bind_blob(st, 1, todo[i].key, todo[i].klen, SQLITE_STATIC);
                if (rc2 == SQLITE_ROW)
                    sqlite3_bind_int64(st, 2, next);
                r = run(s, st);
            }
        }
    }
    free(todo);
    if (r == 0 && n < max) {
        sqlite3_stmt *st = f->st[FS_PRUNE_COUNTS];
        sqlite3_bind_int64(st, 1, cutoff_hour);
        r = run(s, st);
    }
    /* The daily tier, once the hours before the cutoff are gone: the days all of whose hours
     * are, and the kinds' hours. Reports read no day before the cutoff (failure_retention),
     * so a day left for a later batch is never half read. */
    for (int q = FS_PRUNE_KEYDAYS; r == 0 && n < max && q <= FS_PRUNE_KINDHOURS; q++) {
        sqlite3_stmt *st = f->st[q];
        sqlite3_bind_int64(st, 1, q == FS_PRUNE_KINDHOURS ? cutoff_hour : day_of_hour(cutoff_hour));
        sqlite3_bind_int64(st, 2, max - n);
        r = run(s, st);
        if (r == 0)
            n += (unsigned)sqlite3_changes(store_sqlite(s));
    }
    /* Names no failure since the cutoff used (a day's margin: used_ms lags by up to an hour).
     * A sweep over the ids, a slice per call. */
    if (r == 0 && n < max) {
        int64_t used_before = cutoff_ms - 86400000LL, end = 0, seen = 0;
        sqlite3_stmt *st = f->st[FS_PRUNE_ACCOUNTS_END];
        sqlite3_bind_int64(st, 1, f->prune_account_id);
        sqlite3_bind_int64(st, 2, max - n);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            end = sqlite3_column_int64(st, 0);
            seen = sqlite3_column_int64(st, 1);
        } else {
            r = row_error(s, rc);
        }
        sqlite3_reset(st);
        if (r == 0 && seen) {
            st = f->st[FS_PRUNE_ACCOUNTS];
            sqlite3_bind_int64(st, 1, f->prune_account_id);
            sqlite3_bind_int64(st, 2, end);
            sqlite3_bind_int64(st, 3, used_before);
            r = run(s, st);
            if (r == 0) {
                n += (unsigned)sqlite3_changes(store_sqlite(s));
                f->prune_account_id = end;
            }
        } else if (r == 0) {
            f->prune_account_id = 0; /* the sweep is over: the next one starts again */
        }
        if (r == 0) {
            st = f->st[FS_PRUNE_KINDS];
            sqlite3_bind_int64(st, 1, used_before);
            r = run(s, st);
        }
        /* Pruned names may be cached. */
        if (r == 0)
            forget_names(f);
    }
    if (r == 0)
        *ret_n = n;
    return r;
}
