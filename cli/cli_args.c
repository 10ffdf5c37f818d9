/* pbxguard's command line: a table of commands and a table of options, one line each (as
 * config.c has one line per key), from which the parser, the request, the usage lines and the
 * help are all made. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "cli_args.h"
#include "ctl_proto.h"
#include "duration.h"

const struct cli_command cli_commands[] = {
    {"status", NULL, "show the daemon's health, sessions and counts"},
    {"ban", "ADDR[/LEN]", "ban an address or prefix by hand"},
    {"unban", "ADDR[/LEN]", "lift a ban, in the database and in the kernel"},
    {"list", NULL, "list the active bans with their remaining time"},
    {"show", "ADDR[/LEN]", "everything known about an address: why it is (or is not) blocked"},
    {"reload", NULL, "make the daemon re-read its configuration (like SIGHUP)"},
    {"allow", "ADDR[/LEN]", "never ban an address or prefix (lifts its bans); --remove undoes it"},
    {"allowlist", NULL, "list the allowed prefixes: the configuration's and the runtime ones"},
    {"watch", NULL, "stream events and verdicts as they happen (Ctrl-C stops)"},
    {0},
};

enum opt_kind {
    /* The CLI's own settings, into struct cli_args at field. */
    OPT_SETTING_FLAG, /* a bool */
    OPT_SETTING_PATH, /* a const char * */
    /* Parts of the request, sent as its JSON member key. */
    OPT_TRUE,     /* a flag: key = true */
    OPT_CONST,    /* a flag: key = value */
    OPT_TEXT,     /* one line of UTF-8, at most max bytes */
    OPT_DURATION, /* a ban's length, sent in seconds: min..max */
    OPT_COUNT,    /* a whole number, min..max */
    OPT_CHOICE,   /* one of the words of arg ("threshold|manual"), as given */
};

struct cli_option {
    const char *name;     /* "--for" */
    const char *alias;    /* "-4", or NULL */
    const char *commands; /* the commands that take it ("ban list"); NULL: every one (global) */
    enum opt_kind kind;
    const char *key;    /* OPT_SETTING_*: unused; else the request's member */
    size_t field;       /* OPT_SETTING_*: offset into struct cli_args */
    const char *arg;    /* what the value is called in usage and help; NULL for flags */
    long long min, max; /* bounds (OPT_TEXT: max bytes); OPT_CONST: min is the value sent */
    const char *group;  /* options of one group exclude each other; NULL: none */
    const char *what;   /* what a valid value is, for the error ("a number of bans (1 or more)") */
    const char *help;
};

#define SETTING(f) NULL, offsetof(struct cli_args, f)
#define REQUEST(k) k, 0
#define YEARS_100 CTL_MANUAL_BAN_MAX_S

/* The options, one line each. Global ones (commands NULL) go anywhere on the line; a command's
 * own ones follow it. Usage lines and help are written from here, in this order. */
