/* `pbxguard export`: the active bans, page after page from the daemon's `list`, written as they
 * come (JSON, CSV, or an nft script), so memory stays bounded however many there are. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_args.h"
#include "cli_config.h"
#include "cli_format.h"
#include "cli_list.h"
#include "cli_transfer.h"
#include "config.h"

enum export_format { EXPORT_JSON, EXPORT_CSV, EXPORT_NFT };

/* Elements per `add element` statement of the nft script: nft reads any number, but a bounded
 * line keeps the script readable and diffable. */
#define NFT_CHUNK 256

/* The nft script's four sets, as pbxguardd lays out its own (docs/nftables.md): IPv4
 * addresses and IPv6 /64s in hash sets (the /64s matched on the masked source), every other
 * prefix in interval sets. The kernel refuses overlapping elements within an interval set,
 * and pbxguardd's own sets never hold any: the same split keeps the script loadable. */
enum nft_set { SET4, SET4_NET, SET6, SET6_NET, NSETS };
static const char *const set_names[NSETS] = {"banned4", "banned4_net", "banned6", "banned6_net"};

struct nft_chunk {
    char *buf;
    size_t len, cap;
    unsigned n;
};

struct export
{
    enum export_format format;
    FILE *out;
    int64_t now;
    uint64_t n;
    int64_t total;
    struct nft_chunk chunk[NSETS];
    bool nomem;
};

/* Text the daemon sent (UTF-8) for a CSV cell or an nft comment: control bytes as \xNN. */
static void put_text(FILE *out, const char *s, bool csv)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else if (csv && *p == '"')
            fputs("\"\"", out);
        else
            fputc(*p, out);
    }
}

/* One CSV cell: quoted when it holds a separator, a quote or a space at an end, and never
 * started with = + - @ (a spreadsheet would run it as a formula: it gets a leading '). */
static void csv_cell(FILE *out, const char *s, bool last)
{
    size_t n = strlen(s);
    bool formula = s[0] && strchr("=+-@", s[0]);
    bool quote = formula || strpbrk(s, ",\"\r\n") || (n && (s[0] == ' ' || s[n - 1] == ' '));
    if (quote)
        fputc('"', out);
    if (formula)
        fputc('\'', out);
    put_text(out, s, true);
    if (quote)
        fputc('"', out);
    fputs(last ? "\r\n" : ",", out);
}

static const char *utc_iso(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, len, "%" PRId64, t);
    return buf;
}

static const char *str(const json_t *b, const char *key)
{
    const char *s = json_string_value(json_object_get(b, key));
    return s ? s : "";
}

/* The daemon sends a note escaped as its log writes text (\\, \", \xNN: it may be spoken to
 * without the CLI); the export holds the note itself, so that an import gives it back as it
 * was. A note that would not come back as UTF-8 stays escaped. */
static json_t *note_of(const json_t *b)
{
    const char *s = json_string_value(json_object_get(b, "note"));
    if (!s)
        return NULL;
    char out[CTL_NOTE_MAX * 4 + 1];
    size_t o = 0;
    for (const char *p = s; *p && o + 1 < sizeof(out); p++) {
        if (p[0] == '\\' && (p[1] == '\\' || p[1] == '"')) {
            out[o++] = *++p;
        } else if (p[0] == '\\' && p[1] == 'x' && p[2] && p[3] &&
                   strchr("0123456789abcdef", p[2]) && strchr("0123456789abcdef", p[3])) {
            char hex[3] = {p[2], p[3], 0};
            out[o++] = (char)strtoul(hex, NULL, 16);
            p += 3;
        } else {
            out[o++] = *p;
        }
    }
    json_t *j = json_stringn(out, o);
    return j ? j : json_string(s);
}

static int nft_flush(struct export *x, enum nft_set s)
{
    struct nft_chunk *c = &x->chunk[s];
    if (!c->n)
        return 0;
    fprintf(x->out, "add element inet %s %s {\n%.*s}\n", CLI_EXPORT_NFT_TABLE, set_names[s],
            (int)c->len, c->buf);
    c->len = 0;
    c->n = 0;
    return 0;
}

