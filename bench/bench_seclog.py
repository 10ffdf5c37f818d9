#!/usr/bin/python3
"""The security log source, measured on the real daemon (release build) in a private network
namespace. Figures only, never pass/fail.

  sudo bench/bench_seclog.py [--build DIR] [--size-mb 1024] [--runs 3] [--scan-runs 3]
                            [--quick] [--json]

1. parser: build-release/bench/bench_seclog (the line parser alone, one thread, on the real
   Asterisk 20 log), its median lines/s of CPU time.
2. backfill: a log of --size-mb written the way Asterisk writes it (a day of a PJSIP password
   attack: ChallengeSent + ChallengeResponseFailed per attempt, from 50k addresses, EventTV
   spread over the 24 hours before the run), then pbxguardd started with [seclog] in backfill
   mode beside a live AMI session, as after a day down. Measured: from READY=1 to the whole file
   read and judged (the position the daemon commits reaches the file's size); the daemon's
   memory sampled every 100 ms (anonymous and file-backed RSS: the log is read with read(2),
   never mapped, so only the database's own mmap is file-backed); its loop turns (the daemon's
   own clocks: callbacks and hooks of one turn, the commit included, from `status`'s "loop"): the
   longest since the start, and the p99 over the last minute; and, all along, a fresh attacker
   every 100 ms over AMI (5
   failures): the time from the last byte sent to the ban in the kernel, which shows AMI events
   keep being judged while the backfill runs.
   The daemon's CPU time (user + system, all its threads) is given beside the wall-clock time:
   the machine is shared, and the wall-clock time grows with the load while the CPU time does
   not.
3. scan: the same log and daemon, but its database already holds a failure judged over AMI a
   minute ago (as when [seclog] is first added on a host whose AMI session was up all along):
   every line is read and parsed to find where the daemon's judgement stops, and none is
   recorded. This is the cost of the reading alone, the part that does not depend on the store.
The log is generated once and read by every run; each run has a fresh database.
"""
import argparse
import ipaddress
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import harness as h  # noqa: E402

h.in_private_netns()
import e2elib as e  # noqa: E402


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))]


def write_log(path, size):
    """A day of attack, as res_security_log writes it, up to size bytes; returns the lines."""
    rnd = random.Random(42)
    pool = [str(ipaddress.IPv4Address(0x0A000000 + 1 + i * 7)) for i in range(50000)]
    end = time.time() - 60
    # Two lines per attempt, about 380 bytes each.
    attempts = size // 760
    t0 = end - 86400
    step = 86400 / attempts
    lines = 0
    with open(path, "wb", buffering=1 << 22) as f:
        f.write(b"[2026-11-26 09:01:47.730] Asterisk 20.20.1 built by root @ vm on a x86_64\n")
        written = 0
        i = 0
        while written < size:
            when = t0 + i * step
            ip = pool[rnd.randrange(len(pool))]
            port = 1024 + rnd.randrange(60000)
            sess = f"{rnd.getrandbits(64):016x}@attacker"
            tv = e.event_tv(when)
            chunk = (e.seclog_line("ChallengeSent", ip, port=port, session=sess, tv=tv,
                                   when=when) +
                     e.seclog_line("ChallengeResponseFailed", ip, port=port, session=sess, tv=tv,
                                   when=when))
            f.write(chunk)
            written += len(chunk)
            lines += 2
            i += 1
    return lines


def parser_figure(build):
    exe = os.path.join(build, "bench", "bench_seclog")
    if not os.access(exe, os.X_OK):
        return None
    r = subprocess.run([exe, "--json"], capture_output=True, text=True, timeout=600)
    try:
        return json.loads(r.stdout)
    except ValueError:
        log(r.stdout + r.stderr)
        return None


