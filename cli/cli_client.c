#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli_client.h"
#include "ctl_proto.h"

/* The daemon never sends more than CTL_REPLY_MAX; a little slack for its newline. */
#define REPLY_MAX (CTL_REPLY_MAX + 1024)

struct cli_conn {
    int fd;
    char *buf; /* bytes read past the last reply line */
    size_t len, cap;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* No deadline: a stream waits for its next line as long as it takes. */
#define FOREVER (-1LL)

/* Waits for events on fd until the deadline. Returns 0, -ETIMEDOUT or -errno; without a
 * deadline, -EINTR when a signal arrives (the caller decides whether to stop). */
static int wait_fd(int fd, short events, long long deadline)
{
    if (deadline == FOREVER) {
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, -1);
        return n < 0 ? -errno : 0;
    }
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n > 0)
            return 0;
    }
}

int cli_client_open(const char *path, int timeout_ms, struct cli_conn **ret_conn)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    struct cli_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        int e = errno;
        free(c);
        return -e;
    }
    /* A non-blocking connect to a unix socket whose backlog is full fails with EAGAIN and
     * must be retried (it does not complete later): a busy daemon is waited for, briefly. */
    long long deadline = now_ms() + timeout_ms;
    while (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        if (e == EINTR)
            continue;
        if (e != EAGAIN || now_ms() >= deadline) {
            cli_client_close(c);
            return e == EAGAIN ? -ETIMEDOUT : -e;
        }
        poll(NULL, 0, 10);
    }
    *ret_conn = c;
    return 0;
}

void cli_client_close(struct cli_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
}

static int send_line(struct cli_conn *c, json_t *req, long long deadline)
{
    char *line = json_dumps(req, JSON_COMPACT);
    if (!line)
        return -ENOMEM;
    size_t len = strlen(line), off = 0;
    char *msg = malloc(len + 1);
    if (!msg) {
        free(line);
        return -ENOMEM;
    }
    memcpy(msg, line, len);
    msg[len++] = '\n';
    free(line);
    /* A daemon that refuses us answers and closes at once: a failed send still has a reply. */
    int r = 0;
    while (off < len) {
        ssize_t n = send(c->fd, msg + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            r = wait_fd(c->fd, POLLOUT, deadline);
            if (r < 0)
                break;
            continue;
        }
        if (n < 0)
            break;
        off += (size_t)n;
    }
    free(msg);
    return r;
}

/* Reads until the buffer holds a whole line; returns its length (without the newline). */
static int read_line(struct cli_conn *c, long long deadline, size_t *ret_len)
{
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            *ret_len = (size_t)(nl - c->buf);
            return 0;
        }
        if (c->len == c->cap) {
            if (c->cap >= REPLY_MAX)
                return -EPROTO;
            size_t cap = c->cap ? c->cap * 2 : 65536;
            char *b = realloc(c->buf, cap);
            if (!b)
                return -ENOMEM;
            c->buf = b;
            c->cap = cap;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0)
            return -EPROTO; /* closed without a complete reply */
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return errno == ECONNRESET ? -EPROTO : -errno;
        int r = wait_fd(c->fd, POLLIN, deadline);
        if (r < 0)
            return r;
    }
}

int cli_client_request(struct cli_conn *c, json_t *req, int timeout_ms, json_t **ret_reply)
{
    long long deadline = now_ms() + timeout_ms;
    int r = send_line(c, req, deadline);
    size_t len = 0;
    if (r == 0)
        r = read_line(c, deadline, &len);
    if (r < 0)
        return r;
    json_t *reply = json_loadb(c->buf, len, 0, NULL);
    c->len -= len + 1;
    memmove(c->buf, c->buf + len + 1, c->len);
    if (!json_is_object(reply)) {
        json_decref(reply);
        return -EPROTO;
    }
    *ret_reply = reply;
    return 0;
}

int cli_client_next(struct cli_conn *c, json_t **ret_reply)
{
    size_t len = 0;
    int r = read_line(c, FOREVER, &len);
    if (r < 0)
        return r;
    json_t *reply = json_loadb(c->buf, len, 0, NULL);
    c->len -= len + 1;
    memmove(c->buf, c->buf + len + 1, c->len);
    if (!json_is_object(reply)) {
        json_decref(reply);
        return -EPROTO;
    }
    *ret_reply = reply;
    return 0;
}

int cli_client_call(const char *path, json_t *req, int timeout_ms, json_t **ret_reply)
{
    struct cli_conn *c;
    long long deadline = now_ms() + timeout_ms;
    int r = cli_client_open(path, timeout_ms, &c);
    if (r < 0)
        return r;
    long long left = deadline - now_ms();
    r = cli_client_request(c, req, left > 0 ? (int)left : 0, ret_reply);
    cli_client_close(c);
    return r;
}
