#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

enum family_type { T_COUNTER, T_GAUGE, T_SUMMARY };

struct family_def {
    const char *name;
    enum family_type type;
    const char *label[2]; /* label names; NULL when fewer */
    const char *statsd;   /* the StatsD own meter that feeds it, if any */
    const char *help;
};

/* Names follow Prometheus' conventions: a pbxguard_ prefix, counters end in _total, durations
 * are in seconds. The order here is the order in the file. */
static const struct family_def families[METRICS_FAMILY_COUNT] = {
    [METRICS_FAILED_AUTH] = {"pbxguard_failed_auth_total",
                             T_COUNTER,
                             {"service", "event"},
                             NULL,
                             "Failed logins counted by the policy, by Asterisk service and "
                             "security event type."},
    [METRICS_EVENTS] = {"pbxguard_events_total",
                        T_COUNTER,
                        {"event", NULL},
                        "events",
                        "Security events received from every source, by event type."},
    [METRICS_EVENTS_IGNORED] = {"pbxguard_events_ignored_total",
                                T_COUNTER,
                                {"range", NULL},
                                "ignored",
                                "Events from an address that can never be a real source "
                                "(link-local, multicast, ...), by range: never counted."},
    [METRICS_BANS] =
        {"pbxguard_bans_total", T_COUNTER, {"reason", NULL}, "bans", "Bans placed, by reason."},
    [METRICS_UNBANS] =
        {"pbxguard_unbans_total", T_COUNTER, {"reason", NULL}, "unbans", "Bans lifted, by reason."},
    [METRICS_BANS_ACTIVE] = {"pbxguard_bans_active",
                             T_GAUGE,
                             {"family", NULL},
                             NULL,
                             "Bans in force now, by address family."},
    [METRICS_AMI_UP] = {"pbxguard_ami_up",
                        T_GAUGE,
                        {"source", NULL},
                        NULL,
                        "1 while the AMI session of this source is logged in, else 0."},
    [METRICS_AMI_EVENTS] = {"pbxguard_ami_events_total",
                            T_COUNTER,
                            {"source", NULL},
                            NULL,
                            "Security events this AMI source handed over."},
    [METRICS_AMI_MALFORMED] = {"pbxguard_ami_frames_malformed_total",
                               T_COUNTER,
                               {"source", NULL},
                               NULL,
                               "AMI frames from this source that did not parse."},
    [METRICS_AMI_OVERSIZED] = {"pbxguard_ami_frames_oversized_total",
                               T_COUNTER,
                               {"source", NULL},
                               NULL,
                               "AMI frames from this source over a size bound."},
    [METRICS_AMI_RECONNECTS] = {"pbxguard_ami_reconnects_total",
                                T_COUNTER,
                                {"source", NULL},
                                NULL,
                                "AMI sessions of this source lost after a login."},
    [METRICS_AMI_LOGIN_FAIL] = {"pbxguard_ami_login_failures_total",
                                T_COUNTER,
                                {"source", NULL},
                                NULL,
                                "Logins of pbxguard's own AMI user that Asterisk refused."},
    [METRICS_NFT_ENFORCING] = {"pbxguard_nft_enforcing",
                               T_GAUGE,
                               {NULL, NULL},
                               "nft.enforcing",
                               "1 while bans reach the kernel (our nftables table in place, "
                               "transactions succeeding), else 0."},
    [METRICS_NFT_ERRORS] = {"pbxguard_nft_errors_total",
                            T_COUNTER,
                            {NULL, NULL},
                            "nft.errors",
                            "nftables transactions (or elements) the kernel refused."},
    [METRICS_DB_ERRORS] = {"pbxguard_db_errors_total",
                           T_COUNTER,
                           {NULL, NULL},
                           "db.errors",
                           "Database (SQLite) operations that failed."},
    [METRICS_DB_JOURNAL_LOST] = {"pbxguard_db_journal_lost_total",
                                 T_COUNTER,
                                 {NULL, NULL},
                                 "db.journal_lost",
                                 "Ban changes missing from the database's history (made while "
                                 "it failed, past the replay journal)."},
    [METRICS_LOOP_TURN] = {"pbxguard_loop_turn_seconds",
                           T_SUMMARY,
                           {"quantile", NULL},
                           NULL,
                           "How long the event loop's turns took over the last interval (at "
                           "least 10 s): the 99th percentile and the longest (quantile 1)."},
    [METRICS_LOOP_TURNS] = {"pbxguard_loop_turns_total",
                            T_COUNTER,
                            {NULL, NULL},
                            NULL,
                            "Event loop turns since the daemon started."},
    [METRICS_STATSD_DROPPED] = {"pbxguard_statsd_dropped_total",
                                T_COUNTER,
                                {NULL, NULL},
                                NULL,
                                "StatsD lines dropped (unsendable datagrams, lines too long)."},
    [METRICS_STATSD_SUPPRESSED] = {"pbxguard_statsd_suppressed_total",
                                   T_COUNTER,
                                   {NULL, NULL},
                                   NULL,
                                   "StatsD per-address lines over per_address_limit."},
    [METRICS_CLUSTER_CONNECTED] = {"pbxguard_cluster_connected",
                                   T_GAUGE,
                                   {NULL, NULL},
                                   "cluster.connected",
                                   "1 while the fleet's shared table is reachable, else 0."},
    [METRICS_CLUSTER_PUBLISHED] = {"pbxguard_cluster_published_total",
                                   T_COUNTER,
                                   {NULL, NULL},
                                   "cluster.published",
                                   "Local ban changes the fleet table took."},
    [METRICS_CLUSTER_RECEIVED] = {"pbxguard_cluster_received_total",
                                  T_COUNTER,
                                  {NULL, NULL},
                                  "cluster.received",
                                  "Other nodes' bans and unbans applied."},
    [METRICS_CLUSTER_REFUSED] = {"pbxguard_cluster_refused_total",
                                 T_COUNTER,
                                 {"reason", NULL},
                                 "cluster.refused",
                                 "Other nodes' bans refused, by reason."},
    [METRICS_CLUSTER_RECONNECTS] = {"pbxguard_cluster_reconnects_total",
                                    T_COUNTER,
                                    {NULL, NULL},
                                    "cluster.reconnects",
                                    "Links to the fleet table re-established after a loss."},
    [METRICS_CLUSTER_OUTBOX] = {"pbxguard_cluster_outbox",
                                T_GAUGE,
                                {NULL, NULL},
                                "cluster.outbox",
                                "Local ban changes not yet published."},
    [METRICS_CROWDSEC_APPLIED] = {"pbxguard_crowdsec_applied_total",
                                  T_COUNTER,
                                  {NULL, NULL},
                                  "crowdsec.applied",
                                  "CrowdSec decisions applied as bans."},
    [METRICS_CROWDSEC_REFUSED] = {"pbxguard_crowdsec_refused_total",
                                  T_COUNTER,
                                  {"reason", NULL},
                                  "crowdsec.refused",
                                  "CrowdSec decisions refused, by reason."},
    [METRICS_CROWDSEC_IGNORED] = {"pbxguard_crowdsec_ignored_total",
                                  T_COUNTER,
                                  {"reason", NULL},
                                  "crowdsec.ignored",
                                  "CrowdSec decisions ignored (unusable or foreign), by reason."},
    [METRICS_CROWDSEC_POLL_ERRORS] = {"pbxguard_crowdsec_poll_errors_total",
                                      T_COUNTER,
                                      {NULL, NULL},
                                      "crowdsec.poll_errors",
                                      "Polls of CrowdSec's Local API that failed."},
    [METRICS_CROWDSEC_PUSH_ERRORS] = {"pbxguard_crowdsec_push_errors_total",
                                      T_COUNTER,
                                      {NULL, NULL},
                                      "crowdsec.push_errors",
                                      "Alert pushes to CrowdSec's Local API that failed."},
    [METRICS_CROWDSEC_ALERTS] = {"pbxguard_crowdsec_alerts_total",
                                 T_COUNTER,
                                 {NULL, NULL},
                                 "crowdsec.alerts",
                                 "Alerts pushed to CrowdSec's Local API."},
    [METRICS_CROWDSEC_OUTBOX] = {"pbxguard_crowdsec_outbox",
                                 T_GAUGE,
                                 {NULL, NULL},
                                 "crowdsec.outbox",
                                 "Alerts waiting to be pushed to CrowdSec."},
    [METRICS_CROWDSEC_DECISIONS] = {"pbxguard_crowdsec_decisions",
                                    T_GAUGE,
                                    {NULL, NULL},
                                    "crowdsec.decisions",
                                    "CrowdSec decisions in force."},
    [METRICS_BACKFILL_EVENTS] = {"pbxguard_backfill_events_total",
                                 T_COUNTER,
                                 {"event", NULL},
                                 "backfill.events",
                                 "Security events read from the security log for a time no AMI "
                                 "session covered (or late, in primary mode), by event type."},
    [METRICS_SECLOG_LINES] = {"pbxguard_seclog_lines_total",
                              T_COUNTER,
                              {"source", NULL},
                              NULL,
                              "Lines this security log source read."},
    [METRICS_SECLOG_BEHIND] = {"pbxguard_seclog_behind_bytes",
                               T_GAUGE,
                               {"source", NULL},
                               NULL,
                               "Bytes of the file this security log source reads that it has "
                               "not read yet."},
    [METRICS_SECLOG_MALFORMED] = {"pbxguard_seclog_lines_malformed_total",
                                  T_COUNTER,
                                  {NULL, NULL},
                                  "seclog.lines_malformed",
                                  "Security log lines that prove no address (counted for "
                                  "nobody)."},
    [METRICS_SECLOG_DUPLICATES] = {"pbxguard_seclog_duplicates_total",
                                   T_COUNTER,
                                   {NULL, NULL},
                                   "seclog.duplicates",
                                   "Security log events skipped as counted already (AMI "
                                   "delivered them, or they were recorded before)."},
    [METRICS_SERIES_OVERFLOW] = {"pbxguard_metrics_series_overflow_total",
                                 T_COUNTER,
                                 {"metric", NULL},
                                 NULL,
                                 "Updates whose label values were folded into \"other\" because "
                                 "the metric had too many series."},
};

