/* The control commands (docs/control-protocol.md): status, ban, unban, list, show, reload,
 * allow, allowlist. The
 * handlers decide through the judge and read through the store like the rest of the core; what
 * only the core knows (the sinks, the AMI sessions, the counters, the reload path) comes in
 * through struct ctl_cmd_ops, so these handlers run the same in pbxguardd (core_ctl.c) and in
 * test programs. */
#pragma once
#include <jansson.h>
#include <stdint.h>

#include "allowlist.h"
#include "config.h"
#include "ctl.h"
#include "judge.h"
#include "policy.h"
#include "store.h"

struct ctl_cmd_ops {
    const struct config *cfg;
    struct store *store;
    struct judge *judge;
    const struct policy *policy;
    int64_t started_ms; /* wall clock when the daemon started */
    int64_t now_ms;     /* wall clock now (loop_wall_ms()) */

    /* Enforces a ban or unban verdict the way the core enforces its own (nftables, meters,
     * log) and commits it at once, to the kernel and to the store. Returns 0, or the kernel's
     * -errno for this verdict's element (e.g. -ENOTEMPTY: an interval set refuses a prefix
     * overlapping another banned prefix); the handler decides what follows. Required. */
    int (*apply)(void *data, const struct verdict *v);
    /* Adds what only the core knows to a status reply: "ami" (array of {name, host, port,
     * state, last_event}), "events_today", "bans_today", "nftables" ({ok, detail}). May be
     * NULL (status then shows no sessions and zero counters). */
    void (*status)(void *data, json_t *reply);
    /* Re-reads the configuration through the daemon's one reload path (the one SIGHUP takes):
     * load, validate, apply, switch over. Returns 0 once the new configuration runs, or -errno
     * with the old one still running, after appending one string per error found in the file
     * to errors (file:line messages). The fields above may be stale once it returns: the
     * handler replies without reading them again. NULL: reload is not offered. */
    int (*reload)(void *data, json_t *errors);
    /* The runtime allowlist (allow, allowlist, show); NULL: those commands are refused. */
    struct allowlist *allow;
    /* Puts prefix into the policy's protected prefixes (added) or takes it out, as the
     * allowlist's entry (POLICY_SRC_ALLOW). Returns 0 or -ENOMEM. Required with allow. */
    int (*allow_changed)(void *data, const struct addr_prefix *prefix, bool added);
    /* Fleet mode: NULL when off, else "connected" or "disconnected" (the link to the shared
     * table now). Bans and unbans say in their reply that they are shared. */
    const char *fleet;
    void *data;
};

/* Answers one control request (the ctl_handler_fn body): a new reply object, never NULL
 * unless out of memory. Library code: logs nothing; the verdicts it applies are logged there.
 * What the peer may do is decided here: root and the daemon's own user (peer->privileged)
 * everything; a member of control_group reads everything, bans, unbans, allows and removes
 * allowed prefixes no wider than [general] group_min_prefix4/6, and may use neither force nor
 * reload. Nobody allows a prefix wider than [protect] min_prefix4/6, the widest ban: an allow
 * that wide would switch protection off for a good part of the Internet. */
json_t *ctl_cmd_dispatch(const struct ctl_cmd_ops *ops, const char *cmd, json_t *req,
                         const struct ctl_peer *peer);
/* Whether cmd answers with a page of a listing (a ctl_paged_fn, for the server's queues). */
bool ctl_cmd_paged(const char *cmd);
/* Whether cmd opens a stream (a ctl_stream_fn): watch. */
bool ctl_cmd_stream(const char *cmd);
