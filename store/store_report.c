/* The report's queries. Every value goes in as a bound parameter; the statements are prepared
 * per call (a report runs them once), not at store_open(), so the daemon never pays for them.
 *
 * A period's failures are the raw rows of the period (the recent past: the raw table holds a
 * few hours, read whole) and the rolled-up hours of the period (failure_hours is clustered on
 * the hour: only the period's hours are read). A rolled-up row counts in the period when its
 * first failure does. They are read once (below); then come an indexed lookup per listed key,
 * one scan of failure_keys (one row per key) for the new sources, and scans of the (much
 * smaller) bans table (bench/bench_report times it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "store_report.h"

int store_snapshot_begin(struct store *s)
{
    if (!store_is_read_only(s))
        return -EINVAL;
    if (!sqlite3_get_autocommit(store_sqlite(s)))
        return 0; /* already open */
    return store_run_sql(s, "BEGIN");
}

void store_snapshot_end(struct store *s)
{
    store_report_forget(s);
    sqlite3 *db = store_sqlite(s);
    if (store_is_read_only(s) && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

/* --- one pass over the period's failures --------------------------------------------------
 *
 * Every figure of the period that needs all its failures comes from one scan of them (the raw
 * rows of the period, then its rolled-up hours, in the hours' order), aggregated here in hash
 * tables: per kind and time bucket, per key, per account, and the (account, key) pairs for the
 * distinct sources of the top accounts. SQL's GROUP BY would sort every row three times. The
 * result is kept on the store for the calls that follow within the same snapshot. */

#define DAY_MS (24 * STORE_HOUR_MS)

static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

void store_report_hours_only(struct store *s, bool hours_only)
{
    store_report_forget(s);
    *store_report_hours_only_flag(s) = hours_only;
}

/* Ids below this are counted in arrays (8 bytes each) rather than hash tables. */
#define DENSE_MAX (4 << 20)

struct pkey {
    uint8_t key[STORE_KEY_PACKED_MAX];
    uint8_t klen;
    uint64_t n;
    int64_t first_ms, last_ms;
    const char *text; /* for the order of ties, filled after the pass */
};

struct pacct {
    int64_t id;
    uint64_t n;
};

struct pbucket {
    int64_t kind, bucket;
    uint64_t n;
    uint64_t backfilled; /* of the n, those flagged STORE_FLAG_BACKFILLED */
};

struct ppair {
    int64_t account;
    uint32_t key;
};

/* An open-addressing table of indexes into a dense array. */
struct pindex {
    uint32_t *slot; /* index + 1; 0 = free */
    size_t cap;     /* a power of two */
};

struct store_period {
    int64_t from_ms, to_ms, bucket0_ms, bucket_ms;
    int64_t day0, day1; /* the whole days [day0, day1) read from the daily tier */
    struct pkey *keys;
    size_t nkeys, keys_cap;
    uint64_t *key_slot; /* the hash's high half << 32 | index + 1; 0 = free */
    size_t key_cap;     /* a power of two */
    char (*texts)[ADDR_STRLEN];
    struct pacct *accounts;
    size_t naccounts, accounts_cap;
    struct pindex account_index;
    struct pbucket *buckets;
    size_t nbuckets, buckets_cap;
    struct pindex bucket_index;
    struct ppair *pairs;
    size_t npairs, pairs_cap;
};

static void period_free(struct store_period *p)
{
    if (!p)
        return;
    free(p->keys);
    free(p->key_slot);
    free(p->texts);
    free(p->accounts);
    free(p->account_index.slot);
    free(p->buckets);
    free(p->bucket_index.slot);
    free(p->pairs);
    free(p);
}

void store_report_forget(struct store *s)
{
    void **slot = store_report_slot(s);
    period_free(*slot);
    *slot = NULL;
}

static uint64_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Keys are 4 to 17 bytes: two words and the length, mixed. */
static uint64_t hash_key(const uint8_t *k, size_t n)
{
    uint64_t a = 0, b = 0;
    memcpy(&a, k, n < 8 ? n : 8);
    if (n > 8)
        memcpy(&b, k + 8, n - 8 < 8 ? n - 8 : 8);
    return hash64(a ^ hash64(b + n) ^ (n > 16 ? k[16] : 0));
}

/* Grows a dense array to hold one more element. */
static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 1024;
    void *m = realloc(*arr, c * size);
    if (!m)
        return -ENOMEM;
    *arr = m;
    *cap = c;
    return 0;
}

/* Makes room in an index for n + 1 entries (half full at most), rehashing with hash_of. */
static int index_room(struct pindex *ix, size_t n, uint64_t (*hash_of)(const void *, uint32_t),
                      const void *arr)
{
    if ((n + 1) * 2 <= ix->cap)
        return 0;
    size_t cap = ix->cap ? ix->cap * 2 : 2048;
    uint32_t *slot = calloc(cap, sizeof(*slot));
    if (!slot)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        size_t at = hash_of(arr, i) & (cap - 1);
        while (slot[at])
            at = (at + 1) & (cap - 1);
        slot[at] = i + 1;
    }
    free(ix->slot);
    ix->slot = slot;
    ix->cap = cap;
    return 0;
}