struct metrics *metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    free(m);
}

const char *metrics_family_name(enum metrics_family f)
{
    return (unsigned)f < METRICS_FAMILY_COUNT ? families[f].name : "?";
}

int metrics_family_of_statsd(const char *own_name)
{
    for (int i = 0; i < METRICS_FAMILY_COUNT; i++)
        if (families[i].statsd && strcmp(families[i].statsd, own_name) == 0)
            return i;
    return -1;
}

void metrics_label_clean(const char *in, char out[METRICS_LABEL_MAX + 1])
{
    size_t n = 0;
    for (; in && in[n] && n < METRICS_LABEL_MAX; n++) {
        unsigned char ch = (unsigned char)in[n];
        out[n] = (ch >= 0x20 && ch < 0x7f) || ch == '\n' ? (char)ch : '_';
    }
    out[n] = '\0';
}

int metrics_label_escape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in; in++) {
        const char *rep = NULL;
        if (*in == '\\')
            rep = "\\\\";
        else if (*in == '"')
            rep = "\\\"";
        else if (*in == '\n')
            rep = "\\n";
        size_t k = rep ? 2 : 1;
        if (n + k + 1 > cap) {
            if (cap)
                out[0] = '\0';
            return -ENOSPC;
        }
        if (rep)
            memcpy(out + n, rep, 2);
        else
            out[n] = *in;
        n += k;
    }
    if (n + 1 > cap)
        return -ENOSPC;
    out[n] = '\0';
    return (int)n;
}

