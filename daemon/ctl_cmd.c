/* The control commands. Every argument is validated again here (the socket may be spoken to
 * without the CLI); addresses are parsed once and never handled as strings after that. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "crowdsec.h"
#include "ctl_cmd.h"
#include "log.h"
#include "nftset.h"

#define PAST_BANS_MAX 50

static json_t *time_or_null(int64_t ms)
{
    return ms > 0 ? json_integer(ms / 1000) : json_null();
}

/* Attacker text (a service, an account) as a JSON string: as it is when it is valid UTF-8,
 * else escaped like the log escapes it (\xNN), which JSON can carry. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (!j) {
        char esc[SEC_ACCOUNT_MAX * 4 + 4];
        j = json_string(log_escape(s, strlen(s), esc, sizeof(esc)));
    }
    return j;
}

static const char *reason_name(enum store_ban_reason r)
{
    return store_ban_reason_name(r);
}

/* A remote ban's origin "cluster:NODE": the node, else NULL. */
static const char *origin_node(const struct store_ban *b)
{
    return b->reason == STORE_BAN_REMOTE && !strncmp(b->origin, "cluster:", 8) ? b->origin + 8
                                                                               : NULL;
}

static json_t *ban_json(const struct store_ban *b, int64_t now_ms)
{
    char p[ADDR_STRLEN];
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "prefix", json_string(addr_prefix_format(&b->prefix, p, sizeof(p))));
    json_object_set_new(o, "family", json_integer(b->prefix.addr.family == AF_INET ? 4 : 6));
    json_object_set_new(o, "reason", json_string(reason_name(b->reason)));
    json_object_set_new(o, "origin", json_string(b->origin));
    if (origin_node(b))
        json_object_set_new(o, "node", json_string(origin_node(b)));
    if (b->reason == STORE_BAN_REMOTE && crowdsec_origin(b->origin))
        json_object_set_new(o, "crowdsec", json_string(b->origin));
    json_object_set_new(o, "start", time_or_null(b->start_ms));
    json_object_set_new(o, "expires", time_or_null(b->expires_ms));
    if (b->expires_ms > 0) {
        int64_t left = b->expires_ms - now_ms;
        json_object_set_new(o, "remaining", json_integer(left > 0 ? (left + 999) / 1000 : 0));
    } else {
        json_object_set_new(o, "remaining", json_null());
    }
    json_object_set_new(o, "failures", json_real(b->failures));
    json_object_set_new(o, "offence", json_integer(b->offence));
    if (b->service[0])
        json_object_set_new(o, "service", json_text(b->service));
    if (b->event_type >= 0 && sec_event_type_name(b->event_type))
        json_object_set_new(o, "event", json_string(sec_event_type_name(b->event_type)));
    if (b->end != STORE_BAN_ACTIVE) {
        json_object_set_new(o, "ended", time_or_null(b->ended_ms));
        json_object_set_new(o, "end_reason",
                            json_string(b->end == STORE_BAN_LIFTED ? "lifted" : "expired"));
        if (b->lifted_by[0])
            json_object_set_new(o, "lifted_by", json_string(b->lifted_by));
    }
    if (b->note[0]) {
        /* Admin text, but the socket may be spoken to without the CLI: keep JSON valid. */
        char esc[STORE_NOTE_MAX * 4];
        json_object_set_new(o, "note",
                            json_string(log_escape(b->note, strlen(b->note), esc, sizeof(esc))));
    }
    return o;
}

static json_t *allow_json(const struct store_allow *e, int64_t now_ms);

/* The request's "addr" as a prefix. allow_host_bits: for show, where an address is asked. */
static json_t *get_prefix(json_t *req, struct addr_prefix *ret)
{
    const char *s = json_string_value(json_object_get(req, "addr"));
    if (!s)
        return ctl_error(CTL_CODE_USAGE, "\"addr\" is missing (an address or ADDR/LEN)");
    if (addr_prefix_parse(s, false, ret) < 0) {
        char esc[80];
        return ctl_error(CTL_CODE_USAGE,
                         "\"%s\" is not an IP address or prefix (host bits set "
                         "past the length are refused too)",
                         log_escape(s, strlen(s), esc, sizeof(esc)));
    }
    if (ret->len == 0)
        return ctl_error(CTL_CODE_USAGE, "a /0 prefix would be every address");
    return NULL;
}

static void who(const struct ctl_peer *peer, char *buf, size_t buflen)
{
    snprintf(buf, buflen, "cli:uid=%u", (unsigned)peer->uid);
}

static json_t *errno_reply(const char *what, int err)
{
    return ctl_error(CTL_CODE_FAILED, "%s: %s", what, store_strerror(err));
}

/* --- what a control_group member may do ---
 *
 * Root and the daemon's own user may do everything. A member of control_group may read
 * everything and ban or unban single addresses and prefixes no wider than group_min_prefix4
 * and group_min_prefix6; --force and reload are root's. Each refusal names its rule and how
 * to change it. The rules every caller is bound by, root included, are the judge's. */

/* A refusal of this layer: code 1, and "rule" names which one ("group-prefix", "root-only"),
 * as the judge's refusals do. */
static json_t *refusal(const char *rule, json_t *reply)
{
    json_object_set_new(reply, "rule", json_string(rule));
    return reply;
}

