#!/usr/bin/python3
"""bench/bench_cluster.py: fleet mode's figures (root; run by bench/run, never by the tests).

A throwaway PostgreSQL (initdb/pg_ctl in a temporary directory, as the postgres user) and the
real pbxguardd nodes, each in a network namespace of its own with its own kernel sets; past
REAL real nodes (two cores), lightweight listeners (build-release/bench/cluster_listener: one
connection per node doing what a node's fleet module does with the table: LISTEN, then read
the rows above its cursor on every notification) make up the count.

  1. Propagation: a threshold ban on node A, from its element's arrival in A's kernel set
     (the netlink notification of A's commit) to its arrival in each other real node's kernel
     set, and to each listener's read of the row; p50/p99 with 2, 10, 100 and 500 listening
     nodes (A included).
  2. Storm: 10,000 bans on A, from A's first to the last one in every node's kernel (listeners:
     read).
  3. Failover: a primary with a synchronous standby, bans flowing from two nodes, the primary
     killed (pg_ctl stop -m immediate) and the standby promoted: the time from the promotion
     until every node holds every ban, and how many were lost.

  sudo bench/bench_cluster.py [--quick] [--json FILE] [--build DIR] [--sizes 2,10,...]
                             [--storm-nodes N] [--no-failover] [--pg-log FILE]

Beside each figure it prints where the CPU went: the database server's (its postmaster and
backends), the listeners', each daemon's and this script's own (the kernel-set monitors), and
the daemons' longest loop turns; --pg-log keeps the server's log with every statement's duration
during the storm.

Figures only: nothing passes or fails on time."""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import threading
import time

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ap = argparse.ArgumentParser()
ap.add_argument("--quick", action="store_true", help="fewer probes, no 500-node run")
ap.add_argument("--json", help="write the figures here too")
ap.add_argument("--build", default=os.path.join(SOURCE, "build-release"))
ap.add_argument("--sizes", help="propagation node counts, comma-separated (default 2,10,100,500;"
                " --quick 2,10,100)")
ap.add_argument("--storm-nodes", type=int, help="nodes in the storm (default 500; --quick 100; "
                "0: no storm)")
ap.add_argument("--no-failover", action="store_true", help="skip the failover figure")
ap.add_argument("--pg-log", help="copy the server's log here, with every statement's duration "
                "during the storm (log_min_duration_statement = 0)")
args, _ = ap.parse_known_args()
os.environ.setdefault("PBXGUARD_BUILD", args.build)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))

import e2elib as e  # noqa: E402
import fleetlib as fl  # noqa: E402
import harness as h  # noqa: E402
import pglib  # noqa: E402

h.in_private_netns()
reason = pglib.missing_reason()
if reason:
    print(f"bench_cluster: skipped: {reason}")
    sys.exit(0)
h.setup_loopback()
e.exit_on_sigterm()

LISTENER = os.path.join(args.build, "bench", "cluster_listener")
REAL = 10          # real daemons, A included: what two cores carry beside the rest
PORT = 55452
PROBES = 30 if args.quick else 60
SIZES = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else \
    (2, 10, 100) if args.quick else (2, 10, 100, 500)
STORM_NODES = args.storm_nodes if args.storm_nodes is not None else 100 if args.quick else 500
STORM = 10000
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def in_ns(ns, fn):
    """Runs fn on a thread that joined the named network namespace: a netlink socket made
    there listens to that namespace's kernel."""
    out = {}

    def run():
        fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        out["v"] = fn()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out["v"]


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def ms(x):
    return None if x is None else round(x * 1000, 2)


def load():
    return open("/proc/loadavg").read().split()[0]


