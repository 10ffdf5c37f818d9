/* The store over SQLite. Every statement is prepared once at open and bound per call; nothing
 * the network sent is ever part of SQL text. */
#include <errno.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "schema.h"
#include "store.h"
#include "store_internal.h"

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_BAN_LAST,
    ST_BAN_HISTORY,
    ST_BAN_ADD,
    ST_BAN_LIFT,
    ST_OFFENCES,
    ST_BANS_EXPIRE,
    ST_BANS_ACTIVE,
    ST_BANS_ACTIVE_PAGE,
    ST_PRUNE_BANS,
    ST_PRUNE_INCIDENTS,
    ST_PRUNE_RUNS,
    ST_INCIDENT,
    ST_BAN_LENS,
    ST_ACTIVE_COUNT,
    ST_ACTIVE_OVERDUE,
    ST_SUCCESS_ADD,
    ST_SUCCESS_GET,
    ST_PRUNE_SUCCESSES,
    ST_OUTBOX_ADD,
    ST_OUTBOX_LIST,
    ST_OUTBOX_DELETE,
    ST_OUTBOX_COUNT,
    ST_CURSOR_GET,
    ST_CURSOR_SET,
    ST_BANS_BETWEEN,
    ST_SLICE_PERMANENT,
    ST_SLICE_TIMED,
    ST_BAN_MAX_ID,
    ST_SECLOG_CURSOR_GET,
    ST_SECLOG_CURSOR_PUT,
    ST_COUNT
};

#define BAN_COLUMNS                                                                                \
    "id, prefix, start_ms, expires_ms, reason, origin, failures, offence, service, event_type, "   \
    "ended_ms, end_reason, lifted_by, note"

static const char *const sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_BAN_LAST] = "SELECT " BAN_COLUMNS " FROM bans WHERE prefix = ?1 "
                    "ORDER BY start_ms DESC, id DESC LIMIT 1",
    [ST_BAN_HISTORY] = "SELECT " BAN_COLUMNS " FROM bans WHERE prefix = ?1 "
                       "ORDER BY start_ms DESC, id DESC",
    [ST_BAN_ADD] = "INSERT INTO bans (prefix, family, len, start_ms, expires_ms, reason, origin, "
                   "failures, offence, service, event_type, ended_ms, end_reason, lifted_by, note) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [ST_BAN_LIFT] = "UPDATE bans SET ended_ms = ?2, end_reason = 'lifted', lifted_by = ?3 "
                    "WHERE prefix = ?1 AND ended_ms IS NULL",
    [ST_OFFENCES] = "SELECT count(*) FROM bans WHERE prefix = ?1 AND start_ms >= ?2 "
                    "AND reason = 'threshold'",
    [ST_BANS_EXPIRE] = "UPDATE bans SET ended_ms = expires_ms, end_reason = 'expired' "
                       "WHERE id IN (SELECT id FROM bans WHERE ended_ms IS NULL "
                       "AND expires_ms <= ?1 LIMIT ?2)",
    [ST_BANS_ACTIVE] = "SELECT " BAN_COLUMNS " FROM bans WHERE ended_ms IS NULL "
                       "AND (expires_ms IS NULL OR expires_ms > ?1) ORDER BY start_ms, id",
    [ST_BANS_ACTIVE_PAGE] = "SELECT " BAN_COLUMNS " FROM bans INDEXED BY bans_active_list "
                            "WHERE ended_ms IS NULL AND id > ?2 "
                            "AND (expires_ms IS NULL OR expires_ms > ?1) ORDER BY id LIMIT ?3",
    [ST_PRUNE_BANS] = "DELETE FROM bans WHERE id IN (SELECT id FROM bans WHERE start_ms < ?1 "
                      "AND ended_ms IS NOT NULL AND ended_ms < ?1 ORDER BY start_ms LIMIT ?2)",
    [ST_PRUNE_INCIDENTS] = "DELETE FROM daemon_events WHERE id IN (SELECT id FROM daemon_events "
                           "WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?2)",
    /* The latest run stays: the next start needs it to tell a clean stop from a death. */
    [ST_PRUNE_RUNS] = "DELETE FROM daemon_runs WHERE id IN (SELECT id FROM daemon_runs "
                      "WHERE start_ms < ?1 AND id < (SELECT max(id) FROM daemon_runs) "
                      "ORDER BY id LIMIT ?2)",
    [ST_INCIDENT] = "INSERT INTO daemon_events (ts_ms, kind, source, message) "
                    "VALUES (?1, ?2, ?3, ?4)",
    /* Bans not ended, from the tally the schema's triggers keep (schema/003-...sql)... */
    [ST_ACTIVE_COUNT] = "SELECT family, reason, n FROM bans_open",
    /* ... less those whose time has run out but that are not marked expired yet (a few: the
     * daemon marks them every second). */
    [ST_ACTIVE_OVERDUE] = "SELECT family, reason, count(*) FROM bans INDEXED BY bans_active "
                          "WHERE ended_ms IS NULL AND expires_ms <= ?1 GROUP BY family, reason",
    [ST_BANS_BETWEEN] = "SELECT count(*) FROM bans WHERE start_ms >= ?1 AND start_ms < ?2",
    /* The restore's walk, both halves through bans_active (only the rows not ended): the
     * permanent bans newest first, then the others by expiry, the latest first. */
    [ST_SLICE_PERMANENT] = "SELECT " BAN_COLUMNS " FROM bans WHERE ended_ms IS NULL AND "
                           "expires_ms IS NULL AND id < ?1 AND id <= ?2 ORDER BY id DESC LIMIT ?3",
    [ST_SLICE_TIMED] = "SELECT " BAN_COLUMNS " FROM bans WHERE ended_ms IS NULL AND "
                       "expires_ms > ?4 AND (expires_ms, id) < (?5, ?1) AND id <= ?2 "
                       "ORDER BY expires_ms DESC, id DESC LIMIT ?3",
    [ST_BAN_MAX_ID] = "SELECT coalesce(max(id), 0) FROM bans",
    [ST_BAN_LENS] = "SELECT DISTINCT family, len FROM bans",
    [ST_SUCCESS_ADD] = "INSERT INTO successes (key, first_ms, last_ms, count, addr, account, "
                       "service) VALUES (?1, ?2, ?2, 1, ?3, ?4, ?5) ON CONFLICT (key) DO UPDATE "
                       "SET last_ms = max(last_ms, excluded.last_ms), count = count + 1, "
                       "addr = iif(excluded.last_ms >= last_ms, excluded.addr, addr), "
                       "account = iif(excluded.last_ms >= last_ms, excluded.account, account), "
                       "service = iif(excluded.last_ms >= last_ms, excluded.service, service)",
    [ST_SUCCESS_GET] = "SELECT first_ms, last_ms, count, addr, account, service FROM successes "
                       "WHERE key = ?1",
    [ST_PRUNE_SUCCESSES] = "DELETE FROM successes WHERE key IN (SELECT key FROM successes "
                           "WHERE last_ms < ?1 ORDER BY last_ms LIMIT ?2)",
    [ST_OUTBOX_ADD] = "INSERT INTO outbox (sink, op, prefix, start_ms, expires_ms, reason, note) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_OUTBOX_LIST] = "SELECT id, op, prefix, start_ms, expires_ms, reason, note FROM outbox "
                       "WHERE sink = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    [ST_OUTBOX_DELETE] = "DELETE FROM outbox WHERE sink = ?1 AND id <= ?2",
    [ST_OUTBOX_COUNT] = "SELECT count(*) FROM outbox WHERE sink = ?1",
    [ST_CURSOR_GET] = "SELECT position FROM remote_cursor WHERE source = ?1",
    [ST_CURSOR_SET] = "INSERT INTO remote_cursor (source, position, updated_ms) VALUES (?1, ?2, "
                      "?3) ON CONFLICT (source) DO UPDATE SET position = excluded.position, "
                      "updated_ms = excluded.updated_ms",
    [ST_SECLOG_CURSOR_GET] =
        "SELECT dev, ino, pos, tail, line_ms FROM seclog_cursor WHERE name = ?1",
    [ST_SECLOG_CURSOR_PUT] =
        "INSERT INTO seclog_cursor (name, path, dev, ino, pos, tail, line_ms, "
        "updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
        "ON CONFLICT (name) DO UPDATE SET path = ?2, dev = ?3, ino = ?4, pos = ?5, "
        "tail = ?6, line_ms = ?7, updated_ms = ?8",
};

