/* bench_seclog: throughput of the security log line parser on one core, fed the way the log
 * source feeds it (64 KiB reads into the reader, lines pulled and parsed in place), on the lines
 * of the real Asterisk 20 security log (tests/fixtures/ami/asterisk20-ipv4-security.log), and on
 * hostile lines (a client's fields planted in AccountID). Prints figures; never passes or fails
 * on time.
 *
 *   bench_seclog [--json] [SECURITY.log]   (default: the fixture in the source tree)
 * --json prints one JSON object (the medians) instead of the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "seclog_line.h"

#define RUNS 3
#define TARGET_BYTES (128u << 20) /* log text per run */
#define READ_SIZE 65536

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *load(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    *ret_len = n;
    return buf;
}

static struct seclog_reader reader;
static volatile uint64_t sink_sum;

struct result {
    double lines_per_s, mb_per_s; /* on the thread's CPU time: the machine is shared */
    double wall_lines_per_s;
    uint64_t events, malformed, other;
};

static void count(struct result *res, char *line, size_t len)
{
    struct sec_event ev;
    struct seclog_line_info info;
    switch (seclog_line_parse(line, len, "seclog:bench", &ev, &info)) {
    case SECLOG_LINE_EVENT:
        res->events++;
        sink_sum += ev.remote.port;
        break;
    case SECLOG_LINE_MALFORMED:
        res->malformed++;
        break;
    case SECLOG_LINE_OTHER:
        res->other++;
        break;
    }
}

/* The parser alone: lines parsed in place where they lie in memory. */
static struct result run_parser(char *stream, size_t len)
{
    struct result res = {0};
    uint64_t lines = 0;
    double t0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
    for (char *p = stream, *e = stream + len; p < e;) {
        char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(e - p);
        count(&res, p, n);
        lines++;
        p += n + 1;
    }
    double dt = clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
    res.wall_lines_per_s = (double)lines / (clock_s(CLOCK_MONOTONIC) - w0);
    res.lines_per_s = (double)lines / dt;
    res.mb_per_s = (double)len / dt / 1e6;
    return res;
}

/* As the log source reads: 64 KiB copied into the reader (read(2)'s copy), lines pulled. */
static struct result run_reader(char *stream, size_t len)
{
    struct result res = {0};
    seclog_reader_init(&reader, 0, NULL, 0);
    uint64_t lines = 0;
    double t0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
    size_t off = 0;
    while (off < len) {
        size_t room;
        char *dst = seclog_reader_space(&reader, &room);
        size_t n = len - off < room ? len - off : room;
        if (n > READ_SIZE)
            n = READ_SIZE;
        memcpy(dst, stream + off, n);
        seclog_reader_commit(&reader, n);
        off += n;
        struct seclog_chunk c;
        while (seclog_reader_next(&reader, &c)) {
            lines++;
            count(&res, c.data, c.len);
        }
    }
    double dt = clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
    res.wall_lines_per_s = (double)lines / (clock_s(CLOCK_MONOTONIC) - w0);
    res.lines_per_s = (double)lines / dt;
    res.mb_per_s = (double)len / dt / 1e6;
    return res;
}

static char *repeat(const char *body, size_t body_len, size_t *ret_len)
{
    size_t reps = TARGET_BYTES / body_len;
    char *s = malloc(reps * body_len);
    if (!s) {
        perror("malloc");
        exit(1);
    }
    for (size_t i = 0; i < reps; i++)
        memcpy(s + i * body_len, body, body_len);
    *ret_len = reps * body_len;
    return s;
}

static bool json;

static double report(const char *what, const char *body, size_t body_len,
                     struct result (*run)(char *, size_t))
{
    size_t len;
    char *stream = repeat(body, body_len, &len);
    double lps[RUNS], mbs[RUNS], wall[RUNS];
    struct result last = {0};
    for (int i = 0; i < RUNS; i++) {
        last = run(stream, len);
        lps[i] = last.lines_per_s;
        mbs[i] = last.mb_per_s;
        wall[i] = last.wall_lines_per_s;
    }
    qsort(wall, RUNS, sizeof(double), cmp_double);
    qsort(lps, RUNS, sizeof(double), cmp_double);
    qsort(mbs, RUNS, sizeof(double), cmp_double);
    if (json) {
        free(stream);
        return lps[RUNS / 2];
    }
    printf("%-30s %5.2fM lines/s of CPU (min %.2fM, max %.2fM), %4.0f MB/s; wall clock %.2fM "
           "lines/s; per run %.0f MB: %llu events, %llu malformed, %llu other lines\n",
           what, lps[RUNS / 2] / 1e6, lps[0] / 1e6, lps[RUNS - 1] / 1e6, mbs[RUNS / 2],
           wall[RUNS / 2] / 1e6, (double)len / 1e6, (unsigned long long)last.events,
           (unsigned long long)last.malformed, (unsigned long long)last.other);
    free(stream);
    return lps[RUNS / 2];
}

#define PREFIX "[2026-11-26 09:01:49.010] SECURITY[11270] res_security_log.c: "
#define HEAD                                                                                       \
    "SecurityEvent=\"InvalidAccountID\",EventTV=\"2026-11-26T09:01:49.010+0000\","                 \
    "Severity=\"Error\",Service=\"AMI\",EventVersion=\"1\",AccountID=\""
#define TAIL                                                                                       \
    "\",SessionID=\"0x7fdb10f3c3e0\",LocalAddress=\"IPV4/TCP/127.0.0.1/5038\","                    \
    "RemoteAddress=\"IPV4/TCP/198.51.100.66/49129\",SessionTV=\"1970-01-01T00:00:00.000+0000\"\n"

int main(int argc, char **argv)
{
    int a = 1;
    if (argc > a && strcmp(argv[a], "--json") == 0) {
        json = true;
        a++;
    }
    const char *path = argc > a ? argv[a] : PBXGUARD_FIXTURE;
    size_t body_len;
    const char *body = load(path, &body_len);
    if (!json)
        printf(
            "security log line parser, one thread, %d runs of %u MB each (median, min, max); "
            "lines/s are per second of the thread's CPU time (the machine is shared), wall clock "
            "beside:\n",
            RUNS, TARGET_BYTES >> 20);
    double parser = report("parser, real Asterisk 20 log", body, body_len, run_parser);
    double with_reader = report("reader + parser, same log", body, body_len, run_reader);

    /* Each line carries a client's fake tail in AccountID: eight extra field boundaries. */
    static char hostile[4096];
    size_t n = 0;
    for (int i = 0; i < 8; i++)
        n += (size_t)snprintf(hostile + n, sizeof(hostile) - n, "%s%s%s%s", PREFIX, HEAD,
                              "x\",SessionID=\"1\",LocalAddress=\"IPV4/TCP/1.2.3.4/5038\","
                              "RemoteAddress=\"IPV4/TCP/203.0.113.5/5038\",SessionTV=\"0",
                              TAIL);
    double hostile_lps = report("parser, hostile lines", hostile, n, run_parser);
    if (json)
        printf("{\"parser_lines_per_s\": %.0f, \"reader_lines_per_s\": %.0f, "
               "\"hostile_lines_per_s\": %.0f}\n",
               parser, with_reader, hostile_lps);
    return 0;
}
