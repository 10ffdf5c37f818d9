#!/usr/bin/python3
"""Self-healing: `nft-tool heal` keeps a list of bans installed (the core does the same from its
store). When someone flushes the ruleset, deletes our table, flushes a set or a chain, the
netlink monitor notices and the table and bans come back; a slow periodic check catches what
no notification announces (a foreign rule added to our chain). Private network namespace."""
import queue
import subprocess
import threading
import time

import harness as h

h.in_private_netns()
h.setup_loopback()
t = h.Tap()

BANS = ["198.51.100.7,3600000", "192.0.2.0/24", "2001:db8::/64,600000", "2001:db8:5::/48"]
WANT = {"198.51.100.7", "192.0.2.0/24", "2001:db8::/64", "2001:db8:5::/48"}


class Healer:
    def __init__(self, *opts):
        self.p = subprocess.Popen([h.NFT_TOOL, *opts, "heal", *BANS], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout=5.0):
        """The next output line, or None after timeout seconds."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_for_line(self, prefix, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.next_line(deadline - time.monotonic())
            if line is None:
                return None
            if line.startswith(prefix):
                return line
        return None

    def stop(self):
        return h.stop_process(self.p)


def bans_installed():
    return WANT <= set(h.pbxguard_bans() or {})


def chain_ok():
    out = h.nft("list", "chain", "inet", "pbxguard", "input", check=False).stdout
    return out.count("drop") == 4


def damage_and_wait(what, *nft_args):
    t0 = time.monotonic()
    h.nft(*nft_args)
    line = healer.wait_for_line("repaired", timeout=5)
    back = h.wait_for(lambda: bans_installed() and chain_ok(), timeout=5, interval=0.01)
    took = time.monotonic() - t0
    t.ok(line is not None and "(notification)" in line,
         f"after {what}, the monitor's notification triggers a repair", line)
    t.ok(back, f"after {what}, the table and all bans are back")
    t.diag(f"{what}: back after {took * 1000:.0f} ms ({line})")


healer = Healer("--check-ms", "60000")
try:
    t.ok(healer.wait_for_line("ready") is not None, "heal sets up and installs the bans")
    t.ok(bans_installed(), "the bans are installed")

    damage_and_wait("nft flush ruleset", "flush", "ruleset")
    damage_and_wait("nft delete table inet pbxguard", "delete", "table", "inet", "pbxguard")
    damage_and_wait("nft flush set banned4", "flush", "set", "inet", "pbxguard", "banned4")
    damage_and_wait("nft flush chain input", "flush", "chain", "inet", "pbxguard", "input")
    damage_and_wait("nft delete element", "delete", "element", "inet", "pbxguard", "banned6",
                    "{ 2001:db8:: }")
    damage_and_wait("nft flush set banned6_net", "flush", "set", "inet", "pbxguard", "banned6_net")

    # Someone else's tables are none of our business: no repair for them.
    h.nft("add", "table", "inet", "filter")
    h.nft("add", "chain", "inet", "filter", "input")
    h.nft("delete", "table", "inet", "filter")
    t.eq(healer.next_line(timeout=0.5), None, "changes to other tables trigger nothing")

    rc, _ = healer.stop()
    t.eq(rc, 0, "heal stops cleanly on SIGTERM")
    t.ok(bans_installed(), "bans stay in the kernel after the process stops")
finally:
    healer.stop()

# The slow periodic check catches what no deletion notification announces.
healer = Healer("--check-ms", "200")
try:
    healer.wait_for_line("ready")
    h.nft("add", "rule", "inet", "pbxguard", "input", "counter", "accept")
    line = healer.wait_for_line("repaired", timeout=5)
    t.ok(line is not None and "(periodic check)" in line,
         "a foreign rule in our chain is repaired by the periodic check", line)
    t.ok(h.wait_for(lambda: bans_installed() and chain_ok(), timeout=5),
         "after it, our chain and the bans are right")
finally:
    healer.stop()
t.done()
