/* The nftables layer against the real kernel, for cases the integration tests cannot stage: each
 * test runs in a child moved into a private network namespace (unshare), so the host's ruleset
 * is never touched. Skipped when not root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <linux/netlink.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nftset.h"

#define SKIPPED 77

static struct cfg_nftables good_cfg(void)
{
    struct cfg_nftables c = {.priority = -10};
    snprintf(c.table, sizeof(c.table), "pbxguard");
    snprintf(c.set4, sizeof(c.set4), "banned4");
    snprintf(c.set6, sizeof(c.set6), "banned6");
    snprintf(c.chain, sizeof(c.chain), "input");
    return c;
}

/* Runs fn in a child inside a fresh network namespace; returns its exit status, SKIPPED if the
 * namespace cannot be made (not root). */
static int in_netns(int (*fn)(void))
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) < 0)
            _exit(SKIPPED);
        _exit(fn());
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* The layer's command socket: the netfilter netlink socket that is not the monitor. */
static int command_fd(const struct nftset *s)
{
    for (int fd = 3; fd < 1024; fd++) {
        int proto = 0;
        socklen_t len = sizeof(proto);
        if (fd == nftset_monitor_fd(s) ||
            getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) < 0 || proto != NETLINK_NETFILTER)
            continue;
        return fd;
    }
    return -1;
}

/* Child: a commit whose acks overflow the receive buffer stops reading early, leaving acks
 * behind; the requests after it must still get their own replies. */
static int child_leftover_acks(void)
{
    struct cfg_nftables c = good_cfg();
    struct nftset *s = nftset_open(&c);
    enum nftset_setup_action action;
    if (!s || nftset_setup(s, &action) < 0)
        return 2;
    int fd = command_fd(s);
    if (fd < 0)
        return 3;
    int tiny = 0, big = 8 * 1024 * 1024;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &tiny, sizeof(tiny)) < 0)
        return 4;
    for (unsigned i = 0; i < 900; i++) {
        struct addr_prefix p = {.addr = {.family = AF_INET}, .len = 32};
        p.addr.bytes[0] = 10;
        p.addr.bytes[2] = (uint8_t)(i >> 8);
        p.addr.bytes[3] = (uint8_t)i;
        if (nftset_queue_ban(s, &p, 600000) < 0)
            return 5;
    }
    long r = nftset_commit(s, NULL, NULL);
    if (r != -ENOBUFS)
        return 6; /* the overflow this test stages did not happen */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0)
        return 7;

    bool damaged = true;
    if (nftset_check(s, &damaged) < 0 || damaged)
        return 8;
    struct addr a = {.family = AF_INET, .bytes = {10, 0, 0, 7}};
    struct addr_prefix held;
    uint64_t expires;
    if (nftset_contains(s, &a, &held, &expires) < 0)
        return 9;
    nftset_teardown(s);
    nftset_free(s);
    return 0;
}

static void requests_after_an_abandoned_transaction_get_their_own_replies(void **state)
{
    int rc = in_netns(child_leftover_acks);
    if (rc == SKIPPED)
        skip();
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(requests_after_an_abandoned_transaction_get_their_own_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