static json_t *refuse_wide(const struct ctl_cmd_ops *ops, const char *verb,
                           const struct addr_prefix *p)
{
    bool v4 = p->addr.family == AF_INET;
    unsigned min = v4 ? ops->cfg->general.group_min_prefix4 : ops->cfg->general.group_min_prefix6;
    if (p->len >= min)
        return NULL;
    char ps[ADDR_STRLEN];
    return refusal("group-prefix",
                   ctl_error(CTL_CODE_FAILED,
                             "permission denied: %s is wider than /%u, the widest prefix a member "
                             "of control_group may %s ([general] group_min_prefix%c = %u); run it "
                             "as root, or lower group_min_prefix%c",
                             addr_prefix_format(p, ps, sizeof(ps)), min, verb, v4 ? '4' : '6', min,
                             v4 ? '4' : '6'));
}

/* --- status --- */

#define CTL_UNCLEAN_STOP_RECENT_MS (24 * 3600 * 1000LL)

static json_t *cmd_status(const struct ctl_cmd_ops *ops, json_t *req, const struct ctl_peer *peer)
{
    json_t *r =
        json_pack("{s:b, s:s, s:i, s:I, s:I}", "ok", 1, "version", PBXGUARD_VERSION, "pid",
                  (int)getpid(), "uptime", (json_int_t)((ops->now_ms - ops->started_ms) / 1000),
                  "started", (json_int_t)(ops->started_ms / 1000));
    if (!r)
        return NULL;
    uint64_t v4 = 0, v6 = 0;
    int err = store_bans_active_count(ops->store, ops->now_ms, &v4, &v6);
    json_object_set_new(r, "active_bans",
                        json_pack("{s:I, s:I}", "v4", (json_int_t)v4, "v6", (json_int_t)v6));
    if (err < 0)
        json_object_set_new(r, "store_error", json_string(store_strerror(err)));

    const char *db = ops->cfg->general.database;
    struct stat st;
    json_int_t size = 0;
    char wal[CFG_PATH_MAX + 8];
    if (stat(db, &st) == 0)
        size += st.st_size;
    snprintf(wal, sizeof(wal), "%s-wal", db);
    if (stat(wal, &st) == 0)
        size += st.st_size;
    /* Ban changes made while the database failed that its replay journal could not hold. */
    struct store_stats sst;
    store_get_stats(ops->store, &sst);
    /* The write-ahead log and its checkpoints (store_wal.c): how far behind the file is. */
    struct store_wal_stats wst;
    store_wal_stats(ops->store, &wst);
    json_object_set_new(r, "database",
                        json_pack("{s:s, s:I, s:I, s:{s:I, s:I, s:I, s:f}}", "path", db, "size",
                                  size, "journal_lost", (json_int_t)sst.journal_lost, "wal",
                                  "bytes", (json_int_t)wst.wal_bytes, "checkpoints",
                                  (json_int_t)wst.checkpoints, "failures", (json_int_t)wst.failures,
                                  "max_ms", wst.max_us / 1000.0));

    /* A death in the last day: for that while nothing was judged, which the admin should know
     * when looking at a daemon that runs fine again. */
    struct store_run died;
    int64_t restarted = 0;
    if (store_run_last_died(ops->store, ops->now_ms - CTL_UNCLEAN_STOP_RECENT_MS, &died,
                            &restarted) == 0)
        json_object_set_new(r, "last_unclean_stop",
                            json_pack("{s:I, s:I, s:I, s:i, s:s}", "last_write",
                                      (json_int_t)(died.died_ms / 1000), "restarted",
                                      (json_int_t)(restarted / 1000), "down",
                                      (json_int_t)((restarted - died.died_ms) / 1000), "pid",
                                      (int)died.pid, "version", died.version));

    json_object_set_new(r, "ami", json_array());
    json_object_set_new(r, "events", json_integer(0));
    json_object_set_new(r, "bans", json_integer(0));
    json_object_set_new(r, "nftables", json_pack("{s:b, s:s}", "ok", 0, "detail", "unknown"));
    if (ops->status)
        ops->status(ops->data, r);
    return r;
}

/* --- ban --- */

