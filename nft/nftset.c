/* nftables enforcement over netlink. See nftset.h for the contract; the notes here are about how.
 *
 * Transactions: a batch-begin message, N messages each with NLM_F_ACK and its own sequence
 * number, a batch-end message, all in one sendto(). The kernel processes the whole batch inside
 * that sendto() and queues every ack before it returns, so the acks are then read without
 * blocking. A transaction is all or nothing: if one message fails, nothing in it is applied,
 * although the other messages are acked with success. So a failed chunk is sent again without
 * the elements that failed. An add is preceded by a destroy of the same keys (Linux 6.3+: no
 * error if absent), so an existing element takes the new timeout in the same transaction; on
 * older kernels an add that meets an existing element fails, and is retried as delete + add.
 * Failed rounds are worth avoiding: each aborted transaction waits for an RCU grace period.
 *
 * Four sets (nftkey.h): single IPv4 addresses and IPv6 /64s in hash sets, other prefixes in
 * interval sets. The kernel fills a hash set about eight times faster than an interval (rbtree)
 * set, and rebuilds part of an rbtree's state on every commit, so restoring a million bans into
 * an interval set took half a minute here; the common keys take the fast path. An interval set
 * holds a prefix as two elements: its first address, and the first address after it flagged
 * "interval end". */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include "nftkey.h"
#include "nftset.h"

/* nft's datatype numbers, so `nft list` shows our sets with the right types. */
#define NFT_TYPE_IPADDR 7
#define NFT_TYPE_IP6ADDR 8
#define NFT_TYPE_INET_SERVICE 13

#ifndef NFT_MSG_DESTROYSETELEM
#define NFT_MSG_DESTROYSETELEM 30 /* Linux 6.3: delete if present, no error if not */
#endif

#define FORWARD_CHAIN "forward"
/* Changing what setup builds changes this, so an older table is replaced, not adopted. */
#define LAYOUT_VERSION "2"

/* The largest message we build (a rule, or an anonymous set's 16 ports) fits in this. */
#define MSG_MAX 1024
/* An element message: headers, two names, a start and an end key with flags and timeout. */
#define ELEM_MSG_MAX 256
#define SOCK_BUF (8 * 1024 * 1024)
#define NET_SUFFIX "_net"
#define ACK_WAIT_MS 5000
/* Enough for: shared messages, then the failed messages' elements alone, then replacements. */
#define COMMIT_ROUNDS 8
#define ELEMS_PER_MSG 64

enum elem_mode { MODE_ADD = 0, MODE_REPLACE, MODE_DEL };
enum elem_state { ST_PENDING = 0, ST_DONE, ST_FAILED };

struct qelem {
    struct addr_prefix prefix;
    uint64_t timeout_ms;
    uint8_t op;
    uint8_t mode;
    uint8_t state;
    bool refreshed;
    bool solo; /* resend in a message of its own: its message failed without saying where */
    int err;
    int round_err;
};

/* One message of a transaction: its error, where in it the kernel says the error is (extended
 * ack, 0 = not said), and its elements: list[first .. first + count). */
struct msginfo {
    uint16_t type;
    uint32_t first, count;
    int err;
    uint32_t err_off;
};

struct nftset {
    struct cfg_nftables cfg;
    struct mnl_socket *nl;
    struct mnl_socket *mon;
    uint32_t portid;
    uint32_t seq;
    unsigned chunk; /* elements per transaction */
    int destroy;    /* the kernel knows NFT_MSG_DESTROYSETELEM: -1 not yet known, 0 no, 1 yes */
    int interval;   /* -1 = not probed yet, 0 = timeout only, 1 = interval + timeout */
    char fingerprint[64];
    char names[NFTKEY_NSETS][CFG_NAME_MAX + 8];

    struct qelem *q;
    unsigned long nq, qcap;

    char *buf; /* transaction buffer */
    size_t bufcap;
    struct msginfo *msgs; /* per message of the transaction being built or read */
    size_t msgcap;
    uint32_t *list_idx; /* elements in message order: queue index, */
    uint32_t *list_off; /* and the offset of its first attribute within its message */
    size_t listcap, nlist;
    char *rbuf; /* receive buffer */
};

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* A digest of everything the rules depend on, written as a comment on each rule: setup adopts a
 * table only if its rules carry the digest of the current configuration. */
static void make_fingerprint(struct nftset *s)
{
    char canon[512];
    size_t off = 0;
    const struct cfg_nftables *c = &s->cfg;

    off += (size_t)snprintf(canon + off, sizeof(canon) - off, "v%s %s %s tcp", LAYOUT_VERSION,
                            c->set4, c->set6);
    for (unsigned i = 0; i < c->ntcp_ports && off < sizeof(canon); i++)
        off += (size_t)snprintf(canon + off, sizeof(canon) - off, ",%u", c->tcp_ports[i]);
    if (off < sizeof(canon))
        off += (size_t)snprintf(canon + off, sizeof(canon) - off, " udp");
    for (unsigned i = 0; i < c->nudp_ports && off < sizeof(canon); i++)
        off += (size_t)snprintf(canon + off, sizeof(canon) - off, ",%u", c->udp_ports[i]);
    snprintf(s->fingerprint, sizeof(s->fingerprint), "pbxguard %016llx",
             (unsigned long long)fnv1a(canon));
}

static bool name_ok(const char *n)
{
    size_t len = strnlen(n, CFG_NAME_MAX);
    return len > 0 && len < CFG_NAME_MAX && n[0] != '_';
}

/* Returns the size the kernel granted (FORCE needs CAP_NET_ADMIN; without it rmem_max caps). */
static int set_sock_buf(struct mnl_socket *nl, int force_opt, int opt, int size)
{
    int fd = mnl_socket_get_fd(nl), got = 0;
    socklen_t len = sizeof(got);
    if (setsockopt(fd, SOL_SOCKET, force_opt, &size, sizeof(size)) < 0)
        setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size));
    if (getsockopt(fd, SOL_SOCKET, opt, &got, &len) < 0)
        return 0;
    return got;
}

static int grow(void **p, size_t *cap, size_t want, size_t elem)
{
    if (*cap >= want)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < want)
        n *= 2;
    void *np = realloc(*p, n * elem);
    if (!np)
        return -ENOMEM;
    *p = np;
    *cap = n;
    return 0;
}

/* ---- transactions ------------------------------------------------------------------------- */

struct txn {
    struct nftset *s;
    size_t off;
    uint32_t seq0; /* seq of message 0; the batch begin has seq0 - 1, the end seq0 + n */
    unsigned n;
    struct nlmsghdr *last;
};

static int txn_reserve(struct nftset *s, size_t msgs, size_t bytes)
{
    size_t cap = s->bufcap;
    int r = grow((void **)&s->buf, &cap, bytes + 2 * NLMSG_HDRLEN * 4, 1);
    if (r < 0)
        return r;
    s->bufcap = cap;
    if ((r = grow((void **)&s->msgs, &s->msgcap, msgs, sizeof(*s->msgs))) < 0)
        return r;
    cap = s->listcap;
    if ((r = grow((void **)&s->list_idx, &cap, msgs, sizeof(uint32_t))) < 0)
        return r;
    size_t cap2 = s->listcap;
    if ((r = grow((void **)&s->list_off, &cap2, msgs, sizeof(uint32_t))) < 0)
        return r;
    s->listcap = cap < cap2 ? cap : cap2;
    return 0;
}