enum op_kind { OP_BAN_ADD, OP_BAN_LIFT };

/* One ban change made during the open turn, kept until its commit succeeds. */
struct op {
    enum op_kind kind;
    struct store_ban ban; /* OP_BAN_LIFT: prefix, ended_ms, lifted_by */
};

struct store {
    sqlite3 *db;
    bool read_only;
    bool in_turn;
    int version;
    sqlite3_stmt *st[ST_COUNT];
    char errmsg[256];
    struct op *journal; /* ops of the open turn, or (after a failed commit) pending replay */
    unsigned njournal;
    bool replaying;
    struct store_stats stats;
    /* The last key formatted, since record + window count format the same key back to back. */
    struct addr_prefix key_cached;
    bool key_cached_valid;
    char key_text[ADDR_STRLEN];
    /* Prefix lengths (per family: [0] IPv4, [1] IPv6) that any ban row has, so a covering-ban
     * lookup probes only those instead of all 33 or 129. Bits are only ever set (a length whose
     * bans were pruned costs one useless probe until the next open). */
    uint64_t ban_lens[2][3];
    /* store_ban_last() answers, cached: a flood from one banned source asks the same question
     * thousands of times per turn. Direct-mapped and bounded; every change to bans (and every
     * rollback) bumps generation, which empties it at once. */
    struct ban_cache_entry {
        uint64_t generation; /* 0 = never filled */
        struct addr_prefix prefix;
        bool found;
        struct store_ban ban;
    } * ban_cache;
    uint64_t generation;
    /* Prefixes known to have no ban at all: a flood from many sources that were never banned
     * asks for each of them over and over, far more than ban_cache holds. Small entries, and
     * only a ban added for the prefix itself can make one wrong, so nothing else empties it. */
    struct no_ban_entry {
        bool valid;
        struct addr_prefix prefix;
    } * no_ban;
    struct store_failures *failures; /* store_failures.c */
    struct store_wal *wal;           /* store_wal.c, with STORE_OWN_CHECKPOINTS */
    void *report_period;             /* store_report.c */
    bool report_hours_only;          /* store_report.c: the daily tier left unread */
};

#define BAN_CACHE_SIZE 1024
#define NO_BAN_CACHE_SIZE 65536

static unsigned ban_cache_hash(const struct addr_prefix *p)
{
    uint32_t h = 2166136261u; /* FNV-1a over the prefix */
    const uint8_t *b = p->addr.bytes;
    for (int i = 0; i < 16; i++)
        h = (h ^ b[i]) * 16777619u;
    h = (h ^ p->len) * 16777619u;
    return h;
}

static unsigned ban_cache_slot(const struct addr_prefix *p)
{
    return ban_cache_hash(p) % BAN_CACHE_SIZE;
}

static struct no_ban_entry *no_ban_slot(struct store *s, const struct addr_prefix *p)
{
    return &s->no_ban[ban_cache_hash(p) % NO_BAN_CACHE_SIZE];
}

static void ban_len_mark(struct store *s, int family, unsigned len)
{
    if (len <= 128)
        s->ban_lens[family == AF_INET ? 0 : 1][len / 64] |= 1ull << (len % 64);
}

static bool ban_len_seen(const struct store *s, int family, unsigned len)
{
    return s->ban_lens[family == AF_INET ? 0 : 1][len / 64] & (1ull << (len % 64));
}

static void turn_lost(struct store *s);

static int map_rc(struct store *s, int rc)
{
    if (s && s->db)
        snprintf(s->errmsg, sizeof(s->errmsg), "%s", sqlite3_errmsg(s->db));
    /* SQLite rolls the whole transaction back by itself on some errors (a full disk or an I/O
     * error while spilling the cache): the turn is gone, whatever the caller does next. */
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE && s && s->db && s->in_turn &&
        sqlite3_get_autocommit(s->db))
        turn_lost(s);
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EUCLEAN;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN: {
        int e = s && s->db ? sqlite3_system_errno(s->db) : 0;
        return e ? -e : -ENOENT;
    }
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* --- what the store's other files share (store_internal.h) --- */

/* Prepares sql and binds the int64 arguments to ?1, ?2, ... */
int store_prepare(struct store *s, sqlite3_stmt **ret, const char *text, int n, ...)
{
    sqlite3_stmt *st = NULL;
    *ret = NULL;
    int rc = sqlite3_prepare_v2(store_sqlite(s), text, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return store_sqlite_error(s, rc);
    }
    va_list ap;
    va_start(ap, n);
    for (int i = 1; i <= n; i++)
        sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
    va_end(ap);
    *ret = st;
    return 0;
}

