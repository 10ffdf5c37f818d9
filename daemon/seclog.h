/* [seclog:NAME]: Asterisk's security log as a source of events, the second implementation of
 * the source interface beside AMI: it hands the same normalized struct sec_event to a
 * struct sec_sink.
 *
 * mode = primary: the log is the event source, followed live (inotify); lines read after the
 * fact (catching up after a restart) are marked backfilled and count at their own time.
 *
 * mode = backfill: an AMI session to the same Asterisk is the source, and the log fills its
 * gaps only. The log is followed all the time but its lines are judged only for the times no
 * session delivered: before the daemon started (from where it stopped reading), and from a
 * little before a session was lost until it is back. A line whose time is still covered by a
 * live session waits until that is certain (a session lost now may have stopped delivering up
 * to ping_interval + ping_timeout earlier). Every line judged is first checked against what AMI
 * already delivered (the seen hook), so an event on both counts once.
 *
 * Work is done in slices of at most SECLOG_SLICE_US per loop turn (less when the core asks, to
 * leave room for a commit in the same turn): AMI events keep being
 * judged while a big file is read. Where reading stands (file identity, offset) is written to
 * the store in the same turn as the events judged from the lines before it. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"
#include "sec_event.h"
#include "seclog_line.h"
#include "store.h"

#define SECLOG_SLICE_US 3000
/* A slice also ends after this much wall-clock time (preempted on a busy host). */
#define SECLOG_SLICE_WALL_US 5000
/* An event within this of a login may or may not have been delivered on the new session. */
#define SECLOG_LOGIN_SLACK_MS 1000
/* How long a line near a login waits, so AMI's copy of its event is counted first. */
#define SECLOG_SETTLE_MS 1000
/* primary: a line read this much after its time was read late (backfilled). */
#define SECLOG_LIVE_SLACK_MS 2000
/* A backfill writes as fast as it reads, and a checkpoint cannot finish copying a log that keeps
 * growing: past this size the backfill pauses (AMI events go on) until the store's checkpoint
 * helper has copied the whole log (store_wal_behind()), checking again every SECLOG_WAL_WAIT_MS.
 * Half the daemon's own soft limit, so it never waits for that one. */
#define SECLOG_WAL_PAUSE_BYTES (64ull << 20)
#define SECLOG_WAL_WAIT_MS 5
/* Deferred failures are written this many per store call within a slice. */
#define SECLOG_WRITE_STEP 64
/* A malformed line is logged (escaped) at most once per this, with the count since. */
#define SECLOG_MALFORMED_LOG_MS 60000

struct seclog;

struct seclog_hooks {
    struct sec_sink sink;
    /* backfill: whether ev, about to be judged from the log, was already counted (delivered by
     * AMI, or recorded before). Returns 0 or -errno. */
    int (*seen)(void *data, const struct sec_event *ev, bool *ret_seen);
    /* The oldest time an event judged now is counted at (now - findtime): the store's deferred
     * failures (store_failure_defer()) are written before an event at or after it is handed
     * over, so its window sees them. NULL: written before every event. */
    int64_t (*judged_since)(void *data, int64_t now_ms);
    void *data;
};

struct seclog_stats {
    uint64_t lines;      /* lines read */
    uint64_t other;      /* not security events (banner, other channels) */
    uint64_t events;     /* events handed to the sink */
    uint64_t backfilled; /* of which backfilled */
    uint64_t covered;    /* events skipped: delivered by a live AMI session */
    uint64_t duplicates; /* events skipped: already counted (seen hook) */
    uint64_t before;     /* events skipped: older than what the daemon judged before */
    uint64_t injected;   /* events whose line held planted fields, address proven anyway */
    uint64_t malformed;  /* lines that prove nothing, the sum of by_reason */
    uint64_t by_reason[SECLOG_BAD_COUNT];
    uint64_t cut;              /* of by_reason[SECLOG_BAD_STRUCTURE]: a file ended mid-line */
    uint64_t longest_slice_us; /* in the thread's CPU time */
    uint64_t wal_pauses;       /* times reading waited for the store's checkpoint */
    uint64_t wal_paused_ms;    /* wall-clock time spent waiting so */
    uint64_t deferred_writes;  /* batches of deferred failures written */
};

struct seclog_status {
    const char *name; /* "seclog:NAME" */
    const char *path; /* as configured */
    bool backfill;
    const char *state;   /* "reading", "waiting for AMI", "waiting for the file", "unreadable" */
    const char *reading; /* the file being read (a rotated one, for a while) */
    uint64_t offset, size;
    int64_t line_ms;       /* the time of the last line read; 0 if none */
    int64_t last_event_ms; /* the own time of the last event handed over; 0 if none */
    int err;               /* the file's last errno */
    uint64_t rotations, truncations;
    struct seclog_stats stats;
};

/* ami: the linked session's configuration (backfill; its ping timing sets how far back a loss
 * may reach), NULL for primary. Reads the store for its cursor (store must outlive it). Starts
 * reading in the next loop turn. NULL + errno. */
struct seclog *seclog_new(struct loop *l, const struct cfg_seclog *cfg, const struct cfg_ami *ami,
                          struct store *store, const struct seclog_hooks *hooks);
void seclog_free(struct seclog *s); /* accepts NULL */

/* The linked AMI session came up (logged in) or was lost, at wall-clock at_ms. */
void seclog_ami_state(struct seclog *s, bool up, int64_t at_ms);

const char *seclog_name(const struct seclog *s);
/* The CPU time a slice may take from now on (at most SECLOG_SLICE_US, at least 500 us). */
void seclog_set_slice_us(struct seclog *s, uint64_t us);
/* Its next slice does nothing (the core commits in that turn instead). */
void seclog_skip_slice(struct seclog *s);
/* True while it has more to read at once (its last slice used its whole budget): a backfill. */
bool seclog_busy(const struct seclog *s);
/* True while it catches up: reading at full speed, waiting for the store's checkpoint, or
 * holding deferred failures (see store_failure_defer()) that its cursor stays before. */
bool seclog_catching_up(const struct seclog *s);
/* Microseconds of CPU spent in its slices so far (the work a backfill puts in the store's
 * transaction). */
uint64_t seclog_work_us(const struct seclog *s);
void seclog_get_status(const struct seclog *s, struct seclog_status *ret);
