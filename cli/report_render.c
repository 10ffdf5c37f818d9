/* The four report renderers. They read the model and write to a FILE; nothing else.
 *
 * Attacker-controlled text (account names, and services: the Service header is whatever the AMI
 * peer sent) goes through log_escape() first in every format, so a report shows it exactly as
 * the log does, as printable ASCII; each format then adds its own quoting (CSV quotes, JSON
 * strings, HTML entities). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "log.h"
#include "report.h"

#define TEXT_WIDTH 80

/* ---- shared helpers ------------------------------------------------------------------- */

/* The format is always one of this file's literals. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static const char *fmt_time(int64_t t, const char *fmt, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm) || strftime(buf, len, fmt, &tm) == 0)
        snprintf(buf, len, "?");
    return buf;
}
#pragma GCC diagnostic pop

/* "2026-11-25 01:02", local time: what an admin reads. */
static const char *local_min(int64_t t, char *buf, size_t len)
{
    return fmt_time(t, "%Y-%m-%d %H:%M", buf, len);
}

/* "2026-11-25T01:02:03Z": what tools read. */
static const char *utc_iso(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "?");
    return buf;
}

/* The bucket's label, as precise as the bucket. */
static const char *bucket_label(const struct report *r, unsigned i, char *buf, size_t len)
{
    int64_t t = r->bucket_start + (int64_t)i * r->bucket_s;
    return fmt_time(t, r->bucket_s < 86400 ? "%Y-%m-%d %H:%M" : "%Y-%m-%d", buf, len);
}

static const char *tz_name(int64_t t, char *buf, size_t len)
{
    return fmt_time(t, "%Z", buf, len);
}

static const char *safe(const char *s, char *buf, size_t len)
{
    return log_escape(s, strlen(s), buf, len);
}

static const char *ban_state_name(enum report_ban_state b)
{
    switch (b) {
    case REPORT_BAN_ACTIVE:
        return "active";
    case REPORT_BAN_PERMANENT:
        return "permanent";
    case REPORT_BAN_ENDED:
        return "ended";
    default:
        return "none";
    }
}

/* Event types with failures, most failures first (ties in Asterisk's order). */
static unsigned types_by_count(const struct report *r, int order[SEC_EVENT_TYPE_COUNT])
{
    unsigned n = 0;
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++) {
        if (!r->by_type[t])
            continue;
        unsigned j = n++;
        while (j > 0 && r->by_type[order[j - 1]] < r->by_type[t]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = t;
    }
    return n;
}

/* "a, b, c" into buf from the source's services or types. Services are escaped unless the
 * caller escapes the whole (HTML's h() does, and must not escape twice). */
static const char *join_services(const struct report_source *s, const char *sep, bool escape,
                                 char *buf, size_t len)
{
    char esc[4 * SEC_SERVICE_MAX];
    size_t at = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < s->nservices && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? sep : "",
                               escape ? safe(s->services[i], esc, sizeof(esc)) : s->services[i]);
    return buf;
}

static const char *join_types(const struct report_source *s, const char *sep, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT && at < len; t++)
        if (s->types & (1u << t))
            at +=
                (size_t)snprintf(buf + at, len - at, "%s%s", at ? sep : "", sec_event_type_name(t));
    return buf;
}

static const char *incident_label(const char *kind)
{
    static const struct {
        const char *kind, *label;
    } labels[] = {
        {"ami-disconnect", "AMI disconnects"},
        {"ami-connect", "AMI connects"},
        {"nft-repair", "nftables repairs"},
        {"db-error", "database errors"},
        {"start", "daemon starts"},
        {"stop", "daemon stops"},
    };
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (strcmp(kind, labels[i].kind) == 0)
            return labels[i].label;
    return kind;
}

static int finish(FILE *out)
{
    if (fflush(out) != 0 || ferror(out))
        return -EIO;
    return 0;
}

/* ---- text ------------------------------------------------------------------------------ */

/* Writes s, cut to width columns with "..." when longer. */
static void put_cut(FILE *out, const char *s, int width)
{
    int len = (int)strlen(s);
    if (len <= width)
        fprintf(out, "%-*s", width, s);
    else
        fprintf(out, "%.*s...", width - 3, s);
}