/* Steps once; returns 1 for a row, 0 when done, -errno on error. */
int store_step(struct store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : store_sqlite_error(s, rc);
}

/* Runs a statement without arguments whose rows, if any, are not wanted. */
int store_run_sql(struct store *s, const char *text)
{
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, &st, text, 0);
    while (rc == 0 && (rc = store_step(s, st)) > 0)
        rc = 0;
    sqlite3_finalize(st);
    return rc;
}

uint64_t store_column_u64(sqlite3_stmt *st, int i)
{
    sqlite3_int64 v = sqlite3_column_int64(st, i);
    return v < 0 ? 0 : (uint64_t)v;
}

/* Copies a text column (arbitrary bytes) into buf, cut to fit, and cut at an embedded NUL. */
void store_column_text(sqlite3_stmt *st, int i, char *buf, size_t len)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
    if (n >= len)
        n = len - 1;
    if (n)
        memcpy(buf, t, n);
    buf[n] = '\0';
    buf[strnlen(buf, n)] = '\0';
}

sqlite3 *store_sqlite(struct store *s)
{
    return s->db;
}

struct store_failures *store_failures_of(struct store *s)
{
    return s->failures;
}

struct store_wal *store_wal_of(struct store *s)
{
    return s->wal;
}

void **store_report_slot(struct store *s)
{
    return &s->report_period;
}

bool *store_report_hours_only_flag(struct store *s)
{
    return &s->report_hours_only;
}

bool store_is_read_only(const struct store *s)
{
    return s->read_only;
}

int store_sqlite_error(struct store *s, int rc)
{
    return map_rc(s, rc);
}

const char *store_strerror(int err)
{
    switch (err < 0 ? -err : err) {
    case 0:
        return "success";
    case EBUSY:
        return "the database is locked by another writer";
    case EROFS:
        return "the database (or its directory) is read-only";
    case ENOSPC:
        return "the disk holding the database is full";
    case EUCLEAN:
        return "the database file is corrupt or not an SQLite database; it was left as it is";
    case EPROTONOSUPPORT:
        return "the database was written by a newer pbxguard (schema version too new); "
               "it was left untouched";
    case ESTALE:
        return "the database schema is older than this program; start pbxguardd once to "
               "upgrade it";
    case ENODATA:
        return "the file holds no pbxguard database (never initialized by pbxguardd)";
    case ENOENT:
        return "no such database file (or row)";
    default:
        return strerror(err < 0 ? -err : err);
    }
}

/* The message of the last failed store_open(): the daemon is single-threaded. */
static char open_errmsg[256];

const char *store_errmsg(const struct store *s)
{
    return s ? s->errmsg : open_errmsg;
}

int store_schema_version(const struct store *s)
{
    return s->version;
}

void store_get_stats(const struct store *s, struct store_stats *ret_stats)
{
    *ret_stats = s->stats;
    ret_stats->journal_pending = s->in_turn ? 0 : s->njournal;
}

bool store_in_turn(const struct store *s)
{
    return s->in_turn;
}

/* The error of a step that should have produced a row: SQLite's, or -EIO for no row at all. */
static int row_error(struct store *s, int rc)
{
    int r = map_rc(s, rc);
    return r ? r : -EIO;
}

/* Runs a statement that returns no rows (or whose rows are ignored) and resets it. */
static int run(struct store *s, sqlite3_stmt *st)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    int r = rc == SQLITE_DONE ? 0 : map_rc(s, rc);
    sqlite3_reset(st);
    return r;
}

static int exec(struct store *s, const char *text)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, text, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int r = map_rc(s, rc);
        if (msg)
            snprintf(s->errmsg, sizeof(s->errmsg), "%s", msg);
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

/* Reads one integer-valued PRAGMA (or query). */
static int query_int(struct store *s, const char *text, int64_t *ret)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, text, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(s, rc);
    rc = sqlite3_step(st);
    int r = rc == SQLITE_ROW ? 0 : row_error(s, rc);
    if (r == 0)
        *ret = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return r;
}

static int query_text(struct store *s, const char *text, char *buf, size_t len)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, text, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(s, rc);
    rc = sqlite3_step(st);
    int r = rc == SQLITE_ROW ? 0 : row_error(s, rc);
    if (r == 0) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(buf, len, "%s", t ? (const char *)t : "");
    }
    sqlite3_finalize(st);
    return r;
}

/* Applies the migrations the file lacks, all in one transaction: either the file ends at the
 * newest version or it stays exactly as it was. */
static int migrate(struct store *s)
{
    int r = exec(s, "BEGIN IMMEDIATE");
    if (r < 0)
        return r;
    int64_t v;
    r = query_int(s, "PRAGMA user_version", &v); /* again, now that we hold the write lock */
    if (r == 0 && v > (int64_t)schema_nmigrations)
        r = -EPROTONOSUPPORT;
    for (int64_t i = r == 0 ? v : (int64_t)schema_nmigrations; i < (int64_t)schema_nmigrations;
         i++) {
        r = exec(s, schema_migrations[i]);
        if (r < 0)
            break;
    }
    if (r == 0 && v < (int64_t)schema_nmigrations) {
        char text[64];
        /* An integer we produced, not data: PRAGMA takes no bound parameters. */
        snprintf(text, sizeof(text), "PRAGMA user_version = %u", schema_nmigrations);
        r = exec(s, text);
    }
    if (r == 0)
        r = exec(s, "COMMIT");
    if (r < 0) {
        char keep[sizeof(s->errmsg)];
        memcpy(keep, s->errmsg, sizeof(keep));
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        memcpy(s->errmsg, keep, sizeof(keep));
        return r;
    }
    s->version = (int)schema_nmigrations;
    return 0;
}

/* WAL, synchronous=NORMAL and foreign keys, each read back: a setting that silently did not
 * take (an old SQLite, a file system without shared memory) is an error, not a surprise. */
