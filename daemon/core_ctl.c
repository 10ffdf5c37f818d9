/* The control commands (docs/control-protocol.md), answered from the core's state: the socket
 * (ctl.c) and the commands (ctl_cmd.c) get from here what only the core knows, through the
 * narrow interface of core_ctl.h. */
#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ami_session.h"
#include "cluster.h"
#include "crowdsec.h"
#include "core_ctl.h"
#include "ctl.h"
#include "ctl_cmd.h"
#include "log.h"
#include "seclog.h"
#include "store.h"

/* Failures and bans since local midnight, so a status costs the same all day however busy the
 * day is: bans counted once, then brought up to date with what came since the last status;
 * failures from the store's per-hour counts (from the start of midnight's hour). */
struct today {
    bool valid;
    int64_t midnight_ms; /* the day counted */
    int64_t upto_ms;     /* counted up to here, not including it */
    uint64_t failures, bans;
};

struct core_ctl {
    struct core *core;
    struct ctl *ctl;
    struct today today;
    uint64_t watch_dropped; /* last seen, to log each drop once */
};

static int count_today(struct core_ctl *cc, struct store *store, int64_t now_ms)
{
    time_t now = (time_t)(now_ms / 1000);
    struct tm tm;
    localtime_r(&now, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    int64_t midnight = (int64_t)mktime(&tm) * 1000;
    struct today *t = &cc->today;
    uint64_t f = 0, b = 0;
    /* A new day, or a wall clock set back: count the day afresh. */
    if (!t->valid || t->midnight_ms != midnight || now_ms < t->upto_ms) {
        t->valid = false;
        t->midnight_ms = t->upto_ms = midnight;
        t->failures = t->bans = 0;
    }
    int r = store_bans_between(store, t->upto_ms, now_ms, &b);
    if (r == 0)
        r = store_failures_since(store, midnight, &f);
    if (r < 0)
        return r;
    t->failures = f;
    t->bans += b;
    t->upto_ms = now_ms;
    t->valid = true;
    return 0;
}

static int allow_changed(void *data, const struct addr_prefix *prefix, bool added)
{
    struct core_ctl *cc = data;
    return core_allow_changed(cc->core, prefix, added);
}

static int apply(void *data, const struct verdict *v)
{
    struct core_ctl *cc = data;
    return core_enforce(cc->core, v);
}

/* What a session learned from its Asterisk: {"state", "entries", "refreshed", ...}, or
 * {"state": "off"}. */
static json_t *trust_status(const struct ami_session *s)
{
    struct ami_learn_status st;
    if (!ami_session_trust_status(s, &st))
        return json_pack("{s:s}", "state", "off");
    return json_pack("{s:s, s:i, s:o, s:i, s:i, s:b}", "state", ami_learn_state_name(st.state),
                     "entries", (int)st.entries, "refreshed",
                     st.refreshed_ms ? json_integer(st.refreshed_ms / 1000) : json_null(),
                     "unresolved", (int)st.unresolved, "ignored", (int)st.ignored, "reloads",
                     st.reloads_followed);
}

/* The fleet: {"node", "state", "host", "port", "primary", "cursor", "lag", "outbox",
 * "published", "received", "refused", "reconnects", "last_error", ...}. */
static json_t *cluster_status_json(const struct cluster *cl)
{
    struct cluster_status s;
    cluster_get_status(cl, &s);
    json_t *o = json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "node", s.node,
                          "state", cluster_state_name(s.state), "primary", s.primary, "cursor",
                          (json_int_t)s.cursor, "top", (json_int_t)s.known_top, "lag",
                          (json_int_t)(s.known_top - s.cursor), "outbox", (json_int_t)s.outbox,
                          "published", (json_int_t)s.published, "received", (json_int_t)s.received,
                          "refused", (json_int_t)s.refused, "reconnects", (json_int_t)s.reconnects);
    if (!o)
        return json_null();
    char esc[4 * CFG_HOST_MAX];
    json_object_set_new(o, "host",
                        s.host[0]
                            ? json_string(log_escape(s.host, strlen(s.host), esc, sizeof(esc)))
                            : json_null());
    json_object_set_new(o, "hostaddr", s.hostaddr[0] ? json_string(s.hostaddr) : json_null());
    json_object_set_new(o, "port", s.port[0] ? json_string(s.port) : json_null());
    json_object_set_new(o, "connected",
                        s.connected_ms ? json_integer(s.connected_ms / 1000) : json_null());
    json_object_set_new(o, "last_error", s.last_error[0] ? json_string(s.last_error) : json_null());
    json_object_set_new(o, "last_error_time",
                        s.last_error_ms ? json_integer(s.last_error_ms / 1000) : json_null());
    return o;
}

