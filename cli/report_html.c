/* The HTML report: one self-contained file, inline CSS and inline SVG charts, no JavaScript,
 * nothing fetched from the network. */
#include <string.h>

#include "report_render.h"

/* Text into HTML: the log_escape()d form, then entities for the markup characters. */
static void h(FILE *out, const char *s)
{
    char buf[2048];
    for (const char *p = report_safe(s, buf, sizeof(buf)); *p; p++) {
        switch (*p) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(*p, out);
        }
    }
}

static const char html_css[] =
    "body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1d2430;"
    "background:#f6f7f9;margin:0;padding:24px}\n"
    "main{max-width:980px;margin:0 auto}\n"
    "h1{font-size:22px;margin:0 0 4px}\n"
    "h2{font-size:16px;margin:0 0 10px;color:#2c3e50}\n"
    "p.period{color:#5b6573;margin:0 0 18px}\n"
    "section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:14px 16px;"
    "margin:0 0 16px}\n"
    "table{border-collapse:collapse;width:100%;font-size:13px}\n"
    "th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef1}\n"
    "th{color:#5b6573;font-weight:600}\n"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    "td.mono{font-family:ui-monospace,Menlo,Consolas,monospace}\n"
    ".t{white-space:nowrap}\n"
    ".tiles{display:flex;flex-wrap:wrap;gap:10px}\n"
    ".tile{flex:1 1 150px;border:1px solid #eceef1;border-radius:6px;padding:8px 10px}\n"
    ".tile b{display:block;font-size:22px}\n"
    ".tile span{color:#5b6573;font-size:12px}\n"
    ".ban-active,.ban-permanent{color:#b3261e;font-weight:600}\n"
    "tr.run-unclean_stop td,tr.run-not_running td{color:#b3261e;font-weight:600}\n"
    "svg{display:block;max-width:100%;height:auto}\n"
    "svg text{font-size:11px;fill:#5b6573}\n"
    "svg rect.bar{fill:#3b6fb6}\n"
    "svg rect.bar.svc{fill:#c2703d}\n"
    "svg rect.bar.src{fill:#b3261e}\n"
    "svg line{stroke:#c9ced6;stroke-width:1}\n"
    "p.none{color:#5b6573;font-style:italic;margin:0}\n";

/* A local time that wraps between date and time, never inside either. */
static void html_time(FILE *out, int64_t t)
{
    char d[16], hm[16];
    fprintf(out, "<span class=\"t\">%s</span> <span class=\"t\">%s</span>",
            report_fmt_time(t, "%Y-%m-%d", d, sizeof(d)),
            report_fmt_time(t, "%H:%M", hm, sizeof(hm)));
}

static void html_tile(FILE *out, const char *label, uint64_t n)
{
    fprintf(out, "<div class=\"tile\"><b>%llu</b><span>%s</span></div>\n", (unsigned long long)n,
            label);
}

/* A bar's rect carries its label and value as data attributes and a tooltip title, so the
 * chart can be checked (and read) without measuring pixels. */
static void svg_bar(FILE *out, const char *cls, double x, double y, double w, double hgt,
                    const char *label, uint64_t v)
{
    fprintf(out,
            "<rect class=\"bar%s%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
            "data-label=\"",
            cls[0] ? " " : "", cls, x, y, w, hgt);
    h(out, label);
    fprintf(out, "\" data-value=\"%llu\"><title>", (unsigned long long)v);
    h(out, label);
    fprintf(out, ": %llu</title></rect>\n", (unsigned long long)v);
}

/* SVG text is 11 px (html_css): 7 px is a generous average advance per character, digits and
 * lower case included, so a label whose estimated extent fits the chart is never cut. */
#define CHAR_PX 7.0

static double text_px(const char *s)
{
    return CHAR_PX * (double)strlen(s);
}

/* x for a label of width w centred on want, moved in to lie within [0, W]. */
static double clamp_center(double want, double w, double W)
{
    if (want - w / 2 < 0)
        return w / 2;
    if (want + w / 2 > W)
        return W - w / 2;
    return want;
}

/* Writes attacker text s (escaped as the log shows it), cut with "..." to at most max
 * characters, as HTML. */
static void h_cut(FILE *out, const char *s, size_t max)
{
    char buf[2048];
    report_safe(s, buf, sizeof(buf));
    if (strlen(buf) > max && max > 3)
        snprintf(buf + max - 3, 4, "...");
    h(out, buf);
}