static void txn_begin(struct nftset *s, struct txn *t)
{
    t->s = s;
    nftnl_batch_begin(s->buf, s->seq++);
    t->off = NLMSG_ALIGN(((struct nlmsghdr *)s->buf)->nlmsg_len);
    t->seq0 = s->seq;
    t->n = 0;
    t->last = NULL;
    s->nlist = 0;
}

static void txn_close_last(struct txn *t)
{
    if (t->last) {
        t->off += NLMSG_ALIGN(t->last->nlmsg_len);
        t->last = NULL;
    }
}

/* Starts message number t->n; the caller adds its payload (and its elements, txn_elem()). */
static struct nlmsghdr *txn_msg(struct txn *t, uint16_t type, uint16_t flags)
{
    txn_close_last(t);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(t->s->buf + t->off, type, NFPROTO_INET,
                                                 flags | NLM_F_ACK, t->seq0 + t->n);
    t->s->msgs[t->n] = (struct msginfo){.type = type, .first = (uint32_t)t->s->nlist};
    t->n++;
    t->last = nlh;
    return nlh;
}

/* Records that queue element idx starts here in the current message. */
static void txn_elem(struct txn *t, struct nlmsghdr *nlh, uint32_t idx)
{
    struct nftset *s = t->s;
    s->list_idx[s->nlist] = idx;
    s->list_off[s->nlist] = nlh->nlmsg_len;
    s->nlist++;
    s->msgs[t->n - 1].count++;
}

static size_t txn_end(struct txn *t)
{
    txn_close_last(t);
    nftnl_batch_end(t->s->buf + t->off, t->seq0 + t->n);
    t->off += NLMSG_ALIGN(((struct nlmsghdr *)(t->s->buf + t->off))->nlmsg_len);
    t->s->seq = t->seq0 + t->n + 1;
    return t->off;
}

/* The offset the kernel's extended ack points at (NLMSGERR_ATTR_OFFS), or 0. */
static uint32_t ack_err_offset(const struct nlmsghdr *nlh)
{
    const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
    size_t len = sizeof(*e);

    if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
        return 0;
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
        len += e->msg.nlmsg_len - sizeof(e->msg);
    len = MNL_ALIGN(len);
    if (mnl_nlmsg_get_payload_len(nlh) <= len)
        return 0;
    const char *tlvs = (const char *)e + len;
    int left = (int)(mnl_nlmsg_get_payload_len(nlh) - len);
    for (const struct nlattr *attr = (const struct nlattr *)tlvs; mnl_attr_ok(attr, left);
         attr = mnl_attr_next(attr)) {
        left -= (int)MNL_ALIGN(attr->nla_len);
        if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_OFFS &&
            mnl_attr_validate(attr, MNL_TYPE_U32) == 0)
            return mnl_attr_get_u32(attr);
    }
    return 0;
}

/* Drops whatever an earlier exchange left on the command socket: the acks of a transaction
 * that stopped reading early (a socket error, the ack timeout), or a pending ENOBUFS from an
 * overflow. Left there, they would be taken for the next request's replies: talk() would fail
 * every request after it on a sequence number that is never its own. Costs one recv() when
 * there is nothing. */
static void drain(struct nftset *s)
{
    int fd = mnl_socket_get_fd(s->nl);
    for (int i = 0; i < 4096; i++) {
        ssize_t n = recv(fd, s->rbuf, MNL_SOCKET_BUFFER_SIZE * 4, MSG_DONTWAIT);
        if (n < 0 && errno != EINTR && errno != ENOBUFS)
            break;
    }
}

/* Sends the transaction and reads every ack back: msgs[i].err gets message i's error (0 if it
 * was acked without one) and msgs[i].err_off where in the message the kernel placed it.
 * Returns 0, or -errno if the batch as a whole was refused or the socket failed. */
static int txn_send(struct txn *t)
{
    struct nftset *s = t->s;
    size_t len = txn_end(t);
    unsigned acked = 0;
    int fd = mnl_socket_get_fd(s->nl);
    int batch_err = 0;

    for (unsigned i = 0; i < t->n; i++) {
        s->msgs[i].err = 0;
        s->msgs[i].err_off = 0;
    }
    drain(s);
    if (mnl_socket_sendto(s->nl, s->buf, len) < 0)
        return -errno;

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (acked < t->n && !batch_err) {
        ssize_t n = recv(fd, s->rbuf, MNL_SOCKET_BUFFER_SIZE * 4, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -errno;
            /* Not expected (the kernel queues every ack before sendto returns), but bounded. */
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long waited = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
            if (waited >= ACK_WAIT_MS)
                return -ETIMEDOUT;
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            poll(&pfd, 1, (int)(ACK_WAIT_MS - waited));
            continue;
        }
        int left = (int)n;
        for (struct nlmsghdr *nlh = (struct nlmsghdr *)s->rbuf; mnl_nlmsg_ok(nlh, left);
             nlh = mnl_nlmsg_next(nlh, &left)) {
            if (nlh->nlmsg_type != NLMSG_ERROR)
                continue;
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
            /* Relative to the first message, so that a transaction whose sequence numbers
             * wrap past 2^32 still finds its acks. */
            uint32_t rel = nlh->nlmsg_seq - t->seq0;
            uint32_t seq = nlh->nlmsg_seq;
            if (rel < t->n) {
                s->msgs[rel].err = e->error;
                if (e->error)
                    s->msgs[rel].err_off = ack_err_offset(nlh);
                acked++;
            } else if (e->error && (seq == t->seq0 - 1 || seq == t->seq0 + t->n)) {
                batch_err = e->error; /* the batch itself: EPERM, no nf_tables, ... */
            }
        }
    }
    return batch_err;
}