static uint64_t account_hash_of(const void *arr, uint32_t i)
{
    return hash64((uint64_t)((const struct pacct *)arr)[i].id);
}

static uint64_t bucket_hash_of(const void *arr, uint32_t i)
{
    const struct pbucket *b = &((const struct pbucket *)arr)[i];
    return hash64((uint64_t)b->kind * 0x9e3779b97f4a7c15ULL + (uint64_t)b->bucket);
}

/* The period's keys: an open-addressing table whose slots carry part of the hash, so a probe
 * rarely touches a key that is not the one looked for. */
static int period_key(struct store_period *p, const void *key, size_t klen, uint32_t *ret)
{
    if (klen > STORE_KEY_PACKED_MAX)
        klen = STORE_KEY_PACKED_MAX;
    uint64_t h = hash_key(key, klen), tag = h >> 32 << 32;
    if (p->key_cap) {
        for (size_t at = h & (p->key_cap - 1); p->key_slot[at]; at = (at + 1) & (p->key_cap - 1)) {
            uint64_t e = p->key_slot[at];
            if ((e & 0xffffffff00000000ULL) != tag)
                continue;
            uint32_t i = (uint32_t)e - 1;
            if (p->keys[i].klen == klen && memcmp(p->keys[i].key, key, klen) == 0) {
                *ret = i;
                return 0;
            }
        }
    }
    if ((p->nkeys + 1) * 2 > p->key_cap) {
        size_t cap = p->key_cap ? p->key_cap * 2 : 4096;
        uint64_t *slot = calloc(cap, sizeof(*slot));
        if (!slot)
            return -ENOMEM;
        for (size_t i = 0; i < p->key_cap; i++) {
            if (!p->key_slot[i])
                continue;
            const struct pkey *k = &p->keys[(uint32_t)p->key_slot[i] - 1];
            size_t at = hash_key(k->key, k->klen) & (cap - 1);
            while (slot[at])
                at = (at + 1) & (cap - 1);
            slot[at] = p->key_slot[i];
        }
        free(p->key_slot);
        p->key_slot = slot;
        p->key_cap = cap;
    }
    if (grow((void **)&p->keys, &p->keys_cap, p->nkeys, sizeof(*p->keys)) < 0)
        return -ENOMEM;
    struct pkey *k = &p->keys[p->nkeys];
    memset(k, 0, sizeof(*k));
    memcpy(k->key, key, klen);
    k->klen = (uint8_t)klen;
    size_t at = h & (p->key_cap - 1);
    while (p->key_slot[at])
        at = (at + 1) & (p->key_cap - 1);
    p->key_slot[at] = tag | (uint32_t)++p->nkeys;
    *ret = (uint32_t)(p->nkeys - 1);
    return 0;
}

/* The index of a key the pass found, UINT32_MAX for one it did not. */
static uint32_t period_find_key(const struct store_period *p, const void *key, size_t klen)
{
    if (klen > STORE_KEY_PACKED_MAX || !p->key_cap)
        return UINT32_MAX;
    uint64_t h = hash_key(key, klen), tag = h >> 32 << 32;
    for (size_t at = h & (p->key_cap - 1); p->key_slot[at]; at = (at + 1) & (p->key_cap - 1)) {
        uint64_t e = p->key_slot[at];
        uint32_t i = (uint32_t)e - 1;
        if ((e & 0xffffffff00000000ULL) == tag && p->keys[i].klen == klen &&
            memcmp(p->keys[i].key, key, klen) == 0)
            return i;
    }
    return UINT32_MAX;
}

static int period_account(struct store_period *p, int64_t id, uint64_t n)
{
    uint64_t h = hash64((uint64_t)id);
    if (p->account_index.cap) {
        for (size_t at = h & (p->account_index.cap - 1); p->account_index.slot[at];
             at = (at + 1) & (p->account_index.cap - 1)) {
            struct pacct *a = &p->accounts[p->account_index.slot[at] - 1];
            if (a->id == id) {
                a->n += n;
                return 0;
            }
        }
    }
    if (index_room(&p->account_index, p->naccounts, account_hash_of, p->accounts) < 0 ||
        grow((void **)&p->accounts, &p->accounts_cap, p->naccounts, sizeof(*p->accounts)) < 0)
        return -ENOMEM;
    p->accounts[p->naccounts] = (struct pacct){id, n};
    size_t at = h & (p->account_index.cap - 1);
    while (p->account_index.slot[at])
        at = (at + 1) & (p->account_index.cap - 1);
    p->account_index.slot[at] = (uint32_t)++p->naccounts;
    return 0;
}

