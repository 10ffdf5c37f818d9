/* Fleet mode over PostgreSQL (cluster.h): the link on the loop, the shared schema, the outbox
 * and the catch-up reads. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "build-config.h"
#include "cluster.h"
#include "log.h"

const char *cluster_state_name(enum cluster_state s)
{
    switch (s) {
    case CLUSTER_DISCONNECTED:
        return "disconnected";
    case CLUSTER_RESOLVING:
        return "resolving";
    case CLUSTER_CONNECTING:
        return "connecting";
    case CLUSTER_SETUP:
        return "catching up";
    case CLUSTER_READY:
        return "connected";
    }
    return "?";
}

#if !PBXGUARD_HAVE_LIBPQ

struct cluster *cluster_new(struct loop *l, const struct cfg_cluster *cfg, struct store *store,
                            struct judge *judge, struct statsd *statsd, struct cluster_sink sink)
{
    errno = ENOTSUP;
    return NULL;
}
void cluster_free(struct cluster *c)
{
}
bool cluster_needs_restart(const struct cluster *c, const struct cfg_cluster *cfg)
{
    return false;
}
void cluster_reload(struct cluster *c, const struct cfg_cluster *cfg)
{
}
void cluster_local(struct cluster *c, const struct verdict *v, int64_t now_ms)
{
}
void cluster_turn_end(struct cluster *c)
{
}
void cluster_get_status(const struct cluster *c, struct cluster_status *ret_status)
{
    memset(ret_status, 0, sizeof(*ret_status));
}

#else

#include <libpq-fe.h>

#include "pg_schema.h"
#include "resolver.h"

#define SINK "cluster"
#define CHANNEL "pbxguard_bans"
#define PUBLISH_BATCH 2000 /* changes per pbxguard_publish() call: a storm turn's worth */
#define READ_BATCH 1000    /* rows per catch-up read */
#define READ_STMT "pbxguard_read"
/* Numbers above the sequence's last value cannot be real ones: a row written past it by hand
 * must not carry the cursor over the rows to come. */
#define READ_SQL                                                                                   \
    "SELECT seq, prefix::text, deleted, CASE WHEN expires IS NULL THEN NULL ELSE "                 \
    "floor(extract(epoch FROM expires - now()) * 1000)::bigint END, node, reason, note FROM "      \
    "pbxguard_bans WHERE seq > $1::bigint AND seq <= (SELECT last_value FROM pbxguard_seq) "       \
    "ORDER BY seq LIMIT $2::integer"
#define PENDING_MAX 16384 /* changes held in memory; the rest wait in the store's outbox */
#define TARGETS_MAX 32    /* hosts tried per round (after expanding names to addresses) */
#define ADDRS_PER_NAME 4
#define BACKOFF_MIN_MS 200 /* a failover is found within about a second */
#define BACKOFF_MAX_MS 1000
#define BACKOFF_SLOW_MS                                                                            \
    10000 /* after a minute of failures: 500 nodes must not hammer a dead host */
#define BACKOFF_SLOW_AFTER_MS 60000
#define PRUNE_INTERVAL_MS (3600 * 1000)
#define REFUSED_LOG_INTERVAL_MS 10000
#define ERROR_LOG_INTERVAL_MS 30000
/* Advisory lock keys: "pbx1" for migrations (the other one, "pbx2", is in pbxguard_publish()). */
#define MIGRATE_LOCK "1885435953"

/* One local ban change to publish. outbox_id 0: a re-publication of an active ban (not in the
 * store's outbox). */
struct change {
    int64_t outbox_id;
    bool unban;
    struct addr_prefix prefix;
    int64_t start_ms, expires_ms; /* wall clock; expires 0 = permanent */
    enum store_ban_reason reason;
    char note[STORE_NOTE_MAX];
};

struct queue {
    struct change *v;
    size_t head, tail, cap;
};

struct target {
    char host[CFG_HOST_MAX];
    char hostaddr[64];
    char port[16];
};

enum step {
    STEP_NONE = 0,
    STEP_MIGRATE_LOCK, /* version under the advisory lock */
    STEP_MIGRATE,      /* the missing migrations and COMMIT */
    STEP_LISTEN,       /* LISTEN, and whether the server is a primary */
    STEP_PREPARE,      /* the catch-up read, prepared */
    STEP_CATCHUP,      /* rows above the cursor */
    STEP_PUBLISH,      /* pbxguard_publish() */
    STEP_PRUNE,        /* pbxguard_prune() */
};

struct cluster {
    struct loop *loop;
    struct cfg_cluster cfg;
    struct store *store;
    struct judge *judge;
    struct statsd *statsd;
    struct cluster_sink sink;
    char origin[STORE_WHO_MAX]; /* "cluster:NODE" of this node, for what it lifts */

    enum cluster_state state;
    PGconn *conn;
    struct loop_io io;
    uint32_t io_events;
    struct loop_timer retry_timer, deadline_timer, catchup_timer;
    unsigned failures;         /* connect rounds failed in a row */
    uint64_t failing_since_ms; /* monotonic; 0 while connected */
    bool ever_connected;

    /* Connection string, parsed once: the hosts to try, in order. */
    char **host_list, **hostaddr_list, **port_list;
    unsigned nhost, nhostaddr, nport;
    struct resolver *resolver;
    struct target targets[TARGETS_MAX];
    unsigned ntargets, next_target;
    struct target current;

    enum step step;
    unsigned schema_version; /* read under the lock */
    bool catchup_wanted, last_was_publish;
    uint64_t next_prune_ms;

    /* Changes to publish: the re-publication of active bans after a (re)connect first, then
     * the outbox. Each queue holds at most PENDING_MAX; the outbox's overflow stays in the
     * store and is loaded as the queue drains (outbox_loaded_to: the last id in memory). */
    struct queue republish, pending;
    int64_t outbox_loaded_to;
    bool outbox_overflow;
    size_t inflight; /* changes of the publish call in flight */
    bool inflight_republish;
    uint64_t outbox_count; /* in the store, acknowledged ones deleted */

    int64_t cursor, known_top;
    bool primary;
    int64_t connected_ms;
    uint64_t published, received, refused, reconnects;
    char last_error[256];
    int64_t last_error_ms;
    uint64_t last_error_log_ms;
    uint64_t refused_log_ms;
    unsigned long refused_unlogged;
    unsigned long applied_unlogged;
};

static void drop_link(struct cluster *c, const char *why, bool log);
static void dispatch(struct cluster *c);
static void start_round(struct cluster *c);

/* --- small helpers --- */

