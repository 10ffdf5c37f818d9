/* The control server. One listening socket and up to CTL_CLIENTS_MAX clients, all non-blocking
 * on the daemon's loop. A client is a small state machine: read until a newline (at most
 * CTL_REQUEST_MAX bytes), answer, flush the reply, read the next request. While a reply is
 * being flushed, or a request waits in a queue, the client is not read, so one client holds at
 * most one request and one reply in memory. Each step must finish within CTL_DEADLINE_MS (a
 * queued request within CTL_QUEUE_DEADLINE_MS) or the client is cut off.
 *
 * Scheduling: the handlers' time is summed per loop turn. A request is answered at once while
 * the turn's budget lasts and nobody waits ahead of it (for a paged request: no light request
 * waits, and a page fits in the free reply memory); otherwise the client joins the queue of its
 * class. A timer resumes the queues every turn: light requests first, then paged ones, each
 * queue in order, while the budget lasts, and at least one of each per turn so that both always
 * progress. A client with several requests in its buffer goes back to the end of the queue
 * between them whenever others wait. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

enum { Q_LIGHT, Q_PAGED, Q_COUNT };

struct ctl_client {
    struct ctl *ctl;
    struct ctl_client *prev, *next;
    struct loop_io io;
    struct loop_timer deadline;
    struct ctl_peer peer;
    char *in;
    size_t inlen, incap;
    char *out;
    size_t outlen, outoff;
    bool stop; /* close once the queued reply is flushed */
    bool eof;  /* the client sent all it will: answer complete lines, then close */
    /* While queued: the parsed request (its line, reqlen bytes and a newline, is still first
     * in `in`), which queue, and the next client in it. */
    json_t *req;
    bool req_is_reply; /* req is the error answering a malformed line */
    size_t reqlen;
    int queue; /* -1: not queued */
    struct ctl_client *qnext;
    /* A watcher (its request opened a stream): the lines broadcast to it, from woff to wlen. */
    bool watching;
    char *wbuf;
    size_t woff, wlen, wcap;
    uint32_t wevents; /* what the loop waits for on it */
};

struct ctl {
    struct loop *loop;
    ctl_handler_fn handler;
    ctl_paged_fn paged;
    void *data;
    int fd;
    struct loop_io io;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool has_group;
    gid_t group;
    dev_t sock_dev; /* the socket file we made, so ctl_free removes only that one */
    ino_t sock_ino;
    struct ctl_client *clients;
    unsigned nclients;
    bool paused; /* at CTL_CLIENTS_MAX: new connections wait in the listen backlog */

    /* This turn's budget. */
    uint64_t turn;
    uint64_t spent_us;
    unsigned served[Q_COUNT];
    /* Clients whose request waits, in order. */
    struct ctl_client *qhead[Q_COUNT], *qtail[Q_COUNT];
    struct loop_timer resume;
    size_t out_bytes; /* queued reply bytes, all clients together */

    ctl_stream_fn stream;
    unsigned nwatchers;
    uint64_t watch_dropped, watch_lines;
};

json_t *ctl_error(enum ctl_code code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{s:b, s:s, s:i}", "ok", 0, "error", msg, "code", (int)code);
}

json_t *ctl_ok(void)
{
    return json_pack("{s:b}", "ok", 1);
}

unsigned ctl_clients(const struct ctl *c)
{
    return c->nclients;
}

size_t ctl_reply_bytes(const struct ctl *c)
{
    return c->out_bytes;
}

unsigned ctl_waiting(const struct ctl *c)
{
    unsigned n = 0;
    for (int q = 0; q < Q_COUNT; q++)
        for (const struct ctl_client *cl = c->qhead[q]; cl; cl = cl->qnext)
            n++;
    return n;
}

void ctl_set_paged(struct ctl *c, ctl_paged_fn paged)
{
    c->paged = paged;
}

void ctl_set_stream(struct ctl *c, ctl_stream_fn stream)
{
    c->stream = stream;
}

