/* Fleet mode: bans shared between pbxguardd nodes through one PostgreSQL table ([cluster]).
 *
 * The shared table is the truth and NOTIFY only wakes: every node LISTENs, and reads the rows
 * above its cursor (kept in the local store, remote_cursor "cluster") on every (re)connect, on
 * every notification and every catchup_interval. Each row it reads is untrusted input: a ban
 * passes judge_remote_ban() (the local rules) before it reaches the kernel, and is stored with
 * reason STORE_BAN_REMOTE and origin "cluster:NODE"; a refused one is counted and logged
 * (rate-limited), never applied. A tombstone lifts the ban here too (judge_remote_unban()).
 *
 * Local first, shared after: the core enforces and records a local ban as always, then hands it
 * to cluster_local(), which writes it to the store's outbox ("cluster") in the same turn and
 * publishes it once the database answers (at least once; the SQL function makes a re-send
 * harmless). After every (re)connect the node first catches up, then publishes its own active
 * bans again, so a ban an old primary acknowledged but never replicated is back after a
 * failover.
 *
 * One thread: libpq's asynchronous API on the daemon's loop. The node resolves host names
 * itself without blocking (resolver.c) and hands libpq numeric hostaddr values, tries the hosts
 * of the connection string one at a time with its own connect deadline, and drops a query that
 * has no answer by query_timeout. A dead, slow or unreachable database only delays the fleet:
 * local bans and the AMI sessions never wait on it.
 *
 * Built only with libpq (PBXGUARD_HAVE_LIBPQ); without it cluster_new() fails with ENOTSUP. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "judge.h"
#include "loop.h"
#include "statsd.h"
#include "store.h"

/* StatsD meters (under own_prefix). Counters unless noted. */
#define STATSD_M_CLUSTER_PUBLISHED "cluster.published"   /* local changes the table took */
#define STATSD_M_CLUSTER_RECEIVED "cluster.received"     /* others' bans and unbans applied */
#define STATSD_M_CLUSTER_REFUSED "cluster.refused"       /* .<why>: remote bans refused */
#define STATSD_M_CLUSTER_OUTBOX "cluster.outbox"         /* gauge: changes not yet published */
#define STATSD_M_CLUSTER_RECONNECTS "cluster.reconnects" /* links re-established after a loss */
#define STATSD_M_CLUSTER_CONNECTED "cluster.connected"   /* gauge: 1 while connected */

struct cluster;

/* Where the remote verdicts go: the core's sinks, as for its own verdicts (queued for the
 * kernel, committed at the end of the turn). */
struct cluster_sink {
    void (*apply)(void *data, const struct verdict *v);
    /* The addresses of the database servers, whenever they are (re)resolved: they must never be
     * banned here, or the node would cut itself off from the fleet. May be NULL. */
    void (*protect)(void *data, const struct addr *addrs, unsigned n);
    void *data;
};

/* Starts connecting (asynchronously). store, judge and statsd are borrowed and must outlive the
 * cluster; cfg is copied. NULL + errno: ENOTSUP (built without libpq), ENOMEM. */
struct cluster *cluster_new(struct loop *l, const struct cfg_cluster *cfg, struct store *store,
                            struct judge *judge, struct statsd *statsd, struct cluster_sink sink);
void cluster_free(struct cluster *c); /* accepts NULL; closes the link at once */

/* Whether cfg differs from the running one in a way that needs a new link (conninfo, password,
 * node, timeouts); publish, accept and the prefixes apply at once through cluster_reload(). */
bool cluster_needs_restart(const struct cluster *c, const struct cfg_cluster *cfg);
void cluster_reload(struct cluster *c, const struct cfg_cluster *cfg);

/* A verdict the core enforced, decided here (threshold, manual): bans of the reasons listed in
 * publish, and every manual unban, go to the outbox and are published. Remote, restore and
 * protection verdicts are not. Call it in the turn that enforced v. */
void cluster_local(struct cluster *c, const struct verdict *v, int64_t now_ms);

/* Sends what is pending; the core calls it at the end of every turn, after its commits. */
void cluster_turn_end(struct cluster *c);

enum cluster_state {
    CLUSTER_DISCONNECTED = 0, /* waiting to try again */
    CLUSTER_RESOLVING,        /* looking up the host names of the connection string */
    CLUSTER_CONNECTING,       /* a connection attempt runs */
    CLUSTER_SETUP,            /* connected: schema, LISTEN, catch-up, re-publishing */
    CLUSTER_READY,            /* connected and caught up */
};
const char *cluster_state_name(enum cluster_state s);

struct cluster_status {
    enum cluster_state state;
    char host[CFG_HOST_MAX]; /* the host connected to (or tried last): "db1", "/run/postgresql" */
    char hostaddr[64];       /* its address, "" for a socket or unknown */
    char port[16];
    bool primary;         /* the server is not in recovery */
    int64_t connected_ms; /* wall clock of the current link, 0 if none */
    int64_t cursor;       /* the last sequence number read */
    int64_t known_top;    /* the highest sequence number heard of */
    uint64_t outbox;      /* local changes not yet acknowledged */
    uint64_t published, received, refused, reconnects;
    char last_error[256];  /* "" if none since the link came up */
    int64_t last_error_ms; /* wall clock */
    char node[CFG_NODE_MAX];
};
void cluster_get_status(const struct cluster *c, struct cluster_status *ret_status);
