/* The daemon's hands: bans enforced by nftables sets, spoken to over netlink (libnftnl + libmnl,
 * never a forked nft). Everything lives in our own table (inet pbxguard by default), which
 * carries our mark (its comment, "pbxguard format N"); a table of that name without the mark is
 * someone else's and is never changed nor deleted. All sets have per-element timeouts: set4 (IPv4
 * addresses) and set6 (IPv6 /64s, matched on the source masked to /64) are hash sets, the fast path
 * for the policy's usual keys; set4_net and set6_net are interval sets for every other prefix. A
 * base chain on the input hook (and optionally forward) has one "saddr @set counter drop" rule per
 * set.
 *
 * Elements are queued and committed together: one commit is one netlink transaction per chunk of
 * up to NFTSET_CHUNK elements, each message with its own sequence number and ack, every error
 * read back and tied to its element. The library does not log: results and errors go back to
 * the caller, and nftset_strerror() turns them into words. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"

#define NFTSET_CHUNK 1000 /* at most; fewer if the socket buffers are small */

struct nftset;

enum nftset_setup_action {
    NFTSET_ADOPTED = 0, /* the table was already right; nothing changed (its bans are intact) */
    NFTSET_CREATED,     /* there was no table; it was created empty */
    NFTSET_REPLACED,    /* the table was wrong; it was replaced, empty, in one transaction */
};

enum nftset_op { NFTSET_BAN = 0, NFTSET_UNBAN };

struct nftset_result {
    enum nftset_op op;
    struct addr_prefix prefix;
    uint64_t timeout_ms; /* ban: as queued, 0 = permanent */
    /* 0, or -errno: -ENOENT (unban: not in the set), -ENOSPC (the set is full), -ENOTEMPTY
     * (ban: overlaps another banned prefix in the same interval set), -EOPNOTSUPP (a prefix that
     * needs an interval set, but the kernel has none), -ECANCELED (not applied: its transaction
     * failed for others repeatedly), -EEXIST (not sent: the table of our name is not ours), or
     * a transport error. */
    int err;
    /* ban: the element existed and was replaced with this timeout. Known only on kernels before
     * 6.3; later ones replace an existing element without telling (see nftcommit.c). */
    bool refreshed;
};

typedef void (*nftset_result_fn)(void *data, const struct nftset_result *r);

/* Opens the netlink sockets (command and monitor) and checks that we may speak nf_tables.
 * Does not touch the ruleset. NULL + errno: EPERM (needs CAP_NET_ADMIN), EAFNOSUPPORT,
 * EPROTONOSUPPORT or EOPNOTSUPP (the kernel lacks nf_tables), ENOMEM, EINVAL (bad names). */
struct nftset *nftset_open(const struct cfg_nftables *cfg);
void nftset_free(struct nftset *s); /* accepts NULL; leaves the table in the kernel */

/* Makes our table right, idempotently: adopts it if it already is, else (re)creates it in one
 * transaction (the old one, if ours, is deleted in the same transaction). Ours means marked by
 * us, or, unmarked, exactly the layout we build and nothing else (a table from before the mark,
 * or from a kernel that drops a table's userdata). -EEXIST: a table of the configured name is
 * someone else's; it is left as it is, and commits fail with -EEXIST until a setup succeeds.
 * -EBUSY: the table kept changing under us. Other tables are never touched. The first call
 * probes whether the kernel accepts interval + timeout sets. */
int nftset_setup(struct nftset *s, enum nftset_setup_action *ret_action);

/* Which sets are in use, in words, for the log line after setup: all four, or, on a kernel
 * without interval + timeout sets, only the hash sets (IPv4 addresses and IPv6 /64s). */
const char *nftset_mode(const struct nftset *s);

/* Queues one element for the next commit. timeout_ms is the ban's remaining time, 0 =
 * permanent. A ban of an element that exists replaces it (new timeout). Returns 0, -ENOMEM, or
 * -EINVAL (bad family or length). */
int nftset_queue_ban(struct nftset *s, const struct addr_prefix *p, uint64_t timeout_ms);
int nftset_queue_unban(struct nftset *s, const struct addr_prefix *p);
unsigned long nftset_queued(const struct nftset *s);

/* Commits everything queued: one transaction per chunk, up to 64 elements per message. fn (may be
 * NULL) is called once per element with its result. A kernel transaction is all or nothing, so
 * when some elements fail, the chunk is sent again without them. Returns the number of elements
 * that failed (0 = all applied), or -errno if the netlink socket itself failed (then every
 * element not yet reported is reported with that error). The queue is empty afterwards.
 * A commit of more than one chunk (a restore) stops listening to notifications while it runs
 * (they would cost a third of its time); the cheap check runs after it, and if it finds damage
 * the monitor fd becomes readable and nftset_monitor_read() reports it. */
long nftset_commit(struct nftset *s, nftset_result_fn fn, void *data);

/* Looks up one address: 0 with the banned prefix that holds it and its remaining time in
 * ms (0 = permanent), -ENOENT if it is not banned, or -errno. */
int nftset_contains(struct nftset *s, const struct addr *a, struct addr_prefix *ret_prefix,
                    uint64_t *ret_expires_ms);

/* The monitor: a non-blocking netlink socket on the nf_tables notification group, for the
 * event loop (EPOLLIN). nftset_monitor_read() drains it and sets *ret_damaged when someone else
 * deleted or flushed our table, a set, a chain or a rule, or deleted elements (then the caller
 * re-runs nftset_setup() and re-installs the active bans). If notifications were lost (the
 * socket overflowed, e.g. during a big restore) it runs nftset_check() instead. */
int nftset_monitor_fd(const struct nftset *s);
int nftset_monitor_read(struct nftset *s, bool *ret_damaged);

/* The slow periodic check: cheap (never dumps a set's elements), and it only reads. Damaged =
 * the table, a set or a chain is missing, or they or the rules are not what nftset_setup()
 * would make, or the table of our name is not ours (nftset_setup() then says -EEXIST). */
int nftset_check(struct nftset *s, bool *ret_damaged);

/* Deletes our table (for remove_on_stop), if it is ours: -EEXIST if the table of that name is
 * someone else's (it is left as it is). A missing table is not an error. */
int nftset_teardown(struct nftset *s);

/* Words for the errors above, aimed at an admin: "needs CAP_NET_ADMIN", "kernel lacks
 * nf_tables support", "set is full (raise [nftables] set_size)", ... err is -errno or errno. */
const char *nftset_strerror(int err);
