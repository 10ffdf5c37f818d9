/* The CSV report: every table after a "# name" line, or one table alone as a plain CSV file
 * (RFC 4180, CRLF line ends; docs/report-json.md names the columns). */
#include <errno.h>
#include <string.h>

#include "report_render.h"

/* One cell, quoted when needed. A cell starting with = + - @ gets a leading ' so a spreadsheet
 * never runs attacker-chosen text as a formula. */
static void csv_cell(FILE *out, const char *s, bool last)
{
    bool formula = strchr("=+-@", s[0]) && s[0];
    bool quote =
        formula || strpbrk(s, ",\"\r\n") || s[0] == ' ' || (s[0] && s[strlen(s) - 1] == ' ');
    if (quote)
        fputc('"', out);
    if (formula)
        fputc('\'', out);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            fputc('"', out);
        fputc(*p, out);
    }
    if (quote)
        fputc('"', out);
    fputs(last ? "\r\n" : ",", out);
}

static void csv_num(FILE *out, uint64_t n, bool last)
{
    fprintf(out, "%llu%s", (unsigned long long)n, last ? "\r\n" : ",");
}

static void csv_header(FILE *out, const char *cols)
{
    fprintf(out, "%s\r\n", cols);
}

static void csv_period(const struct report *r, FILE *out)
{
    char a[32], buf[512];
    csv_header(out, "from,to,generated,host");
    csv_cell(out, report_utc_iso(r->from, a, sizeof(a)), false);
    csv_cell(out, report_utc_iso(r->to, a, sizeof(a)), false);
    csv_cell(out, r->generated ? report_utc_iso(r->generated, a, sizeof(a)) : "", false);
    csv_cell(out, report_safe(r->host, buf, sizeof(buf)), true);
}

static void csv_totals(const struct report *r, FILE *out)
{
    const struct report_totals *T = &r->totals;
    static const char *const names[] = {"failures", "backfilled", "sources",   "new_sources",
                                        "bans",     "escalated",  "permanent", "lifted",
                                        "expired",  "active"};
    uint64_t v[] = {T->failures,  T->backfilled, T->sources, T->new_sources, T->bans,
                    T->escalated, T->permanent,  T->lifted,  T->expired,     T->active};
    csv_header(out, "metric,value");
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        csv_cell(out, names[i], false);
        csv_num(out, v[i], true);
    }
    csv_cell(out, "not_running_seconds", false);
    if (r->runs_recorded)
        csv_num(out, (uint64_t)r->not_running, true);
    else
        csv_cell(out, "", true); /* unknown: no run recorded up to the period's end */
}

static void csv_ban_reasons(const struct report *r, FILE *out)
{
    csv_header(out, "reason,bans");
    for (unsigned i = 0; i < r->nban_reasons; i++) {
        csv_cell(out, r->ban_reasons[i].name, false);
        csv_num(out, r->ban_reasons[i].n, true);
    }
}

static void csv_by_service(const struct report *r, FILE *out)
{
    char buf[512];
    csv_header(out, "service,failures");
    for (unsigned i = 0; i < r->nby_service; i++) {
        csv_cell(out, report_safe(r->by_service[i].name, buf, sizeof(buf)), false);
        csv_num(out, r->by_service[i].n, true);
    }
}

static void csv_by_type(const struct report *r, FILE *out)
{
    int order[SEC_EVENT_TYPE_COUNT];
    unsigned nt = report_types_by_count(r, order);
    csv_header(out, "type,failures");
    for (unsigned i = 0; i < nt; i++) {
        csv_cell(out, sec_event_type_name(order[i]), false);
        csv_num(out, r->by_type[order[i]], true);
    }
}

static void csv_top_sources(const struct report *r, FILE *out)
{
    char a[32], buf[512];
    csv_header(out, "rank,source,attempts,services,types,accounts,first_seen,last_seen,ban,"
                    "ban_until");
    for (unsigned i = 0; i < r->ntop; i++) {
        const struct report_source *s = &r->top[i];
        csv_num(out, i + 1, false);
        csv_cell(out, s->key, false);
        csv_num(out, s->attempts, false);
        csv_cell(out, report_join_services(s, ";", true, buf, sizeof(buf)), false);
        csv_cell(out, report_join_types(s, ";", buf, sizeof(buf)), false);
        csv_num(out, s->accounts, false);
        csv_cell(out, report_utc_iso(s->first_seen, a, sizeof(a)), false);
        csv_cell(out, report_utc_iso(s->last_seen, a, sizeof(a)), false);
        csv_cell(out, report_ban_state_name(s->ban), false);
        bool until = s->ban == REPORT_BAN_ACTIVE || s->ban == REPORT_BAN_ENDED;
        csv_cell(out, until ? report_utc_iso(s->ban_until, a, sizeof(a)) : "", true);
    }
}

