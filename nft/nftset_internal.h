/* The nftables layer's insides, shared by its files and nothing else:
 *
 *   nftset.c      the object: open/free, lookups of single addresses, words for errors
 *   nftmnl.c      the transport: sockets, sequence numbers, transactions, ack reading
 *   nftruleset.c  the ruleset: what our table looks like, setup/adopt/replace, check, teardown
 *   nftcommit.c   the element queue and its commit: build, read acks, settle
 *   nftmon.c      the monitor: notifications that someone else damaged our table
 *
 * The files talk to each other through the functions below; only nftset.h is public. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libmnl/libmnl.h>

#include "nftkey.h"
#include "nftset.h"

/* The largest message we build (a rule, or an anonymous set's 16 ports) fits in this. */
#define NFTMNL_MSG_MAX 1024
/* An element message: headers, two names, a start and an end key with flags and timeout. */
#define NFTMNL_ELEM_MSG_MAX 256
/* The receive buffer: large enough for a batch's acks and for a dump's replies. */
#define NFTMNL_RBUF_SIZE (MNL_SOCKET_BUFFER_SIZE * 4)

enum nftcommit_mode { NFTCOMMIT_ADD = 0, NFTCOMMIT_REPLACE, NFTCOMMIT_DEL };
enum nftcommit_state { NFTCOMMIT_PENDING = 0, NFTCOMMIT_DONE, NFTCOMMIT_FAILED };

/* One queued element and where its commit stands. */
struct nftset_qelem {
    struct addr_prefix prefix;
    uint64_t timeout_ms;
    uint8_t op;    /* enum nftset_op */
    uint8_t mode;  /* enum nftcommit_mode */
    uint8_t state; /* enum nftcommit_state */
    bool refreshed;
    bool solo; /* resend in a message of its own: its message failed without saying where */
    int err;
    int round_err;
};

/* One message of a transaction: its error, where in it the kernel says the error is (extended
 * ack, 0 = not said), and its elements: list[first .. first + count). */
struct nftmnl_msginfo {
    uint16_t type;
    uint32_t first, count;
    int err;
    uint32_t err_off;
};

struct nftset {
    struct cfg_nftables cfg;
    char names[NFTKEY_NSETS][CFG_NAME_MAX + 8];

    /* transport (nftmnl.c) */
    struct mnl_socket *nl;
    struct mnl_socket *mon;
    uint32_t portid;
    uint32_t seq;
    unsigned chunk; /* elements per transaction */
    char *buf;      /* transaction buffer */
    size_t bufcap;
    struct nftmnl_msginfo *msgs; /* per message of the transaction being built or read */
    size_t msgcap;
    uint32_t *list_idx; /* elements in message order: queue index, */
    uint32_t *list_off; /* and the offset of its first attribute within its message */
    size_t listcap, nlist;
    char *rbuf; /* receive buffer */

    /* ruleset (nftruleset.c) */
    int interval; /* -1 = not probed yet, 0 = timeout only, 1 = interval + timeout */
    int marks;    /* the kernel keeps a table's mark (userdata): -1 not yet known, 0 no, 1 yes */
    bool foreign; /* the last look found a table of our name that is not ours */
    uint64_t table_handle; /* of our table, as last seen: a replace deletes exactly that one */
    char fingerprint[64];  /* the rules' comment in the tables we build */
    char legacy_fingerprint[64]; /* and in those built before tables carried the mark */

    /* element queue (nftcommit.c) */
    int destroy; /* the kernel knows NFT_MSG_DESTROYSETELEM: -1 not yet known, 0 no, 1 yes */
    struct nftset_qelem *q;
    unsigned long nq, qcap;
};

/* ---- nftmnl.c: the transport ------------------------------------------------------------ */

/* Grows an array of elem-sized items to hold at least want; 0 or -ENOMEM. */
int nftmnl_grow(void **p, size_t *cap, size_t want, size_t elem);

/* Opens the command socket (sized buffers, extended acks, s->chunk chosen to fit them), checks
 * that we may speak nf_tables, then opens the monitor socket. 0 or -errno. */
int nftmnl_open(struct nftset *s);
void nftmnl_close(struct nftset *s);

/* A transaction being built in s->buf: a batch begin, messages, a batch end. */
struct nftmnl_txn {
    struct nftset *s;
    size_t off;
    uint32_t seq0; /* seq of message 0; the batch begin has seq0 - 1, the end seq0 + n */
    unsigned n;
    struct nlmsghdr *last;
};

/* Room for a transaction of up to msgs messages and bytes bytes. 0 or -ENOMEM. */
int nftmnl_txn_reserve(struct nftset *s, size_t msgs, size_t bytes);
void nftmnl_txn_begin(struct nftset *s, struct nftmnl_txn *t);
/* Starts message number t->n; the caller adds its payload (and its elements, nftmnl_txn_elem()). */
struct nlmsghdr *nftmnl_txn_msg(struct nftmnl_txn *t, uint16_t type, uint16_t flags);
/* Records that queue element idx starts here in the current message. */
void nftmnl_txn_elem(struct nftmnl_txn *t, struct nlmsghdr *nlh, uint32_t idx);
/* Sends the transaction and reads every ack back: s->msgs[i].err gets message i's error (0 if
 * it was acked without one) and .err_off where in the message the kernel placed it. Returns 0,
 * or -errno if the batch as a whole was refused or the socket failed. */
int nftmnl_txn_send(struct nftmnl_txn *t);

/* A request header (a get or a dump) in s->buf, with its own sequence number. */
struct nlmsghdr *nftmnl_req(struct nftset *s, uint16_t type, uint16_t flags);
/* Sends one request and runs cb on each reply until the kernel says done. 0 or -errno. */
int nftmnl_talk(struct nftset *s, struct nlmsghdr *nlh, mnl_cb_t cb, void *data);

/* One element of a set element list: its key, flags (e.g. interval end) and timeout (0 = none). */
void nftmnl_put_key(struct nlmsghdr *nlh, const uint8_t *key, unsigned len, uint32_t flags,
                    uint64_t timeout_ms);

/* ---- nftruleset.c: the ruleset -------------------------------------------------------- */

enum nftruleset_verdict {
    NFTRULESET_RIGHT = 0, /* ours, and what setup would build */
    NFTRULESET_MISSING,   /* no table of our name */
    NFTRULESET_WRONG,     /* ours, but not right: to be replaced */
    NFTRULESET_FOREIGN,   /* a table of our name that is not ours: never touched */
};

/* Checks the names and ports of cfg and derives what the ruleset depends on (set names, the
 * rules' fingerprint) into s. 0, or -EINVAL. */
int nftruleset_init(struct nftset *s, const struct cfg_nftables *cfg);
/* Compares the kernel's view of our table with what setup would build: an enum
 * nftruleset_verdict, or -errno. Never changes the ruleset; records what it found in
 * s->foreign and s->table_handle. */
int nftruleset_verify(struct nftset *s);
/* Whether set k exists in a table built with or without interval sets. */
bool nftruleset_set_present(int interval, int k);

/* ---- nftmon.c: the monitor ------------------------------------------------------------ */

/* Joins or leaves the notification group (a bulk commit does not listen to itself). */
void nftmon_listen(struct nftset *s, bool on);
/* Makes the monitor socket readable, so that the next nftset_monitor_read() reports damage. */
void nftmon_wake(struct nftset *s);
