/* Following a log file across rotations; see seclog_file.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "seclog_file.h"

#define QUEUE_MAX 8 /* rotated files waiting to be read after a restart */

struct seclog_file {
    struct loop *loop;
    char name[SEC_SOURCE_MAX];
    char path[CFG_PATH_MAX];
    char dir[CFG_PATH_MAX];
    char base[NAME_MAX + 1];
    seclog_file_fn wake;
    void *data;

    int ifd;
    struct loop_io iio;
    int dir_wd;  /* the directory: the file's name created, moved, deleted, its mode changed */
    int cur_wd;  /* the inode being read: appended to, moved, deleted */
    int next_wd; /* while draining a rotated file: the new file at the path */
    struct loop_timer retry;

    bool started;
    enum seclog_file_state state;
    int err;
    int fd;
    uint64_t dev, ino;
    char reading[CFG_PATH_MAX];
    uint64_t size;
    bool is_current;    /* fd is the file at the path (not one left behind, not a copy) */
    bool is_copy;       /* fd is copytruncate's copy: the current file follows from 0 */
    bool final_drain;   /* the new file has bytes: one more read of the old one, then leave */
    bool cut_pending;   /* a left file ended mid-line: that line goes out as cut */
    bool leave_pending; /* ... and then the file is left, at the next call */
    char queue[QUEUE_MAX][CFG_PATH_MAX];
    unsigned nqueue;

    struct seclog_file_status st;
    struct seclog_reader reader; /* large: last */
};

static void on_inotify(struct loop *l, int fd, uint32_t events, void *data);
static void on_retry(struct loop *l, void *data);

/* --- small helpers --- */

static bool same_bytes_at(int fd, uint64_t off, const void *tail, size_t len)
{
    char buf[SECLOG_TAIL_MAX];
    if (len == 0)
        return true;
    if (off < len || len > sizeof(buf))
        return false;
    ssize_t n = pread(fd, buf, len, (off_t)(off - len));
    return n == (ssize_t)len && memcmp(buf, tail, len) == 0;
}

