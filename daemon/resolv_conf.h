/* The nameservers of a resolv.conf file, read the way glibc's resolver reads them (resolv/
 * res_init.c): a line "nameserver ADDR", the keyword at the start of the line and followed by a
 * blank, ADDR up to the next blank, ';' or '#'; lines starting with ';' or '#' are comments;
 * an address that does not parse is skipped. Pure: the caller reads the file. */
#pragma once
#include <stddef.h>

#include "addr.h"

/* The most a caller needs to read: a resolv.conf is a few hundred bytes. */
#define RESOLV_CONF_MAX_BYTES 65536
/* glibc uses the first three; all are kept (up to this many), as each one is a server the host
 * may depend on. */
#define RESOLV_CONF_MAX_SERVERS 16

/* Writes up to max nameserver addresses of buf[0..len) into ret, in file order, duplicates
 * dropped; returns how many. A NUL byte ends its line. A scope ("fe80::1%eth0") is dropped;
 * an IPv4-mapped address counts as IPv4. */
unsigned resolv_conf_parse(const char *buf, size_t len, struct addr *ret, unsigned max);
