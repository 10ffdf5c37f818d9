#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "store_fail2ban.h"

static int sql_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return -EUCLEAN;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_NOMEM:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

static bool table_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/* Which of jail, ip, timeofban, bantime the bans table has: bit 0..3. */
static unsigned bans_columns(sqlite3 *db)
{
    static const char *const want[] = {"jail", "ip", "timeofban", "bantime"};
    sqlite3_stmt *st;
    unsigned have = 0;
    if (sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('bans')", -1, &st, NULL) !=
        SQLITE_OK)
        return 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *n = (const char *)sqlite3_column_text(st, 0);
        for (unsigned i = 0; n && i < 4; i++)
            if (strcmp(n, want[i]) == 0)
                have |= 1u << i;
    }
    sqlite3_finalize(st);
    return have;
}

static void copy_text(char *dst, size_t len, const unsigned char *src)
{
    snprintf(dst, len, "%s", src ? (const char *)src : "");
}

int store_fail2ban_read(const char *path, int64_t default_bantime, store_f2b_fn fn, void *data,
                        struct store_f2b_info *ret_info, char *err, size_t errlen)
{
    struct store_f2b_info info = {0};
    struct stat sb;
    err[0] = '\0';
    /* SQLite would say "unable to open" for both; the admin wants to know which. */
    if (stat(path, &sb) < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -errno;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        return -EUCLEAN;
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return sql_errno(rc);
    }
    /* fail2ban writes with a rollback journal and short transactions: wait for one. */
    sqlite3_busy_timeout(db, 5000);
    int r = 0;
    /* The first read says whether this is SQLite at all. */
    rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        sqlite3_close(db);
        return sql_errno(rc);
    }
    unsigned cols = bans_columns(db);
    if (!table_exists(db, "fail2banDb") || !table_exists(db, "bans") || (cols & 7) != 7) {
        snprintf(err, errlen,
                 "an SQLite database, but not fail2ban's (it has no fail2banDb "
                 "table, or no bans table with jail, ip and timeofban)");
        sqlite3_close(db);
        return -EMEDIUMTYPE;
    }
    info.has_bantime = cols & 8;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT version FROM fail2banDb LIMIT 1", -1, &st, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            info.version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    /* Each ban's end: timeofban + bantime; -1 permanent; -2 (fail2ban's "unknown") and a file
     * without the column take the default. The latest end per address wins. */
    const char *sql =
        info.has_bantime
            ? "SELECT ip, jail, max(CASE WHEN bantime = -1 THEN 9223372036854775807 "
              "WHEN bantime < 0 THEN timeofban + ?1 ELSE timeofban + bantime END) AS until, "
              "max(bantime = -1), min(bantime >= -1) "
              "FROM bans WHERE ip IS NOT NULL GROUP BY ip ORDER BY ip"
            : "SELECT ip, jail, max(timeofban + ?1) AS until, 0, 0 "
              "FROM bans WHERE ip IS NOT NULL GROUP BY ip ORDER BY ip";
    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        sqlite3_close(db);
        return sql_errno(rc);
    }
    sqlite3_bind_int64(st, 1, default_bantime);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_f2b_ban b = {0};
        copy_text(b.ip, sizeof(b.ip), sqlite3_column_text(st, 0));
        copy_text(b.jail, sizeof(b.jail), sqlite3_column_text(st, 1));
        b.until = sqlite3_column_int64(st, 2);
        b.permanent = sqlite3_column_int(st, 3) != 0;
        b.length_known = sqlite3_column_int(st, 4) != 0;
        if (b.permanent)
            b.until = 0;
        info.rows++;
        r = fn(data, &b);
        if (r)
            break;
    }
    if (!r && rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        r = sql_errno(rc);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (ret_info)
        *ret_info = info;
    return r;
}
