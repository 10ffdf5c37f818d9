#!/usr/bin/python3
"""The incumbent, measured on this machine: fail2ban fed the same attack pbxguard gets.

fail2ban (Debian's package, its stock `asterisk` filter and jail, Debian's `nftables` ban action)
runs inside a private network namespace with its own configuration directory, socket, pid file
and database under a temporary directory; the host's fail2ban service and ruleset are never
touched. The attack is written as Asterisk's res_security_log lines (the exact format of
tests/fixtures/ami/asterisk20-ipv4-security.log) with RemoteAddress rewritten to test addresses.

Figures (printed as one table; also as JSON with --json for bench/run):
  - ban latency: from the threshold-crossing line being appended to the log to the address being
    in the jail's nft sets (seen through `nft monitor` in the namespace, so resolution is the
    monitor's read latency, well under a millisecond), p50/p95/p99/max over --bans bans;
  - throughput: --lines lines from --ips addresses written at once, time until all are banned,
    and the CPU time fail2ban spent;
  - restore: fail2ban restarted with those bans in its database, time until all are back in the
    kernel set;
  - peak RSS (VmHWM) of fail2ban-server.

Usage: bench/fail2ban_bench.py [--bans 50] [--lines 10000] [--ips 1000] [--timeout 600] [--json]
Root only. Installs fail2ban (and python3-pyinotify, which a stock install pulls in) if missing.
Bounded: every wait has a deadline, the whole run a hard --timeout; the namespace and every
process started in it are removed on exit.
"""
import argparse
import ipaddress
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness as h  # noqa: E402

F2B_ETC = "/etc/fail2ban"
FIXTURE_LINE = (
    '[{ts}] SECURITY[11270] res_security_log.c: SecurityEvent="{ev}",'
    'EventTV="{tv}",Severity="Error",Service="PJSIP",EventVersion="1",'
    'AccountID="{acct}",SessionID="{sid}",'
    'LocalAddress="IPV4/UDP/192.0.2.1/5060",RemoteAddress="IPV4/UDP/{ip}/{port}",'
    'Challenge="1a2b3c4d",ReceivedChallenge="1a2b3c4d",ReceivedHash="0123456789abcdef0123456789abcdef"\n')


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def ensure_installed():
    """Installs fail2ban like a stock `apt install` would (its filter, its nftables action, and
    pyinotify, which it recommends), without starting Debian's service."""
    want = [p for p in ("fail2ban", "python3-pyinotify") if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
        text=True).stdout.find("install ok installed") < 0]
    if not want:
        return
    log(f"installing {' '.join(want)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *want],
                   env=env, check=True, stdout=subprocess.DEVNULL)


def security_line(ip, n, ev="ChallengeResponseFailed"):
    now = time.time()
    lt = time.localtime(now)
    ms = int((now % 1) * 1000)
    ts = time.strftime("%Y-%m-%d %H:%M:%S", lt) + f".{ms:03d}"
    tv = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + f".{ms:03d}" + time.strftime("%z", lt)
    return FIXTURE_LINE.format(ts=ts, tv=tv, ev=ev, acct=f"{1000 + n % 50}",
                               sid=f"{n:08x}-bench@{ip}", ip=ip, port=5060 + n % 1000)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


class Netns:
    def __init__(self):
        self.name = f"pg-bench-f2b-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.exec(["ip", "link", "set", "lo", "up"], check=True)

    def cmd(self, argv):
        return ["ip", "netns", "exec", self.name, *argv]

    def exec(self, argv, **kw):
        return subprocess.run(self.cmd(argv), capture_output=True, text=True, **kw)

    def close(self):
        # Every process still in the namespace was started by this script.
        r = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class Monitor:
    """Follows `nft monitor` in the namespace and records when each address first enters each
    set. The kernel pushes the notification; no listing of the set is ever needed."""

    ELEM = re.compile(r"^add element \S+ \S+ (\S+) \{ (.*) \}")

    def __init__(self, ns):
        self.p = subprocess.Popen(ns.cmd(["nft", "monitor", "new", "elements"]),
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  bufsize=1)
        self.cv = threading.Condition()
        self.seen = {}  # (set, ip) -> monotonic time of the first add
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        for line in self.p.stdout:
            now = time.monotonic()
            m = self.ELEM.match(line.strip())
            if not m:
                continue
            with self.cv:
                for item in m.group(2).split(","):
                    ip = item.strip().split(" ")[0]
                    self.seen.setdefault((m.group(1), ip), now)
                self.cv.notify_all()

    def reset(self):
        with self.cv:
            self.seen.clear()

    def banned_at(self, ip, sets):
        """Time the address was in every one of sets, or None."""
        ts = [self.seen.get((s, ip)) for s in sets]
        return None if None in ts else max(ts)

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                v = pred()
                left = deadline - time.monotonic()
                if v or left <= 0:
                    return v
                self.cv.wait(min(left, 0.5))

    def close(self):
        self.p.kill()
        self.p.wait()


