/* The store's read-only queries for reports (`pbxguard report`): aggregates over a period of
 * what the daemon recorded. The report's SQL lives here and nowhere else, so a change to how
 * failures are kept (roll-ups, a compact table) changes this file and not its callers.
 *
 * Use a store opened with STORE_READ_ONLY. Every period is [from_ms, to_ms): Unix milliseconds,
 * start included, end excluded. Between store_snapshot_begin() and store_snapshot_end() every
 * query reads the same snapshot (WAL), even while the daemon commits between two of them.
 *
 * Text handed to the callbacks (services, accounts, ban reasons, incident kinds) is copied into
 * bounded buffers and NUL-terminated; services and accounts are attacker text, to be escaped
 * before display. A callback's non-zero return stops the walk and is returned. Errors are the
 * store's (store.h); store_errmsg() has SQLite's words. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "sec_event.h"
#include "store.h"

#define STORE_REPORT_SERVICES_MAX 4 /* services named per source */
#define STORE_REPORT_NAME_MAX 32    /* ban reasons, incident kinds */

/* Opens a read transaction on a read-only store: one snapshot for every query until
 * store_snapshot_end(). -EINVAL on a read-write store (the daemon's turns are its
 * transactions). */
int store_snapshot_begin(struct store *s);
void store_snapshot_end(struct store *s); /* no-op without an open snapshot */

/* Whole UTC days of a period are read from the daily roll-ups, the rest from the hourly ones;
 * both give the same figures. hours_only true reads the hourly rows for the whole period (what
 * the tests compare the daily tier with, and what a benchmark measures it against). */
void store_report_hours_only(struct store *s, bool hours_only);

/* The period's failures counted by service, event type and time bucket, in one pass. bucket is
 * (ts_ms - bucket0_ms) / bucket_ms. backfilled: of the n, those read from a security log for a
 * time no AMI session covered. */
typedef int (*store_report_failures_fn)(void *data, const char *service, int event_type,
                                        int64_t bucket, uint64_t n, uint64_t backfilled);
int store_report_failures(struct store *s, int64_t from_ms, int64_t to_ms, int64_t bucket0_ms,
                          int64_t bucket_ms, store_report_failures_fn fn, void *data);

/* One counting key (an address, or an IPv6 prefix) that failed in the period. */
struct store_report_source {
    char key[ADDR_STRLEN];
    uint64_t attempts;
    int64_t first_ms, last_ms; /* its first and last failure within the period */
    uint64_t accounts;         /* distinct account names tried */
    char services[STORE_REPORT_SERVICES_MAX][SEC_SERVICE_MAX]; /* the first few, as recorded */
    unsigned nservices;
    uint32_t types; /* bit (1u << enum sec_event_type) per event type seen */
    /* The key's last ban started at or before now_ms, if any. */
    bool ban_found;
    int64_t ban_expires_ms; /* 0 = permanent */
    int64_t ban_ended_ms;   /* 0 = not ended (lifted or marked expired) yet */
};

struct store_report_sources_fns {
    /* the top sources, most attempts first (ties by key) */
    int (*source)(void *data, const struct store_report_source *src);
    /* the top sources whose first failure ever recorded lies in the period, most attempts
     * first (ties by key) */
    int (*new_source)(void *data, const char *key, int64_t first_ms, uint64_t attempts);
};

struct store_report_source_counts {
    uint64_t sources;     /* distinct keys that failed in the period */
    uint64_t new_sources; /* of which seen for the first time (as far back as retention keeps) */
};

/* Up to top of each list, and the counts over all of them. */
int store_report_sources(struct store *s, int64_t from_ms, int64_t to_ms, int64_t now_ms,
                         unsigned top, const struct store_report_sources_fns *fns, void *data,
                         struct store_report_source_counts *ret_counts);

/* The most tried account names of the period (empty names left out), most attempts first
 * (ties by name), up to top; sources is how many distinct keys tried each. */
typedef int (*store_report_account_fn)(void *data, const char *account, uint64_t attempts,
                                       uint64_t sources);
int store_report_accounts(struct store *s, int64_t from_ms, int64_t to_ms, unsigned top,
                          store_report_account_fn fn, void *data);

struct store_report_bans {
    uint64_t bans;      /* started in the period */
    uint64_t escalated; /* ... for a repeat offence (offence > 1) */
    uint64_t permanent; /* ... with no end */
    uint64_t lifted;    /* lifted by hand in the period */
    uint64_t expired;   /* ran out in the period (marked expired, or not marked: the kernel
                           removed them on time while the daemon was stopped) */
    uint64_t active;    /* active at to_ms */
};

/* Bans over [from_ms, to_ms): reason is called per ban reason with the bans started in the
 * period (most first, ties by name). */
typedef int (*store_report_count_fn)(void *data, const char *name, uint64_t n);
int store_report_bans(struct store *s, int64_t from_ms, int64_t to_ms, store_report_count_fn reason,
                      void *data, struct store_report_bans *ret_bans);

/* The daemon's own incidents in the period, counted by kind (most first, ties by kind). */
int store_report_incidents(struct store *s, int64_t from_ms, int64_t to_ms,
                           store_report_count_fn fn, void *data);

/* The daemon's runs that matter to [from_ms, to_ms), oldest first: those alive in it, those
 * whose start ends a stretch of downtime reaching into it, and the latest run recorded (latest
 * is true for it). For the latest run without a clean stop, alive_ms is its last sign of life:
 * its heartbeat, or a newer row it wrote up to now_ms (if that is long past, it is not
 * running: it died or hangs, and its next start will tell). */
typedef int (*store_report_run_fn)(void *data, const struct store_run *run, bool latest);
int store_report_runs(struct store *s, int64_t from_ms, int64_t to_ms, int64_t now_ms,
                      store_report_run_fn fn, void *data);
