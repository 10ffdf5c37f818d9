/* The element queue and its commit. Elements are queued by the caller and committed together,
 * one transaction per chunk of the queue. Each chunk is settled in rounds: build a transaction
 * of the elements still pending, send it and file the kernel's acks under the elements they
 * name, then settle each element (done, failed, or to be sent again differently). A transaction
 * is all or nothing, so a round that failed for some elements is followed by one without them;
 * failed rounds are worth avoiding, as each aborted transaction waits for an RCU grace period.
 *
 * An add is preceded by a destroy of the same keys (Linux 6.3+: no error if absent), so an
 * existing element takes the new timeout in the same transaction; on older kernels an add that
 * meets an existing element fails, and is retried as delete + add. An interval set holds a
 * prefix as two elements: its first address, and the first address after it flagged "interval
 * end". */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/netfilter/nf_tables.h>

#include "nftset_internal.h"

#ifndef NFT_MSG_DESTROYSETELEM
#define NFT_MSG_DESTROYSETELEM 30 /* Linux 6.3: delete if present, no error if not */
#endif

/* Enough for: shared messages, then the failed messages' elements alone, then replacements. */
#define COMMIT_ROUNDS 8
#define ELEMS_PER_MSG 64

/* ---- the queue -------------------------------------------------------------------------- */

static int queue(struct nftset *s, enum nftset_op op, const struct addr_prefix *p, uint64_t t_ms)
{
    if ((p->addr.family != AF_INET && p->addr.family != AF_INET6) ||
        p->len > addr_max_len(&p->addr))
        return -EINVAL;
    size_t cap = s->qcap;
    int r = nftmnl_grow((void **)&s->q, &cap, s->nq + 1, sizeof(*s->q));
    if (r < 0)
        return r;
    s->qcap = cap;
    struct nftset_qelem *e = &s->q[s->nq++];
    memset(e, 0, sizeof(*e));
    addr_prefix_of(&p->addr, p->len, &e->prefix); /* host bits cleared */
    e->timeout_ms = t_ms;
    e->op = (uint8_t)op;
    e->mode = op == NFTSET_BAN ? NFTCOMMIT_ADD : NFTCOMMIT_DEL;
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

/* ---- build: one round's transaction ----------------------------------------------------- */

/* One message for the elements idx[0..n), all in the same set: each one's start key (with the
 * timeout) and, in interval sets, its end key. */
static void put_elems(struct nftmnl_txn *t, uint16_t type, uint16_t flags, const uint32_t *idx,
                      unsigned n, bool with_timeout)
{
    struct nftset *s = t->s;
    int k = nftkey_set_of(&s->q[idx[0]].prefix);

    struct nlmsghdr *nlh = nftmnl_txn_msg(t, type, flags);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, s->cfg.table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, s->names[k]);
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    for (unsigned i = 0; i < n; i++) {
        const struct nftset_qelem *e = &s->q[idx[i]];
        struct nftkey_interval iv;
        nftkey_interval_of(&e->prefix, &iv);
        nftmnl_txn_elem(t, nlh, idx[i]);
        nftmnl_put_key(nlh, iv.start, iv.len, 0, with_timeout ? e->timeout_ms : 0);
        if (nftkey_set_is_interval(k) && iv.has_end)
            nftmnl_put_key(nlh, iv.end, iv.len, NFT_SET_ELEM_INTERVAL_END, 0);
    }
    mnl_attr_nest_end(nlh, list);
}

/* Up to ELEMS_PER_MSG pending neighbours of q[*i] in the same set and mode share a message; an
 * element whose message failed without saying where goes alone. Advances *i past them. */
static unsigned take_group(struct nftset *s, unsigned long *i, unsigned long hi,
                           uint32_t group[ELEMS_PER_MSG])
{
    const struct nftset_qelem *e = &s->q[*i];
    enum nftkey_set k = nftkey_set_of(&e->prefix);
    unsigned n = 0;
    for (; *i < hi && n < (e->solo ? 1u : ELEMS_PER_MSG); (*i)++) {
        const struct nftset_qelem *f = &s->q[*i];
        if (f->state != NFTCOMMIT_PENDING)
            continue;
        if (f->mode != e->mode || f->solo != e->solo || nftkey_set_of(&f->prefix) != k)
            break;
        group[n++] = (uint32_t)*i;
    }
    return n;
}