static int period_bucket(struct store_period *p, int64_t kind, int64_t bucket, uint64_t n,
                         uint64_t backfilled)
{
    struct pbucket probe = {kind, bucket, 0, 0};
    uint64_t h = bucket_hash_of(&probe, 0);
    if (p->bucket_index.cap) {
        for (size_t at = h & (p->bucket_index.cap - 1); p->bucket_index.slot[at];
             at = (at + 1) & (p->bucket_index.cap - 1)) {
            struct pbucket *b = &p->buckets[p->bucket_index.slot[at] - 1];
            if (b->kind == kind && b->bucket == bucket) {
                b->n += n;
                b->backfilled += backfilled;
                return 0;
            }
        }
    }
    if (index_room(&p->bucket_index, p->nbuckets, bucket_hash_of, p->buckets) < 0 ||
        grow((void **)&p->buckets, &p->buckets_cap, p->nbuckets, sizeof(*p->buckets)) < 0)
        return -ENOMEM;
    p->buckets[p->nbuckets] = (struct pbucket){kind, bucket, n, backfilled};
    size_t at = h & (p->bucket_index.cap - 1);
    while (p->bucket_index.slot[at])
        at = (at + 1) & (p->bucket_index.cap - 1);
    p->bucket_index.slot[at] = (uint32_t)++p->nbuckets;
    return 0;
}

/* The period's aggregates: the ones already made in this snapshot, or a new pass. bucket_ms 0
 * leaves the buckets out (a caller that does not need them). */
