/* The pipeline glue: sources -> judge (policy + store) -> verdicts -> sinks.
 *
 * Everything happens on the loop's one thread. An event handed over by a source is judged at
 * once (recorded in the turn's open transaction, window summed, maybe a verdict); a ban verdict
 * is queued for nftables and counted for StatsD. At the end of the turn, in this order: the
 * queued nftables elements go to the kernel in one transaction (enforcement first, so a ban
 * lands within the turn that decided it), the store commits the turn (group commit), and the
 * StatsD datagram is sent. A turn with many events to judge (a flood) sends its bans sooner: a
 * ban waits at most BAN_HOLD_US behind the events after it. If the database fails, bans already
 * decided stay in the kernel with their own timeouts, and the store keeps them in its journal for
 * the next transaction. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "allowlist.h"
#include "ami_session.h"
#include "build-config.h"
#include "cluster.h"
#include "crowdsec.h"
#include "core.h"
#include "core_ctl.h"
#include "ctl_proto.h"
#include "duration.h"
#include "hostaddr.h"
#include "judge.h"
#include "log.h"
#include "nftset.h"
#include "policy.h"
#include "prom_file.h"
#include "seclog.h"
#include "seen.h"
#include "statsd.h"
#include "store.h"
#include "watch.h"

#define MAINT_INTERVAL_MS 1000
#define REPAIR_DELAY_MS 250
#define PRUNE_IDLE_INTERVAL_MS 60000
#define GAUGE_INTERVAL_MS 10000
/* Work that is not an event's runs in slices at the end of a turn, after the turn's bans are in
 * the kernel and its transaction committed: a restore or repair of the active bans, then
 * housekeeping (expiry, roll-up, retention). A slice takes about SLICE_US, so an event that
 * arrives meanwhile waits at most that long, and the loop comes back to it between slices. The
 * kernel's share of a slice varies (its hash sets grow in steps), so the aim is well under the
 * 10 ms a turn may take. */
#define RESTORE_SLICE_US 2500
#define RESTORE_SLICE_MIN 1024 /* elements: still a bulk commit (nftset pauses its monitor) */
#define RESTORE_SLICE_MAX 65536
#define WORK_SLICE_US 2000
/* While events keep coming, housekeeping still gets a shorter slice every so often, so it
 * progresses under a flood that never lets the loop idle. */
#define WORK_BUSY_SLICE_US 1000
#define WORK_BUSY_EVERY_MS 500
#define WORK_STEP 256 /* rows per store call within a slice */
/* Raw failures stay raw at least this long (and at least findtime): the windows, and the
 * report's exact times for the recent past. */
#define RAW_KEEP_MIN_MS 3600000
/* A log that checkpoints could not bring back under this (a reader holds it) is truncated by the
 * loop itself, a stall that only that case pays. */
#define WAL_HARD_LIMIT (256ull << 20)
#define WAL_SOFT_LIMIT (128ull << 20)
#define CHECKPOINT_IDLE_MS 1000
/* A turn's transaction is left open while more events wait, for at most this long (a bigger
 * commit later costs more at once). */
#define COMMIT_DEFER_MAX_MS 10
/* A ban an event decided goes to the kernel at the end of the turn, with the turn's other bans in
 * one transaction; when the turn has more events to judge (a flood), at the latest once it has
 * waited this long, before the next event is judged. Short enough to stay well within a ban's
 * millisecond, long enough that a storm of bans still shares transactions (tens per commit). */
#define BAN_HOLD_US 200
/* SQLite's page cache follows the raw window's size (store_size_cache()) within
 * these, every 10 s: most of a million sources' rows, and well within the daemon's 64 MB budget. */
#define CACHE_MIN_KIB 8192
#define CACHE_MAX_KIB 32768
#define CACHE_EVERY_MS 10000
/* The memory of live events is trusted for log events this much after it began; older ones are
 * looked up in the store, within this range of their EventTV (AMI delivers them at once; a
 * backlogged daemon reads them a little later). */
#define SEEN_SLACK_MS 5000
#define SEEN_LOOKUP_BEFORE_MS 10000
#define SEEN_LOOKUP_AFTER_MS 120000
/* While a log source backfills (its slices use their whole budget), the store's transaction
 * may span several turns: a commit writes every page dirtied since the last one. A turn is
 * either a slice or the commit of what is pending, never both: when the commit of what one
 * more slice would add no longer fits in BACKFILL_TURN_US (the commit's cost per microsecond of
 * slice is measured on every commit), the sources skip their next slice and that turn commits.
 * A turn that decided a ban commits at its end outside a backfill; during one, in the next turn
 * (the ban is in the kernel at the end of its own). */
#define BACKFILL_TURN_US 4000
/* And a commit at the latest after this much backfill work: a transaction growing past
 * it holds more pages than a turn should write. */
#define BACKFILL_PENDING_MAX_US 4000

struct store;
struct verdict;

struct core_stats {
    uint64_t events;     /* security events received from every source */
    uint64_t failures;   /* of which counted (weight > 0) */
    uint64_t backfilled; /* of the events, those read after the fact (the security log) */
    uint64_t too_old;    /* backfilled events older than the retention: not even recorded */
    uint64_t bans, unbans, expired;
    uint64_t nft_errors, nft_repairs;
    uint64_t db_errors;
};

/* Ban log lines of one turn, written after its nftables commit. */
#define CORE_BAN_LOG_MAX 32

/* Bans the kernel refused in the last nftables commit (core_enforce() reports them back). */
#define CORE_REFUSED_MAX 8
struct core_refused {
    struct addr_prefix prefix;
    int err;
};

struct core {
    struct loop *loop;
    const struct config *cfg; /* the daemon's; replaced by core_reload() */
    int64_t started_ms;       /* wall clock */
    int64_t last_event_ms;
    uint64_t last_event_mono_ms;
    char findtime_text[32];
    struct core_stats stats;

    struct store *store;
    struct policy *policy;
    struct judge *judge;
    struct allowlist *allow; /* the runtime allowlist; its prefixes are in the policy */
    bool db_failing;
    uint64_t journal_lost;    /* last seen store_stats.journal_lost */
    bool journal_loss_logged; /* in this database failure period */
    bool started; /* core_new() is done: changes from now on are news worth a log line */

    struct hostaddr *host;          /* the host's addresses, gateways, resolvers: protected */
    uint64_t ignored_log_ms;        /* monotonic time of the last "ignored" log line */
    unsigned long ignored_unlogged; /* ignored events since that line */

    struct nftset *nft;
    struct loop_io nft_io;             /* the monitor socket */
    struct loop_timer nft_check_timer; /* the slow periodic check */
    struct loop_timer repair_timer;    /* a repair, soon after damage was seen */
    bool nft_healthy, nft_failing, nft_repair_pending;
    bool nft_foreign; /* a table of our name is someone else's: nothing is enforced */
    /* The restore (start) or repair of the active bans in progress, a slice per turn. */
    struct {
        bool active;
        const char *why;  /* "start", "repair" */
        const char *what; /* the table was "adopted", "created", "replaced" */
        struct store_ban_cursor cursor;
        unsigned long count, lifted;
        unsigned slices, step;
        uint64_t t0_ms, longest_us;
    } restore;
    struct core_restore_report last_restore; /* the last one that finished */
    bool last_restore_open; /* its longest turn is still read from the loop's mark */
    struct core_refused ban_refused[CORE_REFUSED_MAX];
    unsigned nban_refused;
    char ban_log[CORE_BAN_LOG_MAX][320];
    unsigned nban_log;
    unsigned long ban_log_dropped;

    struct statsd *statsd;
    /* [prometheus]: every meter StatsD gets (and the per-source ones set at each write), and
     * the textfile they are written to every interval (NULL without a textfile). */
    struct metrics *metrics;
    struct prom_file *prom;
    struct loop_timer prom_timer;
    int prom_err;            /* the last write's -errno: logged when it changes */
    unsigned long prom_seen; /* writes finished when last looked at */

    struct ami_session **ami;
    unsigned nami;
    struct addr *ami_peer; /* whitelisted peer address per session */
    bool *ami_peer_known;
    /* last seen counters, for meters/incidents */
    uint64_t *ami_reconnects, *ami_discarded, *ami_oversized;
    struct learned_trust {
        struct policy_wl_entry *v; /* what the session learned last from its Asterisk */
        unsigned n;
    } * ami_trust;
    bool *ami_up;            /* each session's state at the last turn's end */
    struct seen *seen;       /* identities of the events AMI delivered lately */
    int64_t store_newest_ms; /* the newest failure the store held at the start */
    unsigned bans_since_commit;
    uint64_t ban_queued_us; /* when the oldest ban not yet committed was decided (0: none) */
    /* Backfill work (log slices) not committed yet, and the commit time it costs per unit. */
    uint64_t backfill_pending_us, backfill_seen_us;
    double commit_ratio;
    bool backfill_commit_next; /* the log sources skip a slice: the next turn commits */
    bool backfill_committed;   /* this turn was such a commit turn (turn_commit() ran) */

    struct seclog **seclog; /* [seclog:NAME] sources */
    unsigned nseclog;
    int *seclog_ami;            /* each source's AMI session (index), -1 for none */
    uint64_t *seclog_malformed; /* last seen counters, for meters */
    uint64_t *seclog_duplicates;

    struct cluster *cluster;   /* fleet mode ([cluster]), NULL without it */
    struct crowdsec *crowdsec; /* [crowdsec]: LAPI's watcher and bouncer, NULL without it */
    const char *remote_src;    /* who sends the remote verdict being applied, for the log */

    struct core_ctl *ctl;
    core_reload_fn reload;
    void *reload_data;
    struct loop_timer maint_timer;
    struct loop_timer work_timer; /* another turn soon, while work is pending */
    bool expire_due, rollup_due, prune_due;
    int64_t rollup_cutoff_ms; /* the pass in progress rolls up what is older */
    uint64_t rollup_pass_ms;  /* when the last pass started (monotonic) */
    uint64_t work_busy_ms;    /* when housekeeping last took a slice while events came */
    uint64_t next_prune_ms;
    uint64_t next_gauge_ms;
    uint64_t next_cache_ms;
    uint64_t committed_ms;         /* the last commit of the store (monotonic) */
    uint64_t active_v4, active_v6; /* active bans, recounted every few seconds */

    /* This run in the store (daemon_runs): started, alive, stopped and why. */
    int64_t run_id; /* 0: not recorded (the database failed at the start) */
    uint64_t started_mono_ms;
    uint64_t next_alive_ms;
    bool running;            /* core_new() succeeded */
    const char *stop_reason; /* core_stopping() */
};

static const char *reason_name(enum verdict_reason r)
{
    switch (r) {
    case VERDICT_THRESHOLD:
        return "threshold";
    case VERDICT_MANUAL:
        return "manual";
    case VERDICT_RESTORE:
        return "restore";
    case VERDICT_PROTECTED:
        return "protected";
    case VERDICT_REMOTE:
        return "remote";
    }
    return "?";
}

/* --- the database's health: one log line per change of state, not per failure --- */

static void db_failed(struct core *c, const char *what, int err)
{
    c->stats.db_errors++;
    statsd_count(c->statsd, STATSD_M_DB_ERRORS, 1);
    if (c->db_failing)
        return;
    c->db_failing = true;
    log_err("database %s: %s failed: %s (%s); bans already decided stay enforced, events are "
            "not counted until it recovers",
            c->cfg->general.database, what, store_strerror(err), store_errmsg(c->store));
}

static void db_succeeded(struct core *c)
{
    if (!c->db_failing)
        return;
    c->db_failing = false;
    c->journal_loss_logged = false;
    log_notice("database %s recovered", c->cfg->general.database);
    store_incident(c->store, loop_wall_ms(c->loop), "db-error", "store",
                   "database errors ended; recovered");
}

/* --- nftables --- */

