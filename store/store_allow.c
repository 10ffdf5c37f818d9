/* The runtime allowlist's rows (schema 008). A handful of statements per admin command and one
 * walk at the start: prepared when used, not at store_open(). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store_internal.h"

int store_allow_put(struct store *s, const struct store_allow *e)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    char p[ADDR_STRLEN];
    sqlite3_stmt *st = NULL;
    r = store_prepare(s, &st,
                      "INSERT OR REPLACE INTO allowlist (prefix, added_ms, expires_ms, added_by, "
                      "reason) VALUES (?3, ?1, nullif(?2, 0), ?4, nullif(?5, ''))",
                      2, e->added_ms, e->expires_ms);
    if (r == 0) {
        addr_prefix_format(&e->prefix, p, sizeof(p));
        sqlite3_bind_text(st, 3, p, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, e->added_by, (int)strnlen(e->added_by, sizeof(e->added_by)),
                          SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, e->reason, (int)strnlen(e->reason, sizeof(e->reason)),
                          SQLITE_TRANSIENT);
        r = store_step(s, st);
        if (r > 0)
            r = 0;
    }
    sqlite3_finalize(st);
    return r;
}

int store_allow_delete(struct store *s, const struct addr_prefix *prefix)
{
    int r = store_turn_begin(s);
    if (r < 0)
        return r;
    char p[ADDR_STRLEN];
    sqlite3_stmt *st = NULL;
    r = store_prepare(s, &st, "DELETE FROM allowlist WHERE prefix = ?1", 0);
    if (r == 0) {
        addr_prefix_format(prefix, p, sizeof(p));
        sqlite3_bind_text(st, 1, p, -1, SQLITE_TRANSIENT);
        r = store_step(s, st);
        if (r >= 0)
            r = sqlite3_changes(store_sqlite(s)) > 0 ? 0 : -ENOENT;
    }
    sqlite3_finalize(st);
    return r;
}

int store_allow_all(struct store *s, store_allow_fn fn, void *data)
{
    sqlite3_stmt *st = NULL;
    int r = store_prepare(s, &st,
                          "SELECT prefix, added_ms, coalesce(expires_ms, 0), added_by, "
                          "coalesce(reason, '') FROM allowlist",
                          0);
    while (r == 0 && (r = store_step(s, st)) > 0) {
        struct store_allow e;
        memset(&e, 0, sizeof(e));
        r = 0;
        const char *p = (const char *)sqlite3_column_text(st, 0);
        if (!p || addr_prefix_parse(p, false, &e.prefix) < 0)
            continue;
        e.added_ms = sqlite3_column_int64(st, 1);
        e.expires_ms = sqlite3_column_int64(st, 2);
        store_column_text(st, 3, e.added_by, sizeof(e.added_by));
        store_column_text(st, 4, e.reason, sizeof(e.reason));
        r = fn(data, &e);
    }
    sqlite3_finalize(st);
    return r;
}