static int period_get(struct store *s, int64_t from_ms, int64_t to_ms, int64_t bucket0_ms,
                      int64_t bucket_ms, struct store_period **ret)
{
    struct store_period **slot = (struct store_period **)store_report_slot(s);
    struct store_period *p = *slot;
    if (p && p->from_ms == from_ms && p->to_ms == to_ms &&
        (bucket_ms == 0 || (p->bucket0_ms == bucket0_ms && p->bucket_ms == bucket_ms))) {
        *ret = p;
        return 0;
    }
    store_report_forget(s);
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    *p = (struct store_period){
        .from_ms = from_ms, .to_ms = to_ms, .bucket0_ms = bucket0_ms, .bucket_ms = bucket_ms};
    /* Accounts and (kind, bucket) pairs are counted in plain arrays when their ids are small,
     * as they are (AUTOINCREMENT ids: a few thousand names, a handful of kinds); past that, in
     * hash tables. */
    int64_t max_account = 0, max_kind = 0;
    sqlite3_stmt *mx = NULL;
    int rc = store_prepare(s, &mx,
                           "SELECT (SELECT coalesce(max(id), 0) FROM accounts), "
                           "(SELECT coalesce(max(id), 0) FROM failure_kinds)",
                           0);
    if (rc == 0 && (rc = store_step(s, mx)) > 0) {
        max_account = sqlite3_column_int64(mx, 0);
        max_kind = sqlite3_column_int64(mx, 1);
        rc = 0;
    }
    sqlite3_finalize(mx);
    int64_t nb = bucket_ms > 0 ? (to_ms - bucket0_ms + bucket_ms - 1) / bucket_ms : 0;
    uint64_t *acct_n = NULL, *kind_n = NULL, *kind_bf = NULL;
    if (rc == 0 && max_account >= 0 && max_account < DENSE_MAX)
        acct_n = calloc((size_t)max_account + 1, sizeof(*acct_n));
    if (rc == 0 && nb > 0 && max_kind >= 0 && (max_kind + 1) * nb < DENSE_MAX) {
        kind_n = calloc((size_t)((max_kind + 1) * nb), sizeof(*kind_n));
        kind_bf = calloc((size_t)((max_kind + 1) * nb), sizeof(*kind_bf));
        if (!kind_n || !kind_bf) {
            free(kind_n);
            free(kind_bf);
            kind_n = kind_bf = NULL;
        }
    }
    /* The whole UTC days of the period are read from the daily tier: the days the retention
     * has not cut into (failure_retention), and only when the buckets fall on
     * whole hours (an hourly row counts in the bucket of its first failure; on a grid of whole
     * hours that is its own hour's, which is what failure_kind_hours keeps). */
    int64_t day0 = 0, day1 = 0;
    if (rc == 0 && !*store_report_hours_only_flag(s) &&
        (bucket_ms == 0 || (bucket0_ms % STORE_HOUR_MS == 0 && bucket_ms % STORE_HOUR_MS == 0))) {
        day0 = floor_div(from_ms + DAY_MS - 1, DAY_MS);
        day1 = floor_div(to_ms, DAY_MS);
        sqlite3_stmt *pruned = NULL;
        rc = store_prepare(s, &pruned, "SELECT before_hour FROM failure_retention", 0);
        if (rc == 0 && (rc = store_step(s, pruned)) > 0) {
            int64_t first = floor_div(sqlite3_column_int64(pruned, 0) + 23, 24);
            if (day0 < first)
                day0 = first;
            rc = 0;
        } else if (rc == 0) {
            day1 = day0; /* no row: never written by this schema */
        }
        sqlite3_finalize(pruned);
        if (day1 < day0)
            day1 = day0;
    }
    p->day0 = day0;
    p->day1 = day1;
    /* Plain scans, each read once (a UNION would copy every value through a co-routine): the
     * raw rows; the hourly rows of the hours that can hold a failure of the period outside the
     * whole days (the first failure of each row decides, below); the whole days' sources,
     * accounts and kinds. */
    enum { RAW, HOURS, KEY_DAYS, ACCOUNT_DAYS, KIND_HOURS };
    static const char *const sql[] = {
        [RAW] = "SELECT key, kind, account, 1, ts_ms, 0, 0, flags FROM failures WHERE "
                "ts_ms >= ?1 AND ts_ms < ?2",
        [HOURS] = "SELECT key, kind, account, n, hour, first_off, last_off, flags FROM "
                  "failure_hours WHERE hour >= ?1 AND hour < ?2",
        [KEY_DAYS] = "SELECT key, n, day, first_off, last_off FROM failure_key_days WHERE "
                     "day >= ?1 AND day < ?2",
        [ACCOUNT_DAYS] = "SELECT account, n FROM failure_account_days WHERE day >= ?1 AND "
                         "day < ?2",
        [KIND_HOURS] = "SELECT hour, kind, flags, n FROM failure_kind_hours WHERE hour >= ?1 "
                       "AND hour < ?2",
    };
    int64_t hour_lo = from_ms / STORE_HOUR_MS - 1, hour_hi = to_ms / STORE_HOUR_MS + 1;
    struct scan {
        int what;
        int64_t a, b;
    } scans[6];
    int nscans = 0;
    scans[nscans++] = (struct scan){RAW, from_ms, to_ms};
    if (day0 < day1) {
        scans[nscans++] = (struct scan){HOURS, hour_lo, day0 * 24};
        scans[nscans++] = (struct scan){HOURS, day1 * 24, hour_hi};
        scans[nscans++] = (struct scan){KEY_DAYS, day0, day1};
        scans[nscans++] = (struct scan){ACCOUNT_DAYS, day0, day1};
        if (bucket_ms > 0)
            scans[nscans++] = (struct scan){KIND_HOURS, day0 * 24, day1 * 24};
    } else {
        scans[nscans++] = (struct scan){HOURS, hour_lo, hour_hi};
    }
    uint32_t last_k = UINT32_MAX; /* rows of one key often come together */
    for (int q = 0; rc == 0 && q < nscans; q++) {
        int what = scans[q].what;
        sqlite3_stmt *st = NULL;
        rc = store_prepare(s, &st, sql[what], 2, scans[q].a, scans[q].b);
        while (rc == 0 && (rc = store_step(s, st)) > 0) {
            rc = 0;
            if (what == ACCOUNT_DAYS) {
                int64_t account = sqlite3_column_int64(st, 0);
                uint64_t n = store_column_u64(st, 1);
                if (acct_n && account > 0 && account <= max_account)
                    acct_n[account] += n;
                else
                    rc = period_account(p, account, n);
                continue;
            }
            if (what == KIND_HOURS) {
                int64_t kind = sqlite3_column_int64(st, 1);
                int64_t b = (sqlite3_column_int64(st, 0) * STORE_HOUR_MS - bucket0_ms) / bucket_ms;
                uint64_t n = store_column_u64(st, 3);
                uint64_t bf = sqlite3_column_int64(st, 2) & STORE_FLAG_BACKFILLED ? n : 0;
                if (kind_n && kind >= 0 && kind <= max_kind && b >= 0 && b < nb) {
                    kind_n[kind * nb + b] += n;
                    kind_bf[kind * nb + b] += bf;
                } else {
                    rc = period_bucket(p, kind, b, n, bf);
                }
                continue;
            }
            int64_t first, last;
            uint64_t n;
            if (what == KEY_DAYS) {
                int64_t base = sqlite3_column_int64(st, 2) * DAY_MS;
                n = store_column_u64(st, 1);
                first = base + sqlite3_column_int64(st, 3);
                last = base + sqlite3_column_int64(st, 4);
            } else {
                n = store_column_u64(st, 3);
                first = last = sqlite3_column_int64(st, 4);
                if (what == HOURS) {
                    int64_t base = first * STORE_HOUR_MS;
                    first = base + sqlite3_column_int64(st, 5);
                    last = base + sqlite3_column_int64(st, 6);
                    if (first < from_ms || first >= to_ms)
                        continue;
                }
            }
            const void *kb = sqlite3_column_blob(st, 0);
            size_t kl = (size_t)sqlite3_column_bytes(st, 0);
            uint32_t k = last_k;
            if (k == UINT32_MAX || p->keys[k].klen != kl || memcmp(p->keys[k].key, kb, kl) != 0) {
                if ((rc = period_key(p, kb, kl, &k)) < 0)
                    break;
                last_k = k;
            }
            struct pkey *pk = &p->keys[k];
            if (pk->n == 0 || first < pk->first_ms)
                pk->first_ms = first;
            if (pk->n == 0 || last > pk->last_ms)
                pk->last_ms = last;
            pk->n += n;
            if (what == KEY_DAYS)
                continue;
            int64_t account = sqlite3_column_int64(st, 2);
            if (account) {
                if (acct_n && account > 0 && account <= max_account)
                    acct_n[account] += n;
                else
                    rc = period_account(p, account, n);
                if (rc == 0)
                    rc = grow((void **)&p->pairs, &p->pairs_cap, p->npairs, sizeof(*p->pairs));
                if (rc < 0)
                    break;
                p->pairs[p->npairs++] = (struct ppair){account, k};
            }
            if (bucket_ms > 0) {
                int64_t kind = sqlite3_column_int64(st, 1), b = (first - bucket0_ms) / bucket_ms;
                uint64_t bf = sqlite3_column_int64(st, 7) & STORE_FLAG_BACKFILLED ? n : 0;
                if (kind_n && kind >= 0 && kind <= max_kind && b >= 0 && b < nb) {
                    kind_n[kind * nb + b] += n;
                    kind_bf[kind * nb + b] += bf;
                } else if ((rc = period_bucket(p, kind, b, n, bf)) < 0) {
                    break;
                }
            }
        }
        sqlite3_finalize(st);
    }
    for (int64_t a = 1; rc == 0 && acct_n && a <= max_account; a++)
        if (acct_n[a])
            rc = period_account(p, a, acct_n[a]);
    for (int64_t i = 0; rc == 0 && kind_n && i < (max_kind + 1) * nb; i++)
        if (kind_n[i])
            rc = period_bucket(p, i / nb, i % nb, kind_n[i], kind_bf[i]);
    free(acct_n);
    free(kind_n);
    free(kind_bf);
    if (rc < 0) {
        period_free(p);
        return rc;
    }
    *slot = p;
    *ret = p;
    return 0;
}