/* Writes text word-wrapped to TEXT_WIDTH, every line starting with indent. */
static void put_wrapped(FILE *out, const char *indent, const char *text)
{
    int ind = (int)strlen(indent);
    int room = TEXT_WIDTH - ind;
    const char *p = text;
    while (*p) {
        int len = (int)strlen(p);
        int cut = len;
        if (len > room) {
            cut = room;
            while (cut > 0 && p[cut] != ' ')
                cut--;
            if (cut == 0)
                cut = room; /* one word longer than the line: cut it hard */
        }
        fprintf(out, "%s%.*s\n", indent, cut, p);
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
        snprintf(buf, len, "until %s", local_min(s->ban_until, t, sizeof(t)));
        break;
    case REPORT_BAN_PERMANENT:
        snprintf(buf, len, "permanent");
        break;
    case REPORT_BAN_ENDED:
        snprintf(buf, len, "ended %s", local_min(s->ban_until, t, sizeof(t)));
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
    fprintf(out, "Period: %s to %s (%s)\n", local_min(r->from, a, sizeof(a)),
            local_min(r->to, b, sizeof(b)), tz_name(r->from, tz, sizeof(tz)));
    if (r->generated)
        fprintf(out, "Generated: %s\n", local_min(r->generated, a, sizeof(a)));

    text_heading(out, "Totals");
    text_row(out, "Failed attempts", T->failures);
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
            fprintf(out, "  %-32s %12llu %6.1f%%\n", safe(r->by_service[i].name, buf, sizeof(buf)),
                    (unsigned long long)r->by_service[i].n,
                    100.0 * (double)r->by_service[i].n / (double)T->failures);

        int order[SEC_EVENT_TYPE_COUNT];
        unsigned nt = types_by_count(r, order);
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
                    local_min(s->first_seen, a, sizeof(a)), local_min(s->last_seen, b, sizeof(b)),
                    (unsigned long long)s->accounts, s->accounts == 1 ? "" : "s");
            char sv[128], ty[400];
            snprintf(buf2, sizeof(buf2), "%s: %s", join_services(s, ", ", true, sv, sizeof(sv)),
                     join_types(s, ", ", ty, sizeof(ty)));
            put_wrapped(out, "      ", buf2);
        }
    }

    if (r->naccounts) {
        text_heading(out, "Most tried accounts");
        fprintf(out, "  %-48s %10s %10s\n", "Account", "Attempts", "Sources");
        for (unsigned i = 0; i < r->naccounts; i++) {
            fputs("  ", out);
            put_cut(out, safe(r->accounts[i].name, buf, sizeof(buf)), 48);
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
            fprintf(out, "  %-16s %10llu%s", bucket_label(r, i, a, sizeof(a)),
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
                    local_min(s->first_seen, a, sizeof(a)), (unsigned long long)s->attempts);
        }
        if (r->nnew_sources < T->new_sources)
            fprintf(out, "  ... and %llu more\n",
                    (unsigned long long)(T->new_sources - r->nnew_sources));
    }

    text_heading(out, "Daemon");
    if (!r->incidents_recorded)
        fprintf(out, "  (not recorded in this database)\n");
    else if (!r->nincidents)
        fprintf(out, "  No incidents.\n");
    for (unsigned i = 0; i < r->nincidents; i++)
        text_row(out, incident_label(r->incidents[i].name), r->incidents[i].n);
    return finish(out);
}

/* ---- CSV ------------------------------------------------------------------------------- */

const char *const report_csv_tables[] = {
    "period",       "totals",   "ban_reasons", "by_service", "by_type", "top_sources",
    "top_accounts", "timeline", "new_sources", "daemon",     NULL,
};

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

