/* The store: the only code that speaks SQL. SQLite is the store of record for failures, bans
 * (active and ended, which is also the offence history) and the daemon's own incidents; the
 * schema is schema/NNN-*.sql, built into the binary.
 *
 * Failures are kept raw (one small row each) only as long as the windows need them: the daemon
 * calls store_rollup() to fold older rows into per-source, per-hour aggregates (by address,
 * service, event type, account) and delete them, a bounded batch at a time. Everything that
 * reads history (show, list's figures, status's counts, the reports) reads both, so the answers
 * do not change when rows are rolled up, except that rolled-up history has the hour as its
 * grain: a report period that starts or ends inside an hour counts each source's failures of
 * that hour on the side of its first failure in it.
 *
 * Transactions: every call that touches the database opens the loop turn's transaction lazily
 * (BEGIN IMMEDIATE) and store_turn_commit(), called by the core once at the end of each loop
 * turn, commits it: one transaction per turn however many events it carries.
 *
 * If a commit fails, the turn is rolled back. Its failures are lost (the windows restart from
 * what was committed), but its ban decisions are not: the verdicts were already acted on (the
 * kernel enforces them with their own timeouts), and the store keeps every ban added or lifted
 * during the turn in a bounded journal (STORE_JOURNAL_MAX entries) that it replays at the start
 * of the next transaction it manages to open. Entries beyond the bound are counted in
 * store_stats.journal_lost (the kernel still enforces them; they are missing from the history).
 *
 * Errors are -errno values with a fixed meaning, for the caller to log once (store_strerror()
 * and store_errmsg() give the words):
 *   -EBUSY        the database is locked by another writer (retry on a later turn)
 *   -EROFS        the file or its directory is read-only
 *   -ENOSPC       the disk (or a size limit) is full
 *   -EUCLEAN      the file is corrupt or not an SQLite database (it is left as it is)
 *   -EPROTONOSUPPORT  the file's schema is newer than this binary knows (left untouched)
 *   -ESTALE       opened read-only, the file's schema is older than this binary (run the daemon)
 *   -ENODATA      opened read-only, the file was never initialized (schema version 0: empty)
 *   -EACCES, -ENOENT, -ENOMEM, -EIO  as usual; -ENOENT also means "no such row". */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "sec_event.h"

#define STORE_JOURNAL_MAX 16384
/* SQLite's page cache per connection when the options say 0. The hot path touches the raw
 * failures' B-tree (its interior pages: a few MiB for 10M rows) and the bans' indexes; leaf
 * pages come from the kernel's page cache with a pread() each. */
#define STORE_CACHE_KIB_DEFAULT 8192
/* A reader (a report) maps this much of the file unless told otherwise: it scans the history,
 * and its memory is not the daemon's. */
#define STORE_READER_MMAP_MIB 1024
/* The log is cut back to this when it restarts after a complete checkpoint. */
#define STORE_WAL_KEEP_BYTES (16 << 20)
#define STORE_WHO_MAX 64
#define STORE_NOTE_MAX 256 /* the admin's note on a manual ban */

struct store;

enum store_open_flags {
    STORE_READ_ONLY = 1 << 0, /* readers (reports): no migration, no writes */
    /* The caller asks for WAL checkpoints (store_checkpoint_request(), the daemon): this
     * connection never checkpoints by itself, a helper thread does it when asked, at idle CPU
     * and I/O priority (at the ordinary one when a writer waits for it: store_wal_behind()).
     * Without it, SQLite's autocheckpoint runs inside the commit that fills
     * the log (tools, tests). */
    STORE_OWN_CHECKPOINTS = 1 << 1,
};

struct store_options {
    unsigned flags;      /* enum store_open_flags */
    int busy_timeout_ms; /* default 50 (the daemon's loop must not wait long); readers: more */
    int cache_kib;       /* page cache bound; default STORE_CACHE_KIB_DEFAULT */
    int mmap_mib;        /* file bytes read through mmap (file-backed, reclaimable by the
                          * kernel, but counted in RSS once touched); default none, or
                          * STORE_READER_MMAP_MIB read-only; -1 = none */
};