/* One request (a get or a dump) on the command socket; cb sees each reply. */
static int talk(struct nftset *s, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
    uint32_t seq = nlh->nlmsg_seq;

    drain(s);
    if (mnl_socket_sendto(s->nl, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(s->nl, s->rbuf, MNL_SOCKET_BUFFER_SIZE * 4);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        int r = mnl_cb_run(s->rbuf, (size_t)n, seq, s->portid, cb, data);
        if (r < 0)
            return -errno;
        if (r == MNL_CB_STOP)
            return 0;
    }
}

static struct nlmsghdr *req_hdr(struct nftset *s, uint16_t type, uint16_t flags)
{
    return nftnl_nlmsg_build_hdr(s->buf, type, NFPROTO_INET, flags | NLM_F_ACK, s->seq++);
}

/* ---- open / free -------------------------------------------------------------------------- */

static int gen_cb(const struct nlmsghdr *nlh, void *data)
{
    return MNL_CB_OK;
}

struct nftset *nftset_open(const struct cfg_nftables *cfg)
{
    struct nftset *s;
    int r;

    if (!name_ok(cfg->table) || !name_ok(cfg->set4) || !name_ok(cfg->set6) ||
        !name_ok(cfg->chain) || strcmp(cfg->set4, cfg->set6) == 0 ||
        (cfg->hook_forward && strcmp(cfg->chain, FORWARD_CHAIN) == 0) ||
        cfg->ntcp_ports > CFG_PORTS_MAX || cfg->nudp_ports > CFG_PORTS_MAX) {
        errno = EINVAL;
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        errno = ENOMEM;
        return NULL;
    }
    s->cfg = *cfg;
    s->interval = -1;
    s->destroy = -1;
    snprintf(s->names[NFTKEY_HOST4], sizeof(s->names[0]), "%s", cfg->set4);
    snprintf(s->names[NFTKEY_NET4], sizeof(s->names[0]), "%s" NET_SUFFIX, cfg->set4);
    snprintf(s->names[NFTKEY_NET64], sizeof(s->names[0]), "%s", cfg->set6);
    snprintf(s->names[NFTKEY_NET6], sizeof(s->names[0]), "%s" NET_SUFFIX, cfg->set6);
    for (int k = 0; k < NFTKEY_NSETS; k++) {
        bool clash = false;
        for (int j = 0; j < k; j++)
            clash |= strcmp(s->names[j], s->names[k]) == 0;
        if (strlen(s->names[k]) >= CFG_NAME_MAX || clash) {
            free(s);
            errno = EINVAL;
            return NULL;
        }
    }
    s->seq = (uint32_t)time(NULL) << 8;
    make_fingerprint(s);
    s->rbuf = malloc(MNL_SOCKET_BUFFER_SIZE * 4);
    if (!s->rbuf || txn_reserve(s, 64, 64 * MSG_MAX) < 0) {
        r = -ENOMEM;
        goto fail;
    }

    s->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!s->nl || mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        r = -errno;
        goto fail;
    }
    s->portid = mnl_socket_get_portid(s->nl);
    /* Acks of a big batch are all queued at once; errors need not echo the whole request. */
    int sndbuf = set_sock_buf(s->nl, SO_SNDBUFFORCE, SO_SNDBUF, SOCK_BUF);
    int rcvbuf = set_sock_buf(s->nl, SO_RCVBUFFORCE, SO_RCVBUF, SOCK_BUF);
    /* Every ack of a transaction is queued before we read any: size chunks so that they fit
     * (an ack costs about 1 KiB of receive buffer; an element takes up to two messages), and so
     * that a chunk fits in one send. */
    long chunk = rcvbuf / 2048;
    if (sndbuf / (2 * ELEM_MSG_MAX) < chunk)
        chunk = sndbuf / (2 * ELEM_MSG_MAX);
    s->chunk = chunk < 16 ? 16 : chunk > NFTSET_CHUNK ? NFTSET_CHUNK : (unsigned)chunk;
    int one = 1;
    mnl_socket_setsockopt(s->nl, NETLINK_CAP_ACK, &one, sizeof(one));
    /* Errors say which element of a message failed. */
    mnl_socket_setsockopt(s->nl, NETLINK_EXT_ACK, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    /* Ask for the ruleset generation: the cheapest request that tells whether we may speak
     * nf_tables at all (EPERM without CAP_NET_ADMIN) and whether the kernel has it. */
    struct nlmsghdr *nlh = req_hdr(s, NFT_MSG_GETGEN, 0);
    r = talk(s, nlh, gen_cb, NULL);
    if (r < 0) {
        if (r == -EINVAL) /* nfnetlink is there, but no nf_tables subsystem behind it */
            r = -EOPNOTSUPP;
        goto fail;
    }

    s->mon = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (!s->mon || mnl_socket_bind(s->mon, 1u << (NFNLGRP_NFTABLES - 1), MNL_SOCKET_AUTOPID) < 0) {
        r = -errno;
        goto fail;
    }
    set_sock_buf(s->mon, SO_RCVBUFFORCE, SO_RCVBUF, 1024 * 1024);
    return s;

fail:
    nftset_free(s);
    errno = -r;
    return NULL;
}

void nftset_free(struct nftset *s)
{
    if (!s)
        return;
    if (s->nl)
        mnl_socket_close(s->nl);
    if (s->mon)
        mnl_socket_close(s->mon);
    free(s->q);
    free(s->buf);
    free(s->msgs);
    free(s->list_idx);
    free(s->list_off);
    free(s->rbuf);
    free(s);
}

bool nftset_has_intervals(const struct nftset *s)
{
    return s->interval != 0;
}

const char *nftset_mode(const struct nftset *s)
{
    return s->interval != 0
               ? "hash+timeout for addresses and /64s, interval+timeout for other prefixes"
               : "hash+timeout only: IPv4 addresses and IPv6 /64s (kernel lacks interval+timeout)";
}

int nftset_monitor_fd(const struct nftset *s)
{
    return mnl_socket_get_fd(s->mon);
}

/* ---- what our table should look like ----------------------------------------------------- */

struct want_chain {
    const char *name;
    uint32_t hooknum;
};

static unsigned want_chains(const struct nftset *s, struct want_chain out[2])
{
    unsigned n = 0;
    out[n++] = (struct want_chain){s->cfg.chain, NF_INET_LOCAL_IN};
    if (s->cfg.hook_forward)
        out[n++] = (struct want_chain){FORWARD_CHAIN, NF_INET_FORWARD};
    return n;
}

/* Without interval support (an old kernel) only the two hash sets exist. */
static bool set_present(int interval, int k)
{
    return interval || !nftkey_set_is_interval(k);
}

static unsigned sets_present(int interval)
{
    return interval ? NFTKEY_NSETS : NFTKEY_NSETS - 2;
}

/* Rules per chain: per set, one rule for all traffic, or one per protocol with ports. */
static unsigned want_rules_per_chain(const struct nftset *s, int interval)
{
    unsigned per_set = 0;
    if (s->cfg.ntcp_ports == 0 && s->cfg.nudp_ports == 0)
        per_set = 1;
    else
        per_set = (s->cfg.ntcp_ports > 0) + (s->cfg.nudp_ports > 0);
    return sets_present(interval) * per_set;
}

/* ---- verification (setup's "is it right", and the periodic check) ------------------------- */

enum verdict { V_RIGHT = 0, V_MISSING, V_WRONG };

static int table_cb(const struct nlmsghdr *nlh, void *data)
{
    *(bool *)data = true;
    return MNL_CB_OK;
}

struct set_info {
    bool found;
    uint32_t flags, key_type, key_len, size;
};

static int set_cb(const struct nlmsghdr *nlh, void *data)
{
    struct set_info *si = data;
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set)
        return MNL_CB_ERROR;
    if (nftnl_set_nlmsg_parse(nlh, set) == 0) {
        si->found = true;
        si->flags = nftnl_set_get_u32(set, NFTNL_SET_FLAGS);
        si->key_type = nftnl_set_get_u32(set, NFTNL_SET_KEY_TYPE);
        si->key_len = nftnl_set_get_u32(set, NFTNL_SET_KEY_LEN);
        si->size = nftnl_set_is_set(set, NFTNL_SET_DESC_SIZE)
                       ? nftnl_set_get_u32(set, NFTNL_SET_DESC_SIZE)
                       : 0;
    }
    nftnl_set_free(set);
    return MNL_CB_OK;
}