static json_t *cmd_ban(const struct ctl_cmd_ops *ops, json_t *req, const struct ctl_peer *peer)
{
    struct addr_prefix p;
    json_t *bad = get_prefix(req, &p);
    if (bad)
        return bad;
    json_t *dur = json_object_get(req, "duration");
    bool permanent = json_is_true(json_object_get(req, "permanent"));
    bool force = json_is_true(json_object_get(req, "force"));
    json_t *note = json_object_get(req, "note");
    int64_t duration_ms;
    if (dur && permanent)
        return ctl_error(CTL_CODE_USAGE, "\"duration\" and \"permanent\" exclude each other");
    if (dur && (!json_is_integer(dur) || json_integer_value(dur) <= 0 ||
                json_integer_value(dur) > CTL_MANUAL_BAN_MAX_S))
        return ctl_error(CTL_CODE_USAGE,
                         "\"duration\" must be a positive number of seconds, at most 100 years "
                         "(or \"permanent\": true)");
    if (note && (!json_is_string(note) || json_string_length(note) > CTL_NOTE_MAX))
        return ctl_error(CTL_CODE_USAGE, "\"note\" must be a string of at most %d bytes",
                         CTL_NOTE_MAX);
    if (permanent)
        duration_ms = 0;
    else if (dur)
        duration_ms = json_integer_value(dur) * 1000;
    else
        duration_ms = policy_ban_ms(ops->policy, 1);

    if (!peer->privileged && force)
        return refusal("root-only",
                       ctl_error(CTL_CODE_FAILED,
                                 "permission denied: --force (banning a whitelisted address) is "
                                 "for root; members of control_group may ban only what is not "
                                 "whitelisted"));
    if (!peer->privileged && (bad = refuse_wide(ops, "ban", &p)))
        return bad;

    char by[STORE_WHO_MAX], ps[ADDR_STRLEN];
    who(peer, by, sizeof(by));
    addr_prefix_format(&p, ps, sizeof(ps));
    struct verdict v;
    int err =
        judge_manual_ban(ops->judge, &p, duration_ms, force, by,
                         json_is_string(note) ? json_string_value(note) : NULL, ops->now_ms, &v);
    if (err == -EPERM) {
        const struct policy_wl_entry *w;
        char why[512];
        enum policy_ban_rule rule = policy_ban_check(ops->policy, &p, force, &w);
        json_t *r = ctl_error(CTL_CODE_FAILED, "%s",
                              policy_ban_refusal(ops->policy, &p, rule, w, why, sizeof(why)));
        json_object_set_new(r, "rule", json_string(policy_ban_rule_name(rule)));
        return r;
    }
    if (err < 0)
        return errno_reply("ban failed", err);
    err = ops->apply(ops->data, &v);
    if (err < 0) {
        /* The kernel refused it (an interval set will not hold a prefix that overlaps another
         * banned prefix): it must not stay recorded as active while nothing enforces it. */
        struct verdict lifted;
        judge_unban(ops->judge, &p, "pbxguardd:refused-by-kernel", ops->now_ms, &lifted, NULL);
        return ctl_error(CTL_CODE_FAILED, "the kernel refused the ban of %s: %s%s", ps,
                         nftset_strerror(err),
                         err == -ENOTEMPTY ? "; unban the other prefix first" : "");
    }

    struct store_ban b;
    json_t *r = json_pack("{s:b}", "ok", 1);
    if (store_ban_last(ops->store, &p, &b) == 0)
        json_object_set_new(r, "ban", ban_json(&b, ops->now_ms));
    if (ops->fleet && (ops->cfg->cluster.publish & CFG_PUBLISH_MANUAL))
        json_object_set_new(r, "fleet", json_string(ops->fleet));
    return r;
}

/* --- unban --- */

static json_t *cmd_unban(const struct ctl_cmd_ops *ops, json_t *req, const struct ctl_peer *peer)
{
    struct addr_prefix p;
    json_t *bad = get_prefix(req, &p);
    if (bad)
        return bad;
    char ps[ADDR_STRLEN], by[STORE_WHO_MAX], cs[ADDR_STRLEN];
    addr_prefix_format(&p, ps, sizeof(ps));
    who(peer, by, sizeof(by));

    /* What an unban lifts is the judge's decision; the reply explains a refusal. A member of
     * control_group may neither name a wide prefix nor lift one through an address inside
     * it (an address whose counting key is a wide prefix). */
    struct judge_cover cover;
    int err;
    if (!peer->privileged) {
        if ((bad = refuse_wide(ops, "unban", &p)))
            return bad;
        err = judge_unban_target(ops->judge, &p, ops->now_ms, &cover);
        if (err < 0)
            return errno_reply("unban failed", err);
        if ((cover.hold == JUDGE_BANNED || cover.hold == JUDGE_BANNED_AS_KEY) &&
            (bad = refuse_wide(ops, "unban", &cover.prefix)))
            return bad;
    }
    /* A CrowdSec decision's ban comes back from LAPI: the reply says so. */
    struct store_ban before;
    bool from_crowdsec = judge_unban_target(ops->judge, &p, ops->now_ms, &cover) == 0 &&
                         (cover.hold == JUDGE_BANNED || cover.hold == JUDGE_BANNED_AS_KEY) &&
                         store_ban_last(ops->store, &cover.prefix, &before) == 0 &&
                         before.reason == STORE_BAN_REMOTE && crowdsec_origin(before.origin);
    struct verdict v;
    err = judge_unban(ops->judge, &p, by, ops->now_ms, &v, &cover);
    if (err == -ENOENT && cover.hold == JUDGE_INSIDE_PREFIX) {
        addr_prefix_format(&cover.prefix, cs, sizeof(cs));
        json_t *r = ctl_error(CTL_CODE_FAILED,
                              "%s is not banned itself; it lies inside the banned prefix %s: "
                              "unban %s to lift it",
                              ps, cs, cs);
        json_object_set_new(r, "covered_by", json_string(cs));
        return r;
    }
    if (err == -ENOENT)
        return ctl_error(CTL_CODE_FAILED, "%s is not banned", ps);
    if (err < 0)
        return errno_reply("unban failed", err);
    /* An unban the kernel cannot apply (the element already timed out) is still an unban. */
    ops->apply(ops->data, &v);
    json_t *lifted = json_array();
    json_array_append_new(lifted, json_string(addr_prefix_format(&v.prefix, cs, sizeof(cs))));
    json_t *r = json_pack("{s:b, s:o}", "ok", 1, "lifted", lifted);
    /* The unban is published: every node of the fleet lifts it too. */
    if (ops->fleet)
        json_object_set_new(r, "fleet", json_string(ops->fleet));
    if (from_crowdsec)
        json_object_set_new(
            r, "crowdsec",
            json_sprintf("%s came from a CrowdSec decision (%s): pbxguardd bans it again when it "
                         "next reads LAPI's whole set (at a restart, or after LAPI was "
                         "unreachable) unless it is deleted in CrowdSec: cscli decisions delete "
                         "--%s %s",
                         cs, before.origin,
                         v.prefix.len == addr_max_len(&v.prefix.addr) ? "ip" : "range", cs));
    return r;
}

