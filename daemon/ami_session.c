#include <arpa/inet.h>
#include <errno.h>
#include <md5.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ami_event.h"
#include "ami_frame.h"
#include "ami_learn.h"
#include "ami_session.h"
#include "log.h"
#include "resolver.h"

#define AMI_MAX_ADDRS 8
#define AMI_OUT_MAX 2048
#define AMI_READS_PER_TURN 16
/* A session that stayed logged in this long (or backoff_max, if shorter) was healthy: the next
 * failure starts the backoff from its minimum again. Shorter sessions keep doubling it, so a
 * peer that accepts and then drops us at once is not hammered. */
#define AMI_HEALTHY_MS 10000
#define AMI_QUIET_WARNING_MS 10000

#define ID_CHALLENGE "pbxguard-challenge"
#define ID_LOGIN "pbxguard-login"
#define ID_PING "pbxguard-ping"

enum ami_state {
    ST_IDLE = 0,
    ST_RESOLVING,
    ST_CONNECTING,
    ST_BANNER,
    ST_CHALLENGE,
    ST_LOGIN,
    ST_UP,
    ST_BACKOFF,
};

static const char *const state_names[] = {
    [ST_IDLE] = "idle",     [ST_RESOLVING] = "resolving", [ST_CONNECTING] = "connecting",
    [ST_BANNER] = "banner", [ST_CHALLENGE] = "challenge", [ST_LOGIN] = "login",
    [ST_UP] = "up",         [ST_BACKOFF] = "backoff",
};

struct ami_session {
    struct loop *loop;
    struct cfg_ami cfg;
    struct sec_sink sink;
    char name[SEC_SOURCE_MAX];
    enum ami_state state;
    int fd;
    struct loop_io io;
    struct loop_timer t_main;  /* connect/handshake deadline, or the next attempt */
    struct loop_timer t_ping;  /* keepalive period, then the reply deadline */
    struct loop_timer t_quiet; /* "no security event since login" warning */

    bool numeric; /* host is a literal address: no resolution needed */
    struct sockaddr_storage addrs[AMI_MAX_ADDRS];
    socklen_t addrlens[AMI_MAX_ADDRS];
    unsigned naddrs, addr_index;
    struct resolver *resolver; /* the host name, while it is being resolved */

    struct ami_learn *learn; /* trust learned from Asterisk; NULL when not learning */
    void (*learned)(void *data, const char *source, const struct policy_wl_entry *entries,
                    unsigned n);
    void *learned_data;

    char version[32];
    struct addr peer;
    bool have_peer;

    bool ping_outstanding;
    uint64_t up_since_ms;
    int64_t backoff_ms;
    uint64_t rng;
    int64_t quiet_ms;
    bool events_since_login;
    bool quiet_warned;

    /* The kind of failure last logged, so that repeats are not logged again, even when the
     * details alternate (reset, refused, reset...) while a peer restarts. */
    int last_failure;
    unsigned failed_attempts;

    char out[AMI_OUT_MAX];
    size_t out_len;

    int64_t last_event_ms;
    struct ami_session_stats stats;
    struct ami_parser parser; /* large: keep it last */
};

static void start_attempt(struct loop *l, void *data);
static void on_io(struct loop *l, int fd, uint32_t events, void *data);

/* --- small helpers --- */

static uint64_t next_random(struct ami_session *s)
{
    /* xorshift64*: jitter only needs to keep sessions from retrying in lockstep. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 2685821657736338717ULL;
}

static bool has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static const char *host_port(const struct ami_session *s, char *buf, size_t len)
{
    if (strchr(s->cfg.host, ':'))
        snprintf(buf, len, "[%s]:%u", s->cfg.host, s->cfg.port);
    else
        snprintf(buf, len, "%s:%u", s->cfg.host, s->cfg.port);
    return buf;
}

/* "800ms", "60s": the retry bound as the admin configured it. */
static const char *fmt_ms(int64_t ms, char *buf, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, len, "%lldms", (long long)ms);
    return buf;
}

static void close_connection(struct ami_session *s)
{
    if (s->learn)
        ami_learn_disconnected(s->learn);
    loop_io_del(s->loop, &s->io);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    loop_timer_cancel(s->loop, &s->t_main);
    loop_timer_cancel(s->loop, &s->t_ping);
    loop_timer_cancel(s->loop, &s->t_quiet);
    s->ping_outstanding = false;
    explicit_bzero(s->out, sizeof(s->out));
    s->out_len = 0;
}