static int configure(struct store *s, const struct store_options *opt)
{
    char mode[16];
    int64_t v;
    char text[96];
    snprintf(text, sizeof(text), "PRAGMA cache_size = -%d", opt->cache_kib);
    int r = exec(s, text);
    if (r == 0) {
        /* Random index probes on a big table cost a pread() each without it. */
        snprintf(text, sizeof(text), "PRAGMA mmap_size = %lld", (long long)opt->mmap_mib << 20);
        r = exec(s, text);
    }
    if (r == 0 && !s->read_only) {
        r = query_text(s, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
        if (r == 0 && strcmp(mode, "wal") != 0) {
            snprintf(s->errmsg, sizeof(s->errmsg), "journal_mode is %s, not wal", mode);
            r = -EIO;
        }
        /* The -wal and -shm files stay when the daemon closes the database, so that a reader
         * that may not write the directory (the report service sees it read-only) can still
         * open it while the daemon is stopped: without them it would have to create them. */
        int persist = 1;
        if (r == 0 &&
            sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist) != SQLITE_OK) {
            snprintf(s->errmsg, sizeof(s->errmsg), "cannot keep the WAL file");
            r = -EIO;
        }
    }
    if (r == 0)
        r = exec(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON");
    if (r == 0 && !s->read_only && (opt->flags & STORE_OWN_CHECKPOINTS)) {
        /* Checkpoints are the helper thread's (store_wal.c), never this connection's commits. */
        snprintf(text, sizeof(text),
                 "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = %d",
                 STORE_WAL_KEEP_BYTES);
        r = exec(s, text);
    }
    if (r == 0)
        r = query_int(s, "PRAGMA synchronous", &v);
    if (r == 0 && v != 1) {
        snprintf(s->errmsg, sizeof(s->errmsg), "synchronous is %lld, not NORMAL (1)", (long long)v);
        r = -EIO;
    }
    if (r == 0)
        r = query_int(s, "PRAGMA foreign_keys", &v);
    if (r == 0 && v != 1) {
        snprintf(s->errmsg, sizeof(s->errmsg), "foreign_keys did not turn on");
        r = -EIO;
    }
    return r;
}

int store_open(const char *path, const struct store_options *opt, struct store **ret_store)
{
    struct store_options o = {.busy_timeout_ms = 50, .cache_kib = STORE_CACHE_KIB_DEFAULT};
    if (opt) {
        o.flags = opt->flags;
        if (opt->busy_timeout_ms > 0)
            o.busy_timeout_ms = opt->busy_timeout_ms;
        if (opt->cache_kib > 0)
            o.cache_kib = opt->cache_kib;
        if (opt->mmap_mib)
            o.mmap_mib = opt->mmap_mib < 0 ? 0 : opt->mmap_mib;
        else if (o.flags & STORE_READ_ONLY)
            o.mmap_mib = STORE_READER_MMAP_MIB;
    }
    /* SQLite would open a directory and fail on the first read with a bare I/O error. */
    struct stat dir;
    if (stat(path, &dir) == 0 && S_ISDIR(dir.st_mode)) {
        snprintf(open_errmsg, sizeof(open_errmsg), "%s is a directory", path);
        return -EISDIR;
    }
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->read_only = o.flags & STORE_READ_ONLY;
    int flags = s->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    int r = rc == SQLITE_OK ? 0 : map_rc(s, rc);
    if (r == 0) {
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, o.busy_timeout_ms);
    }
    /* The version first, before any setting writes to the file: a newer or foreign file must
     * be left exactly as it is. */
    int64_t v = 0;
    if (r == 0)
        r = query_int(s, "PRAGMA user_version", &v);
    if (r == 0 && v > (int64_t)schema_nmigrations) {
        snprintf(s->errmsg, sizeof(s->errmsg),
                 "schema version %lld is newer than this pbxguard knows (%u)", (long long)v,
                 schema_nmigrations);
        r = -EPROTONOSUPPORT;
    }
    /* A reader takes the schema as it is or not at all: one policy, the writer's. */
    if (r == 0 && s->read_only && v == 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "schema version 0: never initialized by pbxguardd");
        r = -ENODATA;
    } else if (r == 0 && s->read_only && v < (int64_t)schema_nmigrations) {
        snprintf(s->errmsg, sizeof(s->errmsg),
                 "schema version %lld is older than this pbxguard (%u)", (long long)v,
                 schema_nmigrations);
        r = -ESTALE;
    }
    if (r == 0)
        r = configure(s, &o);
    if (r == 0) {
        rc = store_failures_register(s->db);
        r = rc == SQLITE_OK ? 0 : map_rc(s, rc);
    }
    if (r == 0 && !s->read_only)
        r = migrate(s);
    if (r == 0 && s->read_only)
        s->version = (int)v;
    for (int i = 0; r == 0 && i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK)
            r = map_rc(s, rc);
    }
    if (r == 0) {
        sqlite3_stmt *st = s->st[ST_BAN_LENS];
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ban_len_mark(s, sqlite3_column_int(st, 0) == 4 ? AF_INET : AF_INET6,
                         (unsigned)sqlite3_column_int(st, 1));
        if (rc != SQLITE_DONE)
            r = map_rc(s, rc);
        sqlite3_reset(st);
    }
    if (r == 0)
        s->failures = store_failures_new(s, &r);
    if (r == 0 && !s->read_only && (o.flags & STORE_OWN_CHECKPOINTS))
        s->wal = store_wal_new(path, &r);
    if (r == 0) {
        s->generation = 1;
        s->ban_cache = calloc(BAN_CACHE_SIZE, sizeof(*s->ban_cache));
        s->no_ban = calloc(NO_BAN_CACHE_SIZE, sizeof(*s->no_ban));
        if (!s->ban_cache || !s->no_ban)
            r = -ENOMEM;
    }
    if (r == 0 && !s->read_only) {
        s->journal = calloc(STORE_JOURNAL_MAX, sizeof(*s->journal));
        if (!s->journal)
            r = -ENOMEM;
    }
    if (r < 0) {
        /* The handle goes; its message stays readable through store_errmsg(NULL). */
        snprintf(open_errmsg, sizeof(open_errmsg), "%s", s->errmsg);
        store_close(s);
        return r;
    }
    *ret_store = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->in_turn)
        store_turn_commit(s);
    store_wal_free(s->wal);
    store_report_forget(s);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    store_failures_free(s->failures);
    sqlite3_close(s->db);
    free(s->journal);
    free(s->ban_cache);
    free(s->no_ban);
    free(s);
}

static int replay(struct store *s);

/* The turn's transaction ended without a commit (rolled back by us or by SQLite): what it
 * wrote is gone, its ban changes wait in the journal for the next transaction. Without this,
 * the rest of the turn would run in autocommit mode, one durable transaction per statement,
 * and the next turn would replay those ban changes a second time. */