/* --- list --- */

/* Rows a page may look at, matching or not: a filtered list pages through sparse matches a
 * bounded slice at a time instead of walking every ban in one request. */
#define LIST_SCAN_MAX (2 * CTL_LIST_PAGE_MAX)

struct list_ctx {
    const struct ctl_cmd_ops *ops;
    int family;       /* 0, 4, 6 */
    int reason;       /* -1 or enum store_ban_reason */
    int64_t limit;    /* rows in this reply, 1..CTL_LIST_PAGE_MAX */
    int64_t last_id;  /* the last ban this page has dealt with: the next page starts after it */
    unsigned scanned; /* rows looked at */
    size_t bytes;     /* the reply's size so far */
    bool full;        /* stopped before a matching ban that did not fit */
    json_t *bans;
};

static int list_one(void *data, const struct store_ban *b)
{
    struct list_ctx *c = data;
    int fam = b->prefix.addr.family == AF_INET ? 4 : 6;
    c->scanned++;
    if ((c->family && fam != c->family) || (c->reason >= 0 && (int)b->reason != c->reason)) {
        c->last_id = b->id;
        return 0;
    }
    if ((int64_t)json_array_size(c->bans) >= c->limit) {
        c->full = true;
        return 1;
    }
    json_t *o = ban_json(b, c->ops->now_ms);
    if (!o)
        return -ENOMEM;
    int64_t first = 0, last = 0;
    if (store_key_seen(c->ops->store, &b->prefix, &first, &last) == 0) {
        json_object_set_new(o, "first_seen", time_or_null(first));
        json_object_set_new(o, "last_seen", time_or_null(last));
    }
    /* Attacker and admin text make rows of very different sizes: the page is cut by bytes too,
     * so that one page always fits the reply memory the server set aside for it. The bound
     * takes every text byte as the longest JSON escape could make it. */
    size_t size = 512 + 6 * (4 * strlen(b->note) + strlen(b->origin) + strlen(b->service) +
                             strlen(b->lifted_by));
    if (json_array_size(c->bans) > 0 && c->bytes + size > CTL_PAGE_BYTES_MAX - 256) {
        json_decref(o);
        c->full = true;
        return 1;
    }
    c->bytes += size;
    c->last_id = b->id;
    return json_array_append_new(c->bans, o) ? -ENOMEM : 0;
}

/* A cursor is the decimal id of the last ban a page dealt with; clients pass it back as is. */
static bool parse_cursor(json_t *v, int64_t *ret)
{
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > 18)
        return false;
    int64_t n = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        n = n * 10 + (*p - '0');
    }
    *ret = n;
    return true;
}

static json_t *cmd_list(const struct ctl_cmd_ops *ops, json_t *req, const struct ctl_peer *peer)
{
    struct list_ctx c = {.ops = ops, .reason = -1, .limit = CTL_LIST_PAGE_MAX};
    json_t *limit = json_object_get(req, "limit");
    if (limit) {
        if (!json_is_integer(limit) || json_integer_value(limit) < 1)
            return ctl_error(CTL_CODE_USAGE,
                             "\"limit\" must be a number of bans, 1 or more (a reply holds at "
                             "most %d; ask for the next ones with \"cursor\")",
                             CTL_LIST_PAGE_MAX);
        if (json_integer_value(limit) < c.limit)
            c.limit = json_integer_value(limit);
    }
    json_t *fam = json_object_get(req, "family");
    if (fam) {
        if (!json_is_integer(fam) || (json_integer_value(fam) != 4 && json_integer_value(fam) != 6))
            return ctl_error(CTL_CODE_USAGE, "\"family\" must be 4 or 6");
        c.family = (int)json_integer_value(fam);
    }
    json_t *reason = json_object_get(req, "reason");
    if (reason) {
        const char *s = json_string_value(reason);
        if (s && strcmp(s, "threshold") == 0)
            c.reason = STORE_BAN_THRESHOLD;
        else if (s && strcmp(s, "manual") == 0)
            c.reason = STORE_BAN_MANUAL;
        else if (s && strcmp(s, "remote") == 0)
            c.reason = STORE_BAN_REMOTE;
        else
            return ctl_error(CTL_CODE_USAGE,
                             "\"reason\" must be \"threshold\", \"manual\" or \"remote\"");
    }
    json_t *cursor = json_object_get(req, "cursor");
    if (cursor && !parse_cursor(cursor, &c.last_id))
        return ctl_error(CTL_CODE_USAGE, "\"cursor\" must be the \"cursor\" of a previous reply");

    c.bans = json_array();
    int err =
        store_bans_active_page(ops->store, ops->now_ms, c.last_id, LIST_SCAN_MAX, list_one, &c);
    if (err < 0) {
        json_decref(c.bans);
        return errno_reply("list failed", err);
    }
    bool more = c.full || c.scanned == LIST_SCAN_MAX;
    json_t *r = json_pack("{s:b, s:o, s:b}", "ok", 1, "bans", c.bans, "truncated", more);
    if (more) {
        char id[24];
        snprintf(id, sizeof(id), "%lld", (long long)c.last_id);
        json_object_set_new(r, "cursor", json_string(id));
    }
    if (!cursor) {
        /* The first page says how many match in all: one walk of an index that holds only the
         * active bans (about 3 ms per 100k), once per listing, not once per page. */
        struct store_active_tally t;
        if (store_bans_active_tally(ops->store, ops->now_ms, &t) == 0) {
            uint64_t total = 0;
            for (int f = 0; f < 2; f++)
                for (int k = 0; k < STORE_BAN_REASONS; k++)
                    if ((!c.family || c.family == (f ? 6 : 4)) && (c.reason < 0 || c.reason == k))
                        total += t.n[f][k];
            json_object_set_new(r, "total", json_integer((json_int_t)total));
        }
    }
    return r;
}

