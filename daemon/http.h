/* HTTP requests on the daemon's loop: libcurl's multi interface driven by our epoll loop
 * (libcurl tells which sockets to watch and when to wake it; the loop calls it back with
 * curl_multi_socket_action()). Nothing here blocks: connects, TLS handshakes, sends and reads
 * all run as loop events. A name in a URL is resolved by libcurl's own resolver (Debian's
 * libcurl: a short-lived thread inside libcurl per lookup); an address literal needs none.
 *
 * Every request has a deadline (connect and total) and a cap on the reply's size: a server
 * that sends more is cut off and the request fails with -EMSGSIZE, whatever it claims. Replies
 * are collected in memory (sized at once when the server says how large the body is); the
 * callback sees them once, complete, and copies what it keeps or takes the body over.
 * No logging here: the caller gets an error code and libcurl's words for it. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

struct http;
struct http_req;

/* TLS and limits, shared by a client's requests. Paths may be "" (not used). */
struct http_opts {
    const char *ca_file;   /* verify the server against this CA bundle ("" = system's) */
    const char *cert_file; /* client certificate (PEM), for servers that want one */
    const char *key_file;  /* its key (PEM) */
    int64_t connect_timeout_ms;
    int64_t timeout_ms; /* the whole request, connect included */
    size_t max_reply;   /* bytes of body kept; more fails the request with -EMSGSIZE */
};

enum http_method { HTTP_GET = 0, HTTP_POST, HTTP_DELETE };

struct http_reply {
    /* 0: a reply came (any status); -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -EMSGSIZE (the
     * body passed max_reply), -EPROTO (TLS or HTTP broken), -ECANCELED (http_free()), -EIO
     * (anything else). */
    int err;
    long status;      /* 200, 401, ...; 0 without a reply */
    const char *body; /* NUL-terminated (a body holding NULs is still len bytes) */
    size_t len;
    const char *errmsg; /* libcurl's words when err != 0, else "" */
    uint64_t elapsed_ms;
    struct http_req *req; /* for http_reply_take() */
};

/* The reply's body, handed over to the caller (malloc'd, NUL-terminated, r->len bytes; free()
 * it): a large body is kept without a copy. Only inside the callback; r->body is "" after it.
 * NULL on ENOMEM. */
char *http_reply_take(const struct http_reply *r);

/* Called once per request, from the loop, after it completed, failed or was cancelled by
 * http_free() (err -ECANCELED). The request is gone when it returns; it may start others. */
typedef void (*http_done_fn)(void *data, const struct http_reply *r);

/* NULL + errno. opts is copied (its strings too). */
struct http *http_new(struct loop *l, const struct http_opts *opts);
/* Cancels what is running (their callbacks get -ECANCELED) and frees. Accepts NULL. */
void http_free(struct http *h);

/* Starts a request. headers: NULL-terminated "Name: value" lines (may be NULL); body: copied
 * (POST; NULL for none). *ret_req (may be NULL) identifies it for http_cancel() until its
 * callback runs. Returns 0 or -errno (-ENOMEM, -EINVAL for a URL libcurl refuses). */
int http_request(struct http *h, enum http_method method, const char *url,
                 const char *const *headers, const char *body, size_t body_len, http_done_fn fn,
                 void *data, struct http_req **ret_req);
/* Stops one request without calling its callback. */
void http_cancel(struct http *h, struct http_req *req);
/* Requests running now. */
unsigned http_running(const struct http *h);
