/* The transport: our two netfilter netlink sockets, sequence numbers, transactions and their
 * acks, single requests and dumps. Knows nothing of tables, sets or bans.
 *
 * Transactions: a batch-begin message, N messages each with NLM_F_ACK and its own sequence
 * number, a batch-end message, all in one sendto(). The kernel processes the whole batch inside
 * that sendto() and queues every ack before it returns, so the acks are then read without
 * blocking. A transaction is all or nothing: if one message fails, nothing in it is applied,
 * although the other messages are acked with success; the caller decides what to send again. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <endian.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include "nftset_internal.h"

#define SOCK_BUF (8 * 1024 * 1024)
#define MON_SOCK_BUF (1024 * 1024)
#define ACK_WAIT_MS 5000

int nftmnl_grow(void **p, size_t *cap, size_t want, size_t elem)
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

/* ---- transactions ----------------------------------------------------------------------- */

int nftmnl_txn_reserve(struct nftset *s, size_t msgs, size_t bytes)
{
    size_t cap = s->bufcap;
    int r = nftmnl_grow((void **)&s->buf, &cap, bytes + 2 * NLMSG_HDRLEN * 4, 1);
    if (r < 0)
        return r;
    s->bufcap = cap;
    if ((r = nftmnl_grow((void **)&s->msgs, &s->msgcap, msgs, sizeof(*s->msgs))) < 0)
        return r;
    cap = s->listcap;
    if ((r = nftmnl_grow((void **)&s->list_idx, &cap, msgs, sizeof(uint32_t))) < 0)
        return r;
    size_t cap2 = s->listcap;
    if ((r = nftmnl_grow((void **)&s->list_off, &cap2, msgs, sizeof(uint32_t))) < 0)
        return r;
    s->listcap = cap < cap2 ? cap : cap2;
    return 0;
}

void nftmnl_txn_begin(struct nftset *s, struct nftmnl_txn *t)
{
    t->s = s;
    nftnl_batch_begin(s->buf, s->seq++);
    t->off = NLMSG_ALIGN(((struct nlmsghdr *)s->buf)->nlmsg_len);
    t->seq0 = s->seq;
    t->n = 0;
    t->last = NULL;
    s->nlist = 0;
}

static void txn_close_last(struct nftmnl_txn *t)
{
    if (t->last) {
        t->off += NLMSG_ALIGN(t->last->nlmsg_len);
        t->last = NULL;
    }
}

struct nlmsghdr *nftmnl_txn_msg(struct nftmnl_txn *t, uint16_t type, uint16_t flags)
{
    txn_close_last(t);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(t->s->buf + t->off, type, NFPROTO_INET,
                                                 flags | NLM_F_ACK, t->seq0 + t->n);
    t->s->msgs[t->n] = (struct nftmnl_msginfo){.type = type, .first = (uint32_t)t->s->nlist};
    t->n++;
    t->last = nlh;
    return nlh;
}

void nftmnl_txn_elem(struct nftmnl_txn *t, struct nlmsghdr *nlh, uint32_t idx)
{
    struct nftset *s = t->s;
    s->list_idx[s->nlist] = idx;
    s->list_off[s->nlist] = nlh->nlmsg_len;
    s->nlist++;
    s->msgs[t->n - 1].count++;
}

static size_t txn_end(struct nftmnl_txn *t)
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
 * overflow. Left there, they would be taken for the next request's replies: talk would fail
 * every request after it on a sequence number that is never its own. Costs one recv() when
 * there is nothing. */
static void drain(struct nftset *s)
{
    int fd = mnl_socket_get_fd(s->nl);
    for (int i = 0; i < 4096; i++) {
        ssize_t n = recv(fd, s->rbuf, NFTMNL_RBUF_SIZE, MSG_DONTWAIT);
        if (n < 0 && errno != EINTR && errno != ENOBUFS)
            break;
    }
}

/* Files the acks of one receive buffer under their messages. Returns the batch's own error
 * (the batch begin or end refused: EPERM, no nf_tables, ...), or 0. */
