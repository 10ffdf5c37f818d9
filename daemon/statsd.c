#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "statsd.h"
#include "statsd_name.h"

#define DEFAULT_PAYLOAD 1432
#define DEFAULT_INTERVAL_MS 1000

/* ---- the datagram packer (pure) ---- */

int statsd_pack_add(struct statsd_pack *p, const char *line, size_t len)
{
    if (len > p->cap)
        return -EMSGSIZE;
    size_t need = len + (p->len > 0 ? 1 : 0);
    if (p->len + need > p->cap)
        return -ENOSPC;
    if (p->len > 0)
        p->buf[p->len++] = '\n';
    memcpy(p->buf + p->len, line, len);
    p->len += len;
    p->lines++;
    return 0;
}

void statsd_pack_reset(struct statsd_pack *p)
{
    p->len = 0;
    p->lines = 0;
}

/* ---- the per-interval address set (pure) ---- */

/* A slot is in use when its generation is the set's current one, so emptying the set at the end
 * of an interval is one increment, not a memset. */
struct addr_slot {
    uint32_t gen;
    uint8_t family;
    uint8_t transport;
    uint8_t bytes[16];
};

struct statsd_addrset {
    struct addr_slot *slots;
    uint32_t mask;
    uint32_t gen;
    unsigned n;
    unsigned limit;
    uint64_t interval_ms;
    uint64_t start_ms;
    bool started;
    uint64_t seed; /* addresses are attacker-chosen: a keyed hash keeps probe chains short */
};

struct statsd_addrset *statsd_addrset_new(unsigned limit, uint64_t interval_ms)
{
    struct statsd_addrset *set = calloc(1, sizeof(*set));
    if (!set)
        return NULL;
    if (limit > STATSD_ADDR_LIMIT_MAX)
        limit = STATSD_ADDR_LIMIT_MAX;
    set->limit = limit;
    set->interval_ms = interval_ms > 0 ? interval_ms : DEFAULT_INTERVAL_MS;
    set->gen = 1;
    if (limit > 0) {
        /* At most half full, so a probe for a new address ends soon. */
        uint32_t cap = 16;
        while (cap < 2 * limit)
            cap <<= 1;
        set->slots = calloc(cap, sizeof(*set->slots));
        if (!set->slots) {
            free(set);
            errno = ENOMEM;
            return NULL;
        }
        set->mask = cap - 1;
        if (getrandom(&set->seed, sizeof(set->seed), GRND_NONBLOCK) != sizeof(set->seed))
            set->seed = (uint64_t)loop_clock_mono_ms() * 0x9e3779b97f4a7c15ull;
    }
    return set;
}

void statsd_addrset_free(struct statsd_addrset *set)
{
    if (!set)
        return;
    free(set->slots);
    free(set);
}