static void turn_lost(struct store *s)
{
    s->in_turn = false;
    s->key_cached_valid = false;
    store_failures_lost(s->failures);
    s->generation++;
    s->stats.commit_failures++;
}

/* Opens the turn's transaction on first use; replays ban changes a failed commit left. */
static int turn_begin(struct store *s)
{
    if (s->in_turn || s->read_only)
        return 0;
    int r = run(s, s->st[ST_BEGIN]);
    if (r < 0)
        return r;
    s->in_turn = true;
    if (s->njournal)
        r = replay(s);
    if (!s->in_turn) /* the replay itself lost the transaction */
        return r < 0 ? r : -EIO;
    return 0;
}

int store_turn_begin(struct store *s)
{
    return turn_begin(s);
}

static void journal_add(struct store *s, enum op_kind kind, const struct store_ban *b)
{
    if (s->replaying)
        return;
    if (s->njournal == STORE_JOURNAL_MAX) {
        s->stats.journal_lost++;
        return;
    }
    s->journal[s->njournal].kind = kind;
    s->journal[s->njournal].ban = *b;
    s->njournal++;
}

int store_turn_commit(struct store *s)
{
    if (!s->in_turn)
        return 0;
    int r = store_failures_flush(s);
    if (r == 0 && s->in_turn)
        r = run(s, s->st[ST_COMMIT]);
    if (r == 0) {
        s->in_turn = false;
        s->njournal = 0;
        s->stats.commits++;
        return 0;
    }
    /* The turn is lost; its ban changes stay in the journal for the next transaction. */
    char keep[sizeof(s->errmsg)];
    memcpy(keep, s->errmsg, sizeof(keep));
    bool open = !sqlite3_get_autocommit(s->db);
    if (s->in_turn) /* (map_rc() has already seen to it if SQLite rolled back by itself) */
        turn_lost(s);
    if (open)
        run(s, s->st[ST_ROLLBACK]);
    memcpy(s->errmsg, keep, sizeof(keep));
    return r;
}

static const char *key_text(struct store *s, const struct addr_prefix *key)
{
    if (!s->key_cached_valid || !addr_prefix_equal(&s->key_cached, key)) {
        addr_prefix_format(key, s->key_text, sizeof(s->key_text));
        s->key_cached = *key;
        s->key_cached_valid = true;
    }
    return s->key_text;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *t, size_t max)
{
    size_t n = t ? strnlen(t, max) : 0;
    if (n)
        sqlite3_bind_text(st, i, t, (int)n, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int store_seclog_cursor_get(struct store *s, const char *name, struct store_seclog_cursor *ret)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_SECLOG_CURSOR_GET];
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct store_seclog_cursor c = {0};
        c.dev = (uint64_t)sqlite3_column_int64(st, 0);
        c.ino = (uint64_t)sqlite3_column_int64(st, 1);
        int64_t pos = sqlite3_column_int64(st, 2);
        c.pos = pos > 0 ? (uint64_t)pos : 0;
        const void *t = sqlite3_column_blob(st, 3);
        int tl = sqlite3_column_bytes(st, 3);
        if (t && tl > 0 && (size_t)tl <= sizeof(c.tail)) {
            memcpy(c.tail, t, (size_t)tl);
            c.tail_len = (unsigned)tl;
        }
        c.line_ms = sqlite3_column_int64(st, 4);
        *ret = c;
    } else {
        r = rc == SQLITE_DONE ? -ENOENT : map_rc(s, rc);
    }
    sqlite3_reset(st);
    return r;
}

int store_seclog_cursor_put(struct store *s, const char *name, const char *path,
                            const struct store_seclog_cursor *c, int64_t now_ms)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_SECLOG_CURSOR_PUT];
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)c->dev);
    sqlite3_bind_int64(st, 4, (int64_t)c->ino);
    sqlite3_bind_int64(st, 5, (int64_t)c->pos);
    if (c->tail_len)
        sqlite3_bind_blob(st, 6, c->tail, (int)c->tail_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    if (c->line_ms)
        sqlite3_bind_int64(st, 7, c->line_ms);
    else
        sqlite3_bind_null(st, 7);
    sqlite3_bind_int64(st, 8, now_ms);
    return run(s, st);
}

static void column_text(sqlite3_stmt *st, int col, char *buf, size_t len);

int store_success_add(struct store *s, const struct sec_event *ev, const struct addr_prefix *key,
                      int64_t ts_ms)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    char addr[ADDR_STRLEN];
    sqlite3_stmt *st = s->st[ST_SUCCESS_ADD];
    sqlite3_bind_text(st, 1, key_text(s, key), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, ts_ms);
    sqlite3_bind_text(st, 3, addr_format(&ev->remote.addr, addr, sizeof(addr)), -1, SQLITE_STATIC);
    bind_text_or_null(st, 4, ev->account, SEC_ACCOUNT_MAX);
    bind_text_or_null(st, 5, ev->service, SEC_SERVICE_MAX);
    return run(s, st);
}

int store_success_get(struct store *s, const struct addr_prefix *key,
                      struct store_success *ret_success)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_SUCCESS_GET];
    sqlite3_bind_text(st, 1, key_text(s, key), -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct store_success o;
        memset(&o, 0, sizeof(o));
        o.first_ms = sqlite3_column_int64(st, 0);
        o.last_ms = sqlite3_column_int64(st, 1);
        o.count = sqlite3_column_int64(st, 2);
        const unsigned char *a = sqlite3_column_text(st, 3);
        if (!a || addr_parse((const char *)a, strlen((const char *)a), &o.addr) < 0)
            r = -EUCLEAN;
        column_text(st, 4, o.account, sizeof(o.account));
        column_text(st, 5, o.service, sizeof(o.service));
        if (r == 0)
            *ret_success = o;
    } else {
        r = rc == SQLITE_DONE ? -ENOENT : map_rc(s, rc);
    }
    sqlite3_reset(st);
    return r;
}

static void column_text(sqlite3_stmt *st, int col, char *buf, size_t len)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(buf, len, "%s", t ? (const char *)t : "");
}

const char *store_ban_reason_name(enum store_ban_reason r)
{
    return r == STORE_BAN_MANUAL ? "manual" : r == STORE_BAN_REMOTE ? "remote" : "threshold";
}

static enum store_ban_reason reason_from_text(const unsigned char *t)
{
    if (t && strcmp((const char *)t, "manual") == 0)
        return STORE_BAN_MANUAL;
    if (t && strcmp((const char *)t, "remote") == 0)
        return STORE_BAN_REMOTE;
    return STORE_BAN_THRESHOLD;
}

