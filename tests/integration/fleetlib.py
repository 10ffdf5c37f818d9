"""Fleet helpers: pbxguardd nodes, each in a network namespace of its own (its own kernel sets),
joined to the caller's namespace by a veth pair, where the test's PostgreSQL and each node's
scripted AMI server run.

    node = Node(tmp, 1, "A", pg_port=55432)     # link 198.18.1.0/30: test .1, node .2
    node.start(); node.ami.send(e.attack("203.0.113.10", 3))
    node.wait_banned("203.0.113.10")

Used by tests/integration/fleet*.py and bench/bench_cluster.py. Every namespace and process
made here is removed by close() (callers use try/finally; SIGTERM becomes SystemExit)."""
import json
import os
import subprocess
import time

import e2elib as e
import harness as h


def addrs(idx):
    """(test side, node side) of node idx's link: a /30 of 198.18.0.0/15 (a benchmarking
    range): 198.18.0.1 and .2 for node 0, .5 and .6 for node 1, ..."""
    hi, lo = divmod(idx, 64)
    base = lo * 4
    return f"198.18.{hi}.{base + 1}", f"198.18.{hi}.{base + 2}"


class Node:
    """A pbxguardd in its own namespace, with its AMI server on the test side of its link."""

    def __init__(self, tmp, idx, name, pg_port, conninfo=None, cluster="", whitelist=(),
                 maxretry=3, log_level="info", extra=""):
        self.idx, self.name = idx, name
        self.ns = f"pgf-{os.getpid()}-{idx}"
        self.veth = f"pgf{os.getpid() % 10000}x{idx}"[:15]
        self.gw, self.addr = addrs(idx)
        self.dir = os.path.join(tmp, f"node-{name}")
        os.makedirs(self.dir, exist_ok=True)
        self.daemon = None
        self.ami = None
        self._made = False
        self._run(["ip", "netns", "add", self.ns])
        self._made = True
        self._run(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0",
                   "netns", self.ns])
        self._run(["ip", "addr", "add", f"{self.gw}/30", "dev", self.veth])
        self._run(["ip", "link", "set", self.veth, "up"])
        self.exec(["ip", "link", "set", "lo", "up"])
        self.exec(["ip", "addr", "add", f"{self.addr}/30", "dev", "eth0"])
        self.exec(["ip", "link", "set", "eth0", "up"])
        self.ami = e.AmiServer(host=self.gw).start()
        self.conninfo = conninfo or (f"host={self.gw} port={pg_port} dbname=pbxguard "
                                     "user=pbxguard")
        wrapper = os.path.join(self.dir, "pbxguardd-in-ns")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec ip netns exec {self.ns} {h.DAEMON} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        self.daemon = e.Daemon(
            self.dir, self.ami.port, ami_host=self.gw, maxretry=maxretry, whitelist=whitelist,
            binary=wrapper, log_level=log_level,
            extra=(f"{extra}\n[cluster]\nbackend = postgresql\nconninfo = {self.conninfo}\n"
                   f"node = {name}\ncatchup_interval = 2s\nconnect_timeout = 1s\n"
                   f"query_timeout = 3s\n{cluster}\n"))

    @staticmethod
    def _run(argv):
        subprocess.run(argv, check=True, capture_output=True)

    def exec(self, argv, check=True, timeout=30):
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], check=check,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, wait_ami=True):
        # A loaded machine (hundreds of database connections in a benchmark) must not make
        # the scripted AMI server look dead to the node.
        with open(self.daemon.conf) as f:
            text = f.read()
        with open(self.daemon.conf, "w") as f:
            f.write(text.replace("ping_interval = 2s\nping_timeout = 2s",
                                 "ping_interval = 20s\nping_timeout = 20s"))
        self.daemon.start()
        if wait_ami:
            self.ami.wait_login(count=self.daemon.starts)
        return self

    def stop(self):
        if self.daemon and self.daemon.alive():
            self.daemon.stop()

    def close(self):
        try:
            self.stop()
        finally:
            if self.ami:
                self.ami.stop()
            if self._made:
                subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
                subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)

    def ban_threshold(self, ip, n=3):
        """n failures from ip over this node's AMI session (maxretry is 3 by default)."""
        return self.ami.send(e.attack(ip, n))

    def kernel_bans(self):
        """Every element of our four sets in this node's kernel: {"addr[/len]": expires_s}."""
        out = {}
        for name, is64 in (("banned4", False), ("banned4_net", False), ("banned6", True),
                           ("banned6_net", False)):
            r = self.exec(["nft", "-j", "list", "set", "inet", "pbxguard", name], check=False)
            if r.returncode != 0:
                continue
            for obj in json.loads(r.stdout)["nftables"]:
                if "set" not in obj:
                    continue
                for el in obj["set"].get("elem", []):
                    inner = el["elem"] if isinstance(el, dict) and "elem" in el else el
                    val = inner["val"] if isinstance(inner, dict) and "val" in inner else inner
                    key = h._nft_elem_key(val)
                    if is64:
                        key += "/64"
                    out[key] = inner.get("expires") if isinstance(inner, dict) else None
        return out

    def has(self, prefix):
        return prefix in self.kernel_bans()

    def wait_banned(self, prefixes, timeout=10.0):
        want = {prefixes} if isinstance(prefixes, str) else set(prefixes)
        return h.wait_for(lambda: want <= set(self.kernel_bans()), timeout=timeout, interval=0.05)

    def wait_unbanned(self, prefix, timeout=10.0):
        return h.wait_for(lambda: prefix not in self.kernel_bans(), timeout=timeout,
                          interval=0.05)

    def status(self):
        return self.daemon.cli_json("status") or {}

    def cluster(self):
        return self.status().get("cluster") or {}

    def wait_cluster(self, pred, timeout=15.0):
        return h.wait_for(lambda: pred(self.cluster()), timeout=timeout, interval=0.1)

    def cli(self, *args):
        return self.daemon.cli(*args)

    def log(self):
        return self.daemon.log_text()
