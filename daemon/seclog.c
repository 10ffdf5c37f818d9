/* The security log source; see seclog.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "seclog.h"
#include "seclog_file.h"

#define INTERVALS_MAX 64

/* A time a live AMI session was up: [from, to), to = INT64_MAX while it is. */
struct interval {
    int64_t from, to;
};

struct seclog {
    struct loop *loop;
    struct cfg_seclog cfg;
    char name[SEC_SOURCE_MAX];
    bool backfill;
    int64_t drop_slack_ms;
    struct store *store;
    struct seclog_hooks hooks;
    struct seclog_file *file;
    struct loop_timer work;
    int64_t work_due_ms; /* wall clock the armed work timer was set for; 0 = at once */
    int64_t started_ms;
    bool busy;         /* the last slice used its whole budget: more to read at once */
    uint64_t work_us;  /* time spent in slices */
    uint64_t slice_us; /* the budget of one slice */

    /* backfill: when the session delivered (this process only; before it, nothing is known). */
    struct interval iv[INTERVALS_MAX];
    unsigned niv;
    bool up;
    /* Events older than this were judged before the log source existed (no cursor yet). */
    int64_t judged_before_ms;

    struct store_seclog_cursor saved; /* as last written to the store */
    bool have_saved;
    /* Where reading stood when the store last held no deferred failure: the cursor to write
     * while it holds some (they may be from the lines after it). */
    struct store_seclog_cursor clean;
    bool have_clean;
    bool draining; /* writing the store's deferred failures before reading on */
    bool skip;     /* the next slice does nothing (seclog_skip_slice()) */
    int64_t line_ms, last_event_ms;
    int64_t wal_pause_ms; /* wall clock the current WAL pause began; 0 = none */
    int64_t malformed_logged_ms;
    uint64_t malformed_unlogged;
    struct seclog_stats stats;
};

/* Slices are measured in the thread's CPU time: the work they do, whatever the scheduler does
 * to the thread meanwhile on a busy host. */
static uint64_t cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* But a slice preempted on a busy host holds the loop longer than its work: it also ends after
 * SECLOG_SLICE_WALL_US of the wall clock. The budget is checked on this clock first. */
static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The line's own date (local time, maybe without a year) in Unix ms; 0 if it has none. */
static int64_t date_ms(const struct seclog_line_date *d, int64_t now_ms)
{
    if (!d->valid)
        return 0;
    struct tm tm = {0};
    time_t now = (time_t)(now_ms / 1000);
    if (d->has_year) {
        tm.tm_year = d->year - 1900;
    } else {
        struct tm lt;
        localtime_r(&now, &lt);
        tm.tm_year = lt.tm_year;
    }
    tm.tm_mon = d->mon - 1;
    tm.tm_mday = d->day;
    tm.tm_hour = d->hour;
    tm.tm_min = d->min;
    tm.tm_sec = d->sec;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    /* "%b %e %T" has no year: a date ahead of now by more than a day is last year's. */
    if (t != (time_t)-1 && !d->has_year && t > now + 86400) {
        tm.tm_year--;
        tm.tm_isdst = -1;
        t = mktime(&tm);
    }
    return t == (time_t)-1 ? 0 : (int64_t)t * 1000 + d->ms;
}

/* --- what AMI covered --- */

enum decision { TAKE, SKIP, WAIT };

/* Whether an event at t (backfill mode) was delivered by the session: SKIP if certainly, TAKE
 * if maybe not (then it is judged, after the seen check), WAIT (until *ret_until) if that
 * depends on what happens next. */
static enum decision covered(const struct seclog *s, int64_t t, int64_t now, int64_t *ret_until)
{
    const int64_t ls = SECLOG_LOGIN_SLACK_MS, ds = s->drop_slack_ms;
    for (unsigned i = 0; i < s->niv; i++) {
        const struct interval *v = &s->iv[i];
        if (v->to == INT64_MAX)
            continue;
        if (v->from + ls <= t && t + ds <= v->to)
            return SKIP;
    }
    if (s->up) {
        int64_t u = s->iv[s->niv - 1].from;
        if (t >= u + ls) {
            /* Delivered, unless the session turns out to have stalled before t. */
            if (now >= t + ds)
                return SKIP;
            *ret_until = t + ds;
            return WAIT;
        }
        if (t >= u - ls && now < t + SECLOG_SETTLE_MS) {
            *ret_until = t + SECLOG_SETTLE_MS;
            return WAIT;
        }
        return TAKE;
    }
    /* No session now: one that logs in within the slack might still deliver it (not one of
     * this process for an event from before it started: a session only gets what happens
     * after its login). */
    if (now < t + ls && t >= s->started_ms) {
        *ret_until = t + ls;
        return WAIT;
    }
    return TAKE;
}

