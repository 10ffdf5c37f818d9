/* WAL checkpoints off the daemon's thread.
 *
 * A checkpoint copies the pages of the write-ahead log into the database file and waits for the
 * disk twice (fdatasync of the log, then of the file): 0.7 ms typically on the team's machine,
 * over 10 ms at times, far more on a busy disk. Done by SQLite's autocheckpoint, it runs inside
 * the commit of whichever turn crosses the threshold, between events and their bans. So the
 * daemon's connection never checkpoints (wal_autocheckpoint = 0) and a helper thread, with a
 * connection of its own, runs PASSIVE checkpoints when asked: they never wait for nor block the
 * writer or the readers, and the loop goes on judging while the disk works. The log restarts
 * from its beginning at the first write after a checkpoint that copied all of it, and is cut
 * back to journal_size_limit then, so its size stays bounded by what is written between two
 * checkpoints; store_checkpoint_truncate() is the hard bound for when a reader keeps it from
 * restarting. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

struct store_wal {
    char *path, *wal_path;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    bool requested, stop, running;
    uint64_t requests, finished; /* request and completion counters (store_checkpoint_wait) */
    struct store_wal_stats stats;
    /* The store's commits when the pending request was made, and when the request of the last
     * checkpoint was made if it copied the whole log (UINT64_MAX if it left frames behind): the
     * log holds nothing uncopied while no commit came after that (store_wal_behind()). Its size
     * cannot tell: after a complete checkpoint the log starts over in the same file. */
    uint64_t request_commits, complete_commits;
    bool waited; /* the pending request is waited for (store_wal_behind()) */
    char errmsg[128];
};

static uint64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The helper never competes with the loop: the CPU only when nothing else wants it, the disk
 * only when nobody else uses it (best effort: a sandbox may refuse either). */
static void lowest_priority(void)
{
    struct sched_param sp = {0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    /* ioprio_set(IOPRIO_WHO_PROCESS, this thread, IOPRIO_CLASS_IDLE): no libc wrapper. */
    syscall(SYS_ioprio_set, 1, (int)syscall(SYS_gettid), 3 << 13);
}

/* For a checkpoint someone waits for (store_wal_behind()): the ordinary share of the CPU and
 * the disk, so a busy host cannot keep it from running at all. Best effort too. */
static void waited_for_priority(void)
{
    struct sched_param sp = {0};
    pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
    /* IOPRIO_CLASS_BE, its lowest level (7). */
    syscall(SYS_ioprio_set, 1, (int)syscall(SYS_gettid), (2 << 13) | 7);
}

static void *checkpointer(void *arg)
{
    struct store_wal *w = arg;
    lowest_priority();
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(w->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -256", NULL, NULL,
                          NULL);
    pthread_mutex_lock(&w->mu);
    if (rc != SQLITE_OK)
        snprintf(w->errmsg, sizeof(w->errmsg), "%s", db ? sqlite3_errmsg(db) : "out of memory");
    for (;;) {
        while (!w->requested && !w->stop)
            pthread_cond_wait(&w->wake, &w->mu);
        if (w->stop)
            break;
        w->requested = false;
        uint64_t ticket = w->requests;
        uint64_t commits = w->request_commits;
        bool waited = w->waited;
        w->waited = false;
        w->running = true;
        pthread_mutex_unlock(&w->mu);

        int log = 0, copied = 0;
        uint64_t t0 = now_us();
        if (waited)
            waited_for_priority();
        if (rc == SQLITE_OK)
            rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
        if (waited)
            lowest_priority();
        uint64_t took = now_us() - t0;

        pthread_mutex_lock(&w->mu);
        w->running = false;
        w->finished = ticket;
        w->complete_commits = rc == SQLITE_OK && log == copied ? commits : UINT64_MAX;
        if (rc == SQLITE_OK) {
            w->stats.checkpoints++;
            w->stats.last_us = took;
            if (took > w->stats.max_us)
                w->stats.max_us = took;
            w->stats.log_frames = log > 0 ? (uint64_t)log : 0;
            w->stats.copied_frames = copied > 0 ? (uint64_t)copied : 0;
            if (log > copied)
                w->stats.incomplete++; /* a reader holds frames back: they go next time */
        } else {
            w->stats.failures++;
            snprintf(w->errmsg, sizeof(w->errmsg), "%s", sqlite3_errmsg(db));
            if (rc != SQLITE_CANTOPEN && rc != SQLITE_NOMEM)
                rc = SQLITE_OK; /* try again next time (a busy lock, an I/O hiccup) */
        }
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    sqlite3_close(db);
    return NULL;
}

struct store_wal *store_wal_new(const char *path, int *ret_err)
{
    struct store_wal *w = calloc(1, sizeof(*w));
    if (!w) {
        *ret_err = -ENOMEM;
        return NULL;
    }
    w->complete_commits = UINT64_MAX;
    w->path = strdup(path);
    size_t n = strlen(path) + 5;
    w->wal_path = malloc(n);
    if (!w->path || !w->wal_path) {
        free(w->path);
        free(w->wal_path);
        free(w);
        *ret_err = -ENOMEM;
        return NULL;
    }
    snprintf(w->wal_path, n, "%s-wal", path);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->done, NULL);
    int e = pthread_create(&w->thread, NULL, checkpointer, w);
    if (e) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->done);
        free(w->path);
        free(w->wal_path);
        free(w);
        *ret_err = -e;
        return NULL;
    }
    return w;
}

