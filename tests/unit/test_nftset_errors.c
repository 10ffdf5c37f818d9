/* The nftables layer's error paths that need no ruleset: refused configurations, a kernel
 * without nf_tables (made real for one child process with a seccomp filter that fails netlink
 * sockets the way such a kernel does), and the words an admin reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nftset.h"

static struct cfg_nftables good_cfg(void)
{
    struct cfg_nftables c = {.priority = -10};
    snprintf(c.table, sizeof(c.table), "pbxguard");
    snprintf(c.set4, sizeof(c.set4), "banned4");
    snprintf(c.set6, sizeof(c.set6), "banned6");
    snprintf(c.chain, sizeof(c.chain), "input");
    return c;
}

static void bad_names_are_refused_before_any_socket(void **state)
{
    struct cfg_nftables c = good_cfg();
    c.table[0] = '\0';
    errno = 0;
    assert_null(nftset_open(&c));
    assert_int_equal(errno, EINVAL);

    c = good_cfg();
    snprintf(c.set6, sizeof(c.set6), "banned4");
    errno = 0;
    assert_null(nftset_open(&c));
    assert_int_equal(errno, EINVAL);

    c = good_cfg();
    snprintf(c.set4, sizeof(c.set4), "__set0"); /* the kernel's namespace for anonymous sets */
    errno = 0;
    assert_null(nftset_open(&c));
    assert_int_equal(errno, EINVAL);
}

/* Child: make socket(AF_NETLINK, ...) fail with EPROTONOSUPPORT, as on a kernel built without
 * nfnetlink, then open the layer. Exits 0 if it failed cleanly with that errno. */
static int child_without_netlink(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_NETLINK, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPROTONOSUPPORT),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return 2;
    struct cfg_nftables c = good_cfg();
    errno = 0;
    struct nftset *s = nftset_open(&c);
    if (s) {
        nftset_free(s);
        return 3;
    }
    return errno == EPROTONOSUPPORT ? 0 : 4;
}

static void kernel_without_nf_tables_fails_open_with_a_clear_errno(void **state)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_without_netlink());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void errors_are_explained_in_words_an_admin_can_act_on(void **state)
{
    assert_non_null(strstr(nftset_strerror(-EPERM), "CAP_NET_ADMIN"));
    assert_non_null(strstr(nftset_strerror(EPERM), "CAP_NET_ADMIN"));
    assert_non_null(strstr(nftset_strerror(-EPROTONOSUPPORT), "lacks nf_tables"));
    assert_non_null(strstr(nftset_strerror(-EAFNOSUPPORT), "lacks nf_tables"));
    assert_non_null(strstr(nftset_strerror(-EOPNOTSUPP), "lacks nf_tables"));
    assert_non_null(strstr(nftset_strerror(-ENOSPC), "set_size"));
    assert_non_null(strstr(nftset_strerror(-ENOTEMPTY), "overlaps"));
    assert_non_null(strstr(nftset_strerror(-EEXIST), "not pbxguard's"));
    assert_string_equal(nftset_strerror(-EIO), strerror(EIO));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_names_are_refused_before_any_socket),
        cmocka_unit_test(kernel_without_nf_tables_fails_open_with_a_clear_errno),
        cmocka_unit_test(errors_are_explained_in_words_an_admin_can_act_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
