#!/usr/bin/python3
"""pbxguardd's lifecycle: configuration check, start, stop, reload, the database lock and
systemd readiness, each against the real binary in a private network namespace."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
t = h.Tap()


def check(config):
    return subprocess.run([h.DAEMON, "-t", "-c", config], capture_output=True, text=True,
                          timeout=30)


def test_shipped_config_passes_the_check():
    # As scripts/run and the install place it: a 0600 copy (it holds an inline secret).
    with h.TempDir() as d:
        conf = os.path.join(d, "pbxguard.conf")
        with open(h.SHIPPED_CONFIG) as src, open(conf, "w") as dst:
            dst.write(src.read())
        os.chmod(conf, 0o600)
        r = check(conf)
    t.eq(r.returncode, 0, "pbxguardd -t on the shipped config (a 0600 copy) exits 0")
    t.ok("[ami:local]\nhost = 127.0.0.1\n" in r.stdout and "secret = ********" in r.stdout
         and "change-me" not in r.stdout,
         "pbxguardd -t prints the effective configuration with the secret masked", r.stdout)


def test_three_mistakes_give_three_file_line_errors():
    with h.TempDir() as d:
        cfg = h.make_config(d, {("general", "log_level"): "verbose",
                                ("policy", "findtime"): "ten minutes"},
                            append="[statsd]\n")  # a repeated section
        r = check(cfg)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith(cfg + ":")]
        located = [ln for ln in lines if re.match(re.escape(cfg) + r":\d+: ", ln)]
        t.eq(r.returncode, 1, "pbxguardd -t on a config with three mistakes exits 1")
        t.eq(len(located), 3, "three mistakes give three file:line errors")
        t.ok(any("[general] log_level:" in ln for ln in located)
             and any("[policy] findtime:" in ln for ln in located)
             and any("[statsd] section repeated" in ln for ln in located),
             "each error names its section and key", r.stderr)
        t.eq(r.stdout, "", "a broken config prints no effective configuration")


def test_secret_file_readable_by_others_is_refused():
    with h.TempDir() as d:
        secret = os.path.join(d, "local.secret")
        with open(secret, "w") as f:
            f.write("s3cret\n")
        os.chmod(secret, 0o644)
        cfg = h.make_config(d, {("ami:local", "secret"): "x"})
        with open(cfg) as f:
            text = f.read().replace("secret = x\n", f"secret_file = {secret}\n")
        with open(cfg, "w") as f:
            f.write(text)
        r = check(cfg)
        t.eq(r.returncode, 1, "a secret_file with mode 0644 fails the check")
        t.ok(f"chmod 600 {secret}" in r.stderr and "mode 0644" in r.stderr,
             "the refusal says how to fix it", r.stderr)
        os.chmod(secret, 0o600)
        t.eq(check(cfg).returncode, 0, "the same secret_file with mode 0600 passes")


def test_sigterm_stops_the_daemon_cleanly(sig, name):
    with h.TempDir() as d:
        dm = h.Daemon(h.make_config(d))
        started = dm.wait_log("started")
        t.ok(started, f"the daemon starts with the test config ({name} test)", dm.log())
        rc, took = dm.stop(sig)
        t.eq(rc, 0, f"{name} stops the daemon with exit 0 (took {took:.3f}s)")
        t.ok("stopped" in dm.log(), f"after {name} the daemon logs that it stopped", dm.log())


def test_database_directory_is_created():
    with h.TempDir() as d:
        db = os.path.join(d, "state", "pbxguard.db")
        dm = h.Daemon(h.make_config(d, {("general", "database"): db}))
        dm.wait_log("started")
        t.ok(os.path.isdir(os.path.dirname(db)), "a missing database directory is created",
             dm.log())
        dbdir = os.path.dirname(db)
        mode = os.stat(dbdir).st_mode & 0o777 if os.path.isdir(dbdir) else None
        t.eq(mode, 0o750, "the database directory is private to root and its group (0750)")
        dm.stop()


def test_second_daemon_on_the_same_database_is_refused():
    with h.TempDir() as d:
        first = h.Daemon(h.make_config(d))
        first.wait_log("started")
        # Its own lock file and socket, the same database: the database lock must refuse it.
        cfg2 = h.make_config(d, {("general", "lock_file"): os.path.join(d, "other.lock"),
                                 ("general", "control_socket"): os.path.join(d, "other.sock")},
                             name="second.conf")
        second = h.Daemon(cfg2)
        rc = second.wait(timeout=10)
        t.eq(rc, 1, "a second daemon on the same database exits 1")
        t.ok(f"pid {first.pid}" in second.log(), "the refusal names the running daemon's pid",
             second.log())
        t.ok(first.running(), "the first daemon keeps running")
        first.stop()


def test_second_daemon_on_the_same_lock_file_is_refused():
    with h.TempDir() as d:
        first = h.Daemon(h.make_config(d))
        first.wait_log("started")
        cfg2 = h.make_config(d, {("general", "database"): os.path.join(d, "other.db")},
                             name="second.conf")
        second = h.Daemon(cfg2)
        t.eq(second.wait(timeout=10), 1,
             "a second daemon sharing the lock file (and so the socket) exits 1")
        first.stop()


def test_sighup_applies_a_good_config():
    with h.TempDir() as d:
        cfg = h.make_config(d)
        dm = h.Daemon(cfg)
        dm.wait_log("started")
        h.make_config(d, {("general", "log_level"): "debug"})
        dm.send_signal(signal.SIGHUP)
        t.ok(dm.wait_log("configuration reloaded from " + cfg + " (log level debug)"),
             "SIGHUP with a good config logs 'configuration reloaded' with the new level",
             dm.log())
        dm.send_signal(signal.SIGHUP)
        t.ok(dm.wait_log("debug: SIGHUP: reloading"),
             "the new log level is in force: debug lines appear", dm.log())
        rc, _ = dm.stop()
        t.eq(rc, 0, "the reloaded daemon still stops with exit 0")


def test_sighup_with_a_broken_config_keeps_the_old_one():
    with h.TempDir() as d:
        cfg = h.make_config(d)
        dm = h.Daemon(cfg)
        dm.wait_log("started")
        with open(cfg, "a") as f:
            f.write("[policy:PJSIP]\nmaxrety = 3\n")
        dm.send_signal(signal.SIGHUP)
        t.ok(dm.wait_log("still running with the previous configuration"),
             "SIGHUP with a broken config is refused", dm.log())
        t.ok(re.search(re.escape(cfg) + r":\d+: \[policy:PJSIP\] maxrety: unknown key", dm.log()),
             "the refusal logs the file:line error", dm.log())
        t.ok(dm.running(), "the daemon keeps running after a refused reload")
        h.make_config(d, {("general", "log_level"): "notice"})
        dm.send_signal(signal.SIGHUP)
        t.ok(dm.wait_log("configuration reloaded"), "a fixed config then reloads", dm.log())
        rc, _ = dm.stop()
        t.eq(rc, 0, "and the daemon stops with exit 0")


def test_sighup_refuses_a_new_database_path():
    with h.TempDir() as d:
        cfg = h.make_config(d)
        dm = h.Daemon(cfg)
        dm.wait_log("started")
        h.make_config(d, {("general", "database"): os.path.join(d, "moved.db")})
        dm.send_signal(signal.SIGHUP)
        t.ok(dm.wait_log("[general] database changed, which needs a restart"),
             "a reload that moves the database is refused (it needs a restart)", dm.log())
        t.ok(dm.running(), "the daemon keeps running with its database")
        dm.stop()


def recv_all(sock, until=None, timeout=5.0):
    """Collects notify datagrams until one contains `until` or timeout passes."""
    msgs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(msgs) < 1000:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msgs.append(sock.recv(4096).decode(errors="replace"))
        except socket.timeout:
            break
        if until and until in msgs[-1]:
            break
    return msgs


def test_systemd_notifications():
    with h.TempDir() as d:
        path = os.path.join(d, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        dm = h.Daemon(h.make_config(d), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        msgs = recv_all(s, until="READY=1")
        t.ok(msgs and "READY=1" in msgs[-1], "READY=1 reaches systemd once started", msgs)
        msgs = recv_all(s, timeout=0.6)
        t.ok(sum("WATCHDOG=1" in m for m in msgs) >= 2,
             "WATCHDOG=1 is sent at half of WATCHDOG_USEC", msgs)
        dm.send_signal(signal.SIGHUP)
        msgs = [m for m in recv_all(s, until="READY=1") if "WATCHDOG=1" not in m]
        t.ok(len(msgs) >= 2 and "RELOADING=1" in msgs[0] and "READY=1" in msgs[-1],
             "a reload is announced with RELOADING=1, then READY=1", msgs)
        dm.send_signal(signal.SIGTERM)
        msgs = recv_all(s, until="STOPPING=1")
        t.ok(msgs and "STOPPING=1" in msgs[-1], "SIGTERM announces STOPPING=1", msgs)
        t.eq(dm.wait(), 0, "and the daemon exits 0")
        s.close()


def test_without_cap_net_admin_the_daemon_says_so_and_exits_1():
    with h.TempDir() as d:
        cfg = h.make_config(d)
        r = subprocess.run(["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
                            h.DAEMON, "-c", cfg], capture_output=True, text=True, timeout=30)
        t.eq(r.returncode, 1, "without CAP_NET_ADMIN the daemon exits 1 (not a crash)")
        t.ok("needs CAP_NET_ADMIN" in r.stderr, "and the log says which capability is missing",
             r.stderr)


def test_options():
    r = subprocess.run([h.DAEMON, "-V"], capture_output=True, text=True, timeout=10)
    t.ok(r.returncode == 0 and r.stdout.startswith("pbxguardd "), "-V prints the version")
    r = subprocess.run([h.DAEMON, "-x"], capture_output=True, text=True, timeout=10)
    t.eq(r.returncode, 2, "an unknown option exits 2 with the usage")
    r = subprocess.run([h.DAEMON, "-t", "-c", "/nonexistent.conf"], capture_output=True,
                       text=True, timeout=10)
    t.ok(r.returncode == 1 and "/nonexistent.conf: cannot read" in r.stderr,
         "a missing config file fails the check and says so", r.stderr)


test_shipped_config_passes_the_check()
test_three_mistakes_give_three_file_line_errors()
test_secret_file_readable_by_others_is_refused()
test_sigterm_stops_the_daemon_cleanly(signal.SIGTERM, "SIGTERM")
test_sigterm_stops_the_daemon_cleanly(signal.SIGINT, "SIGINT")
test_database_directory_is_created()
test_second_daemon_on_the_same_database_is_refused()
test_second_daemon_on_the_same_lock_file_is_refused()
test_sighup_applies_a_good_config()
test_sighup_with_a_broken_config_keeps_the_old_one()
test_sighup_refuses_a_new_database_path()
test_systemd_notifications()
test_without_cap_net_admin_the_daemon_says_so_and_exits_1()
test_options()
t.done()
