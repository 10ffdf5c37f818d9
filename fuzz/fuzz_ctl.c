/* Fuzzes the control socket end to end with what a local client may send: the real server
 * (ctl.c: framing, size cap, one reply per request) on the real loop, on a unix socket in a
 * temporary directory, answering with the real commands (ctl_cmd.c: argument validation) over a
 * real store (SQLite in that directory), judge and policy. Only what the core would do is faked:
 * applying a verdict records and checks it, status and reload answer without a core.
 *
 * Every input starts from the same database (a template made once: failures with hostile
 * service and account bytes, threshold, manual and lifted bans), so a crash replays alone. An
 * input that wrote nothing leaves the database as it was, and the next one reuses it as it is
 * (opening a store costs more than most conversations).
 *
 * Input: byte 0 bits 0-6 = the chunk size of the client's writes (0: as much as the socket
 * takes; 1-15: that many bytes; 16-127: 64 bytes per step above 15), bit 7 = the peer is a
 * control_group member (uid 1000) rather than root; the rest is the byte stream the client sends
 * before it half-closes and reads every reply.
 *
 * Checks: one reply per complete request line, in order, each one line of JSON: an object with
 * a boolean "ok", and on failure an "error" string and a "code" of 1 or 2; a request line over
 * CTL_REQUEST_MAX gets one error reply and the connection is closed; show's breakdown accounts
 * for every failure it counts; verdicts carry normalized prefixes and bounded timeouts. Aborts
 * on a violation. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "ctl_cmd.h"
#include "judge.h"
#include "loop.h"
#include "policy.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HANG_MS 20000

static struct {
    bool ready;
    char dir[64], conf[128], db[128];
    struct config cfg;
    struct policy *policy;
    struct loop *loop;
    struct ctl *ctl;
    struct loop_timer hang;
    char *template;
    size_t template_len;
    int64_t now_ms;

    /* the store every input starts from, and its WAL file as it was when opened */
    struct store *store;
    struct judge *judge;
    char wal[160];
    struct stat wal_open;

    /* per input */
    bool group_member;
    struct loop_io client;
    const uint8_t *in;
    size_t inlen, inoff, chunk;
    char *out;
    size_t outlen, outcap;
    unsigned verdicts;
} F;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_ctl: %s: %s\n", what, strerror(errno));
    abort();
}

static void unlink_db(const char *db)
{
    char p[160];
    unlink(db);
    snprintf(p, sizeof(p), "%s-wal", db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", db);
    unlink(p);
}

static void write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || write(fd, buf, len) != (ssize_t)len || close(fd) < 0)
        die(path);
}

static void close_store(void)
{
    judge_free(F.judge);
    store_close(F.store);
    F.judge = NULL;
    F.store = NULL;
}

/* True if nothing was committed since the store was opened: every commit appends to the WAL
 * (a checkpoint takes a thousand pages first), so its size and time tell. */
static bool store_untouched(void)
{
    struct stat st = {0};
    if (stat(F.wal, &st) < 0 && errno != ENOENT)
        return false;
    return st.st_size == F.wal_open.st_size && st.st_mtim.tv_sec == F.wal_open.st_mtim.tv_sec &&
           st.st_mtim.tv_nsec == F.wal_open.st_mtim.tv_nsec;
}

/* Opens the template's copy, unless the last input left it untouched. */
static void fresh_store(void)
{
    if (F.store && store_untouched())
        return;
    close_store();
    unlink_db(F.db);
    write_file(F.db, F.template, F.template_len, 0600);
    /* No map and a small cache: the store is opened again after every input that wrote. */
    struct store_options opt = {.mmap_mib = -1, .cache_kib = 1024};
    if (store_open(F.db, &opt, &F.store) < 0)
        die("store_open");
    F.judge = judge_new(F.store, F.policy);
    if (!F.judge)
        die("judge_new");
    memset(&F.wal_open, 0, sizeof(F.wal_open));
    if (stat(F.wal, &F.wal_open) < 0 && errno != ENOENT)
        die(F.wal);
}