/* Builds the transaction for the elements of [lo, hi) still pending; t->n == 0 if none are. */
static void commit_build(struct nftset *s, unsigned long lo, unsigned long hi, struct nftmnl_txn *t)
{
    uint32_t group[ELEMS_PER_MSG];

    nftmnl_txn_begin(s, t);
    for (unsigned long i = lo; i < hi;) {
        struct nftset_qelem *e = &s->q[i];
        uint32_t one = (uint32_t)i;
        if (e->state != NFTCOMMIT_PENDING) {
            i++;
        } else if (e->mode == NFTCOMMIT_REPLACE) {
            /* Delete and add again in the same transaction: the new timeout replaces the old
             * one atomically. */
            put_elems(t, NFT_MSG_DELSETELEM, 0, &one, 1, false);
            put_elems(t, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, &one, 1, true);
            i++;
        } else if (e->mode == NFTCOMMIT_DEL) {
            unsigned n = take_group(s, &i, hi, group);
            put_elems(t, NFT_MSG_DELSETELEM, 0, group, n, false);
        } else {
            unsigned n = take_group(s, &i, hi, group);
            /* Where the kernel can, a ban first destroys any element of that key, so an
             * existing one takes the new timeout without a failed round. */
            if (s->destroy != 0)
                put_elems(t, NFT_MSG_DESTROYSETELEM, 0, group, n, false);
            put_elems(t, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, group, n, true);
        }
    }
}

/* ---- read acks: file each failed message's error under its elements -------------------- */

/* The kernel stops a message at its first bad element and points at it (extended ack); the
 * ones after it were not tried. Returns the index of the bad element within the message, or
 * mi->count when the kernel did not say. */
static uint32_t bad_elem(const struct nftset *s, const struct nftmnl_msginfo *mi)
{
    uint32_t bad = mi->count;
    if (mi->count == 1)
        return 0;
    for (uint32_t j = 0; j < mi->count && mi->err_off; j++)
        if (s->list_off[mi->first + j] <= mi->err_off)
            bad = j;
    return bad;
}

/* Reads the round's acks into the elements: the element a message failed on gets the error
 * (round_err), the ones after it, or all of them when the kernel did not say which, go alone
 * next round. Returns whether any message failed. */
static bool commit_read_acks(struct nftset *s, const struct nftmnl_txn *t)
{
    bool any = false;
    for (unsigned m = 0; m < t->n; m++) {
        const struct nftmnl_msginfo *mi = &s->msgs[m];
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
        uint32_t bad = bad_elem(s, mi);
        for (uint32_t j = 0; j < mi->count; j++) {
            struct nftset_qelem *e = &s->q[s->list_idx[mi->first + j]];
            if (j == bad && !e->round_err)
                e->round_err = mi->err;
            else if (j > bad || bad == mi->count)
                e->solo = true;
        }
    }
    return any;
}

/* ---- settle: what each element's round means for it ------------------------------------ */

static int map_err(const struct nftset_qelem *e, int err)
{
    if (err == -ENFILE)
        return -ENOSPC; /* the kernel's word for "set is full" */
    if (e->op == NFTSET_BAN && e->mode == NFTCOMMIT_REPLACE && err == -ENOENT)
        return -ENOTEMPTY; /* it existed, but not as this exact prefix */
    return err;
}

/* After a round that applied (nothing failed), every pending element is done. After one that
 * failed, nothing was applied: an element with its own error fails, or, a ban that met an
 * existing element, becomes a replacement; the others stay pending for the next round. */
