/* pbxguard report: who attacked, how, and what was done, over a period.
 *
 * The report is a plain data model (struct report) filled from the store's report queries
 * (report_fill(), over store_report.h) and printed by four renderers that do no I/O beyond the
 * FILE they are given: text (80 columns, for mail), CSV (documented sections, or one table), JSON
 * (stable schema, docs/report-json.md) and HTML (one self-contained file, inline CSS and SVG). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "sec_event.h"

#define REPORT_NAME_MAX 32    /* ban reasons, incident kinds */
#define REPORT_SERVICES_MAX 4 /* services named per source (Asterisk has three that matter) */
#define REPORT_TOP_DEFAULT 10
#define REPORT_TOP_MAX 1000

enum report_format { REPORT_TEXT = 0, REPORT_CSV, REPORT_JSON, REPORT_HTML };

/* A name with a count: failures by service, bans by reason, daemon incidents by kind. */
struct report_count {
    char name[REPORT_NAME_MAX];
    uint64_t n;
};

enum report_ban_state {
    REPORT_BAN_NONE = 0,  /* never banned, or banned only before the period and since lifted */
    REPORT_BAN_ACTIVE,    /* banned now, until ban_until */
    REPORT_BAN_PERMANENT, /* banned now, with no end */
    REPORT_BAN_ENDED,     /* was banned during the period; the ban has ended since */
};

struct report_source {
    char key[ADDR_STRLEN]; /* the counting key: an address, or an IPv6 prefix "2001:db8::/64" */
    uint64_t attempts;
    char services[REPORT_SERVICES_MAX][SEC_SERVICE_MAX];
    unsigned nservices;
    uint32_t types;     /* bit (1u << enum sec_event_type) per event type seen */
    uint64_t accounts;  /* distinct account names tried */
    int64_t first_seen; /* Unix seconds, within the period */
    int64_t last_seen;
    enum report_ban_state ban;
    int64_t ban_until; /* Unix seconds; meaningful for ACTIVE and ENDED */
};

struct report_account {
    char name[SEC_ACCOUNT_MAX]; /* attacker-controlled bytes; renderers escape them */
    uint64_t attempts;
    uint64_t sources;
};

/* A source whose first failure ever recorded lies inside the period. */
struct report_new_source {
    char key[ADDR_STRLEN];
    int64_t first_seen;
    uint64_t attempts;
};

struct report_totals {
    uint64_t failures;    /* failed attempts in the period */
    uint64_t backfilled;  /* of which read from a security log for a time AMI did not cover */
    uint64_t sources;     /* distinct keys that failed in the period */
    uint64_t bans;        /* bans issued in the period; by reason in report.ban_reasons */
    uint64_t lifted;      /* bans removed by hand (unban) in the period */
    uint64_t expired;     /* bans that ran out in the period */
    uint64_t active;      /* bans active at the report's end */
    uint64_t escalated;   /* bans issued in the period for a repeat offence (longer bans) */
    uint64_t permanent;   /* bans issued in the period with no end */
    uint64_t new_sources; /* sources seen for the first time (report.new_sources lists top N) */
};

/* What happened to the daemon itself: its starts, clean stops and deaths. */
enum report_run_kind {
    REPORT_RUN_START,  /* pbxguardd started */
    REPORT_RUN_STOP,   /* it stopped cleanly (a signal, or a failed start) */
    REPORT_RUN_DIED,   /* it left no clean stop (found by the next start): time is the last
                          thing it wrote */
    REPORT_RUN_SILENT, /* the latest run has written nothing since time, long past: it is not
                          running (died, or hangs); its next start will tell */
};

struct report_run {
    enum report_run_kind kind;
    int64_t time; /* Unix seconds */
    unsigned pid;
    char version[32]; /* START */
    char config[256]; /* START: the configuration file */
    char reason[32];  /* STOP: "SIGTERM", "SIGINT", "start failed", ... */
    int64_t uptime;   /* STOP, DIED, SILENT: seconds that run lasted */
    int64_t down;     /* START: seconds not running before it; -1 if unknown (the first run) */
    bool after_death; /* START: the run before it died */
};