static void cleanup(void)
{
    if (!F.ready)
        return;
    close_store();
    ctl_free(F.ctl);
    loop_free(F.loop);
    policy_free(F.policy);
    config_free(&F.cfg);
    unlink_db(F.db);
    unlink(F.conf);
    rmdir(F.dir);
    free(F.template);
    free(F.out);
    F.ready = false;
}

/* --- the sinks: what the core would do with a verdict --- */

/* The kernel's interval set refuses a prefix overlapping another banned prefix: the template's
 * manual ban of 198.51.100.0/24 stands for those, so the refusal path is taken too. */
static int kernel_result(const struct verdict *v)
{
    struct addr_prefix held;
    bool interval = v->prefix.addr.family == AF_INET ? v->prefix.len < 32
                                                     : v->prefix.len != 64 && v->prefix.len != 128;
    if (v->action != VERDICT_BAN || !interval ||
        addr_prefix_parse("198.51.100.0/24", false, &held) < 0 ||
        addr_prefix_equal(&held, &v->prefix))
        return 0;
    return addr_prefix_covers(&held, &v->prefix) || addr_prefix_covers(&v->prefix, &held)
               ? -ENOTEMPTY
               : 0;
}

static int apply(void *data, const struct verdict *v)
{
    struct addr_prefix norm;
    unsigned max = addr_max_len(&v->prefix.addr);
    if (v->prefix.addr.family != AF_INET && v->prefix.addr.family != AF_INET6)
        abort();
    if (v->prefix.len == 0 || v->prefix.len > max)
        abort();
    addr_prefix_of(&v->prefix.addr, v->prefix.len, &norm);
    if (!addr_prefix_equal(&norm, &v->prefix))
        abort();
    if (v->action == VERDICT_BAN) {
        if (v->reason != VERDICT_MANUAL || v->timeout_ms < 0 ||
            v->timeout_ms > CTL_MANUAL_BAN_MAX_S * 1000)
            abort();
    } else if (v->action != VERDICT_UNBAN) {
        abort();
    }
    F.verdicts++;
    return kernel_result(v);
}

static void status(void *data, json_t *reply)
{
    json_object_set_new(reply, "ami",
                        json_pack("[{s:s, s:s, s:i, s:s, s:n}]", "name", "ami:fuzz", "host",
                                  "127.0.0.1", "port", 5038, "state", "up", "last_event"));
}

static int reload(void *data, json_t *errors)
{
    return 0;
}

static json_t *handle(void *data, const char *cmd, json_t *req, const struct ctl_peer *peer)
{
    struct ctl_peer p = *peer;
    if (F.group_member) {
        p.uid = p.gid = 1000;
        p.privileged = false;
    }
    struct ctl_cmd_ops ops = {
        .cfg = &F.cfg,
        .store = F.store,
        .judge = F.judge,
        .policy = F.policy,
        .started_ms = F.now_ms - 3600 * 1000,
        .now_ms = F.now_ms,
        .apply = apply,
        .status = status,
        .reload = reload,
    };
    json_t *reply = ctl_cmd_dispatch(&ops, cmd, req, &p);
    /* As the core does: a command's changes are committed before its reply leaves. */
    store_turn_commit(F.store);
    return reply;
}

/* --- setup, once per process --- */

static void event(struct judge *j, const char *ip, enum sec_event_type type, const char *service,
                  const char *account, int64_t now_ms)
{
    struct sec_event ev = {.type = type, .received_ms = now_ms};
    struct verdict v;
    if (addr_parse(ip, strlen(ip), &ev.remote.addr) < 0)
        abort();
    snprintf(ev.service, sizeof(ev.service), "%s", service);
    snprintf(ev.account, sizeof(ev.account), "%s", account);
    snprintf(ev.source, sizeof(ev.source), "ami:fuzz");
    if (judge_event(j, &ev, now_ms, &v) < 0)
        abort();
}