/* Why a ban exists. STORE_BAN_REMOTE: another node or service decided it (a fleet's shared
 * table, a CrowdSec decision, ...); it passed this node's rules (judge_remote_ban()) before it
 * was stored, and its origin says where it came from ("cluster:NODE", "crowdsec:..."). */
enum store_ban_reason { STORE_BAN_THRESHOLD = 0, STORE_BAN_MANUAL, STORE_BAN_REMOTE };
/* "threshold", "manual", "remote": the names the database and the control protocol use. */
const char *store_ban_reason_name(enum store_ban_reason r);
enum store_ban_end { STORE_BAN_ACTIVE = 0, STORE_BAN_EXPIRED, STORE_BAN_LIFTED };

struct store_ban {
    int64_t id; /* 0 before store_ban_add() */
    struct addr_prefix prefix;
    int64_t start_ms;
    int64_t expires_ms; /* 0 = permanent */
    enum store_ban_reason reason;
    char origin[STORE_WHO_MAX];    /* "ami:pbx1", "cli:uid=0", "cluster:NODE" */
    double failures;               /* weighted failures that led to it */
    unsigned offence;              /* n-th offence of the key */
    char service[SEC_SERVICE_MAX]; /* of the tripping event; "" for manual bans */
    int event_type;                /* enum sec_event_type of the tripping event; -1 if none */
    int64_t ended_ms;              /* 0 while active */
    enum store_ban_end end;
    char lifted_by[STORE_WHO_MAX];
    char note[STORE_NOTE_MAX]; /* manual bans: why, in the admin's words; "" if none */
};

struct store_stats {
    uint64_t commits, commit_failures;
    uint64_t journal_replayed, journal_lost;
    unsigned journal_pending; /* ops waiting for the next transaction */
};

/* Opens (creating it if missing, unless read-only) and migrates the database: WAL,
 * synchronous=NORMAL, foreign_keys=ON (read back), migrations applied in one transaction. A file
 * whose schema is newer than the binary is refused untouched. opt may be NULL (defaults).
 * Read-only (reports): never creates, migrates or writes the file; it takes only the schema
 * this binary writes (-ENOENT, -ENODATA, -ESTALE, -EPROTONOSUPPORT, -EUCLEAN otherwise, with
 * the version in store_errmsg(NULL)). The report's queries are in store_report.h. */
int store_open(const char *path, const struct store_options *opt, struct store **ret_store);
/* WAL checkpoints (STORE_OWN_CHECKPOINTS). The helper thread runs a PASSIVE checkpoint (it never
 * waits for nor blocks this connection or the readers) soon after a request; requests while one
 * runs or waits are one. Returns at once: 0, or -EOPNOTSUPP without the flag. */
int store_checkpoint_request(struct store *s);
/* Waits until the checkpoints requested so far are done (tests, benchmarks: never the loop). */
int store_checkpoint_wait(struct store *s);
/* A TRUNCATE checkpoint on this connection, in the calling thread: it waits (busy timeout) for
 * the readers and the helper, copies the whole log and cuts it to zero bytes. The hard bound on
 * the log's size, for when readers kept the PASSIVE ones from completing; it stalls the caller.
 * -EBUSY inside a turn or if readers still hold the log. */
int store_checkpoint_truncate(struct store *s);
struct store_wal_stats {
    uint64_t checkpoints;     /* PASSIVE checkpoints done by the helper */
    uint64_t incomplete;      /* of which left frames behind (a reader held an older snapshot) */
    uint64_t failures;        /* that failed (the next request tries again) */
    uint64_t last_us, max_us; /* how long they took (off the caller's thread) */
    uint64_t log_frames, copied_frames; /* the last one: frames in the log, copied */
    uint64_t wal_bytes;                 /* the log file's size now */
    bool running;
};
void store_wal_stats(struct store *s, struct store_wal_stats *ret);
/* For a writer that can wait (a backfill): true while the log is larger than limit_bytes and
 * no commit came after the request of a checkpoint that copied all of it; a checkpoint is then
 * requested (STORE_OWN_CHECKPOINTS), run at the ordinary CPU and I/O priority since a writer
 * waits for it. The writer pauses, the helper copies the log, and the next
 * commit starts the log over from its beginning instead of growing it. False without the
 * helper. */
