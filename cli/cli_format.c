#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_format.h"
#include "duration.h"
#include "log.h"

const char *cli_format_time(int64_t unix_s, char *buf, size_t buflen)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    if (unix_s <= 0 || !localtime_r(&t, &tm) || !strftime(buf, buflen, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, buflen, "-");
    return buf;
}

const char *cli_format_safe(const char *s, char *buf, size_t buflen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (!buflen)
        return buf;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = c >= 0x20 && c < 0x7f;
        if (o + (plain ? 1 : 4) >= buflen)
            break;
        if (plain) {
            buf[o++] = (char)c;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        }
    }
    buf[o] = '\0';
    return buf;
}

const char *cli_format_size(int64_t bytes, char *buf, size_t buflen)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) {
        snprintf(buf, buflen, "%" PRId64 " B", bytes < 0 ? 0 : bytes);
        return buf;
    }
    double v = (double)bytes / 1024;
    unsigned u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    snprintf(buf, buflen, "%.1f %s", v, units[u]);
    return buf;
}

static int64_t num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return 0;
}

/* A string field escaped for the terminal (it may hold attacker-controlled bytes). */
static const char *str(const json_t *o, const char *key, char *buf, size_t buflen)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return "-";
    return log_escape(json_string_value(v), json_string_length(v), buf, buflen);
}

static const char *ago(const json_t *o, const char *key, int64_t now, char *buf, size_t buflen)
{
    int64_t t = num(o, key);
    if (t <= 0)
        return "never";
    char d[32];
    int64_t delta = now > t ? now - t : 0;
    snprintf(buf, buflen, "%s ago", duration_format(delta, d, sizeof(d)));
    return buf;
}

/* Time left, to the precision a person wants: "6d23h", "3h59m", "59m12s"; or "permanent". */
static const char *remaining(const json_t *ban, int64_t now, char *buf, size_t buflen)
{
    const json_t *exp = json_object_get(ban, "expires");
    if (!json_is_integer(exp))
        return "permanent";
    int64_t left = json_integer_value(exp) - now;
    if (left < 0)
        left = 0;
    if (left >= 86400)
        left -= left % 3600;
    else if (left >= 3600)
        left -= left % 60;
    return duration_format(left, buf, buflen);
}

/* What a session learned from its Asterisk, under its line. */
static void print_trust(const json_t *t, int64_t now, FILE *out)
{
    char st[32], a[64];
    if (!json_is_object(t))
        return;
    str(t, "state", st, sizeof(st));
    fprintf(out, "  %-12s ", "");
    if (strcmp(st, "off") == 0) {
        fprintf(out, "trust: not learned (learn_trust = no)\n");
        return;
    }
    if (strcmp(st, "denied") == 0) {
        fprintf(out, "trust: refused by Asterisk (manager.conf: the AMI user needs "
                     "write = system; see the log)\n");
        return;
    }
    int64_t n = num(t, "entries");
    fprintf(out, "trust: %" PRId64 " address%s learned, refreshed %s", n, n == 1 ? "" : "es",
            ago(t, "refreshed", now, a, sizeof(a)));
    if (strcmp(st, "ok") != 0)
        fprintf(out, " (%s)", st);
    if (num(t, "unresolved"))
        fprintf(out, ", %" PRId64 " name%s unresolved", num(t, "unresolved"),
                num(t, "unresolved") == 1 ? "" : "s");
    if (strcmp(st, "ok") == 0 && json_is_false(json_object_get(t, "reloads")))
        fprintf(out, ", reloads not followed (read = system missing)");
    fputc('\n', out);
}

