/* Human-readable output of the daemon's replies: aligned, in local time, attacker-controlled
 * text escaped. Pure functions of (reply, now, out) so they are unit-tested. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Prints a successful reply to cmd. now is the current Unix time in seconds (for "ago").
 * Returns 0 or -EIO. */
int cli_format_reply(const char *cmd, const json_t *reply, int64_t now, FILE *out);

/* Prints v as --json does: indented, ASCII only, because attacker text may hold terminal
 * controls: every other character is written \uXXXX, DEL (which jansson leaves as it is)
 * included; DEL can only stand inside a string, where its escape means the same. Each line
 * after the first is indented by indent more spaces; no newline at the end. 0 or -ENOMEM. */
int cli_format_json(const json_t *v, int indent, FILE *out);

/* v as one line of compact JSON, ASCII only as cli_format_json() writes it, and a newline
 * (watch --json: one object per line). 0 or -ENOMEM. */
int cli_format_json_line(const json_t *v, FILE *out);
/* One live view record (watch) as one line of text: local time, source, address, service and
 * event, the account (escaped), the window against the threshold, and what became of it. */
void cli_format_watch(const json_t *rec, FILE *out);

/* `list` a page at a time, for a listing longer than one reply: the header, each page's bans
 * (width: of the PREFIX column), and the closing line (more: bans were left out, of total). */
void cli_format_list_header(int width, FILE *out);
void cli_format_list_rows(const json_t *bans, int width, int64_t now, FILE *out);
void cli_format_list_footer(int64_t shown, int64_t total, bool more, FILE *out);

/* "2026-11-26 10:00:00" in local time; "-" for 0 or less. Returns buf. */
const char *cli_format_time(int64_t unix_s, char *buf, size_t buflen);
/* A message for a terminal: printable ASCII as it is (quotes and backslashes stay readable),
 * every other byte (control, DEL, C1, anything not ASCII) as \xNN; cut to fit buflen. The
 * daemon's error messages go through it, so no control byte reaches a terminal. Returns buf. */
const char *cli_format_safe(const char *s, char *buf, size_t buflen);
/* "512 B", "1.5 KiB", "12.0 MiB". Returns buf. */
const char *cli_format_size(int64_t bytes, char *buf, size_t buflen);