bool store_wal_behind(struct store *s, uint64_t limit_bytes);

/* Commits a pending turn (errors ignored: use store_turn_commit() first to see them). */
void store_close(struct store *s); /* accepts NULL */

/* The last SQLite message for the last failure (for the log line), "" if none. With s NULL:
 * the message of the last failed store_open(). */
const char *store_errmsg(const struct store *s);
/* Words for one of the error codes listed above. */
const char *store_strerror(int err);
int store_schema_version(const struct store *s);
void store_get_stats(const struct store *s, struct store_stats *ret_stats);

/* Ends the loop turn: commits everything since the first call of the turn. On failure the turn
 * is rolled back, its ban changes kept for replay, and the error returned. No-op without
 * pending work. */
int store_turn_commit(struct store *s);
/* True while a turn's transaction is open. */
bool store_in_turn(const struct store *s);

/* Records one weighing event under key. ts_ms is the window clock: the receipt time of a live
 * event, the event's own time of a backfilled one (ev->backfilled, kept as flag
 * STORE_FLAG_BACKFILLED). Its identity is kept too (EventTV as an offset from ts_ms, a hash of
 * its SessionID) for store_failure_seen(). The remote address must lie within key (-EINVAL
 * otherwise). */
int store_failure_add(struct store *s, const struct sec_event *ev, const struct addr_prefix *key,
                      double weight, bool whitelisted, int64_t ts_ms);

/* Deferred failures: a backfill's failures too old to be judged (kept for reports only) come
 * from many sources in the order of time, and written one by one each dirties a page of its
 * own in the table clustered by key (a commit writes it whole to the log, a checkpoint again).
 * Deferred, they are kept in memory, up to STORE_DEFER_MAX, sorted by runs of STORE_DEFER_RUN,
 * and written later in the table's own order (a merge of the runs), a bounded number at a
 * time: neighbouring rows share their pages. The event must name its place (ev->place): rows
 * are keyed by it, so a row written twice (the log read again after a restart, whose cursor
 * stays before the deferred lines until they are all written) is kept once. A window counted
 * in the meantime does not see them: the caller writes them before judging an event whose
 * window may reach them. */
#define STORE_DEFER_MAX 65536
#define STORE_DEFER_RUN 4096
/* Returns 0, -ENOSPC when full (store_failure_deferred() == STORE_DEFER_MAX), -EINVAL (no place,
 * or the address not within key) or another -errno. */
int store_failure_defer(struct store *s, const struct sec_event *ev, const struct addr_prefix *key,
                        double weight, bool whitelisted, int64_t ts_ms);
/* Failures deferred and not written yet. */
unsigned store_failure_deferred(const struct store *s);
/* Writes up to max deferred failures, in the table's order, in the turn's transaction. */
int store_failure_write_deferred(struct store *s, unsigned max, unsigned *ret_written);
/* Forgets them (their source will read them again). */
void store_failure_drop_deferred(struct store *s);
/* Records a successful login (SuccessfulAuth) under key at ts_ms: one row per key, updated in
 * place (the latest time, address, account and service; a count). */
int store_success_add(struct store *s, const struct sec_event *ev, const struct addr_prefix *key,
                      int64_t ts_ms);
struct store_success {
    int64_t first_ms, last_ms;
    int64_t count;
    struct addr addr;              /* of the latest success */
    char account[SEC_ACCOUNT_MAX]; /* network text: escape before display */
    char service[SEC_SERVICE_MAX];
};
/* The successes recorded for key; -ENOENT if none (or pruned). */
int store_success_get(struct store *s, const struct addr_prefix *key,
                      struct store_success *ret_success);
