/* bench_prom: what the Prometheus textfile costs: one metrics update (a counted failure), one
 * write (render, write, rename) of a typical and of a full table, and the loop's part of a
 * write with the writer thread (the rendering, under the lock it shares with it). Prints
 * figures; never passes or fails on time. Usage: bench_prom [DIR] (default /var/tmp). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "prom_file.h"

#define UPDATES 2000000
#define WRITES 1000

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

static const char *const services[] = {"PJSIP", "SIP", "IAX2", "AMI", "ARI", "HTTP"};
static const char *const events[] = {"InvalidAccountID", "InvalidPassword",
                                     "ChallengeResponseFailed", "FailedACL", "RequestNotAllowed"};

/* A host's usual table: every service and event, a few sources, bans, the loop. */
static void fill_typical(struct metrics *m)
{
    char src[32];
    for (size_t s = 0; s < 6; s++)
        for (size_t e = 0; e < 5; e++)
            metrics_add(m, METRICS_FAILED_AUTH, services[s], events[e], 1000 + s * e);
    for (size_t e = 0; e < 5; e++)
        metrics_add(m, METRICS_EVENTS, events[e], NULL, 12345);
    metrics_add(m, METRICS_BANS, "threshold", NULL, 321);
    metrics_add(m, METRICS_BANS, "manual", NULL, 3);
    metrics_add(m, METRICS_UNBANS, "expired", NULL, 300);
    metrics_set(m, METRICS_BANS_ACTIVE, "ipv4", NULL, 21);
    metrics_set(m, METRICS_BANS_ACTIVE, "ipv6", NULL, 2);
    for (int i = 0; i < 4; i++) {
        snprintf(src, sizeof(src), "ami:pbx%d", i);
        metrics_set(m, METRICS_AMI_UP, src, NULL, 1);
        metrics_set(m, METRICS_AMI_EVENTS, src, NULL, 99999);
        metrics_set(m, METRICS_AMI_MALFORMED, src, NULL, 0);
        metrics_set(m, METRICS_AMI_OVERSIZED, src, NULL, 0);
        metrics_set(m, METRICS_AMI_RECONNECTS, src, NULL, 2);
        metrics_set(m, METRICS_AMI_LOGIN_FAIL, src, NULL, 0);
    }
    metrics_set(m, METRICS_NFT_ENFORCING, NULL, NULL, 1);
    metrics_add(m, METRICS_NFT_ERRORS, NULL, NULL, 0);
    metrics_add(m, METRICS_DB_ERRORS, NULL, NULL, 0);
    metrics_set(m, METRICS_LOOP_TURN, "0.99", NULL, 0.000123);
    metrics_set(m, METRICS_LOOP_TURN, "1", NULL, 0.0021);
    metrics_set(m, METRICS_LOOP_TURNS, NULL, NULL, 123456789);
}

/* Every series the table can hold, each label at its longest and all quotes (escaped twice as
 * long): the most a hostile peer can make the file. */
static void fill_full(struct metrics *m)
{
    char l1[METRICS_LABEL_MAX + 1], l2[METRICS_LABEL_MAX + 1];
    memset(l1, '"', METRICS_LABEL_MAX);
    memset(l2, '"', METRICS_LABEL_MAX);
    l1[METRICS_LABEL_MAX] = l2[METRICS_LABEL_MAX] = '\0';
    for (int f = 0; f < METRICS_FAMILY_COUNT; f++)
        for (int i = 0; i < 100; i++) {
            snprintf(l1 + METRICS_LABEL_MAX - 8, 9, "%08d", i);
            metrics_add(m, (enum metrics_family)f, l1, l2, 1234567.0 * i);
        }
}

static void time_writes(const char *name, const char *dir, struct metrics *m)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/bench-prom-%d.prom", dir, (int)getpid());
    struct prom_file *pf = prom_file_new(path);
    if (!pf) {
        perror("prom_file_new");
        exit(1);
    }
    static double t[WRITES];
    for (int i = 0; i < WRITES; i++) {
        double t0 = now_s();
        if (prom_file_write(pf, m) < 0) {
            fprintf(stderr, "write %s failed at %s\n", path, prom_file_failed_step(pf));
            exit(1);
        }
        t[i] = now_s() - t0;
    }
    struct stat st;
    stat(path, &st);
    qsort(t, WRITES, sizeof(t[0]), cmp_double);
    printf("write, %s table: %u series, %lld bytes: p50 %.0f us, p99 %.0f us, max %.0f us "
           "(%d writes into %s)\n",
           name, m->nseries, (long long)st.st_size, t[WRITES / 2] * 1e6, t[WRITES * 99 / 100] * 1e6,
           t[WRITES - 1] * 1e6, WRITES, dir);
    /* What the loop pays: the snapshot rendered for the writer thread. */
    if (prom_file_start(pf) == 0) {
        for (int i = 0; i < WRITES; i++) {
            double t0 = now_s();
            prom_file_submit(pf, m);
            t[i] = now_s() - t0;
            usleep(200);
        }
        qsort(t, WRITES, sizeof(t[0]), cmp_double);
        printf("submit (the loop's part), %s table: p50 %.0f us, p99 %.0f us, max %.0f us\n", name,
               t[WRITES / 2] * 1e6, t[WRITES * 99 / 100] * 1e6, t[WRITES - 1] * 1e6);
    }
    prom_file_remove(pf);
    prom_file_free(pf);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/var/tmp";
    struct metrics *m = metrics_new();
    double t0 = now_s();
    for (unsigned i = 0; i < UPDATES; i++)
        metrics_add(m, METRICS_FAILED_AUTH, services[i % 6], events[i % 5], 1);
    double dt = now_s() - t0;
    printf("update (a counted failure): %.0f ns each (%d updates)\n", dt / UPDATES * 1e9, UPDATES);
    metrics_free(m);

    m = metrics_new();
    fill_typical(m);
    time_writes("typical", dir, m);
    metrics_free(m);
    m = metrics_new();
    fill_full(m);
    time_writes("full", dir, m);
    metrics_free(m);
    return 0;
}