void seclog_ami_state(struct seclog *s, bool up, int64_t at_ms)
{
    if (!s->backfill || up == s->up)
        return;
    if (up) {
        if (s->niv == INTERVALS_MAX) {
            memmove(&s->iv[0], &s->iv[1], (INTERVALS_MAX - 1) * sizeof(s->iv[0]));
            s->niv--;
        }
        s->iv[s->niv++] = (struct interval){at_ms, INT64_MAX};
    } else if (s->niv) {
        s->iv[s->niv - 1].to = at_ms;
    }
    s->up = up;
    /* Lines waiting on the session's fate may be decided now. */
    s->work_due_ms = 0;
    loop_timer_arm(s->loop, &s->work, 0);
}

/* --- lines --- */

static void note_malformed(struct seclog *s, enum seclog_bad bad, const char *line, size_t len,
                           int64_t now)
{
    s->stats.malformed++;
    s->stats.by_reason[bad]++;
    if (s->malformed_logged_ms && now - s->malformed_logged_ms < SECLOG_MALFORMED_LOG_MS) {
        s->malformed_unlogged++;
        return;
    }
    char esc[512];
    log_escape(line, len, esc, sizeof(esc));
    if (s->malformed_unlogged)
        log_warn("%s: a line proves no address (%s), counted for nobody: \"%s\" (and %llu more "
                 "in the last minute)",
                 s->name, seclog_bad_name(bad), esc, (unsigned long long)s->malformed_unlogged);
    else
        log_warn("%s: a line proves no address (%s), counted for nobody: \"%s\"", s->name,
                 seclog_bad_name(bad), esc);
    s->malformed_logged_ms = now;
    s->malformed_unlogged = 0;
}

/* Judges what a line says. Returns false if the line must wait (given back to the file): until
 * *ret_until, or, *ret_drain set, until the store's deferred failures are written. */
static bool take_line(struct seclog *s, struct seclog_chunk *c, bool cut, int64_t now,
                      int64_t *ret_until, bool *ret_drain)
{
    struct sec_event ev;
    struct seclog_line_info info;
    enum seclog_line_result r = seclog_line_parse(c->data, c->len, s->name, &ev, &info);
    if (r == SECLOG_LINE_OTHER) {
        s->stats.other++;
        return true;
    }
    if (r == SECLOG_LINE_MALFORMED || cut || c->oversized) {
        enum seclog_bad bad = r == SECLOG_LINE_MALFORMED ? info.bad
                              : c->oversized             ? SECLOG_BAD_TOO_LONG
                                                         : SECLOG_BAD_STRUCTURE;
        if (cut && bad == SECLOG_BAD_STRUCTURE)
            s->stats.cut++;
        note_malformed(s, bad, c->data, c->len, now);
        return true;
    }
    /* The event's own time: EventTV (Asterisk's clock, the host's), else the line's date. One
     * from the future (a clock set back, a forged line) counts as now. */
    int64_t t = ev.event_tv_ms ? ev.event_tv_ms : date_ms(&info.date, now);
    if (t <= 0 || t > now)
        t = now;
    if (t < s->judged_before_ms) {
        s->stats.before++;
        s->line_ms = t;
        return true;
    }
    if (s->backfill) {
        switch (covered(s, t, now, ret_until)) {
        case WAIT:
            return false;
        case SKIP:
            s->stats.covered++;
            s->line_ms = t;
            return true;
        case TAKE:
            break;
        }
    }
    /* Its window may hold deferred failures: they go in first. */
    if (store_failure_deferred(s->store) &&
        (!s->hooks.judged_since || t >= s->hooks.judged_since(s->hooks.data, now))) {
        *ret_drain = true;
        return false;
    }
    s->line_ms = t;
    ev.received_ms = now;
    ev.occurred_ms = t;
    ev.backfilled = s->backfill || now - t > SECLOG_LIVE_SLACK_MS;
    ev.place = seclog_file_place(s->file);
    if (s->backfill && s->hooks.seen) {
        bool seen = false;
        if (s->hooks.seen(s->hooks.data, &ev, &seen) == 0 && seen) {
            s->stats.duplicates++;
            return true;
        }
    }
    if (info.injected)
        s->stats.injected++;
    s->stats.events++;
    s->stats.backfilled += ev.backfilled;
    s->last_event_ms = t;
    s->hooks.sink.submit(s->hooks.sink.data, &ev);
    return true;
}

