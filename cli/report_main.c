/* `pbxguard report`: options, the database path, and where the report goes. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
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

static const char usage_text[] =
    "Usage: pbxguard report [--since DURATION | --from TIME [--to TIME]]\n"
    "                       [--format text|csv|json|html] [--table NAME] [--top N]\n"
    "                       [--output FILE] [--db PATH | -c CONFIG] [--now TIME] [--host NAME]\n"
    "\n"
    "Who attacked, how, and what was done, read from the database (read-only).\n"
    "\n"
    "  --since DURATION   the period that ends now, e.g. 24h, 7d, 1h30m (default 24h)\n"
    "  --from TIME        start of the period: 2026-11-25, 2026-11-25T08:00, ...+01:00\n"
    "  --to TIME          end of the period (excluded; default now)\n"
    "  --format FMT       text (default, 80 columns for mail), csv, json, html\n"
    "  --table NAME       csv: write only this table (period, totals, ban_reasons,\n"
    "                     by_service, by_type, top_sources, top_accounts, timeline,\n"
    "                     new_sources, daemon)\n"
    "  --top N            length of the top lists (default 10, at most 1000)\n"
    "  --output FILE      write there (replaced atomically) instead of stdout\n"
    "  --db PATH          the database (default: [general] database from the config)\n"
    "  -c, --config FILE  the configuration file (default " CFG_DEFAULT_PATH ")\n"
    "  --now TIME         make the report as of TIME (reproducible output)\n"
    "  --host NAME        the name the report is about (default: this host's name)\n"
    "\n"
    "Times without an offset are local time. Exit status: 0 done, 1 failed, 2 usage.\n";

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

int report_main(int argc, char **argv)
{
    enum {
        OPT_SINCE = 256,
        OPT_FROM,
        OPT_TO,
        OPT_FORMAT,
        OPT_TABLE,
        OPT_TOP,
        OPT_OUTPUT,
        OPT_DB,
        OPT_NOW,
        OPT_HOST
    };
    static const struct option opts[] = {
        {"since", required_argument, NULL, OPT_SINCE},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"table", required_argument, NULL, OPT_TABLE},
        {"top", required_argument, NULL, OPT_TOP},
        {"output", required_argument, NULL, OPT_OUTPUT},
        {"db", required_argument, NULL, OPT_DB},
        {"config", required_argument, NULL, 'c'},
        {"now", required_argument, NULL, OPT_NOW},
        {"host", required_argument, NULL, OPT_HOST},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *since = NULL, *from_s = NULL, *to_s = NULL, *table = NULL, *output = NULL;
    const char *db = NULL, *cfg_path = NULL, *host = NULL;
    enum report_format fmt = REPORT_TEXT;
    /* "Now" rounded up to the next whole second: the database keeps milliseconds and the
     * period ends before its end bound, so what happened during this very second is in it. */
    int64_t now = (int64_t)time(NULL) + 1, from, to;
    unsigned long top = REPORT_TOP_DEFAULT;
    char *end;
    int c;

    optind = 0; /* the CLI may have run getopt already: start afresh */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SINCE:
            since = optarg;
            break;
        case OPT_FROM:
            from_s = optarg;
            break;
        case OPT_TO:
            to_s = optarg;
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "text") == 0)
                fmt = REPORT_TEXT;
            else if (strcmp(optarg, "csv") == 0)
                fmt = REPORT_CSV;
            else if (strcmp(optarg, "json") == 0)
                fmt = REPORT_JSON;
            else if (strcmp(optarg, "html") == 0)
                fmt = REPORT_HTML;
            else
                return usage_error("--format: \"%s\" is not text, csv, json or html", optarg);
            break;
        case OPT_TABLE:
            table = optarg;
            break;
        case OPT_TOP:
            errno = 0;
            top = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-' || top < 1 ||
                top > REPORT_TOP_MAX)
                return usage_error("--top: \"%s\" is not a number from 1 to 1000", optarg);
            break;
        case OPT_OUTPUT:
            output = optarg;
            break;
        case OPT_DB:
            db = optarg;
            break;
        case 'c':
            cfg_path = optarg;
            break;
        case OPT_NOW:
            if (report_time_parse(optarg, &now) < 0)
                return usage_error("--now: \"%s\" is not a date or date-time (2026-11-25T08:00)",
                                   optarg);
            break;
        case OPT_HOST:
            host = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        default:
            if (optopt && optopt < 256)
                return usage_error("unknown option or missing value: -%c", optopt);
            return usage_error("unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument: %s", argv[optind]);
    if (db && cfg_path)
        return usage_error("%s", "--db and --config name the database both; give one");

    /* the period */
    if (since && (from_s || to_s))
        return usage_error("%s", "--since and --from/--to both give the period; give one");
    if (to_s && !from_s)
        return usage_error("%s", "--to needs --from");
    if (from_s) {
        if (report_time_parse(from_s, &from) < 0)
            return usage_error("--from: \"%s\" is not a date or date-time (2026-11-25T08:00)",
                               from_s);
        to = now;
        if (to_s && report_time_parse(to_s, &to) < 0)
            return usage_error("--to: \"%s\" is not a date or date-time (2026-11-25T08:00)", to_s);
        if (to <= from)
            return usage_error("%s", "the period is empty: --to must come after --from");
    } else {
        int64_t len = 86400;
        if (since && (duration_parse(since, &len) < 0 || len <= 0))
            return usage_error("--since: \"%s\" is not a duration (24h, 7d, 1h30m)", since);
        to = now;
        from = now - len;
    }
    if (table) {
        if (fmt != REPORT_CSV)
            return usage_error("%s", "--table goes with --format csv");
        if (!report_csv_has_table(table))
            return usage_error("--table: no table \"%s\" (see --help)", table);
    }

    char path[CFG_PATH_MAX];
    if (db_path(db, cfg_path, path, sizeof(path)) < 0)
        return 1;

    struct store *st;
    struct store_options opt = {.flags = STORE_READ_ONLY, .busy_timeout_ms = BUSY_TIMEOUT_MS};
    int rc = store_open(path, &opt, &st);
    if (rc < 0)
        return open_failed(path, rc);

    struct report r;
    rc = report_init(&r, from, to);
    if (rc < 0) {
        store_close(st);
        fprintf(stderr, "pbxguard report: the period is too long\n");
        return rc == -EINVAL ? EXIT_USAGE : 1;
    }
    if (host)
        snprintf(r.host, sizeof(r.host), "%s", host);
    else if (gethostname(r.host, sizeof(r.host)) < 0)
        r.host[0] = '\0';
    r.host[sizeof(r.host) - 1] = '\0';

    rc = report_fill(st, &r, now, (unsigned)top);
    if (rc < 0) {
        const char *msg = store_errmsg(st);
        fprintf(stderr, "pbxguard report: %s: reading failed: %s\n", path,
                rc == -ENOMEM || !msg[0] ? store_strerror(rc) : msg);
        store_close(st);
        report_release(&r);
        return 1;
    }
    store_close(st);

    if (output)
        rc = write_file(&r, fmt, table, output);
    else
        rc = table ? report_render_csv(&r, table, stdout) : report_render(&r, fmt, stdout);
    report_release(&r);
    if (rc < 0) {
        fprintf(stderr, "pbxguard report: writing %s failed: %s\n", output ? output : "the report",
                strerror(-rc));
        return 1;
    }
    return 0;
}
