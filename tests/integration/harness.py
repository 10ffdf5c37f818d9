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
import atexit
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


def _sanitized():
    try:
        with open(DAEMON, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# True when the binaries under test are the ASan/UBSan build: memory figures mean nothing there.
SANITIZED = _sanitized()

SKIP = 77


def skip_all(reason):
    print(f"1..0 # SKIP {reason}")
    sys.exit(SKIP)


def require_root():
    if os.geteuid() != 0:
        skip_all("needs root (private network namespaces)")


def in_private_netns():
    """Re-executes this script in a new network namespace (only loopback, brought up).

    Does nothing when already inside one (PBXGUARD_NETNS is set), except to make SIGTERM (how
    meson stops a test past its timeout) raise SystemExit, so that finally blocks and context
    managers still run: named namespaces (`ip netns add`) live in the host's mount namespace and
    would outlive the test."""
    require_root()
    if os.environ.get("PBXGUARD_NETNS"):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
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


def proc_status(pid, key):
    """A kB figure (VmRSS, VmHWM, RssAnon, ...) from /proc/PID/status, or None if the process
    or the field is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


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


# --- running the daemon ---

SHIPPED_CONFIG = os.path.join(SOURCE, "etc", "pbxguard.conf")


def make_config(dirpath, overrides=None, append="", name="pbxguard.conf"):
    """Writes a test configuration into dirpath and returns its path.

    Starts from the shipped etc/pbxguard.conf with the database, control socket and lock file
    moved into dirpath; overrides maps (section, key) to a new value (the key must be present
    in the shipped file's section, commented lines do not count); append is raw INI text added
    at the end (extra sections such as [policy:PJSIP])."""
    overrides = dict(overrides or {})
    overrides.setdefault(("general", "database"), os.path.join(dirpath, "pbxguard.db"))
    overrides.setdefault(("general", "control_socket"), os.path.join(dirpath, "control.sock"))
    overrides.setdefault(("general", "lock_file"), os.path.join(dirpath, "pbxguardd.lock"))
    pending = set(overrides)
    out = []
    section = None
    with open(SHIPPED_CONFIG) as f:
        for line in f:
            s = line.strip()
            if s.startswith("["):
                section = s[1:s.index("]")]
            elif "=" in s and not s.startswith((";", "#")):
                key = s.split("=", 1)[0].strip()
                if (section, key) in overrides:
                    line = f"{key} = {overrides[(section, key)]}\n"
                    pending.discard((section, key))
            out.append(line)
    if pending:
        raise KeyError(f"not in the shipped config: {sorted(pending)}")
    path = os.path.join(dirpath, name)
    with open(path, "w") as f:
        f.write("".join(out) + append)
    os.chmod(path, 0o600)
    return path


_DAEMONS = []


def _kill_daemons():
    for p in _DAEMONS:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_kill_daemons)


class Daemon:
    """A running pbxguardd: its stderr goes to a log file that tests read with wait_log()."""

    def __init__(self, config, args=(), env=None, log_path=None):
        self.log_path = log_path or config + ".log"
        self._log = open(self.log_path, "w")
        self.p = subprocess.Popen([DAEMON, "-c", config, *args], stdin=subprocess.DEVNULL,
                                  stdout=self._log, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, **(env or {})))
        _DAEMONS.append(self.p)

    @property
    def pid(self):
        return self.p.pid

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=5.0, count=1):
        """Waits until text appears count times in the log (or the daemon exits); returns
        whether it did."""
        wait_for(lambda: self.log().count(text) >= count or self.p.poll() is not None,
                 timeout=timeout)
        return self.log().count(text) >= count

    def running(self):
        return self.p.poll() is None

    def send_signal(self, sig):
        self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Returns (returncode, seconds it took)."""
        r = stop_process(self.p, sig, timeout)
        self._log.close()
        return r

    def wait(self, timeout=5.0):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


# ---- the nftables layer ---------------------------------------------------------------------

NFT_TOOL = os.path.join(BUILD, "tests", "nft-tool")


def nft_tool(*args, timeout=60, **kw):
    """Runs tests/tools/nft-tool (the real nftables layer) and returns the CompletedProcess."""
    return subprocess.run([NFT_TOOL, *args], capture_output=True, text=True, timeout=timeout, **kw)


def _nft_elem_key(val):
    if isinstance(val, str):
        return val
    if "prefix" in val:
        return f'{val["prefix"]["addr"]}/{val["prefix"]["len"]}'
    if "range" in val:
        return f'{val["range"][0]}-{val["range"][1]}'
    return json.dumps(val)


def nft_set_elements(set_name, table="pbxguard", family="inet"):
    """Lists a set with `nft -j`: {"addr" or "addr/len": (timeout_s, expires_s)}, where a
    permanent element has (None, None). Returns None if the set does not exist."""
    out = nft_json("list", "set", family, table, set_name)
    if out is None:
        return None
    elems = {}
    for obj in out:
        if "set" not in obj:
            continue
        for e in obj["set"].get("elem", []):
            if isinstance(e, dict) and "elem" in e:
                inner = e["elem"]
                elems[_nft_elem_key(inner["val"])] = (inner.get("timeout"), inner.get("expires"))
            else:
                elems[_nft_elem_key(e)] = (None, None)
    return elems


def nft_tables():
    """Returns the set of (family, name) of every table in this namespace."""
    out = nft_json("list", "tables") or []
    return {(o["table"]["family"], o["table"]["name"]) for o in out if "table" in o}


def pbxguard_bans(table="pbxguard", set4="banned4", set6="banned6"):
    """Every ban in our table's four sets, as {"addr" or "addr/len": (timeout_s, expires_s)}:
    set4 holds IPv4 addresses, set6 IPv6 /64s (listed by nft without the /64, added back here),
    set4_net and set6_net the other prefixes. None if the table is missing."""
    bans = {}
    for name, is64 in ((set4, False), (set4 + "_net", False), (set6, True), (set6 + "_net", False)):
        elems = nft_set_elements(name, table=table)
        if elems is None:
            return None
        for k, v in elems.items():
            bans[f"{k}/64" if is64 else k] = v
    return bans
