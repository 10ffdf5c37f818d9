/* The daemon's meters as Prometheus series, and their text exposition format (pure: no I/O, no
 * clock, no logging; prom_file.h writes what this renders).
 *
 * A struct metrics is a snapshot: a fixed table of series, each a family (a name, a type, a
 * HELP text and up to two label names, all from the table in metrics.c) and its label values.
 * Counters are added to as things happen and only grow; gauges are set.
 *
 * Bounds. Label values come from hostile places (a service name in an Asterisk event, a source
 * name from the configuration): each is cut to METRICS_LABEL_MAX bytes and made printable ASCII
 * (any other byte becomes '_', so the output is always valid UTF-8), and the renderer escapes
 * backslash, double quote and newline as the exposition format asks. A family holds at most
 * METRICS_FAMILY_SERIES_MAX series: past that, new label values are counted in one series whose
 * labels all read "other" (and in pbxguard_metrics_series_overflow_total), so a peer that
 * invents service names cannot grow the file. No label ever holds an address. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_LABEL_MAX 48
#define METRICS_FAMILY_SERIES_MAX 64
#define METRICS_SERIES_MAX 512
/* What metrics_render() needs at most for a full table (every series with two escaped labels
 * of METRICS_LABEL_MAX bytes each, plus every family's HELP and TYPE lines). */
#define METRICS_RENDER_MAX (METRICS_SERIES_MAX * 320 + 64 * 320)

enum metrics_family {
    METRICS_FAILED_AUTH,          /* counter {service, event}: failed logins counted by policy */
    METRICS_EVENTS,               /* counter {event}: security events received */
    METRICS_EVENTS_IGNORED,       /* counter {range}: events from sources that cannot be real */
    METRICS_BANS,                 /* counter {reason}: bans placed */
    METRICS_UNBANS,               /* counter {reason}: bans lifted */
    METRICS_BANS_ACTIVE,          /* gauge {family}: bans in force now */
    METRICS_AMI_UP,               /* gauge {source}: 1 while the AMI session is logged in */
    METRICS_AMI_EVENTS,           /* counter {source}: security events a source handed over */
    METRICS_AMI_MALFORMED,        /* counter {source}: frames that did not parse */
    METRICS_AMI_OVERSIZED,        /* counter {source}: frames over a bound */
    METRICS_AMI_RECONNECTS,       /* counter {source}: sessions lost after a login */
    METRICS_AMI_LOGIN_FAIL,       /* counter {source}: our logins that Asterisk refused */
    METRICS_NFT_ENFORCING,        /* gauge: 1 while bans reach the kernel */
    METRICS_NFT_ERRORS,           /* counter: nftables transactions the kernel refused */
    METRICS_DB_ERRORS,            /* counter: store operations that failed */
    METRICS_DB_JOURNAL_LOST,      /* counter: ban changes missing from the history */
    METRICS_LOOP_TURN,            /* summary {quantile}: loop turn durations, seconds */
    METRICS_LOOP_TURNS,           /* counter: loop turns */
    METRICS_STATSD_DROPPED,       /* counter: StatsD lines dropped */
    METRICS_STATSD_SUPPRESSED,    /* counter: StatsD per-address lines suppressed */
    METRICS_CLUSTER_CONNECTED,    /* gauge */
    METRICS_CLUSTER_PUBLISHED,    /* counter */
    METRICS_CLUSTER_RECEIVED,     /* counter */
    METRICS_CLUSTER_REFUSED,      /* counter {reason} */
    METRICS_CLUSTER_RECONNECTS,   /* counter */
    METRICS_CLUSTER_OUTBOX,       /* gauge */
    METRICS_CROWDSEC_APPLIED,     /* counter */
    METRICS_CROWDSEC_REFUSED,     /* counter {reason} */
    METRICS_CROWDSEC_IGNORED,     /* counter {reason} */
    METRICS_CROWDSEC_POLL_ERRORS, /* counter */
    METRICS_CROWDSEC_PUSH_ERRORS, /* counter */
    METRICS_CROWDSEC_ALERTS,      /* counter */
    METRICS_CROWDSEC_OUTBOX,      /* gauge */
    METRICS_CROWDSEC_DECISIONS,   /* gauge */
    METRICS_BACKFILL_EVENTS,      /* counter {event}: events read from the security log late */
    METRICS_SECLOG_LINES,         /* counter {source}: lines a security log source read */
    METRICS_SECLOG_BEHIND,        /* gauge {source}: bytes of its file not read yet */
    METRICS_SECLOG_MALFORMED,     /* counter: security log lines that prove no address */
    METRICS_SECLOG_DUPLICATES,    /* counter: security log events already counted */
    METRICS_SERIES_OVERFLOW,      /* counter {family}: label sets folded into "other" */
    METRICS_FAMILY_COUNT
};

struct metrics_series {
    uint16_t family; /* enum metrics_family; METRICS_FAMILY_COUNT = free slot */
    char label[2][METRICS_LABEL_MAX + 1];
    double value;
};

struct metrics {
    struct metrics_series series[METRICS_SERIES_MAX];
    unsigned nseries;
    uint16_t per_family[METRICS_FAMILY_COUNT];
    /* Open addressing over series[] by (family, labels): a lookup per event stays short. */
    uint16_t slot[2 * METRICS_SERIES_MAX]; /* index + 1; 0 = empty */
};

struct metrics *metrics_new(void);    /* NULL + errno */
void metrics_free(struct metrics *m); /* accepts NULL */

/* Adds v to a counter (or to a gauge). l1 and l2 are the label values in the family's order
 * (NULL for a family with fewer labels). */
void metrics_add(struct metrics *m, enum metrics_family f, const char *l1, const char *l2,
                 double v);
/* Sets a gauge (or a summary's quantile, l1 being the quantile). */
void metrics_set(struct metrics *m, enum metrics_family f, const char *l1, const char *l2,
                 double v);
/* The value of a series, 0 if it does not exist (for tests and the core's bookkeeping). */
double metrics_get(const struct metrics *m, enum metrics_family f, const char *l1, const char *l2);
/* Removes every series of family f (gauges of sources that no longer exist). */
void metrics_clear_family(struct metrics *m, enum metrics_family f);

/* The family that StatsD meter own_name (statsd.h's STATSD_M_*, cluster.h's, "crowdsec.*")
 * maps to, and whether it is a gauge; -1 for a meter with no Prometheus series (those the core
 * sets itself, per source). */
int metrics_family_of_statsd(const char *own_name);

/* The family's metric name ("pbxguard_bans_total"), for tests and docs. */
const char *metrics_family_name(enum metrics_family f);

/* Cleans a label value into out (METRICS_LABEL_MAX + 1 bytes): at most METRICS_LABEL_MAX bytes,
 * bytes outside printable ASCII (newline aside) replaced by '_'; NULL or "" gives "". */
void metrics_label_clean(const char *in, char out[METRICS_LABEL_MAX + 1]);
/* Escapes a label value for the exposition format (\\ \" \n) into out; returns the length
 * written, or -ENOSPC if it does not fit (out is then ""). */
int metrics_label_escape(const char *in, char *out, size_t cap);

/* Renders every family with at least one series, in the table's order, each with its HELP and
 * TYPE lines, series in the order they were created: the text exposition format 0.0.4, ending
 * in a newline. Returns the length written, or -ENOSPC if cap is too small (nothing usable is
 * left in buf). METRICS_RENDER_MAX is always enough. */
int metrics_render(const struct metrics *m, char *buf, size_t cap);
