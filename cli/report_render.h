/* What the four report renderers (report_text.c, report_csv.c, report_json.c, report_html.c)
 * share: times as admins and tools read them, attacker text made printable, the names and
 * orders every format uses. Internal to the CLI's report. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "report.h"

/* strftime() of t in local time into buf; "?" if it does not fit. */
const char *report_fmt_time(int64_t t, const char *fmt, char *buf, size_t len);
/* "2026-11-25 01:02", local time: what an admin reads. */
const char *report_local_min(int64_t t, char *buf, size_t len);
/* "2026-11-25T01:02:03Z": what tools read. */
const char *report_utc_iso(int64_t t, char *buf, size_t len);
/* The label of bucket i, as precise as the bucket. */
const char *report_bucket_label(const struct report *r, unsigned i, char *buf, size_t len);
/* The local time zone's abbreviation at t. */
const char *report_tz_name(int64_t t, char *buf, size_t len);
/* Attacker text as the log shows it: printable ASCII, \xNN for the rest (log_escape()). */
const char *report_safe(const char *s, char *buf, size_t len);
/* "active", "permanent", "ended", "none". */
const char *report_ban_state_name(enum report_ban_state b);
/* Event types with failures into order[], most failures first (ties in Asterisk's order);
 * returns how many. */
unsigned report_types_by_count(const struct report *r, int order[SEC_EVENT_TYPE_COUNT]);
/* "a, b, c" from the source's services (escaped unless the caller escapes the whole: HTML's
 * h() does, and must not escape twice) or event types. */
const char *report_join_services(const struct report_source *s, const char *sep, bool escape,
                                 char *buf, size_t len);
const char *report_join_types(const struct report_source *s, const char *sep, char *buf,
                              size_t len);
/* What an incident kind is called in prose ("ami-disconnect": "AMI disconnects"). */
const char *report_incident_label(const char *kind);
/* One start, stop or death in words, without its time ("stopped cleanly (SIGTERM) after 6h up");
 * the texts it quotes (version, configuration path, reason) escaped unless the caller escapes
 * the whole (HTML's h() does, and must not escape twice). */
const char *report_run_text(const struct report_run *e, bool escape, char *buf, size_t len);
/* "start", "stop", "unclean_stop", "not_running": the event's name in CSV and JSON. */
const char *report_run_name(enum report_run_kind kind);
/* A duration in words ("1d6h", "5m"); "unknown" if negative. */
const char *report_duration(int64_t seconds, char *buf, size_t len);
/* Flushes out: 0, or -EIO if anything written to it failed. */
int report_finish(FILE *out);
