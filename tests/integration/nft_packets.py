#!/usr/bin/python3
"""Real packets: a PBX namespace and an attacker namespace joined by a veth pair (documentation
addresses 192.0.2.0/24 and 2001:db8::/64). The PBX runs a TCP listener and a UDP echo socket; the
attacker connects before a ban (works), after it (dropped, the rule's counter grows) and after
the unban (works again). Both namespaces are created here and always deleted."""
import json
import os
import signal
import subprocess
import sys

import harness as h

h.require_root()
t = h.Tap()
# A test that overruns its timeout is stopped with SIGTERM, which would end Python without
# running the finally blocks: the named namespaces below would outlive the test.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

PID = os.getpid()
PBX = f"pbxg-pbx-{PID}"
ATK = f"pbxg-atk-{PID}"

SERVER = r"""
import select, socket, sys
socks = []
for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for port in (5060, 5070):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port)); s.listen(64); socks.append(s)
        u = socket.socket(fam, socket.SOCK_DGRAM)
        if fam == socket.AF_INET6:
            u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        u.bind((addr, port)); socks.append(u)
print("listening", flush=True)
while True:
    r, _, _ = select.select(socks, [], [], 60)
    if not r:
        sys.exit(0)
    for s in r:
        if s.type == socket.SOCK_STREAM:
            c, _ = s.accept(); c.sendall(b"hello"); c.close()
        else:
            data, peer = s.recvfrom(2048); s.sendto(data, peer)
"""

CLIENT = r"""
import socket, sys
proto, src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(0.7)
s.bind((src, 0))
try:
    if proto == "tcp":
        s.connect((dst, port)); ok = s.recv(16) == b"hello"
    else:
        s.sendto(b"ping", (dst, port)); ok = s.recv(16) == b"ping"
except OSError:
    ok = False
print("reached" if ok else "blocked")
"""


def run(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


def in_ns(ns, *args, check=True):
    return run("ip", "netns", "exec", ns, *args, check=check)


def reach(proto, src, dst, port=5060):
    r = in_ns(ATK, sys.executable, "-c", CLIENT, proto, src, dst, str(port), check=False)
    return r.stdout.strip() == "reached"


def tool(*args):
    r = in_ns(PBX, h.NFT_TOOL, *args, check=False)
    if r.returncode != 0:
        t.diag(r.stdout + r.stderr)
    return r


def drop_packets(chain="input"):
    """Sum of the packet counters of our drop rules in the PBX namespace."""
    out = in_ns(PBX, "nft", "-j", "list", "chain", "inet", "pbxguard", chain, check=False)
    if out.returncode != 0:
        return None
    total = 0
    for o in json.loads(out.stdout)["nftables"]:
        for e in o.get("rule", {}).get("expr", []):
            if "counter" in e:
                total += e["counter"]["packets"]
    return total


def make_namespaces():
    run("ip", "netns", "add", PBX)
    run("ip", "netns", "add", ATK)
    run("ip", "link", "add", "pbxg-p", "netns", PBX, "type", "veth", "peer", "name", "pbxg-a",
        "netns", ATK)
    for ns, dev, v4, v6s in ((PBX, "pbxg-p", "192.0.2.1/24", ["2001:db8::1/64"]),
                             (ATK, "pbxg-a", "192.0.2.2/24", ["2001:db8::2/64", "2001:db8::3/64"])):
        in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(ns, "ip", "addr", "add", v4, "dev", dev)
        for v6 in v6s:
            in_ns(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad")
        in_ns(ns, "ip", "link", "set", dev, "up")


def delete_namespaces():
    for ns in (PBX, ATK):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main():
    make_namespaces()
    server = subprocess.Popen(["ip", "netns", "exec", PBX, sys.executable, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        t.eq(server.stdout.readline().strip(), "listening", "the PBX listens on TCP and UDP 5060")
        # IPv6 neighbours need a moment after link-up; bounded.
        h.wait_for(lambda: reach("tcp", "2001:db8::2", "2001:db8::1"), timeout=5)
        h.wait_for(lambda: reach("tcp", "192.0.2.2", "192.0.2.1"), timeout=5)

        t.eq(tool("setup").returncode, 0, "setup in the PBX namespace")
        t.ok(reach("tcp", "192.0.2.2", "192.0.2.1"), "before the ban, a TCP connection succeeds")
        t.ok(reach("udp", "192.0.2.2", "192.0.2.1"), "before the ban, UDP gets its echo")
        before = drop_packets()

        tool("ban", "192.0.2.2,600000")
        t.ok(not reach("tcp", "192.0.2.2", "192.0.2.1"), "after the ban, TCP is dropped")
        t.ok(not reach("udp", "192.0.2.2", "192.0.2.1"), "after the ban, UDP is dropped")
        after = drop_packets()
        t.ok(None not in (before, after) and after > before, "the drop rule's counter grew",
             f"before {before}, after {after}")

        tool("unban", "192.0.2.2")
        t.ok(reach("tcp", "192.0.2.2", "192.0.2.1"), "after the unban, TCP succeeds again")
        t.ok(reach("udp", "192.0.2.2", "192.0.2.1"), "after the unban, UDP succeeds again")

        t.ok(reach("tcp", "2001:db8::2", "2001:db8::1") and reach("tcp", "2001:db8::3", "2001:db8::1"),
             "before the ban, both IPv6 addresses connect")
        before = drop_packets()
        tool("ban", "2001:db8::/64")
        t.ok(not reach("tcp", "2001:db8::2", "2001:db8::1"), "a /64 ban drops the attacker's address")
        t.ok(not reach("tcp", "2001:db8::3", "2001:db8::1"),
             "and a second address in the same /64")
        t.ok(not reach("udp", "2001:db8::3", "2001:db8::1"), "for UDP too")
        after = drop_packets()
        t.ok(None not in (before, after) and after > before, "the IPv6 rule's counter grew",
             f"before {before}, after {after}")
        tool("unban", "2001:db8::/64")
        t.ok(reach("tcp", "2001:db8::3", "2001:db8::1"), "after the unban, IPv6 connects again")

        t.eq(tool("--tcp", "5060", "--udp", "5060", "setup").returncode, 0,
             "setup limited to the PBX ports")
        tool("--tcp", "5060", "--udp", "5060", "ban", "192.0.2.2")
        t.ok(not reach("tcp", "192.0.2.2", "192.0.2.1", 5060), "a banned source loses TCP 5060")
        t.ok(not reach("udp", "192.0.2.2", "192.0.2.1", 5060), "and UDP 5060")
        t.ok(reach("tcp", "192.0.2.2", "192.0.2.1", 5070), "but still reaches another port")
    finally:
        server.kill()
        server.wait()
        delete_namespaces()
    t.done()


try:
    main()
finally:
    delete_namespaces()
