/* nft-tool: drives the real nftables layer (nft/nftset.h) from the command line, for the
 * integration tests and the benchmarks. Run it only inside a private network namespace.
 *
 *   nft-tool [options] setup | check | teardown
 *   nft-tool [options] ban ADDR[/LEN][,TIMEOUT_MS] ...     (one commit; no timeout = permanent)
 *   nft-tool [options] unban ADDR[/LEN] ...                (one commit)
 *   nft-tool [options] contains ADDR
 *   nft-tool [options] heal [ADDR[/LEN][,TIMEOUT_MS] ...]  (sets up, installs, then keeps them:
 *                                                           repairs on damage until SIGTERM)
 * options: --table NAME --chain NAME --priority N --forward --tcp P,P --udp P,P --size N
 *          --check-ms N --file F (more bans for ban/heal, one spec per line)
 * Exit: 0 ok, 1 some element failed / not found, 2 usage, 3 could not open or set up. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "config.h"
#include "loop.h"
#include "nftset.h"

struct ban {
    struct addr_prefix p;
    uint64_t timeout_ms;
};

struct bans {
    struct ban *v;
    size_t n, cap;
};

static int parse_spec(const char *spec, struct ban *ret)
{
    char buf[128];
    struct ban b = {0};
    snprintf(buf, sizeof(buf), "%s", spec);
    char *comma = strchr(buf, ',');
    if (comma) {
        *comma = '\0';
        char *end;
        errno = 0;
        b.timeout_ms = strtoull(comma + 1, &end, 10);
        if (errno || *end || end == comma + 1)
            return -EINVAL;
    }
    if (addr_prefix_parse(buf, true, &b.p) < 0)
        return -EINVAL;
    *ret = b;
    return 0;
}

static int bans_add(struct bans *bs, const char *spec)
{
    struct ban b;
    if (parse_spec(spec, &b) < 0) {
        fprintf(stderr, "nft-tool: bad address spec \"%s\"\n", spec);
        return -EINVAL;
    }
    if (bs->n == bs->cap) {
        size_t cap = bs->cap ? bs->cap * 2 : 64;
        struct ban *v = realloc(bs->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        bs->v = v;
        bs->cap = cap;
    }
    bs->v[bs->n++] = b;
    return 0;
}

static int bans_load(struct bans *bs, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[256];
    if (!f) {
        fprintf(stderr, "nft-tool: %s: %s\n", path, strerror(errno));
        return -errno;
    }
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, " \r\n")] = '\0';
        if (line[0] && bans_add(bs, line) < 0) {
            fclose(f);
            return -EINVAL;
        }
    }
    fclose(f);
    return 0;
}

static int parse_ports(const char *s, uint16_t *ports, unsigned *n)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        long v = strtol(tok, NULL, 10);
        if (v < 1 || v > 65535 || *n >= CFG_PORTS_MAX)
            return -EINVAL;
        ports[(*n)++] = (uint16_t)v;
    }
    return 0;
}

static long failures;

/* Results are printed after the commit: looking up who holds an address that was not in the
 * set is a request of its own on the same socket. */
struct results {
    struct nftset_result *v;
    size_t n, cap;
};

static void collect_result(void *data, const struct nftset_result *r)
{
    struct results *rs = data;
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        struct nftset_result *v = realloc(rs->v, cap * sizeof(*v));
        if (!v)
            return;
        rs->v = v;
        rs->cap = cap;
    }
    rs->v[rs->n++] = *r;
}

static void print_result(struct nftset *s, const struct nftset_result *r, bool quiet)
{
    char buf[ADDR_STRLEN], hb[ADDR_STRLEN];
    const char *op = r->op == NFTSET_BAN ? "ban" : "unban";
    struct addr_prefix holder;
    uint64_t exp;
    addr_prefix_format(&r->prefix, buf, sizeof(buf));
    if (r->err == 0) {
        if (!quiet)
            printf("%s %s: %s\n", op, buf, r->refreshed ? "refreshed" : "ok");
        return;
    }
    failures++;
    /* "Not in the set" is worth explaining when a wider banned prefix holds the address. */
    if (r->op == NFTSET_UNBAN && r->err == -ENOENT &&
        nftset_contains(s, &r->prefix.addr, &holder, &exp) == 0)
        printf("%s %s: %s (held by %s)\n", op, buf, nftset_strerror(r->err),
               addr_prefix_format(&holder, hb, sizeof(hb)));
    else
        printf("%s %s: error: %s\n", op, buf, nftset_strerror(r->err));
}