/* Whether this very event (same EventTV, event type, RemoteAddress with port and transport, and
 * SessionID, compared through a 32-bit hash) is recorded raw under key with ts_ms within
 * [from_ms, to_ms]: an event the security log repeats after AMI delivered it. One range of the
 * key's rows in the failures' own B-tree. An event without EventTV is never found. */
int store_failure_seen(struct store *s, const struct sec_event *ev, const struct addr_prefix *key,
                       int64_t from_ms, int64_t to_ms, bool *ret_seen);
/* The heaviest window of span_ms holding at_ms: the largest sum of weights recorded for key in
 * [e - span_ms, e] for e in [at_ms, to_ms], counting only rows at or after from_ms. What the
 * window of an event recorded in the past (at_ms) may have reached with the events around it.
 * Stops as soon as the sum reaches stop_at. */
int store_window_peak(struct store *s, const struct addr_prefix *key, int64_t from_ms,
                      int64_t at_ms, int64_t to_ms, int64_t span_ms, double stop_at,
                      double *ret_peak);
/* The time (ts_ms) of the newest failure recorded (from the per-hour counts), 0 if none. */
int store_last_failure_ms(struct store *s, int64_t *ret_ms);
/* Sum of weights recorded for key with from_ms <= ts_ms <= to_ms (exact, over the raw rows:
 * a window must not reach back past what store_rollup() left raw). */
int store_window_sum(struct store *s, const struct addr_prefix *key, int64_t from_ms, int64_t to_ms,
                     double *ret_sum);

/* Sizes SQLite's page cache from what the hot path touches: the raw failures recorded since
 * raw_since_ms (the window's B-tree, as the per-hour counts say), plus room for the indexes the
 * same turns read, within [min_kib, max_kib]. Window counts and inserts then find their pages
 * in memory; the cache is anonymous memory, so this is the store's share of the daemon's RSS.
 * *ret_kib (may be NULL) gets the size set. Cheap: call it every minute. */
int store_size_cache(struct store *s, int64_t raw_since_ms, int min_kib, int max_kib, int *ret_kib);

/* Rolls up raw failures older than before_ms (rounded down to the hour) into the hourly
 * aggregates, and deletes them: at most max rows or key lookups per call, so a call costs a
 * bounded time (about a microsecond or two per row). The keys are walked in order from where
 * the last call stopped; *ret_done (may be NULL) says the walk reached the end (a pass is
 * complete: start the next one when before_ms has moved, or when failures may have been
 * recorded in the past). *ret_rows (may be NULL) gets the rows rolled up. In the turn's
 * transaction. */
int store_rollup(struct store *s, int64_t before_ms, unsigned max, unsigned *ret_rows,
                 bool *ret_done);

/* Whether b is in force at now_ms: not ended (expired or lifted) and not past its expiry. The
 * one definition of an active ban, for every caller that holds a row. */
bool store_ban_active(const struct store_ban *b, int64_t now_ms);

/* The most recent ban of exactly this prefix (active or ended); -ENOENT if it never had one. */
int store_ban_last(struct store *s, const struct addr_prefix *prefix, struct store_ban *ret_ban);
/* Inserts b (id ignored); *ret_id (may be NULL) gets the new row id. */
int store_ban_add(struct store *s, const struct store_ban *b, int64_t *ret_id);
/* Ends every active ban of exactly this prefix as lifted at now_ms by who. *ret_n (may be
 * NULL) gets how many; 0 is not an error. */
int store_ban_lift(struct store *s, const struct addr_prefix *prefix, int64_t now_ms,
                   const char *who, unsigned *ret_n);
/* Threshold bans of exactly this prefix started at or after since_ms. */
int store_offences_since(struct store *s, const struct addr_prefix *prefix, int64_t since_ms,
                         unsigned *ret_n);
/* Marks up to max bans whose expiry is <= now_ms as ended ('expired', at their expiry). */
int store_bans_expire(struct store *s, int64_t now_ms, unsigned max, unsigned *ret_n);

/* Called once per ban; a non-zero return stops the walk and is returned. */
typedef int (*store_ban_fn)(void *data, const struct store_ban *b);
/* Every active ban at now_ms (not ended, not expired), oldest first: restore at start,
 * self-healing, `list`. */