struct report {
    char host[64]; /* who the report is about (hostname); may be empty */
    int64_t from;  /* period [from, to), Unix seconds */
    int64_t to;
    int64_t generated; /* when the report was made */
    struct report_totals totals;

    struct report_count *ban_reasons; /* by count, descending */
    unsigned nban_reasons;
    struct report_count *by_service;
    unsigned nby_service;
    uint64_t by_type[SEC_EVENT_TYPE_COUNT];

    struct report_source *top; /* by attempts, descending */
    unsigned ntop;
    struct report_account *accounts;
    unsigned naccounts;
    struct report_new_source *new_sources;
    unsigned nnew_sources;

    /* attempts per bucket; bucket i covers [bucket_start + i*bucket_s, + bucket_s) */
    int64_t bucket_start;
    int64_t bucket_s;
    uint64_t *buckets;
    unsigned nbuckets;

    bool incidents_recorded; /* false: the database does not record what the daemon went through */
    struct report_count *incidents;
    unsigned nincidents;

    /* The daemon's runs. runs_recorded is false when no run is recorded up to the period's end
     * (a database older than these records): nothing is known, not running is not zero. */
    bool runs_recorded;
    struct report_run *runs; /* starts, stops and deaths within the period, in time order */
    unsigned nruns;
    int64_t not_running; /* seconds of the period the daemon was not running (up to now) */
};

/* Allocates the per-period buckets: one per hour (per day for periods over 7 days), aligned on
 * local hour (day) boundaries so the labels read naturally. Returns 0 or -ENOMEM/-EINVAL. */
int report_init(struct report *r, int64_t from, int64_t to);
/* Frees what the report holds (not r itself). Accepts NULL and zeroed reports. */
void report_release(struct report *r);

/* Appends one entry to an array of the model. Return 0 or -ENOMEM. */
int report_add_count(struct report_count **arr, unsigned *n, const char *name, uint64_t count);
int report_add_source(struct report *r, const struct report_source *s);
int report_add_account(struct report *r, const char *name, uint64_t attempts, uint64_t sources);
int report_add_new_source(struct report *r, const char *key, int64_t first_seen, uint64_t attempts);
int report_add_run(struct report *r, const struct report_run *run);

struct store;
/* Fills r, already report_init()ed with the period, from a store opened read-only, all from one
 * snapshot. now (Unix seconds) is the moment "current" ban states refer to; top bounds each
 * list. Returns 0 or the store's -errno (store_errmsg() has the detail); on failure r holds
 * what was filled so far. */
int report_fill(struct store *s, struct report *r, int64_t now, unsigned top);

/* Renderers. Each writes the whole report to out and returns 0, or -EIO if writing failed. */
int report_render_text(const struct report *r, FILE *out);
/* table: NULL for every section (each after a "# name" line, sections separated by a blank
 * line), or one section's name to write that table alone, as a plain CSV file. -ENOENT if
 * there is no such table. */
int report_render_csv(const struct report *r, const char *table, FILE *out);
int report_render_json(const struct report *r, FILE *out);
int report_render_html(const struct report *r, FILE *out);
int report_render(const struct report *r, enum report_format fmt, FILE *out);

/* Whether the CSV report has a table of this name (period, totals, ban_reasons, by_service,
 * by_type, top_sources, top_accounts, timeline, new_sources, daemon, daemon_runs). */
bool report_csv_has_table(const char *name);

/* Parses an ISO-8601 date ("2026-11-25", local midnight) or date-time ("2026-11-25T10:00",
 * "2026-11-25 10:00:30", seconds optional) in local time or with an offset ("Z", "+01:00",
 * "-0500"). Returns 0 or -EINVAL. */
int report_time_parse(const char *s, int64_t *ret_time);

/* `pbxguard report ...`: parses the arguments, reads the database read-only, writes the report.
 * Exit codes: 0 done, 1 failure (database missing, unreadable or of an unknown version),
 * 2 usage error. */
int report_main(int argc, char **argv);
