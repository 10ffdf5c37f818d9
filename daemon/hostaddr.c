/* The host's own addresses, default gateways and resolvers, followed live (see hostaddr.h).
 *
 * rtnetlink: one non-blocking socket subscribed to the address and route groups, read on the
 * loop, and one blocking socket for dumps (at start, after a lost notification, and for the
 * routes whenever a default route changes: a route message says what was added or removed, but
 * a "replace" does not say what it replaced, so the gateways are read again instead of being
 * patched). Subscribing before the first dump means no change can fall between the two: a
 * notification already reflected in the dump is applied again, which changes nothing. */
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <limits.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "hostaddr.h"
#include "log.h"
#include "resolv_conf.h"

/* Bounds: a host with more addresses than this (a /64 of addresses on lo) keeps the first ones,
 * and says so once. */
#define HOSTADDR_MAX 4096
#define GATEWAY_MAX 64
#define DUMP_TRIES 3
/* A flood of notifications is drained over several turns of the loop. */
#define READS_PER_TURN 64
/* Big enough for any dump message the kernel builds (it sizes them to the reader's buffer). */
#define NL_BUF_SIZE 65536

struct fact {
    struct addr addr;
    unsigned ifindex;
    char ifname[IF_NAMESIZE];
};

struct fact_list {
    struct fact *v;
    unsigned n, cap, max;
    bool full_logged;
};

struct watch {
    int wd; /* -1: none */
    char dir[PATH_MAX];
    char name[NAME_MAX + 1];
};

struct hostaddr {
    struct loop *loop;
    struct cfg_protect cfg;
    hostaddr_fn fn;
    void *data;

    struct mnl_socket *mon, *dump;
    struct loop_io mon_io;
    uint32_t seq;
    char *buf; /* NL_BUF_SIZE bytes */
    struct fact_list addrs, gws;

    int ino; /* inotify; -1 when resolvers are off */
    struct loop_io ino_io;
    struct watch link, target; /* resolv_conf's directory; its symlink target's */
    bool watch_warned;
    struct addr resolvers[RESOLV_CONF_MAX_SERVERS];
    unsigned nresolvers;
};

/* ---- the lists and what is reported ---------------------------------------------------------- */