static void set_error(struct cluster *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct cluster *c, const char *fmt, ...)
{
    va_list ap;
    char raw[sizeof(c->last_error)];
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    /* libpq's messages end in a newline and may quote the server's text. */
    raw[strcspn(raw, "\n")] = '\0';
    log_escape(raw, strlen(raw), c->last_error, sizeof(c->last_error));
    c->last_error_ms = loop_wall_ms(c->loop);
}

static size_t queue_len(const struct queue *q)
{
    return q->tail - q->head;
}

static struct change *queue_at(struct queue *q, size_t i)
{
    return &q->v[q->head + i];
}

static int queue_push(struct queue *q, const struct change *ch)
{
    if (q->tail == q->cap && q->head) {
        memmove(q->v, q->v + q->head, queue_len(q) * sizeof(*q->v));
        q->tail -= q->head;
        q->head = 0;
    }
    if (q->tail == q->cap) {
        if (q->cap >= PENDING_MAX)
            return -ENOSPC;
        size_t cap = q->cap ? q->cap * 2 : 256;
        if (cap > PENDING_MAX)
            cap = PENDING_MAX;
        struct change *v = realloc(q->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        q->v = v;
        q->cap = cap;
    }
    q->v[q->tail++] = *ch;
    return 0;
}

static void queue_pop(struct queue *q, size_t n)
{
    q->head += n;
    if (q->head >= q->tail) {
        q->head = q->tail = 0;
        /* A drained queue gives its memory back: a storm's thousands are not kept for ever. */
        if (q->cap > 1024) {
            free(q->v);
            q->v = NULL;
            q->cap = 0;
        }
    }
}

static void queue_clear(struct queue *q)
{
    free(q->v);
    memset(q, 0, sizeof(*q));
}

static bool valid_node(const char *s)
{
    size_t n = strlen(s);
    if (!n || n >= CFG_NODE_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

/* Splits a libpq comma list ("db1,db2") into a NULL-terminated array; *ret_n gets the count
 * (0 for NULL or ""). */
static char **split_list(const char *s, unsigned *ret_n)
{
    *ret_n = 0;
    if (!s || !*s)
        return NULL;
    unsigned n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    char **v = calloc(n + 1, sizeof(*v));
    if (!v)
        return NULL;
    const char *p = s;
    for (unsigned i = 0; i < n; i++) {
        size_t len = strcspn(p, ",");
        v[i] = strndup(p, len);
        if (!v[i]) {
            for (unsigned k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return NULL;
        }
        p += len + (p[len] == ',');
    }
    *ret_n = n;
    return v;
}

static void free_list(char **v, unsigned n)
{
    for (unsigned i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* --- the connection string --- */

static int parse_conninfo(struct cluster *c)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(c->cfg.conninfo, &err);
    if (!opts) {
        set_error(c, "conninfo: %s", err ? err : "out of memory");
        PQfreemem(err);
        return -EINVAL;
    }
    int r = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !o->val[0])
            continue;
        if (!strcmp(o->keyword, "host"))
            c->host_list = split_list(o->val, &c->nhost);
        else if (!strcmp(o->keyword, "hostaddr"))
            c->hostaddr_list = split_list(o->val, &c->nhostaddr);
        else if (!strcmp(o->keyword, "port"))
            c->port_list = split_list(o->val, &c->nport);
        else if (!strcmp(o->keyword, "password"))
            r = -EPERM;
    }
    PQconninfoFree(opts);
    if (r == -EPERM) {
        set_error(c, "conninfo holds a password: put it in password_file");
        return r;
    }
    unsigned n = c->nhost > c->nhostaddr ? c->nhost : c->nhostaddr;
    if ((c->nhost && c->nhostaddr && c->nhost != c->nhostaddr) || (c->nport > 1 && c->nport != n)) {
        set_error(c, "conninfo: host, hostaddr and port must list as many entries each");
        return -EINVAL;
    }
    return 0;
}

static bool is_numeric(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Host i needs a lookup: a name, with no hostaddr given (a path is a Unix socket). */
static bool needs_lookup(const struct cluster *c, unsigned i)
{
    if (i < c->nhostaddr && c->hostaddr_list[i][0])
        return false;
    if (i >= c->nhost || !c->host_list[i][0])
        return false;
    const char *h = c->host_list[i];
    return h[0] != '/' && h[0] != '@' && !is_numeric(h);
}

static void add_target(struct cluster *c, const char *host, const char *hostaddr, unsigned i)
{
    if (c->ntargets == TARGETS_MAX)
        return;
    struct target *t = &c->targets[c->ntargets++];
    snprintf(t->host, sizeof(t->host), "%s", host ? host : "");
    snprintf(t->hostaddr, sizeof(t->hostaddr), "%s", hostaddr ? hostaddr : "");
    const char *port = c->nport == 1 ? c->port_list[0] : i < c->nport ? c->port_list[i] : "";
    snprintf(t->port, sizeof(t->port), "%s", port);
}

/* The database servers' addresses are protected: a ban of one would cut this node off. */
static void protect_targets(struct cluster *c)
{
    struct addr a[TARGETS_MAX];
    unsigned n = 0;
    for (unsigned i = 0; i < c->ntargets; i++) {
        const char *s = c->targets[i].hostaddr[0] ? c->targets[i].hostaddr : c->targets[i].host;
        if (addr_parse(s, strlen(s), &a[n]) == 0)
            n++;
    }
    if (c->sink.protect)
        c->sink.protect(c->sink.data, a, n);
}

/* The hosts to try this round, names replaced by their addresses (host kept for TLS). */
static void build_targets(struct cluster *c)
{
    c->ntargets = 0;
    c->next_target = 0;
    unsigned n = c->nhost > c->nhostaddr ? c->nhost : c->nhostaddr;
    if (n == 0) { /* libpq's default: the local socket */
        add_target(c, NULL, NULL, 0);
        return;
    }
    unsigned looked = 0;
    for (unsigned i = 0; i < n; i++) {
        const char *host = i < c->nhost ? c->host_list[i] : NULL;
        const char *ha = i < c->nhostaddr ? c->hostaddr_list[i] : NULL;
        if (!needs_lookup(c, i)) {
            add_target(c, host, ha && ha[0] ? ha : host && is_numeric(host) ? host : NULL, i);
            continue;
        }
        const struct addrinfo *ai = NULL;
        unsigned k = 0;
        if (c->resolver && resolver_result(c->resolver, looked, &ai) == 0) {
            for (; ai && k < ADDRS_PER_NAME; ai = ai->ai_next) {
                char a[64];
                const void *src =
                    ai->ai_family == AF_INET
                        ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
                if (!inet_ntop(ai->ai_family, src, a, sizeof(a)))
                    continue;
                add_target(c, host, a, i);
                k++;
            }
        }
        if (!k)
            set_error(c, "host %s: the name does not resolve", host);
        looked++;
    }
    protect_targets(c);
}

/* --- the link --- */

static void watch(struct cluster *c, uint32_t events);
static void on_io(struct loop *l, int fd, uint32_t events, void *data);

static uint64_t backoff_ms(struct cluster *c)
{
    uint64_t now = loop_now_ms(c->loop);
    if (c->failing_since_ms && now - c->failing_since_ms > BACKOFF_SLOW_AFTER_MS)
        return BACKOFF_SLOW_MS;
    uint64_t d = BACKOFF_MIN_MS << (c->failures < 4 ? c->failures : 4);
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    /* Jitter, so a fleet that lost its database does not come back in one burst. */
    return d + (uint64_t)(rand() % (int)(d / 4 + 1));
}

static void log_link_error(struct cluster *c, const char *what)
{
    uint64_t now = loop_now_ms(c->loop);
    if (c->last_error_log_ms && now - c->last_error_log_ms < ERROR_LOG_INTERVAL_MS) {
        log_debug("cluster: %s: %s", what, c->last_error);
        return;
    }
    c->last_error_log_ms = now ? now : 1;
    log_warn("cluster: %s: %s; local bans go on and are published once it answers (%llu "
             "waiting)",
             what, c->last_error, (unsigned long long)c->outbox_count);
}

static void close_conn(struct cluster *c)
{
    loop_io_del(c->loop, &c->io);
    c->io_events = 0;
    loop_timer_cancel(c->loop, &c->deadline_timer);
    if (c->conn)
        PQfinish(c->conn);
    c->conn = NULL;
    c->step = STEP_NONE;
    c->inflight = 0;
}

static void schedule_retry(struct cluster *c)
{
    c->state = CLUSTER_DISCONNECTED;
    if (!c->failing_since_ms)
        c->failing_since_ms = loop_now_ms(c->loop) ? loop_now_ms(c->loop) : 1;
    loop_timer_arm(c->loop, &c->retry_timer, backoff_ms(c));
    c->failures++;
}

/* The link is gone (or never came up): close it, say why, try again later. */
static void drop_link(struct cluster *c, const char *why_in, bool log)
{
    bool was_up = c->state == CLUSTER_SETUP || c->state == CLUSTER_READY;
    /* why may be libpq's message, which goes with the connection. */
    char why[sizeof(c->last_error)];
    snprintf(why, sizeof(why), "%s", why_in ? why_in : "");
    close_conn(c);
    c->connected_ms = 0;
    statsd_gauge(c->statsd, STATSD_M_CLUSTER_CONNECTED, 0);
    if (was_up) {
        set_error(c, "%s", why);
        log_warn("cluster: lost the link to %s: %s; reconnecting (local bans go on)",
                 c->current.host[0] ? c->current.host : "the database", c->last_error);
        c->failures = 0;
    } else if (log) {
        set_error(c, "%s", why);
        log_link_error(c, "cannot reach the fleet database");
    }
    schedule_retry(c);
}

static void next_target(struct cluster *c);
static void poll_connect(struct cluster *c);

static void on_deadline(struct loop *l, void *data)
{
    struct cluster *c = data;
    if (c->state == CLUSTER_CONNECTING) {
        set_error(c, "%s: no connection within %lld ms", c->current.host,
                  (long long)c->cfg.connect_timeout_ms);
        close_conn(c);
        next_target(c);
        return;
    }
    char why[128];
    snprintf(why, sizeof(why), "no answer within %lld ms (query_timeout)",
             (long long)c->cfg.query_timeout_ms);
    drop_link(c, why, true);
}

static void notice_ignored(void *arg, const char *message)
{
    /* libpq prints NOTICEs to stderr by default ("relation already exists, skipping"). */
}

/* One connection attempt to the next target of the round; at the end of the round, back off. */
static void next_target(struct cluster *c)
{
    while (c->next_target < c->ntargets) {
        struct target *t = &c->targets[c->next_target++];
        c->current = *t;
        const char *kw[16], *val[16];
        int n = 0;
        /* Before dbname: defaults the connection string may override. */
        kw[n] = "fallback_application_name", val[n++] = "pbxguardd";
        kw[n] = "keepalives_idle", val[n++] = "10";
        kw[n] = "keepalives_interval", val[n++] = "5";
        kw[n] = "keepalives_count", val[n++] = "3";
        kw[n] = "dbname", val[n++] = c->cfg.conninfo;
        /* After it: this attempt's host, and the password from password_file. */
        if (t->host[0])
            kw[n] = "host", val[n++] = t->host;
        if (t->hostaddr[0])
            kw[n] = "hostaddr", val[n++] = t->hostaddr;
        if (t->port[0])
            kw[n] = "port", val[n++] = t->port;
        if (c->cfg.password[0])
            kw[n] = "password", val[n++] = c->cfg.password;
        kw[n] = NULL, val[n] = NULL;
        c->conn = PQconnectStartParams(kw, val, 1);
        if (!c->conn) {
            set_error(c, "out of memory");
            break;
        }
        if (PQstatus(c->conn) == CONNECTION_BAD) {
            set_error(c, "%s: %s", t->host[0] ? t->host : "local socket", PQerrorMessage(c->conn));
            close_conn(c);
            continue;
        }
        PQsetNoticeProcessor(c->conn, notice_ignored, NULL);
        c->state = CLUSTER_CONNECTING;
        loop_timer_arm(c->loop, &c->deadline_timer, (uint64_t)c->cfg.connect_timeout_ms);
        /* After PQconnectStart, the first poll waits for the socket to be writable. */
        if (PQsocket(c->conn) < 0)
            poll_connect(c);
        else
            watch(c, EPOLLOUT);
        return;
    }
    log_link_error(c, "cannot reach the fleet database");
    schedule_retry(c);
}

static void on_resolved(void *data)
{
    struct cluster *c = data;
    build_targets(c);
    resolver_free(c->resolver);
    c->resolver = NULL;
    next_target(c);
}

static void start_round(struct cluster *c)
{
    unsigned n = c->nhost > c->nhostaddr ? c->nhost : c->nhostaddr, nnames = 0;
    const char *names[TARGETS_MAX];
    for (unsigned i = 0; i < n && nnames < TARGETS_MAX; i++)
        if (needs_lookup(c, i))
            names[nnames++] = c->host_list[i];
    if (nnames) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        c->resolver = resolver_start(c->loop, names, nnames, NULL, &hints, on_resolved, c);
        if (c->resolver) {
            c->state = CLUSTER_RESOLVING;
            return;
        }
        set_error(c, "cannot start a name lookup: %s", strerror(errno));
    }
    build_targets(c);
    next_target(c);
}

static void on_retry(struct loop *l, void *data)
{
    start_round(data);
}

/* (Re)registers libpq's socket. While connecting it may be another socket after each poll
 * (libpq retries without SSL on a new one), maybe with the number of the one it closed, which
 * epoll has forgotten: then it is always registered anew. */
static void watch(struct cluster *c, uint32_t events)
{
    int fd = c->conn ? PQsocket(c->conn) : -1;
    if (fd == c->io.fd && events == c->io_events && c->state != CLUSTER_CONNECTING)
        return;
    loop_io_del(c->loop, &c->io);
    c->io_events = 0;
    if (fd < 0)
        return;
    if (loop_io_add(c->loop, &c->io, fd, events, on_io, c) == 0)
        c->io_events = events;
}

/* --- queries --- */

static void arm_query_deadline(struct cluster *c)
{
    loop_timer_arm(c->loop, &c->deadline_timer, (uint64_t)c->cfg.query_timeout_ms);
}

/* After a send: what libpq could not write yet goes out when the socket is writable. */
static int sent(struct cluster *c, int ok, enum step step)
{
    if (!ok) {
        drop_link(c, PQerrorMessage(c->conn), true);
        return -EIO;
    }
    c->step = step;
    arm_query_deadline(c);
    int f = PQflush(c->conn);
    if (f < 0) {
        drop_link(c, PQerrorMessage(c->conn), true);
        return -EIO;
    }
    watch(c, EPOLLIN | (f ? EPOLLOUT : 0));
    return 0;
}

static int send_simple(struct cluster *c, const char *sql, enum step step)
{
    return sent(c, PQsendQuery(c->conn, sql), step);
}

static void send_migrate_lock(struct cluster *c)
{
    send_simple(c,
                "BEGIN; SELECT pg_advisory_xact_lock(" MIGRATE_LOCK "); "
                "CREATE TABLE IF NOT EXISTS pbxguard_schema (version integer NOT NULL); "
                "SELECT coalesce(max(version), 0) FROM pbxguard_schema",
                STEP_MIGRATE_LOCK);
}

static void send_migrate(struct cluster *c)
{
    if (c->schema_version > pg_schema_nmigrations) {
        char why[160];
        snprintf(why, sizeof(why),
                 "the fleet schema is version %u, newer than this pbxguardd knows (%u): upgrade "
                 "this node",
                 c->schema_version, pg_schema_nmigrations);
        PQsendQuery(c->conn, "ROLLBACK");
        drop_link(c, why, true);
        return;
    }
    size_t len = 128;
    for (unsigned i = c->schema_version; i < pg_schema_nmigrations; i++)
        len += strlen(pg_schema_migrations[i]) + 2;
    char *sql = malloc(len);
    if (!sql) {
        drop_link(c, "out of memory", true);
        return;
    }
    size_t o = 0;
    sql[0] = '\0';
    for (unsigned i = c->schema_version; i < pg_schema_nmigrations; i++)
        o += (size_t)snprintf(sql + o, len - o, "%s;\n", pg_schema_migrations[i]);
    if (c->schema_version < pg_schema_nmigrations)
        o += (size_t)snprintf(sql + o, len - o,
                              "DELETE FROM pbxguard_schema; INSERT INTO pbxguard_schema "
                              "VALUES (%u);\n",
                              pg_schema_nmigrations);
    snprintf(sql + o, len - o, "COMMIT");
    if (c->schema_version < pg_schema_nmigrations)
        log_notice("cluster: migrating the fleet schema from version %u to %u", c->schema_version,
                   pg_schema_nmigrations);
    send_simple(c, sql, STEP_MIGRATE);
    free(sql);
}

/* The catch-up read is prepared once per connection: every notification makes every node run
 * it, and parsing and planning it again each time cost the server more than reading the one
 * or two rows a single ban adds. */
static void send_prepare(struct cluster *c)
{
    sent(c, PQsendPrepare(c->conn, READ_STMT, READ_SQL, 2, NULL), STEP_PREPARE);
}

static void send_catchup(struct cluster *c)
{
    char cur[24], lim[16];
    snprintf(cur, sizeof(cur), "%lld", (long long)c->cursor);
    snprintf(lim, sizeof(lim), "%d", READ_BATCH);
    const char *params[2] = {cur, lim};
    c->catchup_wanted = false;
    c->last_was_publish = false;
    sent(c, PQsendQueryPrepared(c->conn, READ_STMT, 2, params, NULL, NULL, 0), STEP_CATCHUP);
}

/* Appends one element of a PostgreSQL array literal; NULL for s NULL. */
struct buf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void array_elem(struct buf *b, size_t i, const char *s)
{
    buf_str(b, i ? "," : "{");
    if (!s) {
        buf_str(b, "NULL");
        return;
    }
    buf_str(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_str(b, "\\");
        buf_add(b, s, 1);
    }
    buf_str(b, "\"");
}

static void array_end(struct buf *b, size_t n)
{
    buf_str(b, n ? "}" : "{}");
}

static void send_publish(struct cluster *c)
{
    struct queue *q = queue_len(&c->republish) ? &c->republish : &c->pending;
    size_t n = queue_len(q);
    if (n > PUBLISH_BATCH)
        n = PUBLISH_BATCH;
    struct buf a[6] = {0};
    int64_t now = loop_clock_wall_ms();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct change *ch = queue_at(q, i);
        char p[ADDR_STRLEN], ms[24], age[24], note[STORE_NOTE_MAX * 4];
        if (!ch->unban && ch->expires_ms && ch->expires_ms <= now)
            continue; /* ran out while it waited: nothing to tell */
        addr_prefix_format(&ch->prefix, p, sizeof(p));
        if (!strchr(p, '/'))
            snprintf(p + strlen(p), sizeof(p) - strlen(p), "/%u", ch->prefix.len);
        snprintf(ms, sizeof(ms), "%lld", (long long)(ch->expires_ms - now));
        snprintf(age, sizeof(age), "%lld",
                 (long long)(now > ch->start_ms ? now - ch->start_ms : 0));
        array_elem(&a[0], k, p);
        array_elem(&a[1], k, ch->unban || !ch->expires_ms ? NULL : ms);
        array_elem(&a[2], k, age);
        array_elem(&a[3], k, ch->unban ? "t" : "f");
        array_elem(&a[4], k, store_ban_reason_name(ch->reason));
        /* The admin's note may hold any bytes: the database gets it escaped, as ASCII. */
        array_elem(&a[5], k,
                   ch->note[0] ? log_escape(ch->note, strlen(ch->note), note, sizeof(note)) : NULL);
        k++;
    }
    for (int i = 0; i < 6; i++)
        array_end(&a[i], k);
    c->inflight = n;
    c->inflight_republish = q == &c->republish;
    c->last_was_publish = true;
    bool failed = false;
    for (int i = 0; i < 6; i++)
        failed |= a[i].failed;
    if (failed) {
        for (int i = 0; i < 6; i++)
            free(a[i].p);
        drop_link(c, "out of memory", true);
        return;
    }
    const char *params[7] = {a[0].p, a[1].p, a[2].p, a[3].p, a[4].p, a[5].p, c->cfg.node};
    sent(c,
         PQsendQueryParams(c->conn,
                           "SELECT pbxguard_publish($1::cidr[], $2::bigint[], $3::bigint[], "
                           "$4::boolean[], $5::text[], $6::text[], $7::text)",
                           7, NULL, params, NULL, NULL, 0),
         STEP_PUBLISH);
    for (int i = 0; i < 6; i++)
        free(a[i].p);
}

/* --- the outbox --- */

static int load_one(void *data, const struct store_outbox_entry *e)
{
    struct cluster *c = data;
    struct change ch = {.outbox_id = e->id,
                        .unban = e->unban,
                        .prefix = e->prefix,
                        .start_ms = e->start_ms,
                        .expires_ms = e->expires_ms,
                        .reason = e->reason};
    snprintf(ch.note, sizeof(ch.note), "%s", e->note);
    c->outbox_loaded_to = e->id;
    return queue_push(&c->pending, &ch) < 0 ? 1 : 0;
}

/* Loads what the store's outbox holds beyond what is in memory, as the memory queue drains. */
static void load_outbox(struct cluster *c)
{
    if (!c->outbox_overflow || queue_len(&c->pending))
        return;
    int64_t before = c->outbox_loaded_to;
    int r = store_outbox_list(c->store, SINK, c->outbox_loaded_to, PENDING_MAX / 2, load_one, c);
    if (r < 0) {
        log_err("cluster: cannot read the outbox: %s", store_strerror(r));
        return;
    }
    /* Fewer than asked: everything is in memory now, new changes go straight there. */
    if (queue_len(&c->pending) < PENDING_MAX / 2 || c->outbox_loaded_to == before)
        c->outbox_overflow = false;
}

void cluster_local(struct cluster *c, const struct verdict *v, int64_t now_ms)
{
    if (!c)
        return;
    struct change ch = {.prefix = v->prefix, .start_ms = now_ms};
    if (v->action == VERDICT_BAN) {
        if (v->reason == VERDICT_THRESHOLD && (c->cfg.publish & CFG_PUBLISH_THRESHOLD))
            ch.reason = STORE_BAN_THRESHOLD;
        else if (v->reason == VERDICT_MANUAL && (c->cfg.publish & CFG_PUBLISH_MANUAL))
            ch.reason = STORE_BAN_MANUAL;
        else
            return;
        ch.expires_ms = v->timeout_ms ? now_ms + v->timeout_ms : 0;
        struct store_ban b;
        if (ch.reason == STORE_BAN_MANUAL && store_ban_last(c->store, &v->prefix, &b) == 0)
            snprintf(ch.note, sizeof(ch.note), "%s", b.note);
    } else if (v->action == VERDICT_UNBAN && v->reason == VERDICT_MANUAL) {
        /* An unban on any node lifts the ban everywhere. */
        ch.unban = true;
        ch.reason = STORE_BAN_MANUAL;
    } else {
        return;
    }
    struct store_outbox_entry e = {.unban = ch.unban,
                                   .prefix = ch.prefix,
                                   .start_ms = ch.start_ms,
                                   .expires_ms = ch.expires_ms,
                                   .reason = ch.reason};
    snprintf(e.note, sizeof(e.note), "%s", ch.note);
    int r = store_outbox_add(c->store, SINK, &e, &ch.outbox_id);
    if (r < 0)
        log_err("cluster: cannot write the outbox: %s; the change is published from memory",
                store_strerror(r));
    else
        c->outbox_count++;
    if (c->outbox_overflow)
        return; /* in the store; loaded once the queue drains */
    if (queue_push(&c->pending, &ch) < 0) {
        if (r == 0) {
            c->outbox_overflow = true;
        } else {
            log_err("cluster: the outbox is full and the store failed: a change is lost for the "
                    "fleet");
        }
    } else if (r == 0) {
        c->outbox_loaded_to = ch.outbox_id;
    }
}

static int republish_one(void *data, const struct store_ban *b)
{
    struct cluster *c = data;
    if (!((b->reason == STORE_BAN_THRESHOLD && (c->cfg.publish & CFG_PUBLISH_THRESHOLD)) ||
          (b->reason == STORE_BAN_MANUAL && (c->cfg.publish & CFG_PUBLISH_MANUAL))))
        return 0;
    struct change ch = {.prefix = b->prefix,
                        .start_ms = b->start_ms,
                        .expires_ms = b->expires_ms,
                        .reason = b->reason};
    snprintf(ch.note, sizeof(ch.note), "%s", b->note);
    /* Bounded: past PENDING_MAX the oldest ones are the ones re-published; the rest are still
     * in the table unless the failover lost them. */
    return queue_push(&c->republish, &ch) == -ENOMEM ? -ENOMEM : 0;
}

/* After a (re)connect, every own active ban is published again: a failover may have lost the
 * last ones the old primary acknowledged. An unchanged one gets no new number. */
static void queue_republish(struct cluster *c)
{
    queue_clear(&c->republish);
    int r = store_bans_active(c->store, loop_clock_wall_ms(), republish_one, c);
    if (r < 0)
        log_err("cluster: cannot read the active bans to publish them again: %s",
                store_strerror(r));
}

/* --- reading the table --- */

static void note_refused(struct cluster *c, const char *prefix, const char *node,
                         enum judge_remote_refusal why, const char *detail)
{
    c->refused++;
    statsd_count_by(c->statsd, STATSD_M_CLUSTER_REFUSED, judge_remote_refusal_name(why), 1);
    uint64_t now = loop_now_ms(c->loop);
    if (c->refused_log_ms && now - c->refused_log_ms < REFUSED_LOG_INTERVAL_MS) {
        c->refused_unlogged++;
        return;
    }
    char more[96] = "";
    if (c->refused_unlogged)
        snprintf(more, sizeof(more), " (and %lu more refused since the last such line)",
                 c->refused_unlogged);
    log_warn("cluster: refused the ban of %s from node %s: %s%s", prefix, node,
             detail ? detail : judge_remote_refusal_name(why), more);
    c->refused_log_ms = now ? now : 1;
    c->refused_unlogged = 0;
}

static void apply_row(struct cluster *c, PGresult *res, int row, int64_t now_ms)
{
    char node[4 * CFG_NODE_MAX], prefix[4 * ADDR_STRLEN];
    const char *raw_node = PQgetvalue(res, row, 4);
    const char *raw_prefix = PQgetvalue(res, row, 1);
    log_escape(raw_node, strlen(raw_node), node, sizeof(node));
    log_escape(raw_prefix, strlen(raw_prefix), prefix, sizeof(prefix));
    if (!strcmp(raw_node, c->cfg.node))
        return; /* our own change, already enforced here */
    bool deleted = PQgetvalue(res, row, 2)[0] == 't';
    if (!deleted && !c->cfg.accept)
        return;
    struct addr_prefix p;
    const char *reason = PQgetvalue(res, row, 5);
    if (!valid_node(raw_node)) {
        note_refused(c, prefix, node, JUDGE_REMOTE_MALFORMED, "its node name is not a name");
        return;
    }
    if (addr_prefix_parse(raw_prefix, false, &p) < 0 || p.len > addr_max_len(&p.addr)) {
        note_refused(c, prefix, node, JUDGE_REMOTE_MALFORMED, "not a prefix");
        return;
    }
    char origin[STORE_WHO_MAX];
    snprintf(origin, sizeof(origin), "cluster:%s", raw_node);
    struct verdict v;
    if (deleted) {
        int r = judge_remote_unban(c->judge, &p, origin, now_ms, &v);
        if (r == 0) {
            c->received++;
            statsd_count(c->statsd, STATSD_M_CLUSTER_RECEIVED, 1);
            c->sink.apply(c->sink.data, &v);
        } else if (r != -ENOENT) {
            log_err("cluster: cannot lift %s here: %s", prefix, store_strerror(r));
        }
        return;
    }
    if (strcmp(reason, "threshold") != 0 && strcmp(reason, "manual") != 0) {
        note_refused(c, prefix, node, JUDGE_REMOTE_MALFORMED, "its reason is not one we know");
        return;
    }
    int64_t remaining = 0;
    if (!PQgetisnull(res, row, 3)) {
        remaining = strtoll(PQgetvalue(res, row, 3), NULL, 10);
        if (remaining <= 0)
            return; /* ran out already: nothing to enforce */
    }
    char note[STORE_NOTE_MAX];
    const char *raw_note = PQgetisnull(res, row, 6) ? "" : PQgetvalue(res, row, 6);
    log_escape(raw_note, strnlen(raw_note, STORE_NOTE_MAX), note, sizeof(note));
    struct judge_remote rb = {.prefix = p,
                              .remaining_ms = remaining,
                              .origin = origin,
                              .note = note,
                              .max_prefix4 = c->cfg.max_prefix4,
                              .max_prefix6 = c->cfg.max_prefix6};
    enum judge_remote_refusal why;
    int r = judge_remote_ban(c->judge, &rb, now_ms, &v, &why);
    if (r == -EPERM) {
        char detail[300];
        if (why == JUDGE_REMOTE_WIDER_THAN_ACCEPTED)
            snprintf(detail, sizeof(detail),
                     "wider than the widest remote ban accepted ([cluster] max_prefix4 = %u, "
                     "max_prefix6 = %u)",
                     c->cfg.max_prefix4, c->cfg.max_prefix6);
        else if (why == JUDGE_REMOTE_BAD_EXPIRY)
            snprintf(detail, sizeof(detail),
                     "it would run out more than 100 years from now (a sender that means "
                     "forever says permanent)");
        else
            snprintf(detail, sizeof(detail),
                     "%s (a ban here would break [protect] or "
                     "[whitelist]; `pbxguard show ADDR` says which)",
                     judge_remote_refusal_name(why));
        note_refused(c, prefix, node, why, detail);
        return;
    }
    if (r < 0) {
        log_err("cluster: cannot record the ban of %s from node %s: %s", prefix, node,
                store_strerror(r));
        return;
    }
    c->received++;
    statsd_count(c->statsd, STATSD_M_CLUSTER_RECEIVED, 1);
    if (v.action == VERDICT_BAN) {
        c->sink.apply(c->sink.data, &v);
        c->applied_unlogged++;
        log_debug("cluster: banned %s (from node %s)", prefix, node);
    }
}

static void on_catchup_rows(struct cluster *c, PGresult *res)
{
    int n = PQntuples(res);
    if (PQnfields(res) < 7)
        n = 0;
    int64_t now = loop_wall_ms(c->loop), top = c->cursor;
    for (int i = 0; i < n; i++) {
        int64_t seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        if (seq > top)
            top = seq;
        apply_row(c, res, i, now);
    }
    if (top > c->cursor) {
        c->cursor = top;
        int r = store_cursor_set(c->store, SINK, top, now);
        if (r < 0)
            log_err("cluster: cannot save the cursor: %s", store_strerror(r));
    }
    /* A full batch: more is waiting. Less: this is the top now (whatever a NOTIFY claimed). */
    if (n == READ_BATCH)
        c->catchup_wanted = true;
    else
        c->known_top = c->cursor;
    if (c->cursor > c->known_top)
        c->known_top = c->cursor;
    if (c->applied_unlogged && !c->catchup_wanted) {
        log_info("cluster: %lu ban%s from the fleet applied", c->applied_unlogged,
                 c->applied_unlogged == 1 ? "" : "s");
        c->applied_unlogged = 0;
    }
}

static void on_notify(struct cluster *c)
{
    PGnotify *nt;
    while ((nt = PQnotifies(c->conn))) {
        int64_t seq = nt->extra ? strtoll(nt->extra, NULL, 10) : 0;
        if (seq > c->known_top)
            c->known_top = seq;
        /* Only a wake-up: the table says what changed. */
        if (seq <= 0 || seq > c->cursor)
            c->catchup_wanted = true;
        PQfreemem(nt);
    }
}

/* --- results --- */

static void publish_done(struct cluster *c)
{
    struct queue *q = c->inflight_republish ? &c->republish : &c->pending;
    int64_t upto = 0;
    for (size_t i = 0; i < c->inflight && i < queue_len(q); i++)
        if (queue_at(q, i)->outbox_id > upto)
            upto = queue_at(q, i)->outbox_id;
    if (!c->inflight_republish) {
        c->published += c->inflight;
        statsd_count(c->statsd, STATSD_M_CLUSTER_PUBLISHED, (int64_t)c->inflight);
    }
    queue_pop(q, c->inflight);
    c->inflight = 0;
    if (upto) {
        int r = store_outbox_delete(c->store, SINK, upto);
        if (r < 0)
            log_err("cluster: cannot empty the outbox: %s (the changes will be sent again)",
                    store_strerror(r));
    }
    uint64_t n = 0;
    if (store_outbox_count(c->store, SINK, &n) == 0)
        c->outbox_count = n;
    load_outbox(c);
}

/* One result of the query in flight. Returns false if the link was dropped. */
static bool on_result(struct cluster *c, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char why[300];
        snprintf(why, sizeof(why), "%s", PQresultErrorMessage(res));
        drop_link(c, why, true);
        return false;
    }
    switch (c->step) {
    case STEP_MIGRATE_LOCK:
        if (st == PGRES_TUPLES_OK && PQnfields(res) == 1 && PQntuples(res) == 1 &&
            strcmp(PQfname(res, 0), "pg_advisory_xact_lock") != 0)
            c->schema_version = (unsigned)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        break;
    case STEP_LISTEN:
        if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == 2) {
            c->primary = PQgetvalue(res, 0, 0)[0] == 'f';
            /* The server never got as far as this node has read: a failover to a standby that
             * had not replicated everything (asynchronous replication), or a restored backup.
             * Its numbers will be given again, so everything is read again (a ban applied
             * twice changes nothing). */
            int64_t last = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
            if (last < c->cursor) {
                log_warn("cluster: the fleet database's last number (%lld) is below this node's "
                         "cursor (%lld): it lost changes (a failover without synchronous "
                         "replication?); reading the whole table again",
                         (long long)last, (long long)c->cursor);
                c->cursor = 0;
                store_cursor_set(c->store, SINK, 0, loop_wall_ms(c->loop));
            }
        }
        break;
    case STEP_CATCHUP:
        if (st == PGRES_TUPLES_OK)
            on_catchup_rows(c, res);
        break;
    case STEP_PUBLISH:
        if (st == PGRES_TUPLES_OK && PQntuples(res) == 1) {
            int64_t top = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            if (top > c->known_top)
                c->known_top = top;
        }
        break;
    default:
        break;
    }
    return true;
}

