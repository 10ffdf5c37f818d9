#!/usr/bin/python3
"""The whole pipeline, measured: the real pbxguardd fed over a real AMI socket, banning into a
real kernel set, in a private network namespace. Figures only, never pass/fail.

  bench/bench_e2e.py [--build DIR] [--quick] [--json] [--only PHASE,...]

Phases (each on a fresh database unless said otherwise):
  latency_idle   ban latency: from the last byte of the threshold-crossing event leaving the AMI
                 server (sendall() returned) to the kernel's NEWSETELEM notification for that
                 address reaching our netlink socket (NFNLGRP_NFTABLES). The kernel sends it when
                 the element's transaction commits, so this is "banned in the kernel". Both clocks
                 are this process's CLOCK_MONOTONIC; resolution is a thread wake-up (~0.05 ms).
                 Each probe address got maxretry-1 failures beforehand.
  latency_flood  the same probes interleaved into a paced background flood of 50k events/s
                 (failures from a pool of 65k addresses, so bans and recordings mix).
  ingest_hot     N failures from one address, sent as fast as the socket takes them, then a
                 sentinel attack from a fresh address: events/s = all events / time until the
                 sentinel is banned (the daemon handles one AMI stream in order).
  ingest_distinct 100k distinct addresses, 5 failures each, round-robin: 500k events, 100k bans.
  restore        K active bans (1k, 100k, 1M) written into the database the daemon created (plain
                 SQL against its schema), then the daemon started: the time the restore took as
                 the daemon logs it ("N active bans installed in X ms"; a daemon that restores
                 before it says READY=1 logs the same line), spot-checked with `nft get element`,
                 and how long the loop was deaf meanwhile: the longest loop turn during the
                 restore (status' last_restore), or, for a daemon that restores before its loop
                 runs, the whole restore. Then the table is deleted and the repair is measured
                 the same way.
  rss            peak RSS (VmHWM) of the daemon after restoring 1M active bans (--quick: 100k),
                 then one failure from each of 1M (100k) fresh sources over AMI, so 1M sources
                 are tracked in the window beside the 1M bans, and a second one from each after
                 the daemon has sized its page cache for them.
The database is filled with whichever schema the daemon under test made (this tree's, or an
older one's for bench/run --baseline).
The daemon's log goes through a pipe (as to journald under systemd), not straight to a file.
The daemon runs at the CPU priority the shipped unit gives it, as systemd starts it: in a
session of its own at the unit's Nice= (etc/pbxguard.service.in; --nice N for another), with
its session's weight (the kernel's autogroup) raised as much, as the unit's CPUWeight= raises
its cgroup's. The AMI server and the flood's sender run at the benchmark's own priority; the
flood phase's kernel monitor in a process of its own at the daemon's (see ChildMonitor).
"""
import argparse
import ipaddress
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import harness as h  # noqa: E402
import e2elib as e  # noqa: E402

MAXRETRY = 5


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def dist(xs, n):
    return {"n": len(xs), "of": n, "p50": pct(xs, 50), "p99": pct(xs, 99),
            "max": max(xs) if xs else None, "mean": statistics.mean(xs) if xs else None}


def addrs(base, n, skip=1):
    net = ipaddress.ip_network(base)
    first = int(net.network_address) + skip
    if net.version == 4:
        return [str(ipaddress.IPv4Address(first + i)) for i in range(n)]
    return [str(ipaddress.IPv6Address(first + (i << 64))) for i in range(n)]


