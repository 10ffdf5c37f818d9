/* The report renderers' shared helpers, and report_render(), which picks the format.
 *
 * Attacker-controlled text (account names, and services: the Service header is whatever the AMI
 * peer sent) goes through log_escape() first in every format, so a report shows it exactly as
 * the log does, as printable ASCII; each format then adds its own quoting (CSV quotes, JSON
 * strings, HTML entities). */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "duration.h"
#include "log.h"
#include "report_render.h"

/* The format is always one of the renderers' literals. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
const char *report_fmt_time(int64_t t, const char *fmt, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm) || strftime(buf, len, fmt, &tm) == 0)
        snprintf(buf, len, "?");
    return buf;
}
#pragma GCC diagnostic pop

/* "2026-11-25 01:02", local time: what an admin reads. */
const char *report_local_min(int64_t t, char *buf, size_t len)
{
    return report_fmt_time(t, "%Y-%m-%d %H:%M", buf, len);
}

/* "2026-11-25T01:02:03Z": what tools read. */
const char *report_utc_iso(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "?");
    return buf;
}

/* The bucket's label, as precise as the bucket. */
const char *report_bucket_label(const struct report *r, unsigned i, char *buf, size_t len)
{
    int64_t t = r->bucket_start + (int64_t)i * r->bucket_s;
    return report_fmt_time(t, r->bucket_s < 86400 ? "%Y-%m-%d %H:%M" : "%Y-%m-%d", buf, len);
}

const char *report_tz_name(int64_t t, char *buf, size_t len)
{
    return report_fmt_time(t, "%Z", buf, len);
}

const char *report_safe(const char *s, char *buf, size_t len)
{
    return log_escape(s, strlen(s), buf, len);
}

const char *report_ban_state_name(enum report_ban_state b)
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
unsigned report_types_by_count(const struct report *r, int order[SEC_EVENT_TYPE_COUNT])
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
const char *report_join_services(const struct report_source *s, const char *sep, bool escape,
                                 char *buf, size_t len)
{
    char esc[4 * SEC_SERVICE_MAX];
    size_t at = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < s->nservices && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? sep : "",
                               escape ? report_safe(s->services[i], esc, sizeof(esc))
                                      : s->services[i]);
    return buf;
}

const char *report_join_types(const struct report_source *s, const char *sep, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT && at < len; t++)
        if (s->types & (1u << t))
            at +=
                (size_t)snprintf(buf + at, len - at, "%s%s", at ? sep : "", sec_event_type_name(t));
    return buf;
}

const char *report_incident_label(const char *kind)
{
    static const struct {
        const char *kind, *label;
    } labels[] = {
        {"ami-disconnect", "AMI disconnects"},
        {"ami-connect", "AMI connects"},
        {"nft-repair", "nftables repairs"},
        {"nft-foreign", "nftables: table name taken by another table"},
        {"db-error", "database errors"},
        {"start", "daemon starts"},
        {"stop", "daemon stops"},
    };
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (strcmp(kind, labels[i].kind) == 0)
            return labels[i].label;
    return kind;
}

const char *report_duration(int64_t seconds, char *buf, size_t len)
{
    if (seconds < 0)
        snprintf(buf, len, "unknown");
    else
        duration_format(seconds, buf, len);
    return buf;
}

const char *report_run_name(enum report_run_kind kind)
{
    switch (kind) {
    case REPORT_RUN_START:
        return "start";
    case REPORT_RUN_STOP:
        return "stop";
    case REPORT_RUN_DIED:
        return "unclean_stop";
    case REPORT_RUN_SILENT:
        return "not_running";
    }
    return "?";
}

const char *report_run_text(const struct report_run *e, bool escape, char *buf, size_t len)
{
    char d[32], v[64], c[1024];
    switch (e->kind) {
    case REPORT_RUN_START:
        snprintf(buf, len, "started pbxguardd %s (pid %u, %s)%s%s%s",
                 escape ? report_safe(e->version, v, sizeof(v)) : e->version, e->pid,
                 escape ? report_safe(e->config, c, sizeof(c)) : e->config,
                 e->down < 0 ? ", the first start recorded" : " after ",
                 e->down < 0 ? "" : report_duration(e->down, d, sizeof(d)),
                 e->down < 0      ? ""
                 : e->after_death ? " not running, since an unclean stop"
                                  : " not running");
        break;
    case REPORT_RUN_STOP:
        snprintf(buf, len, "stopped cleanly (%s) after %s up",
                 escape ? report_safe(e->reason, v, sizeof(v)) : e->reason,
                 report_duration(e->uptime, d, sizeof(d)));
        break;
    case REPORT_RUN_DIED:
        snprintf(buf, len,
                 "UNCLEAN STOP: pid %u, up %s, wrote its last here and left no clean stop (a "
                 "crash, the OOM killer, a watchdog abort or a power loss)",
                 e->pid, report_duration(e->uptime, d, sizeof(d)));
        break;
    case REPORT_RUN_SILENT:
        snprintf(buf, len,
                 "NOT RUNNING: pid %u, up %s, has written nothing since (it died or hangs)", e->pid,
                 report_duration(e->uptime, d, sizeof(d)));
        break;
    }
    return buf;
}

int report_finish(FILE *out)
{
    if (fflush(out) != 0 || ferror(out))
        return -EIO;
    return 0;
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