static void cancel_resolve(struct ami_session *s)
{
    resolver_free(s->resolver);
    s->resolver = NULL;
}

enum failure_kind { FAIL_NONE = 0, FAIL_CONNECT, FAIL_PROTOCOL, FAIL_AUTH, FAIL_LOST };

/* Tears the connection down and schedules the next attempt. Logs when the session was up, or
 * when the kind of failure differs from the one logged last; otherwise only at debug level. */
static void fail(struct ami_session *s, enum failure_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct ami_session *s, enum failure_kind kind, const char *fmt, ...)
{
    char reason[160], hp[CFG_HOST_MAX + 16], bound[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);

    bool was_up = s->state == ST_UP;
    uint64_t now = loop_now_ms(s->loop);
    close_connection(s);
    cancel_resolve(s);
    ami_parser_init(&s->parser, true);
    s->failed_attempts++;

    int64_t delay;
    if (kind == FAIL_AUTH) {
        s->stats.auth_failures++;
        delay = s->cfg.backoff_max_ms; /* wrong credentials will not fix themselves soon */
    } else {
        int64_t healthy =
            s->cfg.backoff_max_ms < AMI_HEALTHY_MS ? s->cfg.backoff_max_ms : AMI_HEALTHY_MS;
        if (was_up && now - s->up_since_ms >= (uint64_t)healthy)
            s->backoff_ms = s->cfg.backoff_min_ms;
        delay = s->backoff_ms;
        s->backoff_ms =
            s->backoff_ms * 2 > s->cfg.backoff_max_ms ? s->cfg.backoff_max_ms : s->backoff_ms * 2;
    }
    /* Full jitter over the upper half: between delay/2 and delay. */
    if (delay > 1)
        delay = delay / 2 + (int64_t)(next_random(s) % (uint64_t)(delay / 2 + 1));
    if (delay < 0)
        delay = 0;

    host_port(s, hp, sizeof(hp));
    if (was_up) {
        s->stats.reconnects++;
        log_warn("%s: connection to %s lost (%s); reconnecting", s->name, hp, reason);
        s->last_failure = FAIL_LOST;
    } else if ((int)kind != s->last_failure) {
        if (kind == FAIL_AUTH)
            log_err("%s: login to %s as \"%s\" refused (%s): check username and secret here and "
                    "in Asterisk's manager.conf; retrying every %s, will log when connected",
                    s->name, hp, s->cfg.username, reason,
                    fmt_ms(s->cfg.backoff_max_ms, bound, sizeof(bound)));
        else
            log_warn("%s: cannot connect to %s (%s); retrying every <=%s, will log when "
                     "connected",
                     s->name, hp, reason, fmt_ms(s->cfg.backoff_max_ms, bound, sizeof(bound)));
        s->last_failure = (int)kind;
    } else {
        log_debug("%s: attempt failed again (%s); next in %lldms", s->name, reason,
                  (long long)delay);
    }
    s->state = ST_BACKOFF;
    loop_timer_arm(s->loop, &s->t_main, (uint64_t)delay);
}

/* Queues an action and writes what the socket takes. A peer that stops reading fills the
 * buffer; that is a stalled peer, and the session is dropped. Returns 0, or -1 after fail(). */
static int send_text(struct ami_session *s, const char *text, size_t len)
{
    if (s->out_len + len > sizeof(s->out)) {
        fail(s, FAIL_CONNECT, "peer stopped reading");
        return -1;
    }
    memcpy(s->out + s->out_len, text, len);
    s->out_len += len;
    ssize_t n = send(s->fd, s->out, s->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            fail(s, FAIL_CONNECT, "%s", strerror(errno));
            return -1;
        }
        n = 0;
    }
    memmove(s->out, s->out + n, s->out_len - (size_t)n);
    s->out_len -= (size_t)n;
    explicit_bzero(s->out + s->out_len, (size_t)n);
    loop_io_mod(s->loop, &s->io, EPOLLIN | (s->out_len ? EPOLLOUT : 0));
    return 0;
}

