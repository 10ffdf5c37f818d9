/* A tiny real control server for the socket tests: serves ctl on a loop with a handler that
 * echoes each request back with the peer's credentials; "page" is a paged command whose reply
 * is as large as a page may be, and "clients" reports the server's counters. "ready" on stdout once
 * listening. Usage: ctl-echo SOCKET [GROUP]; exits 0 on SIGTERM, 1 (with the reason) if ctl_new
 * fails. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static json_t *echo(void *data, const char *cmd, json_t *req, const struct ctl_peer *peer)
{
    if (strcmp(cmd, "fail") == 0)
        return ctl_error(CTL_CODE_FAILED, "failed as asked");
    /* Fixed addresses make the handler fail, so the CLI's exit codes can be checked. */
    const char *addr = json_string_value(json_object_get(req, "addr"));
    if (addr && strcmp(addr, "192.0.2.66") == 0)
        return ctl_error(CTL_CODE_FAILED, "refused as asked");
    if (addr && strcmp(addr, "192.0.2.67") == 0)
        return ctl_error(CTL_CODE_USAGE, "bad request as asked");
    if (strcmp(cmd, "clients") == 0)
        return json_pack("{s:b, s:i, s:I, s:i}", "ok", 1, "clients", (int)ctl_clients(data),
                         "reply_bytes", (json_int_t)ctl_reply_bytes(data), "waiting",
                         (int)ctl_waiting(data));
    if (strcmp(cmd, "page") == 0) {
        /* A reply as large as a page may be, or as asked (at most that). */
        json_int_t n = json_integer_value(json_object_get(req, "bytes"));
        if (n <= 0 || n > CTL_PAGE_BYTES_MAX - 64)
            n = CTL_PAGE_BYTES_MAX - 64;
        char *fill = malloc((size_t)n + 1);
        if (!fill)
            return NULL;
        memset(fill, 'x', (size_t)n);
        fill[n] = '\0';
        json_t *r = json_pack("{s:b, s:s}", "ok", 1, "fill", fill);
        free(fill);
        return r;
    }
    return json_pack("{s:b, s:s, s:O, s:{s:i, s:i}}", "ok", 1, "cmd", cmd, "req", req, "peer",
                     "uid", (int)peer->uid, "pid", (int)peer->pid);
}

static struct ctl *server;

static bool paged(const char *cmd)
{
    return strcmp(cmd, "page") == 0;
}

static json_t *dispatch(void *data, const char *cmd, json_t *req, const struct ctl_peer *peer)
{
    return echo(server, cmd, req, peer);
}

static void on_term(struct loop *l, void *data)
{
    loop_stop(l);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ctl-echo SOCKET [GROUP]\n");
        return 2;
    }
    struct cfg_general cfg = {0};
    snprintf(cfg.control_socket, sizeof(cfg.control_socket), "%s", argv[1]);
    if (argc > 2)
        snprintf(cfg.control_group, sizeof(cfg.control_group), "%s", argv[2]);
    struct loop *l = loop_new();
    if (!l)
        return 1;
    loop_signal_add(l, SIGTERM, on_term, NULL);
    loop_signal_add(l, SIGINT, on_term, NULL);
    server = ctl_new(l, &cfg, dispatch, NULL);
    if (!server) {
        printf("error: %s\n", strerror(errno));
        loop_free(l);
        return 1;
    }
    ctl_set_paged(server, paged);
    printf("ready\n");
    fflush(stdout);
    int r = loop_run(l);
    ctl_free(server);
    loop_free(l);
    return r < 0 ? 1 : 0;
}
