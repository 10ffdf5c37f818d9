/* bench_ami: throughput of the AMI frame parser and the per-event cost of normalization, on the
 * mix of the real Asterisk 20 capture (security events with system events and responses mixed
 * in). Prints figures; never passes or fails on time. One thread, so one core.
 *
 *   bench_ami [CAPTURE.raw]   (default: the fixture in the source tree) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ami_event.h"
#include "ami_frame.h"

#define RUNS 3
#define TARGET_BYTES (256u << 20) /* AMI text per run */
#define READ_SIZE 65536           /* bytes per simulated recv() */
#define NORMALIZE_ROUNDS 200000

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
    /* Drop the banner line: the stream is replayed as a body, over and over. */
    char *nl = memchr(buf, '\n', n);
    size_t skip = nl ? (size_t)(nl - buf) + 1 : 0;
    *ret_len = n - skip;
    return buf + skip;
}

static struct ami_parser parser;
static volatile uint64_t sink_sum;

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : PBXGUARD_FIXTURE;
    size_t body_len;
    const char *body = load(path, &body_len);
    size_t reps = TARGET_BYTES / body_len;
    char *stream = malloc(reps * body_len);
    for (size_t i = 0; i < reps; i++)
        memcpy(stream + i * body_len, body, body_len);
    size_t total = reps * body_len;

    double parse_t[RUNS], full_t[RUNS];
    uint64_t frames = 0, events = 0;
    for (int run = 0; run < RUNS; run++) {
        /* 1: framing only. */
        ami_parser_init(&parser, false);
        frames = 0;
        double t0 = now_s();
        for (size_t off = 0; off < total;) {
            size_t n = total - off < READ_SIZE ? total - off : READ_SIZE;
            off += ami_parser_feed(&parser, stream + off, n);
            while (ami_parser_next(&parser))
                frames++;
        }
        parse_t[run] = now_s() - t0;

        /* 2: framing, the cheap security test, and normalization of every security event. */
        ami_parser_init(&parser, false);
        events = 0;
        t0 = now_s();
        for (size_t off = 0; off < total;) {
            size_t n = total - off < READ_SIZE ? total - off : READ_SIZE;
            off += ami_parser_feed(&parser, stream + off, n);
            const struct ami_frame *f;
            while ((f = ami_parser_next(&parser))) {
                struct sec_event ev;
                if (ami_event_from_frame(f, "ami:bench", &ev, NULL) == AMI_EVENT_OK) {
                    events++;
                    sink_sum += ev.remote.port;
                }
            }
        }
        full_t[run] = now_s() - t0;
    }

    /* 3: normalization alone, on already framed events (one parser per distinct event). */
    static struct ami_parser one[64];
    const struct ami_frame *sec[64];
    unsigned nsec = 0;
    {
        const char *p = body, *e = body + body_len;
        while (p < e && nsec < 64) {
            const char *end = strstr(p, "\r\n\r\n");
            if (!end)
                break;
            end += 4;
            ami_parser_init(&one[nsec], false);
            ami_parser_feed(&one[nsec], p, (size_t)(end - p));
            const struct ami_frame *f = ami_parser_next(&one[nsec]);
            if (f && ami_frame_is_security(f))
                sec[nsec++] = f;
            p = end;
        }
    }
    double norm_t[RUNS];
    for (int run = 0; run < RUNS; run++) {
        double t0 = now_s();
        for (unsigned r = 0; r < NORMALIZE_ROUNDS / nsec + 1; r++) {
            for (unsigned i = 0; i < nsec; i++) {
                struct sec_event ev;
                if (ami_event_from_frame(sec[i], "ami:bench", &ev, NULL) == AMI_EVENT_OK)
                    sink_sum += ev.remote.port;
            }
        }
        norm_t[run] = (now_s() - t0) / ((double)(NORMALIZE_ROUNDS / nsec + 1) * nsec);
    }

    double mb = (double)total / 1e6;
    printf("bench_ami: %s\n", path);
    printf("stream: %.1f MB per run = %zu copies of the capture body; %llu frames, %llu security "
           "events per run; %d runs, one core\n",
           mb, reps, (unsigned long long)frames, (unsigned long long)events, RUNS);
    for (int run = 0; run < RUNS; run++)
        printf("  run %d: parse %.3f s (%.2fM frames/s, %.0f MB/s); parse+normalize %.3f s "
               "(%.2fM events/s, %.0f MB/s); normalize %.0f ns/event\n",
               run + 1, parse_t[run], frames / parse_t[run] / 1e6, mb / parse_t[run], full_t[run],
               events / full_t[run] / 1e6, mb / full_t[run], norm_t[run] * 1e9);
    qsort(parse_t, RUNS, sizeof(double), cmp_double);
    qsort(full_t, RUNS, sizeof(double), cmp_double);
    qsort(norm_t, RUNS, sizeof(double), cmp_double);
    printf("median: frame parser %.2fM frames/s, %.0f MB/s | parse+normalize %.2fM security "
           "events/s, %.0f MB/s | normalization %.0f ns/event\n",
           frames / parse_t[RUNS / 2] / 1e6, mb / parse_t[RUNS / 2],
           events / full_t[RUNS / 2] / 1e6, mb / full_t[RUNS / 2], norm_t[RUNS / 2] * 1e9);
    free(stream);
    return sink_sum == 42 ? 1 : 0;
}
