/* pbxguard in a CrowdSec deployment: a watcher that publishes our bans to the Local API (LAPI)
 * as alerts with decisions, and a bouncer that enforces the deployment's decisions in our sets.
 * Both talk HTTP on the daemon's loop (http.h) and never block it.
 *
 * Watcher: logs in (POST /v1/watchers/login) and renews its token before it runs out; each local
 * ban that the core hands to crowdsec_publish() is written to the store's outbox (sink
 * "crowdsec") in the turn that decided it, and sent as one alert (POST /v1/alerts, batched) once
 * LAPI answers; an entry leaves the outbox only when LAPI acknowledged it, so a ban is sent once
 * per acknowledgement, retried after failures and never lost across restarts. A reply lost
 * after LAPI stored the alert makes the retry a duplicate: alerts are not idempotent on LAPI's
 * side, and this is the one case where one ban becomes two alerts.
 *
 * Bouncer: GET /v1/decisions/stream?startup=true (the whole set) at start and after any failed
 * poll, the delta stream every poll_interval otherwise. Decisions are untrusted input: each goes
 * through judge_remote_ban() (the judge's rules for remote bans: protected addresses,
 * [whitelist], the widest prefix, a sane expiry) before nftables, and is stored with its origin
 * "crowdsec:ORIGIN/SCENARIO" so a restart restores it while LAPI is down. A deleted decision
 * lifts our ban only when no other active decision holds the same prefix and the ban is
 * CrowdSec's (a local ban of the same prefix stays). A decision our own watcher published
 * (our scenario, a local ban of that prefix active) is recognized and not applied twice.
 * After a full set, CrowdSec bans no longer in it are lifted. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "judge.h"
#include "loop.h"
#include "statsd.h"
#include "store.h"

struct crowdsec;

/* Hands a verdict (ban or unban, reason VERDICT_REMOTE) to the core's sinks. */
typedef void (*crowdsec_verdict_fn)(void *data, const struct verdict *v);

/* cfg must stay valid until crowdsec_free() or the next crowdsec_reconfigure(). NULL + errno
 * (ENOTSUP: built without libcurl). Starts logging in and polling at once. */
struct crowdsec *crowdsec_new(struct loop *l, const struct cfg_crowdsec *cfg, struct store *store,
                              struct judge *judge, struct statsd *statsd,
                              crowdsec_verdict_fn on_verdict, void *data);
void crowdsec_free(struct crowdsec *cs); /* accepts NULL */
/* After a reload with the same [crowdsec] settings: cfg is the new configuration's copy. */
void crowdsec_set_config(struct crowdsec *cs, const struct cfg_crowdsec *cfg);
/* After a reload: new settings (the connection starts over). Returns 0 or -errno. */
int crowdsec_reconfigure(struct crowdsec *cs, const struct cfg_crowdsec *cfg);

/* A local ban (threshold or manual) to publish: into the outbox now (the turn's transaction),
 * sent soon. Does nothing when publish = no. Returns 0 or a store error. */
int crowdsec_publish(struct crowdsec *cs, const struct verdict *v, int64_t now_ms);

/* Whether a ban's origin is a CrowdSec decision's ("crowdsec:..."). */
bool crowdsec_origin(const char *origin);

struct crowdsec_status {
    bool publish, enforce;
    const char *watcher; /* "up", "connecting", "down", "unauthorized", "off" */
    const char *bouncer;
    char last_error[200]; /* the latest failure, "" if none */
    int64_t last_poll_ms; /* wall clock of the last successful poll, 0 = none yet */
    int64_t last_push_ms; /* of the last acknowledged alert batch */
    uint64_t outbox;      /* alerts waiting */
    uint64_t decisions;   /* decisions known to be active in LAPI (ours included) */
    uint64_t polls, poll_errors, applied, refused, ignored, deleted, ours;
    uint64_t alerts_sent, push_errors, logins, login_errors;
};
void crowdsec_get_status(struct crowdsec *cs, struct crowdsec_status *ret);