static int send_action(struct ami_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int send_action(struct ami_session *s, const char *fmt, ...)
{
    char buf[AMI_OUT_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        explicit_bzero(buf, sizeof(buf));
        fail(s, FAIL_CONNECT, "action too long");
        return -1;
    }
    int r = send_text(s, buf, (size_t)n);
    explicit_bzero(buf, sizeof(buf)); /* may hold the secret */
    return r;
}

/* --- connection setup --- */

static int setup_numeric(struct ami_session *s)
{
    const char *h = s->cfg.host;
    char tmp[CFG_HOST_MAX];
    size_t len = strlen(h);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
        memcpy(tmp, h + 1, len - 2);
        tmp[len - 2] = '\0';
        h = tmp;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)&s->addrs[0];
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&s->addrs[0];
    memset(&s->addrs[0], 0, sizeof(s->addrs[0]));
    if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(s->cfg.port);
        s->addrlens[0] = sizeof(*sin);
    } else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(s->cfg.port);
        s->addrlens[0] = sizeof(*sin6);
    } else {
        return -1;
    }
    s->naddrs = 1;
    return 0;
}

static void connect_next(struct ami_session *s);

static void on_resolved(void *data)
{
    struct ami_session *s = data;
    const struct addrinfo *ai = NULL;
    int err = resolver_result(s->resolver, 0, &ai);
    s->naddrs = 0;
    for (; err == 0 && ai && s->naddrs < AMI_MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(s->addrs[0]))
            continue;
        memcpy(&s->addrs[s->naddrs], ai->ai_addr, ai->ai_addrlen);
        s->addrlens[s->naddrs++] = ai->ai_addrlen;
    }
    cancel_resolve(s);
    if (err != 0 || s->naddrs == 0) {
        fail(s, FAIL_CONNECT, "cannot resolve host: %s",
             err ? gai_strerror(err) : "no usable address");
        return;
    }
    s->addr_index = 0;
    connect_next(s);
}

static int start_resolve(struct ami_session *s)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", s->cfg.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV};
    const char *host = s->cfg.host;
    s->resolver = resolver_start(s->loop, &host, 1, port, &hints, on_resolved, s);
    return s->resolver ? 0 : -errno;
}

static void on_deadline(struct loop *l, void *data)
{
    struct ami_session *s = data;
    switch (s->state) {
    case ST_RESOLVING:
        fail(s, FAIL_CONNECT, "timed out resolving the host");
        break;
    case ST_CONNECTING:
        fail(s, FAIL_CONNECT, "timed out connecting");
        break;
    case ST_BANNER:
        fail(s, FAIL_CONNECT, "timed out waiting for the AMI banner");
        break;
    case ST_CHALLENGE:
    case ST_LOGIN:
        fail(s, FAIL_CONNECT, "timed out waiting for the login reply");
        break;
    case ST_BACKOFF:
    case ST_IDLE:
        start_attempt(l, s);
        break;
    case ST_UP:
        break;
    }
}

static void on_connected(struct ami_session *s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(s->fd, (struct sockaddr *)&ss, &len) == 0) {
        char buf[INET6_ADDRSTRLEN];
        const void *src = NULL;
        if (ss.ss_family == AF_INET)
            src = &((struct sockaddr_in *)&ss)->sin_addr;
        else if (ss.ss_family == AF_INET6)
            src = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (src && inet_ntop(ss.ss_family, src, buf, sizeof(buf)) &&
            addr_parse(buf, strlen(buf), &s->peer) == 0)
            s->have_peer = true;
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->state = ST_BANNER;
    loop_io_mod(s->loop, &s->io, EPOLLIN);
    loop_timer_arm(s->loop, &s->t_main, (uint64_t)s->cfg.connect_timeout_ms);
}

static void connect_next(struct ami_session *s)
{
    for (; s->addr_index < s->naddrs; s->addr_index++) {
        const struct sockaddr *sa = (const struct sockaddr *)&s->addrs[s->addr_index];
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int r = connect(fd, sa, s->addrlens[s->addr_index]);
        if (r < 0 && errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            if (s->addr_index + 1 < s->naddrs)
                continue;
            fail(s, FAIL_CONNECT, "%s", strerror(e));
            return;
        }
        s->fd = fd;
        if (loop_io_add(s->loop, &s->io, fd, EPOLLOUT, on_io, s) < 0) {
            fail(s, FAIL_CONNECT, "cannot watch the socket");
            return;
        }
        s->state = ST_CONNECTING;
        loop_timer_arm(s->loop, &s->t_main, (uint64_t)s->cfg.connect_timeout_ms);
        if (r == 0)
            on_connected(s);
        return;
    }
    fail(s, FAIL_CONNECT, "no address to connect to");
}