/* --- show --- */

struct show_ctx {
    int64_t now_ms;
    json_t *ban, *past, *failures, *accounts;
};

static int show_ban(void *data, const struct store_ban *b)
{
    struct show_ctx *c = data;
    if (store_ban_active(b, c->now_ms)) {
        /* Newest first: the first active one is the ban in force. */
        if (!c->ban)
            c->ban = ban_json(b, c->now_ms);
    } else if (json_array_size(c->past) < PAST_BANS_MAX) {
        json_array_append_new(c->past, ban_json(b, c->now_ms));
    }
    return 0;
}

static int show_type(void *data, const char *service, int event_type, int64_t count, double w)
{
    struct show_ctx *c = data;
    const char *name = sec_event_type_name(event_type);
    json_array_append_new(c->failures,
                          json_pack("{s:o, s:s, s:I, s:f}", "service", json_text(service), "event",
                                    name ? name : "?", "count", (json_int_t)count, "weight", w));
    return 0;
}

static int show_account(void *data, const char *account, int64_t count, int64_t last_ms)
{
    struct show_ctx *c = data;
    json_array_append_new(c->accounts,
                          json_pack("{s:o, s:I, s:o}", "account", json_text(account), "count",
                                    (json_int_t)count, "last", time_or_null(last_ms)));
    return 0;
}

/* The key's last successful login, and the threshold it earns while it is recent. */
static json_t *show_success(const struct ctl_cmd_ops *ops, const struct addr_prefix *key)
{
    struct store_success ok;
    if (store_success_get(ops->store, key, &ok) < 0)
        return json_null();
    char a[ADDR_STRLEN], esc[SEC_ACCOUNT_MAX * 4 + 4], svc[SEC_SERVICE_MAX * 4 + 4];
    int64_t window = policy_trust_window_ms(ops->policy);
    bool trusted = window > 0 && ok.last_ms >= ops->now_ms - window;
    json_t *o =
        json_pack("{s:I, s:I, s:I, s:s, s:s, s:s, s:b}", "first", (json_int_t)(ok.first_ms / 1000),
                  "last", (json_int_t)(ok.last_ms / 1000), "count", (json_int_t)ok.count, "addr",
                  addr_format(&ok.addr, a, sizeof(a)), "account",
                  log_escape(ok.account, strlen(ok.account), esc, sizeof(esc)), "service",
                  log_escape(ok.service, strlen(ok.service), svc, sizeof(svc)), "trusted", trusted);
    if (o && trusted) {
        json_object_set_new(o, "until", json_integer((ok.last_ms + window) / 1000));
        json_object_set_new(o, "threshold",
                            json_integer(policy_trusted_threshold(ops->policy, ok.service)));
    }
    return o ? o : json_null();
}

