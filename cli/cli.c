/* pbxguard: parse the command line, ask the daemon over the control socket, print the answer. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build-config.h"
#include "cli.h"
#include "cli_args.h"
#include "cli_client.h"
#include "cli_config.h"
#include "cli_format.h"
#include "cli_list.h"
#include "cli_watch.h"
#include "cli_transfer.h"
#include "config.h"
#include "ctl_proto.h"
#include "report.h"

/* Commands that parse their own options (the socket and configuration given before them are
 * passed on). */
struct cli_own_main {
    const char *name;
    int (*main)(int argc, char **argv, const char *socket, const char *config, bool json);
    const char *summary;
};
static const struct cli_own_main own_mains[] = {
    {"export", cli_export_main, "write the active bans as JSON, CSV or an nft script"},
    {"import", cli_import_main, "ban what a file, a list or fail2ban's database holds"},
    {0},
};

static void print_help(FILE *out, const struct cli_command *cmd)
{
    char usage[256];
    if (cmd) {
        fprintf(out, "usage: pbxguard %s\n\n%s.\n\nOptions:\n",
                cli_command_usage(cmd, usage, sizeof(usage)), cmd->summary);
        cli_command_help(cmd, out);
        cli_global_help(out);
        fprintf(out, "\nExit codes: 0 success, 1 the operation failed, 2 usage error, 3 the daemon "
                     "is not running.\n");
        return;
    }
    fprintf(out, "usage: pbxguard [-s SOCKET | -c CONFIG] [--json] COMMAND [ARGS]\n\n"
                 "Commands:\n");
    for (const struct cli_command *c = cli_commands; c->name; c++)
        fprintf(out, "  %-8s %s\n", c->name, c->summary);
    for (const struct cli_own_main *m = own_mains; m->name; m++)
        fprintf(out, "  %-8s %s\n", m->name, m->summary);
    fprintf(out, "  %-8s %s\n", "report",
            "summarize attacks and bans over a period (see pbxguard report --help)");
    fprintf(out, "\nOptions:\n");
    cli_global_help(out);
    fprintf(out,
            "\nExit codes: 0 success, 1 the operation failed, 2 usage error, 3 the daemon is not "
            "running.\n");
}

/* The socket: -s, else the configuration's control_socket (-c, or the default file if it
 * exists), else the built-in default. */
static int socket_path(const struct cli_args *a, char *buf, size_t buflen)
{
    if (a->socket) {
        snprintf(buf, buflen, "%s", a->socket);
        return 0;
    }
    return cli_config_path(a->config, CLI_PATH_SOCKET, "pbxguard", buf, buflen);
}

/* The reply as indented JSON, ASCII only (cli_format_json()), and a newline. */
static int print_json(const json_t *reply, FILE *out)
{
    int r = cli_format_json(reply, 0, out);
    if (r == 0)
        fputc('\n', out);
    return r;
}

static int exit_code(const json_t *reply)
{
    if (json_is_true(json_object_get(reply, "ok")))
        return CLI_EXIT_OK;
    json_int_t code = json_integer_value(json_object_get(reply, "code"));
    return code == CLI_EXIT_USAGE ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
}

