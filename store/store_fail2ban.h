/* Reading fail2ban's database (its `bans` table), for `pbxguard import --from-fail2ban`. The
 * file is fail2ban's, not ours: opened read-only (fail2ban may be running and writing it), never
 * migrated, never written. The SQL for it lives here, as all SQL does.
 *
 * fail2ban's schema changed: from its database version 3 (fail2ban 0.11) `bans` has a bantime
 * column (seconds; -1 permanent; -2 unknown, written by fail2ban's own upgrade of an older
 * file); before, it has none, and a ban's length was only in the jail's configuration. Each
 * address appears once per ban fail2ban placed: the latest end of each address counts. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

#define STORE_F2B_IP_MAX 64
#define STORE_F2B_JAIL_MAX 64

struct store_f2b_ban {
    char ip[STORE_F2B_IP_MAX];     /* as fail2ban stored it (untrusted text; cut) */
    char jail[STORE_F2B_JAIL_MAX]; /* the jail of the ban that ends last (cut) */
    bool permanent;                /* bantime -1 */
    bool length_known;             /* false: no bantime column, or -2; until used default */
    int64_t until;                 /* Unix seconds the ban ends, if not permanent */
};

struct store_f2b_info {
    int version;      /* fail2banDb.version, 0 if the table is empty */
    bool has_bantime; /* the bans table has the bantime column */
    uint64_t rows;    /* addresses read */
};

typedef int (*store_f2b_fn)(void *data, const struct store_f2b_ban *ban);

/* Calls fn for every address of path's bans table, its ban's end computed with
 * default_bantime (seconds) where fail2ban did not record one. fn's non-zero return stops
 * the walk and is returned. Errors: -ENOENT, -EACCES; -EUCLEAN not an SQLite file;
 * -EMEDIUMTYPE an SQLite file that is not fail2ban's (no fail2banDb or bans table, or a bans
 * table without jail, ip and timeofban); -EIO, -ENOMEM. err gets SQLite's or our words. */
int store_fail2ban_read(const char *path, int64_t default_bantime, store_f2b_fn fn, void *data,
                        struct store_f2b_info *ret_info, char *err, size_t errlen);
