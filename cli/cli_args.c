#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "cli_args.h"
#include "duration.h"
#include "ctl_proto.h"

const struct cli_command cli_commands[] = {
    {"status", "status [--json]", "show the daemon's health, sessions and counts",
     "  --json               print the daemon's reply as JSON\n"},
    {"ban", "ban ADDR[/LEN] [--for DURATION | --permanent] [--reason TEXT] [--force] [--json]",
     "ban an address or prefix by hand",
     "  --for DURATION       ban length, e.g. 30m, 1h, 7d, 1d12h (default: the policy's bantime)\n"
     "  --permanent          ban with no end\n"
     "  --reason TEXT        a note kept with the ban (at most 200 bytes)\n"
     "  --force              ban even if the address is whitelisted\n"
     "  --json               print the daemon's reply as JSON\n"},
    {"unban", "unban ADDR[/LEN] [--json]", "lift a ban, in the database and in the kernel",
     "  --json               print the daemon's reply as JSON\n"},
    {"list", "list [--v4 | --v6] [--reason threshold|manual] [--limit N | --all] [--json]",
     "list the active bans with their remaining time",
     "  --v4, --v6           only IPv4 or only IPv6 bans\n"
     "  --reason REASON      only bans of this reason: threshold (earned) or manual\n"
     "  --limit N            at most N bans, oldest first (default 1000)\n"
     "  --all                every ban, however many\n"
     "  --json               print the daemon's reply as JSON\n"},
    {"show", "show ADDR[/LEN] [--json]",
     "everything known about an address: why it is (or is not) blocked",
     "  --json               print the daemon's reply as JSON\n"},
    {"reload", "reload [--json]", "make the daemon re-read its configuration (like SIGHUP)",
     "  --json               print the daemon's reply as JSON\n"},
    {0},
};