class Fail2ban:
    def __init__(self, ns, tmp, maxretry, backend):
        self.ns = ns
        self.conf = os.path.join(tmp, "etc")
        self.sock = os.path.join(tmp, "f2b.sock")
        self.logpath = os.path.join(tmp, "security.log")
        self.errlog = os.path.join(tmp, "fail2ban.log")
        self.p = None
        shutil.copytree(F2B_ETC, self.conf)
        # Debian's jail.d enables sshd; only the asterisk jail runs here.
        for f in os.listdir(os.path.join(self.conf, "jail.d")):
            os.unlink(os.path.join(self.conf, "jail.d", f))
        with open(os.path.join(self.conf, "fail2ban.local"), "w") as f:
            f.write(f"[Definition]\nloglevel = INFO\nlogtarget = {self.errlog}\n"
                    f"socket = {self.sock}\npidfile = {tmp}/f2b.pid\n"
                    f"dbfile = {tmp}/f2b.sqlite3\ndbpurgeage = 1d\n")
        # Debian's defaults (banaction nftables), the stock [asterisk] jail (two actions, TCP
        # and UDP, ports 5060,5061), its log and the same threshold pbxguard uses.
        with open(os.path.join(self.conf, "jail.d", "bench.local"), "w") as f:
            f.write("[DEFAULT]\nbanaction = nftables\nbanaction_allports = nftables[type=allports]\n"
                    f"backend = {backend}\n\n"
                    f"[asterisk]\nenabled = true\nlogpath = {self.logpath}\n"
                    f"maxretry = {maxretry}\nfindtime = 10m\nbantime = 1h\n")
        open(self.logpath, "w").close()
        self.sets = ["addr-set-asterisk-tcp", "addr-set-asterisk-udp"]

    def client(self, *args, timeout=30):
        return self.ns.exec(["fail2ban-client", "-c", self.conf, "-s", self.sock, *args],
                            timeout=timeout)

    def start(self):
        self.p = subprocess.Popen(
            self.ns.cmd(["fail2ban-server", "-f", "-x", "-c", self.conf, "-s", self.sock]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"fail2ban-server exited ({self.p.returncode}); see {self.errlog}")
            r = self.client("status", "asterisk", timeout=10)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("fail2ban did not come up within 60 s")

    def server_pid(self):
        # `ip netns exec` execs, so the Popen pid is fail2ban-server itself.
        return self.p.pid

    def proc_status(self, key):
        return h.proc_status(self.server_pid(), key)

    def cpu_seconds(self):
        """User+system CPU of fail2ban-server and of every nft it forked and reaped."""
        try:
            with open(f"/proc/{self.server_pid()}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tick = os.sysconf("SC_CLK_TCK")
            return sum(int(x) for x in fields[11:15]) / tick
        except OSError:
            return None

    def failed_total(self):
        r = self.client("status", "asterisk", timeout=10)
        m = re.search(r"Total failed:\s+(\d+)", r.stdout)
        return int(m.group(1)) if m else -1

    def append(self, lines):
        with open(self.logpath, "a") as f:
            f.write("".join(lines))
            f.flush()
        return time.monotonic()

    def stop(self):
        if not self.p or self.p.poll() is not None:
            return
        try:
            self.client("stop", timeout=120)
            self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def test_addresses(n, base):
    net = ipaddress.ip_network(base)
    return [str(net.network_address + 1 + i) for i in range(n)]


def run(args):
    ensure_installed()
    version = subprocess.run(["fail2ban-client", "--version"], capture_output=True,
                             text=True).stdout.strip()
    res = {"version": version, "backend": args.backend, "maxretry": args.maxretry}
    tmp = tempfile.mkdtemp(prefix="pg-bench-f2b-")
    ns = Netns()
    mon = f2b = None
    try:
        mon = Monitor(ns)
        f2b = Fail2ban(ns, tmp, args.maxretry, args.backend)
        f2b.start()
        log(f"{version} up in {ns.name}")

        # Ban latency. Every address first gets maxretry-1 failures (all at once, then waited for
        # until fail2ban has counted them), then its threshold-crossing line alone; the clock
        # runs from that line's write to the address being in both of the jail's sets.
        ips = test_addresses(args.bans, "198.18.0.0/24")
        pre = [security_line(ip, k) for ip in ips for k in range(args.maxretry - 1)]
        f2b.append(pre)
        deadline = time.monotonic() + 60
        while f2b.failed_total() < len(pre) and time.monotonic() < deadline:
            time.sleep(0.2)
        lat = []
        for i, ip in enumerate(ips):
            t0 = f2b.append([security_line(ip, 99)])
            t1 = mon.wait(lambda: f2b_banned(mon, ip, f2b.sets), timeout=10)
            if t1:
                lat.append((t1 - t0) * 1000.0)
            time.sleep(0.05)
        res["latency_ms"] = summary(lat, args.bans)
        log(f"latency: {res['latency_ms']}")

        # Throughput: lines from many addresses in one write, then wait for the last ban.
        nips = args.ips
        per = max(args.maxretry, args.lines // nips)
        ips = test_addresses(nips, "198.19.0.0/16")
        lines = [security_line(ip, k) for k in range(per) for ip in ips]
        cpu0 = f2b.cpu_seconds()
        t0 = f2b.append(lines)
        done = mon.wait(lambda: all(f2b_banned(mon, ip, f2b.sets) for ip in ips),
                        timeout=args.timeout / 2)
        t1 = time.monotonic()
        nb = sum(1 for ip in ips if f2b_banned(mon, ip, f2b.sets))
        cpu = f2b.cpu_seconds()
        res["throughput"] = {
            "lines": len(lines), "ips": nips, "banned": nb, "complete": bool(done),
            "seconds": t1 - t0, "lines_per_s": len(lines) / (t1 - t0),
            "bans_per_s": nb / (t1 - t0),
            "cpu_s": (cpu - cpu0) if cpu is not None and cpu0 is not None else None}
        res["rss_kb"] = f2b.proc_status("VmHWM")
        log(f"throughput: {res['throughput']}")

        # Restore: stop (fail2ban removes its sets), start again, wait for every ban to be back.
        total_bans = nb + len(lat)
        f2b.stop()
        mon.reset()
        t0 = time.monotonic()
        f2b.start()
        allips = test_addresses(args.bans, "198.18.0.0/24") + ips
        mon.wait(lambda: sum(1 for ip in allips if f2b_banned(mon, ip, f2b.sets)) >= total_bans,
                 timeout=args.timeout / 3)
        t1 = time.monotonic()
        back = sum(1 for ip in allips if f2b_banned(mon, ip, f2b.sets))
        res["restore"] = {"bans": total_bans, "restored": back, "seconds": t1 - t0}
        log(f"restore: {res['restore']}")
        res["rss_kb"] = max(res["rss_kb"] or 0, f2b.proc_status("VmHWM") or 0)
    finally:
        if f2b:
            f2b.stop()
        if mon:
            mon.close()
        ns.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def f2b_banned(mon, ip, sets):
    return mon.banned_at(ip, sets)


def summary(xs, n):
    return {"n": len(xs), "of": n, "p50": pct(xs, 50), "p95": pct(xs, 95), "p99": pct(xs, 99),
            "max": max(xs) if xs else float("nan")}


def print_table(r):
    lat, tp, rs = r["latency_ms"], r["throughput"], r["restore"]
    rows = [
        ("ban latency p50 / p95 / p99 / max",
         f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f} / {lat['max']:.0f} ms"
         f" ({lat['n']} of {lat['of']} bans)"),
        (f"throughput, {tp['lines']} lines from {tp['ips']} addresses",
         f"{tp['seconds']:.1f} s to {tp['banned']} bans: {tp['lines_per_s']:.0f} lines/s, "
         f"{tp['bans_per_s']:.0f} bans/s, {tp['cpu_s'] or 0:.1f} s CPU"),
        (f"restore {rs['bans']} bans at start-up", f"{rs['seconds']:.1f} s ({rs['restored']} back)"),
        ("peak RSS (VmHWM) of fail2ban-server", f"{(r['rss_kb'] or 0) / 1024:.0f} MB"),
    ]
    print(f"{r['version']}, backend {r['backend']}, stock asterisk jail (nftables, tcp+udp), "
          f"maxretry {r['maxretry']}")
    w = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{w}}  {b}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bans", type=int, default=50, help="bans timed for latency")
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--ips", type=int, default=1000)
    ap.add_argument("--maxretry", type=int, default=5)
    ap.add_argument("--backend", default="auto", help="fail2ban backend (auto = pyinotify here)")
    ap.add_argument("--timeout", type=int, default=600, help="hard limit for the whole run, s")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("fail2ban_bench: needs root (network namespaces)", file=sys.stderr)
        return 77

    def on_alarm(*_):
        raise TimeoutError(f"hard timeout of {args.timeout} s")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.timeout)
    try:
        r = run(args)
    except (TimeoutError, RuntimeError, subprocess.SubprocessError) as e:
        print(f"fail2ban_bench: {e}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print_table(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
