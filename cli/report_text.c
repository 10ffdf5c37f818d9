/* The text report: 80 columns of plain ASCII, for mail. */
#include <string.h>

#include "report_render.h"

#define TEXT_WIDTH 80

/* Writes s, cut to width columns with "..." when longer. */
static void put_cut(FILE *out, const char *s, int width)
{
    int len = (int)strlen(s);
    if (len <= width)
        fprintf(out, "%-*s", width, s);
    else
        fprintf(out, "%.*s...", width - 3, s);
}

/* Writes text word-wrapped to TEXT_WIDTH after first (an indent, or a label), continuation
 * lines indented as far. */
static void put_wrapped(FILE *out, const char *first, const char *text)
{
    char indent[TEXT_WIDTH];
    size_t n = strlen(first) < sizeof(indent) - 1 ? strlen(first) : sizeof(indent) - 1;
    memset(indent, ' ', n);
    indent[n] = '\0';
    int room = TEXT_WIDTH - (int)n;
    const char *p = text;
    for (bool line1 = true; *p; line1 = false) {
        int len = (int)strlen(p);
        int cut = len;
        if (len > room) {
            cut = room;
            while (cut > 0 && p[cut] != ' ')
                cut--;
            if (cut == 0)
                cut = room; /* one word longer than the line: cut it hard */
        }
        fprintf(out, "%s%.*s\n", line1 ? first : indent, cut, p);
        p += cut;
        while (*p == ' ')
            p++;
    }
}

static void text_heading(FILE *out, const char *title)
{
    fprintf(out, "\n%s\n", title);
    for (size_t i = 0; title[i]; i++)
        fputc('-', out);
    fputc('\n', out);
}

static void text_row(FILE *out, const char *label, uint64_t n)
{
    fprintf(out, "  %-40s %12llu\n", label, (unsigned long long)n);
}

static void text_ban(const struct report_source *s, char *buf, size_t len)
{
    char t[32];
    switch (s->ban) {
    case REPORT_BAN_ACTIVE:
        snprintf(buf, len, "until %s", report_local_min(s->ban_until, t, sizeof(t)));
        break;
    case REPORT_BAN_PERMANENT:
        snprintf(buf, len, "permanent");
        break;
    case REPORT_BAN_ENDED:
        snprintf(buf, len, "ended %s", report_local_min(s->ban_until, t, sizeof(t)));
        break;
    default:
        snprintf(buf, len, "-");
    }
}