static const struct cli_option options[] = {
    {"--for", NULL, "ban", OPT_DURATION, REQUEST("duration"), "DURATION", 1, YEARS_100, "length",
     "a duration (e.g. 30m, 1h, 7d, 1d12h)",
     "ban length, e.g. 30m, 1h, 7d, 1d12h (default: the policy's bantime)"},
    {"--permanent", NULL, "ban", OPT_TRUE, REQUEST("permanent"), NULL, 0, 0, "length", NULL,
     "ban with no end"},
    {"--reason", NULL, "ban", OPT_TEXT, REQUEST("note"), "TEXT", 0, CTL_NOTE_MAX, NULL, NULL,
     "a note kept with the ban (at most 200 bytes)"},
    {"--force", NULL, "ban", OPT_TRUE, REQUEST("force"), NULL, 0, 0, NULL, NULL,
     "ban even if the address is whitelisted"},
    {"--for", NULL, "allow", OPT_DURATION, REQUEST("duration"), "DURATION", 1, YEARS_100, NULL,
     "a duration (e.g. 30m, 1h, 7d, 1d12h)",
     "how long the allow lasts, e.g. 2h, 7d (default: until removed)"},
    {"--reason", NULL, "allow", OPT_TEXT, REQUEST("note"), "TEXT", 0, CTL_NOTE_MAX, NULL, NULL,
     "why, kept with the entry and shown by show and allowlist (at most 200 bytes)"},
    {"--remove", NULL, "allow", OPT_TRUE, REQUEST("remove"), NULL, 0, 0, NULL, NULL,
     "take a runtime entry off the allowlist ([whitelist] entries live in the file)"},
    {"--v4", "-4", "list", OPT_CONST, REQUEST("family"), NULL, 4, 0, "family", NULL,
     "only IPv4 bans"},
    {"--v6", "-6", "list", OPT_CONST, REQUEST("family"), NULL, 6, 0, "family", NULL,
     "only IPv6 bans"},
    {"--reason", NULL, "list", OPT_CHOICE, REQUEST("reason"), "threshold|manual|remote", 0, 0, NULL,
     "a ban reason (threshold, manual or remote)",
     "only bans of this reason: threshold (earned), manual or remote (from the fleet)"},
    {"--limit", NULL, "list", OPT_COUNT, REQUEST("limit"), "N", 1, 100000000, "limit",
     "a number of bans (1 or more)", "at most N bans, oldest first (default 1000)"},
    {"--all", NULL, "list", OPT_CONST, REQUEST("limit"), NULL, 0, 0, "limit", NULL,
     "every ban, however many"},
    {"--json", "-j", NULL, OPT_SETTING_FLAG, SETTING(json), NULL, 0, 0, NULL, NULL,
     "print the daemon's reply as JSON, for scripts"},
    {"--socket", "-s", NULL, OPT_SETTING_PATH, SETTING(socket), "PATH", 0, 0, NULL, NULL,
     "the daemon's control socket (default " CTL_DEFAULT_SOCKET ")"},
    {"--config", "-c", NULL, OPT_SETTING_PATH, SETTING(config), "PATH", 0, 0, NULL, NULL,
     "take the socket's path from this configuration file"},
    {"--help", "-h", NULL, OPT_SETTING_FLAG, SETTING(help), NULL, 0, 0, NULL, NULL,
     "this help; pbxguard COMMAND --help for a command's options"},
    {"--version", "-V", NULL, OPT_SETTING_FLAG, SETTING(version), NULL, 0, 0, NULL, NULL,
     "print the version"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))
#define POSITIONAL_MAX 4

const struct cli_command *cli_command_find(const char *name)
{
    for (const struct cli_command *c = cli_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* Whether the word name is in the space-separated list. */
static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static bool takes(const struct cli_option *o, const struct cli_command *cmd)
{
    return !o->commands || (cmd && in_list(o->commands, cmd->name));
}

/* The option line arg names for cmd: "--reason" is one line for ban and another for list. A
 * valued option also matches "--name=VALUE". */
static const struct cli_option *find_option(const char *arg, const struct cli_command *cmd)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct cli_option *o = &options[i];
        if (!takes(o, cmd))
            continue;
        size_t n = strlen(o->name);
        if (strcmp(arg, o->name) == 0 || (o->alias && strcmp(arg, o->alias) == 0) ||
            (o->arg && strncmp(arg, o->name, n) == 0 && arg[n] == '='))
            return o;
    }
    return NULL;
}

/* "--for DURATION", or with its alias "-s, --socket PATH", for usage and help. */
static const char *option_text(const struct cli_option *o, bool alias, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s%s%s", alias && o->alias ? o->alias : "",
             alias && o->alias ? ", " : "", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    return buf;
}

const char *cli_command_usage(const struct cli_command *cmd, char *buf, size_t len)
{
    size_t at = (size_t)snprintf(buf, len, "%s%s%s", cmd->name, cmd->arg ? " " : "",
                                 cmd->arg ? cmd->arg : "");
    char opt[64];
    for (size_t i = 0; i < NOPTIONS && at < len; i++) {
        const struct cli_option *o = &options[i];
        if (!o->commands ? o->field != offsetof(struct cli_args, json) : !takes(o, cmd))
            continue;
        bool first = !o->group || i == 0 || !options[i - 1].group ||
                     strcmp(options[i - 1].group, o->group) != 0 || !takes(&options[i - 1], cmd);
        bool last = !o->group || i + 1 == NOPTIONS || !options[i + 1].group ||
                    strcmp(options[i + 1].group, o->group) != 0 || !takes(&options[i + 1], cmd);
        at += (size_t)snprintf(buf + at, len - at, "%s%s%s", first ? " [" : " | ",
                               option_text(o, false, opt, sizeof(opt)), last ? "]" : "");
    }
    return buf;
}