/* The query in flight is complete: the next step. */
static void step_done(struct cluster *c)
{
    enum step done = c->step;
    c->step = STEP_NONE;
    loop_timer_cancel(c->loop, &c->deadline_timer);
    switch (done) {
    case STEP_MIGRATE_LOCK:
        send_migrate(c);
        return;
    case STEP_MIGRATE:
        send_simple(c,
                    "LISTEN " CHANNEL "; SELECT pg_is_in_recovery(), (SELECT last_value FROM "
                    "pbxguard_seq)",
                    STEP_LISTEN);
        return;
    case STEP_LISTEN:
        send_prepare(c);
        return;
    case STEP_PREPARE:
        send_catchup(c);
        return;
    case STEP_CATCHUP:
        /* Setting up, more to read (a full batch, or a notification meanwhile): read on
         * before anything else; dispatch() serves only a link that is set up. */
        if (c->state == CLUSTER_SETUP && c->catchup_wanted) {
            send_catchup(c);
            return;
        }
        if (c->state == CLUSTER_SETUP) {
            /* Caught up: now what this node has is published again, then the outbox. */
            queue_republish(c);
            c->state = CLUSTER_READY;
            log_notice("cluster: connected to %s%s%s (%s), node %s; caught up at %lld, "
                       "re-publishing %zu active ban%s, %llu change%s in the outbox",
                       c->current.host[0] ? c->current.host : "the local socket",
                       c->current.hostaddr[0] && strcmp(c->current.hostaddr, c->current.host) ? " "
                                                                                              : "",
                       c->current.hostaddr[0] && strcmp(c->current.hostaddr, c->current.host)
                           ? c->current.hostaddr
                           : "",
                       c->primary ? "primary" : "not a primary", c->cfg.node, (long long)c->cursor,
                       queue_len(&c->republish), queue_len(&c->republish) == 1 ? "" : "s",
                       (unsigned long long)c->outbox_count, c->outbox_count == 1 ? "" : "s");
            c->last_error[0] = '\0';
        }
        break;
    case STEP_PUBLISH:
        publish_done(c);
        break;
    default:
        break;
    }
    dispatch(c);
}