static void csv_table(const struct report *r, const char *name, FILE *out)
{
    char a[32], buf[512];
    const struct report_totals *T = &r->totals;

    if (strcmp(name, "period") == 0) {
        csv_header(out, "from,to,generated,host");
        csv_cell(out, utc_iso(r->from, a, sizeof(a)), false);
        csv_cell(out, utc_iso(r->to, a, sizeof(a)), false);
        csv_cell(out, r->generated ? utc_iso(r->generated, a, sizeof(a)) : "", false);
        csv_cell(out, safe(r->host, buf, sizeof(buf)), true);
    } else if (strcmp(name, "totals") == 0) {
        static const char *const names[] = {"failures", "sources",   "new_sources",
                                            "bans",     "escalated", "permanent",
                                            "lifted",   "expired",   "active"};
        uint64_t v[] = {T->failures,  T->sources, T->new_sources, T->bans,  T->escalated,
                        T->permanent, T->lifted,  T->expired,     T->active};
        csv_header(out, "metric,value");
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
            csv_cell(out, names[i], false);
            csv_num(out, v[i], true);
        }
    } else if (strcmp(name, "ban_reasons") == 0) {
        csv_header(out, "reason,bans");
        for (unsigned i = 0; i < r->nban_reasons; i++) {
            csv_cell(out, r->ban_reasons[i].name, false);
            csv_num(out, r->ban_reasons[i].n, true);
        }
    } else if (strcmp(name, "by_service") == 0) {
        csv_header(out, "service,failures");
        for (unsigned i = 0; i < r->nby_service; i++) {
            csv_cell(out, safe(r->by_service[i].name, buf, sizeof(buf)), false);
            csv_num(out, r->by_service[i].n, true);
        }
    } else if (strcmp(name, "by_type") == 0) {
        int order[SEC_EVENT_TYPE_COUNT];
        unsigned nt = types_by_count(r, order);
        csv_header(out, "type,failures");
        for (unsigned i = 0; i < nt; i++) {
            csv_cell(out, sec_event_type_name(order[i]), false);
            csv_num(out, r->by_type[order[i]], true);
        }
    } else if (strcmp(name, "top_sources") == 0) {
        csv_header(out, "rank,source,attempts,services,types,accounts,first_seen,last_seen,ban,"
                        "ban_until");
        for (unsigned i = 0; i < r->ntop; i++) {
            const struct report_source *s = &r->top[i];
            csv_num(out, i + 1, false);
            csv_cell(out, s->key, false);
            csv_num(out, s->attempts, false);
            csv_cell(out, join_services(s, ";", true, buf, sizeof(buf)), false);
            csv_cell(out, join_types(s, ";", buf, sizeof(buf)), false);
            csv_num(out, s->accounts, false);
            csv_cell(out, utc_iso(s->first_seen, a, sizeof(a)), false);
            csv_cell(out, utc_iso(s->last_seen, a, sizeof(a)), false);
            csv_cell(out, ban_state_name(s->ban), false);
            bool until = s->ban == REPORT_BAN_ACTIVE || s->ban == REPORT_BAN_ENDED;
            csv_cell(out, until ? utc_iso(s->ban_until, a, sizeof(a)) : "", true);
        }
    } else if (strcmp(name, "top_accounts") == 0) {
        csv_header(out, "rank,account,attempts,sources");
        for (unsigned i = 0; i < r->naccounts; i++) {
            csv_num(out, i + 1, false);
            csv_cell(out, safe(r->accounts[i].name, buf, sizeof(buf)), false);
            csv_num(out, r->accounts[i].attempts, false);
            csv_num(out, r->accounts[i].sources, true);
        }
    } else if (strcmp(name, "timeline") == 0) {
        csv_header(out, "start,seconds,attempts");
        for (unsigned i = 0; i < r->nbuckets; i++) {
            csv_cell(out, utc_iso(r->bucket_start + (int64_t)i * r->bucket_s, a, sizeof(a)), false);
            csv_num(out, (uint64_t)r->bucket_s, false);
            csv_num(out, r->buckets[i], true);
        }
    } else if (strcmp(name, "new_sources") == 0) {
        csv_header(out, "source,first_seen,attempts");
        for (unsigned i = 0; i < r->nnew_sources; i++) {
            csv_cell(out, r->new_sources[i].key, false);
            csv_cell(out, utc_iso(r->new_sources[i].first_seen, a, sizeof(a)), false);
            csv_num(out, r->new_sources[i].attempts, true);
        }
    } else if (strcmp(name, "daemon") == 0) {
        csv_header(out, "incident,count");
        for (unsigned i = 0; i < r->nincidents; i++) {
            csv_cell(out, r->incidents[i].name, false);
            csv_num(out, r->incidents[i].n, true);
        }
    }
}

