#!/usr/bin/python3
"""A StatsD server that is absent, that never reads, or that has no route: sending never blocks,
what cannot be sent is dropped and counted, and the emitter's memory does not grow.

Each case floods the real emitter (tests/statsd-send) with failures from many addresses, a flush
every 100 events as the daemon's loop turns would, and compares its counters and its peak RSS at
two checkpoints. Inside a private network namespace.
"""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import statsd_helper as sh  # noqa: E402

h.in_private_netns()
h.setup_loopback()

# 20k events, then 200k more over 100k distinct addresses (IPv4 and IPv6).
SCRIPT = "flood 20000 20000\nstats\nflood 200000 100000\nstats\n"
RSS_SLACK_KB = 1024

t = h.Tap()


def parse_stats(out):
    rows = [dict(kv.split("=") for kv in line.split()) for line in out.splitlines()
            if line.startswith("datagrams_sent=")]
    return [{k: int(v) for k, v in r.items()} for r in rows]


def flood(label, host, port):
    r = sh.send(host, port, SCRIPT, "--limit", "1000", timeout=120)
    if not t.ok(r.returncode == 0, f"{label}: the flood ran to its end (sends never block)",
                r.stderr):
        return None
    st = parse_stats(r.stdout)
    if not t.eq(len(st), 2, f"{label}: two checkpoints reported"):
        return None
    a, b = st
    t.diag(f"{label}: after 20k events {a}")
    t.diag(f"{label}: after 220k events {b}")
    t.ok(all(s["buffered"] <= s["buffer_size"] == 1432 for s in st),
         f"{label}: nothing waits beyond the one datagram buffer")
    t.ok(b["maxrss_kb"] - a["maxrss_kb"] <= RSS_SLACK_KB,
         f"{label}: memory does not grow with the flood (peak RSS +{b['maxrss_kb'] - a['maxrss_kb']} kB)")
    return a, b


def udp_drops(port):
    """The kernel's drop counter of the UDP socket bound to port (this namespace)."""
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                return int(fields[-1])
    return None


# 1. Nothing listens: ICMP port unreachable, then ECONNREFUSED on the next send.
port = sh.free_port()
res = flood("nothing listening", "127.0.0.1", port)
if res:
    a, b = res
    t.ok(b["datagrams_dropped"] > a["datagrams_dropped"] > 0,
         "nothing listening: the dropped counter grows")
    t.eq(b["send_errno"], 111, "nothing listening: the drops are ECONNREFUSED")

# 2. A server that never reads, with the smallest receive buffer: the kernel drops for it.
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
sink.bind(("127.0.0.1", 0))
port = sink.getsockname()[1]
res = flood("server never reads", "127.0.0.1", port)
if res:
    a, b = res
    drops = udp_drops(port)
    t.ok(drops is not None and drops > 0,
         f"server never reads: the receiving socket's drop counter grows ({drops})")
    t.ok(b["datagrams_sent"] > a["datagrams_sent"],
         "server never reads: the emitter keeps sending without waiting for it")
sink.close()

# 3. A blackhole route to the server: connect() is refused (EINVAL), so every datagram is
# dropped and counted and connect() is retried once per flush interval, never per packet.
subprocess.run(["ip", "route", "add", "blackhole", "203.0.113.7/32"], check=True)
res = flood("blackhole route", "203.0.113.7", 8125)
if res:
    a, b = res
    t.ok(b["datagrams_dropped"] > a["datagrams_dropped"] > 0 and b["datagrams_sent"] == 0,
         "blackhole route: every datagram is dropped and counted")
    t.eq(b["send_errno"], 22, "blackhole route: the drops are EINVAL (no route)")

t.done()