class Rig:
    """A fresh daemon + AMI server + kernel monitor, in a fresh temp dir."""

    def __init__(self, args, tag, database=None, start=True):
        self.tmp = tempfile.mkdtemp(prefix=f"pg-bench-{tag}-")
        self.ami = e.AmiServer().start()
        self.mon = e.SetMonitor()
        self.d = e.Daemon(self.tmp, self.ami.port, maxretry=MAXRETRY, log_level="notice",
                          log_pipe=True, nice=args.nice,
                          binary=os.path.join(args.build, "pbxguardd"),
                          cli=os.path.join(args.build, "pbxguard"), database=database,
                          general=(f"database_mmap_mib = {args.db_mmap}\n"
                                   if args.db_mmap is not None else ""))
        if start:
            try:
                self.start()
            except Exception:
                self.close()
                raise

    def start(self):
        self.d.start()
        if not self.ami.wait_login(self.d.starts, timeout=30):
            raise RuntimeError("the daemon never logged in to the AMI server:\n"
                               + self.d.log_text()[-2000:])
        return self

    def sentinel(self, tag, timeout=300.0):
        """Bans a fresh address behind everything sent so far; returns when it is banned."""
        ip = f"203.0.113.{tag}"
        self.ami.send(e.attack(ip, MAXRETRY))
        return self.mon.wait_added(ip, timeout=timeout)

    def close(self):
        if self.d.p is not None and self.d.alive():
            self.d.stop(timeout=30)
        self.ami.stop()
        self.mon.close()
        subprocess.run(["nft", "delete", "table", "inet", "pbxguard"], capture_output=True)
        subprocess.run(["rm", "-rf", self.tmp])