/* Fleet mode: the link to the shared table, how far this node has read, what waits to go. */
static void print_cluster(const json_t *cl, int64_t now, FILE *out)
{
    char a[64], e[300], host[300], st[32], node[64];
    if (!json_is_object(cl))
        return;
    str(cl, "state", st, sizeof(st));
    fprintf(out, "%-12s node %s, %s", "fleet", str(cl, "node", node, sizeof(node)), st);
    if (json_is_string(json_object_get(cl, "host"))) {
        fprintf(out, " %s %s", strcmp(st, "connected") == 0 ? "to" : "(last tried",
                str(cl, "host", host, sizeof(host)));
        if (json_is_string(json_object_get(cl, "port")))
            fprintf(out, ":%s", str(cl, "port", a, sizeof(a)));
        if (strcmp(st, "connected") != 0)
            fputc(')', out);
        else
            fprintf(out, " (%s)",
                    json_is_true(json_object_get(cl, "primary")) ? "primary" : "NOT a primary");
    }
    fputc('\n', out);
    fprintf(out,
            "%-12s cursor %" PRId64 ", lag %" PRId64 ", outbox %" PRId64 " waiting; %" PRId64
            " published, %" PRId64 " received, %" PRId64 " refused, %" PRId64 " reconnects\n",
            "", num(cl, "cursor"), num(cl, "lag"), num(cl, "outbox"), num(cl, "published"),
            num(cl, "received"), num(cl, "refused"), num(cl, "reconnects"));
    if (json_is_string(json_object_get(cl, "last_error")))
        fprintf(out, "%-12s last error %s: %s\n", "", ago(cl, "last_error_time", now, a, sizeof(a)),
                str(cl, "last_error", e, sizeof(e)));
}

/* CrowdSec: both roles' state, the last poll, what was applied and refused, what waits. */
static void print_crowdsec(const json_t *c, int64_t now, FILE *out)
{
    char a[64], b[64], e[300], w[32], bo[32];
    if (!json_is_object(c))
        return;
    fprintf(out, "%-12s LAPI %s: watcher %s, bouncer %s, last poll %s\n", "crowdsec",
            str(c, "lapi", e, sizeof(e)), str(c, "watcher", w, sizeof(w)),
            str(c, "bouncer", bo, sizeof(bo)),
            json_is_integer(json_object_get(c, "last_poll"))
                ? ago(c, "last_poll", now, a, sizeof(a))
                : "never");
    fprintf(out,
            "%-12s decisions %" PRId64 " known, %" PRId64 " applied, %" PRId64 " refused, %" PRId64
            " ignored, %" PRId64 " ours; outbox %" PRId64 " waiting, %" PRId64 " alerts sent%s%s\n",
            "", num(c, "decisions"), num(c, "applied"), num(c, "refused"), num(c, "ignored"),
            num(c, "ours"), num(c, "outbox"), num(c, "alerts_sent"),
            json_is_integer(json_object_get(c, "last_push")) ? ", last " : "",
            json_is_integer(json_object_get(c, "last_push"))
                ? ago(c, "last_push", now, b, sizeof(b))
                : "");
    if (json_is_string(json_object_get(c, "last_error")))
        fprintf(out, "%-12s last error %s\n", "", str(c, "last_error", e, sizeof(e)));
}