static int facts_add(struct fact_list *l, const struct fact *f)
{
    for (unsigned i = 0; i < l->n; i++)
        if (l->v[i].ifindex == f->ifindex && addr_equal(&l->v[i].addr, &f->addr))
            return 0;
    if (l->n == l->max) {
        if (!l->full_logged)
            log_warn("host: more than %u %s; the others are not protected", l->max,
                     l->max == HOSTADDR_MAX ? "own addresses" : "default gateways");
        l->full_logged = true;
        return 0;
    }
    if (l->n == l->cap) {
        unsigned cap = l->cap ? l->cap * 2 : 16;
        struct fact *m = realloc(l->v, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        l->v = m;
        l->cap = cap;
    }
    l->v[l->n++] = *f;
    return 1;
}

static bool facts_del(struct fact_list *l, const struct fact *f)
{
    for (unsigned i = 0; i < l->n; i++) {
        if (l->v[i].ifindex == f->ifindex && addr_equal(&l->v[i].addr, &f->addr)) {
            l->v[i] = l->v[--l->n];
            return true;
        }
    }
    return false;
}

static void report(struct hostaddr *h, enum policy_source src)
{
    const struct fact_list *l = src == POLICY_SRC_HOST ? &h->addrs : &h->gws;
    bool on = src == POLICY_SRC_HOST ? h->cfg.own_addresses : h->cfg.gateways;
    unsigned n = on ? l->n : 0;
    struct policy_wl_entry *e = calloc(n ? n : 1, sizeof(*e));
    if (!e) {
        log_err("host: out of memory reporting the host's addresses");
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        addr_prefix_of(&l->v[i].addr, addr_max_len(&l->v[i].addr), &e[i].prefix);
        snprintf(e[i].label, sizeof(e[i].label), "%s on %s",
                 src == POLICY_SRC_HOST ? "own address" : "gateway", l->v[i].ifname);
        e[i].source = src;
    }
    h->fn(h->data, src, e, n);
    free(e);
}

static void report_resolvers(struct hostaddr *h)
{
    struct policy_wl_entry e[RESOLV_CONF_MAX_SERVERS];
    unsigned n = h->cfg.resolvers ? h->nresolvers : 0;
    memset(e, 0, sizeof(e));
    for (unsigned i = 0; i < n; i++) {
        addr_prefix_of(&h->resolvers[i], addr_max_len(&h->resolvers[i]), &e[i].prefix);
        snprintf(e[i].label, sizeof(e[i].label), "resolver");
        e[i].source = POLICY_SRC_RESOLVER;
    }
    h->fn(h->data, POLICY_SRC_RESOLVER, e, n);
}

/* ---- rtnetlink messages ---------------------------------------------------------------------- */

static bool addr_from_attr(const struct nlattr *a, int family, struct addr *ret)
{
    size_t want = family == AF_INET ? 4 : 16;
    if (!a || mnl_attr_get_payload_len(a) != want)
        return false;
    memset(ret, 0, sizeof(*ret));
    ret->family = (uint8_t)family;
    memcpy(ret->bytes, mnl_attr_get_payload(a), want);
    return true;
}

static void ifname_of(unsigned ifindex, char name[IF_NAMESIZE])
{
    if (!if_indextoname(ifindex, name))
        snprintf(name, IF_NAMESIZE, "if%u", ifindex);
}

/* Attribute tables of address and route messages, indexed by type. */
#define TB_SIZE 64
_Static_assert(IFA_MAX < TB_SIZE && RTA_MAX < TB_SIZE, "TB_SIZE holds every attribute type");

static int attr_cb(const struct nlattr *a, void *data)
{
    const struct nlattr **tb = data;
    unsigned type = mnl_attr_get_type(a);
    if (type < TB_SIZE)
        tb[type] = a;
    return MNL_CB_OK;
}

/* An RTM_NEWADDR / RTM_DELADDR: returns 1 if the list changed, 0 if not, -ENOMEM. */
static int on_addr_msg(struct hostaddr *h, const struct nlmsghdr *nlh)
{
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *tb[TB_SIZE] = {0};
    if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*ifa)) ||
        (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
        return 0;
    if (mnl_attr_parse(nlh, sizeof(*ifa), attr_cb, tb) < 0)
        return 0;
    /* IFA_LOCAL is the address itself; on a point-to-point link IFA_ADDRESS is the peer's. */
    struct fact f = {.ifindex = ifa->ifa_index};
    if (!addr_from_attr(tb[IFA_LOCAL], ifa->ifa_family, &f.addr) &&
        !addr_from_attr(tb[IFA_ADDRESS], ifa->ifa_family, &f.addr))
        return 0;
    if (nlh->nlmsg_type == RTM_DELADDR)
        return facts_del(&h->addrs, &f) ? 1 : 0;
    ifname_of(f.ifindex, f.ifname);
    return facts_add(&h->addrs, &f);
}

static int add_gateway(struct hostaddr *h, const struct addr *a, unsigned ifindex)
{
    struct fact f = {.addr = *a, .ifindex = ifindex};
    ifname_of(ifindex, f.ifname);
    int r = facts_add(&h->gws, &f);
    return r < 0 ? r : 0;
}

/* A gateway attribute: RTA_GATEWAY of the route's family, or RTA_VIA (an IPv4 route through an
 * IPv6 next hop). */