def proc_cpu(pid, reaped=False):
    """User + system CPU seconds of one process (0 if it is gone); reaped: and of its children
    that ended."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12]) +
                (int(fields[13]) + int(fields[14]) if reaped else 0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def pg_cpu(pg):
    """CPU seconds of a server: its postmaster and every process it started (the backends,
    which live as long as their connections)."""
    try:
        with open(os.path.join(pg.data, "postmaster.pid")) as f:
            top = int(f.readline())
    except (OSError, ValueError):
        return 0.0
    total = proc_cpu(top, reaped=True)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == top:
            total += proc_cpu(int(d))
    return total


def pg_log_statements(pg, on):
    """Every statement's duration in the server's log (on), or none (off)."""
    if on:
        pg.sql("ALTER SYSTEM SET log_line_prefix = '%m [%p] %a '")
        pg.sql("ALTER SYSTEM SET log_min_duration_statement = 0")
    else:
        pg.sql("ALTER SYSTEM RESET log_min_duration_statement")
    pg.sql("SELECT pg_reload_conf()")


class Listeners:
    """n lightweight nodes in processes of at most 100 connections each."""

    def __init__(self, conninfo, n, probe):
        self.procs = []
        while n > 0:
            k = min(n, 100)
            p = subprocess.Popen([LISTENER, conninfo, str(k), probe], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            n -= k
        self.pids = [p.pid for p in self.procs]
        for p in self.procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a listener did not start")

    def dump(self):
        probes, conns = [], []
        for i, p in enumerate(self.procs):
            p.stdin.write("dump\n")
            p.stdin.flush()
            for line in p.stdout:
                f = line.split()
                if f[0] == "end":
                    break
                if f[0] == "P":
                    probes.append((f[1].split("/")[0], (i, int(f[2])), float(f[3])))
                elif f[0] == "C":
                    conns.append(((i, int(f[1])), int(f[2]), float(f[3])))
        return probes, conns

    def cpu(self):
        return sum(proc_cpu(pid) for pid in self.pids)

    def close(self):
        for p in self.procs:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def start_nodes(tmp, count, first_idx, conninfo_fn=None, log_level="notice"):
    nodes = []
    for i in range(count):
        idx = first_idx + i
        n = fl.Node(tmp, idx, f"n{idx}", PORT, log_level=log_level,
                    conninfo=conninfo_fn(idx) if conninfo_fn else None,
                    )
        nodes.append(n)
    return nodes


def propagation(tmp, pg, results):
    a = None
    receivers, mons = [], {}
    for size in SIZES:
        real = min(size, REAL)
        # (Re)start the real nodes this size needs; the others stop listening.
        if a is None:
            a = start_nodes(tmp, 1, 1)[0].start()
            mons[a.name] = in_ns(a.ns, e.SetMonitor)
        while len(receivers) < real - 1:
            n = start_nodes(tmp, 1, 2 + len(receivers))[0].start()
            mons[n.name] = in_ns(n.ns, e.SetMonitor)
            receivers.append(n)
        for n in receivers:
            n.wait_cluster(lambda s: s.get("state") == "connected", timeout=30)
        listeners = Listeners(f"host=127.0.0.1 port={PORT} dbname=pbxguard user=pbxguard",
                              size - real, f"10.{90 + SIZES.index(size)}.") \
            if size > real else None
        for m in mons.values():
            m.forget()
        probes = [f"10.{90 + SIZES.index(size)}.{i // 200}.{i % 200 + 1}" for i in range(PROBES)]
        # One ban at a time, far enough apart that each is measured alone: every ban costs each
        # node a read of the table, so 500 nodes need more room between probes than 2.
        gap = 0.05 if size <= 10 else 0.2 if size <= 100 else 0.6
        pg0 = pg_cpu(pg)
        for ip in probes:
            a.ban_threshold(ip)
            time.sleep(gap)
        pg_per_ban = (pg_cpu(pg) - pg0) / len(probes)
        lat_real, lat_lst, missing = [], [], 0
        for n in receivers:
            mons[n.name].wait_count(len(probes), timeout=20)
        time.sleep(0.3)
        t_a = {ip: mons[a.name].added_at(ip) for ip in probes}
        for n in receivers:
            for ip in probes:
                tb = mons[n.name].added_at(ip)
                if tb is None or t_a[ip] is None:
                    missing += 1
                else:
                    lat_real.append(tb - t_a[ip])
        if listeners:
            got, _ = listeners.dump()
            seen = set()
            for ip, conn, t in got:
                if ip in t_a and t_a[ip] is not None:
                    lat_lst.append(t - t_a[ip])
                    seen.add((ip, conn))
            missing += (size - real) * len(probes) - len(seen)
            listeners.close()
        both = lat_real + lat_lst
        r = {"nodes": size, "real": real, "listeners": size - real, "probes": len(probes),
             "p50_ms": ms(pct(both, 50)), "p99_ms": ms(pct(both, 99)), "max_ms": ms(max(both)),
             "real_p50_ms": ms(pct(lat_real, 50)), "real_p99_ms": ms(pct(lat_real, 99)),
             "listener_p50_ms": ms(pct(lat_lst, 50)), "listener_p99_ms": ms(pct(lat_lst, 99)),
             "missing": missing, "pg_cpu_per_ban_ms": ms(pg_per_ban), "load": load()}
        results["propagation"].append(r)
        print(f"propagation, {size:>3} nodes ({real} real, {size - real} listeners): "
              f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms "
              f"(real nodes p50 {r['real_p50_ms']} / p99 {r['real_p99_ms']} ms; listeners "
              f"p50 {r['listener_p50_ms']} / p99 {r['listener_p99_ms']} ms); "
              f"{missing} missing; PostgreSQL CPU per ban {r['pg_cpu_per_ban_ms']} ms; "
              f"load {r['load']}", flush=True)
    return a, receivers, mons


def storm(a, receivers, mons, pg, results):
    size = STORM_NODES
    real = 1 + len(receivers)
    listeners = Listeners(f"host=127.0.0.1 port={PORT} dbname=pbxguard user=pbxguard",
                          max(0, size - real), "")
    _, before = listeners.dump()
    base = {c: rows for c, rows, _ in before}
    for m in mons.values():
        m.forget()
    ips = [f"10.{120 + i // 60000}.{i // 250 % 240}.{i % 250 + 1}" for i in range(STORM)]
    data = b"".join(e.attack(ip, 3) for ip in ips)
    cpu0 = {n.name: n.daemon.cpu_seconds() for n in [a] + receivers}
    if args.pg_log:
        pg_log_statements(pg, True)
    pg0, lst0, t0 = pg_cpu(pg), listeners.cpu(), time.monotonic()
    me0 = sum(os.times()[:2])
    a.ami.send(data)
    ok = mons[a.name].wait_count(STORM, timeout=60)
    banned = len(mons[a.name].added)
    done = {}
    deadline = time.monotonic() + 60
    for n in receivers:
        mons[n.name].wait_count(banned, timeout=max(1, deadline - time.monotonic()))
    t_first = min(mons[a.name].added.values())
    t_a_last = max(mons[a.name].added.values())
    for n in receivers:
        v = mons[n.name].added
        done[n.name] = (len(v), max(v.values()) if v else None)
    # Listeners: wait until each read STORM more rows (bounded).
    deadline = time.monotonic() + 60
    while True:
        _, conns = listeners.dump()
        behind = [c for c, rows, _ in conns if rows - base.get(c, 0) < banned]
        if not behind or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for c, rows, t in conns:
        done[f"listener{c}"] = (rows - base.get(c, 0), t)
    pg1, lst1, t1 = pg_cpu(pg), listeners.cpu(), time.monotonic()
    me1 = sum(os.times()[:2])
    # The longest loop turn of each real node over the storm (the daemon's own clocks).
    turns = {n.name: (n.status().get("loop") or {}).get("max_ms") for n in [a] + receivers}
    listeners.close()
    if args.pg_log:
        pg_log_statements(pg, False)
    short = {k: cnt for k, (cnt, _) in done.items() if cnt < banned}
    complete = not short and banned == STORM
    t_all = max(t for _, t in done.values() if t is not None)
    cpu = {k: round(a_ - b_, 2) for (k, b_), a_ in
           zip(cpu0.items(), [n.daemon.cpu_seconds() for n in [a] + receivers])}
    r = {"bans": STORM, "banned_by_a": banned, "nodes": size, "a_first_to_last_s": round(t_a_last - t_first, 3),
         "first_to_every_node_s": round(t_all - t_first, 3),
         "a_last_to_every_node_s": round(t_all - t_a_last, 3), "complete": complete and ok,
         "short": short, "cpu_s": cpu, "pg_cpu_s": round(pg1 - pg0, 2),
         "listeners_cpu_s": round(lst1 - lst0, 2), "bench_cpu_s": round(me1 - me0, 2),
         "longest_turn_ms": turns, "wall_s": round(t1 - t0, 2), "load": load()}
    results["storm"] = r
    print(f"storm of {STORM} bans on A, {size} nodes: A banned them in "
          f"{r['a_first_to_last_s']} s; every node had all of them {r['first_to_every_node_s']} s"
          f" after A's first ({r['a_last_to_every_node_s']} s after A's last); complete: "
          f"{r['complete']}{(' (' + str(len(short)) + ' nodes short)') if short else ''}; daemon CPU seconds {cpu}; "
          f"PostgreSQL CPU {r['pg_cpu_s']} s, listeners' CPU {r['listeners_cpu_s']} s, this "
          f"script's (the kernel set monitors) {r['bench_cpu_s']} s over "
          f"{r['wall_s']} s of wall time (to the end of the wait); longest loop turn (ms, last minute) {turns}; "
          f"load {r['load']}", flush=True)


def failover(tmp, results):
    p1, p2 = PORT + 1, PORT + 2
    primary = pglib.Server(tmp, "fo1", listen="*", port=p1).init().start()
    standby = pglib.Server(tmp, "fo2", listen="*", port=p2)
    nodes = []
    stop = threading.Event()
    try:
        primary.make_fleet_db()
        primary.base_backup_to(standby)
        standby.start()
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
        primary.sql("SELECT pg_reload_conf()")
        pglib.wait(lambda: primary.sql("SELECT sync_state FROM pg_stat_replication") == "sync",
                   timeout=30)
        nodes = start_nodes(tmp, REAL, 40, conninfo_fn=lambda idx: (
            f"host={fl.addrs(idx)[0]},{fl.addrs(idx)[0]} port={p1},{p2} dbname=pbxguard "
            "user=pbxguard target_session_attrs=read-write"))
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_cluster(lambda s: s.get("state") == "connected", timeout=30)
        mons = {n.name: in_ns(n.ns, e.SetMonitor) for n in nodes}
        made = []

        def flow(node, prefix):
            i = 0
            while not stop.is_set() and i < 2000:
                ip = f"{prefix}.{i // 250}.{i % 250 + 1}"
                node.ban_threshold(ip)
                made.append(ip)
                i += 1
                time.sleep(0.005)

        threads = [threading.Thread(target=flow, args=(nodes[k], f"10.{150 + k}"), daemon=True)
                   for k in (0, 1)]
        for t in threads:
            t.start()
        time.sleep(2)
        primary.stop(mode="immediate")
        standby.sql("SELECT pg_promote(true, 60)")
        t_promoted = time.monotonic()
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join(30)
        want = set(made)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(want <= set(m.added) for m in mons.values()):
                break
            time.sleep(0.02)
        t_done = max(max(m.added[ip] for ip in want if ip in m.added) for m in mons.values())
        lost = sum(len(want - set(m.added)) for m in mons.values())
        r = {"nodes": REAL, "bans": len(want), "caught_up_after_promotion_s":
             round(t_done - t_promoted, 3), "lost": lost, "load": load()}
        results["failover"] = r
        print(f"failover: {len(want)} bans from 2 of {REAL} nodes, bans flowing; every node held "
              f"every ban {r['caught_up_after_promotion_s']} s after the promotion; lost: {lost};"
              f" load {r['load']}", flush=True)
        for m in mons.values():
            m.close()
    finally:
        stop.set()
        for n in nodes:
            n.close()
        primary.stop(mode="immediate")
        standby.stop(mode="immediate")


def main():
    if not os.path.exists(LISTENER):
        print(f"bench_cluster: {LISTENER} is missing (build-release with libpq)")
        return 1
    results = {"propagation": [], "machine_load_start": load()}
    with h.TempDir() as tmp:
        pg = pglib.Server(tmp, listen="*", port=PORT).init().start()
        nodes = []
        try:
            pg.make_fleet_db()
            a, receivers, mons = propagation(tmp, pg, results)
            nodes = [a] + receivers
            if STORM_NODES:
                storm(a, receivers, mons, pg, results)
            for m in mons.values():
                m.close()
        finally:
            for n in nodes:
                n.close()
            pg.stop(mode="immediate")
            if args.pg_log:
                import shutil
                shutil.copyfile(pg.logfile, args.pg_log)
        if not args.no_failover:
            failover(tmp, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


sys.exit(main())
