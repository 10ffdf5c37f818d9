#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

#define MAX_EVENTS 64
/* Turn durations: a log-linear histogram (8 sub-buckets per power of two) per slot. */
#define HIST_BUCKETS 320
#define SLOTS (LOOP_STATS_WINDOW_MAX_MS / LOOP_STATS_SLOT_MS + 1)

struct turn_slot {
    uint64_t epoch; /* monotonic ms / LOOP_STATS_SLOT_MS of the slot's period */
    uint64_t turns, max_us;
    uint32_t hist[HIST_BUCKETS];
};

struct signal_handler {
    int signo;
    loop_fn fn;
    void *data;
};

struct turn_hook {
    loop_fn fn;
    void *data;
};

struct loop {
    int epfd;
    bool stopping;
    uint64_t now_ms;
    int64_t wall_ms;
    uint64_t turn; /* turns started, for per-turn budgets (loop_turn()) */

    /* Min-heap of armed timers, 1-based (index 0 unused) so heap_index 0 means "not armed". */
    struct loop_timer **heap;
    unsigned heap_len, heap_cap;

    int sigfd;
    struct loop_io sig_io;
    sigset_t sigmask;
    struct signal_handler *signals;
    unsigned nsignals;

    struct turn_hook *hooks;
    unsigned nhooks;

    /* The batch being dispatched, so loop_io_del() can drop events of a handle that is
     * removed (and maybe freed) by an earlier callback of the same batch. */
    struct epoll_event *batch;
    int batch_len;

    uint64_t max_us;
    uint64_t mark_max_us; /* since loop_turn_mark() */
    struct turn_slot slots[SLOTS];
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static unsigned hist_bucket(uint64_t us)
{
    if (us < 8)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us); /* >= 3 */
    unsigned b = 8 + (e - 3) * 8 + (unsigned)((us >> (e - 3)) & 7);
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/* The largest value that falls in bucket b. */
static uint64_t hist_bound(unsigned b)
{
    if (b < 8)
        return b;
    unsigned e = (b - 8) / 8 + 3, m = (b - 8) % 8;
    return ((8ull + m + 1) << (e - 3)) - 1;
}

static void record_turn(struct loop *l, uint64_t took_us, uint64_t now_ms)
{
    uint64_t epoch = now_ms / LOOP_STATS_SLOT_MS;
    struct turn_slot *slot = &l->slots[epoch % SLOTS];
    if (slot->epoch != epoch) {
        memset(slot, 0, sizeof(*slot));
        slot->epoch = epoch;
    }
    slot->turns++;
    if (took_us > slot->max_us)
        slot->max_us = took_us;
    slot->hist[hist_bucket(took_us)]++;
    if (took_us > l->max_us)
        l->max_us = took_us;
    if (took_us > l->mark_max_us)
        l->mark_max_us = took_us;
}

void loop_turn_mark(struct loop *l)
{
    l->mark_max_us = 0;
}

uint64_t loop_turn_max_since_mark(const struct loop *l)
{
    return l->mark_max_us;
}

void loop_turn_stats(const struct loop *l, uint64_t window_ms, struct loop_turn_stats *ret)
{
    struct loop_turn_stats st = {.turns = l->turn, .max_us = l->max_us};
    uint64_t now = loop_clock_mono_ms(), epoch = now / LOOP_STATS_SLOT_MS;
    uint64_t nslots = (window_ms + LOOP_STATS_SLOT_MS - 1) / LOOP_STATS_SLOT_MS;
    if (nslots < 1)
        nslots = 1;
    if (nslots > SLOTS - 1)
        nslots = SLOTS - 1;
    uint64_t hist[HIST_BUCKETS] = {0};
    for (uint64_t i = 0; i < nslots && i <= epoch; i++) {
        const struct turn_slot *slot = &l->slots[(epoch - i) % SLOTS];
        if (slot->epoch != epoch - i)
            continue;
        st.window_turns += slot->turns;
        if (slot->max_us > st.window_max_us)
            st.window_max_us = slot->max_us;
        for (unsigned b = 0; b < HIST_BUCKETS; b++)
            hist[b] += slot->hist[b];
    }
    st.window_ms = (nslots - 1) * LOOP_STATS_SLOT_MS + now % LOOP_STATS_SLOT_MS;
    /* The 99th percentile: the first bucket at which 99 % of the turns are counted. */
    uint64_t need = st.window_turns - st.window_turns / 100, seen = 0;
    for (unsigned b = 0; st.window_turns && b < HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= need) {
            st.window_p99_us = hist_bound(b) < st.window_max_us ? hist_bound(b) : st.window_max_us;
            break;
        }
    }
    *ret = st;
}

bool loop_busy(struct loop *l)
{
    struct epoll_event ev;
    return epoll_wait(l->epfd, &ev, 1, 0) > 0;
}

uint64_t loop_clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t loop_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void refresh_clocks(struct loop *l)
{
    l->now_ms = loop_clock_mono_ms();
    l->wall_ms = loop_clock_wall_ms();
}

struct loop *loop_new(void)
{
    struct loop *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int e = errno;
        free(l);
        errno = e;
        return NULL;
    }
    l->sigfd = -1;
    loop_io_init(&l->sig_io);
    sigemptyset(&l->sigmask);
    refresh_clocks(l);
    return l;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    if (l->sigfd >= 0)
        close(l->sigfd);
    if (l->nsignals)
        sigprocmask(SIG_UNBLOCK, &l->sigmask, NULL);
    close(l->epfd);
    free(l->heap);
    free(l->signals);
    free(l->hooks);
    free(l);
}

void loop_io_init(struct loop_io *io)
{
    io->fd = -1;
    io->fn = NULL;
    io->data = NULL;
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_fn fn,
                void *data)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    io->fd = fd;
    io->fn = fn;
    io->data = data;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        io->fd = -1;
        return -errno;
    }
    return 0;
}