static json_t *cmd_show(const struct ctl_cmd_ops *ops, json_t *req, const struct ctl_peer *peer)
{
    struct addr_prefix p;
    json_t *bad = get_prefix(req, &p);
    if (bad)
        return bad;
    char s[ADDR_STRLEN];
    struct addr_prefix key;
    policy_key(ops->policy, &p.addr, &key);
    struct show_ctx c = {.now_ms = ops->now_ms,
                         .past = json_array(),
                         .failures = json_array(),
                         .accounts = json_array()};
    struct store_show_fns fns = {.ban = show_ban, .by_type = show_type, .account = show_account};
    struct store_addr_summary sum = {0};
    int err = store_show(ops->store, &p.addr, &key, &fns, &c, &sum);
    if (err < 0) {
        json_decref(c.ban);
        json_decref(c.past);
        json_decref(c.failures);
        json_decref(c.accounts);
        return errno_reply("show failed", err);
    }
    json_t *r = json_pack("{s:b, s:s}", "ok", 1, "addr", addr_format(&p.addr, s, sizeof(s)));
    json_object_set_new(r, "key", json_string(addr_prefix_format(&key, s, sizeof(s))));
    const struct policy_wl_entry *w = policy_whitelist_match(ops->policy, &p.addr);
    if (w) {
        json_object_set_new(r, "whitelist",
                            json_string(addr_prefix_format(&w->prefix, s, sizeof(s))));
        json_object_set_new(r, "whitelist_label", json_string(w->label));
        /* Why it is protected, and how firmly: --force bans only what is not absolute. */
        json_object_set_new(r, "protected",
                            json_pack("{s:s, s:s, s:s, s:b, s:b}", "prefix", s, "reason", w->label,
                                      "source", policy_source_name(w->source), "absolute",
                                      policy_source_absolute(w->source), "ignored",
                                      policy_ignored(ops->policy, &p.addr) != NULL));
    } else {
        json_object_set_new(r, "whitelist", json_null());
        json_object_set_new(r, "protected", json_null());
    }
    /* On the runtime allowlist: since when, until when, who put it there and why. */
    const struct store_allow *al = ops->allow ? allowlist_holding(ops->allow, &p.addr) : NULL;
    json_object_set_new(r, "allowed", al ? allow_json(al, ops->now_ms) : json_null());
    json_object_set_new(r, "authenticated", show_success(ops, &key));
    json_object_set_new(r, "ban", c.ban ? c.ban : json_null());
    json_object_set_new(r, "past_bans", c.past);
    json_object_set_new(r, "failures", c.failures);
    json_object_set_new(r, "accounts", c.accounts);
    json_object_set_new(r, "failure_count", json_integer(sum.count));
    json_object_set_new(r, "first_seen", time_or_null(sum.first_ms));
    json_object_set_new(r, "last_seen", time_or_null(sum.last_ms));
    return r;
}

/* --- allow, allowlist --- */

/* The uid of a "cli:uid=N" author, or -1. */
static json_int_t author_uid(const char *by)
{
    unsigned long long n = 0;
    const char *p = strncmp(by, "cli:uid=", 8) == 0 ? by + 8 : NULL;
    if (!p || !*p)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || n > 0xffffffffULL)
            return -1;
        n = n * 10 + (unsigned)(*p - '0');
    }
    return (json_int_t)n;
}

static json_t *allow_json(const struct store_allow *e, int64_t now_ms)
{
    char p[ADDR_STRLEN], esc[STORE_NOTE_MAX * 4];
    json_t *o = json_pack(
        "{s:s, s:s, s:o, s:o}", "prefix", addr_prefix_format(&e->prefix, p, sizeof(p)), "source",
        "runtime", "added", time_or_null(e->added_ms), "expires", time_or_null(e->expires_ms));
    if (!o)
        return NULL;
    if (e->expires_ms > 0) {
        int64_t left = e->expires_ms - now_ms;
        json_object_set_new(o, "remaining", json_integer(left > 0 ? (left + 999) / 1000 : 0));
    } else {
        json_object_set_new(o, "remaining", json_null());
    }
    json_object_set_new(
        o, "added_by", json_string(log_escape(e->added_by, strlen(e->added_by), esc, sizeof(esc))));
    json_int_t uid = author_uid(e->added_by);
    json_object_set_new(o, "uid", uid >= 0 ? json_integer(uid) : json_null());
    /* Admin text as given; the socket may be spoken to without the CLI, so bytes that are not
     * UTF-8 are escaped to keep the JSON valid. */
    json_t *why = e->reason[0] ? json_string(e->reason) : json_null();
    if (!why)
        why = json_string(log_escape(e->reason, strlen(e->reason), esc, sizeof(esc)));
    json_object_set_new(o, "reason", why);
    return o;
}

/* The [whitelist] entry of exactly p, or NULL. */
static const struct policy_wl_entry *config_entry(const struct policy *pol,
                                                  const struct addr_prefix *p)
{
    unsigned n;
    const struct policy_wl_entry *all = policy_protect_entries(pol, &n);
    for (unsigned i = 0; i < n; i++)
        if (all[i].source == POLICY_SRC_CONFIG && addr_prefix_equal(&all[i].prefix, p))
            return &all[i];
    return NULL;
}

struct allow_lifts {
    const struct ctl_cmd_ops *ops;
    json_t *lifted;
};

static int allow_lift(void *data, const struct verdict *v)
{
    struct allow_lifts *l = data;
    char ps[ADDR_STRLEN];
    /* An unban the kernel cannot apply (the element already timed out) is still an unban. */
    l->ops->apply(l->ops->data, v);
    json_array_append_new(l->lifted, json_string(addr_prefix_format(&v->prefix, ps, sizeof(ps))));
    return 0;
}

