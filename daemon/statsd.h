/* The StatsD emitter: the res_auth_stats meters plus the daemon's own, sent over UDP without
 * ever blocking the loop.
 *
 * Lines are packed into one datagram buffer of max_payload bytes, newline separated; the
 * buffer is sent when the next line would not fit and at statsd_flush(), which the core calls
 * once per loop turn. The socket is a connect()ed, non-blocking UDP socket to the host resolved
 * at statsd_new()/statsd_reload(), never per packet. A datagram the kernel does not take at once
 * (EAGAIN, ECONNREFUSED after an ICMP unreachable, any error) is dropped and counted: memory
 * never grows past one datagram buffer and the per-address set. Names: statsd_name.h. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "sec_event.h"

/* The daemon's own meters, under own_prefix ("pbxguard." by default). Counters unless noted. */
/* bans.<reason>: bans placed, by reason ("policy", "manual", ...). Use statsd_count_by(). */
#define STATSD_M_BANS "bans"
/* unbans.<reason>: bans lifted, by reason ("expired", "manual", ...). Use statsd_count_by(). */
#define STATSD_M_UNBANS "unbans"
/* Gauges: bans active now, by family. */
#define STATSD_M_BANS_ACTIVE_IPV4 "bans.active.ipv4"
#define STATSD_M_BANS_ACTIVE_IPV6 "bans.active.ipv6"
/* events.<EventType>: security events received live, by type (sec_event_type_name()). */
#define STATSD_M_EVENTS "events"
/* ignored.<range>: events from a source that can never be a real one, by its range
 * ("link-local", "unspecified", "multicast", "broadcast", "this-network"): never counted. */
#define STATSD_M_IGNORED "ignored"
/* backfill.events.<EventType>: events read from the security log for a time no AMI session
 * covered (they happened earlier; res_auth_stats' failed_auth meters stay live only). */
#define STATSD_M_BACKFILL_EVENTS "backfill.events"
/* Security log lines that prove no address (counted for nobody), and events the log repeats
 * after AMI delivered them (counted once). */
#define STATSD_M_SECLOG_MALFORMED "seclog.lines_malformed"
#define STATSD_M_SECLOG_DUPLICATES "seclog.duplicates"
/* AMI frames that did not parse / that exceeded the frame size bound. */
#define STATSD_M_AMI_FRAMES_MALFORMED "ami.frames_malformed"
#define STATSD_M_AMI_FRAMES_OVERSIZED "ami.frames_oversized"
/* AMI sessions re-established after a loss. */
#define STATSD_M_AMI_RECONNECTS "ami.reconnects"
/* nftables transactions (or elements) the kernel refused. */
#define STATSD_M_NFT_ERRORS "nft.errors"
/* 1 while bans reach the kernel (our table in place, transactions succeeding), else 0. */
#define STATSD_M_NFT_ENFORCING "nft.enforcing"
/* Store (SQLite) operations that failed. */
#define STATSD_M_DB_ERRORS "db.errors"
/* gauges: the longest loop turn and the 99th percentile of turns over the last 10-20 s, in
 * microseconds */
#define STATSD_M_LOOP_TURN_MAX_US "loop.turn_max_us"
#define STATSD_M_LOOP_TURN_P99_US "loop.turn_p99_us"
/* Ban changes missing from the database's history: made while it failed, past the store's
 * replay journal (store_stats.journal_lost). */
#define STATSD_M_DB_JOURNAL_LOST "db.journal_lost"
/* Emitted by the emitter itself at a flush: metric lines dropped (unsendable datagrams, lines
 * longer than max_payload) and per-address lines suppressed by per_address_limit, since the
 * previous report. */
#define STATSD_M_STATSD_DROPPED "statsd.dropped"
#define STATSD_M_STATSD_SUPPRESSED "statsd.suppressed"

/* Bounds on the configuration the emitter accepts (values outside are clamped). */
#define STATSD_PAYLOAD_MIN 64
#define STATSD_PAYLOAD_MAX 65507 /* the largest UDP payload over IPv4 */
#define STATSD_ADDR_LIMIT_MAX (1u << 20)

struct statsd;