static void print_status(const json_t *r, int64_t now, FILE *out)
{
    char a[64], b[64], e[256];
    fprintf(out, "pbxguardd %s, up %s\n", str(r, "version", e, sizeof(e)),
            duration_format(num(r, "uptime"), a, sizeof(a)));
    const json_t *db = json_object_get(r, "database");
    fprintf(out, "%-12s %s (%s)\n", "database", str(db, "path", e, sizeof(e)),
            cli_format_size(num(db, "size"), a, sizeof(a)));
    if (num(db, "journal_lost") > 0)
        fprintf(out,
                "%-12s %" PRId64 " ban changes missing (made while the database failed; "
                "the kernel enforced them)\n",
                "history", num(db, "journal_lost"));
    const json_t *died = json_object_get(r, "last_unclean_stop");
    if (json_is_object(died)) {
        char t1[32], t2[32];
        fprintf(out, "%-12s pid %" PRId64 " died after %s, restarted %s (%s not running)\n",
                "unclean stop", num(died, "pid"),
                cli_format_time(num(died, "last_write"), t1, sizeof(t1)),
                cli_format_time(num(died, "restarted"), t2, sizeof(t2)),
                duration_format(num(died, "down"), a, sizeof(a)));
    }
    const json_t *nft = json_object_get(r, "nftables");
    fprintf(out, "%-12s %s", "nftables",
            json_is_true(json_object_get(nft, "ok")) ? "ok" : "FAILING");
    if (json_is_string(json_object_get(nft, "detail")))
        fprintf(out, " (%s)", str(nft, "detail", e, sizeof(e)));
    fputc('\n', out);
    if (json_object_get(r, "restoring"))
        fprintf(out, "%-12s %" PRId64 " active bans installed so far\n", "restoring",
                num(json_object_get(r, "restoring"), "installed"));
    const json_t *loop = json_object_get(r, "loop");
    if (loop)
        fprintf(out,
                "%-12s longest turn %.1f ms in the last %" PRId64 " s (99%% under %.1f ms), "
                "%.1f ms since start\n",
                "loop", json_number_value(json_object_get(loop, "max_ms")), num(loop, "window_s"),
                json_number_value(json_object_get(loop, "p99_ms")),
                json_number_value(json_object_get(loop, "longest_ms")));
    if (json_is_integer(json_object_get(r, "failures_today")))
        fprintf(out, "%-12s %" PRId64 " failed attempts, %" PRId64 " bans\n", "today",
                num(r, "failures_today"), num(r, "bans_today"));
    fprintf(out, "%-12s %" PRId64 " events, %" PRId64 " bans\n", "since start", num(r, "events"),
            num(r, "bans"));
    const json_t *act = json_object_get(r, "active_bans");
    fprintf(out, "%-12s %" PRId64 " bans (%" PRId64 " IPv4, %" PRId64 " IPv6)\n", "active",
            num(act, "v4") + num(act, "v6"), num(act, "v4"), num(act, "v6"));
    const json_t *watch = json_object_get(r, "watch");
    if (num(watch, "watchers") || num(watch, "dropped"))
        fprintf(out, "%-12s %" PRId64 " watcher%s now, %" PRId64 " dropped for falling behind\n",
                "live view", num(watch, "watchers"), num(watch, "watchers") == 1 ? "" : "s",
                num(watch, "dropped"));
    print_cluster(json_object_get(r, "cluster"), now, out);
    print_crowdsec(json_object_get(r, "crowdsec"), now, out);
    const json_t *ami = json_object_get(r, "ami");
    size_t i;
    const json_t *s;
    if (json_array_size(ami) == 0) {
        fprintf(out, "%-12s none configured\n", "AMI");
    } else {
        fprintf(out, "AMI sessions:\n");
        json_array_foreach(ami, i, s)
        {
            char name[64], state[64], host[300];
            snprintf(b, sizeof(b), "%s", ago(s, "last_event", now, a, sizeof(a)));
            fprintf(out, "  %-12s %-12s %s:%" PRId64 "  last event %s\n",
                    str(s, "name", name, sizeof(name)), str(s, "state", state, sizeof(state)),
                    str(s, "host", host, sizeof(host)), num(s, "port"), b);
            print_trust(json_object_get(s, "trust"), now, out);
        }
    }
    const json_t *logs = json_object_get(r, "seclog");
    if (json_array_size(logs) == 0)
        return;
    fprintf(out, "Security logs:\n");
    json_array_foreach(logs, i, s)
    {
        char name[64], state[64], file[600], mode[16], lag[32], off[32], size[32], err[128];
        fprintf(out, "  %-12s %-12s %s (%s)\n", str(s, "name", name, sizeof(name)),
                str(s, "state", state, sizeof(state)), str(s, "reading", file, sizeof(file)),
                str(s, "mode", mode, sizeof(mode)));
        if (json_is_string(json_object_get(s, "error")))
            fprintf(out, "  %-12s error: %s\n", "", str(s, "error", err, sizeof(err)));
        if (json_is_integer(json_object_get(s, "lag")))
            duration_format(num(s, "lag"), lag, sizeof(lag));
        else
            snprintf(lag, sizeof(lag), "-");
        snprintf(b, sizeof(b), "%s", ago(s, "last_event", now, a, sizeof(a)));
        fprintf(out,
                "  %-12s offset %s of %s, lag %s, last event %s, %" PRId64 " malformed lines\n", "",
                cli_format_size(num(s, "offset"), off, sizeof(off)),
                cli_format_size(num(s, "size"), size, sizeof(size)), lag, b, num(s, "malformed"));
    }
}

static void print_ban_line(const char *verb, const json_t *ban, int64_t now, FILE *out)
{
    char p[64], d[32], t[32];
    str(ban, "prefix", p, sizeof(p));
    if (!json_is_integer(json_object_get(ban, "expires")))
        fprintf(out, "%s %s permanently\n", verb, p);
    else
        fprintf(out, "%s %s for %s (until %s)\n", verb, p, remaining(ban, now, d, sizeof(d)),
                cli_format_time(num(ban, "expires"), t, sizeof(t)));
}