/* Commits what is queued and prints each element's result (quiet: the failures only). */
static long commit(struct nftset *s, bool quiet)
{
    struct results rs = {0};
    long r = nftset_commit(s, collect_result, &rs);
    for (size_t i = 0; i < rs.n; i++)
        print_result(s, &rs.v[i], quiet);
    free(rs.v);
    return r;
}

static const char *action_name(enum nftset_setup_action a)
{
    return a == NFTSET_ADOPTED ? "adopted" : a == NFTSET_CREATED ? "created" : "replaced";
}

static int do_setup(struct nftset *s, bool quiet)
{
    enum nftset_setup_action a;
    int r = nftset_setup(s, &a);
    if (r < 0) {
        fprintf(stderr, "nft-tool: setup failed: %s\n", nftset_strerror(r));
        return 3;
    }
    if (!quiet)
        printf("setup: %s, sets: %s\n", action_name(a), nftset_mode(s));
    return 0;
}

/* ---- heal: what the core does, in miniature --------------------------------------------- */

struct healer {
    struct loop *loop;
    struct nftset *s;
    struct bans *bans;
    struct loop_io io;
    struct loop_timer check;
    uint64_t check_ms;
};

static int install_all(struct healer *h, bool quiet)
{
    for (size_t i = 0; i < h->bans->n; i++)
        nftset_queue_ban(h->s, &h->bans->v[i].p, h->bans->v[i].timeout_ms);
    long r = commit(h->s, quiet);
    if (r < 0)
        fprintf(stderr, "nft-tool: commit failed: %s\n", nftset_strerror((int)r));
    return (int)r;
}

static void repair(struct healer *h, const char *why)
{
    enum nftset_setup_action a;
    uint64_t t0 = loop_clock_mono_ms();
    int r = nftset_setup(h->s, &a);
    if (r < 0) {
        printf("repair failed (%s): %s\n", why, nftset_strerror(r));
        return;
    }
    install_all(h, true);
    printf("repaired (%s): table %s, %zu bans re-installed in %" PRIu64 " ms\n", why,
           action_name(a), h->bans->n, loop_clock_mono_ms() - t0);
}

static void on_monitor(struct loop *l, int fd, uint32_t events, void *data)
{
    struct healer *h = data;
    bool damaged = false;
    int r = nftset_monitor_read(h->s, &damaged);
    if (r < 0)
        printf("monitor: %s\n", nftset_strerror(r));
    else if (damaged)
        repair(h, "notification");
}

static void on_check(struct loop *l, void *data)
{
    struct healer *h = data;
    bool damaged = false;
    if (nftset_check(h->s, &damaged) == 0 && damaged)
        repair(h, "periodic check");
    loop_timer_arm(l, &h->check, h->check_ms);
}

static void on_stop(struct loop *l, void *data)
{
    loop_stop(l);
}

static int heal(struct nftset *s, struct bans *bans, uint64_t check_ms)
{
    struct healer h = {.s = s, .bans = bans, .check_ms = check_ms};
    int rc = do_setup(s, false);
    if (rc)
        return rc;
    install_all(&h, false);
    h.loop = loop_new();
    if (!h.loop)
        return 3;
    loop_io_init(&h.io);
    loop_timer_init(&h.check, on_check, &h);
    if (loop_io_add(h.loop, &h.io, nftset_monitor_fd(s), EPOLLIN, on_monitor, &h) < 0 ||
        loop_signal_add(h.loop, SIGTERM, on_stop, NULL) < 0 ||
        loop_signal_add(h.loop, SIGINT, on_stop, NULL) < 0) {
        loop_free(h.loop);
        return 3;
    }
    loop_timer_arm(h.loop, &h.check, check_ms);
    printf("ready\n");
    loop_run(h.loop);
    loop_io_del(h.loop, &h.io);
    loop_free(h.loop);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: nft-tool [options] setup|check|teardown|ban|unban|contains|heal ...\n");
}