static void commit_settle(struct nftset *s, unsigned long lo, unsigned long hi, bool failed)
{
    for (unsigned long i = lo; i < hi; i++) {
        struct nftset_qelem *e = &s->q[i];
        if (e->state != NFTCOMMIT_PENDING)
            continue;
        if (!failed) {
            e->state = NFTCOMMIT_DONE;
        } else if (e->round_err) {
            if (e->op == NFTSET_BAN && e->mode == NFTCOMMIT_ADD && e->round_err == -EEXIST) {
                e->mode = NFTCOMMIT_REPLACE;
                e->refreshed = true;
            } else {
                e->state = NFTCOMMIT_FAILED;
                e->err = map_err(e, e->round_err);
            }
            e->round_err = 0;
        }
    }
}

/* Fails the pending elements of [lo, hi) with err. */
static void fail_pending(struct nftset *s, unsigned long lo, unsigned long hi, bool unsupported,
                         int err)
{
    for (unsigned long i = lo; i < hi; i++) {
        struct nftset_qelem *e = &s->q[i];
        if (e->state == NFTCOMMIT_PENDING &&
            (!unsupported || !nftruleset_set_present(s->interval, nftkey_set_of(&e->prefix)))) {
            e->state = NFTCOMMIT_FAILED;
            e->err = err;
        }
    }
}

/* Settles the elements [lo, hi) of the queue: each ends done or failed. Returns 0, or -errno
 * if the socket failed (the elements still pending are left so). */
static int commit_chunk(struct nftset *s, unsigned long lo, unsigned long hi)
{
    /* The table of our name is someone else's: nothing is sent to it. */
    if (s->foreign) {
        fail_pending(s, lo, hi, false, -EEXIST);
        return 0;
    }
    int r = nftmnl_txn_reserve(s, 2 * (hi - lo) + 2, 2 * (hi - lo) * NFTMNL_ELEM_MSG_MAX);
    if (r < 0)
        return r;
    /* A prefix that needs an interval set, on a kernel without them. */
    fail_pending(s, lo, hi, true, -EOPNOTSUPP);
    for (int round = 0; round < COMMIT_ROUNDS; round++) {
        struct nftmnl_txn t;
        commit_build(s, lo, hi, &t);
        if (t.n == 0)
            return 0;
        if ((r = nftmnl_txn_send(&t)) < 0)
            return r;
        bool failed = commit_read_acks(s, &t);
        commit_settle(s, lo, hi, failed);
        if (!failed)
            return 0;
    }
    fail_pending(s, lo, hi, false, -ECANCELED);
    return 0;
}

/* Reports the elements [lo, hi) to fn; fatal is the socket's error, for those left pending. */
static long report(struct nftset *s, unsigned long lo, unsigned long hi, int fatal,
                   nftset_result_fn fn, void *data)
{
    long failed = 0;
    for (unsigned long i = lo; i < hi; i++) {
        const struct nftset_qelem *e = &s->q[i];
        struct nftset_result res = {
            .op = e->op,
            .prefix = e->prefix,
            .timeout_ms = e->timeout_ms,
            .err = e->state == NFTCOMMIT_DONE     ? 0
                   : e->state == NFTCOMMIT_FAILED ? e->err
                                                  : fatal,
            .refreshed = e->refreshed && e->state == NFTCOMMIT_DONE,
        };
        if (res.err)
            failed++;
        if (fn)
            fn(data, &res);
    }
    return failed;
}

long nftset_commit(struct nftset *s, nftset_result_fn fn, void *data)
{
    long failed = 0;
    int fatal = 0;
    /* A bulk commit (a restore) does not listen to its own notifications; afterwards the cheap
     * check covers the pause, and damage found then wakes the monitor. */
    bool bulk = s->nq > s->chunk;

    if (bulk)
        nftmon_listen(s, false);
    for (unsigned long lo = 0; lo < s->nq; lo += s->chunk) {
        unsigned long hi = s->nq - lo > s->chunk ? lo + s->chunk : s->nq;
        if (!fatal)
            fatal = commit_chunk(s, lo, hi);
        failed += report(s, lo, hi, fatal, fn, data);
    }
    s->nq = 0;
    if (bulk) {
        nftmon_listen(s, true);
        if (nftruleset_verify(s) != NFTRULESET_RIGHT)
            nftmon_wake(s);
    }
    return fatal ? fatal : failed;
}