int cli_format_json(const json_t *v, int indent, FILE *out)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    if (!s)
        return -ENOMEM;
    for (const char *c = s; *c; c++) {
        if (*c == 0x7f)
            fputs("\\u007f", out);
        else
            fputc(*c, out);
        if (*c == '\n' && indent)
            fprintf(out, "%*s", indent, "");
    }
    free(s);
    return 0;
}

int cli_format_json_line(const json_t *v, FILE *out)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    if (!s)
        return -ENOMEM;
    for (const char *c = s; *c; c++) {
        if (*c == 0x7f)
            fputs("\\u007f", out);
        else
            fputc(*c, out);
    }
    fputc('\n', out);
    free(s);
    return 0;
}

/* "23:10:01.123" in local time. */
static const char *clock_ms(double t, char *buf, size_t len)
{
    time_t s = (time_t)t;
    struct tm tm;
    char hms[16];
    if (t <= 0 || !localtime_r(&s, &tm) || !strftime(hms, sizeof(hms), "%H:%M:%S", &tm))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%s.%03d", hms, (int)((t - (double)s) * 1000) % 1000);
    return buf;
}

/* A weighted count as people write it: 3, 2.5. */
static const char *count_text(const json_t *v, char *buf, size_t len)
{
    if (!json_is_number(v))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%g", json_number_value(v));
    return buf;
}

void cli_format_watch(const json_t *rec, FILE *out)
{
    char t[32], type[16], a[64], src[128], svc[128], ev[64], acc[1024], w[32], th[32], p[64], d[32],
        why[300];
    clock_ms(json_number_value(json_object_get(rec, "time")), t, sizeof(t));
    str(rec, "type", type, sizeof(type));
    if (strcmp(type, "dropped") == 0) {
        fprintf(out, "%s  dropped: %s\n", t, str(rec, "error", why, sizeof(why)));
        return;
    }
    if (strcmp(type, "verdict") == 0) {
        char action[16], reason[32];
        fprintf(out, "%s  %s %s %s", t, str(rec, "reason", reason, sizeof(reason)),
                str(rec, "action", action, sizeof(action)), str(rec, "prefix", p, sizeof(p)));
        if (strcmp(action, "ban") == 0) {
            const json_t *dur = json_object_get(rec, "duration");
            if (json_is_integer(dur))
                fprintf(out, " for %s", duration_format(json_integer_value(dur), d, sizeof(d)));
            else
                fputs(" permanently", out);
        }
        fputc('\n', out);
        return;
    }
    fprintf(out, "%s  %s  %s  %s/%s  account \"%s\"  ", t, str(rec, "source", src, sizeof(src)),
            str(rec, "addr", a, sizeof(a)), str(rec, "service", svc, sizeof(svc)),
            str(rec, "event", ev, sizeof(ev)), str(rec, "account", acc, sizeof(acc)));
    if (json_is_number(json_object_get(rec, "threshold"))) {
        /* The window is the key's: say so when that is not the address itself. */
        char kb[64];
        const char *k = str(rec, "key", kb, sizeof(kb));
        bool own = strcmp(k, "-") == 0 || strcmp(k, a) == 0;
        fprintf(out, "%s/%s%s%s  ", count_text(json_object_get(rec, "window"), w, sizeof(w)),
                count_text(json_object_get(rec, "threshold"), th, sizeof(th)), own ? "" : " in ",
                own ? "" : k);
    }
    char verdict[32];
    str(rec, "verdict", verdict, sizeof(verdict));
    const json_t *by = json_object_get(rec, "why");
    if (strcmp(verdict, "ban") == 0) {
        const json_t *ban = json_object_get(rec, "ban");
        const json_t *dur = json_object_get(ban, "duration");
        fprintf(out, "BAN %s ", str(ban, "prefix", p, sizeof(p)));
        if (json_is_integer(dur))
            fprintf(out, "for %s", duration_format(json_integer_value(dur), d, sizeof(d)));
        else
            fputs("permanently", out);
        fprintf(out, " (offence %" PRId64 "%s)\n", num(ban, "offence"),
                json_is_true(json_object_get(rec, "trusted")) ? ", trusted_maxretry" : "");
    } else if (json_is_object(by)) {
        char label[200], bp[64];
        fprintf(out, "%s: %s (%s)\n", verdict, str(by, "label", label, sizeof(label)),
                str(by, "prefix", bp, sizeof(bp)));
    } else if (json_is_string(by)) {
        fprintf(out, "%s: %s\n", verdict, str(rec, "why", why, sizeof(why)));
    } else if (strcmp(verdict, "below-threshold") == 0) {
        fprintf(out, "below threshold%s\n",
                json_is_true(json_object_get(rec, "trusted")) ? " (trusted: it logged in lately)"
                                                              : "");
    } else if (strcmp(verdict, "already-banned") == 0) {
        fputs("already banned\n", out);
    } else if (strcmp(verdict, "not-counted") == 0) {
        fputs("not counted (weighs nothing)\n", out);
    } else {
        fprintf(out, "%s\n", verdict);
    }
}

