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

static int add_failures(void *data, const char *service, int type, int64_t bucket, uint64_t n)
{
    struct report *r = data;
    r->totals.failures += n;
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
    store_snapshot_end(st);
    return rc;
}