static uint64_t slot_hash(uint64_t seed, const struct addr_slot *k)
{
    uint64_t h = (0xcbf29ce484222325ull ^ seed ^ k->family) * 0x100000001b3ull;
    h = (h ^ k->transport) * 0x100000001b3ull;
    for (size_t i = 0; i < sizeof(k->bytes); i++)
        h = (h ^ k->bytes[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

bool statsd_addrset_admit(struct statsd_addrset *set, const struct sec_endpoint *ep,
                          uint64_t now_ms)
{
    if (set->limit == 0)
        return true;
    if (!set->started || now_ms - set->start_ms >= set->interval_ms) {
        set->started = true;
        set->start_ms = now_ms;
        set->n = 0;
        if (++set->gen == 0) {
            memset(set->slots, 0, (size_t)(set->mask + 1) * sizeof(*set->slots));
            set->gen = 1;
        }
    }
    struct addr_slot key = {.family = ep->addr.family, .transport = (uint8_t)ep->transport};
    memcpy(key.bytes, ep->addr.bytes, sizeof(key.bytes));
    uint32_t i = (uint32_t)slot_hash(set->seed, &key) & set->mask;
    for (;;) {
        struct addr_slot *s = &set->slots[i];
        if (s->gen != set->gen)
            break;
        if (s->family == key.family && s->transport == key.transport &&
            memcmp(s->bytes, key.bytes, sizeof(key.bytes)) == 0)
            return true;
        i = (i + 1) & set->mask;
    }
    if (set->n >= set->limit)
        return false;
    key.gen = set->gen;
    set->slots[i] = key;
    set->n++;
    return true;
}

/* ---- the emitter ---- */

struct statsd {
    bool enabled;
    int fd;
    /* The resolved server. A connect() that failed (no route yet at boot, a blackhole or
     * unreachable route) is retried at most once per flush interval, without resolving again. */
    struct sockaddr_storage server;
    socklen_t server_len;
    bool connected;
    int connect_errno;
    uint64_t connect_tried_ms;
    uint64_t retry_ms;
    char prefix[STATSD_PREFIX_MAX];
    char own_prefix[STATSD_PREFIX_MAX];
    const char *type; /* "c" or "m" for the res_auth_stats meters */
    bool per_address;
    struct statsd_addrset *addrs;
    struct statsd_pack pack;
    struct statsd_stats st;
    uint64_t report_dropped;    /* lines dropped since the last report */
    uint64_t report_suppressed; /* lines suppressed since the last report */
    struct metrics *metrics;    /* the same meters, kept for Prometheus; may be NULL */
};

struct endpoint {
    int fd;
    struct sockaddr_storage sa;
    socklen_t len;
    int connect_errno; /* 0 = connected */
};

/* The first address of host that a UDP socket connects to or, if none does, the first one a
 * socket could be made for (connected later). Resolution may block (a name), which is why it
 * happens only at start and reload. */
static int open_socket(const char *host, uint16_t port, struct endpoint *ret)
{
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, portstr, &hints, &res);
    if (r != 0)
        return r == EAI_SYSTEM ? -errno : (r == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH);
    int err = -EHOSTUNREACH;
    struct endpoint fallback = {.fd = -1};
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(fallback.sa))
            continue;
        int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        struct endpoint e = {.fd = fd, .len = ai->ai_addrlen};
        memcpy(&e.sa, ai->ai_addr, ai->ai_addrlen);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            if (fallback.fd >= 0)
                close(fallback.fd);
            freeaddrinfo(res);
            *ret = e;
            return 0;
        }
        e.connect_errno = errno;
        if (fallback.fd < 0)
            fallback = e;
        else
            close(fd);
    }
    freeaddrinfo(res);
    if (fallback.fd < 0)
        return err;
    *ret = fallback;
    return 0;
}

static void maybe_reconnect(struct statsd *s)
{
    uint64_t now = loop_clock_mono_ms();
    if (s->connect_tried_ms != 0 && now - s->connect_tried_ms < s->retry_ms)
        return;
    s->connect_tried_ms = now ? now : 1;
    if (connect(s->fd, (const struct sockaddr *)&s->server, s->server_len) == 0) {
        s->connected = true;
        s->connect_errno = 0;
    } else {
        s->connect_errno = errno;
    }
}