void cli_format_list_header(int width, FILE *out)
{
    fprintf(out, "%-*s  %-10s  %-9s  %8s  %-19s  %s\n", width, "PREFIX", "REMAINING", "REASON",
            "FAILURES", "FIRST SEEN", "LAST SEEN");
}

void cli_format_list_rows(const json_t *bans, int width, int64_t now, FILE *out)
{
    size_t i;
    const json_t *b;
    json_array_foreach(bans, i, b)
    {
        char p[64], rem[32], reason[32], f[32], l[32], node[64], org[300];
        fprintf(out, "%-*s  %-10s  %-9s  %8" PRId64 "  %-19s  %s", width,
                str(b, "prefix", p, sizeof(p)), remaining(b, now, rem, sizeof(rem)),
                str(b, "reason", reason, sizeof(reason)), num(b, "failures"),
                cli_format_time(num(b, "first_seen"), f, sizeof(f)),
                cli_format_time(num(b, "last_seen"), l, sizeof(l)));
        /* A fleet's remote ban names the node that decided it, a CrowdSec decision's its
         * origin ("crowdsec:cscli/SCENARIO"). */
        if (json_is_string(json_object_get(b, "node")))
            fprintf(out, "%*s  node %s", 19 - (int)strlen(l), "",
                    str(b, "node", node, sizeof(node)));
        else if (json_is_string(json_object_get(b, "crowdsec")))
            fprintf(out, "%*s  from %s", 19 - (int)strlen(l), "",
                    str(b, "crowdsec", org, sizeof(org)));
        fputc('\n', out);
    }
}

void cli_format_list_footer(int64_t shown, int64_t total, bool more, FILE *out)
{
    if (more)
        fprintf(out, "%" PRId64 " of %" PRId64 " active bans shown (--limit N or --all for more)\n",
                shown, total);
    else
        fprintf(out, "%" PRId64 " active ban%s\n", shown, shown == 1 ? "" : "s");
}

static void print_list(const json_t *r, int64_t now, FILE *out)
{
    const json_t *bans = json_object_get(r, "bans");
    size_t i;
    const json_t *b;
    int w = 6;
    json_array_foreach(bans, i, b)
    {
        const char *p = json_string_value(json_object_get(b, "prefix"));
        if (p && (int)strlen(p) > w)
            w = (int)strlen(p);
    }
    bool more = json_is_true(json_object_get(r, "truncated"));
    if (json_array_size(bans) == 0 && !more) {
        fprintf(out, "no active bans\n");
        return;
    }
    cli_format_list_header(w, out);
    cli_format_list_rows(bans, w, now, out);
    cli_format_list_footer((int64_t)json_array_size(bans), num(r, "total"), more, out);
}

static const char *author(const json_t *e, char *buf, size_t buflen);
static const char *allow_until(const json_t *e, int64_t now, char *buf, size_t buflen);