static void start_attempt(struct loop *l, void *data)
{
    struct ami_session *s = data;
    s->stats.connects++;
    ami_parser_init(&s->parser, true);
    s->addr_index = 0;
    if (s->numeric) {
        connect_next(s);
        return;
    }
    int r = start_resolve(s);
    if (r < 0) {
        fail(s, FAIL_CONNECT, "cannot start resolving: %s", strerror(-r));
        return;
    }
    s->state = ST_RESOLVING;
    loop_timer_arm(l, &s->t_main, (uint64_t)s->cfg.connect_timeout_ms);
}

/* --- protocol --- */

/* The security class always; the system class too when learning trust, for the Reload
 * events that say Asterisk's configuration changed. */
static const char *event_classes(const struct ami_session *s)
{
    return s->learn ? "security,system" : "security";
}

static int send_login(struct ami_session *s, const char *challenge, size_t clen)
{
    if (s->cfg.auth == CFG_AMI_AUTH_PLAIN)
        return send_action(s,
                           "Action: Login\r\nActionID: " ID_LOGIN "\r\nUsername: %s\r\n"
                           "Secret: %s\r\nEvents: %s\r\n\r\n",
                           s->cfg.username, s->cfg.secret, event_classes(s));
    MD5_CTX ctx;
    uint8_t digest[MD5_DIGEST_LENGTH];
    char key[MD5_DIGEST_LENGTH * 2 + 1];
    static const char hex[] = "0123456789abcdef";
    MD5Init(&ctx);
    MD5Update(&ctx, (const uint8_t *)challenge, clen);
    MD5Update(&ctx, (const uint8_t *)s->cfg.secret, strlen(s->cfg.secret));
    MD5Final(digest, &ctx);
    for (int i = 0; i < MD5_DIGEST_LENGTH; i++) {
        key[2 * i] = hex[digest[i] >> 4];
        key[2 * i + 1] = hex[digest[i] & 15];
    }
    key[sizeof(key) - 1] = '\0';
    int r = send_action(s,
                        "Action: Login\r\nActionID: " ID_LOGIN "\r\nUsername: %s\r\n"
                        "AuthType: MD5\r\nKey: %s\r\nEvents: %s\r\n\r\n",
                        s->cfg.username, key, event_classes(s));
    explicit_bzero(key, sizeof(key));
    explicit_bzero(digest, sizeof(digest)); /* the key itself, in binary */
    explicit_bzero(&ctx, sizeof(ctx));
    return r;
}

/* The peer's Message, escaped for the log. A peer that echoes our secret back (a broken or
 * hostile one, after a plain login) does not get it into the log: it is masked first. */
static void escaped_message(const struct ami_session *s, const struct ami_frame *f, char *buf,
                            size_t len)
{
    const struct ami_header *m = ami_frame_get(f, "Message");
    if (!m) {
        snprintf(buf, len, "no message");
        return;
    }
    char text[AMI_LINE_MAX];
    size_t n = m->value_len < sizeof(text) ? m->value_len : sizeof(text);
    size_t slen = strlen(s->cfg.secret);
    memcpy(text, m->value, n);
    for (char *at = text; slen && (at = memmem(at, n - (size_t)(at - text), s->cfg.secret, slen));
         at += slen)
        memset(at, '*', slen);
    log_escape(text, n, buf, len);
    explicit_bzero(text, n);
}

static void on_quiet(struct loop *l, void *data)
{
    struct ami_session *s = data;
    if (s->events_since_login || s->quiet_warned)
        return;
    s->quiet_warned = true;
    log_warn("%s: logged in, but no security event has arrived in %llds (not even our own "
             "SuccessfulAuth): the AMI user \"%s\" probably lacks \"read = security\" in "
             "Asterisk's manager.conf",
             s->name, (long long)(s->quiet_ms / 1000), s->cfg.username);
}