int store_report_failures(struct store *s, int64_t from_ms, int64_t to_ms, int64_t bucket0_ms,
                          int64_t bucket_ms, store_report_failures_fn fn, void *data)
{
    struct store_period *p;
    if (bucket_ms <= 0)
        return -EINVAL;
    int rc = period_get(s, from_ms, to_ms, bucket0_ms, bucket_ms, &p);
    if (rc < 0)
        return rc;
    /* The kinds are a handful: their names by a lookup each. */
    sqlite3_stmt *st = NULL;
    rc = store_prepare(s, &st, "SELECT service, event_type FROM failure_kinds WHERE id = ?1", 0);
    for (size_t i = 0; rc == 0 && i < p->nbuckets; i++) {
        const struct pbucket *b = &p->buckets[i];
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, b->kind);
        if ((rc = store_step(s, st)) <= 0) {
            if (rc == 0)
                continue; /* a kind pruned meanwhile: nothing to name it by */
            break;
        }
        char service[SEC_SERVICE_MAX];
        store_column_text(st, 0, service, sizeof(service));
        rc = fn(data, service, sqlite3_column_int(st, 1), b->bucket, b->n, b->backfilled);
    }
    sqlite3_finalize(st);
    return rc;
}

/* The last ban of the source's key that started by now_ms. */
static int last_ban(struct store *s, sqlite3_stmt **cache, int64_t now_ms,
                    struct store_report_source *src)
{
    if (!*cache) {
        int rc = store_prepare(s, cache,
                               "SELECT expires_ms, ended_ms FROM bans WHERE prefix = ?1 AND "
                               "start_ms <= ?2 ORDER BY start_ms DESC, id DESC LIMIT 1",
                               0);
        if (rc < 0)
            return rc;
    }
    sqlite3_stmt *st = *cache;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, src->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    int rc = store_step(s, st);
    if (rc <= 0)
        return rc;
    src->ban_found = true;
    src->ban_expires_ms = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : store_column_u64(st, 0);
    src->ban_ended_ms = sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : store_column_u64(st, 1);
    return 0;
}

/* "PJSIP,SIP" (group_concat) into the source's services. */
static void parse_services(const char *list, struct store_report_source *src)
{
    const char *p = list;
    while (*p && src->nservices < STORE_REPORT_SERVICES_MAX) {
        size_t n = strcspn(p, ",");
        size_t c = n < SEC_SERVICE_MAX - 1 ? n : SEC_SERVICE_MAX - 1;
        memcpy(src->services[src->nservices], p, c);
        src->services[src->nservices][c] = '\0';
        src->nservices++;
        p += n;
        if (*p == ',')
            p++;
    }
}

/* "11,1" (group_concat of event types) into a bit mask. */
static uint32_t parse_types(const char *list)
{
    uint32_t mask = 0;
    for (const char *p = list; *p;) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p)
            break;
        if (t >= 0 && t < SEC_EVENT_TYPE_COUNT)
            mask |= 1u << t;
        p = *end == ',' ? end + 1 : end;
    }
    return mask;
}

/* One key's failures of the period, raw and rolled up, as (addr, kind, account, flags, n,
 * first_ms, last_ms): ?3 is the packed key. Index ranges only: the key's raw rows, and its
 * rolled-up hours of the period through failure_key_hours, one seek into failure_hours each. */
#define KEY_PERIOD_ROWS                                                                            \
    "SELECT addr, kind, account, flags, 1 AS n, ts_ms AS first_ms, ts_ms AS last_ms "              \
    "FROM failures WHERE key = ?3 AND ts_ms >= ?1 AND ts_ms < ?2 "                                 \
    "UNION ALL "                                                                                   \
    "SELECT h.addr, h.kind, h.account, h.flags, h.n, h.hour * 3600000 + h.first_off, "             \
    "h.hour * 3600000 + h.last_off FROM failure_key_hours AS kh CROSS JOIN failure_hours AS h "    \
    "ON h.hour = kh.hour AND h.key = kh.key WHERE kh.key = ?3 AND kh.hour >= ?1 / 3600000 - 1 "    \
    "AND kh.hour <= ?2 / 3600000 AND h.hour * 3600000 + h.first_off >= ?1 AND "                    \
    "h.hour * 3600000 + h.first_off < ?2"

