/* Human-readable output of the daemon's replies: aligned, in local time, attacker-controlled
 * text escaped. Pure functions of (reply, now, out) so they are unit-tested. */
#pragma once
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

/* Prints a successful reply to cmd. now is the current Unix time in seconds (for "ago").
 * Returns 0 or -EIO. */
int cli_format_reply(const char *cmd, const json_t *reply, int64_t now, FILE *out);

/* "2026-11-26 10:00:00" in local time; "-" for 0 or less. Returns buf. */
const char *cli_format_time(int64_t unix_s, char *buf, size_t buflen);
/* A message for a terminal: printable ASCII as it is (quotes and backslashes stay readable),
 * every other byte (control, DEL, C1, anything not ASCII) as \xNN; cut to fit buflen. The
 * daemon's error messages go through it, so no control byte reaches a terminal. Returns buf. */
const char *cli_format_safe(const char *s, char *buf, size_t buflen);
/* "512 B", "1.5 KiB", "12.0 MiB". Returns buf. */
const char *cli_format_size(int64_t bytes, char *buf, size_t buflen);
