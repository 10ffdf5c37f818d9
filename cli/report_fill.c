/* Fills the report's model from the store's report queries (store_report.h), all from one
 * snapshot. No SQL here: what the database holds and how it is read is the store's. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "report.h"
#include "store_report.h"

static int64_t sec_to_ms(int64_t s)
{
    return s * 1000;
}

static int64_t ms_to_sec(int64_t ms)
{
    return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

static int add_failures(void *data, const char *service, int type, int64_t bucket, uint64_t n,
                        uint64_t backfilled)
{
    struct report *r = data;
    r->totals.failures += n;
    r->totals.backfilled += backfilled;
    if (type >= 0 && type < SEC_EVENT_TYPE_COUNT)
        r->by_type[type] += n;
    if (bucket >= 0 && bucket < r->nbuckets)
        r->buckets[bucket] += n;
    unsigned i;
    for (i = 0; i < r->nby_service; i++)
        if (strcmp(r->by_service[i].name, service) == 0)
            break;
    if (i == r->nby_service && report_add_count(&r->by_service, &r->nby_service, service, 0) < 0)
        return -ENOMEM;
    r->by_service[i].n += n;
    return 0;
}

/* Most failures first, then by name, so the order is stable. */
static void sort_services(struct report *r)
{
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
}

struct source_ctx {
    struct report *r;
    int64_t from_ms, now_ms;
};

/* The state at now of the source's last ban that started by now. */
static void ban_state(const struct store_report_source *in, int64_t from_ms, int64_t now_ms,
                      struct report_source *out)
{
    if (!in->ban_found)
        return;
    bool permanent = in->ban_expires_ms == 0;
    bool ended = in->ban_ended_ms != 0;
    if ((!ended || in->ban_ended_ms > now_ms) && (permanent || in->ban_expires_ms > now_ms)) {
        out->ban = permanent ? REPORT_BAN_PERMANENT : REPORT_BAN_ACTIVE;
        out->ban_until = permanent ? 0 : ms_to_sec(in->ban_expires_ms);
        return;
    }
    int64_t end = ended && in->ban_ended_ms <= now_ms ? in->ban_ended_ms : in->ban_expires_ms;
    if (end >= from_ms) {
        out->ban = REPORT_BAN_ENDED;
        out->ban_until = ms_to_sec(end);
    }
}

static int add_source(void *data, const struct store_report_source *in)
{
    struct source_ctx *c = data;
    struct report_source s = {0};
    snprintf(s.key, sizeof(s.key), "%s", in->key);
    s.attempts = in->attempts;
    s.first_seen = ms_to_sec(in->first_ms);
    s.last_seen = ms_to_sec(in->last_ms);
    s.accounts = in->accounts;
    _Static_assert(REPORT_SERVICES_MAX == STORE_REPORT_SERVICES_MAX, "one bound for both");
    s.nservices = in->nservices;
    memcpy(s.services, in->services, sizeof(s.services));
    s.types = in->types;
    ban_state(in, c->from_ms, c->now_ms, &s);
    return report_add_source(c->r, &s);
}

static int add_new_source(void *data, const char *key, int64_t first_ms, uint64_t attempts)
{
    struct source_ctx *c = data;
    return report_add_new_source(c->r, key, ms_to_sec(first_ms), attempts);
}

static int add_account(void *data, const char *name, uint64_t attempts, uint64_t sources)
{
    return report_add_account(data, name, attempts, sources);
}

static int add_ban_reason(void *data, const char *name, uint64_t n)
{
    struct report *r = data;
    return report_add_count(&r->ban_reasons, &r->nban_reasons, name, n);
}

static int add_incident(void *data, const char *name, uint64_t n)
{
    struct report *r = data;
    return report_add_count(&r->incidents, &r->nincidents, name, n);
}

/* A latest run that has written nothing for this long is not running: its heartbeat is every
 * STORE_RUN_HEARTBEAT_MS, and the maintenance timer that beats it runs every second. */
#define SILENT_MS (3 * STORE_RUN_HEARTBEAT_MS)

struct runs_ctx {
    struct report *r;
    int64_t from_ms, to_ms; /* the period */
    int64_t end_ms;         /* where downtime counting stops: the period's end, or now */
    int64_t now_ms;
    int64_t down_ms; /* not running within [from_ms, end_ms) */
};

static bool in_period(const struct runs_ctx *c, int64_t t_ms)
{
    return t_ms >= c->from_ms && t_ms < c->to_ms;
}