static void send_pending(struct statsd *s)
{
    if (s->pack.len == 0)
        return;
    if (s->fd >= 0 && !s->connected)
        maybe_reconnect(s);
    ssize_t r = -1;
    int err = EBADF;
    if (s->fd >= 0 && s->connected) {
        r = send(s->fd, s->pack.buf, s->pack.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        err = r < 0 ? errno : EMSGSIZE;
    } else if (s->fd >= 0) {
        err = s->connect_errno;
    }
    if (r >= 0 && (size_t)r == s->pack.len) {
        s->st.datagrams_sent++;
        s->st.lines_sent += s->pack.lines;
    } else {
        /* Dropped, never retried: a slow or absent server must not hold memory or time. */
        s->st.send_errno = (uint64_t)err;
        s->st.datagrams_dropped++;
        s->st.lines_dropped += s->pack.lines;
        s->report_dropped += s->pack.lines;
    }
    statsd_pack_reset(&s->pack);
}

static void emit(struct statsd *s, const char *line, size_t len)
{
    int r = statsd_pack_add(&s->pack, line, len);
    if (r == -ENOSPC) {
        send_pending(s);
        r = statsd_pack_add(&s->pack, line, len);
    }
    if (r < 0) {
        s->st.lines_dropped++;
        s->report_dropped++;
    }
}

static void emit_metric(struct statsd *s, const char *prefix, const char *name, int64_t v,
                        const char *type)
{
    char line[STATSD_LINE_MAX];
    int n = statsd_line(line, sizeof(line), prefix, name, v, type);
    if (n < 0) {
        s->st.lines_dropped++;
        s->report_dropped++;
        return;
    }
    emit(s, line, (size_t)n);
}

/* Everything a configuration decides, built aside so that a failed reload changes nothing. */
struct setup {
    struct endpoint ep;
    struct statsd_addrset *addrs;
    char *buf;
    size_t cap;
};

static int setup_build(const struct cfg_statsd *cfg, struct setup *ret)
{
    struct setup su = {.ep.fd = -1};
    size_t cap = cfg->max_payload ? cfg->max_payload : DEFAULT_PAYLOAD;
    if (cap < STATSD_PAYLOAD_MIN)
        cap = STATSD_PAYLOAD_MIN;
    if (cap > STATSD_PAYLOAD_MAX)
        cap = STATSD_PAYLOAD_MAX;
    su.cap = cap;
    if (!cfg->enabled) {
        *ret = su;
        return 0;
    }
    int r = open_socket(cfg->host, cfg->port, &su.ep);
    if (r < 0)
        return r;
    su.buf = malloc(cap);
    unsigned limit = cfg->per_address ? cfg->per_address_limit : 0;
    su.addrs = statsd_addrset_new(
        limit, cfg->flush_interval_ms > 0 ? (uint64_t)cfg->flush_interval_ms : DEFAULT_INTERVAL_MS);
    if (!su.buf || !su.addrs) {
        close(su.ep.fd);
        free(su.buf);
        statsd_addrset_free(su.addrs);
        return -ENOMEM;
    }
    *ret = su;
    return 0;
}

static void apply(struct statsd *s, const struct cfg_statsd *cfg, struct setup *su)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->pack.buf);
    statsd_addrset_free(s->addrs);
    s->enabled = cfg->enabled;
    s->fd = su->ep.fd;
    s->server = su->ep.sa;
    s->server_len = su->ep.len;
    s->connected = su->ep.fd >= 0 && su->ep.connect_errno == 0;
    s->connect_errno = su->ep.connect_errno;
    s->connect_tried_ms = loop_clock_mono_ms();
    s->retry_ms =
        cfg->flush_interval_ms > 0 ? (uint64_t)cfg->flush_interval_ms : DEFAULT_INTERVAL_MS;
    s->addrs = su->addrs;
    s->pack = (struct statsd_pack){.buf = su->buf, .cap = su->cap};
    s->per_address = cfg->per_address;
    s->type = cfg->type == CFG_STATSD_METER ? "m" : "c";
    statsd_name_prefix(cfg->prefix, s->prefix, sizeof(s->prefix));
    statsd_name_prefix(cfg->own_prefix, s->own_prefix, sizeof(s->own_prefix));
}

struct statsd *statsd_new(const struct cfg_statsd *cfg)
{
    struct statsd *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fd = -1;
    struct setup su;
    int r = setup_build(cfg, &su);
    if (r < 0) {
        free(s);
        errno = -r;
        return NULL;
    }
    apply(s, cfg, &su);
    return s;
}

int statsd_reload(struct statsd *s, const struct cfg_statsd *cfg)
{
    struct setup su;
    int r = setup_build(cfg, &su);
    if (r < 0)
        return r;
    statsd_flush(s);
    apply(s, cfg, &su);
    return 0;
}

void statsd_free(struct statsd *s)
{
    if (!s)
        return;
    statsd_flush(s);
    if (s->fd >= 0)
        close(s->fd);
    free(s->pack.buf);
    statsd_addrset_free(s->addrs);
    free(s);
}

