/* pbxguard watch: the live view, a stream of records over one control connection. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* Sends req (a "watch" request) on a connection to path and prints every record as it comes:
 * one JSON object per line (json, ASCII only) or one line of text. Runs until the daemon
 * closes the stream or SIGINT/SIGTERM arrives. Returns the exit code; *ret_reply gets an
 * error reply the daemon sent (for the caller to print), else NULL. -errno from the socket
 * calls before the stream started (as cli_client_call() does). */
int cli_watch(const char *path, json_t *req, bool json, FILE *out, json_t **ret_reply);