/* Fills b from a row of BAN_COLUMNS. -EUCLEAN if the prefix is not one we could have written. */
static int read_ban(sqlite3_stmt *st, struct store_ban *b)
{
    memset(b, 0, sizeof(*b));
    b->id = sqlite3_column_int64(st, 0);
    const unsigned char *p = sqlite3_column_text(st, 1);
    if (!p || addr_prefix_parse((const char *)p, true, &b->prefix) < 0)
        return -EUCLEAN;
    b->start_ms = sqlite3_column_int64(st, 2);
    b->expires_ms = sqlite3_column_int64(st, 3); /* NULL reads as 0 = permanent */
    b->reason = reason_from_text(sqlite3_column_text(st, 4));
    column_text(st, 5, b->origin, sizeof(b->origin));
    b->failures = sqlite3_column_double(st, 6);
    b->offence = (unsigned)sqlite3_column_int(st, 7);
    column_text(st, 8, b->service, sizeof(b->service));
    b->event_type = sqlite3_column_type(st, 9) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 9);
    b->ended_ms = sqlite3_column_int64(st, 10);
    const unsigned char *end = sqlite3_column_text(st, 11);
    b->end = !end                                       ? STORE_BAN_ACTIVE
             : strcmp((const char *)end, "lifted") == 0 ? STORE_BAN_LIFTED
                                                        : STORE_BAN_EXPIRED;
    column_text(st, 12, b->lifted_by, sizeof(b->lifted_by));
    column_text(st, 13, b->note, sizeof(b->note));
    return 0;
}

bool store_ban_active(const struct store_ban *b, int64_t now_ms)
{
    /* The same test as the SQL of ST_BANS_ACTIVE and ST_ACTIVE_COUNT. */
    return b->end == STORE_BAN_ACTIVE && !b->ended_ms && (!b->expires_ms || b->expires_ms > now_ms);
}

int store_ban_last(struct store *s, const struct addr_prefix *prefix, struct store_ban *ret_ban)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    struct no_ban_entry *nb = no_ban_slot(s, prefix);
    if (nb->valid && addr_prefix_equal(&nb->prefix, prefix))
        return -ENOENT;
    struct ban_cache_entry *c = &s->ban_cache[ban_cache_slot(prefix)];
    if (c->generation == s->generation && addr_prefix_equal(&c->prefix, prefix)) {
        if (!c->found)
            return -ENOENT;
        *ret_ban = c->ban;
        return 0;
    }
    sqlite3_stmt *st = s->st[ST_BAN_LAST];
    sqlite3_bind_text(st, 1, key_text(s, prefix), -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct store_ban b;
        r = read_ban(st, &b);
        if (r == 0) {
            *ret_ban = b;
            *c = (struct ban_cache_entry){s->generation, *prefix, true, b};
        }
    } else {
        r = rc == SQLITE_DONE ? -ENOENT : map_rc(s, rc);
        if (r == -ENOENT)
            *nb = (struct no_ban_entry){true, *prefix};
    }
    sqlite3_reset(st);
    return r;
}

static int ban_add(struct store *s, const struct store_ban *b, int64_t *ret_id)
{
    char prefix[ADDR_STRLEN];
    sqlite3_stmt *st = s->st[ST_BAN_ADD];
    sqlite3_bind_text(st, 1, addr_prefix_format(&b->prefix, prefix, sizeof(prefix)), -1,
                      SQLITE_STATIC);
    sqlite3_bind_int(st, 2, b->prefix.addr.family == AF_INET ? 4 : 6);
    sqlite3_bind_int(st, 3, b->prefix.len);
    sqlite3_bind_int64(st, 4, b->start_ms);
    if (b->expires_ms)
        sqlite3_bind_int64(st, 5, b->expires_ms);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_text(st, 6, store_ban_reason_name(b->reason), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, b->origin, (int)strnlen(b->origin, sizeof(b->origin)), SQLITE_STATIC);
    sqlite3_bind_double(st, 8, b->failures);
    sqlite3_bind_int(st, 9, (int)b->offence);
    bind_text_or_null(st, 10, b->service, sizeof(b->service));
    if (b->event_type >= 0 && b->event_type < SEC_EVENT_TYPE_COUNT)
        sqlite3_bind_int(st, 11, b->event_type);
    else
        sqlite3_bind_null(st, 11);
    if (b->ended_ms) {
        sqlite3_bind_int64(st, 12, b->ended_ms);
        sqlite3_bind_text(st, 13, b->end == STORE_BAN_LIFTED ? "lifted" : "expired", -1,
                          SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 12);
        sqlite3_bind_null(st, 13);
    }
    bind_text_or_null(st, 14, b->lifted_by, sizeof(b->lifted_by));
    bind_text_or_null(st, 15, b->note, sizeof(b->note));
    struct no_ban_entry *nb = no_ban_slot(s, &b->prefix);
    if (nb->valid && addr_prefix_equal(&nb->prefix, &b->prefix))
        nb->valid = false; /* whether the insert stays or not: a miss is never wrong */
    int r = run(s, st);
    s->generation++;
    if (r == 0)
        ban_len_mark(s, b->prefix.addr.family, b->prefix.len);
    if (r == 0 && ret_id)
        *ret_id = sqlite3_last_insert_rowid(s->db);
    return r;
}

int store_ban_add(struct store *s, const struct store_ban *b, int64_t *ret_id)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    r = ban_add(s, b, ret_id);
    if (r == 0)
        journal_add(s, OP_BAN_ADD, b);
    return r;
}

static int ban_lift(struct store *s, const struct addr_prefix *prefix, int64_t now_ms,
                    const char *who, unsigned *ret_n)
{
    sqlite3_stmt *st = s->st[ST_BAN_LIFT];
    sqlite3_bind_text(st, 1, key_text(s, prefix), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    bind_text_or_null(st, 3, who, STORE_WHO_MAX - 1);
    int r = run(s, st);
    s->generation++;
    if (r == 0 && ret_n)
        *ret_n = (unsigned)sqlite3_changes(s->db);
    return r;
}

int store_ban_lift(struct store *s, const struct addr_prefix *prefix, int64_t now_ms,
                   const char *who, unsigned *ret_n)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    unsigned n = 0;
    r = ban_lift(s, prefix, now_ms, who, &n);
    if (r == 0 && n) {
        struct store_ban b = {.prefix = *prefix, .ended_ms = now_ms, .end = STORE_BAN_LIFTED};
        snprintf(b.lifted_by, sizeof(b.lifted_by), "%s", who ? who : "");
        journal_add(s, OP_BAN_LIFT, &b);
    }
    if (r == 0 && ret_n)
        *ret_n = n;
    return r;
}

