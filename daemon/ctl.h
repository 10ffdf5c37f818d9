/* The control socket: a unix stream socket served on the event loop, newline-delimited JSON
 * requests and replies (docs/control-protocol.md). Every connection's peer credentials are
 * checked (root, the daemon's own user, or a member of [general] control_group); requests are
 * capped in size, every client has a deadline, writes never block the loop.
 *
 * A reply is written as soon as the handler returns it: a handler whose change must be done
 * before the client hears back (a ban committed and in the kernel) finishes that work itself
 * instead of leaving it to the turn's end (the core's handler calls core_flush()). */
#pragma once
#include <jansson.h>
#include <sys/types.h>

#include "config.h"
#include "ctl_proto.h"
#include "loop.h"

#define CTL_DEADLINE_MS 5000 /* to send a request, or to take a reply */
#define CTL_CLIENTS_MAX 64   /* more wait in the listen backlog (256) */

struct ctl_peer {
    uid_t uid;
    gid_t gid;
    pid_t pid;
};

/* Answers one request. cmd is req's "cmd" string; req stays owned by the caller. Returns a new
 * reply object ({"ok":true,...} or ctl_error()); NULL is answered as an internal error. */
typedef json_t *(*ctl_handler_fn)(void *data, const char *cmd, json_t *req,
                                  const struct ctl_peer *peer);

/* Creates the socket at cfg->control_socket (its directory too, if missing) and serves it.
 * A stale socket left by a dead daemon is replaced; a live one is not (-EADDRINUSE); a path
 * that is not a socket is left alone (-EEXIST); an unknown control_group is -ENOENT.
 * Returns NULL with errno set (the caller logs). */
struct ctl *ctl_new(struct loop *l, const struct cfg_general *cfg, ctl_handler_fn handler,
                    void *data);
/* Closes every client and the listening socket, and removes the socket file. Accepts NULL. */
void ctl_free(struct ctl *c);

/* Number of connected clients (for status and tests). */
unsigned ctl_clients(const struct ctl *c);

/* {"ok":false,"error":MESSAGE,"code":code}; message is printf-formatted. */
json_t *ctl_error(enum ctl_code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* {"ok":true} */
json_t *ctl_ok(void);