static int read_acks(struct nftmnl_txn *t, int len, unsigned *acked)
{
    struct nftset *s = t->s;
    int left = len;
    int batch_err = 0;

    for (struct nlmsghdr *nlh = (struct nlmsghdr *)s->rbuf; mnl_nlmsg_ok(nlh, left);
         nlh = mnl_nlmsg_next(nlh, &left)) {
        if (nlh->nlmsg_type != NLMSG_ERROR)
            continue;
        const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
        /* Relative to the first message, so that a transaction whose sequence numbers wrap
         * past 2^32 still finds its acks. */
        uint32_t rel = nlh->nlmsg_seq - t->seq0;
        uint32_t seq = nlh->nlmsg_seq;
        if (rel < t->n) {
            s->msgs[rel].err = e->error;
            if (e->error)
                s->msgs[rel].err_off = ack_err_offset(nlh);
            (*acked)++;
        } else if (e->error && (seq == t->seq0 - 1 || seq == t->seq0 + t->n)) {
            batch_err = e->error;
        }
    }
    return batch_err;
}

int nftmnl_txn_send(struct nftmnl_txn *t)
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
        ssize_t n = recv(fd, s->rbuf, NFTMNL_RBUF_SIZE, MSG_DONTWAIT);
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
        batch_err = read_acks(t, (int)n, &acked);
    }
    return batch_err;
}

/* ---- single requests -------------------------------------------------------------------- */

struct nlmsghdr *nftmnl_req(struct nftset *s, uint16_t type, uint16_t flags)
{
    return nftnl_nlmsg_build_hdr(s->buf, type, NFPROTO_INET, flags | NLM_F_ACK, s->seq++);
}

int nftmnl_talk(struct nftset *s, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
    uint32_t seq = nlh->nlmsg_seq;

    drain(s);
    if (mnl_socket_sendto(s->nl, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(s->nl, s->rbuf, NFTMNL_RBUF_SIZE);
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

void nftmnl_put_key(struct nlmsghdr *nlh, const uint8_t *key, unsigned len, uint32_t flags,
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

/* ---- the sockets ------------------------------------------------------------------------ */

static int gen_cb(const struct nlmsghdr *nlh, void *data)
{
    return MNL_CB_OK;
}

int nftmnl_open(struct nftset *s)
{
    s->seq = (uint32_t)time(NULL) << 8;
    s->rbuf = malloc(NFTMNL_RBUF_SIZE);
    if (!s->rbuf || nftmnl_txn_reserve(s, 64, 64 * NFTMNL_MSG_MAX) < 0)
        return -ENOMEM;

    s->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!s->nl || mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0)
        return -errno;
    s->portid = mnl_socket_get_portid(s->nl);
    /* Acks of a big batch are all queued at once; errors need not echo the whole request. */
    int sndbuf = set_sock_buf(s->nl, SO_SNDBUFFORCE, SO_SNDBUF, SOCK_BUF);
    int rcvbuf = set_sock_buf(s->nl, SO_RCVBUFFORCE, SO_RCVBUF, SOCK_BUF);
    /* Every ack of a transaction is queued before we read any: size chunks so that they fit
     * (an ack costs about 1 KiB of receive buffer; an element takes up to two messages), and so
     * that a chunk fits in one send. */
    long chunk = rcvbuf / 2048;
    if (sndbuf / (2 * NFTMNL_ELEM_MSG_MAX) < chunk)
        chunk = sndbuf / (2 * NFTMNL_ELEM_MSG_MAX);
    s->chunk = chunk < 16 ? 16 : chunk > NFTSET_CHUNK ? NFTSET_CHUNK : (unsigned)chunk;
    int one = 1;
    mnl_socket_setsockopt(s->nl, NETLINK_CAP_ACK, &one, sizeof(one));
    /* Errors say which element of a message failed. */
    mnl_socket_setsockopt(s->nl, NETLINK_EXT_ACK, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    /* Ask for the ruleset generation: the cheapest request that tells whether we may speak
     * nf_tables at all (EPERM without CAP_NET_ADMIN) and whether the kernel has it. */
    int r = nftmnl_talk(s, nftmnl_req(s, NFT_MSG_GETGEN, 0), gen_cb, NULL);
    if (r < 0)
        return r == -EINVAL ? -EOPNOTSUPP : r; /* nfnetlink without nf_tables behind it */

    s->mon = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (!s->mon || mnl_socket_bind(s->mon, 1u << (NFNLGRP_NFTABLES - 1), MNL_SOCKET_AUTOPID) < 0)
        return -errno;
    set_sock_buf(s->mon, SO_RCVBUFFORCE, SO_RCVBUF, MON_SOCK_BUF);
    return 0;
}

void nftmnl_close(struct nftset *s)
{
    if (s->nl)
        mnl_socket_close(s->nl);
    if (s->mon)
        mnl_socket_close(s->mon);
    s->nl = s->mon = NULL;
    free(s->buf);
    free(s->msgs);
    free(s->list_idx);
    free(s->list_off);
    free(s->rbuf);
}