int report_render_text(const struct report *r, FILE *out)
{
    char a[32], b[32], tz[16], buf[512], buf2[512];
    const struct report_totals *T = &r->totals;

    fprintf(out, "pbxguard report%s%s\n", r->host[0] ? " for " : "", r->host);
    fprintf(out, "Period: %s to %s (%s)\n", report_local_min(r->from, a, sizeof(a)),
            report_local_min(r->to, b, sizeof(b)), report_tz_name(r->from, tz, sizeof(tz)));
    if (r->generated)
        fprintf(out, "Generated: %s\n", report_local_min(r->generated, a, sizeof(a)));

    text_heading(out, "Totals");
    text_row(out, "Failed attempts", T->failures);
    if (T->backfilled)
        text_row(out, "  of which from the security log", T->backfilled);
    text_row(out, "Distinct sources", T->sources);
    text_row(out, "Sources seen for the first time", T->new_sources);
    text_row(out, "Bans issued", T->bans);
    for (unsigned i = 0; i < r->nban_reasons; i++) {
        snprintf(buf, sizeof(buf), "  %s", r->ban_reasons[i].name);
        text_row(out, buf, r->ban_reasons[i].n);
    }
    text_row(out, "Escalated bans (repeat offences)", T->escalated);
    text_row(out, "Permanent bans", T->permanent);
    text_row(out, "Bans lifted by hand", T->lifted);
    text_row(out, "Bans expired", T->expired);
    text_row(out, "Bans active at the end of the period", T->active);
    if (T->failures == 0)
        fprintf(out, "\nNo failed attempts in this period.\n");

    if (T->failures) {
        text_heading(out, "Failures by service");
        for (unsigned i = 0; i < r->nby_service; i++)
            fprintf(out, "  %-32s %12llu %6.1f%%\n",
                    report_safe(r->by_service[i].name, buf, sizeof(buf)),
                    (unsigned long long)r->by_service[i].n,
                    100.0 * (double)r->by_service[i].n / (double)T->failures);

        int order[SEC_EVENT_TYPE_COUNT];
        unsigned nt = report_types_by_count(r, order);
        text_heading(out, "Failures by event type");
        for (unsigned i = 0; i < nt; i++)
            fprintf(out, "  %-32s %12llu %6.1f%%\n", sec_event_type_name(order[i]),
                    (unsigned long long)r->by_type[order[i]],
                    100.0 * (double)r->by_type[order[i]] / (double)T->failures);
    }

    if (r->ntop) {
        snprintf(buf, sizeof(buf), "Top %u sources", r->ntop);
        text_heading(out, buf);
        fprintf(out, "  %3s %-37s %10s  %s\n", "#", "Source", "Attempts", "Ban");
        for (unsigned i = 0; i < r->ntop; i++) {
            const struct report_source *s = &r->top[i];
            text_ban(s, buf, sizeof(buf));
            if (strlen(s->key) > 37)
                fprintf(out, "  %3u %s\n  %3s %-37s %10llu  %s\n", i + 1, s->key, "", "",
                        (unsigned long long)s->attempts, buf);
            else
                fprintf(out, "  %3u %-37s %10llu  %s\n", i + 1, s->key,
                        (unsigned long long)s->attempts, buf);
            fprintf(out, "      seen %s to %s, %llu account%s\n",
                    report_local_min(s->first_seen, a, sizeof(a)),
                    report_local_min(s->last_seen, b, sizeof(b)), (unsigned long long)s->accounts,
                    s->accounts == 1 ? "" : "s");
            char sv[128], ty[400];
            snprintf(buf2, sizeof(buf2), "%s: %s",
                     report_join_services(s, ", ", true, sv, sizeof(sv)),
                     report_join_types(s, ", ", ty, sizeof(ty)));
            put_wrapped(out, "      ", buf2);
        }
    }

    if (r->naccounts) {
        text_heading(out, "Most tried accounts");
        fprintf(out, "  %-48s %10s %10s\n", "Account", "Attempts", "Sources");
        for (unsigned i = 0; i < r->naccounts; i++) {
            fputs("  ", out);
            put_cut(out, report_safe(r->accounts[i].name, buf, sizeof(buf)), 48);
            fprintf(out, " %10llu %10llu\n", (unsigned long long)r->accounts[i].attempts,
                    (unsigned long long)r->accounts[i].sources);
        }
    }

    if (T->failures) {
        uint64_t max = 0;
        for (unsigned i = 0; i < r->nbuckets; i++)
            if (r->buckets[i] > max)
                max = r->buckets[i];
        text_heading(out, r->bucket_s == 3600    ? "Attempts per hour"
                          : r->bucket_s == 86400 ? "Attempts per day"
                                                 : "Attempts per week");
        for (unsigned i = 0; i < r->nbuckets; i++) {
            uint64_t v = r->buckets[i];
            int bar = max ? (int)((v * 48 + max - 1) / max) : 0;
            fprintf(out, "  %-16s %10llu%s", report_bucket_label(r, i, a, sizeof(a)),
                    (unsigned long long)v, bar ? "  " : "");
            for (int k = 0; k < bar; k++)
                fputc('#', out);
            fputc('\n', out);
        }
    }

    if (T->new_sources) {
        snprintf(buf, sizeof(buf), "Sources seen for the first time (%llu)",
                 (unsigned long long)T->new_sources);
        text_heading(out, buf);
        for (unsigned i = 0; i < r->nnew_sources; i++) {
            const struct report_new_source *s = &r->new_sources[i];
            fprintf(out, "  %-39s first %s %10llu\n", s->key,
                    report_local_min(s->first_seen, a, sizeof(a)), (unsigned long long)s->attempts);
        }
        if (r->nnew_sources < T->new_sources)
            fprintf(out, "  ... and %llu more\n",
                    (unsigned long long)(T->new_sources - r->nnew_sources));
    }

    text_heading(out, "Daemon");
    if (r->runs_recorded) {
        char d[32], what[1400];
        fprintf(out, "  %-40s %12s\n", "Not running in this period",
                report_duration(r->not_running, d, sizeof(d)));
        for (unsigned i = 0; i < r->nruns; i++) {
            char when[32];
            /* To the second, to match the journal's lines about it. */
            snprintf(when, sizeof(when), "  %s  ",
                     report_fmt_time(r->runs[i].time, "%Y-%m-%d %H:%M:%S", a, sizeof(a)));
            put_wrapped(out, when, report_run_text(&r->runs[i], true, what, sizeof(what)));
        }
        if (r->nincidents)
            fputc('\n', out);
    }
    if (!r->incidents_recorded)
        fprintf(out, "  (not recorded in this database)\n");
    else if (!r->nincidents)
        fprintf(out, "  No incidents.\n");
    for (unsigned i = 0; i < r->nincidents; i++)
        text_row(out, report_incident_label(r->incidents[i].name), r->incidents[i].n);
    return report_finish(out);
}
