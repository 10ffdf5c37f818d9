#!/usr/bin/python3
"""pbxguard import --from-fail2ban against a database written by a real fail2ban-server
(Debian's fail2ban 1.0.2), run by this test in its private network namespace with a
configuration, socket, pid file and database of its own under a temporary directory and the
`dummy` ban action writing into that directory (it touches no firewall; no systemd). Its
still-active bans are taken over with their remaining time, a permanent one (bantime -1) stays
permanent, an expired one is skipped and counted. A database of fail2ban's older schema (before
its version 3 there is no bantime column) is made with the CREATE statements of fail2ban 0.9's
database.py, since fail2ban 1.0.2 upgrades any older file it opens; a foreign SQLite file, a
file that is not SQLite, and rows that the rules refuse are refused with a clear message."""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
if not shutil.which("fail2ban-server") or not os.path.isdir("/etc/fail2ban"):
    h.skip_all("fail2ban is not installed (scripts/deps.sh test installs it)")
t = h.Tap()


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


class Fail2ban:
    """fail2ban-server in the foreground, everything it writes under tmp."""

    def __init__(self, tmp):
        self.conf = os.path.join(tmp, "etc")
        self.sock = os.path.join(tmp, "f2b.sock")
        self.db = os.path.join(tmp, "fail2ban.sqlite3")
        self.p = None
        shutil.copytree("/etc/fail2ban", self.conf)
        # Debian's jail.d enables sshd; only the jails below run here.
        for f in os.listdir(os.path.join(self.conf, "jail.d")):
            os.unlink(os.path.join(self.conf, "jail.d", f))
        with open(os.path.join(self.conf, "fail2ban.local"), "w") as f:
            f.write(f"[Definition]\nloglevel = INFO\nlogtarget = {tmp}/fail2ban.log\n"
                    f"socket = {self.sock}\npidfile = {tmp}/f2b.pid\n"
                    f"dbfile = {self.db}\ndbpurgeage = 1d\n")
        log = os.path.join(tmp, "asterisk.log")
        open(log, "w").close()
        jails = [("asterisk", "1h"), ("forever", "-1"), ("short", "1")]
        with open(os.path.join(self.conf, "jail.d", "test.local"), "w") as f:
            f.write("[DEFAULT]\nbackend = polling\nignoreself = false\n")
            for name, bantime in jails:
                f.write(f"\n[{name}]\nenabled = true\nfilter = asterisk\nlogpath = {log}\n"
                        f"bantime = {bantime}\n"
                        f"action = dummy[target=\"{tmp}/dummy-{name}.txt\"]\n")

    def client(self, *args):
        return run(["fail2ban-client", "-c", self.conf, "-s", self.sock, *args])

    def start(self):
        self.p = subprocess.Popen(["fail2ban-server", "-f", "-x", "-c", self.conf, "-s",
                                   self.sock], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        return h.wait_for(lambda: self.p.poll() is not None
                          or self.client("status", "short").returncode == 0, 60, 0.2) \
            and self.p.poll() is None

    def stop(self):
        if self.p and self.p.poll() is None:
            self.client("stop")
            h.stop_process(self.p, signal.SIGTERM, 10)


with h.TempDir() as d:
    os.chmod(d, 0o755)
    f2b = Fail2ban(d)
    conf = h.make_config(d)
    sock = os.path.join(d, "control.sock")

    def cli(*args, **kw):
        return run([h.CLI, "-s", sock, *args], **kw)

    def bans():
        import json
        r = cli("--json", "list", "--all")
        return {b["prefix"]: b for b in json.loads(r.stdout)["bans"]} if r.returncode == 0 else {}

    srv = None
    try:
        t.ok(f2b.start(), "a real fail2ban-server starts with its own configuration and database")
        for jail, ips in (("asterisk", ["203.0.113.30", "2001:db8:30::1"]),
                          ("forever", ["198.51.100.30"]), ("short", ["192.0.2.30"])):
            r = f2b.client("set", jail, "banip", *ips)
            if r.returncode != 0:
                t.diag(f"banip {jail}: {r.stdout} {r.stderr}")
        # The short jail's ban (1 s) ends: fail2ban keeps it in its database.
        ended = h.wait_for(lambda: "-192.0.2.30" in open(os.path.join(d, "dummy-short.txt")).read()
                           if os.path.exists(os.path.join(d, "dummy-short.txt")) else False, 10)
        t.ok(ended, "fail2ban banned the addresses and lifted the 1 s ban by itself")
        with sqlite3.connect(f"file:{f2b.db}?mode=ro", uri=True) as c:
            rows = c.execute("SELECT jail, ip, bantime FROM bans ORDER BY ip").fetchall()
            version = c.execute("SELECT version FROM fail2banDb").fetchone()[0]
        t.ok(len(rows) == 4 and version == 4, "fail2ban's database (schema version 4) holds the 4 "
             "bans", rows)

        srv = h.Daemon(conf)
        up = h.wait_for(lambda: cli("status").returncode == 0 or not srv.running(), 10)
        t.ok(up and srv.running(), "pbxguardd starts")

        # Taken over while fail2ban runs (its file opened read-only).
        r = cli("import", "--from-fail2ban", f2b.db)
        got = bans()
        t.ok(r.returncode == 0 and "schema version 4" in r.stdout
             and "imported 3, skipped 1 expired" in r.stdout,
             "import --from-fail2ban takes over the 3 active bans and skips the expired one",
             r.stdout + r.stderr)
        t.ok(3400 < (got.get("203.0.113.30", {}).get("remaining") or 0) <= 3600
             and 3400 < (got.get("2001:db8:30::1", {}).get("remaining") or 0) <= 3600,
             "... with their remaining time", got)
        t.ok("198.51.100.30" in got and got["198.51.100.30"]["expires"] is None,
             "a permanent fail2ban ban (bantime -1) stays permanent", got.get("198.51.100.30"))
        t.ok("192.0.2.30" not in got, "the expired one is not banned")
        t.ok(got.get("203.0.113.30", {}).get("note") == "fail2ban jail asterisk"
             and got.get("203.0.113.30", {}).get("reason") == "manual",
             "each is a manual ban whose note names the fail2ban jail", got.get("203.0.113.30"))
        kern = h.pbxguard_bans() or {}
        t.ok({"203.0.113.30", "2001:db8:30::1", "198.51.100.30"} <= set(kern),
             "... in pbxguard's kernel sets", kern)
        r = cli("import", "--from-fail2ban", f2b.db)
        t.ok(r.returncode == 0 and "imported 0, skipped 1 expired and 3 already banned as long"
             in r.stdout, "importing again changes nothing", r.stdout)
        f2b.stop()
        t.ok(f2b.p.poll() is not None, "fail2ban-server stops")

        # fail2ban's older schema (before its version 3: no bantime column), with rows the rules
        # refuse or that are not addresses.
        old = os.path.join(d, "old.sqlite3")
        now = int(time.time())
        with sqlite3.connect(old) as c:
            c.executescript(
                "CREATE TABLE fail2banDb(version INTEGER);"
                "CREATE TABLE jails(name TEXT NOT NULL UNIQUE, enabled INTEGER NOT NULL DEFAULT 1);"
                "CREATE TABLE logs(jail TEXT NOT NULL, path TEXT, firstlinemd5 TEXT, "
                "lastfilepos INTEGER DEFAULT 0, FOREIGN KEY(jail) REFERENCES jails(name) "
                "ON DELETE CASCADE, UNIQUE(jail, path), UNIQUE(jail, path, firstlinemd5));"
                "CREATE TABLE bans(jail TEXT NOT NULL, ip TEXT, timeofban INTEGER NOT NULL, "
                "data JSON, FOREIGN KEY(jail) REFERENCES jails(name));"
                "INSERT INTO fail2banDb(version) VALUES (2);"
                "INSERT INTO jails(name) VALUES ('asterisk');")
            c.executemany("INSERT INTO bans(jail, ip, timeofban, data) VALUES (?, ?, ?, '{}')", [
                ("asterisk", "203.0.113.40", now - 60),
                ("asterisk", "203.0.113.40", now - 7200),
                ("asterisk", "203.0.113.41", now - 7200),
                ("asterisk", "127.0.0.1", now - 60),
                ("asterisk", "not-an-ip\x1b[2J", now - 60),
            ])
        r = cli("import", "--from-fail2ban", old, "--for", "1h")
        got = bans()
        t.ok(r.returncode == 1 and "schema version 2, no bantime column" in r.stdout
             and "imported 1, skipped 1 expired" in r.stdout
             and "refused 1 (protected 1)" in r.stdout and "malformed 1" in r.stdout,
             "an older-schema database: bans last --for from their time of ban; the refused and "
             "malformed rows are counted, exit 1", r.stdout + r.stderr)
        t.ok(3400 < (got.get("203.0.113.40", {}).get("remaining") or 0) <= 3540
             and "(length assumed)" in got.get("203.0.113.40", {}).get("note", "")
             and "203.0.113.41" not in got and "127.0.0.1" not in got,
             "... the latest ban of an address counts, its note says the length was assumed",
             got.get("203.0.113.40"))
        t.ok("127.0.0.1 refused" in r.stderr and "\\x1b[2J" in r.stderr and "\x1b" not in r.stderr,
             "the refusal is explained, the garbage escaped", r.stderr)

        foreign = os.path.join(d, "foreign.sqlite3")
        with sqlite3.connect(foreign) as c:
            c.execute("CREATE TABLE bans(who TEXT)")
        r = cli("import", "--from-fail2ban", foreign)
        t.ok(r.returncode == 1 and "not fail2ban's database" in r.stderr,
             "a foreign SQLite file is refused with a clear message", r.stderr)
        r = cli("import", "--from-fail2ban", os.path.join(d, "pbxguard.db"))
        t.ok(r.returncode == 1 and "not fail2ban's database" in r.stderr,
             "... pbxguard's own database too", r.stderr)
        junk = os.path.join(d, "junk.sqlite3")
        with open(junk, "wb") as f:
            f.write(b"SQLite format 3\x00" + os.urandom(8192))
        r = cli("import", "--from-fail2ban", junk)
        t.ok(r.returncode == 1 and "not an SQLite database" in r.stderr,
             "a corrupt file is refused", r.stderr)
        r = cli("import", "--from-fail2ban", os.path.join(d, "missing.sqlite3"))
        t.ok(r.returncode == 1 and "No such file" in r.stderr, "a missing database: exit 1",
             r.stderr)
        t.ok(srv.running(), "pbxguardd is still running")
    finally:
        f2b.stop()
        if srv:
            srv.stop()
    t.ok(f2b.p is None or f2b.p.poll() is not None, "no fail2ban-server is left running")

t.done()
