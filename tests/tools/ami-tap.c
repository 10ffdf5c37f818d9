/* ami-tap: runs real AMI sessions on the real event loop and prints every normalized security
 * event as one JSON line on stdout, so integration tests can drive the session code against a
 * scripted AMI peer before (and independently of) the core.
 *
 *   ami-tap [-v] [-q QUIET_MS] -c pbxguard.conf
 *   ami-tap [-v] [-q QUIET_MS] -a name=N,host=H,port=P,user=U,secret=S,auth=md5|plain
 *           [,ping=MS][,ping_timeout=MS][,connect_timeout=MS][,backoff_min=MS][,backoff_max=MS]
 *
 * -c starts one session per [ami:NAME] of the file (loaded with config_load()); -a may be
 * repeated (one session each). SIGUSR1 prints a {"stats": ...} line; SIGTERM or
 * SIGINT prints it too and exits 0. Logs go to stderr. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ami_session.h"
#include "config.h"
#include "log.h"
#include "loop.h"

#define MAX_SESSIONS 8

static struct ami_session *sessions[MAX_SESSIONS];
static unsigned nsessions;

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(s);
    }
    json_decref(j);
}

static json_t *endpoint_json(const struct sec_endpoint *ep)
{
    char buf[ADDR_STRLEN];
    return json_pack("{s:s, s:i, s:s, s:s}", "addr", addr_format(&ep->addr, buf, sizeof(buf)),
                     "port", ep->port, "transport", sec_transport_name(ep->transport), "scope",
                     ep->scope);
}

static void on_event(void *data, const struct sec_event *ev)
{
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:i, s:o, s:s, s:b, s:s, s:I, s:I}", "source", ev->source,
                  "type", sec_event_type_name(ev->type), "service", ev->service, "version",
                  ev->version, "remote", endpoint_json(&ev->remote), "account", ev->account,
                  "account_truncated", ev->account_truncated, "session", ev->session, "event_tv_ms",
                  (json_int_t)ev->event_tv_ms, "received_ms", (json_int_t)ev->received_ms);
    if (!j) {
        /* Not valid UTF-8 (attacker text): say so rather than lose the event. */
        j = json_pack("{s:s, s:s, s:o, s:b}", "source", ev->source, "type",
                      sec_event_type_name(ev->type), "remote", endpoint_json(&ev->remote),
                      "invalid_utf8", 1);
    }
    if (j && ev->has_local)
        json_object_set_new(j, "local", endpoint_json(&ev->local));
    if (j)
        print_json(j);
}

static void print_stats(void)
{
    json_t *all = json_object();
    for (unsigned i = 0; i < nsessions; i++) {
        struct ami_session_stats st;
        struct addr peer;
        char buf[ADDR_STRLEN] = "";
        ami_session_get_stats(sessions[i], &st);
        if (ami_session_peer(sessions[i], &peer) == 0)
            addr_format(&peer, buf, sizeof(buf));
        json_object_set_new(
            all, ami_session_name(sessions[i]),
            json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "state",
                      ami_session_state_name(sessions[i]), "version",
                      ami_session_version(sessions[i]), "peer", buf, "events",
                      (json_int_t)st.events, "frames_discarded", (json_int_t)st.frames_discarded,
                      "unknown_events", (json_int_t)st.unknown_events, "malformed_events",
                      (json_int_t)st.malformed_events, "connects", (json_int_t)st.connects,
                      "logins", (json_int_t)st.logins, "reconnects", (json_int_t)st.reconnects,
                      "auth_failures", (json_int_t)st.auth_failures, "last_event_ms",
                      (json_int_t)ami_session_last_event_ms(sessions[i])));
    }
    print_json(json_pack("{s:o}", "stats", all));
}

static void on_usr1(struct loop *l, void *data)
{
    print_stats();
}

static void on_term(struct loop *l, void *data)
{
    loop_stop(l);
}

static void on_config_error(void *data, const char *message)
{
    fprintf(stderr, "ami-tap: %s\n", message);
}

static int parse_ms(const char *v, int64_t *ret)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || n < 0)
        return -1;
    *ret = n;
    return 0;
}