/* Sends the next query if none is in flight: publishing first (so a ban leaves this node
 * fast), alternating with catch-up reads so a storm of our own does not starve them. */
static void dispatch(struct cluster *c)
{
    if (c->state != CLUSTER_READY || c->step != STEP_NONE || !c->conn)
        return;
    bool publish = queue_len(&c->republish) || queue_len(&c->pending);
    if (publish && !(c->catchup_wanted && c->last_was_publish)) {
        send_publish(c);
        return;
    }
    if (c->catchup_wanted) {
        send_catchup(c);
        return;
    }
    if (loop_now_ms(c->loop) >= c->next_prune_ms) {
        c->next_prune_ms = loop_now_ms(c->loop) + PRUNE_INTERVAL_MS;
        send_simple(c, "SELECT pbxguard_prune()", STEP_PRUNE);
    }
}

static void connected(struct cluster *c)
{
    loop_timer_cancel(c->loop, &c->deadline_timer);
    if (PQsetnonblocking(c->conn, 1) < 0) {
        drop_link(c, PQerrorMessage(c->conn), true);
        return;
    }
    c->state = CLUSTER_SETUP;
    c->connected_ms = loop_wall_ms(c->loop);
    c->failing_since_ms = 0;
    c->failures = 0;
    if (c->ever_connected) {
        c->reconnects++;
        statsd_count(c->statsd, STATSD_M_CLUSTER_RECONNECTS, 1);
    }
    c->ever_connected = true;
    statsd_gauge(c->statsd, STATSD_M_CLUSTER_CONNECTED, 1);
    c->schema_version = 0;
    /* The publish in flight when the link broke is sent again: re-sends are harmless. */
    c->inflight = 0;
    send_migrate_lock(c);
}