static void html_timeline_chart(const struct report *r, FILE *out)
{
    const double W = 940, H = 200, top = 10, bottom = 30;
    char a[32];
    uint64_t max = 0;
    for (unsigned i = 0; i < r->nbuckets; i++)
        if (r->buckets[i] > max)
            max = r->buckets[i];
    char maxtext[24];
    snprintf(maxtext, sizeof(maxtext), "%llu", (unsigned long long)max);
    /* Room for the y axis' largest label, right-aligned 6 px left of the axis. */
    const double left = 50 > text_px(maxtext) + 10 ? 50 : text_px(maxtext) + 10;
    const double pw = W - left - 10, ph = H - top - bottom;

    fprintf(out,
            "<svg id=\"chart-timeline\" xmlns=\"http://www.w3.org/2000/svg\" "
            "viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">\n",
            W, H, W, H);
    fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", left, top + ph,
            left + pw, top + ph);
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", left - 6, top + 10,
            maxtext);
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">0</text>\n", left - 6, top + ph);
    double bw = pw / r->nbuckets;
    unsigned step = (r->nbuckets + 7) / 8;
    for (unsigned i = 0; i < r->nbuckets; i++) {
        uint64_t v = r->buckets[i];
        double bh = max ? ph * (double)v / (double)max : 0;
        report_bucket_label(r, i, a, sizeof(a));
        svg_bar(out, "", left + i * bw + bw * 0.1, top + ph - bh, bw * 0.8, bh, a, v);
        if (i % step == 0) {
            /* Centred under its bar, and moved in at the edges: the last one would be cut. */
            int64_t t = r->bucket_start + (int64_t)i * r->bucket_s;
            report_fmt_time(t, r->bucket_s < 86400 ? "%m-%d %H:%M" : "%Y-%m-%d", a, sizeof(a));
            fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                    clamp_center(left + (i + 0.5) * bw, text_px(a), W), H - 10, a);
        }
    }
    fputs("</svg>\n", out);
}

/* Horizontal bars, one row per item: the label right-aligned left of the bar (cut to fit),
 * the value after the bar's end (moved in if the chart ends first). */
static void html_hbar_chart(FILE *out, const char *id, const char *cls, unsigned n,
                            const char *(*label)(const void *, unsigned),
                            uint64_t (*value)(const void *, unsigned), const void *data)
{
    const double W = 940, row = 22, left = 290, right = 70;
    const double pw = W - left - right, H = row * n + 8;
    uint64_t max = 0;
    for (unsigned i = 0; i < n; i++)
        if (value(data, i) > max)
            max = value(data, i);

    fprintf(out,
            "<svg id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" "
            "width=\"%.0f\" height=\"%.0f\" role=\"img\">\n",
            id, W, H, W, H);
    for (unsigned i = 0; i < n; i++) {
        uint64_t v = value(data, i);
        double y = 4 + i * row, bw = max ? pw * (double)v / (double)max : 0;
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", left - 8, y + 15);
        h_cut(out, label(data, i), (size_t)((left - 8) / CHAR_PX));
        fputs("</text>\n", out);
        svg_bar(out, cls, left, y + 3, bw, row - 6, label(data, i), v);
        char num[24];
        snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
        double x = left + bw + 6;
        if (x + text_px(num) > W)
            x = W - text_px(num);
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x, y + 15, num);
    }
    fputs("</svg>\n", out);
}

static const char *svc_label(const void *d, unsigned i)
{
    return ((const struct report *)d)->by_service[i].name;
}

static uint64_t svc_value(const void *d, unsigned i)
{
    return ((const struct report *)d)->by_service[i].n;
}

static const char *src_label(const void *d, unsigned i)
{
    return ((const struct report *)d)->top[i].key;
}

static uint64_t src_value(const void *d, unsigned i)
{
    return ((const struct report *)d)->top[i].attempts;
}

static void html_section(FILE *out, const char *id, const char *title)
{
    fprintf(out, "<section id=\"%s\">\n<h2>%s</h2>\n", id, title);
}

static void html_none(FILE *out, const char *what)
{
    fprintf(out, "<p class=\"none\">%s</p>\n", what);
}