static int parse_spec(char *spec, struct cfg_ami *a)
{
    config_ami_defaults(a);
    for (char *save = NULL, *kv = strtok_r(spec, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *v = strchr(kv, '=');
        if (!v)
            return -1;
        *v++ = '\0';
        int r = 0;
        if (!strcmp(kv, "name"))
            snprintf(a->name, sizeof(a->name), "%s", v);
        else if (!strcmp(kv, "host"))
            snprintf(a->host, sizeof(a->host), "%s", v);
        else if (!strcmp(kv, "port"))
            a->port = (uint16_t)atoi(v);
        else if (!strcmp(kv, "user"))
            snprintf(a->username, sizeof(a->username), "%s", v);
        else if (!strcmp(kv, "secret"))
            snprintf(a->secret, sizeof(a->secret), "%s", v);
        else if (!strcmp(kv, "auth"))
            a->auth = !strcmp(v, "plain") ? CFG_AMI_AUTH_PLAIN : CFG_AMI_AUTH_MD5;
        else if (!strcmp(kv, "ping"))
            r = parse_ms(v, &a->ping_interval_ms);
        else if (!strcmp(kv, "ping_timeout"))
            r = parse_ms(v, &a->ping_timeout_ms);
        else if (!strcmp(kv, "connect_timeout"))
            r = parse_ms(v, &a->connect_timeout_ms);
        else if (!strcmp(kv, "backoff_min"))
            r = parse_ms(v, &a->backoff_min_ms);
        else if (!strcmp(kv, "backoff_max"))
            r = parse_ms(v, &a->backoff_max_ms);
        else
            return -1;
        if (r < 0)
            return -1;
    }
    return a->host[0] ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct cfg_ami cfgs[MAX_SESSIONS];
    unsigned ncfg = 0;
    int64_t quiet_ms = 0;
    enum log_level level = LOG_LVL_INFO;
    static struct config config;
    bool have_config = false;
    int c;
    while ((c = getopt(argc, argv, "a:c:q:v")) != -1) {
        switch (c) {
        case 'c':
            if (have_config || config_load(optarg, &config, on_config_error, NULL) != 0)
                return 2;
            have_config = true;
            for (unsigned i = 0; i < config.nami && ncfg < MAX_SESSIONS; i++)
                cfgs[ncfg++] = config.ami[i];
            break;
        case 'a':
            if (ncfg == MAX_SESSIONS || parse_spec(optarg, &cfgs[ncfg]) < 0) {
                fprintf(stderr, "ami-tap: bad -a spec\n");
                return 2;
            }
            ncfg++;
            break;
        case 'q':
            if (parse_ms(optarg, &quiet_ms) < 0)
                return 2;
            break;
        case 'v':
            level = LOG_LVL_DEBUG;
            break;
        default:
            return 2;
        }
    }
    if (ncfg == 0) {
        fprintf(stderr,
                "usage: ami-tap [-v] [-q QUIET_MS] -c FILE | -a name=N,host=H,... [-a ...]\n");
        return 2;
    }
    log_setup(LOG_TARGET_STDERR, level);
    struct loop *l = loop_new();
    if (!l)
        return 1;
    loop_signal_add(l, SIGTERM, on_term, NULL);
    loop_signal_add(l, SIGINT, on_term, NULL);
    loop_signal_add(l, SIGUSR1, on_usr1, NULL);
    struct sec_sink sink = {.submit = on_event, .data = NULL};
    for (unsigned i = 0; i < ncfg; i++) {
        sessions[i] = ami_session_new(l, &cfgs[i], sink);
        if (!sessions[i]) {
            fprintf(stderr, "ami-tap: session %s: %s\n", cfgs[i].name, strerror(errno));
            return 1;
        }
        if (quiet_ms > 0)
            ami_session_set_quiet_warning(sessions[i], quiet_ms);
        nsessions++;
    }
    fprintf(stderr, "ami-tap: ready\n");
    int r = loop_run(l);
    print_stats();
    for (unsigned i = 0; i < nsessions; i++)
        ami_session_free(sessions[i]);
    loop_free(l);
    if (have_config)
        config_free(&config);
    return r < 0 ? 1 : 0;
}