static void print_show(const json_t *r, int64_t now, FILE *out)
{
    char a[64], b[64], t[32], e[300];
    fprintf(out, "%-12s %s\n", "address", str(r, "addr", a, sizeof(a)));
    if (json_is_string(json_object_get(r, "key")))
        fprintf(out, "%-12s %s\n", "counted as", str(r, "key", a, sizeof(a)));
    const json_t *pr = json_object_get(r, "protected");
    if (json_is_object(pr)) {
        /* Why, from what, and how firmly. */
        fprintf(out, "%-12s yes: %s (%s)", "protected", str(pr, "reason", e, sizeof(e)),
                str(pr, "prefix", a, sizeof(a)));
        if (json_is_true(json_object_get(pr, "ignored")))
            fprintf(out, "; its events are ignored, never counted nor banned\n");
        else if (json_is_true(json_object_get(pr, "absolute")))
            fprintf(out, "; never banned, not even with --force\n");
        else
            fprintf(out, "; never banned automatically (ban --force overrides it)\n");
    } else if (json_is_string(json_object_get(r, "whitelist"))) {
        fprintf(out, "%-12s yes, matches %s: never banned automatically\n", "protected",
                str(r, "whitelist", a, sizeof(a)));
    } else {
        fprintf(out, "%-12s no\n", "protected");
    }
    const json_t *al = json_object_get(r, "allowed");
    if (json_is_object(al)) {
        char by[96], u[96], why[1200];
        fprintf(out, "%-12s yes, as %s since %s by %s, %s", "allowed",
                str(al, "prefix", a, sizeof(a)), cli_format_time(num(al, "added"), t, sizeof(t)),
                author(al, by, sizeof(by)), allow_until(al, now, u, sizeof(u)));
        if (json_is_string(json_object_get(al, "reason")))
            fprintf(out, ": %s", str(al, "reason", why, sizeof(why)));
        fputc('\n', out);
    }
    const json_t *ok = json_object_get(r, "authenticated");
    if (json_is_object(ok)) {
        char svc[64];
        fprintf(out, "%-12s last %s (%s, %s)", "logged in",
                cli_format_time(num(ok, "last"), t, sizeof(t)), str(ok, "account", e, sizeof(e)),
                str(ok, "service", svc, sizeof(svc)));
        if (json_is_true(json_object_get(ok, "trusted")))
            fprintf(out, ": banned only at %" PRId64 " failures until %s\n", num(ok, "threshold"),
                    cli_format_time(num(ok, "until"), b, sizeof(b)));
        else
            fputs(": too long ago to raise the threshold\n", out);
    }

    const json_t *ban = json_object_get(r, "ban");
    if (json_is_object(ban)) {
        fprintf(out, "%-12s yes, as %s (%s", "banned", str(ban, "prefix", a, sizeof(a)),
                str(ban, "reason", b, sizeof(b)));
        if (json_is_integer(json_object_get(ban, "expires")))
            fprintf(out, ", %s left, until %s)\n", remaining(ban, now, e, sizeof(e)),
                    cli_format_time(num(ban, "expires"), t, sizeof(t)));
        else
            fprintf(out, ", permanent)\n");
        fprintf(out, "%-12s %s by %s", "since", cli_format_time(num(ban, "start"), t, sizeof(t)),
                str(ban, "origin", e, sizeof(e)));
        if (json_is_string(json_object_get(ban, "node")))
            fprintf(out, " (decided by node %s of the fleet)", str(ban, "node", b, sizeof(b)));
        if (json_is_string(json_object_get(ban, "note")))
            fprintf(out, ": %s", str(ban, "note", e, sizeof(e)));
        fputc('\n', out);
    } else {
        fprintf(out, "%-12s no\n", "banned");
    }
    fprintf(out, "%-12s %s\n", "first seen", cli_format_time(num(r, "first_seen"), t, sizeof(t)));
    fprintf(out, "%-12s %s\n", "last seen", cli_format_time(num(r, "last_seen"), t, sizeof(t)));

    size_t i;
    const json_t *x;
    const json_t *fails = json_object_get(r, "failures");
    if (json_array_size(fails)) {
        fprintf(out, "failures:\n");
        json_array_foreach(fails, i, x)
        {
            char svc[64], ev[64];
            fprintf(out, "  %-8s %-24s %8" PRId64 "\n", str(x, "service", svc, sizeof(svc)),
                    str(x, "event", ev, sizeof(ev)), num(x, "count"));
        }
    } else {
        fprintf(out, "%-12s none recorded\n", "failures");
    }
    const json_t *acc = json_object_get(r, "accounts");
    if (json_array_size(acc)) {
        fprintf(out, "accounts tried:\n");
        json_array_foreach(acc, i, x)
        {
            fprintf(out, "  %-33s %8" PRId64 "\n", str(x, "account", e, sizeof(e)),
                    num(x, "count"));
        }
    }
    const json_t *past = json_object_get(r, "past_bans");
    if (json_array_size(past)) {
        fprintf(out, "past bans:\n");
        json_array_foreach(past, i, x)
        {
            char p[64], reason[32], how[32], by[64], len[32];
            int64_t start = num(x, "start"), ended = num(x, "ended");
            fprintf(out, "  %s  %-18s %-9s %-8s %s", cli_format_time(start, t, sizeof(t)),
                    str(x, "prefix", p, sizeof(p)), str(x, "reason", reason, sizeof(reason)),
                    duration_format(ended > start ? ended - start : 0, len, sizeof(len)),
                    str(x, "end_reason", how, sizeof(how)));
            if (json_is_string(json_object_get(x, "lifted_by")))
                fprintf(out, " by %s", str(x, "lifted_by", by, sizeof(by)));
            fputc('\n', out);
        }
    }
}