static void gateway_of(const struct nlattr *gw, const struct nlattr *via, int family,
                       struct addr *ret, bool *ret_ok)
{
    *ret_ok = addr_from_attr(gw, family, ret);
    if (*ret_ok || !via || mnl_attr_get_payload_len(via) < sizeof(struct rtvia))
        return;
    const struct rtvia *v = mnl_attr_get_payload(via);
    size_t alen = mnl_attr_get_payload_len(via) - sizeof(*v);
    if ((v->rtvia_family == AF_INET && alen == 4) || (v->rtvia_family == AF_INET6 && alen == 16)) {
        memset(ret, 0, sizeof(*ret));
        ret->family = (uint8_t)v->rtvia_family;
        memcpy(ret->bytes, v->rtvia_addr, alen);
        *ret_ok = true;
    }
}

static bool is_default_route(const struct nlmsghdr *nlh)
{
    const struct rtmsg *rt = mnl_nlmsg_get_payload(nlh);
    return nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(*rt)) &&
           (rt->rtm_family == AF_INET || rt->rtm_family == AF_INET6) && rt->rtm_dst_len == 0 &&
           rt->rtm_type == RTN_UNICAST && !(rt->rtm_flags & RTM_F_CLONED);
}

/* One route of a dump: its gateways, if it is a default route. */
static int on_route_msg(struct hostaddr *h, const struct nlmsghdr *nlh)
{
    if (nlh->nlmsg_type != RTM_NEWROUTE || !is_default_route(nlh))
        return 0;
    const struct rtmsg *rt = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *tb[TB_SIZE] = {0};
    if (mnl_attr_parse(nlh, sizeof(*rt), attr_cb, tb) < 0)
        return 0;
    struct addr a;
    bool ok;
    unsigned oif = tb[RTA_OIF] && mnl_attr_get_payload_len(tb[RTA_OIF]) == 4
                       ? mnl_attr_get_u32(tb[RTA_OIF])
                       : 0;
    gateway_of(tb[RTA_GATEWAY], tb[RTA_VIA], rt->rtm_family, &a, &ok);
    if (ok && add_gateway(h, &a, oif) < 0)
        return -ENOMEM;
    if (!tb[RTA_MULTIPATH])
        return 0;
    /* Next hops: struct rtnexthop, each followed by its own attributes. */
    const char *p = mnl_attr_get_payload(tb[RTA_MULTIPATH]);
    size_t left = mnl_attr_get_payload_len(tb[RTA_MULTIPATH]);
    while (left >= sizeof(struct rtnexthop)) {
        const struct rtnexthop *nh = (const struct rtnexthop *)p;
        if (nh->rtnh_len < sizeof(*nh) || nh->rtnh_len > left)
            break;
        const struct nlattr *gw = NULL, *via = NULL;
        const char *ap = p + RTNH_LENGTH(0), *aend = p + nh->rtnh_len;
        while (ap < aend) {
            const struct nlattr *attr = (const struct nlattr *)ap;
            if (!mnl_attr_ok(attr, (int)(aend - ap)))
                break;
            if (mnl_attr_get_type(attr) == RTA_GATEWAY)
                gw = attr;
            else if (mnl_attr_get_type(attr) == RTA_VIA)
                via = attr;
            ap += MNL_ALIGN(attr->nla_len);
        }
        gateway_of(gw, via, rt->rtm_family, &a, &ok);
        if (ok && add_gateway(h, &a, (unsigned)nh->rtnh_ifindex) < 0)
            return -ENOMEM;
        size_t step = RTNH_ALIGN(nh->rtnh_len);
        if (step >= left)
            break;
        p += step;
        left -= step;
    }
    return 0;
}

/* Receives one datagram from the kernel. Any local process may send to our port: what does not
 * come from the kernel (port 0) is dropped, so nobody can forge an RTM_DELADDR and unprotect
 * the host. Returns the length, or -errno (-EAGAIN when nothing is left). */
