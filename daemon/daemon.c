/* pbxguardd's lifecycle: options, configuration, the database lock, the loop, signals and
 * systemd readiness. The work itself is the core's (core.h); this file only runs the process.
 *
 * Always in the foreground: systemd runs it as Type=notify, and a foreground process is what
 * an admin trying it out wants too. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

#include <systemd/sd-daemon.h>

#include "build-config.h"
#include "config.h"
#include "core.h"
#include "daemon.h"
#include "log.h"
#include "loop.h"

struct daemon {
    const char *config_path;
    bool debug; /* -d: debug logging whatever the configuration says */
    struct config *cfg;
    struct loop *loop;
    struct core *core;
    int lock_fds[2];
    struct loop_timer watchdog;
    uint64_t watchdog_ms; /* 0 = systemd does not watch us */
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pbxguardd [-c PATH] [-t] [-d] [-V] [-h]\n"
            "Bans sources of failed Asterisk logins in nftables.\n"
            "\n"
            "  -c PATH  configuration file (default " CFG_DEFAULT_PATH ")\n"
            "  -t       check the configuration, print the effective one and exit (0 = valid)\n"
            "  -d       debug logging\n"
            "  -V       print the version and exit\n"
            "  -h       this help\n");
}

static void print_error(void *data, const char *message)
{
    fprintf(stderr, "%s\n", message);
}

static void log_error(void *data, const char *message)
{
    log_err("%s", message);
}

/* Loads path into a new config; NULL if it has errors (each went to on_error, and their count
 * to on_summary, which has no data: the log or stderr). A daemon that is to log in
 * (need_secrets) also needs every secret that comes as a systemd credential; pbxguardd -t run
 * by hand, outside the unit, can only say it did not check them. */
static struct config *load_config(const char *path, config_error_fn on_error, void *data,
                                  config_error_fn on_summary, bool need_secrets)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        on_error(data, "out of memory");
        return NULL;
    }
    int r = config_load(path, cfg, on_error, data);
    if (r > 0) {
        char msg[CFG_PATH_MAX + 64];
        snprintf(msg, sizeof(msg), "%s: %d error%s", path, r, r == 1 ? "" : "s");
        on_summary(NULL, msg);
    }
    const struct cfg_ami *a = r == 0 ? config_unresolved_credential(cfg) : NULL;
    if (a) {
        char msg[CFG_PATH_MAX + 3 * CFG_NAME_MAX + 256];
        snprintf(msg, sizeof(msg),
                 "%s: [ami:%s] secret_file = " CFG_CREDENTIAL_PREFIX "%s: %s: "
                 "$CREDENTIALS_DIRECTORY is not set (systemd sets it in a unit with "
                 "LoadCredential=%s:PATH; outside such a unit use secret_file = /PATH)",
                 path, a->name, a->credential, need_secrets ? "cannot be read" : "not checked",
                 a->credential);
        if (need_secrets) {
            on_error(data, msg);
            r = 1;
        } else {
            fprintf(stderr, "%s\n", msg);
        }
    }
    const char *cred = r == 0 ? config_unresolved_cluster_credential(cfg) : NULL;
    if (cred) {
        char msg[CFG_PATH_MAX + 2 * CFG_NAME_MAX + 256];
        snprintf(msg, sizeof(msg),
                 "%s: [cluster] password_file = " CFG_CREDENTIAL_PREFIX "%s: %s: "
                 "$CREDENTIALS_DIRECTORY is not set (systemd sets it in a unit with "
                 "LoadCredential=%s:PATH; outside such a unit use password_file = /PATH)",
                 path, cred, need_secrets ? "cannot be read" : "not checked", cred);
        if (need_secrets) {
            on_error(data, msg);
            r = 1;
        } else {
            fprintf(stderr, "%s\n", msg);
        }
    }
    if (r != 0) {
        config_free(cfg);
        free(cfg);
        return NULL;
    }
    return cfg;
}

static void free_config(struct config *cfg)
{
    config_free(cfg);
    free(cfg);
}

static void apply_logging(const struct daemon *d)
{
    log_setup(d->cfg->general.log_target, d->debug ? LOG_LVL_DEBUG : d->cfg->general.log_level);
}

/* Creates the parent directory of path if it is missing (one level: the state and runtime
 * directories, not a whole tree the admin mistyped). */