/* What one listed source did in the period besides its attempts: its accounts, services (in
 * the order it first used them) and event types. */
static int source_detail(struct store *s, sqlite3_stmt **cache, int64_t from_ms, int64_t to_ms,
                         const void *key, int klen, struct store_report_source *src)
{
    if (!*cache) {
        int rc = store_prepare(
            s, cache,
            "SELECT count(DISTINCT nullif(p.account, 0)), "
            "(SELECT group_concat(service) FROM (SELECT k.service, min(q.first_ms) AS m "
            " FROM (" KEY_PERIOD_ROWS ") AS q JOIN failure_kinds AS k ON k.id = q.kind "
            " GROUP BY k.service ORDER BY m, k.service)), "
            "(SELECT group_concat(DISTINCT k.event_type) FROM (" KEY_PERIOD_ROWS ") AS q "
            " JOIN failure_kinds AS k ON k.id = q.kind) "
            "FROM (" KEY_PERIOD_ROWS ") AS p",
            2, from_ms, to_ms);
        if (rc < 0)
            return rc;
    }
    sqlite3_stmt *st = *cache;
    sqlite3_reset(st);
    sqlite3_bind_blob(st, 3, key, klen, SQLITE_STATIC);
    int rc = store_step(s, st);
    if (rc <= 0)
        return rc;
    char services[256], types[256];
    src->accounts = store_column_u64(st, 0);
    store_column_text(st, 1, services, sizeof(services));
    parse_services(services, src);
    store_column_text(st, 2, types, sizeof(types));
    src->types = parse_types(types);
    return 0;
}

/* Most attempts first, ties by the key as text (as reports always ordered them). */
static int cmp_keys(const void *a, const void *b)
{
    const struct pkey *x = *(const struct pkey *const *)a, *y = *(const struct pkey *const *)b;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    return strcmp(x->text, y->text);
}

/* The k-th largest (from 0) of n values, reordering them (Hoare's selection). */
static uint64_t kth_largest(uint64_t *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint64_t pivot = v[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        for (;;) {
            while (v[i] > pivot)
                i++;
            while (v[j] < pivot)
                j--;
            if (i >= j)
                break;
            uint64_t x = v[i];
            v[i++] = v[j];
            v[j--] = x;
        }
        /* [lo, j] holds values >= pivot, (j, hi] values <= pivot. */
        if (k <= j)
            hi = j;
        else
            lo = j + 1;
    }
    return v[lo];
}

/* Puts the first top of keys[0..n) (most attempts first, ties by the key as text) at its front
 * and says how many there are (at most top). Only the keys whose attempts reach the top-th
 * largest can be among them: those are formatted (into *ret_texts, for the caller to free) and
 * sorted; the others never need their text. */
static int top_keys(struct pkey **keys, size_t n, unsigned top, char (**ret_texts)[ADDR_STRLEN],
                    size_t *ret_n)
{
    *ret_texts = NULL;
    *ret_n = 0;
    if (n == 0 || top == 0)
        return 0;
    size_t cand = n;
    if (n > top) {
        uint64_t *v = malloc(n * sizeof(*v));
        if (!v)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            v[i] = keys[i]->n;
        uint64_t least = kth_largest(v, n, top - 1);
        free(v);
        cand = 0;
        for (size_t i = 0; i < n; i++) {
            if (keys[i]->n >= least) {
                struct pkey *x = keys[cand];
                keys[cand++] = keys[i];
                keys[i] = x;
            }
        }
    }
    char(*texts)[ADDR_STRLEN] = malloc(cand * sizeof(*texts));
    if (!texts)
        return -ENOMEM;
    for (size_t i = 0; i < cand; i++) {
        struct addr_prefix kp;
        if (store_key_unpack(keys[i]->key, keys[i]->klen, &kp) == 0)
            addr_prefix_format(&kp, texts[i], sizeof(texts[i]));
        else
            snprintf(texts[i], sizeof(texts[i]), "?");
        keys[i]->text = texts[i];
    }
    qsort(keys, cand, sizeof(*keys), cmp_keys);
    *ret_texts = texts;
    *ret_n = cand < top ? cand : top;
    return 0;
}