static void logged_in(struct ami_session *s)
{
    char hp[CFG_HOST_MAX + 16];
    s->state = ST_UP;
    s->stats.logins++;
    s->up_since_ms = loop_now_ms(s->loop);
    s->events_since_login = false;
    loop_timer_cancel(s->loop, &s->t_main);
    loop_timer_arm(s->loop, &s->t_ping, (uint64_t)s->cfg.ping_interval_ms);
    loop_timer_arm(s->loop, &s->t_quiet, (uint64_t)s->quiet_ms);
    host_port(s, hp, sizeof(hp));
    if (s->failed_attempts)
        log_notice("%s: logged in to %s (AMI %s) as \"%s\" after %u failed attempt%s", s->name, hp,
                   s->version, s->cfg.username, s->failed_attempts,
                   s->failed_attempts == 1 ? "" : "s");
    else
        log_notice("%s: logged in to %s (AMI %s) as \"%s\"", s->name, hp, s->version,
                   s->cfg.username);
    s->failed_attempts = 0;
    s->last_failure = FAIL_NONE;
    if (s->learn)
        ami_learn_connected(s->learn); /* may tear the session down (see handle_frame) */
}

static void submit_event(struct ami_session *s, const struct ami_frame *f)
{
    struct sec_event ev;
    enum ami_event_bad bad = AMI_BAD_NONE;
    switch (ami_event_from_frame(f, s->name, &ev, &bad)) {
    case AMI_EVENT_OK:
        ev.received_ms = loop_wall_ms(s->loop);
        s->last_event_ms = ev.received_ms;
        s->events_since_login = true;
        s->stats.events++;
        s->sink.submit(s->sink.data, &ev);
        break;
    case AMI_EVENT_UNKNOWN:
        s->stats.unknown_events++;
        s->events_since_login = true;
        if (log_get_level() >= LOG_LVL_DEBUG) {
            char name[64];
            log_escape(f->headers[0].value, f->headers[0].value_len, name, sizeof(name));
            log_debug("%s: unknown security event \"%s\" ignored", s->name, name);
        }
        break;
    case AMI_EVENT_MALFORMED:
        s->stats.malformed_events++;
        s->events_since_login = true;
        log_debug("%s: malformed security event ignored (%s)", s->name, ami_event_bad_name(bad));
        break;
    case AMI_EVENT_NOT_SECURITY:
        break;
    }
}

static bool action_id_is(const struct ami_frame *f, const char *id)
{
    const struct ami_header *h = ami_frame_get(f, "ActionID");
    return h && ami_header_value_is(h, id);
}

static bool response_is_success(const struct ami_frame *f)
{
    return ami_header_value_is(&f->headers[0], "Success");
}

/* Returns 0 to go on with the next frame, -1 if the session was torn down. */
static int handle_frame(struct ami_session *s, const struct ami_frame *f)
{
    char msg[128];

    if (s->state == ST_BANNER) {
        static const char prefix[] = "Asterisk Call Manager/";
        const struct ami_header *b = &f->headers[0];
        if (f->kind != AMI_FRAME_BANNER || b->value_len < sizeof(prefix) - 1 ||
            memcmp(b->value, prefix, sizeof(prefix) - 1) != 0) {
            char esc[96];
            log_escape(b->value, b->value_len, esc, sizeof(esc));
            fail(s, FAIL_PROTOCOL, "not an Asterisk manager interface: banner \"%s\"", esc);
            return -1;
        }
        log_escape(b->value + sizeof(prefix) - 1, b->value_len - (sizeof(prefix) - 1), s->version,
                   sizeof(s->version));
        loop_timer_arm(s->loop, &s->t_main, (uint64_t)s->cfg.connect_timeout_ms);
        if (s->cfg.auth == CFG_AMI_AUTH_MD5) {
            s->state = ST_CHALLENGE;
            return send_action(s, "Action: Challenge\r\nActionID: " ID_CHALLENGE
                                  "\r\nAuthType: MD5\r\n\r\n");
        }
        s->state = ST_LOGIN;
        return send_login(s, NULL, 0);
    }

    /* The answers to the trust queries, responses and list events alike (a security event is
     * never one of them, whatever it carries): the learner sends actions, and a send that
     * fails tears the session down under it. */
    bool security = ami_frame_is_security(f);
    if (s->learn && !security && ami_learn_owns(f)) {
        ami_learn_frame(s->learn, f);
        return s->state == ST_UP ? 0 : -1;
    }
    if (f->kind == AMI_FRAME_EVENT) {
        if (security) {
            submit_event(s, f);
        } else if (ami_header_value_is(&f->headers[0], "Shutdown")) {
            fail(s, FAIL_CONNECT, "Asterisk is shutting down");
            return -1;
        } else if (s->learn && s->state == ST_UP && ami_frame_has_class(f, "system")) {
            ami_learn_system_event(s->learn, f);
        }
        return 0;
    }
    if (f->kind != AMI_FRAME_RESPONSE)
        return 0;

    if (s->state == ST_CHALLENGE && action_id_is(f, ID_CHALLENGE)) {
        const struct ami_header *c = ami_frame_get(f, "Challenge");
        if (!response_is_success(f) || !c || c->value_len == 0 || c->value_len > 64) {
            escaped_message(s, f, msg, sizeof(msg));
            fail(s, FAIL_AUTH, "MD5 challenge refused: %s", msg);
            return -1;
        }
        s->state = ST_LOGIN;
        return send_login(s, c->value, c->value_len);
    }
    if (s->state == ST_LOGIN && action_id_is(f, ID_LOGIN)) {
        if (!response_is_success(f)) {
            escaped_message(s, f, msg, sizeof(msg));
            fail(s, FAIL_AUTH, "%s", msg);
            return -1;
        }
        logged_in(s);
        return s->state == ST_UP ? 0 : -1;
    }
    if (s->state == ST_UP && action_id_is(f, ID_PING)) {
        s->ping_outstanding = false;
        loop_timer_arm(s->loop, &s->t_ping, (uint64_t)s->cfg.ping_interval_ms);
    }
    return 0;
}

