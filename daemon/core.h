/* The core pipeline: sources -> sec_event -> policy -> store -> verdicts -> sinks (nftables,
 * StatsD, log). It owns the store, the nftables layer, the StatsD emitter and the sources.
 * daemon.c owns the process (options, config file, lock, signals, readiness) and drives this. */
#pragma once

#include "config.h"
#include "loop.h"

struct core;

/* Opens the store, sets up nftables (restoring active bans), starts the sources. On failure
 * returns NULL with errno set; the reason has been logged. */
struct core *core_new(struct loop *l, const struct config *cfg);

/* Applies a new, already validated configuration without losing counters or bans. Returns 0,
 * or -errno with the old configuration still running (the reason has been logged). */
int core_reload(struct core *c, const struct config *cfg);

/* The daemon's reload path, the one SIGHUP takes (load and validate the file, core_reload(),
 * switch the configurations over), offered to the control command `reload` so that its reply
 * carries the real outcome. Returns 0, or -errno with the old configuration still running;
 * on_error (may be NULL) gets each error in the file as one message. */
typedef int (*core_reload_fn)(void *data, config_error_fn on_error, void *err_data);
void core_set_reload(struct core *c, core_reload_fn fn, void *data);

/* Why the daemon is stopping ("SIGTERM"; a string that outlives the core), recorded with this
 * run's clean stop by core_free(). Without it the stop is recorded as "exit" ("start failed"
 * if core_new() failed). Accepts NULL. */
void core_stopping(struct core *c, const char *reason);

/* Commits what is pending, stops the sources, records this run's clean stop and closes
 * everything. Accepts NULL. */
void core_free(struct core *c);
