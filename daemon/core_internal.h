/* The core's insides, shared by core.c (the pipeline) and core_ctl.c (the control commands).
 * Nothing else includes this. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "loop.h"

struct ami_session;
struct ctl;
struct judge;
struct nftset;
struct policy;
struct statsd;
struct store;
struct verdict;

struct core_stats {
    uint64_t events;   /* security events received from every source */
    uint64_t failures; /* of which counted (weight > 0) */
    uint64_t bans, unbans, expired;
    uint64_t nft_errors, nft_repairs;
    uint64_t db_errors;
};

/* Ban log lines of one turn, written after its nftables commit. */
#define CORE_BAN_LOG_MAX 32

/* Bans the kernel refused in the last nftables commit (a control command reports them back). */
#define CORE_REFUSED_MAX 8
struct core_refused {
    struct addr_prefix prefix;
    int err;
};

struct core {
    struct loop *loop;
    const struct config *cfg; /* the daemon's; replaced by core_reload() */
    int64_t started_ms;       /* wall clock */
    int64_t last_event_ms;
    char findtime_text[32];
    struct core_stats stats;

    struct store *store;
    struct policy *policy;
    struct judge *judge;
    bool db_failing;

    struct nftset *nft;
    struct loop_io nft_io;             /* the monitor socket */
    struct loop_timer nft_check_timer; /* the slow periodic check */
    bool nft_healthy, nft_failing, nft_repair_pending;
    unsigned long restore_count;
    struct core_refused ban_refused[CORE_REFUSED_MAX];
    unsigned nban_refused;
    char ban_log[CORE_BAN_LOG_MAX][256];
    unsigned nban_log;
    unsigned long ban_log_dropped;

    struct statsd *statsd;

    struct ami_session **ami;
    unsigned nami;
    struct addr *ami_peer; /* whitelisted peer address per session */
    bool *ami_peer_known;
    uint64_t *ami_reconnects, *ami_discarded; /* last seen counters, for meters/incidents */

    struct ctl *ctl;
    struct loop_timer maint_timer;
    uint64_t next_prune_ms;
    uint64_t next_gauge_ms;
    uint64_t active_v4, active_v6; /* active bans, recounted every few seconds */
};

/* Queues a verdict decided outside the event path (a manual ban or unban) for the sinks. */
void core_apply_verdict(struct core *c, const struct verdict *v);
/* Sends the queued nftables elements and commits the store now, instead of at turn end: a
 * control command replies only once its change is in the kernel and on disk. */
void core_flush(struct core *c);

/* core_ctl.c: the control socket, served while the core runs. */
int core_ctl_start(struct core *c); /* 0 or -errno (logged) */
void core_ctl_stop(struct core *c); /* accepts a core without a socket */