static void close_fd(struct seclog_file *f)
{
    if (f->cur_wd >= 0 && f->ifd >= 0)
        inotify_rm_watch(f->ifd, f->cur_wd);
    f->cur_wd = -1;
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

static void watch_fd(struct seclog_file *f)
{
    char proc[64];
    if (f->ifd < 0)
        return;
    /* The inode itself, whatever its name becomes. */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
    f->cur_wd = inotify_add_watch(f->ifd, proc, IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF);
}

static void watch_dir(struct seclog_file *f)
{
    if (f->ifd < 0 || f->dir_wd >= 0)
        return;
    f->dir_wd = inotify_add_watch(f->ifd, f->dir,
                                  IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB |
                                      IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
}

/* Logs a failure to reach the file once per kind of failure. */
static void set_failed(struct seclog_file *f, enum seclog_file_state state, int err,
                       const char *what)
{
    loop_timer_arm(f->loop, &f->retry, SECLOG_FILE_RETRY_MS);
    if (f->state == state && f->err == err)
        return;
    f->state = state;
    f->err = err;
    if (err == ENOENT)
        log_warn("%s: %s does not exist: is res_security_log loaded, with a logger.conf line such "
                 "as \"security => security\"? Waiting for it",
                 f->name, what);
    else if (err == EACCES || err == EPERM)
        log_err("%s: cannot read %s: %s; pbxguardd needs read access to the log and search "
                "access to its directory (Asterisk's group: SupplementaryGroups=asterisk in the "
                "unit, see the README); retrying",
                f->name, what, strerror(err));
    else
        log_err("%s: cannot read %s: %s; retrying", f->name, what, strerror(err));
}

/* Takes fd (opened on name, at identity st) as the file to read, positioned at off with the
 * tail known before it. */
static void take_fd(struct seclog_file *f, int fd, const struct stat *st, const char *name,
                    uint64_t off, const void *tail, size_t tail_len, bool current)
{
    close_fd(f);
    f->fd = fd;
    f->dev = (uint64_t)st->st_dev;
    f->ino = (uint64_t)st->st_ino;
    f->size = (uint64_t)st->st_size;
    snprintf(f->reading, sizeof(f->reading), "%s", name);
    f->is_current = current;
    f->is_copy = false;
    f->final_drain = false;
    if (lseek(fd, (off_t)off, SEEK_SET) < 0)
        off = 0;
    seclog_reader_init(&f->reader, off, tail, tail_len);
    watch_fd(f);
    if (f->state != SECLOG_FILE_OPEN) {
        if (f->state == SECLOG_FILE_UNREADABLE || f->err)
            log_notice("%s: reading %s", f->name, name);
        f->state = SECLOG_FILE_OPEN;
        f->err = 0;
        loop_timer_cancel(f->loop, &f->retry);
    }
}

static int open_ro(const char *path, struct stat *ret_st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (fstat(fd, ret_st) < 0 || !S_ISREG(ret_st->st_mode)) {
        int e = S_ISREG(ret_st->st_mode) ? errno : EINVAL;
        close(fd);
        return -e;
    }
    return fd;
}

/* Opens the file at the path from its start. false: not there (or not readable), waited for. */
static bool open_current(struct seclog_file *f)
{
    struct stat st;
    watch_dir(f);
    int fd = open_ro(f->path, &st);
    if (fd < 0) {
        set_failed(f, -fd == ENOENT ? SECLOG_FILE_WAITING : SECLOG_FILE_UNREADABLE, -fd, f->path);
        return false;
    }
    take_fd(f, fd, &st, f->path, 0, NULL, 0, true);
    return true;
}

/* --- the rotated siblings: "security.1", "security.0", "security.20261126" --- */

struct sibling {
    char path[CFG_PATH_MAX];
    struct stat st;
};

static bool compressed(const char *name)
{
    static const char *const ext[] = {".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        size_t e = strlen(ext[i]);
        if (n > e && strcmp(name + n - e, ext[i]) == 0)
            return true;
    }
    return false;
}

static int by_mtime(const void *a, const void *b)
{
    const struct sibling *x = a, *y = b;
    if (x->st.st_mtim.tv_sec != y->st.st_mtim.tv_sec)
        return x->st.st_mtim.tv_sec < y->st.st_mtim.tv_sec ? -1 : 1;
    if (x->st.st_mtim.tv_nsec != y->st.st_mtim.tv_nsec)
        return x->st.st_mtim.tv_nsec < y->st.st_mtim.tv_nsec ? -1 : 1;
    return strcmp(x->path, y->path);
}

/* The uncompressed regular files named base.*, oldest first; at most max. */
static unsigned siblings(const struct seclog_file *f, struct sibling *out, unsigned max)
{
    DIR *d = opendir(f->dir);
    if (!d)
        return 0;
    unsigned n = 0;
    size_t bl = strlen(f->base);
    struct dirent *e;
    while (n < max && (e = readdir(d))) {
        if (strncmp(e->d_name, f->base, bl) != 0 || e->d_name[bl] != '.' || !e->d_name[bl + 1] ||
            compressed(e->d_name))
            continue;
        struct sibling *s = &out[n];
        if (snprintf(s->path, sizeof(s->path), "%s/%s", f->dir, e->d_name) >= (int)sizeof(s->path))
            continue;
        if (stat(s->path, &s->st) == 0 && S_ISREG(s->st.st_mode))
            n++;
    }
    closedir(d);
    qsort(out, n, sizeof(*out), by_mtime);
    return n;
}

#define SIBLINGS_MAX 64

/* Copytruncate left a copy of what we were reading beside the file: the newest sibling that
 * holds our tail just before off. Opens it positioned at off. */
static bool take_copy(struct seclog_file *f, uint64_t off, const void *tail, size_t tail_len)
{
    struct sibling *s = calloc(SIBLINGS_MAX, sizeof(*s));
    if (!s)
        return false;
    unsigned n = siblings(f, s, SIBLINGS_MAX);
    bool found = false;
    for (unsigned i = n; i-- > 0 && !found;) {
        if ((uint64_t)s[i].st.st_size < off || (uint64_t)s[i].st.st_ino == f->ino)
            continue;
        struct stat st;
        int fd = open_ro(s[i].path, &st);
        if (fd < 0)
            continue;
        if (tail_len && same_bytes_at(fd, off, tail, tail_len)) {
            take_fd(f, fd, &st, s[i].path, off, tail, tail_len, false);
            f->is_copy = true;
            found = true;
        } else {
            close(fd);
        }
    }
    free(s);
    return found;
}

/* After a restart: the file of the cursor, moved away (rotated while we were down): found by
 * identity among the siblings. The files rotated after it are queued, oldest first. */
static bool take_moved(struct seclog_file *f, const struct store_seclog_cursor *c)
{
    struct sibling *s = calloc(SIBLINGS_MAX, sizeof(*s));
    if (!s)
        return false;
    unsigned n = siblings(f, s, SIBLINGS_MAX);
    struct stat cur;
    bool have_cur = stat(f->path, &cur) == 0;
    bool found = false;
    for (unsigned i = 0; i < n; i++) {
        if (!found) {
            if ((uint64_t)s[i].st.st_dev != c->dev || (uint64_t)s[i].st.st_ino != c->ino)
                continue;
            struct stat st;
            int fd = open_ro(s[i].path, &st);
            if (fd < 0)
                continue;
            uint64_t pos =
                (uint64_t)st.st_size >= c->pos && same_bytes_at(fd, c->pos, c->tail, c->tail_len)
                    ? c->pos
                    : 0;
            take_fd(f, fd, &st, s[i].path, pos, pos ? c->tail : NULL, pos ? c->tail_len : 0, false);
            found = true;
        } else if (f->nqueue < QUEUE_MAX &&
                   !(have_cur && s[i].st.st_ino == cur.st_ino && s[i].st.st_dev == cur.st_dev)) {
            snprintf(f->queue[f->nqueue++], sizeof(f->queue[0]), "%s", s[i].path);
        }
    }
    free(s);
    return found;
}

/* --- public --- */

struct seclog_file *seclog_file_new(struct loop *l, const char *name, const char *path,
                                    seclog_file_fn wake, void *data)
{
    struct seclog_file *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->loop = l;
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->path, sizeof(f->path), "%s", path);
    const char *slash = strrchr(path, '/');
    if (!slash || !slash[1]) {
        free(f);
        errno = EINVAL;
        return NULL;
    }
    snprintf(f->dir, sizeof(f->dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    snprintf(f->base, sizeof(f->base), "%s", slash + 1);
    f->wake = wake;
    f->data = data;
    f->fd = -1;
    f->dir_wd = f->cur_wd = f->next_wd = -1;
    loop_io_init(&f->iio);
    loop_timer_init(&f->retry, on_retry, f);
    f->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (f->ifd < 0 || loop_io_add(l, &f->iio, f->ifd, EPOLLIN, on_inotify, f) < 0) {
        int e = errno;
        if (f->ifd >= 0)
            close(f->ifd);
        free(f);
        errno = e;
        return NULL;
    }
    seclog_reader_init(&f->reader, 0, NULL, 0);
    return f;
}

void seclog_file_free(struct seclog_file *f)
{
    if (!f)
        return;
    loop_timer_cancel(f->loop, &f->retry);
    loop_io_del(f->loop, &f->iio);
    close_fd(f);
    if (f->ifd >= 0)
        close(f->ifd);
    explicit_bzero(f->reader.buf, sizeof(f->reader.buf));
    free(f);
}

void seclog_file_start(struct seclog_file *f, const struct store_seclog_cursor *c)
{
    f->started = true;
    watch_dir(f);
    if (!c) {
        open_current(f);
        return;
    }
    struct stat st;
    int fd = open_ro(f->path, &st);
    if (fd >= 0 && (uint64_t)st.st_dev == c->dev && (uint64_t)st.st_ino == c->ino) {
        if ((uint64_t)st.st_size >= c->pos && same_bytes_at(fd, c->pos, c->tail, c->tail_len)) {
            take_fd(f, fd, &st, f->path, c->pos, c->tail, c->tail_len, true);
            return;
        }
        /* Truncated while we were down (copytruncate): its copy holds what we had not read. */
        take_fd(f, fd, &st, f->path, 0, NULL, 0, true);
        if (!take_copy(f, c->pos, c->tail, c->tail_len)) {
            log_warn("%s: %s was truncated while pbxguardd was down and its copy is not beside "
                     "it: reading it from its start",
                     f->name, f->path);
            f->st.truncations++;
        }
        return;
    }
    if (fd >= 0)
        close(fd);
    if (take_moved(f, c))
        return;
    log_warn("%s: the file read last (inode %llu, %llu bytes read) is no longer beside %s "
             "(compressed or deleted): what it held after that is lost; reading %s from its start",
             f->name, (unsigned long long)c->ino, (unsigned long long)c->pos, f->path, f->path);
    open_current(f);
}

/* The writer may still append to the file we drain (renamed, the writer not told yet) until
 * the new file at the path has its first byte. */
static bool left_file_is_done(struct seclog_file *f)
{
    if (f->is_copy || f->nqueue)
        return true;
    struct stat st;
    if (stat(f->path, &st) < 0 || ((uint64_t)st.st_ino == f->ino && (uint64_t)st.st_dev == f->dev))
        return false;
    if (f->next_wd < 0 && f->ifd >= 0)
        f->next_wd = inotify_add_watch(f->ifd, f->path, IN_MODIFY);
    return st.st_size > 0;
}

/* Leaves the file just finished for the next one: queued, or the one at the path. */
static void leave_file(struct seclog_file *f)
{
    bool copy = f->is_copy;
    f->st.rotations += !copy;
    close_fd(f);
    if (f->next_wd >= 0 && f->ifd >= 0)
        inotify_rm_watch(f->ifd, f->next_wd);
    f->next_wd = -1;
    while (f->nqueue) {
        char p[CFG_PATH_MAX];
        snprintf(p, sizeof(p), "%s", f->queue[0]);
        memmove(f->queue[0], f->queue[1], (f->nqueue - 1) * sizeof(f->queue[0]));
        f->nqueue--;
        struct stat st;
        int fd = open_ro(p, &st);
        if (fd >= 0) {
            take_fd(f, fd, &st, p, 0, NULL, 0, false);
            return;
        }
    }
    open_current(f);
}

/* At the end of the file at the path: has it been rotated away, or truncated? Returns true if
 * reading should go on (the file changed under us), false to wait. */
static bool check_current(struct seclog_file *f)
{
    struct stat sf, sp;
    uint64_t off = seclog_reader_offset(&f->reader);
    size_t pending = seclog_reader_pending(&f->reader);
    size_t tl;
    const char *tail = seclog_reader_tail(&f->reader, &tl);
    if (fstat(f->fd, &sf) == 0) {
        f->size = (uint64_t)sf.st_size;
        bool shrunk = (uint64_t)sf.st_size < off + pending;
        if (shrunk || (pending == 0 && !same_bytes_at(f->fd, off, tail, tl))) {
            /* Copytruncate, or rewritten in place: what we had not read is in the copy, if
             * there is one (the unfinished line too: it is read again from there); the file
             * itself starts over. */
            f->st.truncations++;
            char keep[SECLOG_TAIL_MAX];
            memcpy(keep, tail, tl);
            if (take_copy(f, off, keep, tl)) {
                log_notice("%s: %s was truncated (copytruncate): reading the rest from its copy "
                           "%s, then the file from its start",
                           f->name, f->path, f->reading);
                return true;
            }
            log_warn("%s: %s was truncated and no copy holds what was not yet read: reading it "
                     "from its start",
                     f->name, f->path);
            if (lseek(f->fd, 0, SEEK_SET) == 0)
                seclog_reader_init(&f->reader, 0, NULL, 0);
            return true;
        }
    }
    if (stat(f->path, &sp) == 0 && (uint64_t)sp.st_dev == f->dev && (uint64_t)sp.st_ino == f->ino)
        return false;
    /* Renamed (or deleted) under us: what we hold is now the old file; drained to its end
     * while the writer may still use it, then the new one. */
    f->is_current = false;
    return true;
}

bool seclog_file_next(struct seclog_file *f, struct seclog_chunk *ret, bool *ret_cut)
{
    *ret_cut = false;
    if (!f->started)
        return false;
    if (f->leave_pending) {
        f->leave_pending = false;
        leave_file(f);
    }
    for (;;) {
        if (seclog_reader_next(&f->reader, ret))
            return true;
        if (f->cut_pending) {
            /* The file we leave ended mid-line: that line goes out once, as cut; the file is
             * left at the next call (the line's bytes live in its reader until then). */
            f->cut_pending = false;
            f->leave_pending = true;
            size_t n = seclog_reader_pending(&f->reader);
            ret->data = (char *)seclog_reader_pending_data(&f->reader);
            ret->len = n > SECLOG_LINE_MAX ? SECLOG_LINE_MAX : n;
            ret->oversized = n > SECLOG_LINE_MAX;
            ret->end_off = seclog_reader_offset(&f->reader) + n;
            f->st.cut_lines++;
            *ret_cut = true;
            return true;
        }
        if (f->fd < 0) {
            if (!open_current(f))
                return false;
            continue;
        }
        size_t room;
        char *dst = seclog_reader_space(&f->reader, &room);
        ssize_t n = read(f->fd, dst, room);
        if (n > 0) {
            seclog_reader_commit(&f->reader, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            int e = errno;
            close_fd(f);
            set_failed(f, SECLOG_FILE_UNREADABLE, e, f->reading);
            return false;
        }
        /* At the end of what is there. */
        if (f->is_current) {
            if (!check_current(f))
                return false;
            continue;
        }
        if (!f->final_drain) {
            if (!left_file_is_done(f))
                return false;
            /* The writer moved on; anything it wrote to the old file before is there now. */
            f->final_drain = true;
            continue;
        }
        if (seclog_reader_pending(&f->reader)) {
            f->cut_pending = true;
            continue;
        }
        leave_file(f);
    }
}

void seclog_file_unread(struct seclog_file *f, const struct seclog_chunk *c)
{
    seclog_reader_unread(&f->reader, c);
}

bool seclog_file_cursor(const struct seclog_file *f, struct store_seclog_cursor *ret)
{
    if (f->fd < 0)
        return false;
    struct store_seclog_cursor c = {.dev = f->dev, .ino = f->ino};
    c.pos = seclog_reader_offset(&f->reader);
    size_t tl;
    const char *t = seclog_reader_tail(&f->reader, &tl);
    if (tl > sizeof(c.tail))
        tl = sizeof(c.tail);
    memcpy(c.tail, t, tl);
    c.tail_len = (unsigned)tl;
    *ret = c;
    return true;
}

int64_t seclog_file_place(const struct seclog_file *f)
{
    if (f->fd < 0)
        return 0;
    uint64_t pos = seclog_reader_offset(&f->reader) & ((1ull << 40) - 1);
    return (int64_t)(((f->ino & 0x7fffffu) << 40) | pos) + 1;
}

void seclog_file_get_status(const struct seclog_file *f, struct seclog_file_status *ret)
{
    *ret = f->st;
    ret->state = f->state;
    ret->err = f->err;
    ret->reading = f->fd >= 0 ? f->reading : f->path;
    ret->offset = f->fd >= 0 ? seclog_reader_offset(&f->reader) : 0;
    ret->size = f->size;
    if (f->fd >= 0) {
        struct stat st;
        if (fstat(f->fd, &st) == 0)
            ret->size = (uint64_t)st.st_size;
    }
}

/* --- events --- */

static void on_retry(struct loop *l, void *data)
{
    struct seclog_file *f = data;
    watch_dir(f);
    if (f->fd < 0)
        f->wake(f->data);
}

static void on_inotify(struct loop *l, int fd, uint32_t events, void *data)
{
    struct seclog_file *f = data;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool wake = false;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                wake = true;
            } else if (ev->wd == f->dir_wd) {
                if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
                    /* The directory itself went: watched again when it is back. */
                    f->dir_wd = -1;
                    loop_timer_arm(l, &f->retry, SECLOG_FILE_RETRY_MS);
                } else if (ev->len && strcmp(ev->name, f->base) == 0) {
                    wake = true;
                }
            } else if (ev->wd == f->cur_wd || ev->wd == f->next_wd) {
                if (ev->mask & IN_IGNORED) {
                    if (ev->wd == f->cur_wd)
                        f->cur_wd = -1;
                    else
                        f->next_wd = -1;
                }
                wake = true;
            }
        }
    }
    if (wake)
        f->wake(f->data);
}