/* CrowdSec: {"watcher", "bouncer", "last_poll", "last_push", "outbox", "decisions", "applied",
 * "refused", "ignored", "deleted", "ours", "alerts_sent", "polls", "poll_errors",
 * "push_errors", "last_error"}. */
static json_t *crowdsec_status_json(struct crowdsec *cs, const struct cfg_crowdsec *cfg)
{
    struct crowdsec_status s;
    crowdsec_get_status(cs, &s);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                          "lapi", cfg->lapi_url, "watcher", s.watcher, "bouncer", s.bouncer,
                          "outbox", (json_int_t)s.outbox, "decisions", (json_int_t)s.decisions,
                          "applied", (json_int_t)s.applied, "refused", (json_int_t)s.refused,
                          "ignored", (json_int_t)s.ignored, "deleted", (json_int_t)s.deleted,
                          "ours", (json_int_t)s.ours, "alerts_sent", (json_int_t)s.alerts_sent,
                          "polls", (json_int_t)s.polls, "poll_errors", (json_int_t)s.poll_errors,
                          "push_errors", (json_int_t)s.push_errors);
    if (!o)
        return json_null();
    json_object_set_new(o, "last_poll",
                        s.last_poll_ms ? json_integer(s.last_poll_ms / 1000) : json_null());
    json_object_set_new(o, "last_push",
                        s.last_push_ms ? json_integer(s.last_push_ms / 1000) : json_null());
    json_object_set_new(o, "last_error", s.last_error[0] ? json_string(s.last_error) : json_null());
    return o;
}

static const char *fleet_state(const struct core_health *h)
{
    if (!h->cluster)
        return NULL;
    struct cluster_status s;
    cluster_get_status(h->cluster, &s);
    return s.state == CLUSTER_READY || s.state == CLUSTER_SETUP ? "connected" : "disconnected";
}

static json_t *time_or_null(int64_t ms)
{
    return ms > 0 ? json_integer(ms / 1000) : json_null();
}

/* One security log source, for status: where it stands, how far behind, what it refused. */
static json_t *seclog_json(const struct seclog *l, int64_t now_ms)
{
    struct seclog_status st;
    seclog_get_status(l, &st);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "name", st.name, "path", st.path,
                  "mode", st.backfill ? "backfill" : "primary", "state", st.state, "reading",
                  st.reading, "offset", (json_int_t)st.offset, "size", (json_int_t)st.size,
                  "behind", (json_int_t)(st.size > st.offset ? st.size - st.offset : 0));
    if (!o)
        return NULL;
    json_object_set_new(o, "line", time_or_null(st.line_ms));
    /* How far behind the writer it is: none when everything written has been read (the last
     * line may be old: a quiet log is not a late one). */
    json_int_t lag = 0;
    if (st.size > st.offset && st.line_ms > 0 && st.line_ms <= now_ms)
        lag = (now_ms - st.line_ms) / 1000;
    json_object_set_new(o, "lag", json_integer(lag));
    json_object_set_new(o, "last_event", time_or_null(st.last_event_ms));
    if (st.err)
        json_object_set_new(o, "error", json_string(strerror(st.err)));
    const struct seclog_stats *s = &st.stats;
    json_object_set_new(o, "lines", json_integer((json_int_t)s->lines));
    json_object_set_new(o, "events", json_integer((json_int_t)s->events));
    json_object_set_new(o, "backfilled", json_integer((json_int_t)s->backfilled));
    json_object_set_new(o, "covered_by_ami", json_integer((json_int_t)s->covered));
    json_object_set_new(o, "duplicates", json_integer((json_int_t)s->duplicates));
    json_object_set_new(o, "injected", json_integer((json_int_t)s->injected));
    json_object_set_new(o, "malformed", json_integer((json_int_t)s->malformed));
    json_t *why = json_object();
    for (int r = 1; r < SECLOG_BAD_COUNT; r++)
        if (s->by_reason[r])
            json_object_set_new(why, seclog_bad_name((enum seclog_bad)r),
                                json_integer((json_int_t)s->by_reason[r]));
    json_object_set_new(o, "malformed_by_reason", why);
    json_object_set_new(o, "rotations", json_integer((json_int_t)st.rotations));
    json_object_set_new(o, "truncations", json_integer((json_int_t)st.truncations));
    json_object_set_new(o, "longest_slice_us", json_integer((json_int_t)s->longest_slice_us));
    json_object_set_new(o, "wal_pauses", json_integer((json_int_t)s->wal_pauses));
    json_object_set_new(o, "wal_paused_ms", json_integer((json_int_t)s->wal_paused_ms));
    return o;
}