void statsd_set_metrics(struct statsd *s, struct metrics *m)
{
    s->metrics = m;
}

/* A meter given by its StatsD name, kept as its Prometheus series (if it has one). */
static void keep(struct statsd *s, const char *own_name, const char *sub, int64_t v, bool gauge)
{
    if (!s->metrics)
        return;
    int f = metrics_family_of_statsd(own_name);
    if (f < 0)
        return;
    if (gauge)
        metrics_set(s->metrics, (enum metrics_family)f, sub, NULL, (double)v);
    else
        metrics_add(s->metrics, (enum metrics_family)f, sub, NULL, (double)v);
}

void statsd_failed_auth_at(struct statsd *s, const struct sec_event *ev, uint64_t now_ms)
{
    if (s->metrics) {
        char svc[SEC_SERVICE_MAX + 1];
        size_t n = strnlen(ev->service, SEC_SERVICE_MAX);
        memcpy(svc, ev->service, n);
        svc[n] = '\0';
        metrics_add(s->metrics, METRICS_FAILED_AUTH, svc, sec_event_type_name(ev->type), 1);
    }
    if (!s->enabled)
        return;
    char name[STATSD_NAME_MAX];
    if (statsd_name_failed_auth(ev->service, NULL, name, sizeof(name)) >= 0)
        emit_metric(s, s->prefix, name, 1, s->type);
    if (!s->per_address)
        return;
    if (!statsd_addrset_admit(s->addrs, &ev->remote, now_ms)) {
        s->st.lines_suppressed++;
        s->report_suppressed++;
        return;
    }
    if (statsd_name_failed_auth(ev->service, &ev->remote, name, sizeof(name)) >= 0)
        emit_metric(s, s->prefix, name, 1, s->type);
}

void statsd_failed_auth(struct statsd *s, const struct sec_event *ev)
{
    statsd_failed_auth_at(s, ev, loop_clock_mono_ms());
}

void statsd_count(struct statsd *s, const char *own_name, int64_t v)
{
    keep(s, own_name, NULL, v, false);
    if (s->enabled)
        emit_metric(s, s->own_prefix, own_name, v, "c");
}

void statsd_count_by(struct statsd *s, const char *own_name, const char *sub, int64_t v)
{
    keep(s, own_name, sub, v, false);
    if (!s->enabled)
        return;
    char name[STATSD_NAME_MAX];
    size_t n = strnlen(own_name, sizeof(name) - 2);
    memcpy(name, own_name, n);
    name[n++] = '.';
    statsd_name_segment(sub, strlen(sub), false, name + n, sizeof(name) - n);
    emit_metric(s, s->own_prefix, name, v, "c");
}

void statsd_gauge(struct statsd *s, const char *own_name, int64_t v)
{
    keep(s, own_name, NULL, v, true);
    if (!s->enabled)
        return;
    /* StatsD reads a signed gauge value as a delta: an absolute negative is "0" then "-N". */
    if (v < 0)
        emit_metric(s, s->own_prefix, own_name, 0, "g");
    emit_metric(s, s->own_prefix, own_name, v, "g");
}

void statsd_flush(struct statsd *s)
{
    if (!s || !s->enabled)
        return;
    if (s->report_suppressed > 0) {
        uint64_t n = s->report_suppressed;
        s->report_suppressed = 0;
        emit_metric(s, s->own_prefix, STATSD_M_STATSD_SUPPRESSED, (int64_t)n, "c");
    }
    if (s->report_dropped > 0) {
        uint64_t n = s->report_dropped;
        s->report_dropped = 0;
        emit_metric(s, s->own_prefix, STATSD_M_STATSD_DROPPED, (int64_t)n, "c");
    }
    send_pending(s);
}

void statsd_get_stats(const struct statsd *s, struct statsd_stats *ret_stats)
{
    *ret_stats = s->st;
    ret_stats->buffered = s->pack.len;
    ret_stats->buffer_size = s->pack.cap;
}
