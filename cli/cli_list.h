/* `pbxguard list`: the daemon answers a page at a time (at most CTL_LIST_PAGE_MAX bans per
 * reply); this follows its cursor for as many bans as were asked (--limit N, or every one with
 * --all), printing each page as it comes, so the CLI's memory stays bounded too. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* request: the list request as cli_args built it; its "limit" is the number of bans wanted
 * (0: all of them; absent: 1000). Prints to out, as text or (json) as one JSON
 * object like a single reply's. Returns 0 with *ret_error NULL when everything was printed;
 * 0 with *ret_error set to the daemon's error reply (to be reported like any other); or
 * -errno from the connection (cli_client.h). */
int cli_list(const char *path, const json_t *request, bool json, FILE *out, json_t **ret_error);

/* Every active ban, page after page over one connection, each ban object (docs/
 * control-protocol.md) handed to fn; fn's non-zero return stops the walk and is returned.
 * ret_total (may be NULL) gets the daemon's count at the first page. Returns 0, the daemon's
 * error reply in *ret_error (as cli_list()), or -errno from the connection. */
typedef int (*cli_list_fn)(void *data, const json_t *ban);
int cli_list_each(const char *path, cli_list_fn fn, void *data, int64_t *ret_total,
                  json_t **ret_error);
