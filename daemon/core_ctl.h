/* The seam between the pipeline (core.c) and its control side (core_ctl.c): the few things the
 * control commands need from the core, and none of its insides. Only those two files include
 * this header. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"

struct allowlist;
struct ami_session;
struct cluster;
struct crowdsec;
struct core;
struct seclog;
struct judge;
struct policy;
struct store;
struct verdict;

/* What a control command reads and decides with. The pointers stay valid until the next
 * reload. */
struct core_view {
    const struct config *cfg;
    struct store *store;
    struct judge *judge;
    const struct policy *policy;
    int64_t started_ms;      /* wall clock */
    int64_t now_ms;          /* the loop's wall clock, this turn */
    struct allowlist *allow; /* the runtime allowlist */
};
void core_view(const struct core *c, struct core_view *ret_view);

/* Enforces a verdict decided outside the event path (a manual ban or unban) as the core
 * enforces its own (nftables, meters, log), then commits at once: the kernel's transaction and
 * the store's turn. Returns 0, or the kernel's -errno for this verdict's element. */
int core_enforce(struct core *c, const struct verdict *v);
/* The runtime allowlist's entry of prefix was added (it is in the list already) or removed:
 * the policy protects it from now on, or no longer; logged. Returns 0 or -ENOMEM. */
int core_allow_changed(struct core *c, const struct addr_prefix *prefix, bool added);
/* Sends what is queued to the kernel and commits the store now, instead of at turn end: a
 * control command replies only once its change is in the kernel and on disk. */
void core_flush(struct core *c);

/* The last restore (at start) or repair of the active bans that finished. */
struct core_restore_report {
    bool done; /* one finished since the start */
    bool repair;
    unsigned long bans; /* installed */
    uint64_t ms;        /* from the first slice to the last */
    unsigned slices;
    uint64_t longest_slice_us;
    uint64_t longest_turn_us; /* the loop's longest turn while it ran */
};

/* Counters and health, for status. */
struct core_health {
    uint64_t events;   /* security events received since the start */
    uint64_t failures; /* of which counted */
    uint64_t bans;
    uint64_t nft_errors, nft_repairs;
    bool nft_open;        /* the nftables layer is open */
    bool nft_ok;          /* and its table is healthy and its commits succeed */
    bool nft_foreign;     /* a table of the configured name is someone else's: not enforcing */
    const char *nft_mode; /* the set layout, when open */
    bool db_failing;
    unsigned nami; /* AMI sessions, in the order of the configuration's [ami:NAME] sections */
    const struct cluster *cluster; /* fleet mode, NULL when off */
    struct crowdsec *crowdsec;     /* [crowdsec], NULL when off */
    bool restoring;                /* the active bans are being (re-)installed, a slice a turn */
    unsigned long restored;        /* so far */
    struct core_restore_report last_restore;
    struct loop_turn_stats loop; /* over the last minute, and since the start */
    uint64_t backfilled;         /* of the events, those read from a security log after the fact */
    unsigned nseclog; /* security log sources, in the order of the [seclog:NAME] sections */
};
void core_health(const struct core *c, struct core_health *ret_health);
const struct ami_session *core_ami_session(const struct core *c, unsigned i); /* i < nami */
const struct seclog *core_seclog(const struct core *c, unsigned i);           /* i < nseclog */

/* Runs the daemon's reload path (core_set_reload()); on_error gets each error in the file.
 * -EOPNOTSUPP when the daemon gave none. */
int core_reload_request(struct core *c, config_error_fn on_error, void *data);

/* core_ctl.c: the control socket, served while the core runs. NULL + errno (logged). */
struct core_ctl;
struct core_ctl *core_ctl_new(struct core *c, struct loop *l, const struct cfg_general *cfg);
void core_ctl_free(struct core_ctl *cc); /* accepts NULL */
/* Whether anyone watches (pbxguard watch): the core builds live view records only then.
 * Accepts NULL (false). */
bool core_ctl_watching(const struct core_ctl *cc);
/* Sends record (consumed; NULL is ignored) to every watcher as one line. */
void core_ctl_watch(struct core_ctl *cc, json_t *record);
