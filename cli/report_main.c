/* `pbxguard report`: options, the database path, and where the report goes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_config.h"
#include "config.h"
#include "duration.h"
#include "report.h"
#include "store.h"

#define EXIT_USAGE 2

/* What the command line says, before any cross-checks. */
struct report_opts {
    const char *since, *from, *to, *table, *output, *db, *config, *host;
    enum report_format format;
    unsigned long top;
    int64_t now; /* Unix seconds */
    bool help;
};

enum opt_kind {
    OPT_TEXT,   /* const char *, checked after parsing (the period needs them all) */
    OPT_FORMAT, /* enum report_format, by name */
    OPT_COUNT,  /* unsigned long, min..max */
    OPT_TIME,   /* int64_t, report_time_parse() */
    OPT_FLAG,   /* bool */
};

struct report_option {
    const char *name; /* long name, without "--" */
    char short_name;  /* 0 if none */
    enum opt_kind kind;
    size_t field; /* offset into struct report_opts */
    const char *arg;
    unsigned long min, max;
    const char *what; /* why a bad value is bad: "is not a number from 1 to 1000" */
    const char *help; /* may hold newlines: continuation lines are indented to the text */
};

#define FIELD(f) offsetof(struct report_opts, f)

/* The options, one line each: the parser and --help are both made from here. */
static const struct report_option options[] = {
    {"since", 0, OPT_TEXT, FIELD(since), "DURATION", 0, 0, NULL,
     "the period that ends now, e.g. 24h, 7d, 1h30m (default 24h)"},
    {"from", 0, OPT_TEXT, FIELD(from), "TIME", 0, 0, NULL,
     "start of the period: 2026-11-25, 2026-11-25T08:00, ...+01:00"},
    {"to", 0, OPT_TEXT, FIELD(to), "TIME", 0, 0, NULL, "end of the period (excluded; default now)"},
    {"format", 0, OPT_FORMAT, FIELD(format), "FMT", 0, 0, "is not text, csv, json or html",
     "text (default, 80 columns for mail), csv, json, html"},
    {"table", 0, OPT_TEXT, FIELD(table), "NAME", 0, 0, NULL,
     "csv: write only this table (period, totals, ban_reasons,\nby_service, by_type, "
     "top_sources, top_accounts, timeline,\nnew_sources, daemon, daemon_runs)"},
    {"top", 0, OPT_COUNT, FIELD(top), "N", 1, REPORT_TOP_MAX, "is not a number from 1 to 1000",
     "length of the top lists (default 10, at most 1000)"},
    {"output", 0, OPT_TEXT, FIELD(output), "FILE", 0, 0, NULL,
     "write there (replaced atomically) instead of stdout"},
    {"db", 0, OPT_TEXT, FIELD(db), "PATH", 0, 0, NULL,
     "the database (default: [general] database from the config)"},
    {"config", 'c', OPT_TEXT, FIELD(config), "FILE", 0, 0, NULL,
     "the configuration file (default " CFG_DEFAULT_PATH ")"},
    {"now", 0, OPT_TIME, FIELD(now), "TIME", 0, 0, "is not a date or date-time (2026-11-25T08:00)",
     "make the report as of TIME (reproducible output)"},
    {"host", 0, OPT_TEXT, FIELD(host), "NAME", 0, 0, NULL,
     "the name the report is about (default: this host's name)"},
    {"help", 'h', OPT_FLAG, FIELD(help), NULL, 0, 0, NULL, "this help"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static const char *const format_names[] = {
    [REPORT_TEXT] = "text", [REPORT_CSV] = "csv", [REPORT_JSON] = "json", [REPORT_HTML] = "html"};

static void print_usage(FILE *out)
{
    fputs("Usage: pbxguard report [--since DURATION | --from TIME [--to TIME]]\n"
          "                       [--format text|csv|json|html] [--table NAME] [--top N]\n"
          "                       [--output FILE] [--db PATH | -c CONFIG] [--now TIME] "
          "[--host NAME]\n\n"
          "Who attacked, how, and what was done, read from the database (read-only).\n\n",
          out);
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct report_option *o = &options[i];
        char name[40];
        snprintf(name, sizeof(name), "%s%c%s--%s%s%s", o->short_name ? "-" : "",
                 o->short_name ? o->short_name : ' ', o->short_name ? ", " : "", o->name,
                 o->arg ? " " : "", o->arg ? o->arg : "");
        const char *n = o->short_name ? name : name + 1;
        const char *h = o->help;
        fprintf(out, "  %-18s %.*s\n", n, (int)strcspn(h, "\n"), h);
        for (h += strcspn(h, "\n"); *h; h += strcspn(h, "\n")) {
            h++;
            fprintf(out, "  %-18s %.*s\n", "", (int)strcspn(h, "\n"), h);
        }
    }
    fputs("\nTimes without an offset are local time. Exit status: 0 done, 1 failed, 2 usage.\n",
          out);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pbxguard report: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'pbxguard report --help'.\n", stderr);
    return EXIT_USAGE;
}

/* The database path: --db, else the configuration's (-c, or the default file if it exists),
 * else the built-in default. */
static int db_path(const char *db, const char *cfg_path, char *buf, size_t len)
{
    if (db) {
        snprintf(buf, len, "%s", db);
        return 0;
    }
    return cli_config_path(cfg_path, CLI_PATH_DATABASE, "pbxguard report", buf, len);
}

/* Reports wait this long for a writer's lock (a checkpoint), where the daemon waits 50 ms. */
#define BUSY_TIMEOUT_MS 10000

/* One clear line per way the store can refuse the file. */
static int open_failed(const char *path, int err)
{
    switch (err) {
    case -ENOENT:
        fprintf(stderr,
                "pbxguard report: %s: no such database (has pbxguardd run yet? --db or -c "
                "names another one)\n",
                path);
        break;
    case -EUCLEAN:
        fprintf(stderr, "pbxguard report: %s: not a pbxguard database (not SQLite, or corrupt)\n",
                path);
        break;
    case -ENODATA:
        fprintf(stderr,
                "pbxguard report: %s: empty database, never initialized by pbxguardd (nothing "
                "to report; is this the right file?)\n",
                path);
        break;
    case -EPROTONOSUPPORT:
        fprintf(stderr, "pbxguard report: %s: %s; upgrade pbxguard\n", path, store_errmsg(NULL));
        break;
    case -ESTALE:
        fprintf(stderr,
                "pbxguard report: %s: %s; start pbxguardd once to upgrade it (or use the "
                "pbxguard that wrote it)\n",
                path, store_errmsg(NULL));
        break;
    default:
        fprintf(stderr, "pbxguard report: %s: cannot open: %s\n", path, strerror(-err));
    }
    return 1;
}

/* Writes the report to path through a temporary file renamed over it, so a reader (a web
 * server, a mailer) never sees half a report. */
static int write_file(const struct report *r, enum report_format fmt, const char *table,
                      const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -errno;
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) < 0) {
        int err = -errno;
        close(fd);
        unlink(tmp);
        return err;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int err = -errno;
        close(fd);
        unlink(tmp);
        return err;
    }
    int rc = table ? report_render_csv(r, table, f) : report_render(r, fmt, f);
    if (fclose(f) != 0 && rc == 0)
        rc = -EIO;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* Sets the option's field from its value; a usage error (exit 2) if the value is bad. */