def seed_judged(args, tmp, ami, mon):
    """A database whose last failure was judged over AMI just now: one run without [seclog]."""
    d = e.Daemon(tmp, ami.port, binary=os.path.join(args.build, "pbxguardd"),
                 cli=os.path.join(args.build, "pbxguard"), log_pipe=True)
    try:
        d.start()
        ami.wait_login()
        ami.send(e.attack("203.0.113.99", 1, name="InvalidPassword"))
        e.wait_until(lambda: d.db_query("SELECT count(*) FROM failures")[0][0] >= 1, timeout=20)
    finally:
        d.stop()


def one_run(args, logpath, nbytes, nlines, run, scenario="gap"):
    tmp = tempfile.mkdtemp(prefix="pg-bench-seclog-")
    ami = e.AmiServer().start()
    mon = e.SetMonitor()
    probes, stop = [], threading.Event()
    samples = []
    d = None
    try:
        logins = 0
        if scenario == "scan":
            seed_judged(args, tmp, ami, mon)
            logins = 1
        d = e.Daemon(tmp, ami.port, binary=os.path.join(args.build, "pbxguardd"),
                     cli=os.path.join(args.build, "pbxguard"), log_pipe=True,
                     extra=f"[seclog:pbx1]\npath = {logpath}\n")
        d.start()
        t_ready = d.t_ready
        cpu_ready = d.cpu_seconds()
        ami.wait_login(count=logins + 1)

        def attack():
            k = 0
            while not stop.is_set() and k < 3000:
                ip = str(ipaddress.IPv4Address(0xC0000200 + k % 250)) if k < 250 else \
                    str(ipaddress.IPv4Address(0xC6336400 + k))
                sent = ami.send(e.attack(ip, 5, name="InvalidPassword"))
                if sent is not None:
                    banned = mon.wait_added(ip, timeout=5)
                    probes.append((banned - sent) * 1000 if banned else None)
                k += 1
                stop.wait(0.1)

        th = threading.Thread(target=attack, daemon=True)
        th.start()
        done = None
        deadline = time.monotonic() + 600
        st = {}
        # Progress from the position the daemon commits (read-only, WAL: it never waits on
        # us); `status` is asked once at the end (its "today" count scans the day's rows).
        while time.monotonic() < deadline:
            samples.append((time.monotonic() - t_ready, d.proc_status("RssAnon"),
                            d.proc_status("RssFile")))
            try:
                rows = d.db_query("SELECT pos FROM seclog_cursor")
            except Exception:
                rows = []
            if rows and rows[0][0] >= nbytes:
                done = time.monotonic()
                cpu_done = d.cpu_seconds()
                break
            time.sleep(0.1)
        stop.set()
        th.join(10)
        full = d.cli_json("status") or {}
        st = (full.get("seclog") or [{}])[0]
        secs = done - t_ready if done else None
        anon = [s[1] for s in samples if s[1]]
        filem = [s[2] for s in samples if s[2]]
        lat = [p for p in probes if p is not None]
        cpu = cpu_done - cpu_ready if done and cpu_done is not None else None
        recorded = d.db_query("SELECT count(*) FROM failures WHERE flags & 2")[0][0]
        res = {
            "scenario": scenario,
            "bytes": nbytes, "lines": nlines,
            "seconds": secs, "cpu_seconds": cpu, "recorded": recorded,
            "lines_per_s": nlines / secs if secs else None,
            "mb_per_s": nbytes / secs / 1e6 if secs else None,
            "events": st.get("events"), "lines_read": st.get("lines"),
            "rss_anon_mb": {"first": anon[0] / 1024 if anon else None,
                            "max": max(anon) / 1024 if anon else None,
                            "last": anon[-1] / 1024 if anon else None},
            "rss_file_mb_max": max(filem) / 1024 if filem else None,
            "longest_turn_ms": (full.get("loop") or {}).get("longest_ms"),
            "turn_p99_ms": (full.get("loop") or {}).get("p99_ms"),
            "turns": (full.get("loop") or {}).get("turns"),
            "longest_slice_ms": (st.get("longest_slice_us") or 0) / 1000,
            "wal_pauses": st.get("wal_pauses"),
            "wal_paused_s": (st.get("wal_paused_ms") or 0) / 1000,
            "ami_probes": {"sent": len(probes), "banned": len(lat),
                           "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                           "max_ms": max(lat) if lat else None},
        }
        log(f"{scenario} run {run}: {nbytes / 1e6:.0f} MB, {nlines} lines backfilled in "
            f"{secs if secs is None else round(secs, 2)} s "
            f"({cpu if cpu is None else round(cpu, 2)} s of CPU, {recorded} failures recorded, "
            f"load {open('/proc/loadavg').read().split()[0]}); "
            f"anonymous RSS {res['rss_anon_mb']}; "
            f"longest turn {res['longest_turn_ms'] or 0:.1f} ms (p99 over the last minute "
            f"{res['turn_p99_ms'] or 0:.1f} ms; slice {res['longest_slice_ms']:.1f}; "
            f"{res['turns']} turns; {res['wal_pauses']} WAL pauses, {res['wal_paused_s']:.1f} s); "
            f"AMI probes {res['ami_probes']}")
        return res
    finally:
        stop.set()
        if d is not None:
            d.stop()
        ami.stop()
        mon.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build-release"))
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3, help="runs of the backfill after a gap")
    ap.add_argument("--scan-runs", type=int, default=3, help="runs of the scan")
    ap.add_argument("--quick", action="store_true", help="100 MB, one run of each")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.size_mb, args.runs, args.scan_runs = 100, 1, 1
    h.setup_loopback()
    load = open("/proc/loadavg").read().split()[0]
    out = {"load_before": load, "parser": parser_figure(args.build)}
    work = tempfile.mkdtemp(prefix="pg-bench-seclog-log-", dir="/var/tmp")
    try:
        logpath = os.path.join(work, "security")
        t0 = time.monotonic()
        nlines = write_log(logpath, args.size_mb << 20)
        nbytes = os.path.getsize(logpath)
        log(f"wrote {nbytes / 1e6:.0f} MB, {nlines} lines in {time.monotonic() - t0:.0f} s")
        runs = [one_run(args, logpath, nbytes, nlines, i + 1) for i in range(args.runs)]
        scans = [one_run(args, logpath, nbytes, nlines, i + 1, "scan")
                 for i in range(args.scan_runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["runs"] = runs
    out["scan_runs"] = scans
    out["load_after"] = open("/proc/loadavg").read().split()[0]

    def med(*path, runs=runs):
        vals = []
        for r in runs:
            v = r
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if isinstance(v, (int, float)):
                vals.append(v)
        return statistics.median(vals) if vals else None

    out["median"] = {
        "seconds": med("seconds"), "cpu_seconds": med("cpu_seconds"),
        "mb_per_s": med("mb_per_s"),
        "lines_per_s": med("lines_per_s"),
        "rss_anon_max_mb": med("rss_anon_mb", "max"),
        "rss_anon_first_mb": med("rss_anon_mb", "first"),
        "longest_turn_ms": med("longest_turn_ms"), "turn_p99_ms": med("turn_p99_ms"),
        "turns": med("turns"),
        "ami_p99_ms": med("ami_probes", "p99_ms"), "ami_max_ms": med("ami_probes", "max_ms"),
    }
    out["scan_median"] = {
        "seconds": med("seconds", runs=scans), "cpu_seconds": med("cpu_seconds", runs=scans),
        "mb_per_s": med("mb_per_s", runs=scans),
        "rss_anon_max_mb": med("rss_anon_mb", "max", runs=scans),
        "longest_turn_ms": med("longest_turn_ms", runs=scans),
        "turn_p99_ms": med("turn_p99_ms", runs=scans),
        "ami_p99_ms": med("ami_probes", "p99_ms", runs=scans),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
