#!/usr/bin/python3
"""Our table only: pbxguardd marks the table it builds (its comment, "pbxguard format N") and
treats only a marked table as its own. A table of the configured name without the mark is the
admin's: the daemon refuses to start beside it, and never changes nor deletes it, at start, on
repair, on reload or on stop (remove_on_stop = yes). Real daemon, real kernel, private network
namespace; the admin's table is compared byte for byte with `nft -j list table`."""
import json
import os
import signal
import socket
import subprocess
import threading
import time

import harness as h

h.in_private_netns()
h.setup_loopback()
t = h.Tap()

# An admin's firewall: drop by default, loopback and SSH allowed.
ADMIN_TABLE = """
table inet {name} {{
    chain input {{
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        tcp dport 22 accept
    }}
}}
"""
MARK = 'comment "pbxguard format 3'
CHECK_MS = 1000


def snapshot(name):
    """The table as nft sees it, JSON and text (the text shows the table's comment, which
    nft 1.0.6's JSON leaves out); None if it is missing."""
    j = subprocess.run(["nft", "-j", "list", "table", "inet", name], capture_output=True,
                       text=True)
    txt = subprocess.run(["nft", "list", "table", "inet", name], capture_output=True, text=True)
    if j.returncode != 0:
        return None
    return j.stdout, txt.stdout


def load(text):
    subprocess.run(["nft", "-f", "-"], input=text, text=True, check=True)


class StatsdSink:
    """A UDP socket standing in for a StatsD server: keeps every line it receives."""

    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.lines = []
        self.stop = False
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self.stop:
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.lines.extend(data.decode(errors="replace").split("\n"))

    def seen(self, line):
        return line in self.lines

    def close(self):
        self.stop = True
        self.th.join(timeout=2)
        self.s.close()


def config(tmp, table="pbxguard", statsd_port=None):
    over = {
        ("nftables", "table"): table,
        ("nftables", "check_interval"): f"{CHECK_MS}ms",
        ("nftables", "remove_on_stop"): "yes",
    }
    if statsd_port:
        over[("statsd", "enabled")] = "yes"
        over[("statsd", "port")] = str(statsd_port)
    return h.make_config(tmp, over)


def cli(tmp, *args):
    return subprocess.run([h.CLI, "-s", os.path.join(tmp, "control.sock"), *args],
                          capture_output=True, text=True, timeout=30)


def start_refused(conf):
    """Runs the daemon, which must exit by itself; returns (exit code, log)."""
    d = h.Daemon(conf)
    rc = d.wait(timeout=15)
    if rc is None:
        d.stop()
    return rc, d.log()


def test_refuses_to_start_beside_an_admins_table_of_the_configured_name():
    h.nft("flush", "ruleset")
    load(ADMIN_TABLE.format(name="filter"))
    before = snapshot("filter")
    with h.TempDir() as tmp:
        rc, log = start_refused(config(tmp, table="filter"))
    t.eq(rc, 1, "with table = filter beside the admin's inet filter, pbxguardd exits 1")
    lines = [ln for ln in log.splitlines() if "is not pbxguard's" in ln]
    t.ok(len(lines) == 1 and "table inet filter exists" in lines[0]
         and "[nftables] table =" in lines[0],
         "one log line names the table and says what to change", log)
    t.ok(before is not None and snapshot("filter") == before,
         "the admin's table is byte-for-byte intact (nft -j list table inet filter)", log)
    t.eq(h.nft_tables(), {("inet", "filter")}, "no other table was made")