int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -errno;
    return 0;
}

void loop_io_del(struct loop *l, struct loop_io *io)
{
    if (io->fd < 0)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->fd = -1;
    for (int i = 0; i < l->batch_len; i++)
        if (l->batch[i].data.ptr == io)
            l->batch[i].data.ptr = NULL;
}

/* --- timers: a binary min-heap keyed on due_ms --- */

static void heap_set(struct loop *l, unsigned i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(struct loop *l, unsigned i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 1 && l->heap[i / 2]->due_ms > t->due_ms) {
        heap_set(l, i, l->heap[i / 2]);
        i /= 2;
    }
    heap_set(l, i, t);
}

static void heap_down(struct loop *l, unsigned i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        unsigned c = i * 2;
        if (c > l->heap_len)
            break;
        if (c + 1 <= l->heap_len && l->heap[c + 1]->due_ms < l->heap[c]->due_ms)
            c++;
        if (l->heap[c]->due_ms >= t->due_ms)
            break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void loop_timer_init(struct loop_timer *t, loop_fn fn, void *data)
{
    t->due_ms = 0;
    t->fn = fn;
    t->data = data;
    t->heap_index = 0;
}

bool loop_timer_armed(const struct loop_timer *t)
{
    return t->heap_index != 0;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
    unsigned i = t->heap_index;
    if (!i)
        return;
    struct loop_timer *last = l->heap[l->heap_len--];
    t->heap_index = 0;
    if (last != t) {
        heap_set(l, i, last);
        heap_up(l, i);
        heap_down(l, last->heap_index);
    }
}

void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t delay_ms)
{
    loop_timer_cancel(l, t);
    if (l->heap_len + 1 >= l->heap_cap) {
        unsigned cap = l->heap_cap ? l->heap_cap * 2 : 16;
        struct loop_timer **h = realloc(l->heap, cap * sizeof(*h));
        if (!h)
            abort(); /* a timer we cannot arm would silently stop a session: fail loudly */
        l->heap = h;
        l->heap_cap = cap;
    }
    t->due_ms = loop_clock_mono_ms() + delay_ms;
    l->heap_len++;
    heap_set(l, l->heap_len, t);
    heap_up(l, l->heap_len);
}

static void run_timers(struct loop *l)
{
    /* Timers armed by a callback for "now" run in the next turn, not this one, so a timer that
     * re-arms itself with 0 cannot starve I/O. */
    uint64_t now = l->now_ms;
    unsigned budget = l->heap_len;
    while (budget-- && l->heap_len && l->heap[1]->due_ms <= now) {
        struct loop_timer *t = l->heap[1];
        loop_timer_cancel(l, t);
        t->fn(l, t->data);
    }
}

static int next_timeout(struct loop *l)
{
    if (!l->heap_len)
        return -1;
    uint64_t now = loop_clock_mono_ms();
    uint64_t due = l->heap[1]->due_ms;
    if (due <= now)
        return 0;
    uint64_t d = due - now;
    return d > 60000 ? 60000 : (int)d;
}

/* --- signals --- */

static void on_signalfd(struct loop *l, int fd, uint32_t events, void *data)
{
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        for (unsigned i = 0; i < l->nsignals; i++)
            if (l->signals[i].signo == (int)si.ssi_signo)
                l->signals[i].fn(l, l->signals[i].data);
    }
}

int loop_signal_add(struct loop *l, int signo, loop_fn fn, void *data)
{
    struct signal_handler *s = realloc(l->signals, (l->nsignals + 1) * sizeof(*s));
    if (!s)
        return -ENOMEM;
    l->signals = s;
    s[l->nsignals++] = (struct signal_handler){.signo = signo, .fn = fn, .data = data};
    sigaddset(&l->sigmask, signo);
    if (sigprocmask(SIG_BLOCK, &l->sigmask, NULL) < 0)
        return -errno;
    int fd = signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (l->sigfd < 0) {
        l->sigfd = fd;
        int r = loop_io_add(l, &l->sig_io, fd, EPOLLIN, on_signalfd, NULL);
        if (r < 0)
            return r;
    }
    return 0;
}

int loop_turn_end_add(struct loop *l, loop_fn fn, void *data)
{
    struct turn_hook *h = realloc(l->hooks, (l->nhooks + 1) * sizeof(*h));
    if (!h)
        return -ENOMEM;
    l->hooks = h;
    h[l->nhooks++] = (struct turn_hook){.fn = fn, .data = data};
    return 0;
}

int loop_run(struct loop *l)
{
    struct epoll_event evs[MAX_EVENTS];
    l->stopping = false;
    while (!l->stopping) {
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, next_timeout(l));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        refresh_clocks(l);
        uint64_t t0 = mono_us();
        l->turn++;
        l->batch = evs;
        l->batch_len = n;
        for (int i = 0; i < n; i++) {
            struct loop_io *io = evs[i].data.ptr;
            if (io) /* NULL: removed by an earlier callback of this batch */
                io->fn(l, io->fd, evs[i].events, io->data);
        }
        l->batch_len = 0;
        run_timers(l);
        for (unsigned i = 0; i < l->nhooks; i++)
            l->hooks[i].fn(l, l->hooks[i].data);
        record_turn(l, mono_us() - t0, l->now_ms);
    }
    return 0;
}

void loop_stop(struct loop *l)
{
    l->stopping = true;
}

uint64_t loop_now_ms(struct loop *l)
{
    return l->now_ms;
}

uint64_t loop_turn(const struct loop *l)
{
    return l->turn;
}

int64_t loop_wall_ms(struct loop *l)
{
    return l->wall_ms;
}