void store_wal_free(struct store_wal *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    free(w->path);
    free(w->wal_path);
    free(w);
}

int store_checkpoint_request(struct store *s)
{
    struct store_wal *w = store_wal_of(s);
    if (!w)
        return -EOPNOTSUPP;
    struct store_stats st;
    store_get_stats(s, &st);
    pthread_mutex_lock(&w->mu);
    if (!w->requested) {
        w->requested = true;
        w->request_commits = st.commits;
        w->requests++;
        pthread_cond_signal(&w->wake);
    }
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int store_checkpoint_wait(struct store *s)
{
    struct store_wal *w = store_wal_of(s);
    if (!w)
        return -EOPNOTSUPP;
    pthread_mutex_lock(&w->mu);
    uint64_t want = w->requests;
    while (w->finished < want && !w->stop)
        pthread_cond_wait(&w->done, &w->mu);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void store_wal_stats(struct store *s, struct store_wal_stats *ret)
{
    struct store_wal *w = store_wal_of(s);
    struct store_wal_stats st = {0};
    if (w) {
        pthread_mutex_lock(&w->mu);
        st = w->stats;
        st.running = w->running;
        pthread_mutex_unlock(&w->mu);
        struct stat sb;
        if (stat(w->wal_path, &sb) == 0)
            st.wal_bytes = (uint64_t)sb.st_size;
    }
    *ret = st;
}

bool store_wal_behind(struct store *s, uint64_t limit_bytes)
{
    struct store_wal *w = store_wal_of(s);
    if (!w)
        return false;
    uint64_t size = file_size(w->wal_path);
    if (size <= limit_bytes)
        return false;
    /* No commit since the request of a checkpoint that copied the whole log: every frame is in
     * the database file, and the next commit starts the log over. */
    struct store_stats st;
    store_get_stats(s, &st);
    pthread_mutex_lock(&w->mu);
    bool idle = !w->requested && !w->running;
    bool caught_up = idle && w->complete_commits == st.commits;
    pthread_mutex_unlock(&w->mu);
    if (!caught_up && idle) {
        pthread_mutex_lock(&w->mu);
        w->waited = true;
        pthread_mutex_unlock(&w->mu);
        store_checkpoint_request(s);
    }
    return !caught_up;
}

int store_checkpoint_truncate(struct store *s)
{
    if (store_is_read_only(s) || store_in_turn(s))
        return -EBUSY;
    int log = 0, copied = 0;
    int rc =
        sqlite3_wal_checkpoint_v2(store_sqlite(s), NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &copied);
    return store_sqlite_error(s, rc);
}