int main(int argc, char **argv)
{
    struct cfg_nftables cfg = {.priority = -10, .check_interval_ms = 30000};
    struct bans bans = {0};
    const char *file = NULL;
    int rc = 0;
    static const struct option opts[] = {
        {"table", required_argument, NULL, 'T'},    {"chain", required_argument, NULL, 'C'},
        {"priority", required_argument, NULL, 'P'}, {"forward", no_argument, NULL, 'F'},
        {"tcp", required_argument, NULL, 't'},      {"udp", required_argument, NULL, 'u'},
        {"size", required_argument, NULL, 's'},     {"check-ms", required_argument, NULL, 'c'},
        {"file", required_argument, NULL, 'f'},     {NULL, 0, NULL, 0},
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(cfg.table, sizeof(cfg.table), "pbxguard");
    snprintf(cfg.set4, sizeof(cfg.set4), "banned4");
    snprintf(cfg.set6, sizeof(cfg.set6), "banned6");
    snprintf(cfg.chain, sizeof(cfg.chain), "input");
    for (int c; (c = getopt_long(argc, argv, "+", opts, NULL)) != -1;) {
        switch (c) {
        case 'T':
            snprintf(cfg.table, sizeof(cfg.table), "%s", optarg);
            break;
        case 'C':
            snprintf(cfg.chain, sizeof(cfg.chain), "%s", optarg);
            break;
        case 'P':
            cfg.priority = atoi(optarg);
            break;
        case 'F':
            cfg.hook_forward = true;
            break;
        case 't':
            if (parse_ports(optarg, cfg.tcp_ports, &cfg.ntcp_ports) < 0)
                return 2;
            break;
        case 'u':
            if (parse_ports(optarg, cfg.udp_ports, &cfg.nudp_ports) < 0)
                return 2;
            break;
        case 's':
            cfg.set_size = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'c':
            cfg.check_interval_ms = strtoll(optarg, NULL, 10);
            break;
        case 'f':
            file = optarg;
            break;
        default:
            usage();
            return 2;
        }
    }
    if (optind >= argc) {
        usage();
        return 2;
    }
    const char *cmd = argv[optind++];

    struct nftset *s = nftset_open(&cfg);
    if (!s) {
        fprintf(stderr, "nft-tool: cannot open nftables: %s\n", nftset_strerror(errno));
        return 3;
    }
    if (strcmp(cmd, "setup") == 0) {
        rc = do_setup(s, false);
    } else if (strcmp(cmd, "check") == 0) {
        bool damaged;
        int r = nftset_check(s, &damaged);
        if (r < 0) {
            fprintf(stderr, "nft-tool: check failed: %s\n", nftset_strerror(r));
            rc = 3;
        } else {
            printf("%s\n", damaged ? "damaged" : "ok");
            rc = damaged ? 1 : 0;
        }
    } else if (strcmp(cmd, "teardown") == 0) {
        int r = nftset_teardown(s);
        if (r < 0) {
            fprintf(stderr, "nft-tool: teardown failed: %s\n", nftset_strerror(r));
            rc = 3;
        }
    } else if (strcmp(cmd, "ban") == 0 || strcmp(cmd, "unban") == 0 || strcmp(cmd, "heal") == 0) {
        bool unban = strcmp(cmd, "unban") == 0;
        for (int i = optind; i < argc; i++)
            if (bans_add(&bans, argv[i]) < 0)
                rc = 2;
        if (!rc && file && bans_load(&bans, file) < 0)
            rc = 2;
        if (!rc && strcmp(cmd, "heal") == 0) {
            rc = heal(s, &bans, (uint64_t)cfg.check_interval_ms);
        } else if (!rc && (rc = do_setup(s, true)) == 0) {
            for (size_t i = 0; i < bans.n; i++) {
                if (unban)
                    nftset_queue_unban(s, &bans.v[i].p);
                else
                    nftset_queue_ban(s, &bans.v[i].p, bans.v[i].timeout_ms);
            }
            long r = commit(s, false);
            if (r < 0) {
                fprintf(stderr, "nft-tool: commit failed: %s\n", nftset_strerror((int)r));
                rc = 3;
            } else {
                rc = r > 0 ? 1 : 0;
            }
        }
    } else if (strcmp(cmd, "contains") == 0 && optind < argc) {
        struct addr a;
        struct addr_prefix p;
        uint64_t exp;
        char buf[ADDR_STRLEN];
        if (addr_parse(argv[optind], strlen(argv[optind]), &a) < 0) {
            rc = 2;
        } else {
            int r = nftset_contains(s, &a, &p, &exp);
            if (r == -ENOENT) {
                printf("%s: not banned\n", argv[optind]);
                rc = 1;
            } else if (r < 0) {
                fprintf(stderr, "nft-tool: lookup failed: %s\n", nftset_strerror(r));
                rc = 3;
            } else if (exp) {
                printf("%s: in %s, expires in %" PRIu64 " ms\n", argv[optind],
                       addr_prefix_format(&p, buf, sizeof(buf)), exp);
            } else {
                printf("%s: in %s, permanent\n", argv[optind],
                       addr_prefix_format(&p, buf, sizeof(buf)));
            }
        }
    } else {
        usage();
        rc = 2;
    }
    free(bans.v);
    nftset_free(s);
    return rc;
}