static ssize_t nl_recv(int fd, char *buf, size_t len)
{
    for (;;) {
        struct sockaddr_nl src;
        socklen_t srclen = sizeof(src);
        ssize_t n = recvfrom(fd, buf, len, 0, (struct sockaddr *)&src, &srclen);
        if (n < 0)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (srclen == sizeof(src) && src.nl_family == AF_NETLINK && src.nl_pid == 0)
            return n;
    }
}

/* ---- dumps ----------------------------------------------------------------------------------- */

struct dump_ctx {
    struct hostaddr *h;
    int err;
    bool interrupted;
};

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
    struct dump_ctx *d = data;
    if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
        d->interrupted = true;
    int r = 0;
    if (nlh->nlmsg_type == RTM_NEWADDR)
        r = on_addr_msg(d->h, nlh);
    else if (nlh->nlmsg_type == RTM_NEWROUTE)
        r = on_route_msg(d->h, nlh);
    if (r < 0) {
        d->err = r;
        return MNL_CB_ERROR;
    }
    return MNL_CB_OK;
}

/* Dumps every address (RTM_GETADDR) or route (RTM_GETROUTE) of both families into the lists. */
static int dump(struct hostaddr *h, uint16_t type)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(h->buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = ++h->seq;
    if (type == RTM_GETADDR) {
        struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
        ifa->ifa_family = AF_UNSPEC;
    } else {
        struct rtmsg *rt = mnl_nlmsg_put_extra_header(nlh, sizeof(*rt));
        rt->rtm_family = AF_UNSPEC;
    }
    uint32_t seq = nlh->nlmsg_seq, portid = mnl_socket_get_portid(h->dump);
    if (mnl_socket_sendto(h->dump, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    struct dump_ctx d = {.h = h};
    for (;;) {
        ssize_t n = nl_recv(mnl_socket_get_fd(h->dump), h->buf, NL_BUF_SIZE);
        if (n < 0)
            return n == -EAGAIN ? -ETIMEDOUT : (int)n;
        int r = mnl_cb_run(h->buf, (size_t)n, seq, portid, dump_cb, &d);
        if (r < 0)
            return d.err ? d.err : -errno;
        if (r == MNL_CB_STOP)
            break;
    }
    return d.interrupted ? -EINTR : 0;
}

/* Reads the lists again from scratch; a dump that the kernel says was interrupted by a change
 * is repeated. */
static int read_addrs(struct hostaddr *h)
{
    int r = -EINTR;
    for (int i = 0; i < DUMP_TRIES && r == -EINTR; i++) {
        h->addrs.n = 0;
        r = dump(h, RTM_GETADDR);
    }
    return r;
}

static int read_gateways(struct hostaddr *h)
{
    int r = -EINTR;
    for (int i = 0; i < DUMP_TRIES && r == -EINTR; i++) {
        h->gws.n = 0;
        r = dump(h, RTM_GETROUTE);
    }
    return r;
}

static bool same_facts(const struct fact *a, unsigned na, const struct fact_list *b)
{
    if (na != b->n)
        return false;
    for (unsigned i = 0; i < na; i++) {
        bool found = false;
        for (unsigned k = 0; k < b->n && !found; k++)
            found = a[i].ifindex == b->v[k].ifindex && addr_equal(&a[i].addr, &b->v[k].addr);
        if (!found)
            return false;
    }
    return true;
}

/* Reads one list again and reports it if it changed. */
static int reread(struct hostaddr *h, enum policy_source src)
{
    struct fact_list *l = src == POLICY_SRC_HOST ? &h->addrs : &h->gws;
    struct fact *old = l->n ? malloc(l->n * sizeof(*old)) : NULL;
    unsigned nold = l->n;
    if (nold && !old)
        return -ENOMEM;
    if (nold)
        memcpy(old, l->v, nold * sizeof(*old));
    int r = src == POLICY_SRC_HOST ? read_addrs(h) : read_gateways(h);
    if (r < 0) {
        /* Keep what was known: forgetting it would unprotect the host. */
        if (nold)
            memcpy(l->v, old, nold * sizeof(*old));
        l->n = nold;
    } else if (!same_facts(old, nold, l)) {
        report(h, src);
    }
    free(old);
    return r;
}

/* ---- notifications --------------------------------------------------------------------------- */

struct mon_ctx {
    struct hostaddr *h;
    bool addrs_changed, routes_changed;
};

static int mon_cb(const struct nlmsghdr *nlh, void *data)
{
    struct mon_ctx *m = data;
    switch (nlh->nlmsg_type) {
    case RTM_NEWADDR:
    case RTM_DELADDR:
        if (on_addr_msg(m->h, nlh) != 0)
            m->addrs_changed = true;
        break;
    case RTM_NEWROUTE:
    case RTM_DELROUTE:
        if (is_default_route(nlh))
            m->routes_changed = true;
        break;
    }
    return MNL_CB_OK;
}

static void on_mon(struct loop *l, int fd, uint32_t events, void *data)
{
    struct hostaddr *h = data;
    struct mon_ctx m = {.h = h};
    bool lost = false;
    for (int i = 0; i < READS_PER_TURN; i++) {
        ssize_t n = nl_recv(fd, h->buf, NL_BUF_SIZE);
        if (n < 0) {
            if (n == -EINTR)
                continue;
            if (n == -ENOBUFS) {
                lost = true;
                continue;
            }
            break; /* EAGAIN: drained */
        }
        /* Notifications carry sequence 0 and the kernel's port id 0. */
        mnl_cb_run(h->buf, (size_t)n, 0, 0, mon_cb, &m);
    }
    if (lost) {
        log_info("host: rtnetlink notifications were lost; reading addresses and routes again");
        int r = reread(h, POLICY_SRC_HOST);
        int r2 = reread(h, POLICY_SRC_GATEWAY);
        if (r < 0 || r2 < 0)
            log_err("host: cannot read the host's addresses or routes again: %s",
                    strerror(-(r < 0 ? r : r2)));
        return;
    }
    if (m.addrs_changed && h->cfg.own_addresses)
        report(h, POLICY_SRC_HOST);
    if (m.routes_changed) {
        int r = reread(h, POLICY_SRC_GATEWAY);
        if (r < 0)
            log_err("host: cannot read the default routes again: %s", strerror(-r));
    }
}

static void close_netlink(struct hostaddr *h)
{
    loop_io_del(h->loop, &h->mon_io);
    if (h->mon)
        mnl_socket_close(h->mon);
    if (h->dump)
        mnl_socket_close(h->dump);
    h->mon = h->dump = NULL;
    h->addrs.n = h->gws.n = 0;
}

static int open_netlink(struct hostaddr *h)
{
    static const unsigned groups[] = {RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV4_ROUTE,
                                      RTNLGRP_IPV6_ROUTE};
    int r;
    h->mon = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
    h->dump = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!h->mon || !h->dump || mnl_socket_bind(h->mon, 0, MNL_SOCKET_AUTOPID) < 0 ||
        mnl_socket_bind(h->dump, 0, MNL_SOCKET_AUTOPID) < 0) {
        r = -errno;
        goto fail;
    }
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        if (mnl_socket_setsockopt(h->mon, NETLINK_ADD_MEMBERSHIP, (void *)&groups[i],
                                  sizeof(groups[i])) < 0) {
            r = -errno;
            goto fail;
        }
    }
    /* Room for a burst (an interface going down takes its addresses and routes with it). */
    int size = 1 << 20;
    if (setsockopt(mnl_socket_get_fd(h->mon), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
        setsockopt(mnl_socket_get_fd(h->mon), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    /* The kernel answers a dump at once; the bound only guards against the unexpected. */
    struct timeval tv = {.tv_sec = 2};
    setsockopt(mnl_socket_get_fd(h->dump), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if ((r = read_addrs(h)) < 0 || (r = read_gateways(h)) < 0)
        goto fail;
    r = loop_io_add(h->loop, &h->mon_io, mnl_socket_get_fd(h->mon), EPOLLIN, on_mon, h);
    if (r < 0)
        goto fail;
    return 0;
fail:
    close_netlink(h);
    return r;
}

/* ---- resolv.conf ----------------------------------------------------------------------------- */

static void split_path(const char *path, struct watch *w)
{
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    snprintf(w->dir, sizeof(w->dir), "%.*s", (int)(dlen ? dlen : 1), dlen ? path : "/");
    snprintf(w->name, sizeof(w->name), "%s", slash ? slash + 1 : path);
}

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

static void unwatch(struct hostaddr *h, struct watch *w, const struct watch *other)
{
    /* Two watches of one directory share one descriptor: remove it once. */
    if (w->wd >= 0 && (!other || other->wd != w->wd))
        inotify_rm_watch(h->ino, w->wd);
    w->wd = -1;
}

static void watch_dir(struct hostaddr *h, struct watch *w)
{
    w->wd = inotify_add_watch(h->ino, w->dir, WATCH_MASK);
    if (w->wd < 0 && !h->watch_warned) {
        h->watch_warned = true;
        log_warn("host: cannot watch %s for changes to %s: %s; its nameservers are read only at "
                 "start and on reload",
                 w->dir, h->cfg.resolv_conf, strerror(errno));
    }
}

/* resolv.conf is often a symlink (systemd-resolved, resolvconf): the file that changes is its
 * target, in another directory. Follows the link as it is now. */
static void update_target_watch(struct hostaddr *h)
{
    char real[PATH_MAX];
    struct watch t = {.wd = -1};
    if (realpath(h->cfg.resolv_conf, real) && strcmp(real, h->cfg.resolv_conf) != 0)
        split_path(real, &t);
    if (t.dir[0] && h->target.wd >= 0 && strcmp(t.dir, h->target.dir) == 0) {
        snprintf(h->target.name, sizeof(h->target.name), "%s", t.name);
        return;
    }
    unwatch(h, &h->target, &h->link);
    h->target = t;
    if (t.dir[0])
        watch_dir(h, &h->target);
}

static void read_resolvers(struct hostaddr *h, bool report_always)
{
    struct addr got[RESOLV_CONF_MAX_SERVERS];
    unsigned n = 0;
    int fd = open(h->cfg.resolv_conf, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd >= 0) {
        struct stat st;
        char *buf = malloc(RESOLV_CONF_MAX_BYTES);
        if (buf && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            size_t len = 0;
            ssize_t r;
            while (len < RESOLV_CONF_MAX_BYTES &&
                   (r = read(fd, buf + len, RESOLV_CONF_MAX_BYTES - len)) > 0)
                len += (size_t)r;
            n = resolv_conf_parse(buf, len, got, RESOLV_CONF_MAX_SERVERS);
        }
        free(buf);
        close(fd);
    } else if (errno != ENOENT) {
        log_warn("host: cannot read %s: %s", h->cfg.resolv_conf, strerror(errno));
    }
    bool same = n == h->nresolvers;
    for (unsigned i = 0; same && i < n; i++)
        same = addr_equal(&got[i], &h->resolvers[i]);
    memcpy(h->resolvers, got, n * sizeof(got[0]));
    h->nresolvers = n;
    if (!same || report_always)
        report_resolvers(h);
}

static void on_inotify(struct loop *l, int fd, uint32_t events, void *data)
{
    struct hostaddr *h = data;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool changed = false;
    for (int i = 0; i < READS_PER_TURN; i++) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
                changed = true; /* lost events, or a watched directory went away */
                if (ev->mask & IN_IGNORED) {
                    if (ev->wd == h->link.wd)
                        h->link.wd = -1;
                    if (ev->wd == h->target.wd)
                        h->target.wd = -1;
                }
                continue;
            }
            if (!ev->len)
                continue;
            if ((ev->wd == h->link.wd && strcmp(ev->name, h->link.name) == 0) ||
                (ev->wd == h->target.wd && strcmp(ev->name, h->target.name) == 0))
                changed = true;
        }
    }
    if (!changed)
        return;
    if (h->link.wd < 0)
        watch_dir(h, &h->link);
    update_target_watch(h);
    read_resolvers(h, false);
}

static void close_resolv(struct hostaddr *h)
{
    loop_io_del(h->loop, &h->ino_io);
    if (h->ino >= 0)
        close(h->ino);
    h->ino = -1;
    h->link.wd = h->target.wd = -1;
    h->nresolvers = 0;
}

static int open_resolv(struct hostaddr *h)
{
    h->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (h->ino < 0)
        return -errno;
    int r = loop_io_add(h->loop, &h->ino_io, h->ino, EPOLLIN, on_inotify, h);
    if (r < 0) {
        close(h->ino);
        h->ino = -1;
        return r;
    }
    h->watch_warned = false;
    split_path(h->cfg.resolv_conf, &h->link);
    h->link.wd = -1;
    h->target.wd = -1;
    watch_dir(h, &h->link);
    update_target_watch(h);
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static int apply(struct hostaddr *h, const struct cfg_protect *cfg)
{
    bool had_nl = h->mon != NULL, want_nl = cfg->own_addresses || cfg->gateways;
    bool had_res = h->ino >= 0, new_path = strcmp(h->cfg.resolv_conf, cfg->resolv_conf) != 0;
    struct cfg_protect old = h->cfg;

    h->cfg = *cfg;
    if (want_nl && !had_nl) {
        int r = open_netlink(h);
        if (r < 0) {
            log_err("host: cannot read the host's addresses and routes over rtnetlink: %s (set "
                    "[protect] own_addresses = no and gateways = no to run without)",
                    strerror(-r));
            h->cfg = old;
            return r;
        }
    } else if (!want_nl && had_nl) {
        close_netlink(h);
    }
    if (had_res && (!cfg->resolvers || new_path))
        close_resolv(h);
    if (cfg->resolvers && h->ino < 0) {
        int r = open_resolv(h);
        if (r < 0)
            log_warn("host: cannot watch %s (inotify: %s); its nameservers are read only at start "
                     "and on reload",
                     cfg->resolv_conf, strerror(-r));
    }
    report(h, POLICY_SRC_HOST);
    report(h, POLICY_SRC_GATEWAY);
    if (cfg->resolvers)
        read_resolvers(h, true);
    else
        report_resolvers(h);
    return 0;
}

struct hostaddr *hostaddr_new(struct loop *l, const struct cfg_protect *cfg, hostaddr_fn fn,
                              void *data)
{
    struct hostaddr *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->loop = l;
    h->fn = fn;
    h->data = data;
    h->ino = -1;
    h->link.wd = h->target.wd = -1;
    h->seq = (uint32_t)time(NULL);
    h->addrs.max = HOSTADDR_MAX;
    h->gws.max = GATEWAY_MAX;
    loop_io_init(&h->mon_io);
    loop_io_init(&h->ino_io);
    h->buf = malloc(NL_BUF_SIZE);
    if (!h->buf) {
        free(h);
        errno = ENOMEM;
        return NULL;
    }
    /* The first apply() compares against an empty setting. */
    h->cfg.resolv_conf[0] = '\0';
    int r = apply(h, cfg);
    if (r < 0) {
        hostaddr_free(h);
        errno = -r;
        return NULL;
    }
    return h;
}

int hostaddr_reconfigure(struct hostaddr *h, const struct cfg_protect *cfg)
{
    return apply(h, cfg);
}

void hostaddr_free(struct hostaddr *h)
{
    if (!h)
        return;
    close_netlink(h);
    close_resolv(h);
    free(h->addrs.v);
    free(h->gws.v);
    free(h->buf);
    free(h);
}
