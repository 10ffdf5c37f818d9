/* The monitor: a second netlink socket on the nf_tables notification group. It reports damage
 * when someone else deletes or flushes our table, a set, a chain or a rule, or deletes
 * elements; the caller then sets the table up again and re-installs its bans. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include "nftset_internal.h"

/* How many datagrams one read takes at most: a flood is drained over several turns of the
 * loop (the fd stays readable). */
#define MON_READS_PER_CALL 256

/* The kernel builds a notification per element only while someone listens, which cost a third
 * of a million-ban restore here. */
void nftmon_listen(struct nftset *s, bool on)
{
    int group = NFNLGRP_NFTABLES;
    mnl_socket_setsockopt(s->mon, on ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP, &group,
                          sizeof(group));
}

/* A note from our command socket to the monitor socket: the event loop sees it readable and
 * calls nftset_monitor_read(), which reports damage. */
void nftmon_wake(struct nftset *s)
{
    struct nlmsghdr h = {.nlmsg_len = NLMSG_HDRLEN, .nlmsg_type = NLMSG_NOOP};
    struct sockaddr_nl dst = {.nl_family = AF_NETLINK, .nl_pid = mnl_socket_get_portid(s->mon)};
    sendto(mnl_socket_get_fd(s->nl), &h, h.nlmsg_len, 0, (struct sockaddr *)&dst, sizeof(dst));
}

int nftset_monitor_fd(const struct nftset *s)
{
    return mnl_socket_get_fd(s->mon);
}

/* Whether one notification is someone else deleting something of our table. */
static bool damages_us(const struct nftset *s, const struct nlmsghdr *nlh)
{
    if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES)
        return false;
    switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
    case NFT_MSG_DELTABLE:
    case NFT_MSG_DELCHAIN:
    case NFT_MSG_DELSET:
    case NFT_MSG_DELRULE:
    case NFT_MSG_DELSETELEM:
        break;
    default:
        return false;
    }
    /* Our own changes come back with our port id; the kernel's own (timeouts) with 0. */
    if (nlh->nlmsg_pid == s->portid || nlh->nlmsg_pid == 0)
        return false;
    const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);
    if (g->nfgen_family != NFPROTO_INET)
        return false;
    /* Attribute 1 is the table's name in all five messages (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE,
     * NFTA_SET_TABLE, NFTA_RULE_TABLE, NFTA_SET_ELEM_LIST_TABLE). */
    const struct nlattr *attr;
    mnl_attr_for_each(attr, nlh, sizeof(*g))
    {
        if (mnl_attr_get_type(attr) != 1)
            continue;
        return mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0 &&
               strcmp(mnl_attr_get_str(attr), s->cfg.table) == 0;
    }
    return false;
}

int nftset_monitor_read(struct nftset *s, bool *ret_damaged)
{
    bool damaged = false, lost = false;

    for (int i = 0; i < MON_READS_PER_CALL; i++) {
        struct sockaddr_nl src;
        socklen_t srclen = sizeof(src);
        ssize_t n = recvfrom(mnl_socket_get_fd(s->mon), s->rbuf, NFTMNL_RBUF_SIZE, 0,
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
         * only other sender we heed is our own command socket (nftmon_wake()). */
        if (srclen < sizeof(src) || src.nl_family != AF_NETLINK)
            continue;
        if (src.nl_pid == s->portid) {
            damaged = true;
            continue;
        }
        if (src.nl_pid != 0)
            continue;
        int left = (int)n;
        for (struct nlmsghdr *nlh = (struct nlmsghdr *)s->rbuf; mnl_nlmsg_ok(nlh, left);
             nlh = mnl_nlmsg_next(nlh, &left))
            damaged |= damages_us(s, nlh);
    }
    if (lost && !damaged) {
        /* Notifications were dropped: check the table instead of guessing. */
        int r = nftset_check(s, &damaged);
        if (r < 0)
            return r;
    }
    *ret_damaged = damaged;
    return 0;
}
