/* The CLI's side of the control socket: one request, one reply. */
#pragma once
#include <jansson.h>

#define CLI_TIMEOUT_MS 30000

/* Connects to path, sends req as one line and reads one reply line (at most timeout_ms in all).
 * Returns 0 with the reply object in ret_reply, or -errno: -ENOENT / -ECONNREFUSED (no daemon
 * is listening), -EACCES (the socket's permissions), -ETIMEDOUT, -EPROTO (no reply or not a
 * JSON object), others from the socket calls. */
int cli_client_call(const char *path, json_t *req, int timeout_ms, json_t **ret_reply);