static json_t *allow_remove(const struct ctl_cmd_ops *ops, json_t *req, const struct addr_prefix *p,
                            const struct ctl_peer *peer)
{
    char ps[ADDR_STRLEN], cs[ADDR_STRLEN];
    addr_prefix_format(p, ps, sizeof(ps));
    if (json_object_get(req, "duration") || json_object_get(req, "note"))
        return ctl_error(CTL_CODE_USAGE, "\"remove\" takes neither \"duration\" nor \"note\"");
    json_t *bad;
    if (!peer->privileged && (bad = refuse_wide(ops, "remove from the allowlist", p)))
        return bad;
    if (!allowlist_find(ops->allow, p)) {
        if (config_entry(ops->policy, p))
            return refusal("config",
                           ctl_error(CTL_CODE_FAILED,
                                     "%s comes from the configuration file ([whitelist] cidr), "
                                     "not from pbxguard allow: remove it there, then run "
                                     "pbxguard reload",
                                     ps));
        const struct store_allow *in = allowlist_holding(ops->allow, &p->addr);
        if (in && in->prefix.len < p->len) {
            addr_prefix_format(&in->prefix, cs, sizeof(cs));
            json_t *r = ctl_error(CTL_CODE_FAILED,
                                  "%s is not on the allowlist itself; it lies inside the allowed "
                                  "%s: pbxguard allow --remove %s",
                                  ps, cs, cs);
            json_object_set_new(r, "covered_by", json_string(cs));
            return r;
        }
        return ctl_error(CTL_CODE_FAILED, "%s is not on the allowlist", ps);
    }
    int err = store_allow_delete(ops->store, p);
    if (err < 0 && err != -ENOENT)
        return errno_reply("cannot remove it from the database", err);
    allowlist_remove(ops->allow, p);
    ops->allow_changed(ops->data, p, false);
    json_t *r = json_pack("{s:b, s:s}", "ok", 1, "removed", ps);
    /* Something else may still protect it: say so, or the admin expects bans that never come. */
    const struct policy_wl_entry *w = policy_whitelist_overlap(ops->policy, p);
    if (w)
        json_object_set_new(r, "still_protected",
                            json_pack("{s:s, s:s, s:s}", "prefix",
                                      addr_prefix_format(&w->prefix, cs, sizeof(cs)), "reason",
                                      w->label, "source", policy_source_name(w->source)));
    return r;
}

static json_t *cmd_allow(const struct ctl_cmd_ops *ops, json_t *req, const struct ctl_peer *peer)
{
    if (!ops->allow)
        return ctl_error(CTL_CODE_FAILED, "the runtime allowlist is not available here");
    struct addr_prefix p;
    json_t *bad = get_prefix(req, &p);
    if (bad)
        return bad;
    if (json_is_true(json_object_get(req, "remove")))
        return allow_remove(ops, req, &p, peer);

    json_t *dur = json_object_get(req, "duration");
    json_t *note = json_object_get(req, "note");
    if (dur && (!json_is_integer(dur) || json_integer_value(dur) <= 0 ||
                json_integer_value(dur) > CTL_MANUAL_BAN_MAX_S))
        return ctl_error(CTL_CODE_USAGE,
                         "\"duration\" must be a positive number of seconds, at most 100 years "
                         "(or none: until removed)");
    if (note && (!json_is_string(note) || json_string_length(note) > CTL_NOTE_MAX))
        return ctl_error(CTL_CODE_USAGE, "\"note\" must be a string of at most %d bytes",
                         CTL_NOTE_MAX);

    /* An allow exempts a range from every automatic ban: nobody may exempt more than the
     * widest ban could ever block, and a member of control_group no more than it may ban. */
    char ps[ADDR_STRLEN], cs[ADDR_STRLEN];
    addr_prefix_format(&p, ps, sizeof(ps));
    bool v4 = p.addr.family == AF_INET;
    unsigned widest = v4 ? ops->cfg->protect.min_prefix4 : ops->cfg->protect.min_prefix6;
    if (p.len < widest)
        return refusal("too-wide",
                       ctl_error(CTL_CODE_FAILED,
                                 "%s is wider than /%u, the widest ban ([protect] min_prefix%c): "
                                 "nobody may allow a prefix that wide at run time; if you mean "
                                 "it, put it in [whitelist] cidr",
                                 ps, widest, v4 ? '4' : '6'));
    if (!peer->privileged && (bad = refuse_wide(ops, "allow", &p)))
        return bad;

    struct store_allow e = {.prefix = p, .added_ms = ops->now_ms};
    if (dur)
        e.expires_ms = ops->now_ms + json_integer_value(dur) * 1000;
    who(peer, e.added_by, sizeof(e.added_by));
    if (json_is_string(note))
        snprintf(e.reason, sizeof(e.reason), "%s", json_string_value(note));

    const struct store_allow *had = allowlist_find(ops->allow, &p);
    struct store_allow old;
    if (had)
        old = *had;
    bool replaced = false;
    int err = allowlist_add(ops->allow, &e, &replaced);
    if (err == -ENOSPC)
        return refusal("full", ctl_error(CTL_CODE_FAILED,
                                         "the runtime allowlist is full (%u entries): remove "
                                         "those no longer needed (pbxguard allowlist, pbxguard "
                                         "allow --remove ADDR), or put wide ranges in "
                                         "[whitelist] cidr",
                                         allowlist_max(ops->allow)));
    if (err < 0)
        return errno_reply("allow failed", err);
    err = store_allow_put(ops->store, &e);
    if (err == 0 && !replaced)
        err = ops->allow_changed(ops->data, &p, true);
    if (err < 0) {
        /* Nothing half done: the list and its row stay as they were. */
        if (replaced) {
            allowlist_add(ops->allow, &old, NULL);
            store_allow_put(ops->store, &old);
        } else {
            allowlist_remove(ops->allow, &p);
            store_allow_delete(ops->store, &p);
        }
        return errno_reply("allow failed", err);
    }

    struct allow_lifts l = {.ops = ops, .lifted = json_array()};
    struct addr_prefix kept;
    bool has_kept = false;
    char by[STORE_WHO_MAX];
    who(peer, by, sizeof(by));
    err = judge_allow(ops->judge, &p, by, ops->now_ms, allow_lift, &l, &kept, &has_kept);
    json_t *r = json_pack("{s:b, s:o, s:b, s:o}", "ok", 1, "allow", allow_json(&e, ops->now_ms),
                          "replaced", replaced, "lifted", l.lifted);
    if (err < 0)
        json_object_set_new(r, "lift_error", json_string(store_strerror(err)));
    if (has_kept) {
        addr_prefix_format(&kept, cs, sizeof(cs));
        json_object_set_new(
            r, "still_banned",
            json_sprintf("%s lies inside the manual ban of %s, which stays (an allow lifts the "
                         "bans it covers, not a range banned on purpose): pbxguard unban %s",
                         ps, cs, cs));
    }
    if (ops->fleet && json_array_size(l.lifted))
        json_object_set_new(r, "fleet", json_string(ops->fleet));
    return r;
}