static void help_line(const struct cli_option *o, FILE *out)
{
    char opt[64];
    option_text(o, true, opt, sizeof(opt));
    if (strlen(opt) > 20) /* a long one gets its own line */
        fprintf(out, "  %s\n  %-20s %s\n", opt, "", o->help);
    else
        fprintf(out, "  %-20s %s\n", opt, o->help);
}

void cli_command_help(const struct cli_command *cmd, FILE *out)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].commands && takes(&options[i], cmd))
            help_line(&options[i], out);
}

void cli_global_help(FILE *out)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (!options[i].commands)
            help_line(&options[i], out);
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

int cli_parse_prefix(const char *s, char *out, size_t outlen, char *err, size_t errlen)
{
    struct addr_prefix p;
    if (addr_prefix_parse(s, false, &p) == 0) {
        if (p.len == 0)
            return fail(err, errlen, "\"%s\": a /0 prefix would be every address", s);
        addr_prefix_format(&p, out, outlen);
        return 0;
    }
    /* Say which part is wrong: the address, the length, or host bits past the length. */
    const char *slash = strchr(s, '/');
    struct addr a;
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (addr_parse(s, alen, &a) < 0)
        return fail(err, errlen,
                    "\"%.*s\" is not an IP address (e.g. 203.0.113.7, 2001:db8::1, 203.0.113.0/24)",
                    (int)(alen > 64 ? 64 : alen), s);
    unsigned max = addr_max_len(&a);
    char *end;
    errno = 0;
    unsigned long len = strtoul(slash + 1, &end, 10);
    if (!slash[1] || *end || errno || len > max || slash[1] == '-' || slash[1] == '+' ||
        slash[1] == ' ')
        return fail(err, errlen, "\"/%.8s\" is not a prefix length for %s (0-%u)", slash + 1,
                    a.family == AF_INET ? "IPv4" : "IPv6", max);
    if (addr_prefix_parse(s, true, &p) == 0) {
        char buf[ADDR_STRLEN];
        return fail(err, errlen, "\"%s\" has host bits set past /%lu (did you mean %s?)", s, len,
                    addr_prefix_format(&p, buf, sizeof(buf)));
    }
    return fail(err, errlen, "\"%s\" is not an IP address or prefix", s);
}