static int set_option(const struct report_option *o, const char *v, struct report_opts *opts)
{
    void *field = (char *)opts + o->field;
    char *end;
    switch (o->kind) {
    case OPT_TEXT:
        *(const char **)field = v;
        return 0;
    case OPT_FLAG:
        *(bool *)field = true;
        return 0;
    case OPT_FORMAT:
        for (size_t i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++)
            if (strcmp(v, format_names[i]) == 0) {
                *(enum report_format *)field = (enum report_format)i;
                return 0;
            }
        break;
    case OPT_COUNT: {
        errno = 0;
        unsigned long n = strtoul(v, &end, 10);
        if (!errno && end != v && !*end && v[0] != '-' && n >= o->min && n <= o->max) {
            *(unsigned long *)field = n;
            return 0;
        }
        break;
    }
    case OPT_TIME:
        if (report_time_parse(v, (int64_t *)field) == 0)
            return 0;
        break;
    }
    return usage_error("--%s: \"%s\" %s", o->name, v, o->what);
}

/* Parses argv with getopt_long (unique prefixes of long names work, as they always did) into
 * opts. Returns 0, or the exit code of a usage error (its message printed). */
static int parse_options(int argc, char **argv, struct report_opts *opts)
{
    struct option longs[NOPTIONS + 1];
    char shorts[2 * NOPTIONS + 2] = "+";
    size_t ns = 1;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct report_option *o = &options[i];
        longs[i] =
            (struct option){o->name, o->arg ? required_argument : no_argument, NULL, 256 + (int)i};
        if (o->short_name) {
            shorts[ns++] = o->short_name;
            if (o->arg)
                shorts[ns++] = ':';
        }
    }
    longs[NOPTIONS] = (struct option){0};
    shorts[ns] = '\0';

    optind = 0; /* the CLI may have run getopt already: start afresh */
    opterr = 0;
    int c, r;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        const struct report_option *o = NULL;
        if (c >= 256 && c < 256 + (int)NOPTIONS)
            o = &options[c - 256];
        for (size_t i = 0; !o && c != '?' && i < NOPTIONS; i++)
            if (options[i].short_name == c)
                o = &options[i];
        if (!o) {
            if (optopt && optopt < 256)
                return usage_error("unknown option or missing value: -%c", optopt);
            return usage_error("unknown option or missing value: %s", argv[optind - 1]);
        }
        if ((r = set_option(o, optarg, opts)) != 0)
            return r;
        if (opts->help)
            return 0;
    }
    if (optind < argc)
        return usage_error("unexpected argument: %s", argv[optind]);
    return 0;
}