int store_report_sources(struct store *s, int64_t from_ms, int64_t to_ms, int64_t now_ms,
                         unsigned top, const struct store_report_sources_fns *fns, void *data,
                         struct store_report_source_counts *ret_counts)
{
    struct store_period *p;
    int rc = period_get(s, from_ms, to_ms, 0, 0, &p);
    if (rc < 0)
        return rc;
    struct store_report_source_counts counts = {.sources = p->nkeys};
    struct pkey **order = malloc((p->nkeys ? p->nkeys : 1) * sizeof(*order));
    bool *seen = calloc(p->nkeys ? p->nkeys : 1, sizeof(*seen));
    char(*texts)[ADDR_STRLEN] = NULL;
    size_t ntop = 0;
    if (!order || !seen)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < p->nkeys; i++)
        order[i] = &p->keys[i];
    if (rc == 0)
        rc = top_keys(order, p->nkeys, top, &texts, &ntop);

    sqlite3_stmt *ban = NULL, *detail = NULL, *raw = NULL, *hours = NULL;
    for (size_t i = 0; rc == 0 && i < ntop; i++) {
        const struct pkey *k = order[i];
        struct store_report_source src = {
            .attempts = k->n, .first_ms = k->first_ms, .last_ms = k->last_ms};
        snprintf(src.key, sizeof(src.key), "%s", k->text);
        rc = source_detail(s, &detail, from_ms, to_ms, k->key, k->klen, &src);
        if (rc == 0)
            rc = last_ban(s, &ban, now_ms, &src);
        if (rc == 0 && fns && fns->source)
            rc = fns->source(data, &src);
    }
    /* New: no failure of the key before the period (as far back as retention keeps). Rolled
     * up: failure_keys has each key's first, read in one scan and looked up in the period's
     * keys; raw: a seek into the (small) raw table for the keys that scan did not find. */
    if (rc == 0)
        rc = store_prepare(s, &hours, "SELECT key FROM failure_keys WHERE first_ms < ?1", 1,
                           from_ms);
    while (rc == 0 && (rc = store_step(s, hours)) > 0) {
        rc = 0;
        uint32_t k = period_find_key(p, sqlite3_column_blob(hours, 0),
                                     (size_t)sqlite3_column_bytes(hours, 0));
        if (k != UINT32_MAX)
            seen[k] = true;
    }
    if (rc == 0)
        rc = store_prepare(s, &raw, "SELECT 1 FROM failures WHERE key = ?2 AND ts_ms < ?1 LIMIT 1",
                           1, from_ms);
    size_t nnew = 0; /* the new keys, gathered at the front of order */
    for (size_t i = 0; rc == 0 && i < p->nkeys; i++) {
        struct pkey *k = &p->keys[i];
        if (seen[i])
            continue;
        sqlite3_reset(raw);
        sqlite3_bind_blob(raw, 2, k->key, k->klen, SQLITE_STATIC);
        rc = store_step(s, raw);
        if (rc > 0) {
            rc = 0;
            continue;
        }
        if (rc == 0)
            order[nnew++] = k;
    }
    counts.new_sources = nnew;
    char(*new_texts)[ADDR_STRLEN] = NULL;
    size_t nlisted = 0;
    if (rc == 0 && fns && fns->new_source)
        rc = top_keys(order, nnew, top, &new_texts, &nlisted);
    for (size_t i = 0; rc == 0 && i < nlisted; i++)
        rc = fns->new_source(data, order[i]->text, order[i]->first_ms, order[i]->n);
    sqlite3_finalize(ban);
    sqlite3_finalize(detail);
    sqlite3_finalize(raw);
    sqlite3_finalize(hours);
    free(order);
    free(seen);
    free(texts);
    free(new_texts);
    if (rc == 0 && ret_counts)
        *ret_counts = counts;
    return rc;
}

struct named {
    const struct pacct *a;
    char name[SEC_ACCOUNT_MAX];
};

static int cmp_accounts_n(const void *a, const void *b)
{
    const struct pacct *x = a, *y = b;
    return x->n != y->n ? (x->n > y->n ? -1 : 1) : 0;
}

static int cmp_named(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    if (x->a->n != y->a->n)
        return x->a->n > y->a->n ? -1 : 1;
    return strcmp(x->name, y->name);
}

