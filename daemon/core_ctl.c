/* The control commands (docs/control-protocol.md), answered from the core's state: the socket
 * (ctl.c) and the commands (ctl_cmd.c) get from here what only the core knows. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "ami_session.h"
#include "core_internal.h"
#include "ctl.h"
#include "ctl_cmd.h"
#include "log.h"
#include "judge.h"
#include "nftset.h"
#include "store.h"

static void apply(void *data, const struct verdict *v)
{
    core_apply_verdict(data, v);
}

static void status(void *data, json_t *reply)
{
    struct core *c = data;
    json_t *ami = json_array();
    for (unsigned i = 0; i < c->nami; i++) {
        const struct cfg_ami *a = &c->cfg->ami[i];
        int64_t last = ami_session_last_event_ms(c->ami[i]);
        json_array_append_new(ami, json_pack("{s:s, s:s, s:i, s:s, s:o}", "name",
                                             ami_session_name(c->ami[i]), "host", a->host, "port",
                                             (int)a->port, "state",
                                             ami_session_state_name(c->ami[i]), "last_event",
                                             last > 0 ? json_integer(last / 1000) : json_null()));
    }
    json_object_set_new(reply, "ami", ami);
    /* Counted since the daemon started (the store keeps the history for reports). */
    json_object_set_new(reply, "events", json_integer((json_int_t)c->stats.events));
    json_object_set_new(reply, "failures", json_integer((json_int_t)c->stats.failures));
    json_object_set_new(reply, "bans", json_integer((json_int_t)c->stats.bans));
    bool ok = c->nft && c->nft_healthy && !c->nft_failing;
    json_object_set_new(reply, "nftables",
                        json_pack("{s:b, s:s, s:I, s:I}", "ok", ok, "detail",
                                  !c->nft ? "not open"
                                  : ok    ? nftset_mode(c->nft)
                                          : "failing (see the log)",
                                  "errors", (json_int_t)c->stats.nft_errors, "repairs",
                                  (json_int_t)c->stats.nft_repairs));
    /* "Today" from the database, so it survives restarts: since local midnight. */
    time_t now = (time_t)(loop_wall_ms(c->loop) / 1000);
    struct tm tm;
    localtime_r(&now, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    uint64_t failures_today = 0, bans_today = 0;
    if (store_counts_since(c->store, (int64_t)mktime(&tm) * 1000, &failures_today, &bans_today) ==
        0) {
        json_object_set_new(reply, "failures_today", json_integer((json_int_t)failures_today));
        json_object_set_new(reply, "bans_today", json_integer((json_int_t)bans_today));
    }
    if (c->db_failing)
        json_object_set_new(reply, "store_error", json_string("database failing (see the log)"));
}

static void collect_error(void *data, const char *message)
{
    json_array_append_new(data, json_string(message));
}

/* Checks the file as the daemon's reload will read it, so errors reach the caller; a valid file
 * is then applied by the daemon's own reload path (SIGHUP, handled in the next turn). */
static int reload(void *data, json_t *errors)
{
    struct core *c = data;
    struct config next;
    int r = config_load(c->cfg->path, &next, collect_error, errors);
    if (r == 0) {
        if (strcmp(next.general.database, c->cfg->general.database) != 0)
            collect_error(errors, "[general] database changed, which needs a restart");
        else if (strcmp(next.general.lock_file, c->cfg->general.lock_file) != 0)
            collect_error(errors, "[general] lock_file changed, which needs a restart");
        else if (raise(SIGHUP) != 0)
            r = -errno;
    }
    config_free(&next);
    if (json_array_size(errors))
        return r < 0 ? r : -EINVAL;
    return r;
}

/* A manual ban the kernel refused (an interval set will not hold a prefix that overlaps another
 * banned prefix) must not stay recorded as active while nothing enforces it: lift it again and
 * tell the caller why. */
static json_t *undo_refused_ban(struct core *c, json_t *req, json_t *reply)
{
    struct addr_prefix p;
    const char *addr = json_string_value(json_object_get(req, "addr"));
    if (!addr || addr_prefix_parse(addr, false, &p) < 0)
        return reply;
    for (unsigned i = 0; i < c->nban_refused; i++) {
        if (!addr_prefix_equal(&c->ban_refused[i].prefix, &p))
            continue;
        int err = c->ban_refused[i].err;
        struct verdict v[4];
        unsigned n = 0;
        judge_unban(c->judge, &p, "pbxguardd:refused-by-kernel", loop_wall_ms(c->loop), v, 4, &n);
        core_flush(c);
        char ps[ADDR_STRLEN];
        json_decref(reply);
        return ctl_error(CTL_CODE_FAILED, "the kernel refused the ban of %s: %s%s",
                         addr_prefix_format(&p, ps, sizeof(ps)), nftset_strerror(err),
                         err == -ENOTEMPTY ? "; unban the other prefix first" : "");
    }
    return reply;
}

static json_t *handle(void *data, const char *cmd, json_t *req, const struct ctl_peer *peer)
{
    struct core *c = data;
    struct ctl_cmd_ops ops = {
        .cfg = c->cfg,
        .store = c->store,
        .judge = c->judge,
        .policy = c->policy,
        .started_ms = c->started_ms,
        .now_ms = loop_wall_ms(c->loop),
        .apply = apply,
        .status = status,
        .reload = reload,
        .data = c,
    };
    json_t *reply = ctl_cmd_dispatch(&ops, cmd, req, peer);
    /* A ban or unban is in the kernel and on disk before its reply leaves. */
    core_flush(c);
    if (strcmp(cmd, "ban") == 0 && json_is_true(json_object_get(reply, "ok")))
        reply = undo_refused_ban(c, req, reply);
    return reply;
}

int core_ctl_start(struct core *c)
{
    c->ctl = ctl_new(c->loop, &c->cfg->general, handle, c);
    if (!c->ctl) {
        int e = errno;
        log_err("control socket %s: %s", c->cfg->general.control_socket,
                e == EADDRINUSE ? "another pbxguardd is serving it" : strerror(e));
        return -e;
    }
    return 0;
}

void core_ctl_stop(struct core *c)
{
    ctl_free(c->ctl);
    c->ctl = NULL;
}