int report_render_html(const struct report *r, FILE *out)
{
    char a[32], b[32], tz[16], buf[512];
    const struct report_totals *T = &r->totals;

    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>",
          out);
    fputs("pbxguard report", out);
    if (r->host[0]) {
        fputs(" for ", out);
        h(out, r->host);
    }
    fprintf(out, ", %s to %s</title>\n<style>\n%s</style>\n</head>\n<body>\n<main>\n",
            report_local_min(r->from, a, sizeof(a)), report_local_min(r->to, b, sizeof(b)),
            html_css);
    fputs("<h1>pbxguard report", out);
    if (r->host[0]) {
        fputs(" for ", out);
        h(out, r->host);
    }
    fprintf(out, "</h1>\n<p class=\"period\">%s to %s (%s)",
            report_local_min(r->from, a, sizeof(a)), report_local_min(r->to, b, sizeof(b)),
            report_tz_name(r->from, tz, sizeof(tz)));
    if (r->generated)
        fprintf(out, ", generated %s", report_local_min(r->generated, a, sizeof(a)));
    fputs("</p>\n", out);

    html_section(out, "totals", "Totals");
    fputs("<div class=\"tiles\">\n", out);
    html_tile(out, "failed attempts", T->failures);
    html_tile(out, "distinct sources", T->sources);
    html_tile(out, "new sources", T->new_sources);
    html_tile(out, "bans issued", T->bans);
    html_tile(out, "escalated bans", T->escalated);
    html_tile(out, "permanent bans", T->permanent);
    html_tile(out, "bans lifted by hand", T->lifted);
    html_tile(out, "bans expired", T->expired);
    html_tile(out, "active bans at the end", T->active);
    fputs("</div>\n", out);
    if (r->nban_reasons) {
        fputs("<table id=\"ban-reasons\">\n<tr><th>Ban reason</th><th class=\"n\">Bans</th></tr>\n",
              out);
        for (unsigned i = 0; i < r->nban_reasons; i++) {
            fputs("<tr><td>", out);
            h(out, r->ban_reasons[i].name);
            fprintf(out, "</td><td class=\"n\">%llu</td></tr>\n",
                    (unsigned long long)r->ban_reasons[i].n);
        }
        fputs("</table>\n", out);
    }
    fputs("</section>\n", out);

    html_section(out, "timeline",
                 r->bucket_s == 3600    ? "Attempts per hour"
                 : r->bucket_s == 86400 ? "Attempts per day"
                                        : "Attempts per week");
    if (T->failures)
        html_timeline_chart(r, out);
    else
        html_none(out, "No failed attempts in this period.");
    fputs("</section>\n", out);

    html_section(out, "services", "Failures by service");
    if (r->nby_service)
        html_hbar_chart(out, "chart-services", "svc", r->nby_service, svc_label, svc_value, r);
    else
        html_none(out, "None.");
    int order[SEC_EVENT_TYPE_COUNT];
    unsigned nt = report_types_by_count(r, order);
    if (nt) {
        fputs("<table id=\"types\">\n<tr><th>Event type</th><th class=\"n\">Failures</th></tr>\n",
              out);
        for (unsigned i = 0; i < nt; i++)
            fprintf(out, "<tr><td>%s</td><td class=\"n\">%llu</td></tr>\n",
                    sec_event_type_name(order[i]), (unsigned long long)r->by_type[order[i]]);
        fputs("</table>\n", out);
    }
    fputs("</section>\n", out);

    snprintf(buf, sizeof(buf), "Top %u sources", r->ntop);
    html_section(out, "sources", buf);
    if (r->ntop) {
        html_hbar_chart(out, "chart-sources", "src", r->ntop, src_label, src_value, r);
        fputs("<table id=\"top-sources\">\n<tr><th>#</th><th>Source</th><th class=\"n\">Attempts"
              "</th><th>Services</th><th>Event types</th><th class=\"n\">Accounts</th>"
              "<th>First seen</th><th>Last seen</th><th>Ban</th></tr>\n",
              out);
        for (unsigned i = 0; i < r->ntop; i++) {
            const struct report_source *s = &r->top[i];
            fprintf(out, "<tr><td>%u</td><td class=\"mono\">", i + 1);
            h(out, s->key);
            fprintf(out, "</td><td class=\"n\">%llu</td><td>", (unsigned long long)s->attempts);
            h(out, report_join_services(s, ", ", false, buf, sizeof(buf)));
            fputs("</td><td>", out);
            h(out, report_join_types(s, ", ", buf, sizeof(buf)));
            fprintf(out, "</td><td class=\"n\">%llu</td><td>", (unsigned long long)s->accounts);
            html_time(out, s->first_seen);
            fputs("</td><td>", out);
            html_time(out, s->last_seen);
            fputs("</td>", out);
            fprintf(out, "<td class=\"ban-%s\">", report_ban_state_name(s->ban));
            if (s->ban == REPORT_BAN_ACTIVE || s->ban == REPORT_BAN_ENDED) {
                fprintf(out, "%s ", s->ban == REPORT_BAN_ACTIVE ? "until" : "ended");
                html_time(out, s->ban_until);
            } else
                fputs(s->ban == REPORT_BAN_PERMANENT ? "permanent" : "-", out);
            fputs("</td></tr>\n", out);
        }
        fputs("</table>\n", out);
    } else {
        html_none(out, "None.");
    }
    fputs("</section>\n", out);

    html_section(out, "accounts", "Most tried accounts");
    if (r->naccounts) {
        fputs("<table id=\"top-accounts\">\n<tr><th>#</th><th>Account</th><th class=\"n\">Attempts"
              "</th><th class=\"n\">Sources</th></tr>\n",
              out);
        for (unsigned i = 0; i < r->naccounts; i++) {
            fprintf(out, "<tr><td>%u</td><td class=\"mono\">", i + 1);
            h(out, r->accounts[i].name);
            fprintf(out, "</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td></tr>\n",
                    (unsigned long long)r->accounts[i].attempts,
                    (unsigned long long)r->accounts[i].sources);
        }
        fputs("</table>\n", out);
    } else {
        html_none(out, "None.");
    }
    fputs("</section>\n", out);

    snprintf(buf, sizeof(buf), "Sources seen for the first time (%llu)",
             (unsigned long long)T->new_sources);
    html_section(out, "new-sources", buf);
    if (r->nnew_sources) {
        fputs("<table id=\"new-sources-table\">\n<tr><th>Source</th><th>First seen</th>"
              "<th class=\"n\">Attempts</th></tr>\n",
              out);
        for (unsigned i = 0; i < r->nnew_sources; i++) {
            fputs("<tr><td class=\"mono\">", out);
            h(out, r->new_sources[i].key);
            fprintf(out, "</td><td class=\"t\">%s</td><td class=\"n\">%llu</td></tr>\n",
                    report_local_min(r->new_sources[i].first_seen, a, sizeof(a)),
                    (unsigned long long)r->new_sources[i].attempts);
        }
        fputs("</table>\n", out);
    } else {
        html_none(out, "None.");
    }
    fputs("</section>\n", out);

    html_section(out, "daemon", "Daemon");
    if (r->runs_recorded) {
        char d[32], what[1400];
        fprintf(out,
                "<div class=\"tiles\">\n<div class=\"tile\"><b>%s</b><span>not running in "
                "this period</span></div>\n</div>\n",
                report_duration(r->not_running, d, sizeof(d)));
        if (r->nruns)
            fputs("<table id=\"runs\">\n<tr><th>Time</th><th>Event</th></tr>\n", out);
        for (unsigned i = 0; i < r->nruns; i++) {
            const struct report_run *e = &r->runs[i];
            char t[32];
            fprintf(out, "<tr class=\"run-%s\"><td class=\"t\">%s</td><td>",
                    report_run_name(e->kind),
                    report_fmt_time(e->time, "%Y-%m-%d %H:%M:%S", t, sizeof(t)));
            h(out, report_run_text(e, false, what, sizeof(what)));
            fputs("</td></tr>\n", out);
        }
        if (r->nruns)
            fputs("</table>\n", out);
    }
    if (!r->incidents_recorded) {
        html_none(out, "Not recorded in this database.");
    } else if (!r->nincidents) {
        html_none(out, "No incidents.");
    } else {
        fputs("<table id=\"incidents\">\n<tr><th>Incident</th><th class=\"n\">Count</th></tr>\n",
              out);
        for (unsigned i = 0; i < r->nincidents; i++) {
            fputs("<tr><td>", out);
            h(out, report_incident_label(r->incidents[i].name));
            fprintf(out, "</td><td class=\"n\">%llu</td></tr>\n",
                    (unsigned long long)r->incidents[i].n);
        }
        fputs("</table>\n", out);
    }
    fputs("</section>\n</main>\n</body>\n</html>\n", out);
    return report_finish(out);
}