static int nft_add(struct export *x, const json_t *b)
{
    const char *prefix = str(b, "prefix");
    int family = (int)json_integer_value(json_object_get(b, "family"));
    const char *slash = strchr(prefix, '/');
    enum nft_set s;
    if (family == 4)
        s = slash ? SET4_NET : SET4;
    else
        s = slash && strcmp(slash, "/64") == 0 ? SET6 : SET6_NET;
    /* Only what a prefix can hold goes into the script (the daemon wrote it, but the script
     * is run as root). */
    if (strspn(prefix, "0123456789abcdef.:/") != strlen(prefix) || !prefix[0] ||
        (family != 4 && family != 6))
        return 0;
    struct nft_chunk *c = &x->chunk[s];
    char el[ADDR_STRLEN + 64];
    const json_t *rem = json_object_get(b, "remaining");
    int n;
    /* The /64 hash set holds the network address alone. */
    size_t plen = s == SET6 ? (size_t)(slash - prefix) : strlen(prefix);
    if (json_is_integer(rem))
        n = snprintf(el, sizeof(el), "\t%.*s timeout %" JSON_INTEGER_FORMAT "s,\n", (int)plen,
                     prefix, json_integer_value(rem) > 0 ? json_integer_value(rem) : 1);
    else
        n = snprintf(el, sizeof(el), "\t%.*s,\n", (int)plen, prefix);
    if (c->len + (size_t)n > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16384;
        char *nb = realloc(c->buf, cap);
        if (!nb)
            return -ENOMEM;
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, el, (size_t)n);
    c->len += (size_t)n;
    if (++c->n == NFT_CHUNK)
        nft_flush(x, s);
    return 0;
}

static void nft_head(struct export *x)
{
    char t[32];
    const char *tb = CLI_EXPORT_NFT_TABLE;
    fprintf(x->out,
            "#!/usr/sbin/nft -f\n"
            "# pbxguard export of %s: the bans active then, each with the time it had left.\n"
            "# Load it with `nft -f FILE` (as root); loading it again replaces the table. It\n"
            "# makes its own table, inet %s, never pbxguardd's: on a host that runs\n"
            "# pbxguard, `pbxguard import` is the way in. Remove it with\n"
            "# `nft delete table inet %s`.\n"
            "table inet %s\n"
            "delete table inet %s\n"
            "table inet %s {\n",
            utc_iso(x->now, t, sizeof(t)), tb, tb, tb, tb, tb);
    for (int s = 0; s < NSETS; s++)
        fprintf(x->out, "\tset %s {\n\t\ttype %s\n\t\tflags %stimeout\n\t}\n", set_names[s],
                s < SET6 ? "ipv4_addr" : "ipv6_addr",
                s == SET4_NET || s == SET6_NET ? "interval," : "");
    fprintf(x->out, "\tchain input {\n"
                    "\t\ttype filter hook input priority filter - 10; policy accept;\n"
                    "\t\tip saddr @banned4 counter drop\n"
                    "\t\tip saddr @banned4_net counter drop\n"
                    "\t\tip6 saddr & ffff:ffff:ffff:ffff:: @banned6 counter drop\n"
                    "\t\tip6 saddr @banned6_net counter drop\n"
                    "\t}\n"
                    "}\n");
}

