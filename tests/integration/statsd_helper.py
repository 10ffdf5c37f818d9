"""Helpers for the StatsD integration tests: a real StatsD server (etsy's `statsd` npm package,
installed once into a cache directory) and a plain UDP socket standing in for one.

    import statsd_helper as sh
    sh.install_statsd()                 # before h.in_private_netns(): needs the npm registry
    h.in_private_netns()
    with sh.StatsdServer(tmp) as srv:   # 127.0.0.1 (or ipv6=True: ::1), random port
        ... send to srv.host, srv.port ...
        totals = srv.totals(lambda c, g: "x" in c)   # counters summed over its flushes
"""
import json
import os
import queue
import socket
import subprocess
import threading
import time

import shutil

import harness as h

STATSD_VERSION = "0.9.0"
CACHE = os.environ.get("PBXGUARD_TEST_CACHE", "/var/cache/pbxguard-test")
STATSD_DIR = os.path.join(CACHE, f"statsd-{STATSD_VERSION}")
STATSD_JS = os.path.join(STATSD_DIR, "node_modules", "statsd", "stats.js")
BACKEND = os.path.join(os.path.dirname(os.path.abspath(__file__)), "statsd-json-backend.js")
SEND = os.path.join(h.BUILD, "tests", "statsd-send")


def install_statsd():
    """Installs the statsd npm package into the cache once; idempotent. Returns None or the
    reason it failed. Runs outside the test's network namespace (it needs the registry)."""
    if os.path.exists(STATSD_JS):
        return None
    if not (shutil.which("node") and shutil.which("npm")):
        return "node/npm not found (scripts/deps.sh test installs nodejs npm)"
    os.makedirs(STATSD_DIR, exist_ok=True)
    r = subprocess.run(["npm", "install", "--prefix", STATSD_DIR, "--no-audit", "--no-fund",
                        "--omit=optional", f"statsd@{STATSD_VERSION}"],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not os.path.exists(STATSD_JS):
        return f"npm install statsd failed: {r.stderr[-2000:]}"
    return None


def free_port(family=socket.AF_INET, kind=socket.SOCK_DGRAM):
    with socket.socket(family, kind) as s:
        s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        return s.getsockname()[1]


class StatsdServer:
    """etsy statsd on loopback with a short flush interval and a backend printing what it
    computed at each flush as JSON."""

    def __init__(self, tmpdir, ipv6=False, flush_ms=300):
        self.ipv6 = ipv6
        self.host = "::1" if ipv6 else "127.0.0.1"
        self.port = free_port(socket.AF_INET6 if ipv6 else socket.AF_INET)
        self.flushes = queue.Queue()
        self.log = []
        conf = {
            "port": self.port, "address": self.host, "address_ipv6": ipv6,
            "mgmt_address": self.host,
            "mgmt_port": free_port(socket.AF_INET6 if ipv6 else socket.AF_INET,
                                   socket.SOCK_STREAM),
            "flushInterval": flush_ms, "backends": [BACKEND],
            "automaticConfigReload": False,
        }
        self.conf_path = os.path.join(tmpdir, f"statsd-{self.port}.json")
        with open(self.conf_path, "w") as f:
            json.dump(conf, f)
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(["node", STATSD_JS, self.conf_path], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def __exit__(self, *exc):
        h.stop_process(self.proc)

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("PBXGUARD_FLUSH "):
                self.flushes.put(json.loads(line[len("PBXGUARD_FLUSH "):]))
            else:
                self.log.append(line.rstrip())

    def wait_up(self, timeout=20.0):
        """True once the server has flushed once (it is then listening)."""
        try:
            self.flushes.get(timeout=timeout)
            return True
        except queue.Empty:
            return False

    def totals(self, done, timeout=10.0):
        """Sums the counters over successive flushes (gauges: the last value) until
        done(counters, gauges) is true or timeout seconds pass; returns (counters, gauges)."""
        counters, gauges = {}, {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                f = self.flushes.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            for k, v in f["counters"].items():
                counters[k] = counters.get(k, 0) + v
            gauges.update(f["gauges"])
            if done(counters, gauges):
                break
        return counters, gauges


def send(host, port, script, *args, timeout=60):
    """Runs tests/statsd-send against host:port with script on stdin."""
    return subprocess.run([SEND, "--host", host, "--port", str(port), *args], input=script,
                          capture_output=True, text=True, timeout=timeout)