int report_render_csv(const struct report *r, const char *table, FILE *out)
{
    if (table) {
        for (size_t i = 0; report_csv_tables[i]; i++)
            if (strcmp(table, report_csv_tables[i]) == 0) {
                csv_table(r, table, out);
                return finish(out);
            }
        return -ENOENT;
    }
    for (size_t i = 0; report_csv_tables[i]; i++) {
        fprintf(out, "%s# %s\r\n", i ? "\r\n" : "", report_csv_tables[i]);
        csv_table(r, report_csv_tables[i], out);
    }
    return finish(out);
}

/* ---- JSON ------------------------------------------------------------------------------ */

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
    return json_string(utc_iso(t, a, sizeof(a)));
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
        jset(o, key, json_string(escape ? safe(c[i].name, buf, sizeof(buf)) : c[i].name));
        jset(o, count_key, jnum(c[i].n));
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
    jset(root, "host", json_string(safe(r->host, buf, sizeof(buf))));
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
        jset(tot, "sources", jnum(T->sources));
        jset(tot, "new_sources", jnum(T->new_sources));
        jset(tot, "bans", jnum(T->bans));
        jset(tot, "escalated", jnum(T->escalated));
        jset(tot, "permanent", jnum(T->permanent));
        jset(tot, "lifted", jnum(T->lifted));
        jset(tot, "expired", jnum(T->expired));
        jset(tot, "active", jnum(T->active));
        jset(root, "totals", tot);
    }
    jset(root, "ban_reasons", jcounts(r->ban_reasons, r->nban_reasons, "reason", "bans", false));
    jset(root, "by_service", jcounts(r->by_service, r->nby_service, "service", "failures", true));

    json_t *types = json_array();
    if (types) {
        int order[SEC_EVENT_TYPE_COUNT];
        unsigned nt = types_by_count(r, order);
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
            json_array_append_new(sv, json_string(safe(s->services[k], buf, sizeof(buf))));
        jset(o, "services", sv);
        for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++)
            if (s->types & (1u << t))
                json_array_append_new(ty, json_string(sec_event_type_name(t)));
        jset(o, "types", ty);
        jset(o, "accounts", jnum(s->accounts));
        jset(o, "first_seen", jtime(s->first_seen));
        jset(o, "last_seen", jtime(s->last_seen));
        jset(o, "ban", json_string(ban_state_name(s->ban)));
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
        jset(o, "account", json_string(safe(r->accounts[i].name, buf, sizeof(buf))));
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
    return root;
}

int report_render_json(const struct report *r, FILE *out)
{
    json_t *root = report_json(r);
    if (!root)
        return -ENOMEM;
    int rc = json_dumpf(root, out, JSON_INDENT(2));
    json_decref(root);
    if (rc != 0)
        return -EIO;
    fputc('\n', out);
    return finish(out);
}

/* ---- HTML ------------------------------------------------------------------------------ */

