/* What the store's own files share; nothing outside store/ includes this. */
#pragma once
#include <sqlite3.h>

#include "store.h"

/* The connection, for the store's other query files (store_report.c). */
sqlite3 *store_sqlite(struct store *s);
bool store_is_read_only(const struct store *s);
/* Maps an SQLite result code to the store's -errno (store.h) and keeps SQLite's message for
 * store_errmsg(); 0 for SQLITE_OK, _ROW and _DONE. */
int store_sqlite_error(struct store *s, int rc);