static void print_fleet(const json_t *r, const char *what, FILE *out);

/* Who added an allowlist entry: "root (uid 0)", from the uid the daemon took from the socket's
 * credentials; the name is this host's. */
static const char *author(const json_t *e, char *buf, size_t buflen)
{
    const json_t *uid = json_object_get(e, "uid");
    if (!json_is_integer(uid)) {
        char by[128];
        snprintf(buf, buflen, "%s", str(e, "added_by", by, sizeof(by)));
        return buf;
    }
    struct passwd pw, *found = NULL;
    char pwbuf[1024], name[128];
    json_int_t n = json_integer_value(uid);
    if (getpwuid_r((uid_t)n, &pw, pwbuf, sizeof(pwbuf), &found) == 0 && found)
        snprintf(buf, buflen, "%s (uid %" PRId64 ")",
                 log_escape(found->pw_name, strlen(found->pw_name), name, sizeof(name)),
                 (int64_t)n);
    else
        snprintf(buf, buflen, "uid %" PRId64, (int64_t)n);
    return buf;
}

/* "until removed", or "for 1h59m (until 2026-12-03 10:00:00)". */
static const char *allow_until(const json_t *e, int64_t now, char *buf, size_t buflen)
{
    if (!json_is_integer(json_object_get(e, "expires"))) {
        snprintf(buf, buflen, "until removed");
        return buf;
    }
    char d[32], t[32];
    snprintf(buf, buflen, "for %s (until %s)", remaining(e, now, d, sizeof(d)),
             cli_format_time(num(e, "expires"), t, sizeof(t)));
    return buf;
}

static void print_allow(const json_t *r, int64_t now, FILE *out)
{
    char p[64], u[96], w[1200];
    if (json_is_string(json_object_get(r, "removed"))) {
        fprintf(out, "removed %s from the allowlist\n", str(r, "removed", p, sizeof(p)));
        const json_t *sp = json_object_get(r, "still_protected");
        if (json_is_object(sp))
            fprintf(out, "note: still protected by %s (%s, %s)\n", str(sp, "prefix", p, sizeof(p)),
                    str(sp, "reason", w, sizeof(w)), str(sp, "source", u, sizeof(u)));
        return;
    }
    const json_t *e = json_object_get(r, "allow");
    fprintf(out, "allowed %s %s%s\n", str(e, "prefix", p, sizeof(p)),
            allow_until(e, now, u, sizeof(u)),
            json_is_true(json_object_get(r, "replaced")) ? " (replaces the previous entry)" : "");
    size_t i;
    const json_t *x;
    json_array_foreach(json_object_get(r, "lifted"), i, x)
    {
        fprintf(out, "lifted the ban of %s\n",
                log_escape(json_string_value(x) ? json_string_value(x) : "-", json_string_length(x),
                           p, sizeof(p)));
    }
    print_fleet(r, "lifted", out);
    if (json_is_string(json_object_get(r, "still_banned")))
        fprintf(out, "note: %s\n", str(r, "still_banned", w, sizeof(w)));
    if (json_is_string(json_object_get(r, "lift_error")))
        fprintf(out, "warning: lifting its bans failed: %s\n", str(r, "lift_error", w, sizeof(w)));
}