static void poll_connect(struct cluster *c)
{
    PostgresPollingStatusType st = PQconnectPoll(c->conn);
    switch (st) {
    case PGRES_POLLING_READING:
        watch(c, EPOLLIN);
        return;
    case PGRES_POLLING_WRITING:
        watch(c, EPOLLOUT);
        return;
    case PGRES_POLLING_OK:
        watch(c, EPOLLIN);
        connected(c);
        return;
    default:
        set_error(c, "%s: %s", c->current.host[0] ? c->current.host : "local socket",
                  PQerrorMessage(c->conn));
        close_conn(c);
        next_target(c);
        return;
    }
}

static void on_io(struct loop *l, int fd, uint32_t events, void *data)
{
    struct cluster *c = data;
    if (c->state == CLUSTER_CONNECTING) {
        poll_connect(c);
        return;
    }
    if (!c->conn)
        return;
    if (events & EPOLLOUT) {
        int f = PQflush(c->conn);
        if (f < 0) {
            drop_link(c, PQerrorMessage(c->conn), true);
            return;
        }
        watch(c, EPOLLIN | (f ? EPOLLOUT : 0));
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    if (!PQconsumeInput(c->conn)) {
        drop_link(c, PQerrorMessage(c->conn), true);
        return;
    }
    on_notify(c);
    while (c->step != STEP_NONE && !PQisBusy(c->conn)) {
        PGresult *res = PQgetResult(c->conn);
        if (!res) {
            step_done(c);
            if (!c->conn)
                return;
            continue;
        }
        bool ok = on_result(c, res);
        PQclear(res);
        if (!ok)
            return;
    }
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        drop_link(c, PQerrorMessage(c->conn), true);
        return;
    }
    /* A notification that arrived while idle. */
    dispatch(c);
}