static int make_parent_dir(const char *path, mode_t mode)
{
    char dir[CFG_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    if (mkdir(dir, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Takes an exclusive lock on path, writing our pid into it. On -EWOULDBLOCK, *ret_holder is
 * the pid found in the file (0 if unreadable). */
static int take_lock(const char *path, int *ret_fd, long *ret_holder)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        *ret_holder = n > 0 ? strtol(buf, NULL, 10) : 0;
        close(fd);
        return err == EWOULDBLOCK ? -EWOULDBLOCK : -err;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        int err = errno;
        close(fd);
        return -err;
    }
    *ret_fd = fd;
    return 0;
}

/* Two daemons must never share a database (two writers, two views of the kernel sets) nor a
 * control socket: the database's lock sits beside it, the other is general.lock_file. */
static int lock_all(struct daemon *d)
{
    char db_lock[CFG_PATH_MAX + 8];
    const char *paths[2] = {db_lock, d->cfg->general.lock_file};
    const char *what[2] = {"database", "lock file"};
    /* The state directory is private; the runtime one must stay traversable for members of
     * control_group to reach the socket. */
    const mode_t dir_mode[2] = {0750, 0755};

    snprintf(db_lock, sizeof(db_lock), "%s.lock", d->cfg->general.database);
    for (int i = 0; i < 2; i++) {
        long holder = 0;
        int r = make_parent_dir(paths[i], dir_mode[i]);
        if (r < 0) {
            log_err("cannot create the directory of %s: %s", paths[i], strerror(-r));
            return r;
        }
        r = take_lock(paths[i], &d->lock_fds[i], &holder);
        if (r == -EWOULDBLOCK) {
            if (holder > 0)
                log_err("another pbxguardd (pid %ld) is running with %s %s; stop it first", holder,
                        what[i], i == 0 ? d->cfg->general.database : paths[i]);
            else
                log_err("another pbxguardd is running with %s %s (lock %s held); stop it first",
                        what[i], i == 0 ? d->cfg->general.database : paths[i], paths[i]);
            return r;
        }
        if (r < 0) {
            log_err("cannot lock %s: %s", paths[i], strerror(-r));
            return r;
        }
    }
    return 0;
}

static void stop(struct loop *l, struct daemon *d, const char *why)
{
    log_info("stopping (%s)", why);
    core_stopping(d->core, why); /* recorded with this run's clean stop */
    sd_notify(0, "STOPPING=1");
    loop_stop(l);
}

static void on_sigterm(struct loop *l, void *data)
{
    stop(l, data, "SIGTERM");
}

static void on_sigint(struct loop *l, void *data)
{
    stop(l, data, "SIGINT");
}

/* Settings that the running process cannot change under its own feet. */
static const char *needs_restart(const struct config *old, const struct config *new)
{
    if (strcmp(old->general.database, new->general.database) != 0)
        return "database";
    if (strcmp(old->general.lock_file, new->general.lock_file) != 0)
        return "lock_file";
    return NULL;
}

static void notify_reloading(void)
{
    char msg[64];
    /* systemd >= 253 wants the monotonic time with RELOADING=1 (Type=notify-reload). */
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)loop_clock_mono_ms() * 1000ULL);
    sd_notify(0, msg);
}

/* Where reload errors go: the log always, and the control command's reply when it asked. */
struct reload_report {
    config_error_fn fn;
    void *data;
};

static void report_error(void *data, const char *message)
{
    const struct reload_report *rep = data;
    log_err("%s", message);
    if (rep->fn)
        rep->fn(rep->data, message);
}

/* The one reload path, for SIGHUP and the control command alike: load and validate the file,
 * refuse what needs a restart, let the core apply it, then switch over. The running
 * configuration stays in place on any failure. */
static int reload_config(void *data, config_error_fn on_error, void *err_data)
{
    struct daemon *d = data;
    struct reload_report rep = {on_error, err_data};
    const char *key;
    char msg[128];
    int r = 0;

    notify_reloading();
    /* Each error reaches the caller; the count goes to the log only. */
    struct config *next = load_config(d->config_path, report_error, &rep, log_error, true);
    if (!next) {
        log_err("configuration reload failed; still running with the previous configuration");
        r = -EINVAL;
        goto done;
    }
    if ((key = needs_restart(d->cfg, next))) {
        snprintf(msg, sizeof(msg), "[general] %s changed, which needs a restart", key);
        if (on_error)
            on_error(err_data, msg);
        log_err("configuration reload refused: %s; still running with the previous "
                "configuration",
                msg);
        free_config(next);
        r = -EINVAL;
        goto done;
    }
    r = core_reload(d->core, next);
    if (r < 0) {
        log_err("configuration reload failed (%s); still running with the previous configuration",
                strerror(-r));
        free_config(next);
        goto done;
    }
    /* The core now reads next; only now may the old one go. */
    free_config(d->cfg);
    d->cfg = next;
    apply_logging(d);
    log_notice("configuration reloaded from %s (log level %s)", d->config_path,
               log_level_name(log_get_level()));
done:
    sd_notify(0, "READY=1");
    return r;
}

static void on_reload(struct loop *l, void *data)
{
    const struct daemon *d = data;
    log_debug("SIGHUP: reloading %s", d->config_path);
    reload_config(data, NULL, NULL);
}

static void on_watchdog(struct loop *l, void *data)
{
    struct daemon *d = data;
    sd_notify(0, "WATCHDOG=1");
    loop_timer_arm(l, &d->watchdog, d->watchdog_ms);
}

