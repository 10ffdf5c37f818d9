/* A small real daemon for the control tests until pbxguardd's core serves the socket: the
 * configuration, the store, the policy and judge, the nftables layer and the control socket,
 * wired as the core wires them, with the real command handlers (ctl_cmd_dispatch). No AMI.
 * Usage: ctl-core CONFIG. "ready" on stdout once serving; SIGTERM stops it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl_cmd.h"
#include "ctl.h"
#include "judge.h"
#include "loop.h"
#include "nftset.h"
#include "policy.h"
#include "store.h"

struct mini {
    const char *path;
    struct loop *loop;
    struct config cfg;
    struct store *store;
    struct policy *policy;
    struct judge *judge;
    struct nftset *nft;
    struct ctl *ctl;
    int64_t started_ms;
    unsigned bans_today;
};

static void apply(void *data, const struct verdict *v)
{
    struct mini *m = data;
    if (v->action == VERDICT_BAN) {
        nftset_queue_ban(m->nft, &v->prefix, (uint64_t)v->timeout_ms);
        m->bans_today++;
    } else if (v->action == VERDICT_UNBAN) {
        nftset_queue_unban(m->nft, &v->prefix);
    }
}

static void status(void *data, json_t *reply)
{
    struct mini *m = data;
    bool damaged = false;
    int r = nftset_check(m->nft, &damaged);
    json_object_set_new(reply, "nftables",
                        json_pack("{s:b, s:s}", "ok", r == 0 && !damaged, "detail",
                                  r < 0 ? nftset_strerror(r) : nftset_mode(m->nft)));
    json_object_set_new(reply, "bans", json_integer(m->bans_today));
}

static void collect_error(void *data, const char *message)
{
    json_array_append_new(data, json_string(message));
}

static int reload(void *data, json_t *errors)
{
    struct mini *m = data;
    struct config next;
    int r = config_load(m->path, &next, collect_error, errors);
    if (r != 0) {
        config_free(&next);
        return r < 0 ? r : -EINVAL;
    }
    struct policy *p = policy_new(&next.policy, &next.whitelist);
    if (!p) {
        r = -errno;
        config_free(&next);
        return r;
    }
    judge_set_policy(m->judge, p);
    policy_free(m->policy);
    m->policy = p;
    config_free(&m->cfg);
    m->cfg = next;
    return 0;
}

static json_t *handle(void *data, const char *cmd, json_t *req, const struct ctl_peer *peer)
{
    struct mini *m = data;
    struct ctl_cmd_ops ops = {
        .cfg = &m->cfg, .store = m->store, .judge = m->judge, .policy = m->policy,
        .started_ms = m->started_ms, .now_ms = loop_wall_ms(m->loop),
        .apply = apply, .status = status, .reload = reload, .data = m,
    };
    return ctl_cmd_dispatch(&ops, cmd, req, peer);
}

static void turn_end(struct loop *l, void *data)
{
    struct mini *m = data;
    int r = store_turn_commit(m->store);
    if (r < 0)
        fprintf(stderr, "ctl-core: commit: %s\n", store_strerror(r));
    if (nftset_queued(m->nft) && nftset_commit(m->nft, NULL, NULL) != 0)
        fprintf(stderr, "ctl-core: nftables commit failed\n");
}

static int restore(void *data, const struct verdict *v)
{
    apply(data, v);
    return 0;
}

static void on_term(struct loop *l, void *data)
{
    loop_stop(l);
}

static int fail(const char *what, int err)
{
    printf("error: %s: %s\n", what, strerror(err < 0 ? -err : err));
    return 1;
}

int main(int argc, char **argv)
{
    struct mini m = {0};
    enum nftset_setup_action act;
    int r;
    if (argc != 2) {
        fprintf(stderr, "usage: ctl-core CONFIG\n");
        return 2;
    }
    m.path = argv[1];
    if (config_load(m.path, &m.cfg, collect_error, json_array()) != 0)
        return fail("config", EINVAL);
    if (!(m.loop = loop_new()))
        return fail("loop", errno);
    m.started_ms = loop_clock_wall_ms();
    loop_signal_add(m.loop, SIGTERM, on_term, NULL);
    loop_signal_add(m.loop, SIGINT, on_term, NULL);
    if ((r = store_open(m.cfg.general.database, NULL, &m.store)) < 0)
        return fail("store", r);
    if (!(m.policy = policy_new(&m.cfg.policy, &m.cfg.whitelist)))
        return fail("policy", errno);
    if (!(m.judge = judge_new(m.store, m.policy)))
        return fail("judge", errno);
    if (!(m.nft = nftset_open(&m.cfg.nftables)))
        return fail("nftables", errno);
    if ((r = nftset_setup(m.nft, &act)) < 0)
        return fail("nftables setup", r);
    if ((r = judge_active_bans(m.judge, loop_clock_wall_ms(), restore, &m)) < 0)
        return fail("restore", r);
    if (nftset_commit(m.nft, NULL, NULL) != 0)
        return fail("restore commit", EIO);
    store_turn_commit(m.store);
    loop_turn_end_add(m.loop, turn_end, &m);
    if (!(m.ctl = ctl_new(m.loop, &m.cfg.general, handle, &m)))
        return fail("control socket", errno);
    printf("ready\n");
    fflush(stdout);
    loop_run(m.loop);
    ctl_free(m.ctl);
    store_turn_commit(m.store);
    judge_free(m.judge);
    policy_free(m.policy);
    store_close(m.store);
    nftset_free(m.nft);
    config_free(&m.cfg);
    loop_free(m.loop);
    return 0;
}