static int each_ban(void *data, const json_t *b)
{
    struct export *x = data;
    char t[32], num[32];
    const json_t *exp = json_object_get(b, "expires");
    const json_t *rem = json_object_get(b, "remaining");
    switch (x->format) {
    case EXPORT_JSON: {
        json_t *o = json_pack("{s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?,s:O?}", "prefix",
                              json_object_get(b, "prefix"), "family", json_object_get(b, "family"),
                              "reason", json_object_get(b, "reason"), "origin",
                              json_object_get(b, "origin"), "note", NULL, "start",
                              json_object_get(b, "start"), "expires", exp, "remaining", rem);
        if (!o)
            return -ENOMEM;
        if (json_is_null(exp) || !exp) {
            json_object_set_new(o, "expires", json_null());
            json_object_set_new(o, "remaining", json_null());
        }
        json_t *note = note_of(b);
        json_object_set_new(o, "note", note ? note : json_null());
        fputs(x->n ? ",\n    " : "\n    ", x->out);
        int r = cli_format_json(o, 4, x->out);
        json_decref(o);
        if (r < 0)
            return r;
        break;
    }
    case EXPORT_CSV:
        csv_cell(x->out, str(b, "prefix"), false);
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(b, "family")));
        csv_cell(x->out, num, false);
        csv_cell(x->out, str(b, "reason"), false);
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(rem));
        csv_cell(x->out, json_is_integer(rem) ? num : "", false);
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(exp));
        csv_cell(x->out, json_is_integer(exp) ? num : "", false);
        csv_cell(x->out, json_is_integer(exp) ? utc_iso(json_integer_value(exp), t, sizeof(t)) : "",
                 false);
        csv_cell(x->out, str(b, "origin"), false);
        json_t *note = note_of(b);
        char text[CTL_NOTE_MAX * 4 + 1];
        /* A NUL inside a note ends the cell: the daemon refuses notes that hold one. */
        snprintf(text, sizeof(text), "%s", note ? json_string_value(note) : "");
        json_decref(note);
        csv_cell(x->out, text, true);
        break;
    case EXPORT_NFT:
        if (nft_add(x, b) < 0)
            return -ENOMEM;
        break;
    }
    x->n++;
    return ferror(x->out) ? -EIO : 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: pbxguard export [--format json|csv|nft] [-o FILE]\n");
}

static void help(void)
{
    usage(stdout);
    printf("\nWrite the active bans (prefix, family, reason, remaining time, expiry, origin,\n"
           "note), as the daemon holds them now.\n\nOptions:\n"
           "  --format FMT         json (default), csv, or nft: a script that `nft -f` loads on\n"
           "                       a host without pbxguard (table inet " CLI_EXPORT_NFT_TABLE ")\n"
           "  -o, --output FILE    write there (replaced atomically) instead of stdout\n"
           "  -s, --socket PATH    the daemon's control socket (default " CTL_DEFAULT_SOCKET ")\n"
           "  -c, --config PATH    take the socket's path from this configuration file\n"
           "  -h, --help           this help\n"
           "\nExit codes: 0 success, 1 the export failed, 2 usage error, 3 the daemon is not "
           "running.\n");
}

/* The socket, as every command finds it (cli.c). */
static int find_socket(const char *socket, const char *config, char *buf, size_t len)
{
    if (socket) {
        snprintf(buf, len, "%s", socket);
        return 0;
    }
    return cli_config_path(config, CLI_PATH_SOCKET, "pbxguard", buf, len);
}

