/* statsd-send: drives the real StatsD emitter from a script on stdin, for integration tests.
 *
 * Usage: statsd-send [--host H] [--port P] [--prefix X] [--own-prefix Y] [--type c|m]
 *                    [--no-per-address] [--limit N] [--max-payload N] [--interval-ms N]
 *
 * Commands, one per line (words separated by spaces; \xNN in a word is that byte):
 *   failed SERVICE ADDRESS TRANSPORT [SCOPE]   one counted failure (TRANSPORT: UDP..WSS or -)
 *   flood N DISTINCT                           N failures from DISTINCT IPv4/IPv6 addresses,
 *                                              a flush after every 100 (like loop turns)
 *   count NAME V | countby NAME SUB V | gauge NAME V     the daemon's own meters
 *   flush                                      what the core does at the end of a loop turn
 *   sleep MS
 *   stats                                      prints one line of key=value counters
 * Exits 0, or 1 with a message on a bad command or statsd_new() failure. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "statsd.h"

static void unescape(char *w)
{
    char *o = w;
    for (char *p = w; *p;) {
        unsigned v;
        if (p[0] == '\\' && p[1] == 'x' && sscanf(p + 2, "%2x", &v) == 1) {
            *o++ = (char)v;
            p += 4;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
}

static int transport_from(const char *s, enum sec_transport *ret)
{
    static const char *const names[] = {"-", "UDP", "TCP", "TLS", "WS", "WSS"};
    for (int i = 0; i < 6; i++) {
        if (strcmp(s, names[i]) == 0) {
            *ret = (enum sec_transport)i;
            return 0;
        }
    }
    return -EINVAL;
}

static void print_stats(struct statsd *s)
{
    struct statsd_stats st;
    statsd_get_stats(s, &st);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("datagrams_sent=%" PRIu64 " lines_sent=%" PRIu64 " datagrams_dropped=%" PRIu64
           " lines_dropped=%" PRIu64 " lines_suppressed=%" PRIu64 " send_errno=%" PRIu64
           " buffered=%zu buffer_size=%zu maxrss_kb=%ld\n",
           st.datagrams_sent, st.lines_sent, st.datagrams_dropped, st.lines_dropped,
           st.lines_suppressed, st.send_errno, st.buffered, st.buffer_size, ru.ru_maxrss);
    fflush(stdout);
}

static void flood(struct statsd *s, unsigned long n, unsigned long distinct)
{
    struct sec_event ev = {.type = SEC_INVALID_ACCOUNT_ID, .service = "PJSIP"};
    ev.remote.transport = SEC_TRANSPORT_UDP;
    for (unsigned long i = 0; i < n; i++) {
        uint32_t k = (uint32_t)(distinct ? i % distinct : i);
        memset(&ev.remote.addr, 0, sizeof(ev.remote.addr));
        if (k & 1) {
            ev.remote.addr.family = AF_INET6;
            ev.remote.addr.bytes[0] = 0x20;
            ev.remote.addr.bytes[1] = 0x01;
            ev.remote.addr.bytes[2] = 0x0d;
            ev.remote.addr.bytes[3] = 0xb8;
            memcpy(ev.remote.addr.bytes + 12, &k, sizeof(k));
        } else {
            ev.remote.addr.family = AF_INET;
            ev.remote.addr.bytes[0] = 10;
            ev.remote.addr.bytes[1] = (uint8_t)(k >> 16);
            ev.remote.addr.bytes[2] = (uint8_t)(k >> 8);
            ev.remote.addr.bytes[3] = (uint8_t)k;
        }
        statsd_failed_auth(s, &ev);
        if (i % 100 == 99)
            statsd_flush(s);
    }
    statsd_flush(s);
}

static int run(struct statsd *s, char **w, int nw)
{
    if (nw == 0)
        return 0;
    if (strcmp(w[0], "failed") == 0 && (nw == 4 || nw == 5)) {
        struct sec_event ev = {.type = SEC_INVALID_PASSWORD};
        snprintf(ev.service, sizeof(ev.service), "%s", w[1]);
        if (addr_parse(w[2], strlen(w[2]), &ev.remote.addr) < 0 ||
            transport_from(w[3], &ev.remote.transport) < 0)
            return -EINVAL;
        if (nw == 5)
            snprintf(ev.remote.scope, sizeof(ev.remote.scope), "%s", w[4]);
        statsd_failed_auth(s, &ev);
    } else if (strcmp(w[0], "flood") == 0 && nw == 3) {
        flood(s, strtoul(w[1], NULL, 10), strtoul(w[2], NULL, 10));
    } else if (strcmp(w[0], "count") == 0 && nw == 3) {
        statsd_count(s, w[1], strtoll(w[2], NULL, 10));
    } else if (strcmp(w[0], "countby") == 0 && nw == 4) {
        statsd_count_by(s, w[1], w[2], strtoll(w[3], NULL, 10));
    } else if (strcmp(w[0], "gauge") == 0 && nw == 3) {
        statsd_gauge(s, w[1], strtoll(w[2], NULL, 10));
    } else if (strcmp(w[0], "flush") == 0 && nw == 1) {
        statsd_flush(s);
    } else if (strcmp(w[0], "sleep") == 0 && nw == 2) {
        long ms = strtol(w[1], NULL, 10);
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    } else if (strcmp(w[0], "stats") == 0 && nw == 1) {
        print_stats(s);
    } else {
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct cfg_statsd cfg = {.enabled = true,
                             .host = "127.0.0.1",
                             .port = 8125,
                             .own_prefix = "pbxguard",
                             .per_address = true,
                             .per_address_limit = 1000,
                             .max_payload = 1432,
                             .flush_interval_ms = 1000};
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"prefix", required_argument, NULL, 'x'},
        {"own-prefix", required_argument, NULL, 'o'},
        {"type", required_argument, NULL, 't'},
        {"no-per-address", no_argument, NULL, 'n'},
        {"limit", required_argument, NULL, 'l'},
        {"max-payload", required_argument, NULL, 'm'},
        {"interval-ms", required_argument, NULL, 'i'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            snprintf(cfg.host, sizeof(cfg.host), "%s", optarg);
            break;
        case 'p':
            cfg.port = (uint16_t)strtoul(optarg, NULL, 10);
            break;
        case 'x':
            snprintf(cfg.prefix, sizeof(cfg.prefix), "%s", optarg);
            break;
        case 'o':
            snprintf(cfg.own_prefix, sizeof(cfg.own_prefix), "%s", optarg);
            break;
        case 't':
            cfg.type = strcmp(optarg, "m") == 0 ? CFG_STATSD_METER : CFG_STATSD_COUNTER;
            break;
        case 'n':
            cfg.per_address = false;
            break;
        case 'l':
            cfg.per_address_limit = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            cfg.max_payload = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'i':
            cfg.flush_interval_ms = strtoll(optarg, NULL, 10);
            break;
        default:
            return 2;
        }
    }
    struct statsd *s = statsd_new(&cfg);
    if (!s) {
        fprintf(stderr, "statsd-send: statsd_new(%s:%u): %s\n", cfg.host, cfg.port,
                strerror(errno));
        return 1;
    }
    char line[1024];
    unsigned lineno = 0;
    int status = 0;
    while (fgets(line, sizeof(line), stdin)) {
        lineno++;
        char *w[8];
        int nw = 0;
        for (char *tok = strtok(line, " \t\r\n"); tok && nw < 8; tok = strtok(NULL, " \t\r\n")) {
            unescape(tok);
            w[nw++] = tok;
        }
        if (run(s, w, nw) < 0) {
            fprintf(stderr, "statsd-send: line %u: bad command\n", lineno);
            status = 1;
            break;
        }
    }
    statsd_free(s);
    return status;
}