/* The database every input starts from. */
static void make_template(void)
{
    struct store *s;
    if (store_open(F.db, NULL, &s) < 0)
        die("template store");
    struct judge *j = judge_new(s, F.policy);
    if (!j)
        die("judge");
    int64_t t = F.now_ms - 600 * 1000;
    for (int i = 0; i < 5; i++)
        event(j, "203.0.113.7", SEC_INVALID_PASSWORD, "SIP", "1001", t + i);
    for (int i = 0; i < 3; i++)
        event(j, "198.51.100.23", SEC_INVALID_ACCOUNT_ID, "\xff\x9bSIP", "\xc3\x28\x9b", t + i);
    event(j, "2001:db8:1:2::66", SEC_CHALLENGE_RESPONSE_FAILED, "PJSIP", "\x7f\x1b[2J", t);
    event(j, "192.0.2.9", SEC_INVALID_PASSWORD, "AMI", "admin", t); /* whitelisted */
    struct addr_prefix p;
    struct verdict v;
    if (addr_prefix_parse("198.51.100.0/24", false, &p) < 0 ||
        judge_manual_ban(j, &p, 3600 * 1000, false, "cli:uid=0", "ticket \x01\x9b 4711", t, &v) <
            0 ||
        addr_prefix_parse("2001:db8:1:2::/64", false, &p) < 0 ||
        judge_manual_ban(j, &p, 0, false, "cli:uid=0", NULL, t, &v) < 0 ||
        judge_unban(j, &p, "cli:uid=0", t + 1, &v, NULL) < 0 ||
        judge_manual_ban(j, &p, 60 * 1000, false, "cli:uid=0", NULL, t + 2, &v) < 0)
        abort();
    if (store_turn_commit(s) < 0)
        abort();
    judge_free(j);
    store_close(s);

    int fd = open(F.db, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die("template");
    F.template_len = (size_t)st.st_size;
    F.template = malloc(F.template_len);
    if (!F.template || read(fd, F.template, F.template_len) != (ssize_t)F.template_len)
        die("template read");
    close(fd);
}

static void on_hang(struct loop *l, void *data)
{
    fprintf(stderr, "fuzz_ctl: no end of the conversation within %d ms\n", HANG_MS);
    abort();
}

static void setup(void)
{
    snprintf(F.dir, sizeof(F.dir), "/tmp/pbxguard-fuzz-ctl-XXXXXX");
    if (!mkdtemp(F.dir))
        die("mkdtemp");
    snprintf(F.conf, sizeof(F.conf), "%s/pbxguard.conf", F.dir);
    snprintf(F.db, sizeof(F.db), "%s/pbxguard.db", F.dir);
    snprintf(F.wal, sizeof(F.wal), "%s-wal", F.db);
    char text[1024];
    int n = snprintf(text, sizeof(text),
                     "[general]\ndatabase = %s\ncontrol_socket = %s/control.sock\n"
                     "lock_file = %s/pbxguardd.lock\n"
                     "[ami:fuzz]\nhost = 127.0.0.1\nusername = u\nsecret = s\n"
                     "[whitelist]\ncidr = 192.0.2.0/24\n",
                     F.db, F.dir, F.dir);
    write_file(F.conf, text, (size_t)n, 0600);
    if (config_load(F.conf, &F.cfg, NULL, NULL) != 0)
        abort();
    F.policy = policy_new(&F.cfg.policy, &F.cfg.whitelist);
    F.loop = loop_new();
    if (!F.policy || !F.loop)
        die("policy, loop");
    F.now_ms = loop_clock_wall_ms();
    make_template();
    F.ctl = ctl_new(F.loop, &F.cfg.general, handle, NULL);
    if (!F.ctl)
        die("ctl_new");
    loop_timer_init(&F.hang, on_hang, NULL);
    loop_io_init(&F.client);
    F.ready = true;
    atexit(cleanup);
}

/* --- one conversation --- */

static void client_io(struct loop *l, int fd, uint32_t events, void *data)
{
    if ((events & EPOLLOUT) && F.inoff < F.inlen) {
        size_t n = F.inlen - F.inoff;
        if (F.chunk && n > F.chunk)
            n = F.chunk;
        ssize_t w = send(fd, F.in + F.inoff, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            F.inoff += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR)
            F.inoff = F.inlen; /* the server closed: read what it answered */
        if (F.inoff == F.inlen) {
            shutdown(fd, SHUT_WR);
            loop_io_mod(l, &F.client, EPOLLIN);
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        for (;;) {
            if (F.outcap - F.outlen < 65536) {
                F.outcap = F.outcap ? F.outcap * 2 : 1 << 17;
                F.out = realloc(F.out, F.outcap);
                if (!F.out)
                    abort();
            }
            ssize_t r = recv(fd, F.out + F.outlen, F.outcap - F.outlen, MSG_DONTWAIT);
            if (r > 0) {
                F.outlen += (size_t)r;
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            loop_stop(l); /* end of file (or reset): the server is done with us */
            break;
        }
    }
}

/* Replies expected for the client's bytes: one per complete line, until a line too long for
 * the server (one error reply, then the server closes). */
static unsigned expected_replies(const uint8_t *in, size_t len, bool *ret_too_long)
{
    unsigned n = 0;
    size_t pos = 0;
    *ret_too_long = false;
    while (pos < len) {
        const uint8_t *nl = memchr(in + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (in + pos)) : len - pos;
        if (l >= CTL_REQUEST_MAX) {
            *ret_too_long = true;
            return n + 1;
        }
        if (!nl)
            break; /* an unfinished last line is never answered */
        n++;
        pos += l + 1;
    }
    return n;
}

static void check_reply(const char *line, size_t len)
{
    json_error_t err;
    json_t *r = json_loadb(line, len, 0, &err);
    if (!json_is_object(r))
        abort();
    json_t *ok = json_object_get(r, "ok");
    if (!json_is_boolean(ok))
        abort();
    if (!json_is_true(ok)) {
        json_int_t code = json_integer_value(json_object_get(r, "code"));
        if (!json_is_string(json_object_get(r, "error")) ||
            (code != CTL_CODE_FAILED && code != CTL_CODE_USAGE))
            abort();
    }
    /* show: every failure recorded for the address appears in its breakdown, whatever bytes
     * its service holds. */
    json_t *total = json_object_get(r, "failure_count");
    if (total) {
        json_int_t sum = 0;
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(r, "failures"), i, x) sum +=
            json_integer_value(json_object_get(x, "count"));
        if (sum != json_integer_value(total)) {
            fprintf(stderr, "fuzz_ctl: show: %lld failures, %lld in the breakdown\n",
                    (long long)json_integer_value(total), (long long)sum);
            abort();
        }
    }
    json_decref(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!F.ready)
        setup();

    fresh_store();

    F.chunk = data[0] & 0x7f;
    if (F.chunk > 15)
        F.chunk = (F.chunk - 15) * 64;
    F.group_member = data[0] & 0x80;
    F.in = data + 1;
    F.inlen = size - 1;
    F.inoff = 0;
    F.outlen = 0;
    F.verdicts = 0;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t plen = strlen(F.cfg.general.control_socket);
    if (plen >= sizeof(sa.sun_path))
        abort();
    memcpy(sa.sun_path, F.cfg.general.control_socket, plen + 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("connect");
    if (F.inlen == 0)
        shutdown(fd, SHUT_WR);
    if (loop_io_add(F.loop, &F.client, fd, F.inlen ? EPOLLIN | EPOLLOUT : EPOLLIN, client_io,
                    NULL) < 0)
        die("loop_io_add");
    loop_timer_arm(F.loop, &F.hang, HANG_MS);
    if (loop_run(F.loop) < 0)
        die("loop_run");
    loop_timer_cancel(F.loop, &F.hang);
    loop_io_del(F.loop, &F.client);
    close(fd);
    if (ctl_clients(F.ctl) != 0)
        abort(); /* the server closed first: that is how the client saw the end */

    bool too_long;
    unsigned want = expected_replies(F.in, F.inlen, &too_long), got = 0;
    if (F.outlen && F.out[F.outlen - 1] != '\n')
        abort();
    for (size_t pos = 0; pos < F.outlen;) {
        const char *nl = memchr(F.out + pos, '\n', F.outlen - pos);
        check_reply(F.out + pos, (size_t)(nl - (F.out + pos)));
        got++;
        pos = (size_t)(nl - F.out) + 1;
    }
    if (got != want) {
        fprintf(stderr, "fuzz_ctl: %u replies for %u requests%s\n", got, want,
                too_long ? " (one too long)" : "");
        abort();
    }
    return 0;
}