static void status(void *data, json_t *reply)
{
    struct core_ctl *cc = data;
    struct core_view view;
    struct core_health h;
    core_view(cc->core, &view);
    core_health(cc->core, &h);

    json_t *ami = json_array();
    for (unsigned i = 0; i < h.nami; i++) {
        const struct cfg_ami *a = &view.cfg->ami[i];
        const struct ami_session *s = core_ami_session(cc->core, i);
        int64_t last = ami_session_last_event_ms(s);
        json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:o}", "name", ami_session_name(s), "host",
                              a->host, "port", (int)a->port, "state", ami_session_state_name(s),
                              "last_event", last > 0 ? json_integer(last / 1000) : json_null());
        json_object_set_new(o, "trust", trust_status(s));
        json_array_append_new(ami, o);
    }
    json_object_set_new(reply, "ami", ami);
    json_t *logs = json_array();
    for (unsigned i = 0; i < h.nseclog; i++)
        json_array_append_new(logs, seclog_json(core_seclog(cc->core, i), view.now_ms));
    json_object_set_new(reply, "seclog", logs);
    json_object_set_new(reply, "backfilled", json_integer((json_int_t)h.backfilled));
    /* Counted since the daemon started (the store keeps the history for reports). */
    json_object_set_new(reply, "events", json_integer((json_int_t)h.events));
    json_object_set_new(reply, "failures", json_integer((json_int_t)h.failures));
    json_object_set_new(reply, "bans", json_integer((json_int_t)h.bans));
    char foreign[CFG_NAME_MAX + 80];
    snprintf(foreign, sizeof(foreign),
             "table inet %s is not pbxguard's: bans are not enforced (see the log)",
             view.cfg->nftables.table);
    json_object_set_new(reply, "nftables",
                        json_pack("{s:b, s:s, s:I, s:I}", "ok", h.nft_ok, "detail",
                                  !h.nft_open     ? "not open"
                                  : h.nft_ok      ? h.nft_mode
                                  : h.nft_foreign ? foreign
                                                  : "failing (see the log)",
                                  "errors", (json_int_t)h.nft_errors, "repairs",
                                  (json_int_t)h.nft_repairs));
    /* How long the loop was ever deaf: a stall shows here (and in the loop.* gauges). */
    json_object_set_new(
        reply, "loop",
        json_pack("{s:I, s:f, s:i, s:I, s:f, s:f}", "turns", (json_int_t)h.loop.turns, "longest_ms",
                  h.loop.max_us / 1000.0, "window_s", (int)(h.loop.window_ms / 1000),
                  "window_turns", (json_int_t)h.loop.window_turns, "max_ms",
                  h.loop.window_max_us / 1000.0, "p99_ms", h.loop.window_p99_us / 1000.0));
    if (h.restoring)
        json_object_set_new(reply, "restoring",
                            json_pack("{s:I}", "installed", (json_int_t)h.restored));
    if (h.last_restore.done)
        json_object_set_new(reply, "last_restore",
                            json_pack("{s:s, s:I, s:I, s:i, s:f, s:f}", "why",
                                      h.last_restore.repair ? "repair" : "start", "bans",
                                      (json_int_t)h.last_restore.bans, "ms",
                                      (json_int_t)h.last_restore.ms, "slices",
                                      (int)h.last_restore.slices, "longest_slice_ms",
                                      h.last_restore.longest_slice_us / 1000.0, "longest_turn_ms",
                                      h.last_restore.longest_turn_us / 1000.0));
    /* "Today" from the database, so it survives restarts: since local midnight. */
    if (count_today(cc, view.store, view.now_ms) == 0) {
        json_object_set_new(reply, "failures_today", json_integer((json_int_t)cc->today.failures));
        json_object_set_new(reply, "bans_today", json_integer((json_int_t)cc->today.bans));
    }
    if (h.db_failing)
        json_object_set_new(reply, "store_error", json_string("database failing (see the log)"));
    if (h.cluster)
        json_object_set_new(reply, "cluster", cluster_status_json(h.cluster));
    if (h.crowdsec)
        json_object_set_new(reply, "crowdsec",
                            crowdsec_status_json(h.crowdsec, &view.cfg->crowdsec));
    struct ctl_watch_stats ws;
    ctl_watch_stats(cc->ctl, &ws);
    json_object_set_new(reply, "watch",
                        json_pack("{s:i, s:I, s:I}", "watchers", (int)ws.watchers, "dropped",
                                  (json_int_t)ws.dropped, "lines", (json_int_t)ws.lines));
}

