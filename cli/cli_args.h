/* pbxguard's command line, parsed and validated without I/O: argv in, a control request (or a
 * one-line error naming what is wrong) out. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "ctl_proto.h"

/* Exit codes scripts can trust: the control protocol's reply codes. */
enum cli_exit {
    CLI_EXIT_OK = CTL_CODE_OK,
    CLI_EXIT_FAILED = CTL_CODE_FAILED,           /* the operation failed */
    CLI_EXIT_USAGE = CTL_CODE_USAGE,             /* the command line (or the request) is wrong */
    CLI_EXIT_NOT_RUNNING = CTL_CODE_NOT_RUNNING, /* the daemon is not running */
};

/* One line per command in cli_commands[]; its options are lines of the option table in
 * cli_args.c, which also writes its usage line and help from them. */
struct cli_command {
    const char *name;
    const char *arg;     /* its positional argument ("ADDR[/LEN]", sent as "addr"), or NULL */
    const char *summary; /* one line for --help */
};

/* status, ban, unban, list, show, reload: NULL-terminated by a zeroed entry. */
extern const struct cli_command cli_commands[];
const struct cli_command *cli_command_find(const char *name);
/* The usage line after "usage: pbxguard ", e.g. "unban ADDR[/LEN] [--json]". */
const char *cli_command_usage(const struct cli_command *cmd, char *buf, size_t len);
/* The command's own options, one "  --name ARG   what it does" line each. */
void cli_command_help(const struct cli_command *cmd, FILE *out);
/* The global options (-s, -c, --json, -h, -V), one line each. */
void cli_global_help(FILE *out);

struct cli_args {
    const struct cli_command *command; /* NULL with help: general help */
    bool help;                         /* --help: print help, send nothing */
    bool version;                      /* --version */
    bool json;                         /* --json: print the daemon's reply as JSON */
    const char *socket;                /* -s/--socket PATH, or NULL */
    const char *config;                /* -c/--config PATH, or NULL */
    json_t *request;                   /* the request to send; NULL with help/version */
};

/* Parses argv (argv[0] is the program). Global options (-s, -c, --json, -h) go anywhere. On
 * success returns 0 and fills ret_args (release with cli_args_release()). On a usage error
 * returns -EINVAL with a one-line message naming what is wrong in err (no "pbxguard: "
 * prefix, no newline), and *hint set to the command if it was known (for a usage line). */
int cli_args_parse(int argc, char **argv, struct cli_args *ret_args,
                   const struct cli_command **hint, char *err, size_t errlen);
void cli_args_release(struct cli_args *args); /* accepts zeroed */

/* Validates and canonicalizes an ADDR[/LEN] argument into out ("203.0.113.0/24"). Returns 0,
 * or -EINVAL with the reason in err. */
int cli_parse_prefix(const char *s, char *out, size_t outlen, char *err, size_t errlen);