static json_t *cmd_allowlist(const struct ctl_cmd_ops *ops, json_t *req,
                             const struct ctl_peer *peer)
{
    if (!ops->allow)
        return ctl_error(CTL_CODE_FAILED, "the runtime allowlist is not available here");
    json_t *entries = json_array();
    unsigned n;
    const struct policy_wl_entry *cfg = policy_protect_entries(ops->policy, &n);
    char ps[ADDR_STRLEN];
    for (unsigned i = 0; i < n; i++)
        if (cfg[i].source == POLICY_SRC_CONFIG)
            json_array_append_new(entries,
                                  json_pack("{s:s, s:s}", "prefix",
                                            addr_prefix_format(&cfg[i].prefix, ps, sizeof(ps)),
                                            "source", "config"));
    const struct store_allow *al = allowlist_entries(ops->allow, &n);
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(entries, allow_json(&al[i], ops->now_ms));
    return json_pack("{s:b, s:o, s:i, s:i}", "ok", 1, "entries", entries, "runtime", (int)n, "max",
                     (int)allowlist_max(ops->allow));
}

/* --- reload --- */

static json_t *cmd_reload(const struct ctl_cmd_ops *ops, json_t *req, const struct ctl_peer *peer)
{
    if (!ops->reload)
        return ctl_error(CTL_CODE_FAILED, "reload is not available here; send SIGHUP");
    json_t *errors = json_array();
    int err = ops->reload(ops->data, errors);
    if (err < 0) {
        size_t n = json_array_size(errors);
        json_t *r = n ? ctl_error(CTL_CODE_FAILED,
                                  "configuration not reloaded (%zu error%s); "
                                  "the previous one keeps running",
                                  n, n == 1 ? "" : "s")
                      : ctl_error(CTL_CODE_FAILED,
                                  "configuration not reloaded: %s; the "
                                  "previous one keeps running",
                                  strerror(-err));
        json_object_set_new(r, "errors", errors);
        return r;
    }
    json_decref(errors);
    return ctl_ok();
}

/* --- watch --- */

/* The reply that turns the connection into a stream of live view records (ctl.c): the
 * records come from the core, one JSON object per line, until the client closes. */
static json_t *cmd_watch(const struct ctl_cmd_ops *ops, json_t *req, const struct ctl_peer *peer)
{
    return json_pack("{s:b, s:b, s:i}", "ok", 1, "watching", 1, "buffer", CTL_WATCH_BUF_MAX);
}

typedef json_t *(*cmd_fn)(const struct ctl_cmd_ops *ops, json_t *req, const struct ctl_peer *peer);

static const struct {
    const char *name;
    cmd_fn fn;
    bool paged;     /* its reply is a page of a listing (the server queues it behind others) */
    bool stream;    /* its reply opens a stream (the connection then only takes records) */
    bool root_only; /* for root and the daemon's own user alone */
} commands[] = {
    {"status", cmd_status, false, false, false}, {"ban", cmd_ban, false, false, false},
    {"unban", cmd_unban, false, false, false},   {"list", cmd_list, true, false, false},
    {"show", cmd_show, false, false, false},     {"reload", cmd_reload, false, false, true},
    {"allow", cmd_allow, false, false, false},   {"allowlist", cmd_allowlist, true, false, false},
    {"watch", cmd_watch, false, true, false},
};

static int find(const char *cmd)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return (int)i;
    return -1;
}

bool ctl_cmd_paged(const char *cmd)
{
    int i = find(cmd);
    return i >= 0 && commands[i].paged;
}

bool ctl_cmd_stream(const char *cmd)
{
    int i = find(cmd);
    return i >= 0 && commands[i].stream;
}

json_t *ctl_cmd_dispatch(const struct ctl_cmd_ops *ops, const char *cmd, json_t *req,
                         const struct ctl_peer *peer)
{
    int i = find(cmd);
    if (i < 0) {
        char esc[64];
        return ctl_error(CTL_CODE_USAGE, "unknown command \"%s\"",
                         log_escape(cmd, strlen(cmd), esc, sizeof(esc)));
    }
    if (commands[i].root_only && !peer->privileged)
        return refusal("root-only",
                       ctl_error(CTL_CODE_FAILED,
                                 "permission denied: %s is for root (members of control_group may "
                                 "read, ban and unban); as root: pbxguard %s, or systemctl reload "
                                 "pbxguard",
                                 cmd, cmd));
    return commands[i].fn(ops, req, peer);
}
