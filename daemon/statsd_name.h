/* StatsD metric names and lines: pure string building, no I/O.
 *
 * A StatsD line is `<name>:<value>|<type>`, and several lines share a datagram separated by
 * newlines, so a name must never carry ':', '|', '@', whitespace or a control byte. Service
 * names and addresses come (indirectly) from the network, so every piece is sanitized: a name
 * holds only [A-Za-z0-9_-], '.' where we put a hierarchy separator and '/' in the address form;
 * every other byte becomes '_'. Lengths are bounded.
 *
 * The names of Asterisk's res_auth_stats module, which dashboards consume:
 *   security.failed_auth.<Service>.count
 *   security.failed_auth.<Service>.<address>
 * <address> is the RemoteAddress with the port dropped and the separators made '_':
 *   IPV4/UDP/1_2_3_4          IPV6/UDP/2001_db8__1          IPV6/fe80__1_eth0 (no transport,
 *   link-local with scope "eth0"). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sec_event.h"

/* Longest metric name built, prefix included, and the longest line. */
#define STATSD_NAME_MAX 256
#define STATSD_LINE_MAX (STATSD_NAME_MAX + 32)
/* Longest normalized prefix, trailing '.' included. */
#define STATSD_PREFIX_MAX 64

/* Copies len bytes of in into out as one name segment: bytes outside [A-Za-z0-9_-] (and '.'
 * when keep_dots) become '_'. Cut to fit outlen; always NUL-terminates (outlen > 0). Returns
 * the length written. */
size_t statsd_name_segment(const char *in, size_t len, bool keep_dots, char *out, size_t outlen);

/* Normalizes a configured prefix ("pbxguard", "pbxguard.", "a.b"): sanitized with dots kept,
 * leading/trailing/doubled dots removed, one '.' appended unless empty. Always NUL-terminates. */
void statsd_name_prefix(const char *cfg, char *buf, size_t buflen);

/* Writes the res_auth_stats address form of ep, e.g. "IPV6/UDP/2001_db8__1". Returns its
 * length, -EAFNOSUPPORT for a family other than IPv4/IPv6, -ENOBUFS if buf is too small. */
int statsd_name_address(const struct sec_endpoint *ep, char *buf, size_t buflen);

/* Writes "security.failed_auth.<Service>.count" (ep NULL) or
 * "security.failed_auth.<Service>.<address>". An empty service is written "unknown".
 * Returns the length or -errno as statsd_name_address(). */
int statsd_name_failed_auth(const char *service, const struct sec_endpoint *ep, char *buf,
                            size_t buflen);

/* Writes the line "<prefix><name>:<value>|<type>" (no newline); prefix comes from
 * statsd_name_prefix() (may be ""), type is "c", "m" or "g". The name is passed through the
 * line-safe filter again (bytes outside [A-Za-z0-9_./-] become '_'), so whatever the caller
 * hands in, the line parses. Returns the length, or -ENOBUFS if it does not fit in buflen. */
int statsd_line(char *buf, size_t buflen, const char *prefix, const char *name, int64_t value,
                const char *type);