const struct cli_command *cli_command_find(const char *name)
{
    for (const struct cli_command *c = cli_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
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

/* Value of an option given as "--opt VALUE" or "--opt=VALUE"; advances *i past it. */
static const char *option_value(int argc, char **argv, int *i, const char *name, char *err,
                                size_t errlen)
{
    const char *eq = strchr(argv[*i], '=');
    if (eq)
        return eq + 1;
    if (*i + 1 >= argc) {
        fail(err, errlen, "%s needs a value", name);
        return NULL;
    }
    return argv[++*i];
}

static bool is_opt(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

static bool reason_text_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

int cli_args_parse(int argc, char **argv, struct cli_args *ret_args,
                   const struct cli_command **hint, char *err, size_t errlen)
{
    struct cli_args a = {0};
    const char *positional[4];
    int npos = 0;
    const char *dur = NULL, *reason = NULL, *family = NULL, *limit = NULL;
    bool all = false;
    bool permanent = false, force = false;
    int r;

    *hint = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            for (i++; i < argc; i++) {
                if (npos == 4)
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
            if (npos == 4)
                return fail(err, errlen, "too many arguments");
            positional[npos++] = arg;
            continue;
        }
        const char *name = a.command ? a.command->name : "pbxguard";
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            a.help = true;
        } else if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
            a.version = true;
        } else if (strcmp(arg, "--json") == 0 || strcmp(arg, "-j") == 0) {
            a.json = true;
        } else if (strcmp(arg, "-s") == 0 || is_opt(arg, "--socket")) {
            if (!(a.socket = option_value(argc, argv, &i, "--socket", err, errlen)))
                return -EINVAL;
        } else if (strcmp(arg, "-c") == 0 || is_opt(arg, "--config")) {
            if (!(a.config = option_value(argc, argv, &i, "--config", err, errlen)))
                return -EINVAL;
        } else if (a.command && strcmp(a.command->name, "ban") == 0 && is_opt(arg, "--for")) {
            if (!(dur = option_value(argc, argv, &i, "--for", err, errlen)))
                return -EINVAL;
        } else if (a.command && strcmp(a.command->name, "ban") == 0 &&
                   strcmp(arg, "--permanent") == 0) {
            permanent = true;
        } else if (a.command && strcmp(a.command->name, "ban") == 0 &&
                   strcmp(arg, "--force") == 0) {
            force = true;
        } else if (a.command &&
                   (strcmp(a.command->name, "ban") == 0 || strcmp(a.command->name, "list") == 0) &&
                   is_opt(arg, "--reason")) {
            if (!(reason = option_value(argc, argv, &i, "--reason", err, errlen)))
                return -EINVAL;
        } else if (a.command && strcmp(a.command->name, "list") == 0 && is_opt(arg, "--limit")) {
            if (!(limit = option_value(argc, argv, &i, "--limit", err, errlen)))
                return -EINVAL;
        } else if (a.command && strcmp(a.command->name, "list") == 0 && strcmp(arg, "--all") == 0) {
            all = true;
        } else if (a.command && strcmp(a.command->name, "list") == 0 &&
                   (strcmp(arg, "--v4") == 0 || strcmp(arg, "--v6") == 0 ||
                    strcmp(arg, "-4") == 0 || strcmp(arg, "-6") == 0)) {
            const char *f = strchr(arg, '4') ? "v4" : "v6";
            if (family && strcmp(family, f) != 0)
                return fail(err, errlen, "--v4 and --v6 exclude each other");
            family = f;
        } else {
            return fail(err, errlen, "unknown option \"%.40s\" for %s", arg, name);
        }
    }

    if (a.help || a.version) {
        *ret_args = a;
        return 0;
    }
    if (!a.command)
        return fail(err, errlen, "no command given");

    const char *cmd = a.command->name;
    int want =
        (strcmp(cmd, "ban") == 0 || strcmp(cmd, "unban") == 0 || strcmp(cmd, "show") == 0) ? 1 : 0;
    if (npos < want)
        return fail(err, errlen, "%s needs an address (ADDR or ADDR/LEN)", cmd);
    if (npos > want)
        return fail(err, errlen, "unexpected argument \"%.40s\" for %s", positional[want], cmd);

    json_t *req = json_pack("{s:s}", "cmd", cmd);
    if (!req)
        return fail(err, errlen, "out of memory");
    if (want) {
        char canon[ADDR_STRLEN];
        r = cli_parse_prefix(positional[0], canon, sizeof(canon), err, errlen);
        if (r < 0)
            goto bad;
        json_object_set_new(req, "addr", json_string(canon));
    }
    if (strcmp(cmd, "ban") == 0) {
        if (dur && permanent) {
            r = fail(err, errlen, "--for and --permanent exclude each other");
            goto bad;
        }
        if (dur) {
            int64_t s;
            int e = duration_parse(dur, &s);
            if (e == -ERANGE || (e == 0 && s > CTL_MANUAL_BAN_MAX_S)) {
                r = fail(err, errlen,
                         "--for \"%.40s\" is too long (at most 100 years; or use --permanent)",
                         dur);
                goto bad;
            }
            if (e < 0) {
                r = fail(err, errlen, "--for \"%.40s\" is not a duration (e.g. 30m, 1h, 7d, 1d12h)",
                         dur);
                goto bad;
            }
            if (s <= 0) {
                r = fail(err, errlen, "--for must be longer than 0s (or use unban)");
                goto bad;
            }
            json_object_set_new(req, "duration", json_integer(s));
        }
        if (permanent)
            json_object_set_new(req, "permanent", json_true());
        if (force)
            json_object_set_new(req, "force", json_true());
        if (reason) {
            if (strlen(reason) > CTL_NOTE_MAX || !reason_text_ok(reason)) {
                r = fail(err, errlen, "--reason must be one line of at most %d bytes",
                         CTL_NOTE_MAX);
                goto bad;
            }
            json_t *v = json_string(reason);
            if (!v) {
                r = fail(err, errlen, "--reason is not valid UTF-8");
                goto bad;
            }
            json_object_set_new(req, "note", v);
        }
    } else if (strcmp(cmd, "list") == 0) {
        if (family)
            json_object_set_new(req, "family", json_integer(family[1] == '4' ? 4 : 6));
        if (limit && all) {
            r = fail(err, errlen, "--limit and --all exclude each other");
            goto bad;
        }
        if (limit) {
            char *end;
            errno = 0;
            long long n = strtoll(limit, &end, 10);
            if (!*limit || *end || errno || n < 1 || n > 100000000) {
                r = fail(err, errlen, "--limit \"%.40s\" is not a number of bans (1 or more)",
                         limit);
                goto bad;
            }
            json_object_set_new(req, "limit", json_integer(n));
        }
        if (all)
            json_object_set_new(req, "limit", json_integer(0));
        if (reason) {
            if (strcmp(reason, "threshold") != 0 && strcmp(reason, "manual") != 0) {
                r = fail(err, errlen,
                         "--reason \"%.40s\" is not a ban reason (threshold or manual)", reason);
                goto bad;
            }
            json_object_set_new(req, "reason", json_string(reason));
        }
    }
    a.request = req;
    *ret_args = a;
    return 0;
bad:
    json_decref(req);
    return r;
}

void cli_args_release(struct cli_args *args)
{
    if (!args)
        return;
    json_decref(args->request);
    args->request = NULL;
}