static void on_nft_result(void *data, const struct nftset_result *r)
{
    struct core *c = data;
    char buf[ADDR_STRLEN];

    if (r->err == 0)
        return;
    if (r->op == NFTSET_UNBAN && r->err == -ENOENT)
        return; /* already gone from the kernel: its timeout ran out */
    if (r->op == NFTSET_BAN && c->nban_refused < CORE_REFUSED_MAX) {
        c->ban_refused[c->nban_refused].prefix = r->prefix;
        c->ban_refused[c->nban_refused++].err = r->err;
    }
    /* Not sent: the table of our name is someone else's. That was logged once, and status and
     * the nft.enforcing gauge show it; a line per ban would only flood the log. */
    if (r->err == -EEXIST)
        return;
    c->stats.nft_errors++;
    statsd_count(c->statsd, STATSD_M_NFT_ERRORS, 1);
    log_err("nftables: cannot %s %s: %s", r->op == NFTSET_BAN ? "ban" : "unban",
            addr_prefix_format(&r->prefix, buf, sizeof(buf)), nftset_strerror(r->err));
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void nft_commit(struct core *c)
{
    c->nban_refused = 0;
    c->ban_queued_us = 0;
    /* No nftables layer: core_new() failed to open it and core_free() is cleaning up. */
    if (!c->nft || !nftset_queued(c->nft))
        return;
    long failed = nftset_commit(c->nft, on_nft_result, c);
    if (failed < 0 && !c->nft_failing) {
        c->nft_failing = true;
        log_err("nftables: the netlink transaction failed: %s", nftset_strerror((int)failed));
    } else if (failed >= 0 && c->nft_failing) {
        c->nft_failing = false;
        log_notice("nftables: transactions succeed again");
    }
}

static void apply_verdict(struct core *c, const struct verdict *v);

static int queue_restore(void *data, const struct verdict *v)
{
    struct core *c = data;
    if (v->action == VERDICT_UNBAN) {
        /* A ban the rules no longer allow: lifted instead of restored. */
        apply_verdict(c, v);
        c->restore.lifted++;
        return 0;
    }
    int r = nftset_queue_ban(c->nft, &v->prefix, (uint64_t)v->timeout_ms);
    if (r == 0)
        c->restore.count++;
    return r == -ENOMEM ? r : 0;
}

/* Starts re-installing the active bans (why: "start", "repair"), from the first again if one
 * was under way: the table it was filling is gone. Bans added from now on are installed by
 * their own path; the walk leaves them out. */
/* The loop's longest turn since the restore began, once the turn that ended it is recorded. */
static void restore_report_close(struct core *c)
{
    if (!c->last_restore_open)
        return;
    c->last_restore.longest_turn_us = loop_turn_max_since_mark(c->loop);
    c->last_restore_open = false;
}

static void restore_begin(struct core *c, const char *why, const char *what)
{
    restore_report_close(c);
    loop_turn_mark(c->loop);
    c->restore.active = true;
    c->restore.why = why;
    c->restore.what = what;
    c->restore.cursor = (struct store_ban_cursor){0};
    c->restore.count = c->restore.lifted = 0;
    c->restore.slices = 0;
    c->restore.longest_us = 0;
    if (!c->restore.step)
        c->restore.step = RESTORE_SLICE_MIN;
    c->restore.t0_ms = loop_clock_mono_ms();
    int r = store_ban_max_id(c->store, &c->restore.cursor.max_id);
    if (r < 0)
        db_failed(c, "reading the active bans", r);
}

static void restore_done(struct core *c)
{
    char msg[128];
    uint64_t ms = loop_clock_mono_ms() - c->restore.t0_ms;
    c->restore.active = false;
    c->last_restore = (struct core_restore_report){.done = true,
                                                   .repair = strcmp(c->restore.why, "start") != 0,
                                                   .bans = c->restore.count,
                                                   .ms = ms,
                                                   .slices = c->restore.slices,
                                                   .longest_slice_us = c->restore.longest_us};
    c->last_restore_open = true;
    if (strcmp(c->restore.why, "start") == 0) {
        log_notice("nftables: %lu active bans installed in %llu ms (%u slices, the longest "
                   "%llu.%llu ms)",
                   c->restore.count, (unsigned long long)ms, c->restore.slices,
                   (unsigned long long)c->restore.longest_us / 1000,
                   (unsigned long long)c->restore.longest_us % 1000 / 100);
        return;
    }
    log_warn("nftables: table inet %s %s after damage; %lu active bans re-installed in %llu ms",
             c->cfg->nftables.table, c->restore.what, c->restore.count, (unsigned long long)ms);
    snprintf(msg, sizeof(msg), "table %s, %lu bans re-installed", c->restore.what,
             c->restore.count);
    store_incident(c->store, loop_wall_ms(c->loop), "nft-repair", "nftables", msg);
}

/* One slice of the restore: as many bans as take about RESTORE_SLICE_US to read and commit
 * (the size adapts to what the last slice took), in one bulk nftables commit. */
static void restore_slice(struct core *c)
{
    if (!c->restore.active)
        return;
    uint64_t t0 = mono_us();
    unsigned n = 0;
    int r = judge_restore_slice(c->judge, loop_clock_wall_ms(), &c->restore.cursor, c->restore.step,
                                queue_restore, c, &n);
    nft_commit(c);
    int rc = store_turn_commit(c->store); /* the lifts of bans no longer allowed */
    if (r == 0 && rc < 0)
        r = rc;
    uint64_t took = mono_us() - t0;
    c->restore.slices++;
    if (took > c->restore.longest_us)
        c->restore.longest_us = took;
    if (n >= RESTORE_SLICE_MIN / 2 && took > 0) {
        uint64_t next = (uint64_t)n * RESTORE_SLICE_US / took;
        c->restore.step = next < RESTORE_SLICE_MIN   ? RESTORE_SLICE_MIN
                          : next > RESTORE_SLICE_MAX ? RESTORE_SLICE_MAX
                                                     : (unsigned)next;
    }
    if (r < 0) {
        /* The rest waits for the next damage check or restart; what is in stays in. */
        db_failed(c, "reading the active bans", r);
        c->restore.active = false;
        return;
    }
    if (c->restore.cursor.done)
        restore_done(c);
}

/* Whether bans reach the kernel now: our table is in place and the last transaction worked. */
static bool nft_enforcing(const struct core *c)
{
    return c->nft && c->nft_healthy && !c->nft_failing;
}

/* A table of our name that is not ours (no pbxguard mark) is never changed nor deleted. At
 * start the daemon refuses to run; later (someone flushed the ruleset and made their own
 * table of that name) it keeps judging and recording, enforces nothing, and says so once. */
static void nft_found_foreign(struct core *c, bool start)
{
    const char *table = c->cfg->nftables.table;
    c->nft_healthy = false;
    if (start) {
        log_err("nftables: table inet %s exists and is not pbxguard's (it lacks the pbxguard "
                "mark); pbxguardd leaves it untouched and does not start: set [nftables] table = "
                "to a name no other table uses (the default is pbxguard), or, if an older "
                "pbxguard left that table, delete it (nft delete table inet %s)",
                table, table);
    } else if (!c->nft_foreign) {
        log_err("nftables: protection is off: table inet %s is now someone else's (it lacks the "
                "pbxguard mark); it is left untouched and no ban is enforced until it is gone "
                "(then pbxguard's table and its bans come back) or [nftables] table names "
                "another table and pbxguardd restarts",
                table);
        store_incident(c->store, loop_wall_ms(c->loop), "nft-foreign", "nftables",
                       "a table of our name is not ours; bans not enforced");
    }
    c->nft_foreign = true;
}

/* Makes our table right and starts re-installing the active bans. why: "start", "repair". */
static int nft_rebuild(struct core *c, const char *why)
{
    enum nftset_setup_action action;
    int r = nftset_setup(c->nft, &action);
    if (r == -EEXIST) {
        c->restore.active = false;
        nft_found_foreign(c, strcmp(why, "start") == 0);
        return r;
    }
    if (r < 0) {
        if (!c->nft_failing)
            log_err("nftables: cannot set up table inet %s: %s", c->cfg->nftables.table,
                    nftset_strerror(r));
        c->nft_failing = true;
        c->nft_healthy = false;
        c->restore.active = false;
        return r;
    }
    c->nft_healthy = true;
    c->nft_failing = false;
    if (c->nft_foreign) {
        c->nft_foreign = false;
        log_notice("nftables: the table inet %s that was not ours is gone: protection is on again",
                   c->cfg->nftables.table);
    }
    const char *what = action == NFTSET_ADOPTED   ? "adopted"
                       : action == NFTSET_CREATED ? "created"
                                                  : "replaced";
    if (strcmp(why, "start") == 0) {
        log_notice("nftables: table inet %s %s (sets: %s); installing the active bans, a slice "
                   "per loop turn",
                   c->cfg->nftables.table, what, nftset_mode(c->nft));
    } else {
        c->stats.nft_repairs++;
        if (c->restore.active)
            log_warn("nftables: table inet %s was damaged again while its bans were being "
                     "re-installed; %s it, starting over",
                     c->cfg->nftables.table, what);
        else
            log_warn("nftables: table inet %s was damaged (deleted or flushed by someone else); "
                     "%s it, re-installing the active bans",
                     c->cfg->nftables.table, what);
    }
    restore_begin(c, why, what);
    /* At start, the first slice at once: a small restore is over before the daemon says it is
     * ready. A repair's first slice comes at the end of this turn. */
    if (strcmp(why, "start") == 0)
        restore_slice(c);
    return 0;
}

static void on_nft_monitor(struct loop *l, int fd, uint32_t events, void *data)
{
    struct core *c = data;
    bool damaged = false;
    int r = nftset_monitor_read(c->nft, &damaged);
    if (r < 0)
        log_debug("nftables monitor: %s", nftset_strerror(r));
    /* Repaired a moment later: whoever damaged the table may still be in the middle of it (the
     * kernel frees a big table's elements while holding nf_tables' commit lock, and our first
     * request would wait for it with the loop), and a burst of damage is one repair. */
    if (damaged && !loop_timer_armed(&c->repair_timer))
        loop_timer_arm(l, &c->repair_timer, REPAIR_DELAY_MS);
}

static void on_repair_timer(struct loop *l, void *data)
{
    struct core *c = data;
    c->nft_repair_pending = true; /* repaired at the end of this turn */
}

static void on_nft_check(struct loop *l, void *data)
{
    struct core *c = data;
    bool damaged = false;
    if (nftset_check(c->nft, &damaged) < 0 || damaged)
        c->nft_repair_pending = true;
    loop_timer_arm(l, &c->nft_check_timer, (uint64_t)c->cfg->nftables.check_interval_ms);
}

/* --- verdicts --- */

/* Live view: a verdict decided outside the event path, while someone watches. */
static void watch_verdict(struct core *c, const struct verdict *v)
{
    if (core_ctl_watching(c->ctl))
        core_ctl_watch(c->ctl, watch_verdict_json(v, loop_wall_ms(c->loop)));
}

static void apply_ban(struct core *c, const struct verdict *v, const struct sec_event *ev)
{
    char buf[ADDR_STRLEN], dur[32];
    int r = nftset_queue_ban(c->nft, &v->prefix, (uint64_t)v->timeout_ms);
    if (r < 0)
        log_err("nftables: cannot queue the ban of %s: %s",
                addr_prefix_format(&v->prefix, buf, sizeof(buf)), nftset_strerror(r));
    else if (ev && !c->ban_queued_us)
        c->ban_queued_us = mono_us();
    c->stats.bans++;
    c->bans_since_commit++;
    statsd_count_by(c->statsd, STATSD_M_BANS, reason_name(v->reason), 1);
    /* Published to the fleet once it is in the kernel and the store (the end of the turn). */
    cluster_local(c->cluster, v, loop_wall_ms(c->loop));
    /* Published to CrowdSec's LAPI through the outbox (the turn's transaction). */
    if (crowdsec_publish(c->crowdsec, v, loop_wall_ms(c->loop)) < 0)
        db_failed(c, "queueing an alert for CrowdSec", -EIO);
    /* A remote ban is logged by the fleet module, a batch at a time: a storm on another node
     * must not write one line per ban here. */
    if (!ev)
        watch_verdict(c, v);
    if (v->reason == VERDICT_REMOTE)
        return;
    if (v->timeout_ms)
        duration_format(v->timeout_ms / 1000, dur, sizeof(dur));
    else
        snprintf(dur, sizeof(dur), "ever");
    if (!ev) {
        log_notice("banned %s for %s (manual, offence %u)",
                   addr_prefix_format(&v->prefix, buf, sizeof(buf)), dur, v->offence);
        return;
    }
    /* The line is written after the turn's nftables commit (flush_ban_log()): a slow log
     * target must not stand between the event and the ban in the kernel. */
    if (c->nban_log == CORE_BAN_LOG_MAX) {
        c->ban_log_dropped++;
        return;
    }
    /* Service is the AMI peer's text: a broken or hostile peer must not write raw bytes into
     * the journal. */
    char svc[4 * SEC_SERVICE_MAX];
    log_escape(ev->service, strnlen(ev->service, SEC_SERVICE_MAX), svc, sizeof(svc));
    snprintf(c->ban_log[c->nban_log++], sizeof(c->ban_log[0]),
             "banned %s for %s: %g failures within %s%s, last %s/%s from %s (offence %u)",
             addr_prefix_format(&v->prefix, buf, sizeof(buf)), dur, v->failures, c->findtime_text,
             v->authenticated ? " (trusted_maxretry: it logged in lately)" : "",
             sec_event_type_name(ev->type), svc, ev->source, v->offence);
}

/* Logs the bans of the turn, once they are in the kernel; a flood's hundreds of bans per turn
 * are summed up in one line instead of flooding the journal. */
static void flush_ban_log(struct core *c)
{
    for (unsigned i = 0; i < c->nban_log; i++)
        log_notice("%s", c->ban_log[i]);
    if (c->ban_log_dropped)
        log_notice("... and %lu more bans in the same moment (`pbxguard list` shows them all)",
                   c->ban_log_dropped);
    c->nban_log = 0;
    c->ban_log_dropped = 0;
}

/* Queues a verdict decided outside the event path (a manual ban or unban) for the sinks. */
static void apply_verdict(struct core *c, const struct verdict *v)
{
    char buf[ADDR_STRLEN];
    if (v->action == VERDICT_BAN) {
        apply_ban(c, v, NULL);
    } else if (v->action == VERDICT_UNBAN) {
        int r = nftset_queue_unban(c->nft, &v->prefix);
        if (r < 0) {
            log_err("nftables: cannot queue the unban of %s: %s",
                    addr_prefix_format(&v->prefix, buf, sizeof(buf)), nftset_strerror(r));
        } else if (v->reason == VERDICT_PROTECTED) {
            const struct policy_wl_entry *e;
            char why[256];
            enum policy_ban_rule rule = policy_ban_check(c->policy, &v->prefix, true, &e);
            if (rule == POLICY_BAN_OK)
                rule = policy_ban_check(c->policy, &v->prefix, false, &e);
            log_warn("lifted the ban of %s: %s", addr_prefix_format(&v->prefix, buf, sizeof(buf)),
                     policy_ban_refusal(c->policy, &v->prefix, rule, e, why, sizeof(why)));
        } else if (v->reason == VERDICT_REMOTE) {
            log_notice("unbanned %s (lifted by %s)",
                       addr_prefix_format(&v->prefix, buf, sizeof(buf)),
                       c->remote_src ? c->remote_src : "the fleet");
        } else {
            log_notice("unbanned %s (manual%s)", addr_prefix_format(&v->prefix, buf, sizeof(buf)),
                       c->cluster ? "; lifted on every node of the fleet" : "");
            cluster_local(c->cluster, v, loop_wall_ms(c->loop));
        }
        c->stats.unbans++;
        statsd_count_by(c->statsd, STATSD_M_UNBANS, reason_name(v->reason), 1);
        watch_verdict(c, v);
    }
}

/* Ban changes the store could not keep for replay while the database failed: the kernel
 * enforces them, the history misses them. Counted, sent, and logged once per failure period. */
static void watch_journal(struct core *c)
{
    struct store_stats st;
    store_get_stats(c->store, &st);
    if (st.journal_lost <= c->journal_lost)
        return;
    statsd_count(c->statsd, STATSD_M_DB_JOURNAL_LOST, (int64_t)(st.journal_lost - c->journal_lost));
    if (!c->journal_loss_logged)
        log_err("database %s: the replay journal is full (%d ban changes); further bans and "
                "unbans are enforced but missing from the history",
                c->cfg->general.database, STORE_JOURNAL_MAX);
    c->journal_loss_logged = true;
    c->journal_lost = st.journal_lost;
}

void core_flush(struct core *c)
{
    nft_commit(c);
    int r = store_turn_commit(c->store);
    if (r < 0)
        db_failed(c, "commit", r);
    c->committed_ms = loop_now_ms(c->loop);
    watch_journal(c);
    c->bans_since_commit = 0;
}

static uint64_t thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The end of a turn's own work: its bans into the kernel at once, then its transaction, unless
 * events are already waiting, which then go first (their bans too) and share the next commit:
 * the commit's writes (a page of the log per leaf the turn touched) never stand between an
 * event in the socket and its ban. A loop that is never idle still commits every
 * COMMIT_DEFER_MAX_MS.
 * A log source in the middle of a backfill also leaves the transaction open while what is
 * pending will still fit in a turn after its next slice (and no ban waits for the commit). */
static void turn_commit(struct core *c)
{
    bool busy = false;
    uint64_t work = 0;
    for (unsigned i = 0; i < c->nseclog; i++) {
        busy |= seclog_busy(c->seclog[i]);
        work += seclog_work_us(c->seclog[i]);
    }
    c->backfill_pending_us += work - c->backfill_seen_us;
    c->backfill_seen_us = work;
    uint64_t slice = BACKFILL_TURN_US;
    for (unsigned i = 0; i < c->nseclog; i++)
        seclog_set_slice_us(c->seclog[i], slice);
    bool commit_turn = c->backfill_commit_next;
    c->backfill_commit_next = false;
    c->backfill_committed = commit_turn;
    if (busy && !commit_turn) {
        /* Another slice while the commit of what it adds still fits in a turn of its own;
         * else the next turn is that commit, alone. A ban decided in this turn is in the
         * kernel already (nft_commit() below): its row waits for that commit too. */
        double next = (double)(c->backfill_pending_us + slice) * c->commit_ratio;
        if (c->bans_since_commit || next >= BACKFILL_TURN_US ||
            c->backfill_pending_us + slice > BACKFILL_PENDING_MAX_US) {
            c->backfill_commit_next = true;
            for (unsigned i = 0; i < c->nseclog; i++)
                seclog_skip_slice(c->seclog[i]);
        }
        nft_commit(c);
        return;
    }
    bool events_wait = store_in_turn(c->store) && loop_busy(c->loop) &&
                       loop_now_ms(c->loop) - c->committed_ms < COMMIT_DEFER_MAX_MS;
    if (!busy && !commit_turn && events_wait) {
        nft_commit(c);
        return;
    }
    uint64_t t0 = thread_cpu_us();
    core_flush(c);
    if (c->backfill_pending_us >= 500) {
        double r = (double)(thread_cpu_us() - t0) / (double)c->backfill_pending_us;
        c->commit_ratio = 0.7 * c->commit_ratio + 0.3 * r;
    }
    c->backfill_pending_us = 0;
}

int core_enforce(struct core *c, const struct verdict *v)
{
    apply_verdict(c, v);
    core_flush(c);
    if (v->action != VERDICT_BAN)
        return 0;
    for (unsigned i = 0; i < c->nban_refused; i++)
        if (addr_prefix_equal(&c->ban_refused[i].prefix, &v->prefix))
            return c->ban_refused[i].err;
    return 0;
}

void core_view(const struct core *c, struct core_view *ret_view)
{
    *ret_view = (struct core_view){
        .cfg = c->cfg,
        .store = c->store,
        .judge = c->judge,
        .policy = c->policy,
        .started_ms = c->started_ms,
        .now_ms = loop_wall_ms(c->loop),
        .allow = c->allow,
    };
}

void core_health(const struct core *c, struct core_health *ret_health)
{
    *ret_health = (struct core_health){
        .events = c->stats.events,
        .failures = c->stats.failures,
        .bans = c->stats.bans,
        .nft_errors = c->stats.nft_errors,
        .nft_repairs = c->stats.nft_repairs,
        .nft_open = c->nft != NULL,
        .nft_ok = nft_enforcing(c),
        .nft_foreign = c->nft_foreign,
        .nft_mode = c->nft ? nftset_mode(c->nft) : NULL,
        .db_failing = c->db_failing,
        .nami = c->nami,
        .cluster = c->cluster,
        .crowdsec = c->crowdsec,
        .restoring = c->restore.active,
        .restored = c->restore.count,
        .last_restore = c->last_restore,
        .backfilled = c->stats.backfilled,
        .nseclog = c->nseclog,
    };
    if (c->last_restore_open)
        ret_health->last_restore.longest_turn_us = loop_turn_max_since_mark(c->loop);
    loop_turn_stats(c->loop, LOOP_STATS_WINDOW_MAX_MS, &ret_health->loop);
}

const struct ami_session *core_ami_session(const struct core *c, unsigned i)
{
    return i < c->nami ? c->ami[i] : NULL;
}

const struct seclog *core_seclog(const struct core *c, unsigned i)
{
    return i < c->nseclog ? c->seclog[i] : NULL;
}

void core_set_reload(struct core *c, core_reload_fn fn, void *data)
{
    c->reload = fn;
    c->reload_data = data;
}

int core_reload_request(struct core *c, config_error_fn on_error, void *data)
{
    if (!c->reload)
        return -EOPNOTSUPP;
    return c->reload(c->reload_data, on_error, data);
}

#define IGNORED_LOG_INTERVAL_MS 60000

/* An event from a source that is never a real one (link-local, ::, multicast, ...): counted in
 * a meter, and logged at most once a minute with the number of the others. */
static void note_ignored(struct core *c, const struct sec_event *ev, const char *range)
{
    statsd_count_by(c->statsd, STATSD_M_IGNORED, range, 1);
    uint64_t now = loop_now_ms(c->loop);
    if (c->ignored_log_ms && now - c->ignored_log_ms < IGNORED_LOG_INTERVAL_MS) {
        c->ignored_unlogged++;
        return;
    }
    char a[ADDR_STRLEN], scope[4 * SEC_SCOPE_MAX], svc[4 * SEC_SERVICE_MAX], more[64] = "";
    log_escape(ev->remote.scope, strnlen(ev->remote.scope, SEC_SCOPE_MAX), scope, sizeof(scope));
    log_escape(ev->service, strnlen(ev->service, SEC_SERVICE_MAX), svc, sizeof(svc));
    if (c->ignored_unlogged)
        snprintf(more, sizeof(more), " (and %lu more such events in the last minute)",
                 c->ignored_unlogged);
    log_notice("ignored %s/%s from %s%s%s (%s): such a source is never counted nor banned%s",
               sec_event_type_name(ev->type), svc, addr_format(&ev->remote.addr, a, sizeof(a)),
               scope[0] ? "%" : "", scope, range, more);
    c->ignored_log_ms = now ? now : 1;
    c->ignored_unlogged = 0;
}

/* The sink the sources hand their events to. */
static void on_event(void *data, const struct sec_event *ev)
{
    struct core *c = data;
    struct verdict v;
    int64_t now = loop_wall_ms(c->loop);

    /* A ban decided earlier in this turn has waited long enough behind the events after it. */
    if (c->ban_queued_us && mono_us() - c->ban_queued_us >= BAN_HOLD_US)
        nft_commit(c);
    if (ev->backfilled) {
        /* Read after the fact: older than the retention it would only be pruned again. */
        if (ev->occurred_ms && ev->occurred_ms < now - c->cfg->general.retention_s * 1000) {
            c->stats.too_old++;
            return;
        }
        c->stats.backfilled++;
        statsd_count_by(c->statsd, STATSD_M_BACKFILL_EVENTS, sec_event_type_name(ev->type), 1);
    } else {
        seen_add(c->seen, ev, now);
        statsd_count_by(c->statsd, STATSD_M_EVENTS, sec_event_type_name(ev->type), 1);
    }
    c->stats.events++;
    c->last_event_ms = now;
    c->last_event_mono_ms = loop_now_ms(c->loop);
    int r = judge_event(c->judge, ev, now, &v);
    if (r < 0) {
        db_failed(c, "recording an event", r);
        return;
    }
    db_succeeded(c);
    if (core_ctl_watching(c->ctl)) {
        /* What the admin debugging "why (not)" wants to see: the event and what became of it. */
        const struct policy_wl_entry *w =
            v.whitelisted ? policy_whitelist_match(c->policy, &ev->remote.addr) : NULL;
        struct addr_prefix key;
        policy_key(c->policy, &ev->remote.addr, &key);
        core_ctl_watch(c->ctl, watch_event_json(ev, &key, &v,
                                                policy_weight(c->policy, ev->type, ev->service), w,
                                                c->last_event_ms));
    }
    if (v.ignored) {
        note_ignored(c, ev, v.ignored);
        return;
    }
    if (v.counted) {
        c->stats.failures++;
        if (!ev->backfilled)
            statsd_failed_auth(c->statsd, ev);
    }
    if (v.action == VERDICT_BAN)
        apply_ban(c, &v, ev);
}

/* Whether an event read from the security log was counted already: delivered live (this run's
 * memory of AMI events), or recorded before (an earlier run, or past that memory's reach). */
static int seclog_seen(void *data, const struct sec_event *ev, bool *ret_seen)
{
    struct core *c = data;
    *ret_seen = false;
    if (!ev->event_tv_ms)
        return 0;
    if (seen_has(c->seen, ev)) {
        *ret_seen = true;
        return 0;
    }
    /* The store holds only events that weigh something, and no AMI event of an earlier run
     * happened after the newest row it had at the start: nothing to look up for those. */
    if (ev->event_tv_ms >= seen_complete_since(c->seen) + SEEN_SLACK_MS ||
        ev->event_tv_ms > c->store_newest_ms + SEEN_SLACK_MS ||
        policy_weight(c->policy, ev->type, ev->service) <= 0)
        return 0;
    struct addr_prefix key;
    policy_key(c->policy, &ev->remote.addr, &key);
    int r = store_failure_seen(c->store, ev, &key, ev->event_tv_ms - SEEN_LOOKUP_BEFORE_MS,
                               ev->event_tv_ms + SEEN_LOOKUP_AFTER_MS, ret_seen);
    if (r < 0)
        db_failed(c, "looking up a logged event", r);
    return r;
}

/* The oldest time an event judged now counts at: a log source writes its deferred failures
 * before an event from then on. A second early: the source's clock was read after the turn's. */
static int64_t seclog_judged_since(void *data, int64_t now_ms)
{
    struct core *c = data;
    return now_ms - policy_findtime_ms(c->policy) - 1000;
}

/* --- AMI sources --- */

/* --- protection: what must never be banned --- */

/* --- the runtime allowlist --- */

/* "cli:uid=0, until 2026-12-03 10:00:00: office VPN" for the log; the reason is admin text. */
static const char *allow_text(const struct store_allow *e, char *buf, size_t len)
{
    char why[4 * STORE_NOTE_MAX], until[64] = "";
    log_escape(e->reason, strlen(e->reason), why, sizeof(why));
    if (e->expires_ms) {
        char d[32];
        duration_format((e->expires_ms - e->added_ms + 999) / 1000, d, sizeof(d));
        snprintf(until, sizeof(until), ", for %s", d);
    }
    snprintf(buf, len, "by %s%s%s%s", e->added_by, until, why[0] ? ": " : "", why);
    return buf;
}

int core_allow_changed(struct core *c, const struct addr_prefix *prefix, bool added)
{
    char ps[ADDR_STRLEN], text[4 * STORE_NOTE_MAX + 128];
    addr_prefix_format(prefix, ps, sizeof(ps));
    if (!added) {
        policy_protect_remove(c->policy, POLICY_SRC_ALLOW, prefix);
        log_notice("allowlist: %s removed; it may be banned again", ps);
        return 0;
    }
    int r = policy_protect_add(c->policy, POLICY_SRC_ALLOW, prefix, "allowlist");
    if (r < 0)
        return r;
    const struct store_allow *e = allowlist_find(c->allow, prefix);
    log_notice("allowlist: %s allowed %s", ps, e ? allow_text(e, text, sizeof(text)) : "");
    return 0;
}

static void allow_expired(void *data, const struct store_allow *e)
{
    struct core *c = data;
    char ps[ADDR_STRLEN], text[4 * STORE_NOTE_MAX + 128];
    int r = store_allow_delete(c->store, &e->prefix);
    if (r < 0 && r != -ENOENT)
        db_failed(c, "removing an expired allowlist entry", r);
    policy_protect_remove(c->policy, POLICY_SRC_ALLOW, &e->prefix);
    log_notice("allowlist: %s expired (allowed %s); it may be banned again",
               addr_prefix_format(&e->prefix, ps, sizeof(ps)), allow_text(e, text, sizeof(text)));
}

struct allow_load {
    struct core *c;
    int64_t now_ms;
    unsigned loaded, expired, dropped;
};

static int allow_load_one(void *data, const struct store_allow *e)
{
    struct allow_load *ld = data;
    if (e->expires_ms && e->expires_ms <= ld->now_ms) {
        /* Expired while the daemon was down: dropped by the first maintenance pass. */
        ld->expired++;
    }
    int r = allowlist_add(ld->c->allow, e, NULL);
    if (r == -ENOSPC || r == -EINVAL) {
        ld->dropped++;
        return 0;
    }
    if (r == 0)
        r = policy_protect_add(ld->c->policy, POLICY_SRC_ALLOW, &e->prefix, "allowlist");
    if (r == 0)
        ld->loaded++;
    return r;
}

/* The allowlist as the database keeps it, into the policy before the bans are restored (a ban
 * of an allowed address is then lifted, not re-installed). */
static int load_allowlist(struct core *c)
{
    c->allow = allowlist_new(CTL_ALLOW_MAX);
    if (!c->allow)
        return -ENOMEM;
    struct allow_load ld = {.c = c, .now_ms = loop_wall_ms(c->loop)};
    int r = store_allow_all(c->store, allow_load_one, &ld);
    if (r < 0) {
        log_err("database %s: cannot read the allowlist: %s", c->cfg->general.database,
                store_strerror(r));
        return r;
    }
    if (ld.dropped)
        log_warn("allowlist: %u entries of the database not loaded (more than %d, or with a "
                 "broken expiry)",
                 ld.dropped, CTL_ALLOW_MAX);
    if (ld.loaded)
        log_info("allowlist: %u entr%s (pbxguard allowlist)%s", ld.loaded,
                 ld.loaded == 1 ? "y" : "ies", ld.expired ? ", some expired and now dropped" : "");
    allowlist_expire(c->allow, ld.now_ms, allow_expired, c);
    return 0;
}

/* prefix just became protected: lift the active bans that hold it and are not allowed now. */
static void protect_added(struct core *c, const struct addr_prefix *prefix)
{
    struct verdict v[16];
    unsigned n = 0;
    if (!c->judge || !c->nft)
        return; /* starting: the restore that follows checks every ban */
    int r = judge_protect(c->judge, prefix, loop_wall_ms(c->loop), v, 16, &n);
    if (r < 0) {
        db_failed(c, "lifting bans of a protected address", r);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        apply_verdict(c, &v[i]);
}

static bool has_entry(const struct policy_wl_entry *list, unsigned n,
                      const struct policy_wl_entry *e)
{
    for (unsigned i = 0; i < n; i++)
        if (addr_prefix_equal(&list[i].prefix, &e->prefix) && strcmp(list[i].label, e->label) == 0)
            return true;
    return false;
}

/* Puts the new list of one source into the policy, logs what changed, and lifts the bans that
 * now hold a protected address. */
static void protect_replace(struct core *c, enum policy_source src, const struct policy_wl_entry *e,
                            unsigned n)
{
    unsigned nall, nold = 0;
    const struct policy_wl_entry *all = policy_protect_entries(c->policy, &nall);
    struct policy_wl_entry *old = calloc(nall ? nall : 1, sizeof(*old));
    if (!old) {
        log_err("protection: out of memory");
        return;
    }
    for (unsigned i = 0; i < nall; i++)
        if (all[i].source == src)
            old[nold++] = all[i];
    int r = policy_protect_replace(c->policy, src, e, n);
    if (r < 0) {
        log_err("protection: cannot update the %s list: %s", policy_source_name(src), strerror(-r));
        free(old);
        return;
    }
    char buf[ADDR_STRLEN];
    bool starting = !c->started;
    for (unsigned i = 0; i < n; i++) {
        if (has_entry(old, nold, &e[i]))
            continue;
        if (starting)
            log_debug("protected: %s (%s)", addr_prefix_format(&e[i].prefix, buf, sizeof(buf)),
                      e[i].label);
        else
            log_notice("protected now: %s (%s)", addr_prefix_format(&e[i].prefix, buf, sizeof(buf)),
                       e[i].label);
        protect_added(c, &e[i].prefix);
    }
    for (unsigned i = 0; i < nold; i++)
        if (!has_entry(e, n, &old[i]))
            log_notice("no longer protected: %s (%s)",
                       addr_prefix_format(&old[i].prefix, buf, sizeof(buf)), old[i].label);
    free(old);
}

static void on_host_facts(void *data, enum policy_source src, const struct policy_wl_entry *e,
                          unsigned n)
{
    protect_replace(data, src, e, n);
}

/* The Asterisk servers we talk to must never be banned: their addresses are protected as soon
 * as we know them (at once for a numeric host, at connect time for a name). */
static void protect_ami_peers(struct core *c)
{
    struct policy_wl_entry *e = calloc(c->nami ? c->nami : 1, sizeof(*e));
    unsigned n = 0;
    if (!e)
        return;
    for (unsigned i = 0; i < c->nami; i++) {
        if (!c->ami_peer_known[i])
            continue;
        addr_prefix_of(&c->ami_peer[i], addr_max_len(&c->ami_peer[i]), &e[n].prefix);
        snprintf(e[n].label, sizeof(e[n].label), "AMI peer ami:%s", c->cfg->ami[i].name);
        n++;
    }
    protect_replace(c, POLICY_SRC_AMI, e, n);
    free(e);
}

static void whitelist_ami_peer(struct core *c, unsigned i, const struct addr *a)
{
    if (c->ami_peer_known[i] && addr_equal(&c->ami_peer[i], a))
        return;
    c->ami_peer[i] = *a;
    c->ami_peer_known[i] = true;
    protect_ami_peers(c);
}

static void log_protection(struct core *c)
{
    unsigned nall, count[POLICY_SRC_COUNT] = {0};
    const struct policy_wl_entry *all = policy_protect_entries(c->policy, &nall);
    for (unsigned i = 0; i < nall; i++)
        count[all[i].source]++;
    log_info("protected (never banned): loopback, link-local, multicast and the other built-in "
             "ranges; %u own address%s, %u gateway%s, %u resolver%s, %u AMI peer%s, %u "
             "[whitelist] entr%s; no ban wider than /%u (IPv4) or /%u (IPv6)",
             count[POLICY_SRC_HOST], count[POLICY_SRC_HOST] == 1 ? "" : "es",
             count[POLICY_SRC_GATEWAY], count[POLICY_SRC_GATEWAY] == 1 ? "" : "s",
             count[POLICY_SRC_RESOLVER], count[POLICY_SRC_RESOLVER] == 1 ? "" : "s",
             count[POLICY_SRC_AMI], count[POLICY_SRC_AMI] == 1 ? "" : "s", count[POLICY_SRC_CONFIG],
             count[POLICY_SRC_CONFIG] == 1 ? "y" : "ies", c->cfg->protect.min_prefix4,
             c->cfg->protect.min_prefix6);
}

/* Tells the log sources of an AMI session that it came up or was lost. */
static void ami_state_changed(struct core *c, unsigned i, bool up)
{
    for (unsigned k = 0; k < c->nseclog; k++)
        if (c->seclog_ami[k] == (int)i)
            seclog_ami_state(c->seclog[k], up, loop_wall_ms(c->loop));
}

static void watch_ami(struct core *c)
{
    for (unsigned i = 0; i < c->nami; i++) {
        struct addr a;
        struct ami_session_stats st;
        bool up = ami_session_is_up(c->ami[i]);
        if (up != c->ami_up[i]) {
            c->ami_up[i] = up;
            ami_state_changed(c, i, up);
        }
        if (ami_session_peer(c->ami[i], &a) == 0)
            whitelist_ami_peer(c, i, &a);
        ami_session_get_stats(c->ami[i], &st);
        if (st.reconnects > c->ami_reconnects[i]) {
            statsd_count(c->statsd, STATSD_M_AMI_RECONNECTS,
                         (int64_t)(st.reconnects - c->ami_reconnects[i]));
            store_incident(c->store, loop_wall_ms(c->loop), "ami-disconnect",
                           ami_session_name(c->ami[i]), "session lost; reconnecting");
            c->ami_reconnects[i] = st.reconnects;
        }
        if (st.frames_discarded > c->ami_discarded[i]) {
            uint64_t oversized = st.frames_oversized - c->ami_oversized[i];
            uint64_t malformed = st.frames_discarded - c->ami_discarded[i] - oversized;
            if (malformed)
                statsd_count(c->statsd, STATSD_M_AMI_FRAMES_MALFORMED, (int64_t)malformed);
            if (oversized)
                statsd_count(c->statsd, STATSD_M_AMI_FRAMES_OVERSIZED, (int64_t)oversized);
            c->ami_discarded[i] = st.frames_discarded;
            c->ami_oversized[i] = st.frames_oversized;
        }
    }
}

/* Every session's learned addresses, as one list of the trunk source: new ones lift the bans
 * that hold them (a trunk banned before it was learned, or while Asterisk was unreachable).
 * The sessions log what changed. */
static void protect_trunks(struct core *c)
{
    unsigned n = 0, k = 0;
    for (unsigned i = 0; i < c->nami; i++)
        n += c->ami_trust[i].n;
    struct policy_wl_entry *all = calloc(n ? n : 1, sizeof(*all));
    unsigned nold;
    const struct policy_wl_entry *cur = policy_protect_entries(c->policy, &nold);
    struct policy_wl_entry *old = calloc(nold ? nold : 1, sizeof(*old));
    if (!all || !old) {
        free(all);
        free(old);
        log_err("protection: out of memory; the trunks learned before stay protected");
        return;
    }
    for (unsigned i = 0; i < c->nami; i++)
        for (unsigned j = 0; j < c->ami_trust[i].n; j++)
            all[k++] = c->ami_trust[i].v[j];
    unsigned m = 0;
    for (unsigned i = 0; i < nold; i++)
        if (cur[i].source == POLICY_SRC_TRUNK)
            old[m++] = cur[i];
    int r = policy_protect_replace(c->policy, POLICY_SRC_TRUNK, all, n);
    if (r < 0) {
        log_err("protection: cannot update the trunks: %s; the last ones stay", strerror(-r));
    } else {
        for (unsigned i = 0; i < n; i++) {
            bool known = false;
            for (unsigned j = 0; j < m && !known; j++)
                known = addr_prefix_equal(&old[j].prefix, &all[i].prefix);
            if (!known)
                protect_added(c, &all[i].prefix);
        }
    }
    free(all);
    free(old);
}

/* A session learned a new set of addresses its Asterisk talks to: it replaces the last one. */
static void on_learned(void *data, const char *source, const struct policy_wl_entry *entries,
                       unsigned n)
{
    struct core *c = data;
    for (unsigned i = 0; i < c->nami; i++) {
        if (strcmp(ami_session_name(c->ami[i]), source) != 0)
            continue;
        struct policy_wl_entry *v = calloc(n ? n : 1, sizeof(*v));
        if (!v) {
            log_err("%s: out of memory; the trunks learned before stay protected", source);
            return;
        }
        memcpy(v, entries, n * sizeof(*v));
        free(c->ami_trust[i].v);
        c->ami_trust[i].v = v;
        c->ami_trust[i].n = n;
        protect_trunks(c);
        return;
    }
}

static void stop_ami(struct core *c)
{
    for (unsigned i = 0; i < c->nami; i++)
        ami_session_free(c->ami[i]);
    free(c->ami);
    free(c->ami_peer);
    free(c->ami_peer_known);
    free(c->ami_reconnects);
    free(c->ami_discarded);
    free(c->ami_oversized);
    for (unsigned i = 0; c->ami_trust && i < c->nami; i++)
        free(c->ami_trust[i].v);
    free(c->ami_trust);
    c->ami_trust = NULL;
    free(c->ami_up);
    c->ami_up = NULL;
    c->ami = NULL;
    c->ami_peer = NULL;
    c->ami_peer_known = NULL;
    c->ami_reconnects = c->ami_discarded = c->ami_oversized = NULL;
    c->nami = 0;
}

static int start_ami(struct core *c, const struct config *cfg)
{
    unsigned n = cfg->nami;
    c->ami = calloc(n ? n : 1, sizeof(*c->ami));
    c->ami_peer = calloc(n ? n : 1, sizeof(*c->ami_peer));
    c->ami_peer_known = calloc(n ? n : 1, sizeof(*c->ami_peer_known));
    c->ami_reconnects = calloc(n ? n : 1, sizeof(*c->ami_reconnects));
    c->ami_discarded = calloc(n ? n : 1, sizeof(*c->ami_discarded));
    c->ami_oversized = calloc(n ? n : 1, sizeof(*c->ami_oversized));
    c->ami_trust = calloc(n ? n : 1, sizeof(*c->ami_trust));
    c->ami_up = calloc(n ? n : 1, sizeof(*c->ami_up));
    if (!c->ami || !c->ami_peer || !c->ami_peer_known || !c->ami_reconnects || !c->ami_discarded ||
        !c->ami_oversized || !c->ami_trust || !c->ami_up)
        return -ENOMEM;
    struct sec_sink sink = {.submit = on_event, .data = c};
    for (unsigned i = 0; i < n; i++) {
        c->ami[i] = ami_session_new(c->loop, &cfg->ami[i], sink);
        if (!c->ami[i]) {
            int e = errno;
            log_err("[ami:%s]: cannot start the session: %s", cfg->ami[i].name, strerror(e));
            stop_ami(c);
            return -e;
        }
        c->nami = i + 1;
        int r = ami_session_learn_trust(c->ami[i], on_learned, c);
        if (r < 0)
            log_err("[ami:%s]: cannot learn trust from it: %s", cfg->ami[i].name, strerror(-r));
        struct addr a;
        if (addr_parse(cfg->ami[i].host, strlen(cfg->ami[i].host), &a) == 0)
            whitelist_ami_peer(c, i, &a);
    }
    if (n == 0 && cfg->nseclog == 0)
        log_warn("no [ami:NAME] or [seclog:NAME] section configured: nothing will be watched");
    return 0;
}

/* --- this run: its start, heartbeat and clean stop, so the next start can tell a death --- */

static const char *wall_text(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, len, "?");
    return buf;
}

static void record_start(struct core *c)
{
    struct store_run prev;
    char a[32], b[32], d[32];
    int r = store_run_start(c->store, c->started_ms, PBXGUARD_VERSION, c->cfg->path,
                            (unsigned)getpid(), &c->run_id, &prev);
    if (r < 0) {
        c->run_id = 0;
        db_failed(c, "recording the start", r);
        return;
    }
    int64_t down = prev.stop_ms ? c->started_ms - prev.stop_ms : c->started_ms - prev.died_ms;
    duration_format(down > 0 ? down / 1000 : 0, d, sizeof(d));
    if (prev.died_ms)
        log_warn("the previous pbxguardd (pid %u, started %s) did not stop cleanly: the last "
                 "thing it wrote was at %s; nothing was judged for %s",
                 prev.pid, wall_text(prev.start_ms, a, sizeof(a)),
                 wall_text(prev.died_ms, b, sizeof(b)), d);
    else if (prev.id)
        log_info("the previous pbxguardd stopped at %s (%s); not running for %s",
                 wall_text(prev.stop_ms, a, sizeof(a)), prev.stop_reason, d);
}

static void record_alive(struct core *c, int64_t now)
{
    if (!c->run_id || loop_now_ms(c->loop) < c->next_alive_ms)
        return;
    int r = store_run_alive(c->store, c->run_id, now);
    if (r < 0)
        db_failed(c, "recording the heartbeat", r);
    c->next_alive_ms = loop_now_ms(c->loop) + STORE_RUN_HEARTBEAT_MS;
}

/* The last write of the run: without it, the next start takes this run for a death. */
static void record_stop(struct core *c)
{
    if (!c->store || !c->run_id)
        return;
    const char *why = c->stop_reason ? c->stop_reason : c->running ? "exit" : "start failed";
    int r = store_run_stop(c->store, c->run_id, loop_clock_wall_ms(), why,
                           (int64_t)(loop_clock_mono_ms() - c->started_mono_ms));
    if (r == 0)
        r = store_turn_commit(c->store);
    if (r < 0)
        log_err("database %s: cannot record the stop: %s (%s); the next start will report an "
                "unclean stop",
                c->cfg->general.database, store_strerror(r), store_errmsg(c->store));
}

void core_stopping(struct core *c, const char *reason)
{
    if (c)
        c->stop_reason = reason;
}

/* --- the fleet --- */

static void on_remote_verdict(void *data, const struct verdict *v)
{
    apply_verdict(data, v);
}

/* The fleet database's addresses: protected like the AMI peers. */
static void on_fleet_servers(void *data, const struct addr *addrs, unsigned n)
{
    struct core *c = data;
    struct policy_wl_entry *e = calloc(n ? n : 1, sizeof(*e));
    if (!e)
        return;
    for (unsigned i = 0; i < n; i++) {
        addr_prefix_of(&addrs[i], addr_max_len(&addrs[i]), &e[i].prefix);
        snprintf(e[i].label, sizeof(e[i].label), "fleet database");
    }
    protect_replace(c, POLICY_SRC_FLEET, e, n);
    free(e);
}

static int start_cluster(struct core *c, const struct config *cfg)
{
    if (cfg->cluster.backend == CFG_CLUSTER_NONE) {
        struct policy_wl_entry none = {0};
        protect_replace(c, POLICY_SRC_FLEET, &none, 0);
        return 0;
    }
    struct cluster_sink sink = {.apply = on_remote_verdict, .protect = on_fleet_servers, .data = c};
    c->cluster = cluster_new(c->loop, &cfg->cluster, c->store, c->judge, c->statsd, sink);
    if (!c->cluster) {
        int e = errno;
        if (e == ENOTSUP)
            log_err("[cluster] backend = postgresql: this pbxguardd was built without libpq; "
                    "fleet mode needs a build with libpq");
        else
            log_err("[cluster]: cannot start: %s", strerror(e));
        return -e;
    }
    return 0;
}

/* --- security log sources --- */

static void stop_seclog(struct core *c)
{
    for (unsigned i = 0; i < c->nseclog; i++)
        seclog_free(c->seclog[i]);
    free(c->seclog);
    free(c->seclog_ami);
    free(c->seclog_malformed);
    free(c->seclog_duplicates);
    c->seclog = NULL;
    c->seclog_ami = NULL;
    c->seclog_malformed = c->seclog_duplicates = NULL;
    c->nseclog = 0;
}

static int start_seclog(struct core *c, const struct config *cfg)
{
    unsigned n = cfg->nseclog;
    if (n == 0)
        return 0;
    c->seclog = calloc(n, sizeof(*c->seclog));
    c->seclog_ami = calloc(n, sizeof(*c->seclog_ami));
    c->seclog_malformed = calloc(n, sizeof(*c->seclog_malformed));
    c->seclog_duplicates = calloc(n, sizeof(*c->seclog_duplicates));
    if (!c->seclog || !c->seclog_ami || !c->seclog_malformed || !c->seclog_duplicates)
        return -ENOMEM;
    struct seclog_hooks hooks = {.sink = {.submit = on_event, .data = c},
                                 .seen = seclog_seen,
                                 .judged_since = seclog_judged_since,
                                 .data = c};
    for (unsigned i = 0; i < n; i++) {
        const struct cfg_seclog *l = &cfg->seclog[i];
        const struct cfg_ami *ami = NULL;
        c->seclog_ami[i] = -1;
        for (unsigned k = 0; l->mode == CFG_SECLOG_BACKFILL && k < cfg->nami; k++)
            if (strcmp(cfg->ami[k].name, l->ami) == 0) {
                ami = &cfg->ami[k];
                c->seclog_ami[i] = (int)k;
            }
        c->seclog[i] = seclog_new(c->loop, l, ami, c->store, &hooks);
        if (!c->seclog[i]) {
            int e = errno;
            log_err("[seclog:%s]: cannot start the log source: %s", l->name, strerror(e));
            stop_seclog(c);
            return -e;
        }
        c->nseclog = i + 1;
        /* A session already up (a reload) is up for the new source too. */
        if (c->seclog_ami[i] >= 0 && c->ami_up && (unsigned)c->seclog_ami[i] < c->nami &&
            c->ami_up[c->seclog_ami[i]])
            seclog_ami_state(c->seclog[i], true, loop_wall_ms(c->loop));
        log_notice("seclog:%s: following %s (%s)", l->name, l->path,
                   ami ? "backfill: the gaps of AMI" : "primary");
    }
    return 0;
}

static void reload_cluster(struct core *c, const struct config *old, const struct config *cfg)
{
    if (c->cluster && cfg->cluster.backend != CFG_CLUSTER_NONE &&
        !cluster_needs_restart(c->cluster, &cfg->cluster)) {
        cluster_reload(c->cluster, &cfg->cluster);
        return;
    }
    if (!c->cluster && cfg->cluster.backend == CFG_CLUSTER_NONE)
        return;
    cluster_free(c->cluster);
    c->cluster = NULL;
    if (start_cluster(c, cfg) < 0)
        log_err("[cluster]: the fleet is off until the next successful reload");
    else if (!c->cluster)
        log_notice("cluster: fleet mode is off ([cluster] backend = none)");
}

/* --- CrowdSec --- */

static void on_crowdsec_verdict(void *data, const struct verdict *v)
{
    struct core *c = data;
    c->remote_src = "CrowdSec";
    apply_verdict(c, v);
    c->remote_src = NULL;
}

static int start_crowdsec(struct core *c, const struct config *cfg)
{
    const struct cfg_crowdsec *cs = &cfg->crowdsec;
    if (!cs->lapi_url[0])
        return 0;
    /* A systemd credential is there only when the unit hands it over (LoadCredential=). */
    const char *missing = cs->password_credential[0] && !cs->password[0] ? cs->password_credential
                          : cs->api_key_credential[0] && !cs->api_key[0] ? cs->api_key_credential
                                                                         : NULL;
    if (missing) {
        log_err("[crowdsec]: credential %s is not available ($CREDENTIALS_DIRECTORY/%s): run "
                "pbxguardd from its unit with LoadCredential=%s:PATH, or name a file instead",
                missing, missing, missing);
        return -ENOENT;
    }
    c->crowdsec = crowdsec_new(c->loop, &cfg->crowdsec, c->store, c->judge, c->statsd,
                               on_crowdsec_verdict, c);
    if (!c->crowdsec) {
        int e = errno;
        if (e == ENOTSUP)
            log_err("[crowdsec]: this pbxguardd was built without libcurl; the CrowdSec roles "
                    "need a build with libcurl");
        else
            log_err("[crowdsec]: cannot start: %s", strerror(e));
        return -e;
    }
    return 0;
}

static void reload_crowdsec(struct core *c, const struct config *old, const struct config *cfg)
{
    if (!c->crowdsec && !cfg->crowdsec.lapi_url[0])
        return;
    if (c->crowdsec && cfg->crowdsec.lapi_url[0]) {
        /* The new settings in place; the links start over only if they changed. */
        if (memcmp(&old->crowdsec, &cfg->crowdsec, sizeof(cfg->crowdsec)) == 0) {
            crowdsec_set_config(c->crowdsec, &cfg->crowdsec);
            return;
        }
        if (crowdsec_reconfigure(c->crowdsec, &cfg->crowdsec) < 0)
            log_err("[crowdsec]: cannot apply the new settings; the old ones stay");
        return;
    }
    crowdsec_free(c->crowdsec);
    c->crowdsec = NULL;
    if (start_crowdsec(c, cfg) < 0)
        log_err("[crowdsec]: off until the next successful reload");
    else if (!c->crowdsec)
        log_notice("crowdsec: off ([crowdsec] removed)");
}

/* --- maintenance: expiry, roll-up, retention, checkpoints, gauges --- */

static int64_t raw_keep_ms(const struct core *c)
{
    int64_t findtime = c->cfg->policy.findtime_s * 1000;
    return findtime > RAW_KEEP_MIN_MS ? findtime : RAW_KEEP_MIN_MS;
}

static bool work_pending(const struct core *c)
{
    return c->restore.active || c->expire_due || c->rollup_due || c->prune_due;
}

/* Housekeeping for up to budget_us, a store call of WORK_STEP rows at a time: expiry first
 * (bans), then the roll-up (the raw table's size), then retention. */
static void housekeeping(struct core *c, uint64_t budget_us)
{
    uint64_t t0 = mono_us();
    int64_t now = loop_clock_wall_ms();
    while ((c->expire_due || c->rollup_due || c->prune_due) && mono_us() - t0 < budget_us) {
        unsigned n = 0;
        int r;
        if (c->expire_due) {
            r = judge_expire(c->judge, now, WORK_STEP, &n);
            if (r < 0) {
                db_failed(c, "expiring bans", r);
            } else if (n) {
                c->stats.expired += n;
                statsd_count_by(c->statsd, STATSD_M_UNBANS, "expired", n);
            }
            c->expire_due = r == 0 && n == WORK_STEP;
        } else if (c->rollup_due) {
            bool done = false;
            r = store_rollup(c->store, c->rollup_cutoff_ms, WORK_STEP, &n, &done);
            if (r < 0)
                db_failed(c, "rolling up old failures", r);
            c->rollup_due = r == 0 && !done;
        } else {
            r = store_prune(c->store, now - c->cfg->general.retention_s * 1000, WORK_STEP, &n);
            if (r < 0)
                db_failed(c, "pruning old rows", r);
            c->prune_due = r == 0 && n == WORK_STEP;
            if (!c->prune_due)
                c->next_prune_ms = loop_now_ms(c->loop) + PRUNE_IDLE_INTERVAL_MS;
        }
    }
    core_flush(c);
}

/* The end of a turn's own work: a slice of what is pending, and another turn soon if more is. A
 * restore takes a slice every turn (the bans must be back quickly); housekeeping only when no
 * event is waiting, or a short slice now and then if they never stop coming. */
static void background_work(struct core *c)
{
    if (c->restore.active) {
        restore_slice(c);
    } else if (c->expire_due || c->rollup_due || c->prune_due) {
        uint64_t now = loop_now_ms(c->loop);
        bool backfill = false;
        for (unsigned i = 0; i < c->nseclog; i++)
            backfill |= seclog_busy(c->seclog[i]);
        if (backfill) {
            /* A backfill's turns are slices and commits: housekeeping (and the commit of its
             * own writes) joins a commit turn, after the commit, never a slice's turn. */
            if (c->backfill_committed && now - c->work_busy_ms >= WORK_BUSY_EVERY_MS) {
                c->work_busy_ms = now;
                housekeeping(c, WORK_BUSY_SLICE_US);
            }
        } else if (!loop_busy(c->loop)) {
            housekeeping(c, WORK_SLICE_US);
        } else if (now - c->work_busy_ms >= WORK_BUSY_EVERY_MS) {
            c->work_busy_ms = now;
            housekeeping(c, WORK_BUSY_SLICE_US);
        }
    }
    if (work_pending(c) && !loop_timer_armed(&c->work_timer))
        loop_timer_arm(c->loop, &c->work_timer, c->restore.active ? 0 : 1);
}

static void on_work(struct loop *l, void *data)
{
    /* Nothing to do here: the turn this timer makes runs background_work() at its end. */
}

/* The WAL. A checkpoint reads the log, writes the file and waits for the disk twice; even in the
 * store's helper thread at idle priority, that slows the loop's own writes (measured: a ban's p99
 * under a 50k events/s flood went from 1.0 ms to 2-10 ms). So the helper is asked when events
 * have stopped for CHECKPOINT_IDLE_MS, or when the log passes WAL_SOFT_LIMIT whatever comes.
 * If readers kept the log from restarting until it passed WAL_HARD_LIMIT, it is truncated here,
 * once they let go: a stall, logged, in that case only. */
static void wal_maintenance(struct core *c)
{
    struct store_wal_stats w;
    store_wal_stats(c->store, &w);
    bool idle = loop_now_ms(c->loop) - c->last_event_mono_ms >= CHECKPOINT_IDLE_MS;
    if (w.wal_bytes > WAL_HARD_LIMIT && !w.running) {
        uint64_t t0 = mono_us();
        int r = store_checkpoint_truncate(c->store);
        uint64_t ms = (mono_us() - t0) / 1000;
        if (r == 0)
            log_warn("database %s: its write-ahead log had grown to %llu MiB (a reader held it); "
                     "truncated, the loop stalled %llu ms",
                     c->cfg->general.database, (unsigned long long)(w.wal_bytes >> 20),
                     (unsigned long long)ms);
        return;
    }
    if (idle || w.wal_bytes > WAL_SOFT_LIMIT)
        store_checkpoint_request(c->store);
}
static void watch_seclog(struct core *c)
{
    for (unsigned i = 0; i < c->nseclog; i++) {
        struct seclog_status st;
        seclog_get_status(c->seclog[i], &st);
        if (st.stats.malformed > c->seclog_malformed[i]) {
            statsd_count(c->statsd, STATSD_M_SECLOG_MALFORMED,
                         (int64_t)(st.stats.malformed - c->seclog_malformed[i]));
            c->seclog_malformed[i] = st.stats.malformed;
        }
        if (st.stats.duplicates > c->seclog_duplicates[i]) {
            statsd_count(c->statsd, STATSD_M_SECLOG_DUPLICATES,
                         (int64_t)(st.stats.duplicates - c->seclog_duplicates[i]));
            c->seclog_duplicates[i] = st.stats.duplicates;
        }
    }
}

static void on_maintenance(struct loop *l, void *data)
{
    struct core *c = data;
    int64_t now = loop_clock_wall_ms();

    c->expire_due = true;
    /* Allowlist entries end on the daemon's clock, whatever the kernel holds. */
    allowlist_expire(c->allow, now, allow_expired, c);
    /* A roll-up pass over the raw table when its cutoff reaches a new hour, and every ten
     * minutes anyway (failures recorded in the past, a pass cut short). */
    int64_t cutoff = (now - raw_keep_ms(c)) / 3600000 * 3600000;
    /* Not while a log source catches up: it would roll up rows the backfill is still writing
     * (and, after a restart, rows it is about to read again and keep once by their place). */
    bool catching_up = false;
    for (unsigned i = 0; i < c->nseclog; i++)
        catching_up |= seclog_catching_up(c->seclog[i]);
    if (!c->rollup_due && !catching_up &&
        (cutoff != c->rollup_cutoff_ms || loop_now_ms(l) - c->rollup_pass_ms >= 600000)) {
        c->rollup_cutoff_ms = cutoff;
        c->rollup_pass_ms = loop_now_ms(l);
        c->rollup_due = true;
    }
    if (loop_now_ms(l) >= c->next_prune_ms)
        c->prune_due = true;
    if (loop_now_ms(l) >= c->next_gauge_ms) {
        int r = store_bans_active_count(c->store, now, &c->active_v4, &c->active_v6);
        if (r < 0) {
            db_failed(c, "counting the active bans", r);
        } else {
            statsd_gauge(c->statsd, STATSD_M_BANS_ACTIVE_IPV4, (int64_t)c->active_v4);
            statsd_gauge(c->statsd, STATSD_M_BANS_ACTIVE_IPV6, (int64_t)c->active_v6);
        }
        statsd_gauge(c->statsd, STATSD_M_NFT_ENFORCING, nft_enforcing(c));
        if (c->crowdsec) {
            struct crowdsec_status st;
            crowdsec_get_status(c->crowdsec, &st);
            statsd_gauge(c->statsd, "crowdsec.outbox", (int64_t)st.outbox);
            statsd_gauge(c->statsd, "crowdsec.decisions", (int64_t)st.decisions);
        }
        if (c->cluster) {
            struct cluster_status cs;
            cluster_get_status(c->cluster, &cs);
            statsd_gauge(c->statsd, STATSD_M_CLUSTER_OUTBOX, (int64_t)cs.outbox);
        }
        struct loop_turn_stats ts;
        loop_turn_stats(l, 2 * GAUGE_INTERVAL_MS, &ts);
        statsd_gauge(c->statsd, STATSD_M_LOOP_TURN_MAX_US, (int64_t)ts.window_max_us);
        statsd_gauge(c->statsd, STATSD_M_LOOP_TURN_P99_US, (int64_t)ts.window_p99_us);
        c->next_gauge_ms = loop_now_ms(l) + GAUGE_INTERVAL_MS;
    }
    if (loop_now_ms(l) >= c->next_cache_ms) {
        /* The window's rows: those the roll-up keeps (it may be waiting for a backfill). */
        int r = store_size_cache(c->store, cutoff, CACHE_MIN_KIB, CACHE_MAX_KIB, NULL);
        if (r < 0)
            db_failed(c, "sizing the page cache", r);
        c->next_cache_ms = loop_now_ms(l) + CACHE_EVERY_MS;
    }
    record_alive(c, now);
    wal_maintenance(c);
    if (work_pending(c) && !loop_timer_armed(&c->work_timer))
        loop_timer_arm(l, &c->work_timer, 0);
    loop_timer_arm(l, &c->maint_timer, MAINT_INTERVAL_MS);
}

/* --- [prometheus]: the textfile --- */

/* The series the core sets itself: per AMI source (sessions come and go with reloads, so their
 * series are set anew each time), the loop's turns, the gauges it keeps. */
static void prom_fill(struct core *c)
{
    static const enum metrics_family per_source[] = {METRICS_AMI_UP,         METRICS_AMI_EVENTS,
                                                     METRICS_AMI_MALFORMED,  METRICS_AMI_OVERSIZED,
                                                     METRICS_AMI_RECONNECTS, METRICS_AMI_LOGIN_FAIL,
                                                     METRICS_SECLOG_LINES,   METRICS_SECLOG_BEHIND};
    struct metrics *m = c->metrics;
    for (size_t i = 0; i < sizeof(per_source) / sizeof(per_source[0]); i++)
        metrics_clear_family(m, per_source[i]);
    for (unsigned i = 0; i < c->nami; i++) {
        struct ami_session_stats st;
        const char *src = ami_session_name(c->ami[i]);
        ami_session_get_stats(c->ami[i], &st);
        bool up = strcmp(ami_session_state_name(c->ami[i]), "up") == 0;
        metrics_set(m, METRICS_AMI_UP, src, NULL, up ? 1 : 0);
        metrics_set(m, METRICS_AMI_EVENTS, src, NULL, (double)st.events);
        metrics_set(m, METRICS_AMI_MALFORMED, src, NULL,
                    (double)(st.frames_discarded - st.frames_oversized));
        metrics_set(m, METRICS_AMI_OVERSIZED, src, NULL, (double)st.frames_oversized);
        metrics_set(m, METRICS_AMI_RECONNECTS, src, NULL, (double)st.reconnects);
        metrics_set(m, METRICS_AMI_LOGIN_FAIL, src, NULL, (double)st.auth_failures);
    }
    for (unsigned i = 0; i < c->nseclog; i++) {
        struct seclog_status st;
        seclog_get_status(c->seclog[i], &st);
        metrics_set(m, METRICS_SECLOG_LINES, st.name, NULL, (double)st.stats.lines);
        metrics_set(m, METRICS_SECLOG_BEHIND, st.name, NULL,
                    (double)(st.size > st.offset ? st.size - st.offset : 0));
    }
    if (c->nseclog) {
        metrics_add(m, METRICS_SECLOG_MALFORMED, NULL, NULL, 0);
        metrics_add(m, METRICS_SECLOG_DUPLICATES, NULL, NULL, 0);
    }
    metrics_set(m, METRICS_BANS_ACTIVE, "ipv4", NULL, (double)c->active_v4);
    metrics_set(m, METRICS_BANS_ACTIVE, "ipv6", NULL, (double)c->active_v6);
    metrics_set(m, METRICS_NFT_ENFORCING, NULL, NULL, nft_enforcing(c) ? 1 : 0);
    /* Counters that start at zero are written from the start, so that rate() has a first
     * sample before the first ban. */
    metrics_add(m, METRICS_NFT_ERRORS, NULL, NULL, 0);
    metrics_add(m, METRICS_DB_ERRORS, NULL, NULL, 0);
    metrics_add(m, METRICS_DB_JOURNAL_LOST, NULL, NULL, 0);
    struct loop_turn_stats ts;
    loop_turn_stats(c->loop, (uint64_t)c->cfg->prometheus.interval_ms, &ts);
    metrics_set(m, METRICS_LOOP_TURN, "0.99", NULL, (double)ts.window_p99_us / 1e6);
    metrics_set(m, METRICS_LOOP_TURN, "1", NULL, (double)ts.window_max_us / 1e6);
    metrics_set(m, METRICS_LOOP_TURNS, NULL, NULL, (double)ts.turns);
    if (c->cfg->statsd.enabled) {
        struct statsd_stats ss;
        statsd_get_stats(c->statsd, &ss);
        metrics_set(m, METRICS_STATSD_DROPPED, NULL, NULL, (double)ss.lines_dropped);
        metrics_set(m, METRICS_STATSD_SUPPRESSED, NULL, NULL, (double)ss.lines_suppressed);
    }
}

/* The writer thread's last outcome, logged when it changes: one line for a directory that is
 * missing or read-only (not one per interval), one when writing works again. */
static void prom_report(struct core *c)
{
    int err;
    const char *step;
    unsigned long n = prom_file_last(c->prom, &err, &step);
    if (n == c->prom_seen)
        return;
    c->prom_seen = n;
    if (err < 0 && err != c->prom_err) {
        char every[32];
        duration_format((c->cfg->prometheus.interval_ms + 999) / 1000, every, sizeof(every));
        log_err("[prometheus] textfile %s: cannot %s it: %s (is node_exporter's textfile "
                "directory there, and writable by pbxguardd?); retrying every %s, logged again "
                "only if the error changes",
                prom_file_path(c->prom), step, strerror(-err), every);
    } else if (err == 0 && c->prom_err < 0) {
        log_notice("[prometheus] textfile %s: written again", prom_file_path(c->prom));
    }
    c->prom_err = err;
}

static void on_prom(struct loop *l, void *data)
{
    struct core *c = data;
    prom_report(c);
    prom_fill(c);
    /* Rendering cannot fail with the table's bounds (METRICS_RENDER_MAX); the file system calls
     * are the writer thread's. */
    if (prom_file_submit(c->prom, c->metrics) < 0)
        log_err("[prometheus] textfile %s: cannot render the metrics", prom_file_path(c->prom));
    loop_timer_arm(l, &c->prom_timer, (uint64_t)c->cfg->prometheus.interval_ms);
}

/* The first write once the maintenance timer has counted the active bans. */
#define PROM_FIRST_WRITE_MS (MAINT_INTERVAL_MS + 100)

static int start_prom(struct core *c, const struct config *cfg)
{
    if (!cfg->prometheus.textfile[0])
        return 0;
    c->prom = prom_file_new(cfg->prometheus.textfile);
    if (!c->prom) {
        int e = errno;
        log_err("[prometheus] textfile %s: %s", cfg->prometheus.textfile, strerror(e));
        return -e;
    }
    int r = prom_file_start(c->prom);
    if (r < 0) {
        log_err("[prometheus] textfile %s: cannot start its writer thread: %s",
                cfg->prometheus.textfile, strerror(-r));
        prom_file_free(c->prom);
        c->prom = NULL;
        return r;
    }
    c->prom_err = 0;
    c->prom_seen = 0;
    loop_timer_arm(c->loop, &c->prom_timer, PROM_FIRST_WRITE_MS);
    return 0;
}

/* Metrics of a daemon that is not running (or of a path no longer configured) would look
 * current forever: the file goes with it. */
static void stop_prom(struct core *c)
{
    if (!c->prom)
        return;
    loop_timer_cancel(c->loop, &c->prom_timer);
    /* Stops the writer first (a write in progress ends), so that no rename brings it back. */
    int r = prom_file_remove(c->prom);
    if (r < 0 && c->prom_err == 0)
        log_warn("[prometheus] textfile %s: cannot remove it: %s", prom_file_path(c->prom),
                 strerror(-r));
    prom_file_free(c->prom);
    c->prom = NULL;
}

static void reload_prom(struct core *c, const struct config *old, const struct config *cfg)
{
    if (strcmp(old->prometheus.textfile, cfg->prometheus.textfile) != 0) {
        stop_prom(c);
        if (start_prom(c, cfg) < 0)
            log_err("[prometheus]: off until the next successful reload");
    } else if (c->prom && old->prometheus.interval_ms != cfg->prometheus.interval_ms) {
        loop_timer_arm(c->loop, &c->prom_timer, (uint64_t)cfg->prometheus.interval_ms);
    }
}

static void on_turn_end(struct loop *l, void *data)
{
    struct core *c = data;
    if (!c->restore.active)
        restore_report_close(c); /* the turn that finished it is recorded by now */
    if (c->nami)
        watch_ami(c);
    if (c->nseclog)
        watch_seclog(c);
    if (c->nft_repair_pending) {
        c->nft_repair_pending = false;
        nft_rebuild(c, "repair");
    }
    turn_commit(c);
    flush_ban_log(c);
    /* Local first, shared after: what the turn decided is in the kernel now (and in the store,
     * or in its open transaction while events keep coming: see turn_commit()). */
    cluster_turn_end(c->cluster);
    background_work(c);
    statsd_flush(c->statsd);
}

/* --- lifecycle --- */

static struct policy *make_policy(const struct config *cfg)
{
    struct policy *p = policy_new(&cfg->policy, &cfg->whitelist);
    if (!p) {
        log_err("[policy]: invalid settings: %s", strerror(errno));
        return NULL;
    }
    if (policy_set_min_prefix(p, cfg->protect.min_prefix4, cfg->protect.min_prefix6) < 0) {
        log_err("[protect] min_prefix4 = %u, min_prefix6 = %u: invalid with ipv4_prefix = %u, "
                "ipv6_prefix = %u",
                cfg->protect.min_prefix4, cfg->protect.min_prefix6, cfg->policy.ipv4_prefix,
                cfg->policy.ipv6_prefix);
        policy_free(p);
        return NULL;
    }
    return p;
}

/* The database's directory exists: daemon.c made it (0750) for the lock beside the file. */
static int open_store(struct core *c)
{
    /* store_options: 0 means "the default", -1 "no map". */
    struct store_options opt = {.flags = STORE_OWN_CHECKPOINTS,
                                .mmap_mib = c->cfg->general.database_mmap_mib
                                                ? (int)c->cfg->general.database_mmap_mib
                                                : -1};
    int r = store_open(c->cfg->general.database, &opt, &c->store);
    if (r < 0)
        log_err("database %s: %s (%s)", c->cfg->general.database, store_strerror(r),
                store_errmsg(NULL));
    return r;
}

static int open_nft(struct core *c)
{
    c->nft = nftset_open(&c->cfg->nftables);
    if (!c->nft) {
        int e = errno;
        log_err("nftables: %s", nftset_strerror(e));
        return -e;
    }
    int r = nft_rebuild(c, "start");
    if (r < 0)
        return r;
    r = loop_io_add(c->loop, &c->nft_io, nftset_monitor_fd(c->nft), EPOLLIN, on_nft_monitor, c);
    if (r < 0)
        return r;
    loop_timer_init(&c->nft_check_timer, on_nft_check, c);
    loop_timer_arm(c->loop, &c->nft_check_timer, (uint64_t)c->cfg->nftables.check_interval_ms);
    return 0;
}

struct core *core_new(struct loop *l, const struct config *cfg)
{
    struct core *c = calloc(1, sizeof(*c));
    int r;
    if (!c)
        return NULL;
    c->loop = l;
    c->cfg = cfg;
    c->started_ms = loop_clock_wall_ms();
    c->started_mono_ms = loop_clock_mono_ms();
    loop_io_init(&c->nft_io);
    loop_timer_init(&c->maint_timer, on_maintenance, c);
    loop_timer_init(&c->work_timer, on_work, c);
    loop_timer_init(&c->repair_timer, on_repair_timer, c);
    loop_timer_init(&c->nft_check_timer, on_nft_check, c);
    loop_timer_init(&c->prom_timer, on_prom, c);
    duration_format(cfg->policy.findtime_s, c->findtime_text, sizeof(c->findtime_text));

    c->metrics = metrics_new();
    if (!c->metrics) {
        r = -ENOMEM;
        goto fail;
    }
    c->statsd = statsd_new(&cfg->statsd);
    if (!c->statsd) {
        r = -errno;
        log_err("[statsd] server %s: %s", cfg->statsd.host, strerror(errno));
        goto fail;
    }
    statsd_set_metrics(c->statsd, c->metrics);
    if ((r = open_store(c)) < 0)
        goto fail;
    record_start(c);
    c->next_alive_ms = loop_clock_mono_ms() + STORE_RUN_HEARTBEAT_MS;
    c->policy = make_policy(cfg);
    if (!c->policy) {
        r = -EINVAL;
        goto fail;
    }
    c->judge = judge_new(c->store, c->policy);
    c->seen = seen_new(c->started_ms);
    c->commit_ratio = 0.5;
    if (store_last_failure_ms(c->store, &c->store_newest_ms) < 0)
        c->store_newest_ms = INT64_MAX; /* unknown: always look up */
    if (!c->judge || !c->seen) {
        r = -ENOMEM;
        goto fail;
    }
    if ((r = load_allowlist(c)) < 0)
        goto fail;
    /* The host's own facts before the restore, so that no ban holding them is re-installed. */
    c->host = hostaddr_new(l, &cfg->protect, on_host_facts, c);
    if (!c->host) {
        r = -errno;
        goto fail;
    }
    if ((r = open_nft(c)) < 0)
        goto fail;
    store_turn_commit(c->store);
    c->ctl = core_ctl_new(c, l, &cfg->general);
    if (!c->ctl) {
        r = -errno;
        goto fail;
    }
    if ((r = start_ami(c, cfg)) < 0)
        goto fail;
    if ((r = start_cluster(c, cfg)) < 0)
        goto fail;
    if ((r = start_crowdsec(c, cfg)) < 0)
        goto fail;
    if ((r = start_prom(c, cfg)) < 0)
        goto fail;
    if ((r = start_seclog(c, cfg)) < 0)
        goto fail;
    log_protection(c);
    c->started = true;
    if ((r = loop_turn_end_add(l, on_turn_end, c)) < 0)
        goto fail;
    loop_timer_arm(l, &c->maint_timer, MAINT_INTERVAL_MS);
    c->running = true;
    return c;

fail:
    core_free(c);
    errno = -r;
    return NULL;
}

static bool same_ami(const struct cfg_ami *a, const struct cfg_ami *b)
{
    return strcmp(a->name, b->name) == 0 && strcmp(a->host, b->host) == 0 && a->port == b->port &&
           strcmp(a->username, b->username) == 0 && strcmp(a->secret, b->secret) == 0 &&
           a->auth == b->auth && a->ping_interval_ms == b->ping_interval_ms &&
           a->ping_timeout_ms == b->ping_timeout_ms &&
           a->connect_timeout_ms == b->connect_timeout_ms &&
           a->backoff_min_ms == b->backoff_min_ms && a->backoff_max_ms == b->backoff_max_ms &&
           a->learn_trust == b->learn_trust && a->trust_refresh_s == b->trust_refresh_s;
}

static bool same_seclog_list(const struct config *a, const struct config *b)
{
    if (a->nseclog != b->nseclog)
        return false;
    for (unsigned i = 0; i < a->nseclog; i++) {
        const struct cfg_seclog *x = &a->seclog[i], *y = &b->seclog[i];
        if (strcmp(x->name, y->name) != 0 || strcmp(x->path, y->path) != 0 || x->mode != y->mode ||
            strcmp(x->ami, y->ami) != 0)
            return false;
    }
    return true;
}

static bool same_ami_list(const struct config *a, const struct config *b)
{
    if (a->nami != b->nami)
        return false;
    for (unsigned i = 0; i < a->nami; i++)
        if (!same_ami(&a->ami[i], &b->ami[i]))
            return false;
    return true;
}

int core_reload(struct core *c, const struct config *cfg)
{
    struct policy *p = make_policy(cfg);
    if (!p)
        return -EINVAL;
    /* statsd_reload() resolves the server's name (a blocking lookup): only when [statsd]
     * changed, so a plain SIGHUP never waits on DNS. */
    int r = 0;
    if (memcmp(&c->cfg->statsd, &cfg->statsd, sizeof(cfg->statsd)) != 0)
        r = statsd_reload(c->statsd, &cfg->statsd);
    if (r < 0) {
        log_err("[statsd] server %s: %s", cfg->statsd.host, strerror(-r));
        policy_free(p);
        return r;
    }
    if (memcmp(&c->cfg->nftables, &cfg->nftables, sizeof(cfg->nftables)) != 0)
        log_warn("[nftables] changes take effect when pbxguardd restarts");

    /* What was learned at run time carries over; hostaddr_reconfigure() below corrects it if
     * [protect] changed. */
    if (policy_protect_copy(p, c->policy, POLICY_SRC_HOST) < 0 ||
        policy_protect_copy(p, c->policy, POLICY_SRC_GATEWAY) < 0 ||
        policy_protect_copy(p, c->policy, POLICY_SRC_RESOLVER) < 0 ||
        policy_protect_copy(p, c->policy, POLICY_SRC_FLEET) < 0 ||
        policy_protect_copy(p, c->policy, POLICY_SRC_ALLOW) < 0 ||
        (same_ami_list(c->cfg, cfg) && (policy_protect_copy(p, c->policy, POLICY_SRC_AMI) < 0 ||
                                        policy_protect_copy(p, c->policy, POLICY_SRC_TRUNK) < 0))) {
        log_err("reload: out of memory");
        policy_free(p);
        return -ENOMEM;
    }

    /* From here on nothing fails: switch over. */
    const struct config *old = c->cfg;
    c->cfg = cfg;
    duration_format(cfg->policy.findtime_s, c->findtime_text, sizeof(c->findtime_text));
    bool seclog_changed = !same_seclog_list(old, cfg) || !same_ami_list(old, cfg);
    if (seclog_changed)
        stop_seclog(c); /* each resumes from its saved position */
    if (!same_ami_list(old, cfg)) {
        /* What a session learned stays with the session of its name that replaces it (unless
         * that one does not learn), until it asks again: a reload never leaves trunks
         * bannable. */
        unsigned nkept = c->nami;
        struct learned_trust *kept = c->ami_trust;
        char(*names)[CFG_NAME_MAX] = calloc(nkept ? nkept : 1, sizeof(*names));
        for (unsigned i = 0; names && i < nkept; i++)
            snprintf(names[i], sizeof(names[i]), "%s", old->ami[i].name);
        c->ami_trust = NULL;
        stop_ami(c);
        /* The new policy learns the peers again as the new sessions connect. */
        judge_set_policy(c->judge, p);
        policy_free(c->policy);
        c->policy = p;
        r = start_ami(c, cfg);
        if (r < 0)
            log_err("AMI sessions could not be restarted: %s", strerror(-r));
        for (unsigned i = 0; names && c->ami_trust && i < c->nami; i++) {
            for (unsigned j = 0; cfg->ami[i].learn_trust && j < nkept; j++) {
                if (kept[j].v && strcmp(names[j], cfg->ami[i].name) == 0) {
                    c->ami_trust[i] = kept[j];
                    kept[j].v = NULL;
                }
            }
        }
        for (unsigned j = 0; j < nkept; j++)
            free(kept[j].v);
        free(kept);
        free(names);
        protect_trunks(c);
    } else {
        judge_set_policy(c->judge, p);
        policy_free(c->policy);
        c->policy = p;
    }
    /* A failure keeps the old [protect] running (logged); the reload itself goes on. */
    hostaddr_reconfigure(c->host, &cfg->protect);
    reload_cluster(c, old, cfg);
    reload_crowdsec(c, old, cfg);
    reload_prom(c, old, cfg);
    if (seclog_changed) {
        r = start_seclog(c, cfg);
        if (r < 0)
            log_err("security log sources could not be restarted: %s", strerror(-r));
    }
    return 0;
}

void core_free(struct core *c)
{
    if (!c)
        return;
    stop_seclog(c);
    stop_ami(c);
    cluster_free(c->cluster);
    c->cluster = NULL;
    crowdsec_free(c->crowdsec);
    c->crowdsec = NULL;
    core_ctl_free(c->ctl);
    c->ctl = NULL;
    hostaddr_free(c->host);
    c->host = NULL;
    if (c->store)
        core_flush(c);
    flush_ban_log(c);
    if (c->loop)
        stop_prom(c);
    statsd_free(c->statsd);
    if (c->loop) {
        loop_timer_cancel(c->loop, &c->maint_timer);
        loop_timer_cancel(c->loop, &c->work_timer);
        loop_timer_cancel(c->loop, &c->repair_timer);
        loop_timer_cancel(c->loop, &c->nft_check_timer);
        loop_io_del(c->loop, &c->nft_io);
    }
    /* A table of our name that is not ours stays (and was reported when it was found). */
    if (c->nft && c->cfg->nftables.remove_on_stop && !c->nft_foreign) {
        int r = nftset_teardown(c->nft);
        if (r == -EEXIST)
            log_warn("nftables: table inet %s not removed: it is not pbxguard's",
                     c->cfg->nftables.table);
        else if (r < 0)
            log_err("nftables: cannot remove table inet %s: %s", c->cfg->nftables.table,
                    nftset_strerror(r));
        else
            log_notice("nftables: table inet %s removed (remove_on_stop)", c->cfg->nftables.table);
    }
    nftset_free(c->nft);
    seen_free(c->seen);
    judge_free(c->judge);
    policy_free(c->policy);
    allowlist_free(c->allow);
    record_stop(c);
    store_close(c->store);
    metrics_free(c->metrics);
    free(c);
}