/* Writes where reading stands, in the turn's transaction (with the events judged before it). */
static void save_cursor(struct seclog *s, int64_t now)
{
    struct store_seclog_cursor c;
    if (store_failure_deferred(s->store)) {
        /* The lines after the clean position may have failures still in memory. */
        if (!s->have_clean)
            return;
        c = s->clean;
    } else {
        if (!seclog_file_cursor(s->file, &c))
            return;
        c.line_ms = s->line_ms;
    }
    if (s->have_saved && c.pos == s->saved.pos && c.ino == s->saved.ino && c.dev == s->saved.dev)
        return;
    int r = store_seclog_cursor_put(s->store, s->name, s->cfg.path, &c, now);
    if (r == 0) {
        s->saved = c;
        s->have_saved = true;
    } else {
        /* The core logs database failures when its own writes fail too; this one is retried
         * at the end of the next slice. */
        log_debug("%s: cannot save the position: %s", s->name, store_strerror(r));
    }
}

static void on_work(struct loop *l, void *data)
{
    struct seclog *s = data;
    uint64_t t0 = cpu_us(), w0 = mono_us();
    int64_t now = loop_clock_wall_ms();
    int64_t until = 0;
    bool more = false;
    struct seclog_chunk c;
    bool cut;
    s->work_due_ms = 0;
    if (s->skip) {
        /* This turn is the core's commit: the slice comes in the next. */
        s->skip = false;
        loop_timer_arm(l, &s->work, 0);
        return;
    }
    if (store_wal_behind(s->store, SECLOG_WAL_PAUSE_BYTES)) {
        /* The database's log waits for its checkpoint: let it catch up (AMI events go on). */
        if (!s->wal_pause_ms) {
            s->wal_pause_ms = now ? now : 1;
            s->stats.wal_pauses++;
        }
        s->busy = false;
        loop_timer_arm(l, &s->work, SECLOG_WAL_WAIT_MS);
        return;
    }
    if (s->wal_pause_ms) {
        s->stats.wal_paused_ms += (uint64_t)(now > s->wal_pause_ms ? now - s->wal_pause_ms : 0);
        s->wal_pause_ms = 0;
    }
    /* The budget is checked every 8 lines (a line that is skipped costs well under a
     * microsecond, the clock about as much), and after every event handed over: one event may
     * cost far more than a line (its row, maybe a window to judge). */
    uint64_t events = s->stats.events + s->stats.duplicates;
    for (unsigned n = 1;; n++) {
        uint64_t e = s->stats.events + s->stats.duplicates;
        if ((n & 7) == 0 || e != events || s->draining) {
            /* The wall clock first: it is cheap (the vDSO), the thread's CPU time a system call
             * (microseconds on a virtual machine), and the CPU time cannot exceed it. */
            uint64_t wall = mono_us() - w0;
            if (wall >= SECLOG_SLICE_WALL_US ||
                (wall >= s->slice_us && cpu_us() - t0 >= s->slice_us)) {
                more = true;
                break;
            }
        }
        events = e;
        if (s->draining || store_failure_deferred(s->store) >= STORE_DEFER_MAX) {
            /* The store's deferred failures, a few at a time, before reading on. */
            unsigned w;
            s->draining = true;
            int r = store_failure_write_deferred(s->store, SECLOG_WRITE_STEP, &w);
            if (r < 0) {
                /* The core logs database failures when its own writes fail too. */
                log_debug("%s: cannot write deferred failures: %s", s->name, store_strerror(r));
                until = now + SECLOG_FILE_RETRY_MS / 30;
                break;
            }
            if (store_failure_deferred(s->store) == 0) {
                s->draining = false;
                s->stats.deferred_writes++;
            }
            continue;
        }
        if (store_failure_deferred(s->store) == 0) {
            s->have_clean = seclog_file_cursor(s->file, &s->clean);
            s->clean.line_ms = s->line_ms;
        }
        bool drain = false;
        if (!seclog_file_next(s->file, &c, &cut)) {
            /* All there is for now: what waits in memory goes in before the slice ends. */
            if (store_failure_deferred(s->store)) {
                s->draining = true;
                continue;
            }
            break;
        }
        s->stats.lines++;
        if (!take_line(s, &c, cut, now, &until, &drain)) {
            seclog_file_unread(s->file, &c);
            s->stats.lines--;
            if (drain) {
                s->draining = true;
                continue;
            }
            break;
        }
    }
    save_cursor(s, now);
    uint64_t took = cpu_us() - t0;
    s->work_us += took;
    if (took > s->stats.longest_slice_us)
        s->stats.longest_slice_us = took;
    s->busy = more;
    if (more) {
        loop_timer_arm(l, &s->work, 0);
    } else if (until) {
        s->work_due_ms = until;
        loop_timer_arm(l, &s->work, (uint64_t)(until > now ? until - now : 0));
    }
}

