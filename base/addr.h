/* IP addresses and prefixes, parsed once at the edge and never handled as strings after that. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for the longest textual form, "ffff:...:255.255.255.255/128" plus NUL. */
#define ADDR_STRLEN 64

/* family is AF_INET or AF_INET6. An IPv4 address lives in bytes[0..3]; the rest is zero. */
struct addr {
    uint8_t family;
    uint8_t bytes[16];
};

/* An address with its prefix length; host bits are always zero after addr_prefix_parse(). */
struct addr_prefix {
    struct addr addr;
    uint8_t len;
};

/* Parses a numeric IPv4 or IPv6 address of exactly len bytes (no brackets, no scope, no port).
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is folded to IPv4. Returns 0 or -EINVAL. */
int addr_parse(const char *s, size_t len, struct addr *ret_addr);

/* Parses "ADDR" (full-length prefix) or "ADDR/LEN". Host bits set beyond LEN are an error
 * (-EINVAL) unless allow_host_bits, in which case they are cleared. */
int addr_prefix_parse(const char *s, bool allow_host_bits, struct addr_prefix *ret_prefix);

/* The prefix of length len (clamped to the family's maximum) that holds a. */
void addr_prefix_of(const struct addr *a, unsigned len, struct addr_prefix *ret_prefix);

unsigned addr_max_len(const struct addr *a);
bool addr_equal(const struct addr *a, const struct addr *b);
bool addr_prefix_equal(const struct addr_prefix *a, const struct addr_prefix *b);
bool addr_prefix_contains(const struct addr_prefix *p, const struct addr *a);
/* True if inner lies entirely within outer. */
bool addr_prefix_covers(const struct addr_prefix *outer, const struct addr_prefix *inner);
bool addr_is_loopback(const struct addr *a);

/* Writes the address (or "addr/len"; a full-length prefix is written without "/len") into buf.
 * Returns buf, so it can be used inline in a log call. */
const char *addr_format(const struct addr *a, char *buf, size_t buflen);
const char *addr_prefix_format(const struct addr_prefix *p, char *buf, size_t buflen);
