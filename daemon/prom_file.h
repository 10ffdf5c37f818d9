/* The Prometheus textfile: the daemon's metrics written for node_exporter's textfile collector.
 *
 * Each write renders a struct metrics into a buffer allocated once and replaces the file
 * atomically: the text goes to PATH.tmp in the same directory (node_exporter reads *.prom only,
 * so it never sees a half-written file), which is then renamed over PATH. There is no fsync:
 * the file is rewritten every interval, so after a crash the next write replaces whatever the
 * disk kept, and waiting for the disk would stall the loop for nothing. A write of the usual
 * few kilobytes goes to the page cache and takes tens of microseconds. */
#pragma once
#include <stddef.h>

#include "metrics.h"

struct prom_file;

/* path: the *.prom file. NULL + errno (ENAMETOOLONG, ENOMEM). Touches no file. */
struct prom_file *prom_file_new(const char *path);
/* Accepts NULL. Leaves the file in place (prom_file_remove() takes it away). */
void prom_file_free(struct prom_file *pf);

const char *prom_file_path(const struct prom_file *pf);

/* Renders m and replaces the file with it. Returns 0, or -errno of the step that failed (the
 * previous file, if any, stays as it was; the temporary file is removed). */
int prom_file_write(struct prom_file *pf, const struct metrics *m);
/* Which step the last failed write was at: "create", "write", "rename", "render" ("" if none). */
const char *prom_file_failed_step(const struct prom_file *pf);

/* Removes the file (when the daemon stops or the path changes: metrics of a daemon that is not
 * running would otherwise look current forever). Returns 0 or -errno; a missing file is 0. */
int prom_file_remove(struct prom_file *pf);
