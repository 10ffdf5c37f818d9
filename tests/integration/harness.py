"""Shared helpers for integration tests.

Every integration test is an executable Python script that prints TAP. Tests that touch
nftables or sockets re-exec themselves in a private network namespace (`in_private_netns()`),
so the host's own ruleset is never touched. Every wait is bounded in count and time.

    import harness as h
    h.in_private_netns()          # re-exec under `unshare --net`; skip (77) if not root
    t = h.Tap()
    t.ok(cond, "what it shows")
    t.done()
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SOURCE = os.environ.get("PBXGUARD_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("PBXGUARD_BUILD") or os.path.join(SOURCE, "build")
DAEMON = os.path.join(BUILD, "pbxguardd")
CLI = os.path.join(BUILD, "pbxguard")
FIXTURES = os.path.join(SOURCE, "tests", "fixtures")

SKIP = 77


def skip_all(reason):
    print(f"1..0 # SKIP {reason}")
    sys.exit(SKIP)


def require_root():
    if os.geteuid() != 0:
        skip_all("needs root (private network namespaces)")


def in_private_netns():
    """Re-executes this script in a new network namespace (only loopback, brought up).

    Does nothing when already inside one (PBXGUARD_NETNS is set)."""
    require_root()
    if os.environ.get("PBXGUARD_NETNS"):
        return
    if not shutil.which("unshare"):
        skip_all("unshare(1) not found")
    env = dict(os.environ, PBXGUARD_NETNS="1")
    r = subprocess.run(["unshare", "--net", "--", sys.executable, *sys.argv], env=env)
    sys.exit(r.returncode)


def setup_loopback():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


class Tap:
    """Minimal TAP producer: one line per check, plan at the end, exit 1 on any failure."""

    def __init__(self):
        self.n = 0
        self.failed = 0
        sys.stdout.reconfigure(line_buffering=True)

    def ok(self, cond, name, diag=None):
        self.n += 1
        if cond:
            print(f"ok {self.n} - {name}")
        else:
            self.failed += 1
            print(f"not ok {self.n} - {name}")
            if diag is not None:
                for line in str(diag).splitlines():
                    print(f"# {line}")
        return bool(cond)

    def eq(self, got, want, name):
        return self.ok(got == want, name, f"got:  {got!r}\nwant: {want!r}")

    def skip(self, name, reason):
        self.n += 1
        print(f"ok {self.n} - {name} # SKIP {reason}")

    def diag(self, msg):
        for line in str(msg).splitlines():
            print(f"# {line}")

    def done(self):
        print(f"1..{self.n}")
        sys.exit(1 if self.failed else 0)


def wait_for(pred, timeout=5.0, interval=0.02):
    """Polls pred() until it returns a truthy value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def nft_json(*args):
    """Runs `nft -j ARGS` and returns the parsed JSON's nftables list, or None on error."""
    r = subprocess.run(["nft", "-j", *args], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)["nftables"]


def nft(*args, check=True):
    return subprocess.run(["nft", *args], capture_output=True, text=True, check=check)


class TempDir:
    def __init__(self, prefix="pbxguard-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def stop_process(p, sig=signal.SIGTERM, timeout=5.0):
    """Sends sig and waits; kills after timeout. Returns (returncode, seconds it took)."""
    if p.poll() is not None:
        return p.returncode, 0.0
    t0 = time.monotonic()
    p.send_signal(sig)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    return p.returncode, time.monotonic() - t0