/* Re-applies the ban changes of a turn whose commit failed, inside the new transaction. The
 * journal keeps them until this transaction commits in turn. */
static int replay(struct store *s)
{
    int r = 0;
    s->replaying = true;
    for (unsigned i = 0; i < s->njournal && s->in_turn; i++) {
        const struct op *o = &s->journal[i];
        if (o->kind == OP_BAN_ADD)
            r = ban_add(s, &o->ban, NULL);
        else
            r = ban_lift(s, &o->ban.prefix, o->ban.ended_ms, o->ban.lifted_by, NULL);
        s->stats.journal_replayed++;
    }
    s->replaying = false;
    return r;
}

int store_offences_since(struct store *s, const struct addr_prefix *prefix, int64_t since_ms,
                         unsigned *ret_n)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_OFFENCES];
    sqlite3_bind_text(st, 1, key_text(s, prefix), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, since_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret_n = (unsigned)sqlite3_column_int64(st, 0);
    else
        r = row_error(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_bans_expire(struct store *s, int64_t now_ms, unsigned max, unsigned *ret_n)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_BANS_EXPIRE];
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, max);
    r = run(s, st);
    s->generation++;
    if (r == 0 && ret_n)
        *ret_n = (unsigned)sqlite3_changes(s->db);
    return r;
}

/* Steps a ban query, calling fn per row. Rows that do not parse are skipped (never rewritten). */
static int walk_bans(struct store *s, sqlite3_stmt *st, store_ban_fn fn, void *data)
{
    int rc, r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_ban b;
        if (read_ban(st, &b) < 0)
            continue;
        r = fn(data, &b);
        if (r)
            break;
    }
    if (!r && rc != SQLITE_DONE && rc != SQLITE_ROW)
        r = map_rc(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_bans_active(struct store *s, int64_t now_ms, store_ban_fn fn, void *data)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_BANS_ACTIVE];
    sqlite3_bind_int64(st, 1, now_ms);
    return walk_bans(s, st, fn, data);
}

int store_bans_active_page(struct store *s, int64_t now_ms, int64_t after_id, unsigned max,
                           store_ban_fn fn, void *data)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_BANS_ACTIVE_PAGE];
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int64(st, 3, max);
    return walk_bans(s, st, fn, data);
}

int store_ban_max_id(struct store *s, int64_t *ret_id)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_BAN_MAX_ID];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret_id = sqlite3_column_int64(st, 0);
    else
        r = row_error(s, rc);
    sqlite3_reset(st);
    return r;
}

struct slice_walk {
    struct store_ban_cursor *cur;
    store_ban_fn fn;
    void *data;
    unsigned n;
};

static int slice_one(void *data, const struct store_ban *b)
{
    struct slice_walk *w = data;
    w->cur->id = b->id;
    w->cur->expires_ms = b->expires_ms;
    w->n++;
    return w->fn(w->data, b);
}

int store_bans_active_slice(struct store *s, int64_t now_ms, struct store_ban_cursor *cur,
                            unsigned max, store_ban_fn fn, void *data, unsigned *ret_n)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    if (!cur->started) {
        *cur = (struct store_ban_cursor){.started = true, .id = INT64_MAX, .max_id = cur->max_id};
        if (!cur->max_id)
            cur->max_id = INT64_MAX;
    }
    struct slice_walk w = {cur, fn, data, 0};
    while (r == 0 && !cur->done && w.n < max) {
        unsigned before = w.n;
        sqlite3_stmt *st = s->st[cur->timed ? ST_SLICE_TIMED : ST_SLICE_PERMANENT];
        sqlite3_bind_int64(st, 1, cur->id);
        sqlite3_bind_int64(st, 2, cur->max_id);
        sqlite3_bind_int64(st, 3, max - w.n);
        if (cur->timed) {
            sqlite3_bind_int64(st, 4, now_ms);
            sqlite3_bind_int64(st, 5, cur->expires_ms);
        }
        r = walk_bans(s, st, slice_one, &w);
        if (r == 0 && w.n - before < max - before) {
            /* This half is over. */
            if (cur->timed) {
                cur->done = true;
            } else {
                cur->timed = true;
                cur->expires_ms = INT64_MAX;
                cur->id = INT64_MAX;
            }
        }
    }
    if (ret_n)
        *ret_n = w.n;
    return r;
}

struct covering {
    bool active_only;
    int64_t now_ms;
    store_ban_fn fn;
    void *data;
};

static int covering_one(void *data, const struct store_ban *b)
{
    struct covering *c = data;
    if (c->active_only && !store_ban_active(b, c->now_ms))
        return 0;
    return c->fn(c->data, b);
}

int store_bans_covering(struct store *s, const struct addr *a, bool active_only, int64_t now_ms,
                        store_ban_fn fn, void *data)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    struct covering c = {active_only, now_ms, fn, data};
    /* Longest prefix first: the address itself, then every shorter prefix holding it. */
    for (int len = (int)addr_max_len(a); r == 0 && len >= 0; len--) {
        if (!ban_len_seen(s, a->family, (unsigned)len))
            continue;
        struct addr_prefix p;
        addr_prefix_of(a, (unsigned)len, &p);
        sqlite3_stmt *st = s->st[ST_BAN_HISTORY];
        sqlite3_bind_text(st, 1, key_text(s, &p), -1, SQLITE_STATIC);
        r = walk_bans(s, st, covering_one, &c);
    }
    return r;
}

static int prune_one(struct store *s, int which, int64_t cutoff_ms, unsigned max, unsigned *n)
{
    sqlite3_stmt *st = s->st[which];
    sqlite3_bind_int64(st, 1, cutoff_ms);
    sqlite3_bind_int64(st, 2, max);
    int r = run(s, st);
    if (which == ST_PRUNE_BANS)
        s->generation++;
    if (r == 0)
        *n = (unsigned)sqlite3_changes(s->db);
    return r;
}

