/* pbxguard watch. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli_args.h"
#include "cli_client.h"
#include "cli_format.h"
#include "cli_watch.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int cli_watch(const char *path, json_t *req, bool json, FILE *out, json_t **ret_reply)
{
    struct cli_conn *c;
    *ret_reply = NULL;
    int r = cli_client_open(path, CLI_TIMEOUT_MS, &c);
    if (r < 0)
        return r;
    json_t *reply = NULL;
    r = cli_client_request(c, req, CLI_TIMEOUT_MS, &reply);
    if (r < 0) {
        cli_client_close(c);
        return r;
    }
    if (!json_is_true(json_object_get(reply, "ok"))) {
        cli_client_close(c);
        *ret_reply = reply;
        return CLI_EXIT_FAILED;
    }
    json_decref(reply);

    /* Ctrl-C ends a watch normally: the wait below returns, and the exit code is 0. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (!json)
        fprintf(out, "watching (Ctrl-C to stop)\n");
    fflush(out);

    int code = CLI_EXIT_OK;
    while (!stop) {
        json_t *rec = NULL;
        r = cli_client_next(c, &rec);
        if (r == -EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "pbxguard: watch: the daemon closed the stream%s\n",
                    r == -EPROTO ? " (stopped or restarted?)" : "");
            code = CLI_EXIT_FAILED;
            break;
        }
        bool dropped = json_is_string(json_object_get(rec, "type")) &&
                       strcmp(json_string_value(json_object_get(rec, "type")), "dropped") == 0;
        if (json)
            cli_format_json_line(rec, out);
        else
            cli_format_watch(rec, out);
        if (dropped) {
            char safe[600];
            const char *msg = json_string_value(json_object_get(rec, "error"));
            fprintf(stderr, "pbxguard: watch: %s\n",
                    cli_format_safe(msg ? msg : "dropped", safe, sizeof(safe)));
            code = CLI_EXIT_FAILED;
        }
        json_decref(rec);
        if (fflush(out) != 0 || ferror(out)) {
            code = CLI_EXIT_FAILED;
            break;
        }
        if (dropped)
            break;
    }
    cli_client_close(c);
    return code;
}