struct statsd_stats {
    uint64_t datagrams_sent;
    uint64_t lines_sent;
    uint64_t datagrams_dropped; /* the kernel did not take them */
    uint64_t lines_dropped;     /* in dropped datagrams, or longer than max_payload */
    uint64_t lines_suppressed;  /* per-address meters over per_address_limit */
    uint64_t send_errno;        /* errno of the last failed send, 0 if none */
    size_t buffered;            /* bytes waiting in the datagram buffer now */
    size_t buffer_size;         /* the buffer's fixed capacity (max_payload) */
};

/* Resolves cfg->host (IPv4, IPv6 or a name; the first address that connects wins) and opens
 * the socket. A server that cannot be connected to yet (no route: the network is not up, a
 * blackhole route) is not an error: its datagrams are dropped and counted, and connect() is
 * retried once per flush interval. With cfg->enabled false, returns an emitter that sends
 * nothing (so a reload can enable it). NULL + errno if the name does not resolve
 * (EHOSTUNREACH) or no socket can be made. */
struct statsd *statsd_new(const struct cfg_statsd *cfg);
void statsd_free(struct statsd *s); /* flushes what is buffered; accepts NULL */

/* Flushes, then applies cfg; the host is resolved again. On failure returns -errno and the
 * previous configuration keeps running. */
int statsd_reload(struct statsd *s, const struct cfg_statsd *cfg);

/* The two res_auth_stats meters for one counted failure: security.failed_auth.<Service>.count
 * and, if per_address, security.failed_auth.<Service>.<address> for the first
 * per_address_limit distinct addresses of each flush interval (the rest are counted in
 * statsd.suppressed). Type c or m as configured, under prefix. */
void statsd_failed_auth(struct statsd *s, const struct sec_event *ev);
/* As statsd_failed_auth() with the monotonic time given (tests, replays). */
void statsd_failed_auth_at(struct statsd *s, const struct sec_event *ev, uint64_t now_ms);

/* The daemon's own meters, under own_prefix: a counter, a counter "<name>.<sub>" (sub made one
 * safe segment, e.g. a ban reason or an event type name), a gauge (absolute; a negative value
 * is sent as 0 followed by the delta, StatsD's way). */
void statsd_count(struct statsd *s, const char *own_name, int64_t v);
void statsd_count_by(struct statsd *s, const char *own_name, const char *sub, int64_t v);
void statsd_gauge(struct statsd *s, const char *own_name, int64_t v);

/* Sends what is buffered (plus the dropped/suppressed report, if any). Once per loop turn. */
void statsd_flush(struct statsd *s);

void statsd_get_stats(const struct statsd *s, struct statsd_stats *ret_stats);

/* Every meter given to the emitter is also kept in m (metrics_family_of_statsd() maps the
 * names), whether StatsD is enabled or not: the Prometheus file sees what StatsD would. m must
 * outlive the emitter; NULL stops it. */
void statsd_set_metrics(struct statsd *s, struct metrics *m);

/* Pure parts, exposed for tests. */

/* Packs lines into one datagram: newline separated, no trailing newline, never over cap. */
struct statsd_pack {
    char *buf;
    size_t cap;
    size_t len;
    unsigned lines;
};
/* Returns 0 (appended), -ENOSPC (does not fit beside what is there: send, reset, retry) or
 * -EMSGSIZE (longer than cap on its own: can never be sent). */
int statsd_pack_add(struct statsd_pack *p, const char *line, size_t len);
void statsd_pack_reset(struct statsd_pack *p);

/* The distinct remote addresses (address + transport) seen in the current flush interval, up to
 * a limit: a fixed open-addressing table, emptied in O(1) when the interval ends. */
struct statsd_addrset;
struct statsd_addrset *statsd_addrset_new(unsigned limit, uint64_t interval_ms); /* NULL+errno */
void statsd_addrset_free(struct statsd_addrset *set);
/* True if ep may have its own meter now: already seen this interval, or a new one within the
 * limit (then remembered). A limit of 0 admits everything and remembers nothing. */
bool statsd_addrset_admit(struct statsd_addrset *set, const struct sec_endpoint *ep,
                          uint64_t now_ms);