struct chains_info {
    const struct nftset *s;
    unsigned ours, right;
};

static int chain_cb(const struct nlmsghdr *nlh, void *data)
{
    struct chains_info *ci = data;
    struct nftnl_chain *c = nftnl_chain_alloc();
    struct want_chain want[2];
    unsigned nwant = want_chains(ci->s, want);

    if (!c)
        return MNL_CB_ERROR;
    if (nftnl_chain_nlmsg_parse(nlh, c) == 0 &&
        strcmp(nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE), ci->s->cfg.table) == 0) {
        ci->ours++;
        const char *name = nftnl_chain_get_str(c, NFTNL_CHAIN_NAME);
        for (unsigned i = 0; i < nwant; i++) {
            if (strcmp(name, want[i].name) != 0)
                continue;
            if (nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM) &&
                nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM) == want[i].hooknum &&
                (int32_t)nftnl_chain_get_u32(c, NFTNL_CHAIN_PRIO) == ci->s->cfg.priority &&
                nftnl_chain_is_set(c, NFTNL_CHAIN_TYPE) &&
                strcmp(nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE), "filter") == 0 &&
                nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY) == NF_ACCEPT)
                ci->right++;
        }
    }
    nftnl_chain_free(c);
    return MNL_CB_OK;
}

struct rules_info {
    const char *table, *chain;
    const char *fingerprint;
    unsigned n, marked;
};

static int comment_cb(const struct nftnl_udata *attr, void *data)
{
    const char **comment = data;
    if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT && nftnl_udata_len(attr) > 0) {
        const char *v = nftnl_udata_get(attr);
        if (v[nftnl_udata_len(attr) - 1] == '\0')
            *comment = v;
    }
    return 0;
}

static int rule_cb(const struct nlmsghdr *nlh, void *data)
{
    struct rules_info *ri = data;
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (!r)
        return MNL_CB_ERROR;
    /* Older kernels ignore the table and chain of a rule dump and send every rule of the
     * family: counting the admin's rules as ours would make every check see damage. */
    const char *table = NULL, *chain = NULL;
    if (nftnl_rule_nlmsg_parse(nlh, r) == 0 && (table = nftnl_rule_get_str(r, NFTNL_RULE_TABLE)) &&
        strcmp(table, ri->table) == 0 && (chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN)) &&
        strcmp(chain, ri->chain) == 0) {
        ri->n++;
        uint32_t len = 0;
        const void *ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
        const char *comment = NULL;
        if (ud && len > 0)
            nftnl_udata_parse(ud, len, comment_cb, &comment);
        if (comment && strcmp(comment, ri->fingerprint) == 0)
            ri->marked++;
    }
    nftnl_rule_free(r);
    return MNL_CB_OK;
}

static int get_set(struct nftset *s, const char *name, struct set_info *ret)
{
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set)
        return -ENOMEM;
    nftnl_set_set_str(set, NFTNL_SET_TABLE, s->cfg.table);
    nftnl_set_set_str(set, NFTNL_SET_NAME, name);
    struct nlmsghdr *nlh = req_hdr(s, NFT_MSG_GETSET, 0);
    nftnl_set_nlmsg_build_payload(nlh, set);
    nftnl_set_free(set);
    memset(ret, 0, sizeof(*ret));
    int r = talk(s, nlh, set_cb, ret);
    return r == -ENOENT ? 0 : r;
}

static bool set_right(const struct nftset *s, const struct set_info *si, int k)
{
    bool v6 = nftkey_set_is_v6(k);
    uint32_t flags = NFT_SET_TIMEOUT | (nftkey_set_is_interval(k) ? NFT_SET_INTERVAL : 0);
    return si->found && si->key_type == (v6 ? NFT_TYPE_IP6ADDR : NFT_TYPE_IPADDR) &&
           si->key_len == (v6 ? 16u : 4u) && si->flags == flags && si->size == s->cfg.set_size;
}

/* Compares the kernel's view of our table with what setup would build. Sets s->interval from
 * the sets' flags when it was not probed yet. Returns an enum verdict or -errno. */
static int verify(struct nftset *s)
{
    bool found = false;
    struct nftnl_table *t = nftnl_table_alloc();
    if (!t)
        return -ENOMEM;
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, s->cfg.table);
    struct nlmsghdr *nlh = req_hdr(s, NFT_MSG_GETTABLE, 0);
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
    int r = talk(s, nlh, table_cb, &found);
    if (r == -ENOENT || (r == 0 && !found))
        return V_MISSING;
    if (r < 0)
        return r;

    struct set_info si[NFTKEY_NSETS];
    for (int k = 0; k < NFTKEY_NSETS; k++)
        if ((r = get_set(s, s->names[k], &si[k])) < 0)
            return r;
    int interval = s->interval;
    if (interval < 0)
        interval = si[NFTKEY_NET4].found;
    for (int k = 0; k < NFTKEY_NSETS; k++) {
        if (set_present(interval, k) ? !set_right(s, &si[k], k) : si[k].found)
            return V_WRONG;
    }

    struct chains_info ci = {.s = s};
    nlh = req_hdr(s, NFT_MSG_GETCHAIN, NLM_F_DUMP);
    if ((r = talk(s, nlh, chain_cb, &ci)) < 0)
        return r;
    struct want_chain want[2];
    unsigned nwant = want_chains(s, want);
    if (ci.ours != nwant || ci.right != nwant)
        return V_WRONG;

    for (unsigned i = 0; i < nwant; i++) {
        struct rules_info ri = {
            .table = s->cfg.table, .chain = want[i].name, .fingerprint = s->fingerprint};
        struct nftnl_rule *rule = nftnl_rule_alloc();
        if (!rule)
            return -ENOMEM;
        nftnl_rule_set_str(rule, NFTNL_RULE_TABLE, s->cfg.table);
        nftnl_rule_set_str(rule, NFTNL_RULE_CHAIN, want[i].name);
        nlh = req_hdr(s, NFT_MSG_GETRULE, NLM_F_DUMP);
        nftnl_rule_nlmsg_build_payload(nlh, rule);
        nftnl_rule_free(rule);
        if ((r = talk(s, nlh, rule_cb, &ri)) < 0)
            return r;
        if (ri.n != want_rules_per_chain(s, interval) || ri.marked != ri.n)
            return V_WRONG;
    }
    s->interval = interval;
    return V_RIGHT;
}

int nftset_check(struct nftset *s, bool *ret_damaged)
{
    int r = verify(s);
    if (r < 0)
        return r;
    *ret_damaged = r != V_RIGHT;
    return 0;
}

/* ---- setup -------------------------------------------------------------------------------- */

static int add_expr(struct nftnl_rule *r, struct nftnl_expr *e)
{
    if (!e)
        return -ENOMEM;
    nftnl_rule_add_expr(r, e);
    return 0;
}

