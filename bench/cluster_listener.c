/* bench/cluster_listener: N lightweight fleet nodes in one process, for bench_cluster.py. Each
 * connection does what a node's fleet module does with the shared table: LISTEN, and on every
 * notification read the rows above its own cursor (the same prepared query as daemon/cluster.c),
 * then move its cursor. It applies nothing: it records when it first read each row.
 *
 *   cluster_listener CONNINFO N PROBE_PREFIX
 *
 * Prints "ready" once every connection listens and has caught up. Then, for each line read on
 * stdin:
 *   "dump"  prints "P PREFIX CONN T" for every row whose prefix starts with PROBE_PREFIX seen
 *           since the last dump (T: CLOCK_MONOTONIC seconds when the connection read it), then
 *           "C CONN ROWS T" per connection (rows read so far, time of its last row), then "end";
 *   EOF     exits. */
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define READ_SQL                                                                                   \
    "SELECT seq, prefix::text, deleted, CASE WHEN expires IS NULL THEN NULL ELSE "                 \
    "floor(extract(epoch FROM expires - now()) * 1000)::bigint END, node, reason, note FROM "      \
    "pbxguard_bans WHERE seq > $1::bigint AND seq <= (SELECT last_value FROM pbxguard_seq) "       \
    "ORDER BY seq LIMIT $2::integer"

struct node {
    PGconn *conn;
    long long cursor;
    int busy, wanted;
    long long rows;
    double last;
};

struct probe {
    char prefix[64];
    int conn;
    double t;
};

static struct probe *probes;
static size_t nprobes, capprobes;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void send_read(struct node *n)
{
    char cur[32];
    snprintf(cur, sizeof(cur), "%lld", n->cursor);
    const char *params[2] = {cur, "1000"};
    if (!PQsendQueryPrepared(n->conn, "pbxguard_read", 2, params, NULL, NULL, 0)) {
        fprintf(stderr, "send: %s", PQerrorMessage(n->conn));
        exit(1);
    }
    n->busy = 1;
    n->wanted = 0;
}

static void on_rows(struct node *n, int id, PGresult *res, const char *probe)
{
    int rows = PQntuples(res);
    double t = now();
    for (int i = 0; i < rows; i++) {
        long long seq = atoll(PQgetvalue(res, i, 0));
        if (seq > n->cursor)
            n->cursor = seq;
        n->rows++;
        n->last = t;
        const char *p = PQgetvalue(res, i, 1);
        if (probe[0] && strncmp(p, probe, strlen(probe)) == 0) {
            if (nprobes == capprobes) {
                capprobes = capprobes ? capprobes * 2 : 4096;
                probes = realloc(probes, capprobes * sizeof(*probes));
            }
            snprintf(probes[nprobes].prefix, sizeof(probes[nprobes].prefix), "%s", p);
            probes[nprobes].conn = id;
            probes[nprobes++].t = t;
        }
    }
    if (rows == 1000)
        n->wanted = 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s CONNINFO N PROBE_PREFIX\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[2]);
    const char *probe = argv[3];
    struct node *nodes = calloc((size_t)n, sizeof(*nodes));
    struct pollfd *pfd = calloc((size_t)n + 1, sizeof(*pfd));
    for (int i = 0; i < n; i++) {
        nodes[i].conn = PQconnectdb(argv[1]);
        if (PQstatus(nodes[i].conn) != CONNECTION_OK) {
            fprintf(stderr, "connect: %s", PQerrorMessage(nodes[i].conn));
            return 1;
        }
        PQclear(PQexec(nodes[i].conn, "LISTEN pbxguard_bans"));
        PGresult *prep = PQprepare(nodes[i].conn, "pbxguard_read", READ_SQL, 2, NULL);
        if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
            fprintf(stderr, "prepare: %s", PQerrorMessage(nodes[i].conn));
            return 1;
        }
        PQclear(prep);
        PGresult *r = PQexec(nodes[i].conn, "SELECT coalesce(max(seq), 0) FROM pbxguard_bans");
        nodes[i].cursor = atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
        PQsetnonblocking(nodes[i].conn, 1);
    }
    printf("ready\n");
    fflush(stdout);
    char line[64];
    for (;;) {
        for (int i = 0; i < n; i++) {
            pfd[i].fd = PQsocket(nodes[i].conn);
            pfd[i].events = POLLIN;
        }
        pfd[n].fd = 0;
        pfd[n].events = POLLIN;
        if (poll(pfd, (nfds_t)n + 1, 1000) < 0)
            return 1;
        for (int i = 0; i < n; i++) {
            struct node *nd = &nodes[i];
            if (!(pfd[i].revents & (POLLIN | POLLERR | POLLHUP)))
                continue;
            if (!PQconsumeInput(nd->conn)) {
                fprintf(stderr, "conn %d: %s", i, PQerrorMessage(nd->conn));
                return 1;
            }
            PGnotify *nt;
            while ((nt = PQnotifies(nd->conn))) {
                if (atoll(nt->extra) > nd->cursor)
                    nd->wanted = 1;
                PQfreemem(nt);
            }
            while (nd->busy && !PQisBusy(nd->conn)) {
                PGresult *res = PQgetResult(nd->conn);
                if (!res) {
                    nd->busy = 0;
                    break;
                }
                if (PQresultStatus(res) == PGRES_TUPLES_OK)
                    on_rows(nd, i, res, probe);
                PQclear(res);
            }
            if (!nd->busy && nd->wanted)
                send_read(nd);
        }
        if (pfd[n].revents & (POLLIN | POLLHUP)) {
            if (!fgets(line, sizeof(line), stdin))
                break;
            if (strncmp(line, "dump", 4) == 0) {
                for (size_t k = 0; k < nprobes; k++)
                    printf("P %s %d %.6f\n", probes[k].prefix, probes[k].conn, probes[k].t);
                nprobes = 0;
                for (int i = 0; i < n; i++)
                    printf("C %d %lld %.6f\n", i, nodes[i].rows, nodes[i].last);
                printf("end\n");
                fflush(stdout);
            }
        }
    }
    for (int i = 0; i < n; i++)
        PQfinish(nodes[i].conn);
    free(nodes);
    free(pfd);
    free(probes);
    return 0;
}
