/* The CLI's side of the control socket: requests and their replies over one connection. */
#pragma once
#include <jansson.h>

#define CLI_TIMEOUT_MS 30000

struct cli_conn;

/* Connects to path, waiting at most timeout_ms for a busy daemon's backlog. Returns 0, or
 * -errno: -ENOENT / -ECONNREFUSED (no daemon is listening), -EACCES (the socket's
 * permissions), -ETIMEDOUT, others from the socket calls. */
int cli_client_open(const char *path, int timeout_ms, struct cli_conn **ret_conn);
/* Sends req as one line and reads one reply line, in at most timeout_ms. Returns 0 with the
 * reply object in ret_reply, or -errno: -ETIMEDOUT, -EPROTO (no reply or not a JSON object),
 * others from the socket calls. */
int cli_client_request(struct cli_conn *c, json_t *req, int timeout_ms, json_t **ret_reply);
/* The next line the daemon sends on a stream (watch), waiting as long as it takes. Returns 0
 * with the object in ret_reply, -EINTR when a signal interrupted the wait (nothing lost: call
 * again), -EPROTO when the daemon closed the connection or sent something else than a JSON
 * object, or -errno. */
int cli_client_next(struct cli_conn *c, json_t **ret_reply);
void cli_client_close(struct cli_conn *c); /* accepts NULL */

/* One request on a connection of its own: open, request, close. */
int cli_client_call(const char *path, json_t *req, int timeout_ms, json_t **ret_reply);