static struct nftnl_expr *expr_meta(uint32_t key)
{
    struct nftnl_expr *e = nftnl_expr_alloc("meta");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
    }
    return e;
}

static struct nftnl_expr *expr_cmp(const void *data, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("cmp");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
        nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    }
    return e;
}

static struct nftnl_expr *expr_payload(uint32_t base, uint32_t offset, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("payload");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    }
    return e;
}

static struct nftnl_expr *expr_lookup(const char *set, uint32_t set_id)
{
    struct nftnl_expr *e = nftnl_expr_alloc("lookup");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
    }
    return e;
}

static struct nftnl_expr *expr_drop(void)
{
    struct nftnl_expr *e = nftnl_expr_alloc("immediate");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_DROP);
    }
    return e;
}

static void put_set(struct txn *t, const char *name, uint32_t id, uint32_t flags, uint32_t type,
                    uint32_t len, uint32_t size)
{
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set)
        return;
    nftnl_set_set_str(set, NFTNL_SET_TABLE, t->s->cfg.table);
    nftnl_set_set_str(set, NFTNL_SET_NAME, name);
    nftnl_set_set_u32(set, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(set, NFTNL_SET_FLAGS, flags);
    nftnl_set_set_u32(set, NFTNL_SET_KEY_TYPE, type);
    nftnl_set_set_u32(set, NFTNL_SET_KEY_LEN, len);
    nftnl_set_set_u32(set, NFTNL_SET_ID, id);
    if (size)
        nftnl_set_set_u32(set, NFTNL_SET_DESC_SIZE, size);
    struct nlmsghdr *nlh = txn_msg(t, NFT_MSG_NEWSET, NLM_F_CREATE);
    nftnl_set_nlmsg_build_payload(nlh, set);
    nftnl_set_free(set);
}

/* An anonymous constant set of ports, bound to the rule that follows it. */
static void put_port_set(struct txn *t, uint32_t id, const uint16_t *ports, unsigned n)
{
    put_set(t, "__set%d", id, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT, NFT_TYPE_INET_SERVICE, 2, 0);
    struct nlmsghdr *nlh = txn_msg(t, NFT_MSG_NEWSETELEM, NLM_F_CREATE);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, t->s->cfg.table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, "__set%d");
    mnl_attr_put_u32(nlh, NFTA_SET_ELEM_LIST_SET_ID, htonl(id));
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    for (unsigned i = 0; i < n; i++) {
        uint16_t port = htons(ports[i]);
        struct nlattr *el = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);
        struct nlattr *key = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
        mnl_attr_put(nlh, NFTA_DATA_VALUE, sizeof(port), &port);
        mnl_attr_nest_end(nlh, key);
        mnl_attr_nest_end(nlh, el);
    }
    mnl_attr_nest_end(nlh, list);
}

static struct nftnl_expr *expr_mask64(void)
{
    static const uint8_t mask[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t zero[16];
    struct nftnl_expr *e = nftnl_expr_alloc("bitwise");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof(mask));
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, sizeof(mask));
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, sizeof(zero));
    }
    return e;
}

/* "ip saddr @set", "ip6 saddr & ffff:ffff:ffff:ffff:: @set" or "ip6 saddr @set", then
 * optionally "meta l4proto P th dport @ports", then "counter drop", with our fingerprint. */
static int put_rule(struct txn *t, const char *chain, int k, uint8_t l4proto, uint32_t ports_id)
{
    struct nftset *s = t->s;
    bool v6 = nftkey_set_is_v6(k);
    uint32_t set_id = (uint32_t)k + 1;
    struct nftnl_rule *r = nftnl_rule_alloc();
    struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFTNL_UDATA_COMMENT_MAXLEN + 8);
    uint8_t nfproto = v6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
    int ret = -ENOMEM;

    if (!r || !ud)
        goto out;
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, s->cfg.table);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
    if (add_expr(r, expr_meta(NFT_META_NFPROTO)) < 0 || add_expr(r, expr_cmp(&nfproto, 1)) < 0 ||
        add_expr(r, expr_payload(NFT_PAYLOAD_NETWORK_HEADER, v6 ? 8 : 12, v6 ? 16 : 4)) < 0 ||
        (k == NFTKEY_NET64 && add_expr(r, expr_mask64()) < 0) ||
        add_expr(r, expr_lookup(s->names[k], set_id)) < 0)
        goto out;
    if (l4proto) {
        if (add_expr(r, expr_meta(NFT_META_L4PROTO)) < 0 ||
            add_expr(r, expr_cmp(&l4proto, 1)) < 0 ||
            add_expr(r, expr_payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)) < 0 ||
            add_expr(r, expr_lookup("__set%d", ports_id)) < 0)
            goto out;
    }
    if (add_expr(r, nftnl_expr_alloc("counter")) < 0 || add_expr(r, expr_drop()) < 0)
        goto out;
    if (!nftnl_udata_put_strz(ud, NFTNL_UDATA_RULE_COMMENT, s->fingerprint))
        goto out;
    nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud), nftnl_udata_buf_len(ud));
    struct nlmsghdr *nlh = txn_msg(t, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    ret = 0;
out:
    nftnl_udata_buf_free(ud);
    nftnl_rule_free(r);
    return ret;
}

/* (Re)creates the whole table in one transaction. */
static int create(struct nftset *s, bool replace, int interval)
{
    struct txn t;
    struct want_chain want[2];
    unsigned nwant = want_chains(s, want);
    uint32_t next_id = NFTKEY_NSETS + 1;
    int r;

    txn_begin(s, &t);
    struct nftnl_table *tab = nftnl_table_alloc();
    if (!tab)
        return -ENOMEM;
    nftnl_table_set_str(tab, NFTNL_TABLE_NAME, s->cfg.table);
    nftnl_table_set_u32(tab, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    if (replace)
        nftnl_table_nlmsg_build_payload(txn_msg(&t, NFT_MSG_DELTABLE, 0), tab);
    nftnl_table_nlmsg_build_payload(txn_msg(&t, NFT_MSG_NEWTABLE, NLM_F_CREATE), tab);
    nftnl_table_free(tab);

    for (int k = 0; k < NFTKEY_NSETS; k++) {
        if (!set_present(interval, k))
            continue;
        bool v6 = nftkey_set_is_v6(k);
        put_set(&t, s->names[k], (uint32_t)k + 1,
                NFT_SET_TIMEOUT | (nftkey_set_is_interval(k) ? NFT_SET_INTERVAL : 0),
                v6 ? NFT_TYPE_IP6ADDR : NFT_TYPE_IPADDR, v6 ? 16 : 4, s->cfg.set_size);
    }

    for (unsigned i = 0; i < nwant; i++) {
        struct nftnl_chain *c = nftnl_chain_alloc();
        if (!c)
            return -ENOMEM;
        nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, s->cfg.table);
        nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, want[i].name);
        nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, want[i].hooknum);
        nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, s->cfg.priority);
        nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter");
        nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
        nftnl_chain_nlmsg_build_payload(txn_msg(&t, NFT_MSG_NEWCHAIN, NLM_F_CREATE), c);
        nftnl_chain_free(c);

        for (int k = 0; k < NFTKEY_NSETS; k++) {
            if (!set_present(interval, k))
                continue;
            if (s->cfg.ntcp_ports == 0 && s->cfg.nudp_ports == 0) {
                if ((r = put_rule(&t, want[i].name, k, 0, 0)) < 0)
                    return r;
                continue;
            }
            if (s->cfg.ntcp_ports > 0) {
                put_port_set(&t, next_id, s->cfg.tcp_ports, s->cfg.ntcp_ports);
                if ((r = put_rule(&t, want[i].name, k, IPPROTO_TCP, next_id++)) < 0)
                    return r;
            }
            if (s->cfg.nudp_ports > 0) {
                put_port_set(&t, next_id, s->cfg.udp_ports, s->cfg.nudp_ports);
                if ((r = put_rule(&t, want[i].name, k, IPPROTO_UDP, next_id++)) < 0)
                    return r;
            }
        }
    }
    r = txn_send(&t);
    if (r < 0)
        return r;
    for (unsigned i = 0; i < t.n; i++)
        if (s->msgs[i].err)
            return s->msgs[i].err;
    return 0;
}

