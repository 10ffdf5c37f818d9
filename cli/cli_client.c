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

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until the deadline. Returns 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, long long deadline)
{
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

static int call(int fd, const char *path, json_t *req, long long deadline, json_t **ret_reply)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    /* A non-blocking connect to a unix socket whose backlog is full fails with EAGAIN and
     * must be retried (it does not complete later): a busy daemon is waited for, briefly. */
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        if (now_ms() >= deadline)
            return -ETIMEDOUT;
        poll(NULL, 0, 10);
    }

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
    while (off < len) {
        ssize_t n = send(fd, msg + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r < 0) {
                free(msg);
                return r;
            }
            continue;
        }
        if (n < 0)
            break;
        off += (size_t)n;
    }
    free(msg);

    char *buf = NULL;
    size_t blen = 0, bcap = 0;
    int r = 0;
    for (;;) {
        char *nl = blen ? memchr(buf, '\n', blen) : NULL;
        if (nl) {
            blen = (size_t)(nl - buf);
            break;
        }
        if (blen == bcap) {
            if (bcap >= REPLY_MAX) {
                r = -EPROTO;
                break;
            }
            bcap = bcap ? bcap * 2 : 65536;
            char *b = realloc(buf, bcap);
            if (!b) {
                r = -ENOMEM;
                break;
            }
            buf = b;
        }
        ssize_t n = recv(fd, buf + blen, bcap - blen, MSG_DONTWAIT);
        if (n > 0) {
            blen += (size_t)n;
            continue;
        }
        if (n == 0) {
            r = -EPROTO; /* closed without a complete reply */
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            r = errno == ECONNRESET ? -EPROTO : -errno;
            break;
        }
        r = wait_fd(fd, POLLIN, deadline);
        if (r < 0)
            break;
    }
    if (r == 0) {
        json_t *reply = json_loadb(buf, blen, 0, NULL);
        if (!json_is_object(reply)) {
            json_decref(reply);
            r = -EPROTO;
        } else {
            *ret_reply = reply;
        }
    }
    free(buf);
    return r;
}

int cli_client_call(const char *path, json_t *req, int timeout_ms, json_t **ret_reply)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int r = call(fd, path, req, now_ms() + timeout_ms, ret_reply);
    close(fd);
    return r;
}