/* The period [*ret_from, *ret_to) from --since or --from/--to. 0, or a usage error's code. */
static int period(const struct report_opts *o, int64_t *ret_from, int64_t *ret_to)
{
    if (o->since && (o->from || o->to))
        return usage_error("%s", "--since and --from/--to both give the period; give one");
    if (o->to && !o->from)
        return usage_error("%s", "--to needs --from");
    if (o->from) {
        if (report_time_parse(o->from, ret_from) < 0)
            return usage_error("--from: \"%s\" is not a date or date-time (2026-11-25T08:00)",
                               o->from);
        *ret_to = o->now;
        if (o->to && report_time_parse(o->to, ret_to) < 0)
            return usage_error("--to: \"%s\" is not a date or date-time (2026-11-25T08:00)", o->to);
        if (*ret_to <= *ret_from)
            return usage_error("%s", "the period is empty: --to must come after --from");
        return 0;
    }
    int64_t len = 86400;
    if (o->since && (duration_parse(o->since, &len) < 0 || len <= 0))
        return usage_error("--since: \"%s\" is not a duration (24h, 7d, 1h30m)", o->since);
    *ret_to = o->now;
    *ret_from = o->now - len;
    return 0;
}

int report_main(int argc, char **argv)
{
    /* "Now" rounded up to the next whole second: the database keeps milliseconds and the
     * period ends before its end bound, so what happened during this very second is in it. */
    struct report_opts o = {
        .format = REPORT_TEXT, .top = REPORT_TOP_DEFAULT, .now = (int64_t)time(NULL) + 1};
    int64_t from, to;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.help) {
        print_usage(stdout);
        return 0;
    }
    if (o.db && o.config)
        return usage_error("%s", "--db and --config name the database both; give one");
    if ((rc = period(&o, &from, &to)) != 0)
        return rc;
    if (o.table) {
        if (o.format != REPORT_CSV)
            return usage_error("%s", "--table goes with --format csv");
        if (!report_csv_has_table(o.table))
            return usage_error("--table: no table \"%s\" (see --help)", o.table);
    }

    char path[CFG_PATH_MAX];
    if (db_path(o.db, o.config, path, sizeof(path)) < 0)
        return 1;

    struct store *st;
    struct store_options opt = {.flags = STORE_READ_ONLY, .busy_timeout_ms = BUSY_TIMEOUT_MS};
    rc = store_open(path, &opt, &st);
    if (rc < 0)
        return open_failed(path, rc);

    struct report r;
    rc = report_init(&r, from, to);
    if (rc < 0) {
        store_close(st);
        fprintf(stderr, "pbxguard report: the period is too long\n");
        return rc == -EINVAL ? EXIT_USAGE : 1;
    }
    if (o.host)
        snprintf(r.host, sizeof(r.host), "%s", o.host);
    else if (gethostname(r.host, sizeof(r.host)) < 0)
        r.host[0] = '\0';
    r.host[sizeof(r.host) - 1] = '\0';

    rc = report_fill(st, &r, o.now, (unsigned)o.top);
    if (rc < 0) {
        const char *msg = store_errmsg(st);
        fprintf(stderr, "pbxguard report: %s: reading failed: %s\n", path,
                rc == -ENOMEM || !msg[0] ? store_strerror(rc) : msg);
        store_close(st);
        report_release(&r);
        return 1;
    }
    store_close(st);

    if (o.output)
        rc = write_file(&r, o.format, o.table, o.output);
    else
        rc = o.table ? report_render_csv(&r, o.table, stdout) : report_render(&r, o.format, stdout);
    report_release(&r);
    if (rc < 0) {
        fprintf(stderr, "pbxguard report: writing %s failed: %s\n",
                o.output ? o.output : "the report", strerror(-rc));
        return 1;
    }
    return 0;
}
