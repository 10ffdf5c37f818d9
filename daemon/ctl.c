/* The control server. One listening socket and up to CTL_CLIENTS_MAX clients, all non-blocking
 * on the daemon's loop. A client is a small state machine: read until a newline (at most
 * CTL_REQUEST_MAX bytes), answer, flush the reply, read the next request. While a reply is
 * being flushed the client is not read, so one client holds at most one request and one reply
 * in memory. Each step must finish within CTL_DEADLINE_MS or the client is cut off. */
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
#include <unistd.h>

#include "ctl.h"

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
};

struct ctl {
    struct loop *loop;
    ctl_handler_fn handler;
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

/* Removes the client from the loop, closes its socket and frees it. */
static void client_close(struct ctl_client *cl)
{
    struct ctl *c = cl->ctl;
    int fd = cl->io.fd;
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
    free(cl->in);
    free(cl->out);
    free(cl);
}

static void client_deadline(struct loop *l, void *data)
{
    client_close(data);
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
    free(cl->out);
    cl->out = NULL;
    cl->outlen = cl->outoff = 0;
    return 1;
}

/* Serializes reply (consumed) as one line into the output buffer. */
static void client_queue(struct ctl_client *cl, json_t *reply)
{
    char *s = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
    json_decref(reply);
    if (s && strlen(s) + 1 > CTL_REPLY_MAX) {
        free(s);
        reply = ctl_error(CTL_CODE_FAILED, "reply too large (over %d bytes)", CTL_REPLY_MAX);
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
}

static json_t *answer(struct ctl_client *cl, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req)
        return ctl_error(CTL_CODE_USAGE, "malformed request: %s", jerr.text);
    json_t *reply;
    const char *cmd = json_string_value(json_object_get(req, "cmd"));
    if (!json_is_object(req))
        reply = ctl_error(CTL_CODE_USAGE, "malformed request: not a JSON object");
    else if (!cmd)
        reply = ctl_error(CTL_CODE_USAGE, "malformed request: no \"cmd\" string");
    else {
        reply = cl->ctl->handler(cl->ctl->data, cmd, req, &cl->peer);
        if (!reply)
            reply = ctl_error(CTL_CODE_FAILED, "internal error");
    }
    json_decref(req);
    return reply;
}

/* Answers the first complete line in the input buffer, if there is one. Returns true if it did. */
static bool client_process(struct ctl_client *cl)
{
    char *nl = cl->inlen ? memchr(cl->in, '\n', cl->inlen) : NULL;
    if (!nl)
        return false;
    size_t len = (size_t)(nl - cl->in);
    client_queue(cl, answer(cl, cl->in, len));
    cl->inlen -= len + 1;
    memmove(cl->in, nl + 1, cl->inlen);
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
        if (cl->stop)
            goto close;
        if (!client_process(cl))
            break;
    }
    if (cl->eof)
        goto close;
    if (loop_io_mod(l, &cl->io, EPOLLIN | EPOLLRDHUP) < 0)
        goto close;
    return;
close:
    client_close(cl);
}

static void client_io(struct loop *l, int fd, uint32_t events, void *data)
{
    struct ctl_client *cl = data;
    bool writing = cl->outoff < cl->outlen;

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

static void accept_one(struct ctl *c, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        close(fd);
        return;
    }
    json_t *refusal = NULL;
    if (cred.uid != 0 && cred.uid != geteuid() &&
        !(c->has_group && peer_in_group(fd, c->group, cred.gid)))
        refusal = ctl_error(CTL_CODE_FAILED,
                            "permission denied: uid %u may not use the control socket "
                            "(root or the control_group only)",
                            (unsigned)cred.uid);
    if (refusal) {
        /* The socket buffer of a new connection is empty: one short line always fits. */
        char *s = json_dumps(refusal, JSON_COMPACT);
        json_decref(refusal);
        if (s) {
            struct iovec iov[2] = {{s, strlen(s)}, {"\n", 1}};
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
            (void)!sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
            free(s);
        }
        close(fd);
        return;
    }

    struct ctl_client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        close(fd);
        return;
    }
    cl->ctl = c;
    cl->peer = (struct ctl_peer){.uid = cred.uid, .gid = cred.gid, .pid = cred.pid};
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
