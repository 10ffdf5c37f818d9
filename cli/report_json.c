/* The JSON report: a stable, versioned schema (docs/report-json.md). */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "report_render.h"

#define REPORT_JSON_SCHEMA "pbxguard-report/1"

/* json_object_set_new() that tolerates a NULL value (allocation failure shows up at dump). */
static void jset(json_t *o, const char *key, json_t *v)
{
    if (v)
        json_object_set_new(o, key, v);
}

static json_t *jtime(int64_t t)
{
    char a[32];
    return json_string(report_utc_iso(t, a, sizeof(a)));
}

static json_t *jnum(uint64_t n)
{
    return json_integer((json_int_t)n);
}

/* escape: the names are attacker text (services); json_string() would also refuse invalid
 * UTF-8 and the key would silently go missing. */
static json_t *jcounts(const struct report_count *c, unsigned n, const char *key,
                       const char *count_key, bool escape)
{
    char buf[4 * REPORT_NAME_MAX];
    json_t *arr = json_array();
    for (unsigned i = 0; arr && i < n; i++) {
        json_t *o = json_object();
        if (!o)
            continue;
        jset(o, key, json_string(escape ? report_safe(c[i].name, buf, sizeof(buf)) : c[i].name));
        jset(o, count_key, jnum(c[i].n));
        json_array_append_new(arr, o);
    }
    return arr;
}

