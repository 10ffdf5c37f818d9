/* What the store's own files share; nothing outside store/ includes this. */
#pragma once
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define STORE_HOUR_MS 3600000LL
/* failures.flags and failure_hours.flags (schema/007-compact.sql, 009-seclog.sql). */
#define STORE_FLAG_WHITELISTED 1
#define STORE_FLAG_BACKFILLED 2

/* The connection, for the store's other query files (store_report.c, store_failures.c). */
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

/* --- store_report.c: the period a report is reading, kept until its snapshot ends --- */
void **store_report_slot(struct store *s);
bool *store_report_hours_only_flag(struct store *s);
void store_report_forget(struct store *s);

/* --- store_wal.c: the checkpointer thread --- */
struct store_wal;
struct store_wal *store_wal_of(struct store *s); /* NULL without STORE_OWN_CHECKPOINTS */
struct store_wal *store_wal_new(const char *path, int *ret_err);
void store_wal_free(struct store_wal *w); /* accepts NULL; stops and joins the thread */

/* --- store_failures.c: failure rows, their roll-ups and dictionaries --- */

struct store_failures;
struct store_failures *store_failures_of(struct store *s);

/* The SQL functions the migrations use to pack old text rows (pbxguard_key(), pbxguard_addr())
 * and the reports to order keys as text (pbxguard_key_text()). */
int store_failures_register(sqlite3 *db);
/* Prepares the statements on a migrated connection. NULL + -errno in *ret_err. */
struct store_failures *store_failures_new(struct store *s, int *ret_err);
void store_failures_free(struct store_failures *f); /* accepts NULL */
/* Writes what the turn kept in memory (the per-hour counts); called just before COMMIT. */
int store_failures_flush(struct store *s);
/* The turn was rolled back: ids cached from it may not exist; forget them. */
void store_failures_lost(struct store_failures *f);
/* Retention for failures: deletes up to max rolled-up rows of hours before cutoff_ms, and the
 * account names and kinds no failure newer than cutoff_ms used. */
int store_failures_prune(struct store *s, int64_t cutoff_ms, unsigned max, unsigned *ret_n);
/* The failure half of store_show(). */
int store_failures_show(struct store *s, const struct addr *a, const struct addr_prefix *key,
                        const struct store_show_fns *fns, void *data,
                        struct store_addr_summary *ret);

/* Packed forms (schema/007-compact.sql). */
#define STORE_KEY_PACKED_MAX 17
size_t store_key_pack(const struct addr_prefix *key, uint8_t out[STORE_KEY_PACKED_MAX]);
int store_key_unpack(const void *blob, size_t n, struct addr_prefix *ret_key);
/* -EINVAL if a does not lie within key. */
int store_addr_pack(const struct addr *a, const struct addr_prefix *key, uint8_t out[16],
                    size_t *ret_n);
int store_addr_unpack(const void *blob, size_t n, const struct addr_prefix *key,
                      struct addr *ret_addr);