int cli_main(int argc, char **argv)
{
    struct cli_args a;
    const struct cli_command *hint;
    char err[512];

    /* Commands with options of their own run their own main: report reads the database
     * itself (read-only), export and import page and stream. A -s or -c given before the
     * command is passed on. */
    const char *config = NULL, *sock = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        bool is_c = strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0;
        bool is_s = strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--socket") == 0;
        if ((is_c || is_s) && i + 1 < argc) {
            *(is_c ? &config : &sock) = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--config=", 9) == 0)
            config = argv[i] + 9;
        if (strncmp(argv[i], "--socket=", 9) == 0)
            sock = argv[i] + 9;
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
            json = true;
        if (argv[i][0] == '-')
            continue;
        if (strcmp(argv[i], "report") == 0) {
            char *rargv[argc + 3];
            int rargc = 0;
            rargv[rargc++] = argv[i];
            if (config) {
                rargv[rargc++] = "--config";
                rargv[rargc++] = (char *)config;
            }
            for (int k = i + 1; k < argc; k++)
                rargv[rargc++] = argv[k];
            rargv[rargc] = NULL;
            return report_main(rargc, rargv);
        }
        for (const struct cli_own_main *m = own_mains; m->name; m++)
            if (strcmp(argv[i], m->name) == 0)
                return m->main(argc - i, argv + i, sock, config, json);
        break;
    }

    if (cli_args_parse(argc, argv, &a, &hint, err, sizeof(err)) < 0) {
        char safe[sizeof(err) * 4];
        /* It may quote an argument, and an argument may hold anything. */
        fprintf(stderr, "pbxguard: %s\n", cli_format_safe(err, safe, sizeof(safe)));
        char usage[256];
        if (hint)
            fprintf(stderr, "usage: pbxguard %s (see pbxguard %s --help)\n",
                    cli_command_usage(hint, usage, sizeof(usage)), hint->name);
        else
            fprintf(stderr, "usage: pbxguard COMMAND [ARGS] (see pbxguard --help)\n");
        return CLI_EXIT_USAGE;
    }
    if (a.version) {
        printf("pbxguard %s\n", PBXGUARD_VERSION);
        cli_args_release(&a);
        return CLI_EXIT_OK;
    }
    if (a.help) {
        print_help(stdout, a.command);
        cli_args_release(&a);
        return CLI_EXIT_OK;
    }

    char path[CFG_PATH_MAX];
    if (socket_path(&a, path, sizeof(path)) < 0) {
        cli_args_release(&a);
        return CLI_EXIT_FAILED;
    }
    json_t *reply = NULL;
    const char *cmd = a.command->name;
    /* list comes a page at a time and prints as it goes; its reply here is an error only. */
    bool paged = strcmp(cmd, "list") == 0;
    /* watch streams until Ctrl-C; its reply here is an error only, its result the exit code. */
    int watched = -1;
    int r = paged ? cli_list(path, a.request, a.json, stdout, &reply)
            : strcmp(cmd, "watch") == 0
                ? (watched = cli_watch(path, a.request, a.json, stdout, &reply))
                : cli_client_call(path, a.request, CLI_TIMEOUT_MS, &reply);
    if (watched > 0 && !reply) {
        cli_args_release(&a);
        return watched;
    }
    if (watched >= 0)
        r = 0;
    if (r == -ENOENT || r == -ECONNREFUSED) {
        fprintf(stderr,
                "pbxguard: the daemon is not running (nothing listens on %s); "
                "start it with: systemctl start pbxguard\n",
                path);
        cli_args_release(&a);
        return CLI_EXIT_NOT_RUNNING;
    }
    if (r < 0) {
        if (r == -EACCES || r == -EPERM)
            fprintf(stderr,
                    "pbxguard: %s: permission denied (run as root or as a member of "
                    "the control_group)\n",
                    path);
        else if (r == -ETIMEDOUT)
            fprintf(stderr, "pbxguard: %s: the daemon did not answer within %d s\n", cmd,
                    CLI_TIMEOUT_MS / 1000);
        else if (r == -EPROTO)
            fprintf(stderr, "pbxguard: %s: the daemon closed the connection without an answer\n",
                    cmd);
        else
            fprintf(stderr, "pbxguard: %s: %s\n", path, strerror(-r));
        cli_args_release(&a);
        return CLI_EXIT_FAILED;
    }

    int code = reply ? exit_code(reply) : CLI_EXIT_OK;
    if (!reply) {
        /* Printed already. */
    } else if (a.json) {
        if (print_json(reply, stdout) < 0)
            code = CLI_EXIT_FAILED;
    } else if (code == CLI_EXIT_OK) {
        if (cli_format_reply(cmd, reply, (int64_t)time(NULL), stdout) < 0)
            code = CLI_EXIT_FAILED;
    } else {
        const char *msg = json_string_value(json_object_get(reply, "error"));
        char safe[2048];
        fprintf(stderr, "pbxguard: %s: %s\n", cmd,
                msg ? cli_format_safe(msg, safe, sizeof(safe)) : "failed");
        size_t i;
        const json_t *x;
        json_array_foreach(json_object_get(reply, "errors"), i, x)
        {
            if (json_is_string(x))
                fprintf(stderr, "pbxguard: %s\n",
                        cli_format_safe(json_string_value(x), safe, sizeof(safe)));
        }
        char usage[256];
        if (code == CLI_EXIT_USAGE)
            fprintf(stderr, "usage: pbxguard %s (see pbxguard %s --help)\n",
                    cli_command_usage(a.command, usage, sizeof(usage)), cmd);
    }
    json_decref(reply);
    cli_args_release(&a);
    if (fflush(stdout) != 0)
        code = CLI_EXIT_FAILED;
    return code;
}
