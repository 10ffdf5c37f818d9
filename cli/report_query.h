/* The report's query layer: reads the daemon's SQLite database read-only and fills a struct
 * report. It works while the daemon writes (WAL readers never block the writer) and when the
 * daemon is stopped. */
#pragma once
#include <stdint.h>

#include "report.h"

struct report_db;

/* Opens path read-only with a busy timeout. Returns 0, -ENOENT (no such file), -EACCES,
 * -EUCLEAN (not an SQLite database) or -EIO. */
int report_db_open(const char *path, struct report_db **ret_db);
void report_db_close(struct report_db *db); /* accepts NULL */

/* The file's schema version (PRAGMA user_version). */
int report_db_version(const struct report_db *db);
/* Whether this binary can report on the file: 0, -ENODATA (version 0: an empty file that
 * pbxguardd never initialized) or -EPROTONOSUPPORT (a schema newer than this binary knows). */
int report_db_check(const struct report_db *db);
/* The last SQLite message, for the one line the caller prints; "" if none. */
const char *report_db_errmsg(const struct report_db *db);

/* Fills r, already report_init()ed with the period, from the database. now (Unix seconds) is
 * the moment "current" ban states refer to; top bounds each list. Returns 0, -ENOMEM, or -EIO
 * (SQLite error, see report_db_errmsg()). On failure r holds what was filled so far. */
int report_db_fill(struct report_db *db, struct report *r, int64_t now, unsigned top);
