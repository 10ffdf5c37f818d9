/* Fills a database with active bans through the real store API, fast (one transaction per
 * 10,000 bans), for the tests that need many bans without placing them one by one over the
 * control socket.
 *
 *   ban-fixture DB N     N manual bans of the IPv4 addresses 10.0.0.0 upwards, each for a day,
 *                        each with one recorded failure (so `list` shows first and last seen)
 *
 * Prints "N bans" once committed. No daemon may run on DB meanwhile (it holds DB.lock). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "store.h"

#define BATCH 10000

static int fail(struct store *s, const char *what, int r)
{
    fprintf(stderr, "ban-fixture: %s: %s (%s)\n", what, store_strerror(r), store_errmsg(s));
    store_close(s);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ban-fixture DB N\n");
        return 2;
    }
    char *end;
    long n = strtol(argv[2], &end, 10);
    if (!argv[2][0] || *end || n < 0 || n > 16000000) {
        fprintf(stderr, "ban-fixture: N must be a number from 0 to 16000000\n");
        return 2;
    }
    struct store *s = NULL;
    int r = store_open(argv[1], NULL, &s);
    if (r < 0)
        return fail(NULL, argv[1], r);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    for (long i = 0; i < n; i++) {
        uint32_t ip = 0x0a000000u + (uint32_t)i; /* 10.0.0.0 upwards */
        struct store_ban b = {.start_ms = now - 60000,
                              .expires_ms = now + 86400000,
                              .reason = STORE_BAN_MANUAL,
                              .offence = 1,
                              .event_type = -1};
        b.prefix.addr.family = AF_INET;
        b.prefix.addr.bytes[0] = (uint8_t)(ip >> 24);
        b.prefix.addr.bytes[1] = (uint8_t)(ip >> 16);
        b.prefix.addr.bytes[2] = (uint8_t)(ip >> 8);
        b.prefix.addr.bytes[3] = (uint8_t)ip;
        b.prefix.len = 32;
        snprintf(b.origin, sizeof(b.origin), "cli:uid=0");
        struct sec_event ev = {.type = SEC_INVALID_PASSWORD, .version = 1};
        snprintf(ev.service, sizeof(ev.service), "PJSIP");
        snprintf(ev.source, sizeof(ev.source), "ami:fixture");
        ev.remote.addr = b.prefix.addr;
        ev.remote.port = 5060;
        ev.remote.transport = SEC_TRANSPORT_UDP;
        if ((r = store_failure_add(s, &ev, &b.prefix, 1, false, now - 120000)) < 0)
            return fail(s, "store_failure_add", r);
        if ((r = store_ban_add(s, &b, NULL)) < 0)
            return fail(s, "store_ban_add", r);
        if ((i + 1) % BATCH == 0 && (r = store_turn_commit(s)) < 0)
            return fail(s, "commit", r);
    }
    if ((r = store_turn_commit(s)) < 0)
        return fail(s, "commit", r);
    store_close(s);
    printf("%ld bans\n", n);
    return 0;
}