static void print_allowlist(const json_t *r, int64_t now, FILE *out)
{
    const json_t *entries = json_object_get(r, "entries");
    if (!json_array_size(entries)) {
        fprintf(out, "the allowlist is empty (only the built-in ranges and the host's own "
                     "addresses are protected)\n");
        return;
    }
    size_t i;
    const json_t *x;
    int wp = 6;
    json_array_foreach(entries, i, x)
    {
        const char *p = json_string_value(json_object_get(x, "prefix"));
        if (p && (int)strlen(p) > wp)
            wp = (int)strlen(p);
    }
    fprintf(out, "%-*s  %-8s  %-19s  %-19s  %-16s  %s\n", wp, "PREFIX", "SOURCE", "ADDED",
            "EXPIRES", "BY", "REASON");
    json_array_foreach(entries, i, x)
    {
        char p[64], src[32], added[32], exp[32], by[96], why[1200];
        bool runtime = strcmp(str(x, "source", src, sizeof(src)), "runtime") == 0;
        fprintf(out, "%-*s  %-8s  %-19s  %-19s  %-16s  %s\n", wp, str(x, "prefix", p, sizeof(p)),
                src, runtime ? cli_format_time(num(x, "added"), added, sizeof(added)) : "-",
                !runtime ? "-"
                : json_is_integer(json_object_get(x, "expires"))
                    ? cli_format_time(num(x, "expires"), exp, sizeof(exp))
                    : "never",
                runtime ? author(x, by, sizeof(by)) : "pbxguard.conf",
                runtime ? str(x, "reason", why, sizeof(why)) : "[whitelist] cidr");
    }
    fprintf(out, "%" PRId64 " runtime entr%s of at most %" PRId64 "\n", num(r, "runtime"),
            num(r, "runtime") == 1 ? "y" : "ies", num(r, "max"));
    (void)now;
}

/* Fleet mode: where else the change goes. */
static void print_fleet(const json_t *r, const char *what, FILE *out)
{
    const char *f = json_string_value(json_object_get(r, "fleet"));
    if (!f)
        return;
    if (strcmp(f, "connected") == 0)
        fprintf(out, "%s on every node of the fleet (published to the shared table)\n", what);
    else
        fprintf(out,
                "%s on every node of the fleet once the shared table is reachable again "
                "(queued; `pbxguard status` shows the outbox)\n",
                what);
}

static void print_unban(const json_t *r, FILE *out)
{
    const json_t *lifted = json_object_get(r, "lifted");
    size_t i;
    const json_t *x;
    json_array_foreach(lifted, i, x)
    {
        char p[300];
        fprintf(out, "unbanned %s\n",
                log_escape(json_string_value(x) ? json_string_value(x) : "-", json_string_length(x),
                           p, sizeof(p)));
    }
    print_fleet(r, "lifted", out);
    char note[600];
    if (json_is_string(json_object_get(r, "crowdsec")))
        fprintf(out, "note: %s\n", str(r, "crowdsec", note, sizeof(note)));
}

static void print_reload(const json_t *r, FILE *out)
{
    fprintf(out, "configuration reloaded\n");
    size_t i;
    const json_t *x;
    json_array_foreach(json_object_get(r, "warnings"), i, x)
    {
        char w[512];
        fprintf(out, "warning: %s\n",
                log_escape(json_string_value(x) ? json_string_value(x) : "", json_string_length(x),
                           w, sizeof(w)));
    }
}

int cli_format_reply(const char *cmd, const json_t *reply, int64_t now, FILE *out)
{
    if (strcmp(cmd, "status") == 0)
        print_status(reply, now, out);
    else if (strcmp(cmd, "ban") == 0) {
        print_ban_line("banned", json_object_get(reply, "ban"), now, out);
        print_fleet(reply, "banned", out);
    } else if (strcmp(cmd, "unban") == 0)
        print_unban(reply, out);
    else if (strcmp(cmd, "list") == 0)
        print_list(reply, now, out);
    else if (strcmp(cmd, "show") == 0)
        print_show(reply, now, out);
    else if (strcmp(cmd, "reload") == 0)
        print_reload(reply, out);
    else if (strcmp(cmd, "allow") == 0)
        print_allow(reply, now, out);
    else if (strcmp(cmd, "allowlist") == 0)
        print_allowlist(reply, now, out);
    else
        fprintf(out, "ok\n");
    return ferror(out) ? -EIO : 0;
}