/* Text into HTML: the log_escape()d form, then entities for the markup characters. */
static void h(FILE *out, const char *s)
{
    char buf[1024];
    for (const char *p = safe(s, buf, sizeof(buf)); *p; p++) {
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
            fmt_time(t, "%Y-%m-%d", d, sizeof(d)), fmt_time(t, "%H:%M", hm, sizeof(hm)));
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

static void html_timeline_chart(const struct report *r, FILE *out)
{
    const double W = 940, H = 200, left = 50, top = 10, bottom = 30;
    const double pw = W - left - 10, ph = H - top - bottom;
    char a[32];
    uint64_t max = 0;
    for (unsigned i = 0; i < r->nbuckets; i++)
        if (r->buckets[i] > max)
            max = r->buckets[i];

    fprintf(out,
            "<svg id=\"chart-timeline\" xmlns=\"http://www.w3.org/2000/svg\" "
            "viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">\n",
            W, H, W, H);
    fprintf(out, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", left, top + ph,
            left + pw, top + ph);
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%llu</text>\n", left - 6,
            top + 10, (unsigned long long)max);
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">0</text>\n", left - 6, top + ph);
    double bw = pw / r->nbuckets;
    unsigned step = (r->nbuckets + 7) / 8;
    for (unsigned i = 0; i < r->nbuckets; i++) {
        uint64_t v = r->buckets[i];
        double bh = max ? ph * (double)v / (double)max : 0;
        bucket_label(r, i, a, sizeof(a));
        svg_bar(out, "", left + i * bw + bw * 0.1, top + ph - bh, bw * 0.8, bh, a, v);
        if (i % step == 0) {
            int64_t t = r->bucket_start + (int64_t)i * r->bucket_s;
            fmt_time(t, r->bucket_s < 86400 ? "%m-%d %H:%M" : "%Y-%m-%d", a, sizeof(a));
            fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", left + i * bw, H - 10, a);
        }
    }
    fputs("</svg>\n", out);
}

/* Horizontal bars, one row per item. */
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
        h(out, label(data, i));
        fputs("</text>\n", out);
        svg_bar(out, cls, left, y + 3, bw, row - 6, label(data, i), v);
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">%llu</text>\n", left + bw + 6, y + 15,
                (unsigned long long)v);
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
            local_min(r->from, a, sizeof(a)), local_min(r->to, b, sizeof(b)), html_css);
    fputs("<h1>pbxguard report", out);
    if (r->host[0]) {
        fputs(" for ", out);
        h(out, r->host);
    }
    fprintf(out, "</h1>\n<p class=\"period\">%s to %s (%s)", local_min(r->from, a, sizeof(a)),
            local_min(r->to, b, sizeof(b)), tz_name(r->from, tz, sizeof(tz)));
    if (r->generated)
        fprintf(out, ", generated %s", local_min(r->generated, a, sizeof(a)));
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
    unsigned nt = types_by_count(r, order);
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
            h(out, join_services(s, ", ", false, buf, sizeof(buf)));
            fputs("</td><td>", out);
            h(out, join_types(s, ", ", buf, sizeof(buf)));
            fprintf(out, "</td><td class=\"n\">%llu</td><td>", (unsigned long long)s->accounts);
            html_time(out, s->first_seen);
            fputs("</td><td>", out);
            html_time(out, s->last_seen);
            fputs("</td>", out);
            fprintf(out, "<td class=\"ban-%s\">", ban_state_name(s->ban));
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
                    local_min(r->new_sources[i].first_seen, a, sizeof(a)),
                    (unsigned long long)r->new_sources[i].attempts);
        }
        fputs("</table>\n", out);
    } else {
        html_none(out, "None.");
    }
    fputs("</section>\n", out);

    html_section(out, "daemon", "Daemon");
    if (!r->incidents_recorded) {
        html_none(out, "Not recorded in this database.");
    } else if (!r->nincidents) {
        html_none(out, "No incidents.");
    } else {
        fputs("<table id=\"incidents\">\n<tr><th>Incident</th><th class=\"n\">Count</th></tr>\n",
              out);
        for (unsigned i = 0; i < r->nincidents; i++) {
            fputs("<tr><td>", out);
            h(out, incident_label(r->incidents[i].name));
            fprintf(out, "</td><td class=\"n\">%llu</td></tr>\n",
                    (unsigned long long)r->incidents[i].n);
        }
        fputs("</table>\n", out);
    }
    fputs("</section>\n</main>\n</body>\n</html>\n", out);
    return finish(out);
}

int report_render(const struct report *r, enum report_format fmt, FILE *out)
{
    switch (fmt) {
    case REPORT_TEXT:
        return report_render_text(r, out);
    case REPORT_CSV:
        return report_render_csv(r, NULL, out);
    case REPORT_JSON:
        return report_render_json(r, out);
    case REPORT_HTML:
        return report_render_html(r, out);
    }
    return -EINVAL;
}