int cli_export_main(int argc, char **argv, const char *socket, const char *config, bool json)
{
    (void)json;
    static const struct option longopts[] = {
        {"format", required_argument, NULL, 'f'}, {"output", required_argument, NULL, 'o'},
        {"socket", required_argument, NULL, 's'}, {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},         {0},
    };
    struct export x = {.format = EXPORT_JSON};
    const char *output = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:s:c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (strcmp(optarg, "json") == 0)
                x.format = EXPORT_JSON;
            else if (strcmp(optarg, "csv") == 0)
                x.format = EXPORT_CSV;
            else if (strcmp(optarg, "nft") == 0)
                x.format = EXPORT_NFT;
            else {
                char safe[128];
                fprintf(stderr, "pbxguard: export: --format \"%s\" is not json, csv or nft\n",
                        cli_format_safe(optarg, safe, sizeof(safe)));
                usage(stderr);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'o':
            output = optarg;
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
        default: {
            char safe[128];
            fprintf(stderr, "pbxguard: export: unknown option or missing value \"%s\"\n",
                    cli_format_safe(argv[optind - 1], safe, sizeof(safe)));
            usage(stderr);
            return CLI_EXIT_USAGE;
        }
        }
    }
    if (optind < argc) {
        char safe[128];
        fprintf(stderr, "pbxguard: export: unexpected argument \"%s\"\n",
                cli_format_safe(argv[optind], safe, sizeof(safe)));
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    char path[CFG_PATH_MAX];
    if (find_socket(socket, config, path, sizeof(path)) < 0)
        return CLI_EXIT_FAILED;

    /* A file is written beside its final name and renamed over it at the end, so a reader
     * (nft -f, a cron job copying it) never sees half an export. */
    char tmp[PATH_MAX] = "";
    x.out = stdout;
    if (output && strcmp(output, "-") != 0) {
        if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", output) >= (int)sizeof(tmp)) {
            fprintf(stderr, "pbxguard: export: %s: name too long\n", output);
            return CLI_EXIT_FAILED;
        }
        int fd = mkstemp(tmp);
        if (fd < 0 || fchmod(fd, 0644) < 0 || !(x.out = fdopen(fd, "w"))) {
            fprintf(stderr, "pbxguard: export: %s: %s\n", output, strerror(errno));
            if (fd >= 0) {
                close(fd);
                unlink(tmp);
            }
            return CLI_EXIT_FAILED;
        }
    }
    x.now = (int64_t)time(NULL);
    char t[32];
    if (x.format == EXPORT_JSON)
        fprintf(x.out,
                "{\n  \"schema\": \"pbxguard-export/1\",\n  \"exported\": %" PRId64
                ",\n  \"exported_utc\": \"%s\",\n  \"bans\": [",
                x.now, utc_iso(x.now, t, sizeof(t)));
    else if (x.format == EXPORT_CSV)
        fputs("prefix,family,reason,remaining,expires,expires_utc,origin,note\r\n", x.out);
    else
        nft_head(&x);

    json_t *error = NULL;
    int r = cli_list_each(path, each_ban, &x, &x.total, &error);
    if (r == 0 && !error) {
        if (x.format == EXPORT_JSON)
            fprintf(x.out, "%s],\n  \"total\": %" PRIu64 "\n}\n", x.n ? "\n  " : "", x.n);
        else if (x.format == EXPORT_NFT) {
            for (int s = 0; s < NSETS; s++)
                nft_flush(&x, s);
            fprintf(x.out, "# %" PRIu64 " bans\n", x.n);
        }
    }
    for (int s = 0; s < NSETS; s++)
        free(x.chunk[s].buf);
    int code = CLI_EXIT_OK;
    if (r == -ENOENT || r == -ECONNREFUSED) {
        fprintf(stderr,
                "pbxguard: export: the daemon is not running (nothing listens on %s); "
                "start it with: systemctl start pbxguard\n",
                path);
        code = CLI_EXIT_NOT_RUNNING;
    } else if (error) {
        char safe[1024];
        const char *msg = json_string_value(json_object_get(error, "error"));
        fprintf(stderr, "pbxguard: export: %s\n",
                msg ? cli_format_safe(msg, safe, sizeof(safe)) : "failed");
        code = CLI_EXIT_FAILED;
    } else if (r < 0) {
        fprintf(stderr, "pbxguard: export: %s\n",
                r == -EACCES || r == -EPERM
                    ? "permission denied (run as root or as a member of the control_group)"
                    : strerror(-r));
        code = CLI_EXIT_FAILED;
    }
    json_decref(error);
    if (fflush(x.out) != 0 || ferror(x.out)) {
        fprintf(stderr, "pbxguard: export: %s: %s\n", output ? output : "stdout",
                strerror(errno ? errno : EIO));
        code = CLI_EXIT_FAILED;
    }
    if (tmp[0]) {
        if (code == CLI_EXIT_OK && fsync(fileno(x.out)) < 0)
            code = CLI_EXIT_FAILED;
        fclose(x.out);
        if (code == CLI_EXIT_OK && rename(tmp, output) < 0) {
            fprintf(stderr, "pbxguard: export: %s: %s\n", output, strerror(errno));
            code = CLI_EXIT_FAILED;
        }
        if (code != CLI_EXIT_OK)
            unlink(tmp);
    }
    if (code == CLI_EXIT_OK && tmp[0])
        fprintf(stderr, "pbxguard: export: %" PRIu64 " bans written to %s\n", x.n, output);
    return code;
}