int nftset_setup(struct nftset *s, enum nftset_setup_action *ret_action)
{
    int v = verify(s);
    if (v < 0)
        return v;
    if (v == V_RIGHT) {
        *ret_action = NFTSET_ADOPTED;
        return 0;
    }
    int want = s->interval != 0;
    int r = create(s, v == V_WRONG, want);
    if (r < 0 && s->interval < 0 && (r == -EOPNOTSUPP || r == -EINVAL)) {
        /* The probe: this kernel has no set type with interval + timeout. */
        want = 0;
        r = create(s, v == V_WRONG, want);
    }
    if (r < 0)
        return r;
    s->interval = want;
    *ret_action = v == V_WRONG ? NFTSET_REPLACED : NFTSET_CREATED;
    return 0;
}

int nftset_teardown(struct nftset *s)
{
    struct txn t;
    struct nftnl_table *tab = nftnl_table_alloc();
    if (!tab)
        return -ENOMEM;
    txn_begin(s, &t);
    nftnl_table_set_str(tab, NFTNL_TABLE_NAME, s->cfg.table);
    nftnl_table_nlmsg_build_payload(txn_msg(&t, NFT_MSG_DELTABLE, 0), tab);
    nftnl_table_free(tab);
    int r = txn_send(&t);
    if (r == 0)
        r = s->msgs[0].err;
    return r == -ENOENT ? 0 : r;
}

/* ---- elements ----------------------------------------------------------------------------- */

static int queue(struct nftset *s, enum nftset_op op, const struct addr_prefix *p, uint64_t t_ms)
{
    if ((p->addr.family != AF_INET && p->addr.family != AF_INET6) ||
        p->len > addr_max_len(&p->addr))
        return -EINVAL;
    size_t cap = s->qcap;
    int r = grow((void **)&s->q, &cap, s->nq + 1, sizeof(*s->q));
    if (r < 0)
        return r;
    s->qcap = cap;
    struct qelem *e = &s->q[s->nq++];
    memset(e, 0, sizeof(*e));
    addr_prefix_of(&p->addr, p->len, &e->prefix); /* host bits cleared */
    e->timeout_ms = t_ms;
    e->op = (uint8_t)op;
    e->mode = op == NFTSET_BAN ? MODE_ADD : MODE_DEL;
    return 0;
}

int nftset_queue_ban(struct nftset *s, const struct addr_prefix *p, uint64_t timeout_ms)
{
    return queue(s, NFTSET_BAN, p, timeout_ms);
}

int nftset_queue_unban(struct nftset *s, const struct addr_prefix *p)
{
    return queue(s, NFTSET_UNBAN, p, 0);
}

unsigned long nftset_queued(const struct nftset *s)
{
    return s->nq;
}

static void put_key(struct nlmsghdr *nlh, const uint8_t *key, unsigned len, uint32_t flags,
                    uint64_t timeout_ms)
{
    struct nlattr *el = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);
    struct nlattr *k = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
    mnl_attr_put(nlh, NFTA_DATA_VALUE, len, key);
    mnl_attr_nest_end(nlh, k);
    if (flags)
        mnl_attr_put_u32(nlh, NFTA_SET_ELEM_FLAGS, htonl(flags));
    if (timeout_ms)
        mnl_attr_put_u64(nlh, NFTA_SET_ELEM_TIMEOUT, htobe64(timeout_ms));
    mnl_attr_nest_end(nlh, el);
}

/* One message for the elements idx[0..n), all in the same set: each one's start key (with the
 * timeout) and, in interval sets, its end key. */
static void put_elems(struct txn *t, uint16_t type, uint16_t flags, const uint32_t *idx, unsigned n,
                      bool with_timeout)
{
    struct nftset *s = t->s;
    int k = nftkey_set_of(&s->q[idx[0]].prefix);

    struct nlmsghdr *nlh = txn_msg(t, type, flags);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, s->cfg.table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, s->names[k]);
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    for (unsigned i = 0; i < n; i++) {
        const struct qelem *e = &s->q[idx[i]];
        struct nftkey_interval iv;
        nftkey_interval_of(&e->prefix, &iv);
        txn_elem(t, nlh, idx[i]);
        put_key(nlh, iv.start, iv.len, 0, with_timeout ? e->timeout_ms : 0);
        if (nftkey_set_is_interval(k) && iv.has_end)
            put_key(nlh, iv.end, iv.len, NFT_SET_ELEM_INTERVAL_END, 0);
    }
    mnl_attr_nest_end(nlh, list);
}

static int map_err(const struct qelem *e, int err)
{
    if (err == -ENFILE)
        return -ENOSPC; /* the kernel's word for "set is full" */
    if (e->op == NFTSET_BAN && e->mode == MODE_REPLACE && err == -ENOENT)
        return -ENOTEMPTY; /* it existed, but not as this exact prefix */
    return err;
}

/* Settles the elements [lo, hi) of the queue: each ends ST_DONE or ST_FAILED. Returns 0, or
 * -errno if the socket failed (the elements still pending are left so). */