static bool one_line(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* Sets what the option o with value v puts into the request; -EINVAL with the reason in err. */
static int set_member(json_t *req, const struct cli_option *o, const char *v, char *err,
                      size_t errlen)
{
    json_t *j = NULL;
    switch (o->kind) {
    case OPT_SETTING_FLAG:
    case OPT_SETTING_PATH:
        return 0;
    case OPT_TRUE:
        j = json_true();
        break;
    case OPT_CONST:
        j = json_integer(o->min);
        break;
    case OPT_TEXT:
        if ((long long)strlen(v) > o->max || !one_line(v))
            return fail(err, errlen, "%s must be one line of at most %lld bytes", o->name, o->max);
        if (!(j = json_string(v)))
            return fail(err, errlen, "%s is not valid UTF-8", o->name);
        break;
    case OPT_DURATION: {
        int64_t s;
        int e = duration_parse(v, &s);
        if (e == -ERANGE || (e == 0 && s > o->max))
            return fail(err, errlen,
                        "%s \"%.40s\" is too long (at most 100 years; or use --permanent)", o->name,
                        v);
        if (e < 0)
            return fail(err, errlen, "%s \"%.40s\" is not %s", o->name, v, o->what);
        if (s < o->min)
            return fail(err, errlen, "%s must be longer than 0s (or use unban)", o->name);
        j = json_integer(s);
        break;
    }
    case OPT_COUNT: {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (!*v || *end || errno || n < o->min || n > o->max)
            return fail(err, errlen, "%s \"%.40s\" is not %s", o->name, v, o->what);
        j = json_integer(n);
        break;
    }
    case OPT_CHOICE: {
        size_t n = strlen(v);
        const char *p = strstr(o->arg, v);
        if (!n || !p || (p != o->arg && p[-1] != '|') || (p[n] != '|' && p[n] != '\0'))
            return fail(err, errlen, "%s \"%.40s\" is not %s", o->name, v, o->what);
        j = json_string(v);
        break;
    }
    }
    if (!j || json_object_set_new(req, o->key, j) < 0)
        return fail(err, errlen, "out of memory");
    return 0;
}

int cli_args_parse(int argc, char **argv, struct cli_args *ret_args,
                   const struct cli_command **hint, char *err, size_t errlen)
{
    struct cli_args a = {0};
    const char *positional[POSITIONAL_MAX];
    const char *value[NOPTIONS] = {0}; /* per option line: its value ("" for flags), if given */
    int npos = 0;

    *hint = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            for (i++; i < argc; i++) {
                if (npos == POSITIONAL_MAX)
                    return fail(err, errlen, "too many arguments");
                positional[npos++] = argv[i];
            }
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            if (!a.command && npos == 0) {
                a.command = cli_command_find(arg);
                if (!a.command)
                    return fail(err, errlen, "unknown command \"%.40s\"", arg);
                *hint = a.command;
                continue;
            }
            if (npos == POSITIONAL_MAX)
                return fail(err, errlen, "too many arguments");
            positional[npos++] = arg;
            continue;
        }
        const struct cli_option *o = find_option(arg, a.command);
        if (!o)
            return fail(err, errlen, "unknown option \"%.40s\" for %s", arg,
                        a.command ? a.command->name : "pbxguard");
        const char *v = "";
        if (o->arg) {
            const char *eq = strchr(arg, '=');
            if (eq && strncmp(arg, "--", 2) == 0)
                v = eq + 1;
            else if (i + 1 < argc)
                v = argv[++i];
            else
                return fail(err, errlen, "%s needs a value", o->name);
        }
        for (size_t k = 0; o->group && k < NOPTIONS; k++)
            if (value[k] && &options[k] != o && options[k].group &&
                strcmp(options[k].group, o->group) == 0 && takes(&options[k], a.command))
                return fail(err, errlen, "%s and %s exclude each other", options[k].name, o->name);
        value[o - options] = v;
        if (o->kind == OPT_SETTING_FLAG)
            *(bool *)((char *)&a + o->field) = true;
        else if (o->kind == OPT_SETTING_PATH)
            *(const char **)((char *)&a + o->field) = v;
    }

    if (a.help || a.version) {
        *ret_args = a;
        return 0;
    }
    if (!a.command)
        return fail(err, errlen, "no command given");

    const char *cmd = a.command->name;
    int want = a.command->arg ? 1 : 0;
    if (npos < want)
        return fail(err, errlen, "%s needs an address (ADDR or ADDR/LEN)", cmd);
    if (npos > want)
        return fail(err, errlen, "unexpected argument \"%.40s\" for %s", positional[want], cmd);

    json_t *req = json_pack("{s:s}", "cmd", cmd);
    if (!req)
        return fail(err, errlen, "out of memory");
    int r = 0;
    if (want) {
        char canon[ADDR_STRLEN];
        r = cli_parse_prefix(positional[0], canon, sizeof(canon), err, errlen);
        if (r == 0)
            json_object_set_new(req, "addr", json_string(canon));
    }
    for (size_t k = 0; r == 0 && k < NOPTIONS; k++)
        if (value[k])
            r = set_member(req, &options[k], value[k], err, errlen);
    if (r < 0) {
        json_decref(req);
        return r;
    }
    a.request = req;
    *ret_args = a;
    return 0;
}

void cli_args_release(struct cli_args *args)
{
    if (!args)
        return;
    json_decref(args->request);
    args->request = NULL;
}
