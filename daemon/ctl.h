/* The control socket: a unix stream socket served on the event loop, newline-delimited JSON
 * requests and replies (docs/control-protocol.md). Every connection's peer credentials are
 * checked (root, the daemon's own user, or a member of [general] control_group); requests are
 * capped in size, every client has a deadline, writes never block the loop.
 *
 * No client can stall the loop or starve another: the handlers' time is budgeted per loop turn
 * (CTL_TURN_BUDGET_US), and a request that finds the budget spent waits for a later turn in a
 * queue, light requests ahead of paged ones (ctl_set_paged()); the queued replies of all
 * clients together hold at most CTL_OUT_MAX bytes, and a paged request starts only when a page
 * fits; an unprivileged uid holds at most CTL_CLIENTS_PER_UID connections, and
 * CTL_CLIENTS_RESERVED of the CTL_CLIENTS_MAX slots are kept for root and the daemon's user.
 *
 * A reply is written as soon as the handler returns it: a handler whose change must be done
 * before the client hears back (a ban committed and in the kernel) finishes that work itself
 * instead of leaving it to the turn's end (the core's handler calls core_flush()). */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "ctl_proto.h"
#include "loop.h"

#define CTL_DEADLINE_MS 5000           /* to send a request, or to take a reply */
#define CTL_QUEUE_DEADLINE_MS 20000    /* for a queued request to be answered ("busy" after) */
#define CTL_CLIENTS_MAX 128            /* more root connections wait in the listen backlog */
#define CTL_CLIENTS_RESERVED 16        /* of those, kept for root and the daemon's own user */
#define CTL_CLIENTS_PER_UID 16         /* connections of one unprivileged uid at once */
#define CTL_TURN_BUDGET_US 5000        /* handler time per loop turn before requests wait */
#define CTL_REQUEST_MIN_US 20          /* the least a request counts against the budget */
#define CTL_OUT_MAX (16 * 1024 * 1024) /* bytes of queued replies, all clients together */
/* The most a paged reply (one page of `list`) may hold: its handler stops a page before it
 * would grow past this, and the server starts a paged request only when this much of
 * CTL_OUT_MAX is free. */
#define CTL_PAGE_BYTES_MAX (1024 * 1024)

/* Live view: a client whose request opened a stream (ctl_set_stream(), `watch`) takes no more
 * requests; it gets every line ctl_broadcast() sends, through a buffer of its own of at most
 * CTL_WATCH_BUF_MAX bytes, written without blocking as its socket takes them. One that falls
 * that far behind is dropped: it gets one last line saying so ({"type":"dropped", ...}),
 * and is closed once that is taken or after CTL_DEADLINE_MS. Watchers count against the same
 * connection caps as other clients, so their memory is bounded too. */
#define CTL_WATCH_BUF_MAX (256 * 1024)

struct ctl_peer {
    uid_t uid;
    gid_t gid;
    pid_t pid;
    bool privileged; /* uid 0 or the daemon's own uid: every command; else a control_group
                      * member, whom the commands may restrict (ctl_cmd.c) */
};

/* Answers one request. cmd is req's "cmd" string; req stays owned by the caller. Returns a new
 * reply object ({"ok":true,...} or ctl_error()); NULL is answered as an internal error. */
typedef json_t *(*ctl_handler_fn)(void *data, const char *cmd, json_t *req,
                                  const struct ctl_peer *peer);
/* Whether cmd is paged: its reply may be as large as CTL_PAGE_BYTES_MAX and its work as long
 * as a page's, so it waits behind every light request. */
typedef bool (*ctl_paged_fn)(const char *cmd);

/* Creates the socket at cfg->control_socket (its directory too, if missing) and serves it.
 * A stale socket left by a dead daemon is replaced; a live one is not (-EADDRINUSE); a path
 * that is not a socket is left alone (-EEXIST); an unknown control_group is -ENOENT.
 * Returns NULL with errno set (the caller logs). */
struct ctl *ctl_new(struct loop *l, const struct cfg_general *cfg, ctl_handler_fn handler,
                    void *data);
/* Tells the server which commands are paged (none without it). */
void ctl_set_paged(struct ctl *c, ctl_paged_fn paged);
/* Tells the server which commands open a stream (none without it): after an {"ok":true}
 * reply to one of them the client is a watcher. */
typedef bool (*ctl_stream_fn)(const char *cmd);
void ctl_set_stream(struct ctl *c, ctl_stream_fn stream);
/* Appends one line (len bytes, no newline: one is added) to every watcher's buffer, dropping
 * a watcher it does not fit. Costs a copy per watcher; the writes happen as sockets take them. */
void ctl_broadcast(struct ctl *c, const char *line, size_t len);
struct ctl_watch_stats {
    unsigned watchers; /* now */
    uint64_t dropped;  /* slow watchers dropped since the start */
    uint64_t lines;    /* lines broadcast since the start */
};
void ctl_watch_stats(const struct ctl *c, struct ctl_watch_stats *ret);

/* Closes every client and the listening socket, and removes the socket file. Accepts NULL. */
void ctl_free(struct ctl *c);

/* Number of connected clients (for status and tests). */
unsigned ctl_clients(const struct ctl *c);
/* Bytes of replies queued for all clients, and requests waiting for a later turn (tests). */
size_t ctl_reply_bytes(const struct ctl *c);
unsigned ctl_waiting(const struct ctl *c);

/* {"ok":false,"error":MESSAGE,"code":code}; message is printf-formatted. */
json_t *ctl_error(enum ctl_code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* {"ok":true} */
json_t *ctl_ok(void);