static int commit_chunk(struct nftset *s, unsigned long lo, unsigned long hi)
{
    int r = txn_reserve(s, 2 * (hi - lo) + 2, 2 * (hi - lo) * ELEM_MSG_MAX);
    if (r < 0)
        return r;
    for (unsigned long i = lo; i < hi; i++) {
        struct qelem *e = &s->q[i];
        if (e->state == ST_PENDING && !set_present(s->interval, nftkey_set_of(&e->prefix))) {
            e->state = ST_FAILED;
            e->err = -EOPNOTSUPP;
        }
    }
    uint32_t group[ELEMS_PER_MSG];
    for (int round = 0; round < COMMIT_ROUNDS; round++) {
        struct txn t;
        txn_begin(s, &t);
        for (unsigned long i = lo; i < hi;) {
            struct qelem *e = &s->q[i];
            uint32_t one = (uint32_t)i;
            if (e->state != ST_PENDING) {
                i++;
            } else if (e->mode == MODE_REPLACE) {
                /* Delete and add again in the same transaction: the new timeout replaces the
                 * old one atomically. */
                put_elems(&t, NFT_MSG_DELSETELEM, 0, &one, 1, false);
                put_elems(&t, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, &one, 1, true);
                i++;
            } else {
                /* Up to ELEMS_PER_MSG pending neighbours of the same set and mode share a
                 * message; an element whose message failed without saying where goes alone. */
                enum nftkey_set k = nftkey_set_of(&e->prefix);
                unsigned n = 0;
                for (; i < hi && n < (e->solo ? 1u : ELEMS_PER_MSG); i++) {
                    const struct qelem *f = &s->q[i];
                    if (f->state != ST_PENDING)
                        continue;
                    if (f->mode != e->mode || f->solo != e->solo || nftkey_set_of(&f->prefix) != k)
                        break;
                    group[n++] = (uint32_t)i;
                }
                if (e->mode == MODE_DEL) {
                    put_elems(&t, NFT_MSG_DELSETELEM, 0, group, n, false);
                } else {
                    /* Where the kernel can, a ban first destroys any element of that key, so
                     * an existing one takes the new timeout without a failed round (each
                     * aborted transaction costs an RCU grace period). */
                    if (s->destroy != 0)
                        put_elems(&t, NFT_MSG_DESTROYSETELEM, 0, group, n, false);
                    put_elems(&t, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, group, n, true);
                }
            }
        }
        if (t.n == 0)
            return 0;
        if ((r = txn_send(&t)) < 0)
            return r;
        bool any = false;
        for (unsigned m = 0; m < t.n; m++) {
            const struct msginfo *mi = &s->msgs[m];
            if (mi->type == NFT_MSG_DESTROYSETELEM && !mi->err)
                s->destroy = 1;
            if (!mi->err)
                continue;
            any = true;
            if (mi->type == NFT_MSG_DESTROYSETELEM && s->destroy < 0 &&
                (mi->err == -EINVAL || mi->err == -EOPNOTSUPP)) {
                s->destroy = 0; /* an older kernel: send the round again without */
                continue;
            }
            /* The kernel stops a message at its first bad element and points at it; the ones
             * after it were not tried. Without a pointer, every element goes alone next time. */
            uint32_t bad = mi->count;
            for (uint32_t j = 0; j < mi->count && mi->err_off; j++)
                if (s->list_off[mi->first + j] <= mi->err_off)
                    bad = j;
            if (mi->count == 1)
                bad = 0;
            for (uint32_t j = 0; j < mi->count; j++) {
                struct qelem *e = &s->q[s->list_idx[mi->first + j]];
                if (j == bad && !e->round_err)
                    e->round_err = mi->err;
                else if (j > bad || bad == mi->count)
                    e->solo = true;
            }
        }
        for (unsigned long i = lo; i < hi; i++) {
            struct qelem *e = &s->q[i];
            if (e->state != ST_PENDING)
                continue;
            if (!any) {
                e->state = ST_DONE;
            } else if (e->round_err) {
                if (e->op == NFTSET_BAN && e->mode == MODE_ADD && e->round_err == -EEXIST) {
                    e->mode = MODE_REPLACE;
                    e->refreshed = true;
                } else {
                    e->state = ST_FAILED;
                    e->err = map_err(e, e->round_err);
                }
                e->round_err = 0;
            }
        }
        if (!any)
            return 0;
    }
    for (unsigned long i = lo; i < hi; i++) {
        if (s->q[i].state == ST_PENDING) {
            s->q[i].state = ST_FAILED;
            s->q[i].err = -ECANCELED;
        }
    }
    return 0;
}

/* Joins or leaves the notification group. The kernel builds a notification per element only
 * while someone listens, which cost a third of a million-ban restore here. */
static void monitor_listen(struct nftset *s, bool on)
{
    int group = NFNLGRP_NFTABLES;
    mnl_socket_setsockopt(s->mon, on ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP, &group,
                          sizeof(group));
}

/* Makes the monitor socket readable with a note from our command socket, so the event loop
 * calls nftset_monitor_read(), which then reports damage. */
static void monitor_wake(struct nftset *s)
{
    struct nlmsghdr h = {.nlmsg_len = NLMSG_HDRLEN, .nlmsg_type = NLMSG_NOOP};
    struct sockaddr_nl dst = {.nl_family = AF_NETLINK, .nl_pid = mnl_socket_get_portid(s->mon)};
    sendto(mnl_socket_get_fd(s->nl), &h, h.nlmsg_len, 0, (struct sockaddr *)&dst, sizeof(dst));
}

long nftset_commit(struct nftset *s, nftset_result_fn fn, void *data)
{
    long failed = 0;
    int fatal = 0;
    /* A bulk commit (a restore) does not listen to its own notifications; afterwards the cheap
     * check covers the pause, and damage found then wakes the monitor. */
    bool bulk = s->nq > s->chunk;

    if (bulk)
        monitor_listen(s, false);

    for (unsigned long lo = 0; lo < s->nq; lo += s->chunk) {
        unsigned long hi = s->nq - lo > s->chunk ? lo + s->chunk : s->nq;
        if (!fatal)
            fatal = commit_chunk(s, lo, hi);
        for (unsigned long i = lo; i < hi; i++) {
            struct qelem *e = &s->q[i];
            struct nftset_result res = {
                .op = e->op,
                .prefix = e->prefix,
                .timeout_ms = e->timeout_ms,
                .err = e->state == ST_DONE     ? 0
                       : e->state == ST_FAILED ? e->err
                                               : fatal,
                .refreshed = e->refreshed && e->state == ST_DONE,
            };
            if (res.err)
                failed++;
            /* "Not banned" is worth explaining when a wider banned prefix holds the address. */
            if (res.err == -ENOENT && e->op == NFTSET_UNBAN && !fatal) {
                uint64_t exp;
                if (nftset_contains(s, &e->prefix.addr, &res.holder, &exp) == 0)
                    res.held = true;
            }
            if (fn)
                fn(data, &res);
        }
    }
    s->nq = 0;
    if (bulk) {
        monitor_listen(s, true);
        if (verify(s) != V_RIGHT)
            monitor_wake(s);
    }
    return fatal ? fatal : failed;
}

/* ---- single-element lookup ---------------------------------------------------------------- */

struct elem_info {
    bool found;
    uint8_t key[16];
    uint32_t flags;
    uint64_t expires_ms;
    bool has_timeout;
};