static void collect_error(void *data, const char *message)
{
    json_array_append_new(data, json_string(message));
}

static int reload(void *data, json_t *errors)
{
    struct core_ctl *cc = data;
    log_debug("control: reloading the configuration");
    return core_reload_request(cc->core, collect_error, errors);
}

static json_t *handle(void *data, const char *cmd, json_t *req, const struct ctl_peer *peer)
{
    struct core_ctl *cc = data;
    struct core_view view;
    struct core_health h;
    core_view(cc->core, &view);
    core_health(cc->core, &h);
    struct ctl_cmd_ops ops = {
        .cfg = view.cfg,
        .store = view.store,
        .judge = view.judge,
        .policy = view.policy,
        .started_ms = view.started_ms,
        .now_ms = view.now_ms,
        .apply = apply,
        .status = status,
        .reload = reload,
        .fleet = fleet_state(&h),
        .allow = view.allow,
        .allow_changed = allow_changed,
        .data = cc,
    };
    json_t *reply = ctl_cmd_dispatch(&ops, cmd, req, peer);
    /* Whatever the command wrote is on disk before its reply leaves. */
    core_flush(cc->core);
    return reply;
}

/* Whether the process's group or one of its supplementary groups is the named group. */
static bool member_of(const char *name)
{
    struct group *gr = getgrnam(name);
    gid_t groups[256];
    if (!gr)
        return false;
    if (getegid() == gr->gr_gid)
        return true;
    int n = getgroups(256, groups);
    for (int i = 0; i < n; i++)
        if (groups[i] == gr->gr_gid)
            return true;
    return false;
}

struct core_ctl *core_ctl_new(struct core *c, struct loop *l, const struct cfg_general *cfg)
{
    struct core_ctl *cc = calloc(1, sizeof(*cc));
    if (!cc) {
        log_err("control socket %s: %s", cfg->control_socket, strerror(errno));
        return NULL;
    }
    cc->core = c;
    cc->ctl = ctl_new(l, cfg, handle, cc);
    if (!cc->ctl) {
        int e = errno;
        /* A daemon that is not root may give its socket only to a group it is a member of. */
        if (e == EPERM && cfg->control_group[0] && !member_of(cfg->control_group))
            log_err("control socket %s: cannot give it to control_group %s: the daemon's user is "
                    "not a member of it (add SupplementaryGroups=%s to pbxguard.service)",
                    cfg->control_socket, cfg->control_group, cfg->control_group);
        else if (e == EPERM && cfg->control_group[0])
            log_err("control socket %s: cannot give it to control_group %s: chown(2) was refused "
                    "(a system call filter without @chown?)",
                    cfg->control_socket, cfg->control_group);
        else if (e == ENOENT && cfg->control_group[0] && !getgrnam(cfg->control_group))
            log_err("control socket %s: control_group %s: no such group", cfg->control_socket,
                    cfg->control_group);
        else
            log_err("control socket %s: %s", cfg->control_socket,
                    e == EADDRINUSE ? "another pbxguardd is serving it" : strerror(e));
        free(cc);
        errno = e;
        return NULL;
    }
    ctl_set_paged(cc->ctl, ctl_cmd_paged);
    ctl_set_stream(cc->ctl, ctl_cmd_stream);
    return cc;
}

bool core_ctl_watching(const struct core_ctl *cc)
{
    if (!cc)
        return false;
    struct ctl_watch_stats ws;
    ctl_watch_stats(cc->ctl, &ws);
    return ws.watchers > 0;
}

void core_ctl_watch(struct core_ctl *cc, json_t *record)
{
    if (!record)
        return;
    char *line = json_dumps(record, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(record);
    if (!line)
        return;
    ctl_broadcast(cc->ctl, line, strlen(line));
    free(line);
    struct ctl_watch_stats ws;
    ctl_watch_stats(cc->ctl, &ws);
    if (ws.dropped > cc->watch_dropped) {
        log_notice("control: %llu watcher%s fell more than %d KiB behind and %s dropped (%llu "
                   "since the start); the loop never waits for one",
                   (unsigned long long)(ws.dropped - cc->watch_dropped),
                   ws.dropped - cc->watch_dropped == 1 ? "" : "s", CTL_WATCH_BUF_MAX / 1024,
                   ws.dropped - cc->watch_dropped == 1 ? "was" : "were",
                   (unsigned long long)ws.dropped);
        cc->watch_dropped = ws.dropped;
    }
}

void core_ctl_free(struct core_ctl *cc)
{
    if (!cc)
        return;
    ctl_free(cc->ctl);
    free(cc);
}
