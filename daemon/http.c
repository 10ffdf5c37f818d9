/* libcurl's multi interface on our loop. libcurl asks, through the socket callback, for each of
 * its sockets to be watched for reading and/or writing, and through the timer callback for one
 * wake-up; we map the first onto loop_io handles and the second onto one loop_timer, and hand
 * every readiness and every timeout back with curl_multi_socket_action(). Finished transfers
 * are collected after each such call and their callbacks run there, outside libcurl. */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "http.h"

struct http_req {
    struct http *h;
    struct http_req *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *body; /* the request's, owned */
    size_t body_len;
    char *buf; /* the reply's */
    size_t len, cap;
    bool too_big;
    uint64_t started_ms;
    http_done_fn fn;
    void *data;
    char errbuf[CURL_ERROR_SIZE];
};

struct http_sock {
    struct http *h;
    struct loop_io io;
    curl_socket_t fd;
};

struct http {
    struct loop *loop;
    CURLM *multi;
    struct loop_timer timer;
    struct http_req *reqs; /* running, newest first */
    unsigned nreqs;
    char *ca_file, *cert_file, *key_file;
    struct http_opts opts;
};

static void check_done(struct http *h);

static void on_io(struct loop *l, int fd, uint32_t events, void *data)
{
    struct http_sock *s = data;
    struct http *h = s->h;
    int mask = 0, running;
    if (events & EPOLLIN)
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        mask |= CURL_CSELECT_ERR;
    /* s may be freed inside (CURL_POLL_REMOVE): nothing of it is used after this call. */
    curl_multi_socket_action(h->multi, fd, mask, &running);
    check_done(h);
}

static void on_timer(struct loop *l, void *data)
{
    struct http *h = data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

/* libcurl: watch fd for what (CURL_POLL_IN/OUT/INOUT), or stop watching it (REMOVE). */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http *h = userp;
    struct http_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            loop_io_del(h->loop, &s->io);
            curl_multi_assign(h->multi, fd, NULL);
            free(s);
        }
        return 0;
    }
    uint32_t ev = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->h = h;
        s->fd = fd;
        loop_io_init(&s->io);
        if (loop_io_add(h->loop, &s->io, fd, ev, on_io, s) < 0) {
            free(s);
            return -1;
        }
        curl_multi_assign(h->multi, fd, s);
        return 0;
    }
    return loop_io_mod(h->loop, &s->io, ev) < 0 ? -1 : 0;
}

/* libcurl: wake me in timeout_ms (0: as soon as possible, -1: never). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http *h = userp;
    if (timeout_ms < 0)
        loop_timer_cancel(h->loop, &h->timer);
    else
        loop_timer_arm(h->loop, &h->timer, (uint64_t)timeout_ms);
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct http_req *r = userdata;
    size_t n = size * nmemb;
    if (n > r->h->opts.max_reply - r->len) {
        r->too_big = true;
        return 0; /* libcurl stops the transfer: CURLE_WRITE_ERROR */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        /* A body whose size the server announced gets its room at once (up to the cap); one
         * sent in chunks grows by doubling. */
        curl_off_t announced = -1;
        if (!r->cap &&
            curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) ==
                CURLE_OK &&
            announced > 0 && (uint64_t)announced < r->h->opts.max_reply)
            cap = (size_t)announced + 1;
        while (cap < r->len + n + 1)
            cap *= 2;
        if (cap > r->h->opts.max_reply + 1)
            cap = r->h->opts.max_reply + 1;
        char *b = realloc(r->buf, cap);
        if (!b)
            return 0;
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, ptr, n);
    r->len += n;
    r->buf[r->len] = '\0';
    return n;
}

static int map_error(CURLcode c, bool too_big)
{
    if (too_big)
        return -EMSGSIZE;
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_FILESIZE_EXCEEDED:
        return -EMSGSIZE;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EPROTO;
    default:
        return -EIO;
    }
}

static void req_unlink(struct http *h, struct http_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    h->nreqs--;
}

static void req_free(struct http *h, struct http_req *r)
{
    curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
    /* Headers and bodies carry credentials (an API key, a token, a password): wiped. */
    for (struct curl_slist *s = r->headers; s; s = s->next)
        explicit_bzero(s->data, strlen(s->data));
    curl_slist_free_all(r->headers);
    if (r->body)
        explicit_bzero(r->body, r->body_len);
    free(r->body);
    free(r->buf);
    free(r);
}