static void csv_top_accounts(const struct report *r, FILE *out)
{
    char buf[512];
    csv_header(out, "rank,account,attempts,sources");
    for (unsigned i = 0; i < r->naccounts; i++) {
        csv_num(out, i + 1, false);
        csv_cell(out, report_safe(r->accounts[i].name, buf, sizeof(buf)), false);
        csv_num(out, r->accounts[i].attempts, false);
        csv_num(out, r->accounts[i].sources, true);
    }
}

static void csv_timeline(const struct report *r, FILE *out)
{
    char a[32];
    csv_header(out, "start,seconds,attempts");
    for (unsigned i = 0; i < r->nbuckets; i++) {
        csv_cell(out, report_utc_iso(r->bucket_start + (int64_t)i * r->bucket_s, a, sizeof(a)),
                 false);
        csv_num(out, (uint64_t)r->bucket_s, false);
        csv_num(out, r->buckets[i], true);
    }
}

static void csv_new_sources(const struct report *r, FILE *out)
{
    char a[32];
    csv_header(out, "source,first_seen,attempts");
    for (unsigned i = 0; i < r->nnew_sources; i++) {
        csv_cell(out, r->new_sources[i].key, false);
        csv_cell(out, report_utc_iso(r->new_sources[i].first_seen, a, sizeof(a)), false);
        csv_num(out, r->new_sources[i].attempts, true);
    }
}

static void csv_daemon(const struct report *r, FILE *out)
{
    csv_header(out, "incident,count");
    for (unsigned i = 0; i < r->nincidents; i++) {
        csv_cell(out, r->incidents[i].name, false);
        csv_num(out, r->incidents[i].n, true);
    }
}

static void csv_daemon_runs(const struct report *r, FILE *out)
{
    char a[32], buf[1024];
    csv_header(out, "time,event,pid,version,config,reason,uptime_seconds,down_seconds,"
                    "after_unclean_stop");
    for (unsigned i = 0; i < r->nruns; i++) {
        const struct report_run *e = &r->runs[i];
        bool start = e->kind == REPORT_RUN_START;
        csv_cell(out, report_utc_iso(e->time, a, sizeof(a)), false);
        csv_cell(out, report_run_name(e->kind), false);
        csv_num(out, e->pid, false);
        csv_cell(out, start ? report_safe(e->version, buf, sizeof(buf)) : "", false);
        csv_cell(out, start ? report_safe(e->config, buf, sizeof(buf)) : "", false);
        csv_cell(out, e->kind == REPORT_RUN_STOP ? report_safe(e->reason, buf, sizeof(buf)) : "",
                 false);
        if (start)
            csv_cell(out, "", false);
        else
            csv_num(out, (uint64_t)e->uptime, false);
        if (start && e->down >= 0)
            csv_num(out, (uint64_t)e->down, false);
        else
            csv_cell(out, "", false);
        csv_cell(out, start ? (e->after_death ? "yes" : "no") : "", true);
    }
}

/* The tables, in the order the whole file holds them: one line each. */
static const struct csv_table {
    const char *name;
    void (*write)(const struct report *r, FILE *out);
} tables[] = {
    {"period", csv_period},
    {"totals", csv_totals},
    {"ban_reasons", csv_ban_reasons},
    {"by_service", csv_by_service},
    {"by_type", csv_by_type},
    {"top_sources", csv_top_sources},
    {"top_accounts", csv_top_accounts},
    {"timeline", csv_timeline},
    {"new_sources", csv_new_sources},
    {"daemon", csv_daemon},
    {"daemon_runs", csv_daemon_runs},
};

#define NTABLES (sizeof(tables) / sizeof(tables[0]))

static const struct csv_table *find_table(const char *name)
{
    for (size_t i = 0; i < NTABLES; i++)
        if (strcmp(tables[i].name, name) == 0)
            return &tables[i];
    return NULL;
}

bool report_csv_has_table(const char *name)
{
    return find_table(name) != NULL;
}

int report_render_csv(const struct report *r, const char *table, FILE *out)
{
    if (table) {
        const struct csv_table *t = find_table(table);
        if (!t)
            return -ENOENT;
        t->write(r, out);
        return report_finish(out);
    }
    for (size_t i = 0; i < NTABLES; i++) {
        fprintf(out, "%s# %s\r\n", i ? "\r\n" : "", tables[i].name);
        tables[i].write(r, out);
    }
    return report_finish(out);
}
