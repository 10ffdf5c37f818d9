#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_client.h"
#include "cli_format.h"
#include "cli_list.h"
#include "ctl_proto.h"

/* Bans listed when neither --limit nor --all says otherwise. */
#define LIST_DEFAULT 1000

/* The PREFIX column when the rows are not all known in advance: room for any IPv4 prefix
 * ("255.255.255.255/32"), or for any IPv6 one. */
#define WIDTH_V4 18
#define WIDTH_ANY 43

struct listing {
    bool json;
    FILE *out;
    int width;
    int64_t shown;
    int64_t total;
    bool started;
};

static void print_page(struct listing *l, const json_t *bans)
{
    int64_t now = (int64_t)time(NULL);
    if (!l->json) {
        if (json_array_size(bans) == 0)
            return; /* a page of a filtered listing with no match in it */
        if (!l->started)
            cli_format_list_header(l->width, l->out);
        cli_format_list_rows(bans, l->width, now, l->out);
    } else {
        if (!l->started)
            fprintf(l->out, "{\n  \"ok\": true,\n  \"bans\": [");
        size_t i;
        const json_t *b;
        json_array_foreach(bans, i, b)
        {
            fprintf(l->out, "%s\n    ", l->shown + (int64_t)i ? "," : "");
            cli_format_json(b, 4, l->out);
        }
    }
    l->started = true;
    l->shown += (int64_t)json_array_size(bans);
}

static void print_end(struct listing *l, const char *cursor)
{
    if (!l->json) {
        if (!l->started && !cursor) {
            fprintf(l->out, "no active bans\n");
            return;
        }
        if (!l->started)
            cli_format_list_header(l->width, l->out);
        cli_format_list_footer(l->shown, l->total, cursor != NULL, l->out);
        return;
    }
    fprintf(l->out, "%s],\n  \"truncated\": %s,\n", l->shown ? "\n  " : "",
            cursor ? "true" : "false");
    json_t *c = cursor ? json_string(cursor) : NULL;
    if (c) {
        fputs("  \"cursor\": ", l->out);
        cli_format_json(c, 0, l->out);
        fputs(",\n", l->out);
    }
    json_decref(c);
    fprintf(l->out, "  \"total\": %" PRId64 "\n}\n", l->total);
}

int cli_list(const char *path, const json_t *request, bool json, FILE *out, json_t **ret_error)
{
    json_t *lim = json_object_get(request, "limit");
    int64_t wanted = lim ? json_integer_value(lim) : LIST_DEFAULT; /* 0 = all */
    json_t *req = json_deep_copy(request);
    if (!req)
        return -ENOMEM;
    struct cli_conn *conn;
    int r = cli_client_open(path, CLI_TIMEOUT_MS, &conn);
    if (r < 0) {
        json_decref(req);
        return r;
    }
    json_int_t family = json_integer_value(json_object_get(request, "family"));
    struct listing l = {.json = json, .out = out, .width = family == 4 ? WIDTH_V4 : WIDTH_ANY};
    *ret_error = NULL;
    json_t *reply = NULL;
    char cursor[64] = "";
    for (bool first = true;; first = false) {
        int64_t ask = CTL_LIST_PAGE_MAX;
        if (wanted && wanted - l.shown < ask)
            ask = wanted - l.shown;
        /* A full page is what the daemon sends unasked. */
        if (ask < CTL_LIST_PAGE_MAX)
            json_object_set_new(req, "limit", json_integer(ask));
        else
            json_object_del(req, "limit");
        r = cli_client_request(conn, req, CLI_TIMEOUT_MS, &reply);
        if (r < 0)
            break;
        if (!json_is_true(json_object_get(reply, "ok"))) {
            *ret_error = reply;
            break;
        }
        const json_t *bans = json_object_get(reply, "bans");
        const char *next = json_string_value(json_object_get(reply, "cursor"));
        if (first)
            l.total = json_integer_value(json_object_get(reply, "total"));
        bool done = !next || (wanted && l.shown + (int64_t)json_array_size(bans) >= wanted);
        if (first && done) {
            /* One reply holds it all: printed as the daemon sent it. */
            if (json) {
                if (cli_format_json(reply, 0, out) == 0)
                    fputc('\n', out);
            } else if (cli_format_reply("list", reply, (int64_t)time(NULL), out) < 0) {
                r = -EIO;
            }
            json_decref(reply);
            break;
        }
        print_page(&l, bans);
        snprintf(cursor, sizeof(cursor), "%s", next ? next : "");
        json_decref(reply);
        if (done) {
            print_end(&l, cursor[0] ? cursor : NULL);
            break;
        }
        json_object_set_new(req, "cursor", json_string(cursor));
    }
    cli_client_close(conn);
    json_decref(req);
    return r;
}

int cli_list_each(const char *path, cli_list_fn fn, void *data, int64_t *ret_total,
                  json_t **ret_error)
{
    struct cli_conn *conn;
    *ret_error = NULL;
    int r = cli_client_open(path, CLI_TIMEOUT_MS, &conn);
    if (r < 0)
        return r;
    json_t *req = json_pack("{s:s}", "cmd", "list");
    if (!req) {
        cli_client_close(conn);
        return -ENOMEM;
    }
    for (bool first = true;; first = false) {
        json_t *reply;
        r = cli_client_request(conn, req, CLI_TIMEOUT_MS, &reply);
        if (r < 0)
            break;
        if (!json_is_true(json_object_get(reply, "ok"))) {
            *ret_error = reply;
            break;
        }
        if (first && ret_total)
            *ret_total = json_integer_value(json_object_get(reply, "total"));
        size_t i;
        const json_t *b;
        json_array_foreach(json_object_get(reply, "bans"), i, b)
        {
            r = fn(data, b);
            if (r)
                break;
        }
        const char *next = json_string_value(json_object_get(reply, "cursor"));
        if (r || !next) {
            json_decref(reply);
            break;
        }
        json_object_set_new(req, "cursor", json_string(next));
        json_decref(reply);
    }
    cli_client_close(conn);
    json_decref(req);
    return r;
}