/* Adds the part of [a, b) that lies in [from_ms, end_ms) to the downtime. */
static void add_down(struct runs_ctx *c, int64_t a, int64_t b)
{
    if (a < c->from_ms)
        a = c->from_ms;
    if (b > c->end_ms)
        b = c->end_ms;
    if (b > a)
        c->down_ms += b - a;
}

static int add_event(struct runs_ctx *c, enum report_run_kind kind, int64_t t_ms,
                     const struct store_run *run)
{
    struct report_run e = {.kind = kind, .time = ms_to_sec(t_ms), .pid = run->pid, .down = -1};
    switch (kind) {
    case REPORT_RUN_START:
        snprintf(e.version, sizeof(e.version), "%s", run->version);
        snprintf(e.config, sizeof(e.config), "%s", run->config);
        e.down = run->down_ms >= 0 ? ms_to_sec(run->down_ms) : -1;
        e.after_death = run->prev_died;
        break;
    case REPORT_RUN_STOP:
        snprintf(e.reason, sizeof(e.reason), "%s", run->stop_reason);
        e.uptime = ms_to_sec(run->uptime_ms);
        break;
    case REPORT_RUN_DIED:
    case REPORT_RUN_SILENT:
        e.uptime = ms_to_sec(t_ms - run->start_ms);
        break;
    }
    return report_add_run(c->r, &e);
}

static int add_run(void *data, const struct store_run *run, bool latest)
{
    struct runs_ctx *c = data;
    int rc = 0;
    c->r->runs_recorded = true;
    if (run->down_ms >= 0)
        add_down(c, run->start_ms - run->down_ms, run->start_ms);
    if (in_period(c, run->start_ms))
        rc = add_event(c, REPORT_RUN_START, run->start_ms, run);
    if (rc == 0 && run->stop_ms && in_period(c, run->stop_ms))
        rc = add_event(c, REPORT_RUN_STOP, run->stop_ms, run);
    if (rc == 0 && run->died_ms && in_period(c, run->died_ms))
        rc = add_event(c, REPORT_RUN_DIED, run->died_ms, run);
    if (rc == 0 && latest && run->stop_ms) {
        add_down(c, run->stop_ms, c->now_ms); /* stopped, and not started since */
    } else if (rc == 0 && latest && c->now_ms - run->alive_ms > SILENT_MS) {
        add_down(c, run->alive_ms, c->now_ms);
        if (in_period(c, run->alive_ms))
            rc = add_event(c, REPORT_RUN_SILENT, run->alive_ms, run);
    }
    return rc;
}

int report_fill(struct store *st, struct report *r, int64_t now, unsigned top)
{
    int64_t F = sec_to_ms(r->from), T = sec_to_ms(r->to), now_ms = sec_to_ms(now);
    /* Bans are counted up to now when the period reaches into the future. */
    int64_t E = T < now_ms ? T : now_ms;
    if (E < F)
        E = F;
    r->generated = now;

    /* One snapshot: every figure comes from the same state, even while the daemon commits a
     * turn between two queries. */
    int rc = store_snapshot_begin(st);
    if (rc == 0)
        rc = store_report_failures(st, F, T, sec_to_ms(r->bucket_start), sec_to_ms(r->bucket_s),
                                   add_failures, r);
    if (rc == 0) {
        sort_services(r);
        struct source_ctx c = {r, F, now_ms};
        struct store_report_sources_fns fns = {add_source, add_new_source};
        struct store_report_source_counts n;
        rc = store_report_sources(st, F, T, now_ms, top, &fns, &c, &n);
        if (rc == 0) {
            r->totals.sources = n.sources;
            r->totals.new_sources = n.new_sources;
        }
    }
    if (rc == 0)
        rc = store_report_accounts(st, F, T, top, add_account, r);
    if (rc == 0) {
        struct store_report_bans b;
        rc = store_report_bans(st, F, E, add_ban_reason, r, &b);
        if (rc == 0) {
            r->totals.bans = b.bans;
            r->totals.escalated = b.escalated;
            r->totals.permanent = b.permanent;
            r->totals.lifted = b.lifted;
            r->totals.expired = b.expired;
            r->totals.active = b.active;
        }
    }
    if (rc == 0) {
        r->incidents_recorded = true;
        rc = store_report_incidents(st, F, T, add_incident, r);
    }
    if (rc == 0) {
        struct runs_ctx c = {r, F, T, T < now_ms ? T : now_ms, now_ms, 0};
        rc = store_report_runs(st, F, T, now_ms, add_run, &c);
        r->not_running = ms_to_sec(c.down_ms);
    }
    store_snapshot_end(st);
    return rc;
}