static uint32_t key_hash(unsigned f, const char *l1, const char *l2)
{
    uint32_t h = 2166136261u ^ f;
    for (const char *s = l1; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    h = (h ^ 0xff) * 16777619u;
    for (const char *s = l2; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The series of (f, l1, l2), labels already clean; created if create and there is room. NULL
 * if it does not exist (or there is no room). */
static struct metrics_series *find(struct metrics *m, unsigned f, const char *l1, const char *l2,
                                   bool create)
{
    const uint32_t mask = 2 * METRICS_SERIES_MAX - 1;
    uint32_t i = key_hash(f, l1, l2) & mask;
    for (;;) {
        uint16_t idx = m->slot[i];
        if (idx == 0)
            break;
        struct metrics_series *s = &m->series[idx - 1];
        if (s->family == f && strcmp(s->label[0], l1) == 0 && strcmp(s->label[1], l2) == 0)
            return s;
        i = (i + 1) & mask;
    }
    if (!create || m->nseries >= METRICS_SERIES_MAX)
        return NULL;
    struct metrics_series *s = &m->series[m->nseries++];
    s->family = (uint16_t)f;
    memcpy(s->label[0], l1, strlen(l1) + 1);
    memcpy(s->label[1], l2, strlen(l2) + 1);
    s->value = 0;
    m->slot[i] = (uint16_t)m->nseries;
    m->per_family[f]++;
    return s;
}

static struct metrics_series *series_for(struct metrics *m, enum metrics_family f, const char *l1,
                                         const char *l2)
{
    if ((unsigned)f >= METRICS_FAMILY_COUNT)
        return NULL;
    char a[METRICS_LABEL_MAX + 1], b[METRICS_LABEL_MAX + 1];
    metrics_label_clean(families[f].label[0] ? l1 : NULL, a);
    metrics_label_clean(families[f].label[1] ? l2 : NULL, b);
    struct metrics_series *s = find(m, f, a, b, false);
    if (s)
        return s;
    /* One slot of each family is kept for "other", and the overflow meter's own series (one
     * per family) always find room in the table's reserve. */
    bool room = m->per_family[f] + 1u < METRICS_FAMILY_SERIES_MAX &&
                m->nseries + METRICS_FAMILY_COUNT * 2u < METRICS_SERIES_MAX;
    if (room || f == METRICS_SERIES_OVERFLOW)
        return find(m, f, a, b, true);
    struct metrics_series *o = find(m, METRICS_SERIES_OVERFLOW, families[f].name, "", true);
    if (o)
        o->value++;
    return find(m, f, families[f].label[0] ? "other" : "", families[f].label[1] ? "other" : "",
                true);
}

void metrics_add(struct metrics *m, enum metrics_family f, const char *l1, const char *l2, double v)
{
    struct metrics_series *s = series_for(m, f, l1, l2);
    if (s)
        s->value += v;
}

void metrics_set(struct metrics *m, enum metrics_family f, const char *l1, const char *l2, double v)
{
    struct metrics_series *s = series_for(m, f, l1, l2);
    if (s)
        s->value = v;
}

double metrics_get(const struct metrics *m, enum metrics_family f, const char *l1, const char *l2)
{
    if ((unsigned)f >= METRICS_FAMILY_COUNT)
        return 0;
    char a[METRICS_LABEL_MAX + 1], b[METRICS_LABEL_MAX + 1];
    metrics_label_clean(families[f].label[0] ? l1 : NULL, a);
    metrics_label_clean(families[f].label[1] ? l2 : NULL, b);
    struct metrics_series *s = find((struct metrics *)m, f, a, b, false);
    return s ? s->value : 0;
}

void metrics_clear_family(struct metrics *m, enum metrics_family f)
{
    if ((unsigned)f >= METRICS_FAMILY_COUNT || m->per_family[f] == 0)
        return;
    /* Compact the table and rebuild the index: rare (a reload that drops a source). */
    unsigned n = 0;
    for (unsigned i = 0; i < m->nseries; i++)
        if (m->series[i].family != f)
            m->series[n++] = m->series[i];
    m->nseries = n;
    m->per_family[f] = 0;
    memset(m->slot, 0, sizeof(m->slot));
    const uint32_t mask = 2 * METRICS_SERIES_MAX - 1;
    for (unsigned i = 0; i < n; i++) {
        const struct metrics_series *s = &m->series[i];
        uint32_t j = key_hash(s->family, s->label[0], s->label[1]) & mask;
        while (m->slot[j])
            j = (j + 1) & mask;
        m->slot[j] = (uint16_t)(i + 1);
    }
}

struct out {
    char *buf;
    size_t cap, len;
    bool full;
};

static void put(struct out *o, const char *fmt, ...)
{
    if (o->full)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        o->full = true;
    else
        o->len += (size_t)n;
}

static void put_value(struct out *o, double v)
{
    /* %.15g: integers as integers (up to 2^53 they are exact), fractions without noise. */
    if (v != v)
        put(o, "NaN");
    else
        put(o, "%.15g", v);
}

int metrics_render(const struct metrics *m, char *buf, size_t cap)
{
    static const char *const type_names[] = {"counter", "gauge", "summary"};
    struct out o = {.buf = buf, .cap = cap};
    if (cap == 0)
        return -ENOSPC;
    buf[0] = '\0';
    for (unsigned f = 0; f < METRICS_FAMILY_COUNT; f++) {
        if (m->per_family[f] == 0)
            continue;
        const struct family_def *d = &families[f];
        /* HELP text escapes backslash and newline; ours hold neither, but stay correct. */
        put(&o, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name, type_names[d->type]);
        for (unsigned i = 0; i < m->nseries; i++) {
            const struct metrics_series *s = &m->series[i];
            if (s->family != f)
                continue;
            put(&o, "%s", d->name);
            for (int k = 0; k < 2 && d->label[k]; k++) {
                char esc[2 * METRICS_LABEL_MAX + 1];
                metrics_label_escape(s->label[k], esc, sizeof(esc));
                put(&o, "%c%s=\"%s\"", k == 0 ? '{' : ',', d->label[k], esc);
            }
            put(&o, "%s ", d->label[0] ? "}" : "");
            put_value(&o, s->value);
            put(&o, "\n");
        }
    }
    if (o.full) {
        buf[0] = '\0';
        return -ENOSPC;
    }
    return (int)o.len;
}
