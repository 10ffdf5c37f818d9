/* `pbxguard import`: each entry of a file (import_parse.h) or of fail2ban's database
 * (store_fail2ban.h) becomes one `ban` request over the control socket, so the daemon's judge
 * applies the rules of a manual ban to it (protected addresses, the widest prefix, the control
 * group's limits, the whitelist) and records it like one. An import never shortens a ban: an
 * entry whose prefix is banned already, at least as long, is left alone. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_args.h"
#include "cli_client.h"
#include "cli_config.h"
#include "cli_format.h"
#include "cli_list.h"
#include "cli_transfer.h"
#include "config.h"
#include "duration.h"
#include "import_parse.h"
#include "store_fail2ban.h"

#define F2B_DEFAULT_DB "/var/lib/fail2ban/fail2ban.sqlite3"
/* fail2ban's own default bantime, for a database that did not record a ban's length. */
#define F2B_DEFAULT_BANTIME 600
/* Error lines printed; the rest are counted in the summary only. */
#define ERRORS_SHOWN 100
/* Refusal rules counted by name in the summary. */
#define RULES_MAX 16

struct existing {
    char prefix[ADDR_STRLEN];
    int64_t expires; /* INT64_MAX: permanent */
};

struct import {
    const char *name; /* the input, for messages */
    struct cli_conn *conn;
    bool dry_run, json;
    int64_t default_length; /* --for, or 0: the daemon's bantime */
    int64_t now;
    struct existing *existing;
    size_t nexisting, capexisting;
    uint64_t imported, expired, kept, malformed, refused, shown;
    struct {
        char name[32];
        uint64_t n;
    } rules[RULES_MAX];
    int fatal; /* a connection error: stops the import */
};

static void say(struct import *im, const struct import_pos *pos, const char *what, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct import *im, const struct import_pos *pos, const char *fmt, ...)
{
    if (++im->shown > ERRORS_SHOWN) {
        if (im->shown == ERRORS_SHOWN + 1)
            fprintf(stderr, "pbxguard: import: more errors follow; only the summary counts them\n");
        return;
    }
    char where[64] = "";
    if (pos && pos->index >= 0)
        snprintf(where, sizeof(where), ": bans[%ld]", pos->index);
    else if (pos && pos->line)
        snprintf(where, sizeof(where), ":%lu", pos->line);
    char msg[1024], safe[1024 * 4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "pbxguard: import: %s%s: %s\n", im->name, where,
            cli_format_safe(msg, safe, sizeof(safe)));
}

static int cmp_existing(const void *a, const void *b)
{
    return strcmp(((const struct existing *)a)->prefix, ((const struct existing *)b)->prefix);
}