int store_report_accounts(struct store *s, int64_t from_ms, int64_t to_ms, unsigned top,
                          store_report_account_fn fn, void *data)
{
    struct store_period *p;
    int rc = period_get(s, from_ms, to_ms, 0, 0, &p);
    if (rc < 0 || top == 0 || p->naccounts == 0)
        return rc;
    /* Most attempts first; the names of those that can make the list (ties at its end
     * included), for the order of ties. */
    qsort(p->accounts, p->naccounts, sizeof(*p->accounts), cmp_accounts_n);
    free(p->account_index.slot); /* the pass is over: no more lookups, and the order changed */
    p->account_index = (struct pindex){0};
    size_t cand = top < p->naccounts ? top : p->naccounts;
    while (cand < p->naccounts && p->accounts[cand].n == p->accounts[cand - 1].n)
        cand++;
    struct named *nm = calloc(cand, sizeof(*nm));
    if (!nm)
        return -ENOMEM;
    sqlite3_stmt *st = NULL;
    rc = store_prepare(s, &st, "SELECT name FROM accounts WHERE id = ?1", 0);
    for (size_t i = 0; rc == 0 && i < cand; i++) {
        nm[i].a = &p->accounts[i];
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, p->accounts[i].id);
        if ((rc = store_step(s, st)) > 0)
            store_column_text(st, 0, nm[i].name, sizeof(nm[i].name));
        rc = rc > 0 ? 0 : rc;
    }
    sqlite3_finalize(st);
    qsort(nm, cand, sizeof(*nm), cmp_named);
    size_t n = top < cand ? top : cand;
    /* Distinct sources of each listed account: from the pairs the pass kept, and for the whole
     * days, from failure_account_keys (a seek per day). */
    size_t words = (p->nkeys + 63) / 64;
    uint64_t *seen = calloc(words ? words : 1, sizeof(*seen));
    sqlite3_stmt *days = NULL;
    if (rc == 0 && p->day0 < p->day1)
        rc = store_prepare(
            s, &days, "SELECT key FROM failure_account_keys WHERE day = ?1 AND account = ?2", 0);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!seen) {
            rc = -ENOMEM;
            break;
        }
        memset(seen, 0, (words ? words : 1) * sizeof(*seen));
        uint64_t sources = 0;
        for (size_t k = 0; k < p->npairs; k++) {
            const struct ppair *pr = &p->pairs[k];
            if (pr->account != nm[i].a->id || (seen[pr->key / 64] >> (pr->key % 64)) & 1)
                continue;
            seen[pr->key / 64] |= 1ull << (pr->key % 64);
            sources++;
        }
        for (int64_t d = p->day0; rc == 0 && d < p->day1; d++) {
            sqlite3_reset(days);
            sqlite3_bind_int64(days, 1, d);
            sqlite3_bind_int64(days, 2, nm[i].a->id);
            while ((rc = store_step(s, days)) > 0) {
                rc = 0;
                uint32_t k = period_find_key(p, sqlite3_column_blob(days, 0),
                                             (size_t)sqlite3_column_bytes(days, 0));
                if (k == UINT32_MAX || (seen[k / 64] >> (k % 64)) & 1)
                    continue;
                seen[k / 64] |= 1ull << (k % 64);
                sources++;
            }
        }
        if (rc == 0)
            rc = fn(data, nm[i].name, nm[i].a->n, sources);
    }
    sqlite3_finalize(days);
    free(seen);
    free(nm);
    return rc;
}

/* Walks (name, count) rows: ban reasons, incident kinds. */
static int walk_counts(struct store *s, sqlite3_stmt *st, store_report_count_fn fn, void *data)
{
    int rc;
    while ((rc = store_step(s, st)) > 0) {
        char name[STORE_REPORT_NAME_MAX];
        store_column_text(st, 0, name, sizeof(name));
        rc = fn(data, name, store_column_u64(st, 1));
        if (rc)
            break;
    }
    return rc;
}

int store_report_bans(struct store *s, int64_t from_ms, int64_t to_ms, store_report_count_fn reason,
                      void *data, struct store_report_bans *ret_bans)
{
    struct store_report_bans b = {0};
    sqlite3_stmt *st = NULL;
    int rc =
        store_prepare(s, &st,
                      "SELECT reason, count(*) AS n, total(offence > 1), total(expires_ms IS NULL) "
                      "FROM bans WHERE start_ms >= ?1 AND start_ms < ?2 GROUP BY reason "
                      "ORDER BY n DESC, reason",
                      2, from_ms, to_ms);
    if (rc < 0)
        return rc;
    while ((rc = store_step(s, st)) > 0) {
        char name[STORE_REPORT_NAME_MAX];
        store_column_text(st, 0, name, sizeof(name));
        uint64_t n = store_column_u64(st, 1);
        b.bans += n;
        b.escalated += (uint64_t)sqlite3_column_double(st, 2);
        b.permanent += (uint64_t)sqlite3_column_double(st, 3);
        rc = reason ? reason(data, name, n) : 0;
        if (rc)
            break;
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;

    /* A ban the daemon could not mark (it was stopped) still ended at its expiry: the kernel
     * removed it then. */
    rc = store_prepare(s, &st,
                       "SELECT total(end_reason = 'lifted' AND ended_ms >= ?1 AND ended_ms < ?2), "
                       "total(expires_ms >= ?1 AND expires_ms < ?2 AND "
                       "(end_reason = 'expired' OR ended_ms IS NULL OR ended_ms >= ?2)), "
                       "total(start_ms < ?2 AND (expires_ms IS NULL OR expires_ms > ?2) AND "
                       "(ended_ms IS NULL OR ended_ms > ?2)) FROM bans",
                       2, from_ms, to_ms);
    if (rc < 0)
        return rc;
    if ((rc = store_step(s, st)) > 0) {
        b.lifted = (uint64_t)sqlite3_column_double(st, 0);
        b.expired = (uint64_t)sqlite3_column_double(st, 1);
        b.active = (uint64_t)sqlite3_column_double(st, 2);
        rc = 0;
    }
    sqlite3_finalize(st);
    if (rc == 0 && ret_bans)
        *ret_bans = b;
    return rc;
}

int store_report_incidents(struct store *s, int64_t from_ms, int64_t to_ms,
                           store_report_count_fn fn, void *data)
{
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, &st,
                           "SELECT kind, count(*) AS n FROM daemon_events WHERE ts_ms >= ?1 AND "
                           "ts_ms < ?2 GROUP BY kind ORDER BY n DESC, kind",
                           2, from_ms, to_ms);
    if (rc < 0)
        return rc;
    rc = walk_counts(s, st, fn, data);
    sqlite3_finalize(st);
    return rc;
}