static void on_ping_timer(struct loop *l, void *data)
{
    struct ami_session *s = data;
    if (s->state != ST_UP)
        return;
    if (s->ping_outstanding) {
        fail(s, FAIL_CONNECT, "no reply to keepalive within %lldms",
             (long long)s->cfg.ping_timeout_ms);
        return;
    }
    s->ping_outstanding = true;
    if (send_action(s, "Action: Ping\r\nActionID: " ID_PING "\r\n\r\n") < 0)
        return;
    loop_timer_arm(l, &s->t_ping, (uint64_t)s->cfg.ping_timeout_ms);
}

/* Frames the parser threw away for breaking a bound rather than for bad syntax. */
static uint64_t parser_oversized(const struct ami_session *s)
{
    const uint64_t *n = s->parser.stats.by_reason;
    return n[AMI_DISCARD_LINE_TOO_LONG] + n[AMI_DISCARD_TOO_MANY_HEADERS] +
           n[AMI_DISCARD_FRAME_TOO_BIG];
}

static void on_readable(struct ami_session *s)
{
    for (int i = 0; i < AMI_READS_PER_TURN; i++) {
        size_t room;
        char *dst = ami_parser_space(&s->parser, &room);
        ssize_t n = recv(s->fd, dst, room, MSG_DONTWAIT);
        if (n == 0) {
            fail(s, FAIL_CONNECT, "connection closed by peer");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            fail(s, FAIL_CONNECT, "%s", strerror(errno));
            return;
        }
        ami_parser_commit(&s->parser, (size_t)n);
        uint64_t discarded = s->parser.stats.discarded, oversized = parser_oversized(s);
        const struct ami_frame *f;
        while ((f = ami_parser_next(&s->parser))) {
            if (handle_frame(s, f) < 0)
                return;
        }
        if (s->parser.stats.discarded != discarded) {
            s->stats.frames_discarded += s->parser.stats.discarded - discarded;
            s->stats.frames_oversized += parser_oversized(s) - oversized;
            log_debug("%s: discarded %llu bad frame(s)", s->name,
                      (unsigned long long)(s->parser.stats.discarded - discarded));
        }
        if ((size_t)n < room)
            return; /* drained */
    }
}

static void on_io(struct loop *l, int fd, uint32_t events, void *data)
{
    struct ami_session *s = data;
    if (s->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            loop_io_del(l, &s->io);
            close(s->fd);
            s->fd = -1;
            if (++s->addr_index < s->naddrs) {
                connect_next(s);
                return;
            }
            fail(s, FAIL_CONNECT, "%s", strerror(err));
            return;
        }
        on_connected(s);
        return;
    }
    if ((events & EPOLLOUT) && s->out_len) {
        if (send_text(s, "", 0) < 0)
            return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(s);
}

/* --- public --- */