static int elem_cb(const struct nlmsghdr *nlh, void *data)
{
    struct elem_info *ei = data;
    struct nftnl_set *set = nftnl_set_alloc();
    if (!set)
        return MNL_CB_ERROR;
    if (nftnl_set_elems_nlmsg_parse(nlh, set) == 0) {
        struct nftnl_set_elems_iter *it = nftnl_set_elems_iter_create(set);
        struct nftnl_set_elem *el = it ? nftnl_set_elems_iter_next(it) : NULL;
        if (el) {
            uint32_t len = 0;
            const void *key = nftnl_set_elem_get(el, NFTNL_SET_ELEM_KEY, &len);
            if (key && len <= sizeof(ei->key)) {
                ei->found = true;
                memcpy(ei->key, key, len);
                ei->flags = nftnl_set_elem_is_set(el, NFTNL_SET_ELEM_FLAGS)
                                ? nftnl_set_elem_get_u32(el, NFTNL_SET_ELEM_FLAGS)
                                : 0;
                ei->has_timeout = nftnl_set_elem_is_set(el, NFTNL_SET_ELEM_TIMEOUT);
                ei->expires_ms = nftnl_set_elem_is_set(el, NFTNL_SET_ELEM_EXPIRATION)
                                     ? nftnl_set_elem_get_u64(el, NFTNL_SET_ELEM_EXPIRATION)
                                     : 0;
            }
        }
        if (it)
            nftnl_set_elems_iter_destroy(it);
    }
    nftnl_set_free(set);
    return MNL_CB_OK;
}

static int get_elem(struct nftset *s, const char *set, const uint8_t *key, unsigned len,
                    uint32_t flags, struct elem_info *ret)
{
    struct nlmsghdr *nlh = req_hdr(s, NFT_MSG_GETSETELEM, 0);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, s->cfg.table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set);
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    put_key(nlh, key, len, flags, 0);
    mnl_attr_nest_end(nlh, list);
    memset(ret, 0, sizeof(*ret));
    int r = talk(s, nlh, elem_cb, ret);
    if (r == 0 && !ret->found)
        r = -ENOENT;
    return r;
}

int nftset_contains(struct nftset *s, const struct addr *a, struct addr_prefix *ret_prefix,
                    uint64_t *ret_expires_ms)
{
    struct addr_prefix host, p;
    struct nftkey_interval iv;
    struct elem_info start, end;

    if (a->family != AF_INET && a->family != AF_INET6)
        return -EINVAL;
    /* First the hash set of the common keys: the address itself, or its /64. */
    addr_prefix_of(a, a->family == AF_INET ? 32 : 64, &host);
    nftkey_interval_of(&host, &iv);
    int r = get_elem(s, s->names[nftkey_set_of(&host)], iv.start, iv.len, 0, &start);
    if (r < 0 && r != -ENOENT)
        return r;
    if (r == 0) {
        p = host;
    } else if (!s->interval) {
        return -ENOENT;
    } else {
        /* In an interval set the kernel answers with the start of the interval holding the
         * key; asked for an interval end, with the end that closes it. */
        const char *set = s->names[a->family == AF_INET ? NFTKEY_NET4 : NFTKEY_NET6];
        addr_prefix_of(a, addr_max_len(a), &host);
        nftkey_interval_of(&host, &iv);
        r = get_elem(s, set, iv.start, iv.len, 0, &start);
        if (r < 0)
            return r;
        r = get_elem(s, set, iv.start, iv.len, NFT_SET_ELEM_INTERVAL_END, &end);
        if (r < 0 && r != -ENOENT)
            return r;
        if (nftkey_prefix_of(a->family, start.key, r == 0 ? end.key : NULL, &p) < 0)
            return -EIO;
    }
    *ret_prefix = p;
    if (ret_expires_ms)
        *ret_expires_ms = start.has_timeout ? (start.expires_ms ? start.expires_ms : 1) : 0;
    return 0;
}

/* ---- monitor ------------------------------------------------------------------------------ */

struct mon_info {
    const struct nftset *s;
    bool damaged;
};

static int mon_cb(const struct nlmsghdr *nlh, void *data)
{
    struct mon_info *mi = data;
    const struct nftset *s = mi->s;

    if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES)
        return MNL_CB_OK;
    switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
    case NFT_MSG_DELTABLE:
    case NFT_MSG_DELCHAIN:
    case NFT_MSG_DELSET:
    case NFT_MSG_DELRULE:
    case NFT_MSG_DELSETELEM:
        break;
    default:
        return MNL_CB_OK;
    }
    /* Our own changes come back with our port id; the kernel's own (timeouts) with 0. */
    if (nlh->nlmsg_pid == s->portid || nlh->nlmsg_pid == 0)
        return MNL_CB_OK;
    const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);
    if (g->nfgen_family != NFPROTO_INET)
        return MNL_CB_OK;
    /* Attribute 1 is the table's name in all five messages (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE,
     * NFTA_SET_TABLE, NFTA_RULE_TABLE, NFTA_SET_ELEM_LIST_TABLE). */
    const struct nlattr *attr;
    mnl_attr_for_each(attr, nlh, sizeof(*g))
    {
        if (mnl_attr_get_type(attr) != 1)
            continue;
        if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0 &&
            strcmp(mnl_attr_get_str(attr), s->cfg.table) == 0)
            mi->damaged = true;
        break;
    }
    return MNL_CB_OK;
}

int nftset_monitor_read(struct nftset *s, bool *ret_damaged)
{
    struct mon_info mi = {.s = s};
    bool lost = false;

    /* Bounded: a flood is drained over several turns of the loop (the fd stays readable). */
    for (int i = 0; i < 256; i++) {
        struct sockaddr_nl src;
        socklen_t srclen = sizeof(src);
        ssize_t n = recvfrom(mnl_socket_get_fd(s->mon), s->rbuf, MNL_SOCKET_BUFFER_SIZE * 4, 0,
                             (struct sockaddr *)&src, &srclen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ENOBUFS) {
                lost = true;
                continue;
            }
            if (errno == EAGAIN)
                break;
            return -errno;
        }
        /* The sender's address is the kernel's word: notifications come from port 0; the
         * only other sender we heed is our own command socket (monitor_wake()). */
        if (srclen < sizeof(src) || src.nl_family != AF_NETLINK)
            continue;
        if (src.nl_pid == s->portid) {
            mi.damaged = true;
            continue;
        }
        if (src.nl_pid != 0)
            continue;
        int left = (int)n;
        for (struct nlmsghdr *nlh = (struct nlmsghdr *)s->rbuf; mnl_nlmsg_ok(nlh, left);
             nlh = mnl_nlmsg_next(nlh, &left))
            mon_cb(nlh, &mi);
    }
    if (lost && !mi.damaged) {
        /* Notifications were dropped: check the table instead of guessing. */
        int r = nftset_check(s, &mi.damaged);
        if (r < 0)
            return r;
    }
    *ret_damaged = mi.damaged;
    return 0;
}

/* ---- words -------------------------------------------------------------------------------- */

const char *nftset_strerror(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case EPERM:
        return "needs CAP_NET_ADMIN (run as root or grant the capability)";
    case EAFNOSUPPORT:
    case EPROTONOSUPPORT:
    case EOPNOTSUPP:
        return "the kernel lacks nf_tables support (load nf_tables or use a kernel with it)";
    case ENOSPC:
        return "the set is full (raise [nftables] set_size)";
    case ENOTEMPTY:
        return "overlaps another banned prefix";
    case ENOENT:
        return "not in the set";
    case ECANCELED:
        return "not applied: its transaction kept failing";
    default:
        return strerror(err);
    }
}