/* The daemon's starts, stops and deaths: one object each, the members its kind has. */
static json_t *jruns(const struct report *r)
{
    char buf[1024];
    json_t *arr = json_array();
    for (unsigned i = 0; arr && i < r->nruns; i++) {
        const struct report_run *e = &r->runs[i];
        json_t *o = json_object();
        if (!o)
            continue;
        jset(o, "event", json_string(report_run_name(e->kind)));
        jset(o, "time", jtime(e->time));
        jset(o, "pid", jnum(e->pid));
        if (e->kind == REPORT_RUN_START) {
            jset(o, "version", json_string(report_safe(e->version, buf, sizeof(buf))));
            jset(o, "config", json_string(report_safe(e->config, buf, sizeof(buf))));
            jset(o, "down_seconds", e->down >= 0 ? jnum((uint64_t)e->down) : json_null());
            jset(o, "after_unclean_stop", json_boolean(e->after_death));
        } else {
            if (e->kind == REPORT_RUN_STOP)
                jset(o, "reason", json_string(report_safe(e->reason, buf, sizeof(buf))));
            jset(o, "uptime_seconds", jnum((uint64_t)e->uptime));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

static json_t *report_json(const struct report *r)
{
    char buf[512];
    const struct report_totals *T = &r->totals;
    json_t *root = json_object();
    if (!root)
        return NULL;

    jset(root, "schema", json_string(REPORT_JSON_SCHEMA));
    jset(root, "host", json_string(report_safe(r->host, buf, sizeof(buf))));
    jset(root, "generated", r->generated ? jtime(r->generated) : json_null());
    json_t *period = json_object();
    if (period) {
        jset(period, "from", jtime(r->from));
        jset(period, "to", jtime(r->to));
        jset(period, "seconds", jnum((uint64_t)(r->to - r->from)));
        jset(root, "period", period);
    }

    json_t *tot = json_object();
    if (tot) {
        jset(tot, "failures", jnum(T->failures));
        jset(tot, "backfilled", jnum(T->backfilled));
        jset(tot, "sources", jnum(T->sources));
        jset(tot, "new_sources", jnum(T->new_sources));
        jset(tot, "bans", jnum(T->bans));
        jset(tot, "escalated", jnum(T->escalated));
        jset(tot, "permanent", jnum(T->permanent));
        jset(tot, "lifted", jnum(T->lifted));
        jset(tot, "expired", jnum(T->expired));
        jset(tot, "active", jnum(T->active));
        jset(tot, "not_running_seconds",
             r->runs_recorded ? jnum((uint64_t)r->not_running) : json_null());
        jset(root, "totals", tot);
    }
    jset(root, "ban_reasons", jcounts(r->ban_reasons, r->nban_reasons, "reason", "bans", false));
    jset(root, "by_service", jcounts(r->by_service, r->nby_service, "service", "failures", true));

    json_t *types = json_array();
    if (types) {
        int order[SEC_EVENT_TYPE_COUNT];
        unsigned nt = report_types_by_count(r, order);
        for (unsigned i = 0; i < nt; i++) {
            json_t *o = json_object();
            if (!o)
                continue;
            jset(o, "type", json_string(sec_event_type_name(order[i])));
            jset(o, "failures", jnum(r->by_type[order[i]]));
            json_array_append_new(types, o);
        }
        jset(root, "by_type", types);
    }

    json_t *top = json_array();
    for (unsigned i = 0; top && i < r->ntop; i++) {
        const struct report_source *s = &r->top[i];
        json_t *o = json_object(), *sv = json_array(), *ty = json_array();
        if (!o || !sv || !ty) {
            json_decref(o);
            json_decref(sv);
            json_decref(ty);
            continue;
        }
        jset(o, "source", json_string(s->key));
        jset(o, "attempts", jnum(s->attempts));
        for (unsigned k = 0; k < s->nservices; k++)
            json_array_append_new(sv, json_string(report_safe(s->services[k], buf, sizeof(buf))));
        jset(o, "services", sv);
        for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++)
            if (s->types & (1u << t))
                json_array_append_new(ty, json_string(sec_event_type_name(t)));
        jset(o, "types", ty);
        jset(o, "accounts", jnum(s->accounts));
        jset(o, "first_seen", jtime(s->first_seen));
        jset(o, "last_seen", jtime(s->last_seen));
        jset(o, "ban", json_string(report_ban_state_name(s->ban)));
        bool until = s->ban == REPORT_BAN_ACTIVE || s->ban == REPORT_BAN_ENDED;
        jset(o, "ban_until", until ? jtime(s->ban_until) : json_null());
        json_array_append_new(top, o);
    }
    jset(root, "top_sources", top);

    json_t *acc = json_array();
    for (unsigned i = 0; acc && i < r->naccounts; i++) {
        json_t *o = json_object();
        if (!o)
            continue;
        jset(o, "account", json_string(report_safe(r->accounts[i].name, buf, sizeof(buf))));
        jset(o, "attempts", jnum(r->accounts[i].attempts));
        jset(o, "sources", jnum(r->accounts[i].sources));
        json_array_append_new(acc, o);
    }
    jset(root, "top_accounts", acc);

    json_t *tl = json_object(), *bk = json_array();
    if (tl && bk) {
        jset(tl, "start", jtime(r->bucket_start));
        jset(tl, "bucket_seconds", jnum((uint64_t)r->bucket_s));
        for (unsigned i = 0; i < r->nbuckets; i++)
            json_array_append_new(bk, jnum(r->buckets[i]));
        jset(tl, "attempts", bk);
        jset(root, "timeline", tl);
    } else {
        json_decref(tl);
        json_decref(bk);
    }

    json_t *ns = json_array();
    for (unsigned i = 0; ns && i < r->nnew_sources; i++) {
        json_t *o = json_object();
        if (!o)
            continue;
        jset(o, "source", json_string(r->new_sources[i].key));
        jset(o, "first_seen", jtime(r->new_sources[i].first_seen));
        jset(o, "attempts", jnum(r->new_sources[i].attempts));
        json_array_append_new(ns, o);
    }
    jset(root, "new_sources", ns);

    if (r->incidents_recorded) {
        json_t *d = json_object();
        for (unsigned i = 0; d && i < r->nincidents; i++)
            jset(d, r->incidents[i].name, jnum(r->incidents[i].n));
        jset(root, "daemon", d);
    } else {
        jset(root, "daemon", json_null());
    }
    jset(root, "daemon_runs", r->runs_recorded ? jruns(r) : json_null());
    return root;
}

int report_render_json(const struct report *r, FILE *out)
{
    json_t *root = report_json(r);
    if (!root)
        return -ENOMEM;
    int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    json_decref(root);
    if (rc != 0)
        return -EIO;
    fputc('\n', out);
    return report_finish(out);
}