struct ami_session *ami_session_new(struct loop *l, const struct cfg_ami *cfg, struct sec_sink sink)
{
    if (!cfg->host[0] || has_crlf(cfg->username) || has_crlf(cfg->secret) || !sink.submit) {
        errno = EINVAL;
        return NULL;
    }
    struct ami_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->loop = l;
    s->cfg = *cfg;
    if (s->cfg.backoff_min_ms <= 0)
        s->cfg.backoff_min_ms = 1000;
    if (s->cfg.backoff_max_ms < s->cfg.backoff_min_ms)
        s->cfg.backoff_max_ms = s->cfg.backoff_min_ms;
    if (s->cfg.ping_interval_ms <= 0)
        s->cfg.ping_interval_ms = 20000;
    if (s->cfg.ping_timeout_ms <= 0)
        s->cfg.ping_timeout_ms = 10000;
    if (s->cfg.connect_timeout_ms <= 0)
        s->cfg.connect_timeout_ms = 10000;
    s->sink = sink;
    snprintf(s->name, sizeof(s->name), "ami:%s", cfg->name);
    s->fd = -1;
    loop_io_init(&s->io);
    loop_timer_init(&s->t_main, on_deadline, s);
    loop_timer_init(&s->t_ping, on_ping_timer, s);
    loop_timer_init(&s->t_quiet, on_quiet, s);
    s->backoff_ms = s->cfg.backoff_min_ms;
    s->quiet_ms = AMI_QUIET_WARNING_MS;
    if (getrandom(&s->rng, sizeof(s->rng), GRND_NONBLOCK) != sizeof(s->rng) || s->rng == 0)
        s->rng = loop_clock_mono_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)s;
    s->numeric = setup_numeric(s) == 0;
    if (s->numeric) {
        /* Known before any connection: the core can whitelist our Asterisk at once. */
        char buf[INET6_ADDRSTRLEN];
        const struct sockaddr *sa = (const struct sockaddr *)&s->addrs[0];
        const void *src = sa->sa_family == AF_INET
                              ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                              : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (inet_ntop(sa->sa_family, src, buf, sizeof(buf)) &&
            addr_parse(buf, strlen(buf), &s->peer) == 0)
            s->have_peer = true;
    }
    ami_parser_init(&s->parser, true);
    s->state = ST_IDLE;
    loop_timer_arm(l, &s->t_main, 0);
    return s;
}

void ami_session_free(struct ami_session *s)
{
    if (!s)
        return;
    close_connection(s);
    cancel_resolve(s);
    ami_learn_free(s->learn);
    explicit_bzero(s->cfg.secret, sizeof(s->cfg.secret));
    free(s);
}

const char *ami_session_name(const struct ami_session *s)
{
    return s->name;
}

const char *ami_session_state_name(const struct ami_session *s)
{
    return state_names[s->state];
}

bool ami_session_is_up(const struct ami_session *s)
{
    return s->state == ST_UP;
}

const char *ami_session_version(const struct ami_session *s)
{
    return s->version;
}

int ami_session_peer(const struct ami_session *s, struct addr *ret_addr)
{
    if (!s->have_peer)
        return -ENOTCONN;
    *ret_addr = s->peer;
    return 0;
}

int64_t ami_session_last_event_ms(const struct ami_session *s)
{
    return s->last_event_ms;
}

void ami_session_get_stats(const struct ami_session *s, struct ami_session_stats *ret_stats)
{
    *ret_stats = s->stats;
}

void ami_session_set_quiet_warning(struct ami_session *s, int64_t ms)
{
    s->quiet_ms = ms > 0 ? ms : AMI_QUIET_WARNING_MS;
}

/* --- trust learned from Asterisk --- */

static int learn_send(void *data, const char *text, size_t len)
{
    struct ami_session *s = data;
    if (s->state != ST_UP)
        return -1;
    return send_text(s, text, len);
}

static void learn_learned(void *data, const struct policy_wl_entry *entries, unsigned n)
{
    struct ami_session *s = data;
    s->learned(s->learned_data, s->name, entries, n);
}

int ami_session_learn_trust(struct ami_session *s,
                            void (*learned)(void *data, const char *source,
                                            const struct policy_wl_entry *entries, unsigned n),
                            void *data)
{
    if (!s->cfg.learn_trust || s->learn)
        return 0;
    struct ami_learn_io io = {.send = learn_send, .learned = learn_learned, .data = s};
    s->learn = ami_learn_new(s->loop, s->name, s->cfg.username, s->cfg.trust_refresh_s * 1000, io);
    if (!s->learn)
        return -errno;
    s->learned = learned;
    s->learned_data = data;
    return 0;
}

bool ami_session_trust_status(const struct ami_session *s, struct ami_learn_status *ret_status)
{
    if (!s->learn)
        return false;
    ami_learn_get_status(s->learn, ret_status);
    return true;
}