void ctl_watch_stats(const struct ctl *c, struct ctl_watch_stats *ret)
{
    *ret = (struct ctl_watch_stats){
        .watchers = c->nwatchers, .dropped = c->watch_dropped, .lines = c->watch_lines};
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Starts a fresh budget when the loop has begun a new turn. */
static void budget_refresh(struct ctl *c)
{
    uint64_t turn = loop_turn(c->loop);
    if (turn == c->turn)
        return;
    c->turn = turn;
    c->spent_us = 0;
    memset(c->served, 0, sizeof(c->served));
}

static bool page_fits(const struct ctl *c)
{
    return c->out_bytes + CTL_PAGE_BYTES_MAX <= CTL_OUT_MAX;
}

static bool may_answer_now(struct ctl *c, int q)
{
    budget_refresh(c);
    if (c->qhead[Q_LIGHT] || (q == Q_PAGED && (c->qhead[Q_PAGED] || !page_fits(c))))
        return false;
    return c->spent_us < CTL_TURN_BUDGET_US;
}

static void enqueue(struct ctl_client *cl, int q)
{
    struct ctl *c = cl->ctl;
    cl->queue = q;
    cl->qnext = NULL;
    if (c->qtail[q])
        c->qtail[q]->qnext = cl;
    else
        c->qhead[q] = cl;
    c->qtail[q] = cl;
    loop_timer_arm(c->loop, &cl->deadline, CTL_QUEUE_DEADLINE_MS);
    if (!loop_timer_armed(&c->resume))
        loop_timer_arm(c->loop, &c->resume, 1);
}

static void dequeue(struct ctl_client *cl)
{
    struct ctl *c = cl->ctl;
    int q = cl->queue;
    if (q < 0)
        return;
    struct ctl_client **pp = &c->qhead[q], *prev = NULL;
    while (*pp && *pp != cl) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (*pp)
        *pp = cl->qnext;
    if (c->qtail[q] == cl)
        c->qtail[q] = prev;
    cl->queue = -1;
    cl->qnext = NULL;
}

/* Writes one short line without waiting (a refusal, a "busy"): the socket buffer of a
 * connection that has taken its replies always has room for it. */
static void send_line_now(int fd, json_t *reply)
{
    char *s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    json_decref(reply);
    if (!s)
        return;
    struct iovec iov[2] = {{s, strlen(s)}, {"\n", 1}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    (void)!sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(s);
}

/* Removes the client from the loop, closes its socket and frees it. */
static void client_close(struct ctl_client *cl)
{
    struct ctl *c = cl->ctl;
    int fd = cl->io.fd;
    dequeue(cl);
    json_decref(cl->req);
    loop_io_del(c->loop, &cl->io);
    if (fd >= 0)
        close(fd);
    loop_timer_cancel(c->loop, &cl->deadline);
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        c->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    c->nclients--;
    if (c->paused && c->nclients < CTL_CLIENTS_MAX && loop_io_mod(c->loop, &c->io, EPOLLIN) == 0)
        c->paused = false;
    if (cl->out)
        c->out_bytes -= cl->outlen;
    if (cl->watching)
        c->nwatchers--;
    free(cl->in);
    free(cl->out);
    free(cl->wbuf);
    free(cl);
}

static void client_deadline(struct loop *l, void *data)
{
    struct ctl_client *cl = data;
    if (cl->queue >= 0)
        send_line_now(cl->io.fd, ctl_error(CTL_CODE_FAILED,
                                           "the daemon is too busy to answer within %d s; "
                                           "try again",
                                           CTL_QUEUE_DEADLINE_MS / 1000));
    client_close(cl);
}

/* Writes what the socket takes now. Returns 1 when everything is flushed, 0 when more is
 * pending, -errno when the client is gone. */
static int client_flush(struct ctl_client *cl)
{
    while (cl->outoff < cl->outlen) {
        ssize_t n = send(cl->io.fd, cl->out + cl->outoff, cl->outlen - cl->outoff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        cl->outoff += (size_t)n;
    }
    cl->ctl->out_bytes -= cl->outlen;
    free(cl->out);
    cl->out = NULL;
    cl->outlen = cl->outoff = 0;
    return 1;
}

/* Serializes reply (consumed) as one line into the output buffer, within the per-reply cap and
 * the reply memory all clients share. */
static void client_queue(struct ctl_client *cl, json_t *reply)
{
    struct ctl *c = cl->ctl;
    char *s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    json_decref(reply);
    if (s && strlen(s) + 1 > CTL_REPLY_MAX) {
        free(s);
        reply = ctl_error(CTL_CODE_FAILED, "reply too large (over %d bytes)", CTL_REPLY_MAX);
        s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
        json_decref(reply);
    } else if (s && strlen(s) + 1 > CTL_OUT_MAX - c->out_bytes) {
        free(s);
        reply = ctl_error(CTL_CODE_FAILED, "the daemon's reply memory is taken by other "
                                           "clients; try again");
        s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
        json_decref(reply);
    }
    if (!s) {
        /* Out of memory or an unserializable reply: a fixed line still tells the client. */
        s = strdup("{\"ok\":false,\"error\":\"internal error\",\"code\":1}");
        if (!s) {
            cl->stop = true;
            return;
        }
    }
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) {
        free(s);
        cl->stop = true;
        return;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    cl->out = line;
    cl->outlen = n + 1;
    cl->outoff = 0;
    c->out_bytes += cl->outlen;
}

/* Drops the answered request's line (len bytes and its newline) from the input buffer. */
static void consume(struct ctl_client *cl, size_t len)
{
    cl->inlen -= len + 1;
    memmove(cl->in, cl->in + len + 1, cl->inlen);
}

/* Answers a parsed request (consumed) whose line is first in the input buffer. */
/* Counts a request's work against the turn's budget: what it took from t0_us (parsing, the
 * handler, serializing the reply), and never less than CTL_REQUEST_MIN_US, so that a flood of
 * tiny or malformed requests is budgeted too. */
static void charge(struct ctl *c, int q, uint64_t t0_us)
{
    uint64_t took = mono_us() - t0_us;
    budget_refresh(c);
    c->spent_us += took > CTL_REQUEST_MIN_US ? took : CTL_REQUEST_MIN_US;
    c->served[q]++;
}

/* Answers a request (consumed) whose line, len bytes, is first in the input buffer: req is
 * the parsed request, or (is_reply) the error that answers a malformed one. */
static void answer(struct ctl_client *cl, int q, json_t *req, bool is_reply, size_t len,
                   uint64_t t0_us)
{
    struct ctl *c = cl->ctl;
    json_t *reply = req;
    if (!is_reply) {
        const char *cmd = json_string_value(json_object_get(req, "cmd"));
        reply = c->handler(c->data, cmd, req, &cl->peer);
        if (!reply)
            reply = ctl_error(CTL_CODE_FAILED, "internal error");
        if (c->stream && c->stream(cmd) && json_is_true(json_object_get(reply, "ok")) &&
            !cl->watching) {
            cl->watching = true;
            c->nwatchers++;
        }
        json_decref(req);
    }
    client_queue(cl, reply);
    consume(cl, len);
    charge(c, q, t0_us);
}

/* Takes the first complete line in the input buffer, if there is one: answers it now, or
 * queues the client (a malformed line with its error reply). Returns true if it answered. */
static bool client_process(struct ctl_client *cl)
{
    struct ctl *c = cl->ctl;
    char *nl = cl->inlen ? memchr(cl->in, '\n', cl->inlen) : NULL;
    if (!nl)
        return false;
    uint64_t t0 = mono_us();
    size_t len = (size_t)(nl - cl->in);
    json_error_t jerr;
    json_t *req = json_loadb(cl->in, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *bad = NULL;
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    if (!req)
        bad = ctl_error(CTL_CODE_USAGE, "malformed request: %s", jerr.text);
    else if (!json_is_object(req))
        bad = ctl_error(CTL_CODE_USAGE, "malformed request: not a JSON object");
    else if (!cmd)
        bad = ctl_error(CTL_CODE_USAGE, "malformed request: no \"cmd\" string");
    if (bad) {
        json_decref(req);
        req = bad;
    }
    int q = !bad && c->paged && c->paged(cmd) ? Q_PAGED : Q_LIGHT;
    if (!may_answer_now(c, q)) {
        cl->req = req;
        cl->req_is_reply = bad != NULL;
        cl->reqlen = len;
        enqueue(cl, q);
        return false;
    }
    answer(cl, q, req, bad != NULL, len, t0);
    return true;
}

/* Reads what is there, stopping after a chunk that completes a line. Returns 0, -EMSGSIZE
 * (the buffer is full without a newline), -ECONNRESET at end of file, or -errno. */
static int client_read(struct ctl_client *cl)
{
    for (;;) {
        if (cl->inlen == cl->incap) {
            if (cl->incap >= CTL_REQUEST_MAX)
                return memchr(cl->in, '\n', cl->inlen) ? 0 : -EMSGSIZE;
            size_t cap = cl->incap ? cl->incap * 4 : 1024;
            if (cap > CTL_REQUEST_MAX)
                cap = CTL_REQUEST_MAX;
            char *in = realloc(cl->in, cap);
            if (!in)
                return -ENOMEM;
            cl->in = in;
            cl->incap = cap;
        }
        ssize_t n = recv(cl->io.fd, cl->in + cl->inlen, cl->incap - cl->inlen, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        if (n == 0)
            return -ECONNRESET;
        cl->inlen += (size_t)n;
        if (memchr(cl->in + cl->inlen - (size_t)n, '\n', (size_t)n))
            return 0;
    }
}

/* A watcher: writes what its socket takes now and waits for room, or for its hang-up; input
 * is read and dropped. Closes it once a drop notice is taken. */
static void watcher_step(struct ctl_client *cl)
{
    struct ctl *c = cl->ctl;
    if (!cl->stop)
        loop_timer_cancel(c->loop, &cl->deadline); /* a watcher may stay as long as it likes */
    while (cl->woff < cl->wlen) {
        ssize_t n =
            send(cl->io.fd, cl->wbuf + cl->woff, cl->wlen - cl->woff, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            client_close(cl);
            return;
        }
        cl->woff += (size_t)n;
    }
    if (cl->woff == cl->wlen) {
        cl->woff = cl->wlen = 0;
        if (cl->stop) {
            client_close(cl);
            return;
        }
    }
    uint32_t want = EPOLLIN | EPOLLRDHUP | (cl->woff < cl->wlen ? EPOLLOUT : 0);
    if (want != cl->wevents) {
        if (loop_io_mod(c->loop, &cl->io, want) < 0) {
            client_close(cl);
            return;
        }
        cl->wevents = want;
    }
}

/* Input from a watcher means nothing: read and dropped, a bounded amount per turn. Returns
 * false when it hung up. */
static bool watcher_drain(struct ctl_client *cl)
{
    char scratch[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(cl->io.fd, scratch, sizeof(scratch), MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
}

#define WATCH_NOTICE_RESERVE 512

static const char watch_dropped_line[] =
    "{\"type\":\"dropped\",\"ok\":false,\"code\":1,\"error\":\"this watcher fell more than "
    "256 KiB behind and was dropped: the daemon never waits for a slow reader; watch again, or "
    "write to a file (pbxguard watch --json > FILE)\"}\n";

/* Appends len bytes to the watcher's buffer, within room. */
static bool watcher_append(struct ctl_client *cl, const char *data, size_t len, size_t room)
{
    if (cl->wlen - cl->woff + len > room)
        return false;
    if (cl->woff && cl->wcap - cl->wlen < len) {
        memmove(cl->wbuf, cl->wbuf + cl->woff, cl->wlen - cl->woff);
        cl->wlen -= cl->woff;
        cl->woff = 0;
    }
    if (cl->wcap - cl->wlen < len) {
        size_t cap = cl->wcap ? cl->wcap : 4096;
        while (cap - cl->wlen < len)
            cap *= 2;
        if (cap > CTL_WATCH_BUF_MAX)
            cap = CTL_WATCH_BUF_MAX;
        char *b = realloc(cl->wbuf, cap);
        if (!b)
            return false;
        cl->wbuf = b;
        cl->wcap = cap;
    }
    memcpy(cl->wbuf + cl->wlen, data, len);
    cl->wlen += len;
    return true;
}

void ctl_broadcast(struct ctl *c, const char *line, size_t len)
{
    c->watch_lines++;
    if (!c->nwatchers)
        return;
    for (struct ctl_client *cl = c->clients, *next; cl; cl = next) {
        next = cl->next;
        if (!cl->watching || cl->stop)
            continue;
        bool was_empty = cl->woff == cl->wlen;
        size_t room = CTL_WATCH_BUF_MAX - WATCH_NOTICE_RESERVE;
        if (cl->wlen - cl->woff + len + 1 > room || !watcher_append(cl, line, len, room) ||
            !watcher_append(cl, "\n", 1, room + 1)) {
            /* It fell behind (or memory ran out): the notice goes into the room kept for it
             * (after a newline, should a line be cut short), and the watcher is closed once
             * that is taken, or after a deadline. */
            if (cl->wlen > cl->woff && cl->wbuf[cl->wlen - 1] != '\n')
                watcher_append(cl, "\n", 1, CTL_WATCH_BUF_MAX);
            watcher_append(cl, watch_dropped_line, sizeof(watch_dropped_line) - 1,
                           CTL_WATCH_BUF_MAX);
            cl->stop = true;
            c->watch_dropped++;
            loop_timer_arm(c->loop, &cl->deadline, CTL_DEADLINE_MS);
        }
        /* The write waits for the loop to say the socket has room: one wake-up per watcher
         * and turn, however many lines the turn broadcast. */
        if (was_empty && cl->outoff >= cl->outlen && !(cl->wevents & EPOLLOUT)) {
            if (loop_io_mod(c->loop, &cl->io, EPOLLIN | EPOLLRDHUP | EPOLLOUT) < 0)
                client_close(cl);
            else
                cl->wevents = EPOLLIN | EPOLLRDHUP | EPOLLOUT;
        }
    }
}

/* Flushes, answers buffered requests one at a time, and decides what to wait for next. */
static void client_step(struct ctl_client *cl)
{
    struct loop *l = cl->ctl->loop;
    for (;;) {
        if (cl->outoff < cl->outlen) {
            int r = client_flush(cl);
            if (r < 0)
                goto close;
            if (r == 0) {
                if (loop_io_mod(l, &cl->io, EPOLLOUT) < 0)
                    goto close;
                return;
            }
            /* A reply taken: the client gets a fresh deadline for its next request. */
            loop_timer_arm(l, &cl->deadline, CTL_DEADLINE_MS);
        }
        if (cl->watching) {
            /* Its reply is out: from now on it only takes the stream. */
            cl->inlen = 0;
            cl->wevents = 0;
            watcher_step(cl);
            return;
        }
        if (cl->stop)
            goto close;
        if (!client_process(cl))
            break;
    }
    if (cl->queue >= 0) {
        /* Its request waits for a later turn: read nothing more meanwhile. */
        if (loop_io_mod(l, &cl->io, 0) < 0)
            goto close;
        return;
    }
    if (cl->eof)
        goto close;
    if (loop_io_mod(l, &cl->io, EPOLLIN | EPOLLRDHUP) < 0)
        goto close;
    return;
close:
    client_close(cl);
}

/* Every turn while requests wait: light ones first, then paged ones, while the budget lasts;
 * at least one of each class per turn. */
static void on_resume(struct loop *l, void *data)
{
    struct ctl *c = data;
    budget_refresh(c);
    for (int q = 0; q < Q_COUNT; q++) {
        while (c->qhead[q] && (c->served[q] == 0 || c->spent_us < CTL_TURN_BUDGET_US) &&
               (q == Q_LIGHT || page_fits(c))) {
            struct ctl_client *cl = c->qhead[q];
            dequeue(cl);
            json_t *req = cl->req;
            cl->req = NULL;
            loop_timer_arm(l, &cl->deadline, CTL_DEADLINE_MS); /* to take the reply */
            answer(cl, q, req, cl->req_is_reply, cl->reqlen, mono_us());
            client_step(cl); /* may queue it again, or close it */
        }
    }
    if (c->qhead[Q_LIGHT] || c->qhead[Q_PAGED])
        loop_timer_arm(l, &c->resume, 1);
}

static void client_io(struct loop *l, int fd, uint32_t events, void *data)
{
    struct ctl_client *cl = data;
    bool writing = cl->outoff < cl->outlen;

    if (cl->queue >= 0) {
        /* Waiting for its turn: only a hang-up matters. */
        if (events & (EPOLLHUP | EPOLLERR))
            client_close(cl);
        return;
    }
    if (cl->watching && !writing) {
        if ((events & (EPOLLHUP | EPOLLERR)) ||
            ((events & (EPOLLIN | EPOLLRDHUP)) && !watcher_drain(cl))) {
            client_close(cl);
            return;
        }
        watcher_step(cl);
        return;
    }
    if (!writing && (events & (EPOLLIN | EPOLLRDHUP))) {
        int r = client_read(cl);
        if (r == -EMSGSIZE) {
            client_queue(
                cl, ctl_error(CTL_CODE_USAGE, "request too long (over %d bytes)", CTL_REQUEST_MAX));
            cl->inlen = 0;
            cl->stop = true;
        } else if (r == -ECONNRESET) {
            /* The client has said all it will: answer what is complete, then close. */
            cl->eof = true;
        } else if (r < 0) {
            client_close(cl);
            return;
        }
    } else if (!writing && (events & (EPOLLHUP | EPOLLERR))) {
        client_close(cl);
        return;
    }
    client_step(cl);
}

static bool peer_in_group(int fd, gid_t group, gid_t primary)
{
    if (primary == group)
        return true;
    gid_t small[64], *groups = small;
    socklen_t len = sizeof(small);
    bool found = false;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
        if (errno != ERANGE)
            return false;
        groups = malloc(len);
        if (!groups || getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
            free(groups);
            return false;
        }
    }
    for (size_t i = 0; i < len / sizeof(gid_t); i++)
        if (groups[i] == group)
            found = true;
    if (groups != small)
        free(groups);
    return found;
}

/* Connections an unprivileged peer may not open now: its own beyond CTL_CLIENTS_PER_UID, or
 * any into the slots kept for root. NULL if it may. */
static json_t *over_cap(const struct ctl *c, uid_t uid)
{
    unsigned mine = 0, unprivileged = 0;
    for (const struct ctl_client *cl = c->clients; cl; cl = cl->next) {
        if (cl->peer.privileged)
            continue;
        unprivileged++;
        if (cl->peer.uid == uid)
            mine++;
    }
    if (mine >= CTL_CLIENTS_PER_UID)
        return ctl_error(CTL_CODE_FAILED,
                         "too many connections: uid %u already has %u open, the most one user "
                         "may hold at once (root has no such limit); close some and retry",
                         (unsigned)uid, mine);
    if (unprivileged >= CTL_CLIENTS_MAX - CTL_CLIENTS_RESERVED)
        return ctl_error(CTL_CODE_FAILED,
                         "too many connections: control_group members hold %u, the most they "
                         "may (the other %d are kept for root); retry later",
                         unprivileged, CTL_CLIENTS_RESERVED);
    return NULL;
}

static void accept_one(struct ctl *c, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        close(fd);
        return;
    }
    bool privileged = cred.uid == 0 || cred.uid == geteuid();
    json_t *refusal = NULL;
    if (!privileged && !(c->has_group && peer_in_group(fd, c->group, cred.gid)))
        refusal = ctl_error(CTL_CODE_FAILED,
                            "permission denied: uid %u may not use the control socket "
                            "(root or the control_group only)",
                            (unsigned)cred.uid);
    else if (!privileged)
        refusal = over_cap(c, cred.uid);
    if (refusal) {
        /* The socket buffer of a new connection is empty: one short line always fits. */
        send_line_now(fd, refusal);
        close(fd);
        return;
    }

    struct ctl_client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        close(fd);
        return;
    }
    cl->ctl = c;
    cl->queue = -1;
    cl->peer = (struct ctl_peer){
        .uid = cred.uid, .gid = cred.gid, .pid = cred.pid, .privileged = privileged};
    loop_io_init(&cl->io);
    loop_timer_init(&cl->deadline, client_deadline, cl);
    if (loop_io_add(c->loop, &cl->io, fd, EPOLLIN | EPOLLRDHUP, client_io, cl) < 0) {
        close(fd);
        free(cl);
        return;
    }
    cl->next = c->clients;
    if (c->clients)
        c->clients->prev = cl;
    c->clients = cl;
    c->nclients++;
    loop_timer_arm(c->loop, &cl->deadline, CTL_DEADLINE_MS);
}

static void listener_io(struct loop *l, int lfd, uint32_t events, void *data)
{
    struct ctl *c = data;
    /* Bounded per turn so a connection storm cannot hold the loop. */
    for (int i = 0; i < 32; i++) {
        /* At the limit, stop accepting: the kernel queues newcomers in the backlog (their
         * connect waits) until a client leaves, instead of turning them away. */
        if (c->nclients >= CTL_CLIENTS_MAX) {
            if (loop_io_mod(l, &c->io, 0) == 0)
                c->paused = true;
            return;
        }
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        accept_one(c, fd);
    }
}

/* Decides what to do with whatever is at path: nothing there (0), a stale socket removed (0),
 * a live daemon's socket (-EADDRINUSE), something that is not a socket (-EEXIST). */
static int clear_stale(const struct sockaddr_un *sa)
{
    struct stat st;
    if (lstat(sa->sun_path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    int e = errno;
    close(fd);
    if (r == 0)
        return -EADDRINUSE;
    if (e != ECONNREFUSED && e != ENOENT)
        return -e;
    if (unlink(sa->sun_path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static int make_parent_dir(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    memcpy(dir, path, strlen(path) + 1); /* path fits: it came from ctl->path */
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int listen_on(struct ctl *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, c->path, sizeof(sa.sun_path));

    int r = make_parent_dir(c->path);
    if (r < 0)
        return r;
    r = clear_stale(&sa);
    if (r < 0)
        return r;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* The socket file is born 0600: no window in which anyone else may connect. */
    mode_t old = umask(0177);
    r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (r < 0) {
        close(fd);
        return -e;
    }
    if (c->has_group && (chown(c->path, (uid_t)-1, c->group) < 0 || chmod(c->path, 0660) < 0)) {
        e = errno;
        unlink(c->path);
        close(fd);
        return -e;
    }
    struct stat st;
    if (listen(fd, 256) < 0 || stat(c->path, &st) < 0) {
        e = errno;
        unlink(c->path);
        close(fd);
        return -e;
    }
    c->sock_dev = st.st_dev;
    c->sock_ino = st.st_ino;
    c->fd = fd;
    return 0;
}

struct ctl *ctl_new(struct loop *l, const struct cfg_general *cfg, ctl_handler_fn handler,
                    void *data)
{
    if (strlen(cfg->control_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path) ||
        !cfg->control_socket[0]) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    struct ctl *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = l;
    c->handler = handler;
    c->data = data;
    c->fd = -1;
    loop_io_init(&c->io);
    loop_timer_init(&c->resume, on_resume, c);
    memcpy(c->path, cfg->control_socket, strlen(cfg->control_socket) + 1); /* length checked */
    if (cfg->control_group[0]) {
        struct group *gr = getgrnam(cfg->control_group);
        if (!gr) {
            free(c);
            errno = ENOENT;
            return NULL;
        }
        c->has_group = true;
        c->group = gr->gr_gid;
    }
    int r = listen_on(c);
    if (r == 0)
        r = loop_io_add(l, &c->io, c->fd, EPOLLIN, listener_io, c);
    if (r < 0) {
        if (c->fd >= 0) {
            unlink(c->path);
            close(c->fd);
        }
        free(c);
        errno = -r;
        return NULL;
    }
    return c;
}

void ctl_free(struct ctl *c)
{
    if (!c)
        return;
    while (c->clients)
        client_close(c->clients);
    loop_timer_cancel(c->loop, &c->resume);
    loop_io_del(c->loop, &c->io);
    if (c->fd >= 0) {
        /* Only our own socket: a successor may already have replaced the file. */
        struct stat st;
        if (stat(c->path, &st) == 0 && st.st_dev == c->sock_dev && st.st_ino == c->sock_ino)
            unlink(c->path);
        close(c->fd);
    }
    free(c);
}
