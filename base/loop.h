/* The event loop: one thread, epoll, timers on CLOCK_MONOTONIC, signals through signalfd, and
 * "turn end" hooks that run once after every batch of ready events (group commit, one netlink
 * batch and one StatsD flush per turn). Handles are embedded in the objects that own them. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct loop;

typedef void (*loop_io_fn)(struct loop *l, int fd, uint32_t events, void *data);
typedef void (*loop_fn)(struct loop *l, void *data);

struct loop_io {
    int fd;
    loop_io_fn fn;
    void *data;
};

struct loop_timer {
    uint64_t due_ms; /* monotonic */
    loop_fn fn;
    void *data;
    unsigned heap_index; /* 0 = not armed */
};

struct loop *loop_new(void);    /* NULL + errno */
void loop_free(struct loop *l); /* accepts NULL */

/* events: EPOLLIN/EPOLLOUT/...; the callback gets what epoll reported. Returns 0 or -errno. */
int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_fn fn,
                void *data);
int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events);
void loop_io_del(struct loop *l, struct loop_io *io); /* safe on a never-added io (fd -1) */
void loop_io_init(struct loop_io *io);                /* fd = -1 */

void loop_timer_init(struct loop_timer *t, loop_fn fn, void *data);
/* (Re)arms t to fire once, delay_ms from now. */
void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t delay_ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
bool loop_timer_armed(const struct loop_timer *t);

/* Blocks signo and delivers it through the loop. Returns 0 or -errno. */
int loop_signal_add(struct loop *l, int signo, loop_fn fn, void *data);

/* Runs fn after every turn, in the order added. Returns 0 or -ENOMEM. */
int loop_turn_end_add(struct loop *l, loop_fn fn, void *data);

/* Runs until loop_stop(); returns 0, or -errno if epoll itself failed. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

/* How long turns take: their I/O callbacks, timers and turn-end hooks, not the wait before them,
 * so how long the loop was deaf to everything else. Kept per 10-second slot for the last
 * minute, as a histogram with a resolution of 1/8 of a power of two (12.5 %). */
#define LOOP_STATS_SLOT_MS 10000
#define LOOP_STATS_WINDOW_MAX_MS 60000
struct loop_turn_stats {
    uint64_t turns;  /* since loop_new() */
    uint64_t max_us; /* the longest turn since loop_new() */
    /* Over the window asked for (whole slots, the current one included): */
    uint64_t window_ms; /* what the window really spans, at most the last minute */
    uint64_t window_turns;
    uint64_t window_max_us;
    uint64_t window_p99_us; /* the smallest bucket bound at or above 99 % of the turns */
};
/* The stats over the last window_ms (rounded up to whole slots; the current slot included). */
void loop_turn_stats(const struct loop *l, uint64_t window_ms, struct loop_turn_stats *ret);
/* Starts measuring the longest turn from now on (one mark at a time): for a piece of work that
 * spans many turns (a restore), how long the loop was deaf while it ran. */
void loop_turn_mark(struct loop *l);
/* The longest turn recorded since the mark (the current turn is recorded when it ends). */
uint64_t loop_turn_max_since_mark(const struct loop *l);
/* Whether input is waiting right now (a zero-timeout poll of the loop's descriptors): work that
 * can wait (housekeeping) yields to events with this. */
bool loop_busy(struct loop *l);

/* Monotonic milliseconds, refreshed at the start of each turn. */
uint64_t loop_now_ms(struct loop *l);
/* The number of the current turn (1 for the first; 0 before loop_run()): code that budgets
 * its work per turn starts a new budget when this changes. */
uint64_t loop_turn(const struct loop *l);
/* Wall-clock Unix milliseconds, refreshed at the start of each turn. */
int64_t loop_wall_ms(struct loop *l);
/* Reads the clocks directly (for code outside a turn). */
uint64_t loop_clock_mono_ms(void);
int64_t loop_clock_wall_ms(void);