static void on_catchup_timer(struct loop *l, void *data)
{
    struct cluster *c = data;
    c->catchup_wanted = true;
    dispatch(c);
    loop_timer_arm(l, &c->catchup_timer, (uint64_t)c->cfg.catchup_interval_ms);
}

void cluster_turn_end(struct cluster *c)
{
    if (c)
        dispatch(c);
}

/* --- lifecycle --- */

struct cluster *cluster_new(struct loop *l, const struct cfg_cluster *cfg, struct store *store,
                            struct judge *judge, struct statsd *statsd, struct cluster_sink sink)
{
    struct cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = l;
    c->cfg = *cfg;
    c->store = store;
    c->judge = judge;
    c->statsd = statsd;
    c->sink = sink;
    snprintf(c->origin, sizeof(c->origin), "cluster:%s", cfg->node);
    loop_io_init(&c->io);
    loop_timer_init(&c->retry_timer, on_retry, c);
    loop_timer_init(&c->deadline_timer, on_deadline, c);
    loop_timer_init(&c->catchup_timer, on_catchup_timer, c);
    c->next_prune_ms = loop_now_ms(l) + PRUNE_INTERVAL_MS / 4;
    int r = parse_conninfo(c);
    if (r < 0) {
        log_err("[cluster] %s", c->last_error);
        cluster_free(c);
        errno = -r;
        return NULL;
    }
    r = store_cursor_get(store, SINK, &c->cursor);
    if (r < 0 && r != -ENOENT)
        log_err("cluster: cannot read the cursor: %s; reading the table from the start",
                store_strerror(r));
    if (r < 0)
        c->cursor = 0;
    c->known_top = c->cursor;
    if (store_outbox_count(store, SINK, &c->outbox_count) < 0)
        c->outbox_count = 0;
    c->outbox_overflow = true; /* load what a previous run left */
    load_outbox(c);
    loop_timer_arm(l, &c->catchup_timer, (uint64_t)cfg->catchup_interval_ms);
    statsd_gauge(statsd, STATSD_M_CLUSTER_CONNECTED, 0);
    log_info("cluster: node %s, cursor %lld, %llu change%s waiting in the outbox", cfg->node,
             (long long)c->cursor, (unsigned long long)c->outbox_count,
             c->outbox_count == 1 ? "" : "s");
    start_round(c);
    return c;
}

