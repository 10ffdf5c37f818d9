/* bench_statsd: what a counted failure costs the StatsD emitter. Prints figures; never passes or
 * fails on time. Runs in a private network namespace (bench/run does that): the server is a UDP
 * socket on 127.0.0.1 that drains nothing, so the kernel drops for it once its buffer is full. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "statsd.h"
#include "statsd_name.h"

#define RUNS 3
#define EVENTS 1000000
#define TURN 100 /* events per loop turn: one flush each */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void set_addr(struct sec_event *ev, uint32_t k)
{
    memset(&ev->remote.addr, 0, sizeof(ev->remote.addr));
    if (k & 1) {
        ev->remote.addr.family = AF_INET6;
        ev->remote.addr.bytes[0] = 0x20;
        ev->remote.addr.bytes[1] = 0x01;
        memcpy(ev->remote.addr.bytes + 12, &k, sizeof(k));
    } else {
        ev->remote.addr.family = AF_INET;
        ev->remote.addr.bytes[0] = 10;
        memcpy(ev->remote.addr.bytes + 1, &k, 3);
    }
}

/* Seconds for EVENTS failures from `distinct` addresses, flushing every TURN events. */
static double run(uint16_t port, bool per_address, unsigned limit, uint32_t distinct,
                  struct statsd_stats *ret_st)
{
    struct cfg_statsd cfg = {.enabled = true,
                             .host = "127.0.0.1",
                             .port = port,
                             .own_prefix = "pbxguard",
                             .per_address = per_address,
                             .per_address_limit = limit,
                             .max_payload = 1432,
                             .flush_interval_ms = 1000};
    struct statsd *s = statsd_new(&cfg);
    if (!s) {
        perror("statsd_new");
        exit(1);
    }
    struct sec_event ev = {.type = SEC_INVALID_PASSWORD, .service = "PJSIP"};
    ev.remote.transport = SEC_TRANSPORT_UDP;
    double t0 = now_s();
    for (uint32_t i = 0; i < EVENTS; i++) {
        set_addr(&ev, i % distinct);
        statsd_failed_auth(s, &ev);
        if (i % TURN == TURN - 1)
            statsd_flush(s);
    }
    statsd_flush(s);
    double dt = now_s() - t0;
    statsd_get_stats(s, ret_st);
    statsd_free(s);
    return dt;
}

static void report(const char *label, uint16_t port, bool per_address, unsigned limit,
                   uint32_t distinct)
{
    double t[RUNS];
    struct statsd_stats st;
    for (int r = 0; r < RUNS; r++)
        t[r] = run(port, per_address, limit, distinct, &st);
    qsort(t, RUNS, sizeof(t[0]), cmp_double);
    double med = t[RUNS / 2];
    printf("%-52s %7.0f ns/event  %5.2f M events/s  %6.0f k datagrams/s  (%llu lines/datagram, "
           "%llu suppressed)\n",
           label, med / EVENTS * 1e9, EVENTS / med / 1e6, (double)st.datagrams_sent / med / 1e3,
           st.datagrams_sent ? (unsigned long long)(st.lines_sent / st.datagrams_sent) : 0ull,
           (unsigned long long)st.lines_suppressed);
}

int main(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
        perror("bench_statsd: server socket");
        return 1;
    }
    uint16_t port = ntohs(sin.sin_port);

    char name[STATSD_NAME_MAX], line[STATSD_LINE_MAX];
    struct sec_endpoint ep = {.transport = SEC_TRANSPORT_UDP};
    addr_parse("2001:db8:bad::66", 16, &ep.addr);
    double t0 = now_s();
    size_t total = 0;
    for (int i = 0; i < EVENTS; i++) {
        int n = statsd_name_failed_auth("PJSIP", &ep, name, sizeof(name));
        n = statsd_line(line, sizeof(line), "", name, 1, "c");
        total += (size_t)n;
    }
    double dt = now_s() - t0;
    printf("bench_statsd: %d events per run, median of %d runs, flush every %d events\n", EVENTS,
           RUNS, TURN);
    printf("%-52s %7.0f ns/name (%zu bytes)\n", "IPv6 per-address name + line, no I/O",
           dt / EVENTS * 1e9, total / EVENTS);
    report("1 address, both meters", port, true, 1000, 1);
    report("100k addresses, per-address limit 1000", port, true, 1000, 100000);
    report("100k addresses, per-address unlimited", port, true, 0, 100000);
    report("100k addresses, per-address off", port, false, 0, 100000);
    close(fd);
    return 0;
}