static int check_config(const char *path)
{
    struct config *cfg = load_config(path, print_error, NULL, print_error, false);
    if (!cfg)
        return 1;
    config_dump(cfg, stdout);
    fprintf(stderr, "%s: configuration OK\n", path);
    free_config(cfg);
    return 0;
}

/* Whether the effective capability set holds CAP_NET_ADMIN, which every nftables change
 * needs. True when the kernel cannot say: netlink then reports what is missing. */
static bool has_net_admin(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {{0}};
    if (syscall(SYS_capget, &hdr, data) < 0)
        return true;
    return data[CAP_NET_ADMIN / 32].effective & (1U << (CAP_NET_ADMIN % 32));
}

static int run(struct daemon *d)
{
    uint64_t usec = 0;
    int r;

    if (!has_net_admin()) {
        log_err("pbxguardd needs CAP_NET_ADMIN, the capability to manage its nftables table, and "
                "runs as uid %u without it: start it as root, or as its own user with that "
                "capability (AmbientCapabilities=CAP_NET_ADMIN, as pbxguard.service does)",
                (unsigned)geteuid());
        return 1;
    }
    d->cfg = load_config(d->config_path, log_error, NULL, log_error, true);
    if (!d->cfg)
        return 1;
    apply_logging(d);
    /* The database holds attacker addresses and account names: not for other users' eyes,
     * also when started by hand rather than by systemd. A stricter umask (the unit's
     * UMask=0077) is kept. */
    mode_t mask = umask(0);
    umask(mask | 0027);
    if (lock_all(d) < 0)
        return 1;
    /* Writes to a socket whose peer left must fail with EPIPE, not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);
    d->loop = loop_new();
    if (!d->loop) {
        log_err("cannot create the event loop: %s", strerror(errno));
        return 1;
    }
    if ((r = loop_signal_add(d->loop, SIGTERM, on_sigterm, d)) < 0 ||
        (r = loop_signal_add(d->loop, SIGINT, on_sigint, d)) < 0 ||
        (r = loop_signal_add(d->loop, SIGHUP, on_reload, d)) < 0) {
        log_err("cannot set up signal handling: %s", strerror(-r));
        return 1;
    }
    d->core = core_new(d->loop, d->cfg);
    if (!d->core) {
        log_err("cannot start: %s", strerror(errno));
        return 1;
    }
    core_set_reload(d->core, reload_config, d);
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        /* Pet at half the interval so one slow turn does not get us killed. */
        d->watchdog_ms = usec / 2000 ? usec / 2000 : 1;
        loop_timer_init(&d->watchdog, on_watchdog, d);
        loop_timer_arm(d->loop, &d->watchdog, d->watchdog_ms);
    }
    log_notice("pbxguardd %s started (configuration %s, database %s)", PBXGUARD_VERSION,
               d->config_path, d->cfg->general.database);
    sd_notify(0, "READY=1\nSTATUS=running");
    r = loop_run(d->loop);
    if (r < 0) {
        log_err("event loop failed: %s", strerror(-r));
        core_stopping(d->core, "event loop failed");
        return 1;
    }
    return 0;
}

static void cleanup(struct daemon *d)
{
    /* core_free commits what is pending and closes the sources before the loop goes away. */
    core_free(d->core);
    if (d->loop && d->watchdog_ms)
        loop_timer_cancel(d->loop, &d->watchdog);
    loop_free(d->loop);
    free_config(d->cfg);
    for (int i = 0; i < 2; i++)
        if (d->lock_fds[i] >= 0)
            close(d->lock_fds[i]);
}

int daemon_main(int argc, char **argv)
{
    struct daemon d = {.config_path = CFG_DEFAULT_PATH, .lock_fds = {-1, -1}};
    bool check = false;
    int opt;

    /* Before the configuration (and its AMI secrets) is read: no core dump, whatever
     * RLIMIT_CORE and the core pattern say (a watchdog abort must not write the secret to
     * disk), and no ptrace or /proc/PID/mem by other processes of the same user. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        fprintf(stderr, "pbxguardd: cannot turn core dumps off: %s\n", strerror(errno));
        return 1;
    }

    while ((opt = getopt(argc, argv, "c:tdVh")) != -1) {
        switch (opt) {
        case 'c':
            d.config_path = optarg;
            break;
        case 't':
            check = true;
            break;
        case 'd':
            d.debug = true;
            break;
        case 'V':
            printf("pbxguardd %s\n", PBXGUARD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pbxguardd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (check)
        return check_config(d.config_path);

    log_setup(LOG_TARGET_STDERR, d.debug ? LOG_LVL_DEBUG : LOG_LVL_INFO);
    int r = run(&d);
    if (r != 0)
        sd_notify(0, "STATUS=failed to start");
    cleanup(&d);
    if (r == 0)
        log_info("stopped");
    return r;
}
