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

/* Commits what is pending, stops the sources and closes everything. Accepts NULL. */
void core_free(struct core *c);