int store_bans_active(struct store *s, int64_t now_ms, store_ban_fn fn, void *data);
/* Up to max active bans at now_ms whose id is above after_id, in id order (oldest first): one
 * page of `list`. A walk of the active-bans index from after_id on, so a page costs the same
 * however many bans there are; the next page starts after the last id seen. */
int store_bans_active_page(struct store *s, int64_t now_ms, int64_t after_id, unsigned max,
                           store_ban_fn fn, void *data);
/* How many bans are active at now_ms, by family (for the bans.active gauges, status): a tally
 * the schema keeps up to date, less the bans whose time ran out but that store_bans_expire()
 * has not marked yet. Cheap whatever the number of bans. */
int store_bans_active_count(struct store *s, int64_t now_ms, uint64_t *ret_v4, uint64_t *ret_v6);
/* The same walk, by family ([0] IPv4, [1] IPv6) and reason (enum store_ban_reason). */
#define STORE_BAN_REASONS 3 /* threshold, manual, remote */
struct store_active_tally {
    uint64_t n[2][STORE_BAN_REASONS];
};
int store_bans_active_tally(struct store *s, int64_t now_ms, struct store_active_tally *ret);
/* A position in the restore's walk of the active bans: zero it (max_id may be set) to start. */
struct store_ban_cursor {
    bool started, timed, done;
    int64_t expires_ms, id; /* the last ban visited */
    int64_t max_id;         /* bans added after this one are left out (0: none are) */
};
/* The next bans of the walk (up to max) that are active at now_ms: the permanent ones first,
 * newest first, then the others by expiry, the latest first, so the bans that will hold the
 * longest go in first and a ban about to run out comes last (and is skipped if it ran out
 * meanwhile). Each call reads from where the cursor stands, so bans lifted or expired between
 * two calls are never visited, and a ban visited earlier is not visited again. *ret_n (may be
 * NULL) gets how many were visited; cur->done says the walk is over. One indexed range per
 * call (bans_active holds only the rows not ended). */
int store_bans_active_slice(struct store *s, int64_t now_ms, struct store_ban_cursor *cur,
                            unsigned max, store_ban_fn fn, void *data, unsigned *ret_n);
/* The highest ban id so far (0 if none): a walk started now leaves out bans added later. */
int store_ban_max_id(struct store *s, int64_t *ret_id);
/* Bans placed from from_ms up to, not including, to_ms (status: "today", counted since its
 * last call and added up). An indexed range count: keep the range short where it is asked
 * often. */
int store_bans_between(struct store *s, int64_t from_ms, int64_t to_ms, uint64_t *ret_n);
/* Failures recorded at or after the start of since_ms's hour (status: "today"), from the
 * per-hour counts the store keeps at each commit, this turn's included: a few rows, whatever
 * the number of failures. */
int store_failures_since(struct store *s, int64_t since_ms, uint64_t *ret_n);
/* Every ban (active and ended, newest first) whose prefix holds a: one indexed lookup per
 * prefix length. active_only limits it to bans active at now_ms. */
int store_bans_covering(struct store *s, const struct addr *a, bool active_only, int64_t now_ms,
                        store_ban_fn fn, void *data);

/* Deletes up to max rows older than cutoff_ms: rolled-up failures (and the account names and
 * kinds nothing newer uses) first, then ended bans, then incidents, then successful logins, then
 * the daemon's runs (the latest is kept). Raw failures older than cutoff_ms are left to
 * store_rollup() (call it first). Small chunks (e.g. 1000), called from a timer, so the loop
 * never stalls. *ret_deleted (may be NULL) gets the count; fewer than max means nothing older is
 * left. Active bans are kept. */
int store_prune(struct store *s, int64_t cutoff_ms, unsigned max, unsigned *ret_deleted);

/* Records one of the daemon's own incidents (kind: 'ami-disconnect', 'nft-repair', 'db-error',
 * ...). message must already be safe to display (log_escape() attacker text first). */
int store_incident(struct store *s, int64_t ts_ms, const char *kind, const char *source,
                   const char *message);

