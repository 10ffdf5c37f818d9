/* Trust learned from Asterisk: over an AMI session that is logged in, ask Asterisk which remote
 * addresses it is configured to talk to (PJSIP identify matches, outbound registration servers,
 * static AOR contacts, chan_sip and chan_iax2 peers with a static host), resolve the host names
 * among them without blocking the loop, and hand the complete set over; each new set replaces
 * the last one, so what Asterisk no longer reports is dropped.
 *
 * When: at each login, on every Reload, Load, Unload and FullyBooted event (Asterisk's
 * configuration may have changed), and every refresh period. One refresh at a time, a few
 * actions in flight at once, every answer matched by its ActionID ("pbxguard-trust-G-N"), so
 * the security events keep flowing in between.
 *
 * The AMI user needs "write = system" for the queries (ModuleCheck, PJSIPShow*, SIPpeers,
 * IAXpeerlist) and "read = system" for the Reload events. Without them it logs once what to add
 * to manager.conf and carries on without learning; detection is not affected.
 *
 * The session owns the learner and routes to it the frames it recognizes as its own. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ami_frame.h"
#include "loop.h"
#include "policy.h"

#define AMI_LEARN_ACTION_ID "pbxguard-trust-"
/* Bounds: beyond them a refresh keeps what it has and says so. */
#define AMI_LEARN_ENDPOINTS_MAX 20000
#define AMI_LEARN_ENTRIES_MAX 4096
#define AMI_LEARN_NAMES_MAX 128
/* Prefixes wider than these are never trusted (an identify "match = 0.0.0.0/0" would make
 * every source immune); they are logged instead. */
#define AMI_LEARN_MIN_PREFIX4 16
#define AMI_LEARN_MIN_PREFIX6 32

enum ami_learn_state {
    AMI_LEARN_IDLE = 0,    /* not logged in yet, nothing learned */
    AMI_LEARN_RUNNING,     /* a refresh is in progress */
    AMI_LEARN_OK,          /* the last refresh completed */
    AMI_LEARN_DENIED,      /* the AMI user may not run the queries (manager.conf) */
    AMI_LEARN_UNSUPPORTED, /* the peer does not know the queries (not an Asterisk 12+?) */
    AMI_LEARN_FAILED, /* the last refresh did not complete (timeout); the set before it stays */
};

struct ami_learn_status {
    enum ami_learn_state state;
    unsigned entries;      /* protected prefixes in the set handed over last */
    unsigned unresolved;   /* host names that did not resolve in the last refresh */
    unsigned ignored;      /* prefixes too wide to trust in the last refresh */
    int64_t refreshed_ms;  /* wall clock of the last completed refresh; 0 = never */
    bool reloads_followed; /* system events arrive (read = system): reloads are noticed */
};

struct ami_learn_io {
    /* Queues an action's text on the session. Returns 0, or -1 if the session was torn down
     * (the learner has then been told, through ami_learn_disconnected()). */
    int (*send)(void *data, const char *text, size_t len);
    /* The complete set of one refresh, to replace the last one. */
    void (*learned)(void *data, const struct policy_wl_entry *entries, unsigned n);
    void *data;
};

struct ami_learn;

/* session: "ami:NAME" (labels, log lines); username: for the manager.conf hint. refresh_ms: the
 * period between refreshes (0 = only at login and on reload events). NULL + errno. */
struct ami_learn *ami_learn_new(struct loop *l, const char *session, const char *username,
                                int64_t refresh_ms, struct ami_learn_io io);
void ami_learn_free(struct ami_learn *a); /* accepts NULL */

/* The session logged in: start a refresh. */
void ami_learn_connected(struct ami_learn *a);
/* The session is gone: drop the refresh in progress (the last set stays in force). */
void ami_learn_disconnected(struct ami_learn *a);

/* True if f carries one of our ActionIDs: a response or list event for a trust query. Cheap
 * enough to ask of every frame (looks at the second header only, where Asterisk puts it). */
bool ami_learn_owns(const struct ami_frame *f);
/* Handles a frame for which ami_learn_owns() was true. */
void ami_learn_frame(struct ami_learn *a, const struct ami_frame *f);
/* A system-class event (Privilege holds "system"): notes that reloads can be followed, and
 * Reload, Load, Unload and FullyBooted start a refresh (at most one every few seconds). */
void ami_learn_system_event(struct ami_learn *a, const struct ami_frame *f);

void ami_learn_get_status(const struct ami_learn *a, struct ami_learn_status *ret_status);
/* For tests: how long an answer may take (30 s), the least time between the starts of two
 * refreshes (5 s), and how long a reload event waits for more of its kind (500 ms). */
void ami_learn_set_timing(struct ami_learn *a, int64_t answer_timeout_ms, int64_t spacing_ms,
                          int64_t trigger_delay_ms);
const char *ami_learn_state_name(enum ami_learn_state state);
