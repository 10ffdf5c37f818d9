/* The Prometheus textfile: the daemon's metrics written for node_exporter's textfile collector.
 *
 * Each write renders a struct metrics into a buffer allocated once and replaces the file
 * atomically: the text goes to PATH.tmp in the same directory (node_exporter reads *.prom only,
 * so it never sees a half-written file), which is then renamed over PATH. There is no fsync:
 * the file is rewritten every interval, so after a crash the next write replaces whatever the
 * disk kept, and waiting for the disk would stall the loop for nothing.
 *
 * The loop only renders (prom_file_submit(): a few microseconds, a copy into a buffer it shares
 * with a writer thread); the writer thread does the file system calls. A write usually takes a
 * few hundred microseconds but, on a busy disk, open() and rename() wait on the file system's
 * journal for tens to hundreds of milliseconds (bench/bench_prom.c), which the loop must never
 * do. If a write is still going when the next snapshot comes, the newer one replaces the one
 * waiting: at most one write in progress and one waiting, memory bounded by two buffers. */
#pragma once
#include <stddef.h>

#include "metrics.h"

struct prom_file;

/* path: the *.prom file. NULL + errno (ENAMETOOLONG, ENOMEM). Touches no file. */
struct prom_file *prom_file_new(const char *path);
/* Stops the writer thread, if any (a write in progress is waited for). Accepts NULL. Leaves the
 * file in place (prom_file_remove() takes it away). */
void prom_file_free(struct prom_file *pf);

const char *prom_file_path(const struct prom_file *pf);

/* Renders m and replaces the file with it, in the caller's thread (not while the writer thread
 * runs). Returns 0, or -errno of the step that failed (the previous file, if any, stays as it
 * was; the temporary file is removed). */
int prom_file_write(struct prom_file *pf, const struct metrics *m);
/* Which step the last failed write was at: "create", "write", "rename", "render" ("" if none). */
const char *prom_file_failed_step(const struct prom_file *pf);

/* Removes the file (when the daemon stops or the path changes: metrics of a daemon that is not
 * running would otherwise look current forever), after stopping the writer thread if one runs
 * (a write in progress is waited for). Returns 0 or -errno; a missing file is 0. */
int prom_file_remove(struct prom_file *pf);

/* The writer thread. Returns 0 or -errno (no thread: then write synchronously, or not at all).
 * It runs with every signal blocked (the loop takes them through a signalfd). */
int prom_file_start(struct prom_file *pf);
/* Renders m now, for the writer thread to write; never waits on the file system. Returns 0 or
 * -errno of the rendering. Needs prom_file_start(). */
int prom_file_submit(struct prom_file *pf, const struct metrics *m);
/* The outcome of the writer's last finished write: the number of writes finished so far (0:
 * none yet), with *ret_err its 0 or -errno and *ret_step the failed step ("" if none). */
unsigned long prom_file_last(struct prom_file *pf, int *ret_err, const char **ret_step);