/* Failure statistics of one key (for `list`), raw and rolled up: one range of each table.
 * -ENOENT-free: zeros if nothing recorded. */
struct store_key_stats {
    int64_t count;
    double weight;
    int64_t first_ms, last_ms; /* 0 if count == 0 */
};
int store_key_stats(struct store *s, const struct addr_prefix *key, struct store_key_stats *ret);
/* The first and last failure recorded for key (0 if none): two index seeks, whatever the count,
 * so `list` may ask it of every ban it shows. */
int store_key_seen(struct store *s, const struct addr_prefix *key, int64_t *ret_first_ms,
                   int64_t *ret_last_ms);

/* Everything about one address, for `show ADDR`. key is the address's counting key (failures
 * are found under it, then filtered to the address; the rolled-up hours of the key are read
 * one seek each, at most retention / 1 h of them). The callbacks may be NULL. */
struct store_show_fns {
    store_ban_fn ban; /* every ban covering the address, newest first */
    /* failures by service and event type, most frequent first */
    int (*by_type)(void *data, const char *service, int event_type, int64_t count, double weight);
    /* accounts tried (attacker text: escape before display), most tried first, up to 100 */
    int (*account)(void *data, const char *account, int64_t count, int64_t last_ms);
};
struct store_addr_summary {
    int64_t count;       /* failures recorded for the address */
    int64_t whitelisted; /* of which while whitelisted */
    int64_t first_ms, last_ms;
};
int store_show(struct store *s, const struct addr *a, const struct addr_prefix *key,
               const struct store_show_fns *fns, void *data, struct store_addr_summary *ret);

/* --- the daemon's runs: when it started, stopped cleanly, and died --- */

/* The daemon refreshes its run's heartbeat this often (from its maintenance timer, never per
 * event): a death is known to within this, or to the last row it wrote if that is newer. */
#define STORE_RUN_HEARTBEAT_MS 60000
#define STORE_RUN_VERSION_MAX 32
#define STORE_RUN_CONFIG_MAX 256
#define STORE_RUN_REASON_MAX 32

struct store_run {
    int64_t id;
    int64_t start_ms;
    char version[STORE_RUN_VERSION_MAX];
    char config[STORE_RUN_CONFIG_MAX]; /* the configuration file it read */
    unsigned pid;
    int64_t alive_ms; /* its last heartbeat (see store_report_runs() for the latest run) */
    int64_t stop_ms;  /* a clean stop: when; 0 if none (yet) */
    char stop_reason[STORE_RUN_REASON_MAX]; /* "SIGTERM", "SIGINT", "start failed", ... */
    int64_t uptime_ms;                      /* a clean stop: how long it ran */
    int64_t died_ms; /* it left no clean stop (found at the next start): its last write; else 0 */
    int64_t down_ms; /* not running before this start; -1 if no earlier run is recorded */
    bool prev_died;  /* store_report_runs(): the run before this one died */
};

/* Records a start at now_ms. A previous run that left no clean stop died: it is marked so, at
 * the time of the last thing it wrote (its heartbeat, or a newer failure, ban or incident, up
 * to now_ms). The new run's down_ms is the time since the previous one's stop or death (never
 * negative, whatever the wall clock did). *ret_id gets the new run's id; *ret_prev (may be
 * NULL) the previous run as it now stands (id 0 if there is none). In the turn's transaction. */
int store_run_start(struct store *s, int64_t now_ms, const char *version, const char *config,
                    unsigned pid, int64_t *ret_id, struct store_run *ret_prev);
/* The run's heartbeat: call every STORE_RUN_HEARTBEAT_MS. */
int store_run_alive(struct store *s, int64_t id, int64_t now_ms);
/* A clean stop at now_ms, after uptime_ms, for reason. Commit it before closing. */
int store_run_stop(struct store *s, int64_t id, int64_t now_ms, const char *reason,
                   int64_t uptime_ms);
/* The most recent run that died, if its death lies at or after since_ms; *ret_restart_ms gets
 * the start that found it. -ENOENT if there is none. */