static int add_existing(void *data, const json_t *b)
{
    struct import *im = data;
    const char *p = json_string_value(json_object_get(b, "prefix"));
    if (!p || strlen(p) >= ADDR_STRLEN)
        return 0;
    if (im->nexisting == im->capexisting) {
        size_t cap = im->capexisting ? im->capexisting * 2 : 1024;
        struct existing *n = realloc(im->existing, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        im->existing = n;
        im->capexisting = cap;
    }
    struct existing *e = &im->existing[im->nexisting++];
    snprintf(e->prefix, sizeof(e->prefix), "%s", p);
    const json_t *x = json_object_get(b, "expires");
    e->expires = json_is_integer(x) ? json_integer_value(x) : INT64_MAX;
    return 0;
}

static void count_rule(struct import *im, const char *rule)
{
    if (!rule || !rule[0])
        rule = "other";
    for (int i = 0; i < RULES_MAX; i++) {
        if (!im->rules[i].name[0])
            snprintf(im->rules[i].name, sizeof(im->rules[i].name), "%s", rule);
        if (strcmp(im->rules[i].name, rule) == 0) {
            im->rules[i].n++;
            return;
        }
    }
    im->rules[RULES_MAX - 1].n++;
}

static int on_entry(void *data, const struct import_pos *pos, const struct import_entry *e)
{
    struct import *im = data;
    int64_t length = 0; /* 0: the daemon's bantime */
    bool permanent = false;
    int64_t until;
    if (e->timed && e->permanent) {
        permanent = true;
        until = INT64_MAX;
    } else if (e->timed) {
        if (e->expires <= im->now) {
            im->expired++;
            return 0;
        }
        length = e->expires - im->now;
        if (length > CTL_MANUAL_BAN_MAX_S)
            length = CTL_MANUAL_BAN_MAX_S;
        until = im->now + length;
    } else {
        length = im->default_length;
        until = length ? im->now + length : 0;
    }
    struct existing key;
    snprintf(key.prefix, sizeof(key.prefix), "%s", e->prefix);
    const struct existing *have =
        im->nexisting ? bsearch(&key, im->existing, im->nexisting, sizeof(key), cmp_existing)
                      : NULL;
    /* An entry of unknown length (the daemon's bantime) never replaces a ban either. */
    if (have && (until == 0 || have->expires >= until)) {
        im->kept++;
        return 0;
    }
    if (im->dry_run) {
        im->imported++;
        return 0;
    }
    json_t *req = json_pack("{s:s,s:s}", "cmd", "ban", "addr", e->prefix);
    if (!req)
        return -ENOMEM;
    if (permanent)
        json_object_set_new(req, "permanent", json_true());
    else if (length)
        json_object_set_new(req, "duration", json_integer(length));
    if (e->note[0])
        json_object_set_new(req, "note", json_string(e->note));
    json_t *reply = NULL;
    int r = cli_client_request(im->conn, req, CLI_TIMEOUT_MS, &reply);
    json_decref(req);
    if (r < 0) {
        im->fatal = r;
        return r;
    }
    if (json_is_true(json_object_get(reply, "ok"))) {
        im->imported++;
    } else {
        const char *rule = json_string_value(json_object_get(reply, "rule"));
        const char *msg = json_string_value(json_object_get(reply, "error"));
        im->refused++;
        count_rule(im, json_integer_value(json_object_get(reply, "code")) == CLI_EXIT_USAGE
                           ? "invalid"
                           : rule);
        say(im, pos, "%s refused: %s", e->prefix, msg ? msg : "no reason given");
    }
    json_decref(reply);
    return 0;
}

static void on_error(void *data, const struct import_pos *pos, const char *what)
{
    struct import *im = data;
    im->malformed++;
    say(im, pos, "%s", what);
}

struct f2b_ctx {
    struct import *im;
    unsigned long n;
};

static int on_f2b(void *data, const struct store_f2b_ban *b)
{
    struct f2b_ctx *f = data;
    struct import_pos pos = {.line = 0, .index = -1};
    struct import_entry e;
    char err[256];
    f->n++;
    int r = import_parse_line(b->ip, strlen(b->ip), &e, err, sizeof(err));
    if (r <= 0) {
        f->im->malformed++;
        say(f->im, &pos, "address \"%s\" (jail %s): %s", b->ip, b->jail,
            r == 0 ? "not an address" : err);
        return 0;
    }
    e.timed = true;
    e.permanent = b->permanent;
    e.expires = b->until;
    snprintf(e.note, sizeof(e.note), "fail2ban jail %s%s", b->jail,
             b->length_known || b->permanent ? "" : " (length assumed)");
    /* The jail name is fail2ban's configuration, but still text from a file: one line. */
    for (char *p = e.note; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return on_entry(f->im, &pos, &e);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: pbxguard import [--format auto|json|csv|list] [--for DURATION] "
                 "[--dry-run] FILE|-\n"
                 "       pbxguard import --from-fail2ban [DB] [--for DURATION] [--dry-run]\n");
}

static void help(void)
{
    usage(stdout);
    printf(
        "\nBan what a file holds: pbxguard export's JSON or CSV, or a plain list of addresses\n"
        "and prefixes (one a line, # comments), or the still-active bans of fail2ban's\n"
        "database (default " F2B_DEFAULT_DB "). Each entry is a manual ban\n"
        "and passes the same rules; it keeps its remaining time, expired ones are skipped, and a\n"
        "ban that already lasts at least as long is left as it is.\n\nOptions:\n"
        "  --format FMT         auto (default), json, csv or list\n"
        "  --for DURATION       the length of entries that do not say (a list; fail2ban bans\n"
        "                       without a recorded bantime): default the daemon's bantime,\n"
        "                       for fail2ban its default 10m\n"
        "  --from-fail2ban [DB] read fail2ban's database instead of a file\n"
        "  -n, --dry-run        read and check everything, ban nothing\n"
        "  --json               print the summary as JSON\n"
        "  -s, --socket PATH    the daemon's control socket (default " CTL_DEFAULT_SOCKET ")\n"
        "  -c, --config PATH    take the socket's path from this configuration file\n"
        "  -h, --help           this help\n"
        "\nExit codes: 0 every entry imported (or skipped: expired, already banned), 1 an entry\n"
        "was refused or malformed, or the input could not be read, 2 usage error, 3 the daemon\n"
        "is not running.\n");
}

static void summary(struct import *im, int whole)
{
    if (im->json) {
        json_t *rules = json_object();
        for (int i = 0; i < RULES_MAX && im->rules[i].name[0]; i++)
            json_object_set_new(rules, im->rules[i].name, json_integer((json_int_t)im->rules[i].n));
        json_t *o =
            json_pack("{s:b,s:b,s:I,s:I,s:I,s:I,s:o,s:I}", "ok",
                      !im->refused && !im->malformed && !whole, "dry_run", im->dry_run, "imported",
                      (json_int_t)im->imported, "expired", (json_int_t)im->expired, "kept",
                      (json_int_t)im->kept, "refused", (json_int_t)im->refused, "refused_by_rule",
                      rules, "malformed", (json_int_t)im->malformed);
        if (o && cli_format_json(o, 0, stdout) == 0)
            fputc('\n', stdout);
        json_decref(o);
        return;
    }
    printf("%s %" PRIu64 ", skipped %" PRIu64 " expired and %" PRIu64
           " already banned as long, refused %" PRIu64,
           im->dry_run ? "would import" : "imported", im->imported, im->expired, im->kept,
           im->refused);
    for (int i = 0; i < RULES_MAX && im->rules[i].name[0]; i++)
        printf("%s%s %" PRIu64, i ? ", " : " (", im->rules[i].name, im->rules[i].n);
    printf("%s, malformed %" PRIu64 "%s\n", im->rules[0].name[0] ? ")" : "", im->malformed,
           whole ? " (the input was not read to its end)" : "");
}

int cli_import_main(int argc, char **argv, const char *socket, const char *config, bool json)
{
    enum { OPT_FOR = 256, OPT_F2B, OPT_JSON, OPT_FORMAT };
    static const struct option longopts[] = {
        {"format", required_argument, NULL, OPT_FORMAT},
        {"for", required_argument, NULL, OPT_FOR},
        {"from-fail2ban", no_argument, NULL, OPT_F2B},
        {"dry-run", no_argument, NULL, 'n'},
        {"json", no_argument, NULL, OPT_JSON},
        {"socket", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct import im = {.json = json};
    enum import_format fmt = IMPORT_AUTO;
    bool f2b = false;
    bool length_given = false;
    char safe[256];
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ns:c:hj", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_FORMAT:
            if (strcmp(optarg, "auto") == 0)
                fmt = IMPORT_AUTO;
            else if (strcmp(optarg, "json") == 0)
                fmt = IMPORT_JSON;
            else if (strcmp(optarg, "csv") == 0)
                fmt = IMPORT_CSV;
            else if (strcmp(optarg, "list") == 0)
                fmt = IMPORT_LIST;
            else {
                fprintf(stderr,
                        "pbxguard: import: --format \"%s\" is not auto, json, csv or list\n",
                        cli_format_safe(optarg, safe, sizeof(safe)));
                usage(stderr);
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_FOR: {
            int64_t s;
            if (duration_parse(optarg, &s) < 0 || s <= 0 || s > CTL_MANUAL_BAN_MAX_S) {
                fprintf(stderr,
                        "pbxguard: import: --for \"%s\" is not a duration from 1s to 100 years "
                        "(e.g. 30m, 1h, 7d)\n",
                        cli_format_safe(optarg, safe, sizeof(safe)));
                usage(stderr);
                return CLI_EXIT_USAGE;
            }
            im.default_length = s;
            length_given = true;
            break;
        }
        case OPT_F2B:
            f2b = true;
            break;
        case 'n':
            im.dry_run = true;
            break;
        case 'j':
        case OPT_JSON:
            im.json = true;
            break;
        case 's':
            socket = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'h':
            help();
            return CLI_EXIT_OK;
        default:
            fprintf(stderr, "pbxguard: import: unknown option or missing value \"%s\"\n",
                    cli_format_safe(argv[optind - 1], safe, sizeof(safe)));
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    const char *input = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc || (!input && !f2b)) {
        if (input)
            fprintf(stderr, "pbxguard: import: unexpected argument \"%s\"\n",
                    cli_format_safe(argv[optind + 1], safe, sizeof(safe)));
        else
            fprintf(stderr, "pbxguard: import: which file? (- for stdin)\n");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (f2b && fmt != IMPORT_AUTO) {
        fprintf(stderr, "pbxguard: import: --format and --from-fail2ban exclude each other\n");
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (f2b && !input)
        input = F2B_DEFAULT_DB;
    im.name = strcmp(input, "-") == 0 ? "stdin" : input;

    char path[CFG_PATH_MAX];
    if (socket)
        snprintf(path, sizeof(path), "%s", socket);
    else if (cli_config_path(config, CLI_PATH_SOCKET, "pbxguard", path, sizeof(path)) < 0)
        return CLI_EXIT_FAILED;

    /* The bans in place first: what an entry would shorten is left alone. */
    json_t *error = NULL;
    int r = cli_list_each(path, add_existing, &im, NULL, &error);
    if (r == 0 && !error)
        r = cli_client_open(path, CLI_TIMEOUT_MS, &im.conn);
    if (r == -ENOENT || r == -ECONNREFUSED) {
        fprintf(stderr,
                "pbxguard: import: the daemon is not running (nothing listens on %s); "
                "start it with: systemctl start pbxguard\n",
                path);
        free(im.existing);
        return CLI_EXIT_NOT_RUNNING;
    }
    if (r < 0 || error) {
        const char *msg = error ? json_string_value(json_object_get(error, "error")) : NULL;
        fprintf(stderr, "pbxguard: import: %s\n",
                msg                           ? cli_format_safe(msg, safe, sizeof(safe))
                : r == -EACCES || r == -EPERM ? "permission denied (run as root or as a member "
                                                "of the control_group)"
                                              : strerror(-r));
        json_decref(error);
        free(im.existing);
        return CLI_EXIT_FAILED;
    }
    if (im.nexisting)
        qsort(im.existing, im.nexisting, sizeof(*im.existing), cmp_existing);
    im.now = (int64_t)time(NULL);

    int whole = 0; /* the input as a whole was refused or cut */
    if (f2b) {
        struct f2b_ctx f = {.im = &im};
        struct store_f2b_info info;
        char err[512];
        int64_t bantime = length_given ? im.default_length : F2B_DEFAULT_BANTIME;
        r = store_fail2ban_read(input, bantime, on_f2b, &f, &info, err, sizeof(err));
        if (r < 0 && !im.fatal) {
            const char *what = r == -EUCLEAN       ? "not an SQLite database"
                               : r == -EMEDIUMTYPE ? "not fail2ban's database"
                                                   : "cannot be read";
            fprintf(stderr, "pbxguard: import: %s: %s (%s)\n", input, what,
                    cli_format_safe(err, safe, sizeof(safe)));
            whole = 1;
        } else if (!im.json) {
            printf("fail2ban database %s (schema version %d%s): %" PRIu64 " addresses\n", input,
                   info.version, info.has_bantime ? "" : ", no bantime column", info.rows);
        }
    } else {
        FILE *in = strcmp(input, "-") == 0 ? stdin : fopen(input, "r");
        if (!in) {
            fprintf(stderr, "pbxguard: import: %s: %s\n", input, strerror(errno));
            cli_client_close(im.conn);
            free(im.existing);
            return CLI_EXIT_FAILED;
        }
        struct import_fns fns = {.entry = on_entry, .error = on_error};
        r = import_read(in, fmt, &fns, &im, NULL);
        if (r == -EINVAL || r == -EIO || r == -ENOMEM) {
            whole = 1;
            if (r != -EINVAL)
                fprintf(stderr, "pbxguard: import: %s: %s\n", im.name, strerror(-r));
        }
        if (in != stdin)
            fclose(in);
    }
    if (im.fatal) {
        fprintf(stderr, "pbxguard: import: the daemon stopped answering: %s\n",
                im.fatal == -ETIMEDOUT ? "no answer within 30 s"
                : im.fatal == -EPROTO  ? "it closed the connection"
                                       : strerror(-im.fatal));
        whole = 1;
    }
    cli_client_close(im.conn);
    free(im.existing);
    summary(&im, whole);
    fflush(stdout);
    return im.refused || im.malformed || whole ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