int store_prune(struct store *s, int64_t cutoff_ms, unsigned max, unsigned *ret_deleted)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    static const int order[] = {ST_PRUNE_BANS, ST_PRUNE_INCIDENTS, ST_PRUNE_SUCCESSES,
                                ST_PRUNE_RUNS};
    unsigned total = 0;
    r = store_failures_prune(s, cutoff_ms, max, &total);
    for (size_t i = 0; r == 0 && total < max && i < sizeof(order) / sizeof(order[0]); i++) {
        unsigned n = 0;
        r = prune_one(s, order[i], cutoff_ms, max - total, &n);
        total += n;
    }
    if (r == 0 && ret_deleted)
        *ret_deleted = total;
    return r;
}

int store_incident(struct store *s, int64_t ts_ms, const char *kind, const char *source,
                   const char *message)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_INCIDENT];
    sqlite3_bind_int64(st, 1, ts_ms);
    sqlite3_bind_text(st, 2, kind, (int)strnlen(kind, 64), SQLITE_STATIC);
    bind_text_or_null(st, 3, source, 64);
    sqlite3_bind_text(st, 4, message ? message : "", (int)strnlen(message ? message : "", 1024),
                      SQLITE_STATIC);
    return run(s, st);
}

/* Adds (sign 1) or subtracts (-1) the (family, reason, n) rows of st to t. */
static int tally_rows(struct store *s, sqlite3_stmt *st, int sign, struct store_active_tally *t)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        t->n[sqlite3_column_int(st, 0) == 4 ? 0 : 1]
            [reason_from_text(sqlite3_column_text(st, 1))] +=
            (uint64_t)(sign * sqlite3_column_int64(st, 2));
    }
    int r = rc == SQLITE_DONE ? 0 : row_error(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_bans_active_tally(struct store *s, int64_t now_ms, struct store_active_tally *ret)
{
    struct store_active_tally t = {0};
    int r = turn_begin(s);
    if (r < 0)
        return r;
    r = tally_rows(s, s->st[ST_ACTIVE_COUNT], 1, &t);
    if (r == 0) {
        sqlite3_stmt *st = s->st[ST_ACTIVE_OVERDUE];
        sqlite3_bind_int64(st, 1, now_ms);
        r = tally_rows(s, st, -1, &t);
    }
    if (r == 0)
        *ret = t;
    return r;
}

int store_bans_active_count(struct store *s, int64_t now_ms, uint64_t *ret_v4, uint64_t *ret_v6)
{
    struct store_active_tally t;
    int r = store_bans_active_tally(s, now_ms, &t);
    if (r == 0) {
        *ret_v4 = *ret_v6 = 0;
        for (int k = 0; k < STORE_BAN_REASONS; k++) {
            *ret_v4 += t.n[0][k];
            *ret_v6 += t.n[1][k];
        }
    }
    return r;
}

int store_bans_between(struct store *s, int64_t from_ms, int64_t to_ms, uint64_t *ret_n)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_BANS_BETWEEN];
    sqlite3_bind_int64(st, 1, from_ms);
    sqlite3_bind_int64(st, 2, to_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret_n = (uint64_t)sqlite3_column_int64(st, 0);
    else
        r = row_error(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_show(struct store *s, const struct addr *a, const struct addr_prefix *key,
               const struct store_show_fns *fns, void *data, struct store_addr_summary *ret)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    struct store_addr_summary sum = {0};
    r = store_failures_show(s, a, key, fns, data, &sum);
    if (r == 0 && fns && fns->ban)
        r = store_bans_covering(s, a, false, 0, fns->ban, data);
    if (r == 0 && ret)
        *ret = sum;
    return r;
}

/* --- outboxes and cursors --- */

int store_outbox_add(struct store *s, const char *sink, const struct store_outbox_entry *e,
                     int64_t *ret_id)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    char prefix[ADDR_STRLEN];
    sqlite3_stmt *st = s->st[ST_OUTBOX_ADD];
    sqlite3_bind_text(st, 1, sink, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->unban ? "unban" : "ban", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, addr_prefix_format(&e->prefix, prefix, sizeof(prefix)), -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, e->start_ms);
    if (!e->unban && e->expires_ms)
        sqlite3_bind_int64(st, 5, e->expires_ms);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_text(st, 6, store_ban_reason_name(e->reason), -1, SQLITE_STATIC);
    bind_text_or_null(st, 7, e->note, sizeof(e->note));
    r = run(s, st);
    if (r == 0 && ret_id)
        *ret_id = sqlite3_last_insert_rowid(s->db);
    return r;
}

int store_outbox_list(struct store *s, const char *sink, int64_t after_id, unsigned max,
                      store_outbox_fn fn, void *data)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_OUTBOX_LIST];
    sqlite3_bind_text(st, 1, sink, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int64(st, 3, max);
    int rc;
    while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_outbox_entry e;
        memset(&e, 0, sizeof(e));
        e.id = sqlite3_column_int64(st, 0);
        const unsigned char *op = sqlite3_column_text(st, 1);
        e.unban = op && strcmp((const char *)op, "unban") == 0;
        const unsigned char *p = sqlite3_column_text(st, 2);
        if (!p || addr_prefix_parse((const char *)p, true, &e.prefix) < 0)
            continue; /* not a row we could have written: skipped, deleted with the rest */
        e.start_ms = sqlite3_column_int64(st, 3);
        e.expires_ms = sqlite3_column_int64(st, 4);
        e.reason = reason_from_text(sqlite3_column_text(st, 5));
        column_text(st, 6, e.note, sizeof(e.note));
        r = fn(data, &e);
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = map_rc(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_outbox_delete(struct store *s, const char *sink, int64_t upto_id)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_OUTBOX_DELETE];
    sqlite3_bind_text(st, 1, sink, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, upto_id);
    return run(s, st);
}

int store_outbox_count(struct store *s, const char *sink, uint64_t *ret_n)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_OUTBOX_COUNT];
    sqlite3_bind_text(st, 1, sink, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret_n = (uint64_t)sqlite3_column_int64(st, 0);
    else
        r = row_error(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_cursor_get(struct store *s, const char *source, int64_t *ret_position)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_CURSOR_GET];
    sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret_position = sqlite3_column_int64(st, 0);
    else
        r = rc == SQLITE_DONE ? -ENOENT : map_rc(s, rc);
    sqlite3_reset(st);
    return r;
}

int store_cursor_set(struct store *s, const char *source, int64_t position, int64_t now_ms)
{
    int r = turn_begin(s);
    if (r < 0)
        return r;
    sqlite3_stmt *st = s->st[ST_CURSOR_SET];
    sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, position);
    sqlite3_bind_int64(st, 3, now_ms);
    return run(s, st);
}