/* The file changed: read, unless a line is already waiting on a later decision. */
static void on_wake(void *data)
{
    struct seclog *s = data;
    if (loop_timer_armed(&s->work) && s->work_due_ms)
        return;
    loop_timer_arm(s->loop, &s->work, 0);
}

/* --- public --- */

struct seclog *seclog_new(struct loop *l, const struct cfg_seclog *cfg, const struct cfg_ami *ami,
                          struct store *store, const struct seclog_hooks *hooks)
{
    struct seclog *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->loop = l;
    s->cfg = *cfg;
    snprintf(s->name, sizeof(s->name), "seclog:%s", cfg->name);
    s->backfill = cfg->mode != CFG_SECLOG_PRIMARY && ami;
    /* A session lost now may have stopped delivering up to a ping period and its timeout
     * earlier (a peer that hangs without closing), plus a little for the clocks. */
    if (ami)
        s->drop_slack_ms = ami->ping_interval_ms + ami->ping_timeout_ms + 2000;
    s->store = store;
    s->hooks = *hooks;
    s->started_ms = loop_clock_wall_ms();
    s->slice_us = SECLOG_SLICE_US;
    loop_timer_init(&s->work, on_work, s);
    s->file = seclog_file_new(l, s->name, cfg->path, on_wake, s);
    if (!s->file) {
        int e = errno;
        free(s);
        errno = e;
        return NULL;
    }
    struct store_seclog_cursor c;
    int r = store_seclog_cursor_get(store, s->name, &c);
    if (r == 0) {
        s->saved = c;
        s->have_saved = true;
        s->line_ms = c.line_ms;
        seclog_file_start(s->file, &c);
    } else {
        /* A new source: the log's past up to the last event this daemon judged was its AMI
         * sessions' to count; after it, the daemon was not listening. */
        int64_t last = 0;
        if (r == -ENOENT && store_last_failure_ms(store, &last) == 0 && last)
            s->judged_before_ms = last - SECLOG_LOGIN_SLACK_MS;
        seclog_file_start(s->file, NULL);
    }
    loop_timer_arm(l, &s->work, 0);
    return s;
}

void seclog_free(struct seclog *s)
{
    if (!s)
        return;
    loop_timer_cancel(s->loop, &s->work);
    /* Deferred failures are read again from the cursor written before them. */
    store_failure_drop_deferred(s->store);
    seclog_file_free(s->file);
    free(s);
}

const char *seclog_name(const struct seclog *s)
{
    return s->name;
}

bool seclog_busy(const struct seclog *s)
{
    return s->busy;
}

void seclog_skip_slice(struct seclog *s)
{
    s->skip = true;
}

bool seclog_catching_up(const struct seclog *s)
{
    return s->busy || s->wal_pause_ms || s->draining || store_failure_deferred(s->store);
}

uint64_t seclog_work_us(const struct seclog *s)
{
    return s->work_us;
}

void seclog_set_slice_us(struct seclog *s, uint64_t us)
{
    s->slice_us = us > SECLOG_SLICE_US ? SECLOG_SLICE_US : us < 500 ? 500 : us;
}

void seclog_get_status(const struct seclog *s, struct seclog_status *ret)
{
    struct seclog_file_status fs;
    seclog_file_get_status(s->file, &fs);
    memset(ret, 0, sizeof(*ret));
    ret->name = s->name;
    ret->path = s->cfg.path;
    ret->backfill = s->backfill;
    ret->reading = fs.reading;
    ret->offset = fs.offset;
    ret->size = fs.size;
    ret->err = fs.err;
    ret->rotations = fs.rotations;
    ret->truncations = fs.truncations;
    ret->line_ms = s->line_ms;
    ret->last_event_ms = s->last_event_ms;
    ret->stats = s->stats;
    if (fs.state == SECLOG_FILE_UNREADABLE)
        ret->state = "unreadable";
    else if (fs.state != SECLOG_FILE_OPEN)
        ret->state = "waiting for the file";
    else if (s->work_due_ms)
        ret->state = "waiting for AMI";
    else
        ret->state = "reading";
}