static void finish(struct http *h, struct http_req *r, CURLcode code, int err)
{
    struct http_reply rep = {.err = err ? err : map_error(code, r->too_big)};
    req_unlink(h, r);
    if (rep.err == 0)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &rep.status);
    rep.body = r->buf ? r->buf : "";
    rep.len = r->len;
    rep.errmsg = rep.err == 0           ? ""
                 : rep.err == -EMSGSIZE ? "reply too large"
                                        : (r->errbuf[0] ? r->errbuf : curl_easy_strerror(code));
    rep.elapsed_ms = loop_clock_mono_ms() - r->started_ms;
    rep.req = r;
    /* Detached from the multi handle first: the callback may start requests of its own. */
    curl_multi_remove_handle(h->multi, r->easy);
    if (r->fn)
        r->fn(r->data, &rep);
    req_free(h, r);
}

char *http_reply_take(const struct http_reply *rep)
{
    struct http_req *r = rep->req;
    char *b = r && r->buf ? r->buf : calloc(1, 1);
    if (r && r->buf) {
        r->buf = NULL;
        r->len = r->cap = 0;
    }
    return b;
}

static void check_done(struct http *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct http_req *r = NULL;
        CURLcode code = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r)
            finish(h, r, code, 0);
    }
}

static char *dup_opt(const char *s)
{
    return strdup(s ? s : "");
}

struct http *http_new(struct loop *l, const struct http_opts *opts)
{
    static bool global_done;
    if (!global_done) {
        /* No signals: libcurl's alarm()-based resolver timeouts would fight our signalfd. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            errno = ENOMEM;
            return NULL;
        }
        global_done = true;
    }
    struct http *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->loop = l;
    h->opts = *opts;
    h->ca_file = dup_opt(opts->ca_file);
    h->cert_file = dup_opt(opts->cert_file);
    h->key_file = dup_opt(opts->key_file);
    h->multi = curl_multi_init();
    if (!h->ca_file || !h->cert_file || !h->key_file || !h->multi) {
        http_free(h);
        errno = ENOMEM;
        return NULL;
    }
    if (h->opts.max_reply == 0)
        h->opts.max_reply = 1 << 20;
    loop_timer_init(&h->timer, on_timer, h);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    /* One connection per host kept alive and reused: a poll every second costs no handshake. */
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 4L);
    return h;
}

void http_free(struct http *h)
{
    if (!h)
        return;
    while (h->reqs) {
        struct http_req *r = h->reqs;
        finish(h, r, CURLE_ABORTED_BY_CALLBACK, -ECANCELED);
    }
    if (h->multi)
        curl_multi_cleanup(h->multi);
    loop_timer_cancel(h->loop, &h->timer);
    free(h->ca_file);
    free(h->cert_file);
    free(h->key_file);
    free(h);
}

int http_request(struct http *h, enum http_method method, const char *url,
                 const char *const *headers, const char *body, size_t body_len, http_done_fn fn,
                 void *data, struct http_req **ret_req)
{
    struct http_req *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->h = h;
    r->fn = fn;
    r->data = data;
    r->easy = curl_easy_init();
    if (!r->easy)
        goto nomem;
    for (unsigned i = 0; headers && headers[i]; i++) {
        struct curl_slist *s = curl_slist_append(r->headers, headers[i]);
        if (!s)
            goto nomem;
        r->headers = s;
    }
    CURL *e = r->easy;
    if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK) {
        req_free(h, r);
        return -EINVAL;
    }
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->opts.max_reply);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)h->opts.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)h->opts.timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "pbxguard/" PBXGUARD_VERSION);
    /* Replies are small JSON documents; compressed ones are accepted (and capped unpacked). */
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (h->ca_file[0])
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    if (h->cert_file[0])
        curl_easy_setopt(e, CURLOPT_SSLCERT, h->cert_file);
    if (h->key_file[0])
        curl_easy_setopt(e, CURLOPT_SSLKEY, h->key_file);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (r->headers)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    if (method == HTTP_POST) {
        r->body = malloc(body_len + 1);
        if (!r->body)
            goto nomem;
        if (body_len)
            memcpy(r->body, body, body_len);
        r->body[body_len] = '\0';
        r->body_len = body_len;
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (method == HTTP_DELETE) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    r->started_ms = loop_clock_mono_ms();
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    h->nreqs++;
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        req_unlink(h, r);
        req_free(h, r);
        return -ENOMEM;
    }
    if (ret_req)
        *ret_req = r;
    return 0;

nomem:
    req_free(h, r);
    return -ENOMEM;
}

void http_cancel(struct http *h, struct http_req *req)
{
    if (!req)
        return;
    req_unlink(h, req);
    req_free(h, req);
}

unsigned http_running(const struct http *h)
{
    return h->nreqs;
}