void cluster_free(struct cluster *c)
{
    if (!c)
        return;
    close_conn(c);
    resolver_free(c->resolver);
    loop_timer_cancel(c->loop, &c->retry_timer);
    loop_timer_cancel(c->loop, &c->catchup_timer);
    free_list(c->host_list, c->nhost);
    free_list(c->hostaddr_list, c->nhostaddr);
    free_list(c->port_list, c->nport);
    queue_clear(&c->pending);
    queue_clear(&c->republish);
    explicit_bzero(c->cfg.password, sizeof(c->cfg.password));
    free(c);
}

bool cluster_needs_restart(const struct cluster *c, const struct cfg_cluster *cfg)
{
    return strcmp(c->cfg.conninfo, cfg->conninfo) != 0 ||
           strcmp(c->cfg.password, cfg->password) != 0 || strcmp(c->cfg.node, cfg->node) != 0 ||
           c->cfg.connect_timeout_ms != cfg->connect_timeout_ms ||
           c->cfg.query_timeout_ms != cfg->query_timeout_ms;
}

void cluster_reload(struct cluster *c, const struct cfg_cluster *cfg)
{
    c->cfg.publish = cfg->publish;
    c->cfg.accept = cfg->accept;
    c->cfg.max_prefix4 = cfg->max_prefix4;
    c->cfg.max_prefix6 = cfg->max_prefix6;
    if (c->cfg.catchup_interval_ms != cfg->catchup_interval_ms) {
        c->cfg.catchup_interval_ms = cfg->catchup_interval_ms;
        loop_timer_arm(c->loop, &c->catchup_timer, (uint64_t)cfg->catchup_interval_ms);
    }
}

void cluster_get_status(const struct cluster *c, struct cluster_status *ret_status)
{
    struct cluster_status *s = ret_status;
    memset(s, 0, sizeof(*s));
    s->state = c->state;
    snprintf(s->host, sizeof(s->host), "%s", c->current.host);
    snprintf(s->hostaddr, sizeof(s->hostaddr), "%s", c->current.hostaddr);
    snprintf(s->port, sizeof(s->port), "%s", c->current.port);
    s->primary = c->primary && (c->state == CLUSTER_SETUP || c->state == CLUSTER_READY);
    s->connected_ms = c->connected_ms;
    s->cursor = c->cursor;
    s->known_top = c->known_top > c->cursor ? c->known_top : c->cursor;
    s->outbox = c->outbox_count;
    s->published = c->published;
    s->received = c->received;
    s->refused = c->refused;
    s->reconnects = c->reconnects;
    snprintf(s->last_error, sizeof(s->last_error), "%s", c->last_error);
    s->last_error_ms = c->last_error_ms;
    snprintf(s->node, sizeof(s->node), "%s", c->cfg.node);
}

#endif