class ChildMonitor:
    """The kernel monitor in a process of its own, for the flood: there its wake-up waits
    neither for the sender's thread (Python's GIL) nor behind it for a core. It runs at the
    daemon's priority and prints, when asked, the monotonic time each address entered a set
    (CLOCK_MONOTONIC is the same clock in every process)."""

    CODE = ("import json, sys\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "import e2elib\n"
            "m = e2elib.SetMonitor()\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n"
            "with m.cv:\n"
            "    print(json.dumps({'added': m.added, 'overflows': m.overflows}), flush=True)\n"
            "m.close()\n")

    def __init__(self, nice):
        self.p = subprocess.Popen(
            [sys.executable, "-c", self.CODE, os.path.join(SOURCE, "tests", "integration")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=None if nice is None else e.priority_fn(nice))
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError("the monitor process did not start")

    def added(self):
        self.p.stdin.write("dump\n")
        self.p.stdin.flush()
        res = json.loads(self.p.stdout.readline())
        self.p.wait(timeout=10)
        return res["added"]

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def phase_latency(args, flood):
    n = args.probes
    r = Rig(args, "lat")
    try:
        probes = addrs("198.18.0.0/16", n)
        r.ami.send(b"".join(e.attack(ip, MAXRETRY - 1) for ip in probes))
        if not r.sentinel(1, timeout=60):
            raise RuntimeError("sentinel not banned")
        final = {ip: e.ami_event("ChallengeResponseFailed", ip, port=41000) for ip in probes}
        lat = []
        sent_events = 0
        t_begin = time.monotonic()
        if not flood:
            for ip in probes:
                t0 = r.ami.send(final[ip])
                t1 = r.mon.wait_added(ip, timeout=5)
                if t0 and t1:
                    lat.append((t1 - t0) * 1000)
                time.sleep(0.005)
        else:
            # 50k events/s in chunks of 100 every 2 ms, from 65k addresses (each banned after
            # its 5th failure, then only recorded); one probe after every 10th chunk.
            pool = addrs("198.19.0.0/16", 65000)
            chunk_n = 100
            chunks = []
            for c in range(650):
                chunks.append(b"".join(
                    e.ami_event("InvalidPassword", pool[(c * chunk_n + i) % len(pool)],
                                port=42000 + i) for i in range(chunk_n)))
            sent_t0 = {}
            # The sentinel's notification is in; from now on the monitor process timestamps.
            r.mon.close()
            cm = ChildMonitor(args.nice)
            t_begin = time.monotonic()
            period = chunk_n / args.flood_rate
            t_next = time.monotonic()
            k = 0
            pi = 0
            deadline = time.monotonic() + 120
            while pi < len(probes) and time.monotonic() < deadline:
                r.ami.send(chunks[k % len(chunks)])
                sent_events += chunk_n
                k += 1
                if k % 10 == 0:
                    ip = probes[pi]
                    sent_t0[ip] = r.ami.send(final[ip])
                    pi += 1
                t_next += period
                d = t_next - time.monotonic()
                if d > 0:
                    time.sleep(d)
            t_flood = time.monotonic() - t_begin
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and \
                    subprocess.run(["nft", "get", "element", "inet", "pbxguard", "banned4",
                                    "{ " + probes[pi - 1] + " }"], capture_output=True).returncode:
                time.sleep(0.1)
            time.sleep(0.2)  # the last notification has reached the monitor process
            added = cm.added()
            cm.close()
            for ip, t0 in sent_t0.items():
                t1 = added.get(ip)
                if t0 and t1:
                    lat.append((t1 - t0) * 1000)
        res = dist(lat, n)
        if flood:
            res["flood_events_per_s"] = sent_events / t_flood
            res["flood_events"] = sent_events
        res["cpu_s"] = r.d.cpu_seconds()
        return res
    finally:
        r.close()


def phase_ingest(args, distinct):
    r = Rig(args, "ingest")
    try:
        if distinct:
            n_src = args.distinct
            srcs = addrs("10.0.0.0/8", n_src)
            log(f"building {n_src * MAXRETRY} events from {n_src} addresses")
            per_src = [e.ami_event("InvalidAccountID", ip, port=43000) for ip in srcs]
            rounds = [b"".join(per_src[i:i + 2000]) for i in range(0, n_src, 2000)]
            blocks = rounds * MAXRETRY
            n_events = n_src * MAXRETRY
        else:
            one = b"".join(e.ami_event("ChallengeResponseFailed", "198.51.100.66", port=44000 + i)
                           for i in range(1000))
            blocks = [one] * (args.hot // 1000)
            n_events = len(blocks) * 1000
        cpu0 = r.d.cpu_seconds()
        t0 = time.monotonic()
        for b in blocks:
            r.ami.send(b)
        t_sent = time.monotonic()
        t1 = r.sentinel(2, timeout=600)
        cpu1 = r.d.cpu_seconds()
        if not t1:
            raise RuntimeError("sentinel not banned within 600 s")
        res = {"events": n_events + MAXRETRY, "seconds": t1 - t0,
               "events_per_s": (n_events + MAXRETRY) / (t1 - t0),
               "send_seconds": t_sent - t0, "cpu_s": (cpu1 - cpu0) if cpu0 is not None else None,
               "bans_seen": len(r.mon.added), "netlink_overflows": r.mon.overflows}
        if distinct:
            res["sources"] = args.distinct
        return res
    finally:
        r.close()


def fill_db(db, n_bans, n_sources):
    """Writes active bans and recent failures through SQL against the daemon's own schema:
    failures as small integers (packed keys, kind and account ids) if it has them, as text if
    it is an older one."""
    con = sqlite3.connect(db)
    now = int(time.time() * 1000)
    con.execute("PRAGMA synchronous=OFF")
    compact = any(r[1] == "kind" for r in con.execute("PRAGMA table_info(failures)"))
    with con:
        con.executemany(
            "INSERT INTO bans (prefix, family, len, start_ms, expires_ms, reason, origin, "
            "failures, offence, service, event_type) VALUES (?, 4, 32, ?, ?, 'threshold', "
            "'ami:pbx1', 5, 1, 'PJSIP', 11)",
            ((str(ipaddress.IPv4Address(0x0A000001 + i)), now - 1000, now + 3600_000 + i)
             for i in range(n_bans)))
        if n_sources and compact:
            kind = con.execute("INSERT INTO failure_kinds (service, event_type, source, used_ms) "
                               "VALUES ('PJSIP', 1, 'ami:pbx1', ?)", (now,)).lastrowid
            acc = con.execute("INSERT INTO accounts (name, used_ms) VALUES ('1001', ?)",
                              (now,)).lastrowid
            con.executemany(
                "INSERT INTO failures (key, ts_ms, seq, addr, port, transport, kind, account, "
                "weight, flags) VALUES (?, ?, 0, x'', 5060, 1, ?, ?, 1, 0)",
                (((0x64000001 + i).to_bytes(4, "big"), now - 1000, kind, acc)
                 for i in range(n_sources)))
        elif n_sources:
            con.executemany(
                "INSERT INTO failures (ts_ms, key, addr, port, transport, service, event_type, "
                "account, source, weight) VALUES (?, ?, ?, 5060, 'UDP', 'PJSIP', 1, '1001', "
                "'ami:pbx1', 1)",
                ((now - 1000, a, a) for a in (str(ipaddress.IPv4Address(0x64000001 + i))
                                              for i in range(n_sources))))
    con.close()


def wait_log(d, pattern, start, timeout):
    """The first match of pattern in the daemon's log after offset start, waiting for it."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = rx.search(d.log_text(), start)
        if m:
            return m
        time.sleep(0.05)
    return None


def restore_figures(d, how, start, timeout=600):
    """How long a restore ("installed") or repair ("re-installed") took and the longest loop
    turn meanwhile. A daemon without status' last_restore restores before its loop runs (at
    start) or inside one turn (a repair): the loop was deaf for all of it."""
    m = wait_log(d, r"(\d+) active bans installed in (\d+) ms" if how == "start" else
                 r"(?:re-installed (\d+) active bans in (\d+) ms|(\d+) active bans re-installed "
                 r"in (\d+) ms)", start, timeout)
    if not m:
        raise RuntimeError(f"no end of the {how} in the log:\n" + d.log_text()[-2000:])
    g = [x for x in m.groups() if x is not None]
    res = {"bans": int(g[0]), "seconds": int(g[1]) / 1000.0}
    st = None
    for _ in range(50):
        st = d.cli_json("status")
        if st is not None:
            break
        time.sleep(0.1)
    last = (st or {}).get("last_restore")
    if last:
        res["longest_turn_ms"] = last["longest_turn_ms"]
        res["slices"] = last["slices"]
        res["longest_slice_ms"] = last["longest_slice_ms"]
    else:
        res["longest_turn_ms"] = res["seconds"] * 1000.0
        res["blocking"] = True
    return res


def spot_check(n_bans, k=50):
    idx = random.sample(range(n_bans), min(k, n_bans))
    elems = ", ".join(str(ipaddress.IPv4Address(0x0A000001 + i)) for i in idx)
    r = subprocess.run(["nft", "get", "element", "inet", "pbxguard", "banned4", "{ " + elems + " }"],
                       capture_output=True, text=True)
    return r.returncode == 0


def phase_restore(args, n_bans, n_sources=0, then_events=0, repair=False):
    r = Rig(args, "restore")
    try:
        r.d.stop(timeout=30)                    # the daemon made the schema; now fill it
        subprocess.run(["nft", "delete", "table", "inet", "pbxguard"], capture_output=True)
        t = time.monotonic()
        fill_db(r.d.db, n_bans, n_sources)
        log(f"database filled with {n_bans} bans, {n_sources} sources in {time.monotonic() - t:.1f} s")
        # No notification listener while the daemon restores: with one subscribed, the kernel
        # builds a notification per element (a third of the restore's cost, measured in
        # bench_nft) and our own parser thread competes for the CPU. A production host
        # normally has no listener but pbxguardd, which pauses its own during a bulk restore.
        r.mon.close()
        mark = len(r.d.log_text())
        r.start()
        res = restore_figures(r.d, "start", mark)
        res["ready_seconds"] = r.d.startup_seconds()
        res["spot_check"] = spot_check(n_bans)
        if repair:
            mark = len(r.d.log_text())
            subprocess.run(["nft", "delete", "table", "inet", "pbxguard"], check=True)
            res["repair"] = restore_figures(r.d, "repair", mark)
            res["repair"]["spot_check"] = spot_check(n_bans)
        r.mon = e.SetMonitor()
        if then_events:
            # Twice: the daemon sizes its page cache from the raw window every 10 s, so the
            # second round finds the cache as big as those sources make it.
            srcs = addrs("172.16.0.0/12", then_events)
            for round_ in range(2):
                for i in range(0, then_events, 2000):
                    r.ami.send(b"".join(e.ami_event("InvalidAccountID", ip, port=45000)
                                        for ip in srcs[i:i + 2000]))
                r.sentinel(3 + round_, timeout=600)
                if round_ == 0:
                    time.sleep(12)
        for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            res[k.lower() + "_kb"] = r.d.proc_status(k)
        return res
    finally:
        r.close()


def unit_nice():
    """The Nice= of the shipped unit (etc/pbxguard.service.in), or None without one."""
    try:
        with open(os.path.join(SOURCE, "etc", "pbxguard.service.in")) as f:
            for line in f:
                m = re.match(r"\s*Nice\s*=\s*(-?\d+)\s*$", line)
                if m:
                    return int(m.group(1))
    except OSError:
        pass
    return None


def main():
    ap = argparse.ArgumentParser(description="end-to-end benchmark of pbxguardd")
    ap.add_argument("--build", default=os.path.join(SOURCE, "build-release"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default="latency_idle,latency_flood,ingest_hot,ingest_distinct,"
                                      "restore,rss")
    ap.add_argument("--flood-rate", type=float, default=50000)
    ap.add_argument("--restore-sizes", default=None,
                    help="comma list of ban counts for the restore phase (default 1k,100k,1M; "
                         "the largest is also repaired)")
    ap.add_argument("--db-mmap", type=int, default=None,
                    help="[general] database_mmap_mib for the daemon (default: its own, 0)")
    ap.add_argument("--nice", type=int, default=unit_nice(),
                    help="the daemon's nice value (default: the shipped unit's Nice=, %(default)s)")
    args = ap.parse_args()
    h.in_private_netns()
    h.setup_loopback()
    args.probes = 50 if args.quick else 200
    args.hot = 100_000 if args.quick else 500_000
    args.distinct = 20_000 if args.quick else 100_000
    restore_ns = [1000, 100_000] if args.quick else [1000, 100_000, 1_000_000]
    if args.restore_sizes:
        restore_ns = [int(x) for x in args.restore_sizes.split(",")]
    rss_n = 100_000 if args.quick else 1_000_000
    only = set(args.only.split(","))
    res = {"machine_cores": os.cpu_count(), "quick": args.quick, "daemon_nice": args.nice}
    notes = []

    def run(name, fn, *a):
        if name not in only:
            return
        log(f"{name} ...")
        try:
            res[name] = fn(*a)
            log(f"{name}: {json.dumps(res[name])}")
        except Exception as ex:  # a phase that cannot run is reported, the others still run
            res[name] = None
            notes.append(f"{name} could not run: {ex}".splitlines()[0])
            log(f"{name} failed: {ex}")

    run("latency_idle", phase_latency, args, False)
    run("latency_flood", phase_latency, args, True)
    run("ingest_hot", phase_ingest, args, False)
    run("ingest_distinct", phase_ingest, args, True)
    if "restore" in only:
        res["restore"] = {}
        for n in restore_ns:
            log(f"restore {n} ...")
            try:
                res["restore"][str(n)] = phase_restore(args, n, repair=n == restore_ns[-1])
                log(f"restore {n}: {res['restore'][str(n)]}")
            except Exception as ex:
                notes.append(f"restore {n} could not run: {ex}".splitlines()[0])
    if "rss" in only:
        log("rss ...")
        try:
            rr = phase_restore(args, rss_n, 0, rss_n)
            res["rss"] = {"bans": rss_n, "sources": rss_n, "peak_mb": rr["vmhwm_kb"] / 1024,
                          "end_mb": rr["vmrss_kb"] / 1024,
                          "end_anon_mb": (rr["rssanon_kb"] or 0) / 1024,
                          "end_file_mb": (rr["rssfile_kb"] or 0) / 1024,
                          "restore_seconds": rr["seconds"]}
            log(f"rss: {res['rss']}")
        except Exception as ex:
            notes.append(f"rss could not run: {ex}".splitlines()[0])
    res["latency_idle_ms"] = res.get("latency_idle")
    res["latency_flood_ms"] = res.get("latency_flood")
    if notes:
        res["note"] = "; ".join(notes)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