int store_run_last_died(struct store *s, int64_t since_ms, struct store_run *ret_run,
                        int64_t *ret_restart_ms);

/* --- Remote sources and sinks: outboxes and cursors ---
 *
 * A remote sink (the fleet's shared table; later others such as a CrowdSec LAPI) publishes local
 * ban changes through an outbox: the change is written here in the same turn transaction as the
 * ban itself, so it survives a restart, and deleted only once the sink acknowledged it. The
 * sink keeps what it sends in memory too, so a change is published at least once even if the
 * turn's commit fails; sinks must make a re-sent change harmless. A remote source keeps its read
 * position (a sequence number, a stream token's counter, ...) as a cursor, written in the same
 * transaction as the bans it read. Both are named by a short tag ("cluster", "crowdsec"). Like
 * the rest of the turn, outbox and cursor writes of a turn whose commit fails are lost (they are
 * not in the ban journal): the sink re-sends, the source reads again. */

struct store_outbox_entry {
    int64_t id; /* set by store_outbox_add() */
    bool unban;
    struct addr_prefix prefix;
    int64_t start_ms;   /* when the change was decided (wall clock) */
    int64_t expires_ms; /* ban: when it runs out, 0 = permanent; unban: 0 */
    enum store_ban_reason reason;
    char note[STORE_NOTE_MAX];
};
/* Appends e to sink's outbox; *ret_id (may be NULL) gets its id (ids grow). */
int store_outbox_add(struct store *s, const char *sink, const struct store_outbox_entry *e,
                     int64_t *ret_id);
/* Calls fn for up to max entries of sink with id > after_id, oldest first. */
typedef int (*store_outbox_fn)(void *data, const struct store_outbox_entry *e);
int store_outbox_list(struct store *s, const char *sink, int64_t after_id, unsigned max,
                      store_outbox_fn fn, void *data);
/* Deletes every entry of sink with id <= upto_id (the sink acknowledged them). */
int store_outbox_delete(struct store *s, const char *sink, int64_t upto_id);
int store_outbox_count(struct store *s, const char *sink, uint64_t *ret_n);
/* A remote source's read position; -ENOENT if it never saved one. */
int store_cursor_get(struct store *s, const char *source, int64_t *ret_position);
int store_cursor_set(struct store *s, const char *source, int64_t position, int64_t now_ms);

/* --- the runtime allowlist (schema 008): prefixes allowed on the control socket --- */

struct store_allow {
    struct addr_prefix prefix; /* host bits clear */
    int64_t added_ms;
    int64_t expires_ms;           /* 0 = until removed */
    char added_by[STORE_WHO_MAX]; /* "cli:uid=0" */
    char reason[STORE_NOTE_MAX];  /* "" for none */
};

/* Adds or replaces the entry of e->prefix (in the turn's transaction). */
int store_allow_put(struct store *s, const struct store_allow *e);
/* Deletes the entry of prefix: 0, or -ENOENT if there is none. */
int store_allow_delete(struct store *s, const struct addr_prefix *prefix);
/* Calls fn for every entry, in no promised order; fn's non-zero return stops the walk and is
 * returned. A row whose prefix does not parse is skipped. */
typedef int (*store_allow_fn)(void *data, const struct store_allow *e);
int store_allow_all(struct store *s, store_allow_fn fn, void *data);
/* Where a security log source stands: its file's identity and the offset read, written in the
 * turn that judged the lines before it. */
#define STORE_TAIL_MAX 64
struct store_seclog_cursor {
    uint64_t dev, ino;
    uint64_t pos;
    uint8_t tail[STORE_TAIL_MAX]; /* the last bytes before pos */
    unsigned tail_len;
    int64_t line_ms; /* the time of the last line read; 0 if none */
};
/* -ENOENT: the source never wrote one. */
int store_seclog_cursor_get(struct store *s, const char *name, struct store_seclog_cursor *ret);
int store_seclog_cursor_put(struct store *s, const char *name, const char *path,
                            const struct store_seclog_cursor *c, int64_t now_ms);
