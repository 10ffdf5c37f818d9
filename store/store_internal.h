/* What the store's own files share; nothing outside store/ includes this. */
#pragma once
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The connection, for the store's other query files (store_report.c). */
sqlite3 *store_sqlite(struct store *s);
bool store_is_read_only(const struct store *s);
/* Maps an SQLite result code to the store's -errno (store.h) and keeps SQLite's message for
 * store_errmsg(); 0 for SQLITE_OK, _ROW and _DONE. */
int store_sqlite_error(struct store *s, int rc);
/* Opens the loop turn's transaction on first use (a no-op read-only), as every write needs. */
int store_turn_begin(struct store *s);

/* Ad-hoc statements for queries run once in a while (reports, the daemon's runs): prepares sql
 * and binds the int64 arguments to ?1, ?2, ...; *ret is NULL on failure. */
int store_prepare(struct store *s, sqlite3_stmt **ret, const char *text, int n, ...);
/* Steps once: 1 for a row, 0 when done, -errno on error. */
int store_step(struct store *s, sqlite3_stmt *st);
/* Runs a statement without arguments whose rows, if any, are not wanted. */
int store_run_sql(struct store *s, const char *text);
uint64_t store_column_u64(sqlite3_stmt *st, int i); /* negative reads as 0 */
/* Copies a text column (arbitrary bytes) into buf, cut to fit, and cut at an embedded NUL. */
void store_column_text(sqlite3_stmt *st, int i, char *buf, size_t len);