def test_a_foreign_table_made_after_a_flush_is_left_alone():
    h.nft("flush", "ruleset")
    sink = StatsdSink()
    with h.TempDir() as tmp:
        conf = config(tmp, statsd_port=sink.port)
        d = h.Daemon(conf)
        try:
            t.ok(d.wait_log("active bans installed", timeout=15), "the daemon starts", d.log())
            t.ok(MARK in h.nft("list", "table", "inet", "pbxguard").stdout,
                 "the table it made carries the pbxguard mark")
            r = cli(tmp, "ban", "192.0.2.7")
            t.ok(r.returncode == 0 and "192.0.2.7" in (h.pbxguard_bans() or {}),
                 "a manual ban is in the kernel", r.stdout + r.stderr)

            # What `nft -f /etc/nftables.conf` does: flush everything, make its own tables, in
            # one transaction; here one of them has our name.
            load("flush ruleset\n" + ADMIN_TABLE.format(name="pbxguard"))
            before = snapshot("pbxguard")
            t.ok(d.wait_log("protection is off", timeout=10),
                 "the daemon notices and says that protection is off", d.log())
            # Notifications of the admin's own changes (a rule added and deleted again, which
            # leaves the table as it was), a reload, several periodic checks.
            out = h.nft("-e", "-a", "add", "rule", "inet", "pbxguard", "input", "udp", "dport",
                        "53", "accept").stdout
            h.nft("delete", "rule", "inet", "pbxguard", "input", "handle",
                  out.rsplit("# handle", 1)[-1].strip())
            d.send_signal(signal.SIGHUP)
            t.ok(d.wait_log("configuration reloaded", timeout=5), "a reload meanwhile", d.log())
            time.sleep(3.5 * CHECK_MS / 1000)
            t.ok(snapshot("pbxguard") == before,
                 "over several check intervals and a reload the admin's table is not modified",
                 d.log())
            t.eq(d.log().count("protection is off"), 1, "it is logged once")
            t.ok(d.running(), "the daemon keeps running")

            r = cli(tmp, "--json", "status")
            try:
                nft = json.loads(r.stdout)["nftables"]
            except (ValueError, KeyError):
                nft = {}
            t.ok(nft.get("ok") is False and "not pbxguard's" in nft.get("detail", ""),
                 "status: nftables not ok, and why", r.stdout + r.stderr)
            t.ok(h.wait_for(lambda: sink.seen("pbxguard.nft.enforcing:0|g"), timeout=15),
                 "StatsD: the nft.enforcing gauge goes to 0",
                 [ln for ln in sink.lines if "nft" in ln])
            r = subprocess.run([h.CLI, "report", "-c", conf, "--since", "1h", "--format", "json"],
                               capture_output=True, text=True, timeout=30)
            try:
                daemon = json.loads(r.stdout)["daemon"]
            except (ValueError, KeyError, TypeError):
                daemon = None
            t.eq((daemon or {}).get("nft-foreign"), 1, "the report lists it once among incidents")
            r = cli(tmp, "ban", "198.51.100.9")
            t.ok(r.returncode != 0 and "not pbxguard's" in r.stdout + r.stderr,
                 "a manual ban is refused, saying why", r.stdout + r.stderr)
            t.ok(snapshot("pbxguard") == before, "and it does not touch the admin's table")

            rc, _ = d.stop()
            t.eq(rc, 0, "the daemon stops cleanly")
            t.ok(snapshot("pbxguard") == before,
                 "remove_on_stop = yes does not remove the admin's table", d.log())
            rc, log = start_refused(conf)
            t.ok(rc == 1 and "table inet pbxguard exists and is not pbxguard's" in log,
                 "started again beside it, the daemon refuses", log)
            t.ok(snapshot("pbxguard") == before, "the admin's table is still intact")

            # The admin removes their table: ours comes back with the active bans.
            h.nft("delete", "table", "inet", "pbxguard")
            d = h.Daemon(conf)
            t.ok(d.wait_log("active bans installed", timeout=15)
                 and "192.0.2.7" in (h.pbxguard_bans() or {}),
                 "once it is gone the daemon starts and restores the bans", d.log())
            load("flush ruleset\n" + ADMIN_TABLE.format(name="pbxguard"))
            t.ok(d.wait_log("protection is off", timeout=10), "a foreign table again", d.log())
            h.nft("delete", "table", "inet", "pbxguard")
            t.ok(d.wait_log("protection is on again", timeout=10)
                 and h.wait_for(lambda: "192.0.2.7" in (h.pbxguard_bans() or {}), timeout=5),
                 "when the admin deletes it, our table and its bans come back while running",
                 d.log())
            t.ok(MARK in h.nft("list", "table", "inet", "pbxguard").stdout,
                 "with the mark")
            t.ok(h.wait_for(lambda: sink.seen("pbxguard.nft.enforcing:1|g"), timeout=15),
                 "StatsD: nft.enforcing is 1 while bans are enforced")

            # Our own marked table is repaired as before.
            h.nft("flush", "ruleset")
            t.ok(h.wait_for(lambda: "192.0.2.7" in (h.pbxguard_bans() or {}), timeout=5),
                 "after `nft flush ruleset` our table and its bans are back", d.log())
            rc, _ = d.stop()
            t.ok(rc == 0 and ("inet", "pbxguard") not in h.nft_tables(),
                 "remove_on_stop = yes removes our own table", h.nft_tables())
        finally:
            d.stop()
            sink.close()


for name, fn in list(globals().items()):
    if name.startswith("test_") and callable(fn):
        fn()
t.done()
