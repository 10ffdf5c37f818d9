#!/usr/bin/python3
"""Never harming the host: sources that are never real, the host's own addresses, its /64, its
gateways and its resolvers are never banned, whatever the events or the CLI say, and the host
keeps reaching itself and its neighbours after a flood.

Topology: this test's private namespace is the PBX (daemon, scripted AMI server, StatsD sink,
TCP services); one neighbour namespace on a veth link holds 192.0.2.0/24 and 2001:db8:1::/64
beside the PBX's own 192.0.2.1 and 2001:db8:1::1:
  192.0.2.20, 2001:db8:1::20   neighbours that attack (floods through the AMI peer)
  192.0.2.21, 2001:db8:1::21   neighbours that do not
  192.0.2.254, 2001:db8:1::fe  the PBX's default gateways (192.0.2.253 after a route change)
The daemon counts IPv4 by /24 here (ipv4_prefix = 24), so the host's own /24 is a key too, and
reads a test resolv.conf in its temporary directory (the host's /etc/resolv.conf is never
touched).
"""
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
import e2elib as e  # noqa: E402

OWN4, OWN6 = "192.0.2.1", "2001:db8:1::1"
BAD4, BAD6 = "192.0.2.20", "2001:db8:1::20"
GOOD4, GOOD6 = "192.0.2.21", "2001:db8:1::21"
GW4, GW6, GW4_NEW = "192.0.2.254", "2001:db8:1::fe", "192.0.2.253"
RES_A, RES_B = "198.51.100.53", "198.51.100.54"
NEVER = ["fe80::1%eth0", "fe80::1234:5678", "::", "ff02::1", "ff05::1:3", "0.0.0.0", "0.1.2.3",
         "169.254.169.254", "224.0.0.5", "239.255.255.250", "255.255.255.255"]
FLOOD = 25   # events per source, five times the threshold
SVC_PORT = 7000


def connect(dst, port, timeout=1.0):
    """True if a TCP connection from the PBX to dst:port succeeds."""
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((dst, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


RTMGRP_ADDR_ROUTE = 0x10 | 0x40 | 0x100 | 0x400   # IPv4/IPv6 IFADDR and ROUTE groups


def rtnl_listener_port():
    """The netlink port of a NETLINK_ROUTE socket in this namespace subscribed to the address
    and route groups (the daemon's), from /proc/net/netlink."""
    with open("/proc/net/netlink") as f:
        for line in f.read().splitlines()[1:]:
            col = line.split()
            if col[1] == "0" and int(col[3], 16) == RTMGRP_ADDR_ROUTE:
                return int(col[2])
    return None


def forge_deladdr(port, addr, ifindex):
    """Sends an RTM_DELADDR for addr, as the kernel would word it, from a user socket."""
    import struct
    a = socket.inet_pton(socket.AF_INET6, addr)
    attrs = struct.pack("=HH", 20, 1) + a + struct.pack("=HH", 20, 2) + a
    body = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, ifindex) + attrs
    msg = struct.pack("=IHHII", 16 + len(body), 21, 0, 0, 0) + body   # RTM_DELADDR
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        s.sendto(msg, (port, 0))
    finally:
        s.close()


class Sync:
    """Proves that every event sent before it was judged: a fresh sentinel source, banned at the
    threshold, is judged after them (events are handled in order)."""

    def __init__(self, pbx):
        self.pbx, self.n = pbx, 0

    def __call__(self):
        self.n += 1
        ip = f"2001:db8:99:{self.n:x}::1"
        self.pbx.ami.send(e.attack(ip, 5))
        return self.pbx.mon.wait_added(f"2001:db8:99:{self.n:x}::", timeout=10) is not None


def main():
    e.exit_on_sigterm()
    h.setup_loopback()
    t = h.Tap()
    nb = pbx = None
    own_svc = []
    with h.TempDir() as tmp:
        resolv = os.path.join(tmp, "etc", "resolv.conf")
        os.makedirs(os.path.dirname(resolv))
        with open(resolv, "w") as f:
            f.write(f"# test resolv.conf\nsearch example.test\nnameserver {RES_A}\n")
        try:
            nb = e.Attacker("nb", "192.0.2.0/24", "2001:db8:1::/64",
                            hosts=[BAD4, BAD6, GOOD4, GOOD6, GW4, GW6, GW4_NEW])
            subprocess.run(["ip", "route", "add", "default", "via", GW4], check=True)
            subprocess.run(["ip", "-6", "route", "add", "default", "via", GW6], check=True)
            nb.serve(SVC_PORT)
            own_svc = [e.TcpListener(OWN4, SVC_PORT), e.TcpListener(OWN6, SVC_PORT)]
            pbx = e.Pbx(tmp, policy="ipv4_prefix = 24\n",
                        extra=f"[protect]\nresolv_conf = {resolv}\n")
            run(t, pbx, nb, resolv)
        finally:
            if pbx:
                pbx.close()
            for s in own_svc:
                s.close()
            if nb:
                nb.close()
    t.done()


def run(t, pbx, nb, resolv):
    d, sync = pbx.d, Sync(pbx)
    log = d.log_text()
    t.ok("protected (never banned):" in log and "1 gateway" not in log,
         "the daemon says at start what it protects", log[-2000:])
    # The link comes up and neighbour discovery runs: a bounded wait for the first connects.
    every = (OWN4, OWN6, GOOD4, GOOD6, BAD4, BAD6)
    e.wait_until(lambda: all(connect(a, SVC_PORT, timeout=0.5) for a in every), timeout=10)
    reach = {a: connect(a, SVC_PORT) for a in every}
    t.ok(all(reach.values()), "before the floods the host reaches its own addresses and its "
         "neighbours", reach)

    # Sources that are never real: link-local (scoped or not), ::, multicast, broadcast, 0/8.
    pbx.ami.send(b"".join(e.attack(ip, FLOOD) for ip in NEVER))
    t.ok(sync(), "the daemon judged the floods from never-real sources", d.log_text()[-2000:])
    kb = e.kernel_bans() or {}
    t.ok(not any(k.startswith(("fe80", "::", "ff0", "0.", "169.254", "224.", "239.", "255."))
                 for k in kb), "link-local, ::, multicast, broadcast and 0/8 are never banned",
         kb)
    rows = [k for k in e.db_failure_keys(d) if k.is_link_local or k.is_multicast
            or k.is_unspecified or str(k.network_address).startswith(("0.", "255."))]
    t.eq(rows, [], "their events are not even recorded")
    ok = pbx.statsd.wait(lambda s: s.total("pbxguard.ignored.link-local") >= 3 * FLOOD
                         and s.total("pbxguard.ignored.multicast") >= 4 * FLOOD, timeout=5)
    t.ok(ok, "they are counted in the pbxguard.ignored.<range> meters",
         [x for x in pbx.statsd.lines if "ignored" in x][-10:])
    ignored_lines = [x for x in d.log_text().splitlines() if "never counted nor banned" in x]
    t.ok(len(ignored_lines) == 1 and "link-local" in ignored_lines[0]
         and "fe80::1%eth0" in ignored_lines[0],
         "the log says so once, not once per event", ignored_lines)

    # The host's own addresses and a neighbour in its /64 and /24.
    pbx.ami.send(e.attack(OWN4, FLOOD) + e.attack(OWN6, FLOOD) + e.attack(BAD4, FLOOD)
                 + e.attack(BAD6, FLOOD))
    t.ok(sync(), "the daemon judged the floods from the host and its neighbours")
    kb = e.kernel_bans() or {}
    t.ok(not any(k in kb for k in (OWN4, OWN6, "192.0.2.0/24", "2001:db8:1::/64")),
         "neither the host's own addresses nor its /24 and /64 are banned", kb)
    t.ok(BAD4 in kb and BAD6 in kb, "the attacking neighbours are banned, each alone", kb)
    t.ok(connect(OWN4, SVC_PORT) and connect(OWN6, SVC_PORT),
         "after the flood the host still reaches its own addresses")
    t.ok(connect(GOOD4, SVC_PORT) and connect(GOOD6, SVC_PORT),
         "and its other neighbours in the same /24 and /64")
    t.ok(not connect(BAD6, SVC_PORT, timeout=0.5),
         "while the attacking neighbour's replies are dropped")

    # Gateways, followed when the default route changes.
    j = d.cli_json("show", GW4) or {}
    pr = j.get("protected") or {}
    t.ok(pr.get("source") == "gateway" and pr.get("reason") == f"gateway on {nb.pbx_if}"
         and pr.get("absolute") is False, "show names the IPv4 gateway and why", j)
    r = d.cli("show", GW6)
    t.ok(f"protected    yes: gateway on {nb.pbx_if} ({GW6}); never banned automatically" in
         r.stdout, "and the IPv6 one, in words", r.stdout + r.stderr)
    pbx.ami.send(e.attack(GW4, FLOOD) + e.attack(GW6, FLOOD))
    t.ok(sync(), "the daemon judged the floods from the gateways")
    kb = e.kernel_bans() or {}
    t.ok(GW4 not in kb and GW6 not in kb, "a flood from the gateways bans neither", kb)
    subprocess.run(["ip", "route", "replace", "default", "via", GW4_NEW], check=True)
    moved = e.wait_until(lambda: ((d.cli_json("show", GW4_NEW) or {}).get("protected") or {})
                         .get("source") == "gateway", timeout=5)
    t.ok(moved, "a new default gateway is protected without a restart", d.log_text()[-1500:])
    t.ok((d.cli_json("show", GW4) or {}).get("protected") is None,
         "and the old one is not any more")

    # Resolvers, followed when resolv.conf is replaced (by a rename, as resolvconf does).
    j = d.cli_json("show", RES_A) or {}
    t.eq((j.get("protected") or {}).get("reason"), "resolver",
         "show says the nameserver of resolv.conf is protected as a resolver")
    pbx.ami.send(e.attack(RES_A, FLOOD))
    t.ok(sync() and RES_A not in (e.kernel_bans() or {}), "a flood from the resolver bans nothing")
    tmpfile = resolv + ".new"
    with open(tmpfile, "w") as f:
        f.write(f"nameserver {RES_B}\n")
    os.rename(tmpfile, resolv)
    moved = e.wait_until(lambda: ((d.cli_json("show", RES_B) or {}).get("protected") or {})
                         .get("reason") == "resolver", timeout=5)
    t.ok(moved, "a resolv.conf replaced by a rename is read again at once", d.log_text()[-1500:])
    t.ok((d.cli_json("show", RES_A) or {}).get("protected") is None,
         "the old nameserver is no longer protected")
    pbx.ami.send(e.attack(RES_A, 5))
    t.ok(pbx.mon.wait_added(RES_A, timeout=10) is not None,
         "and its next five failures ban it like any source")

    # A local process forging the kernel's "address deleted" to the daemon's rtnetlink socket
    # must not unprotect the host.
    port = rtnl_listener_port()
    t.ok(port is not None, "the daemon listens to rtnetlink address and route notifications",
         open("/proc/net/netlink").read())
    if port is not None:
        forge_deladdr(port, OWN6, socket.if_nametoindex(nb.pbx_if))
        time.sleep(0.3)
        j = d.cli_json("show", OWN6) or {}
        t.ok((j.get("protected") or {}).get("source") == "host",
             "a forged RTM_DELADDR from a local process is ignored", j)

    # An address added while the daemon runs is protected at once, and lets go when deleted.
    new_addr = "2001:db8:7::5"
    r = d.cli("ban", "2001:db8:7::/48", "--for", "1h")
    t.ok(r.returncode == 0, "a manual ban of 2001:db8:7::/48 before the host takes an address in it",
         r.stderr)
    subprocess.run(["ip", "addr", "add", f"{new_addr}/64", "dev", nb.pbx_if, "nodad"], check=True)
    ok = e.wait_until(lambda: ((d.cli_json("show", new_addr) or {}).get("protected") or {})
                      .get("source") == "host", timeout=5)
    t.ok(ok, "`ip addr add` makes the new address protected without a restart",
         d.log_text()[-1500:])
    t.ok(e.wait_until(lambda: "2001:db8:7::/48" not in (e.kernel_bans() or {}), timeout=5),
         "the ban that held the new address is lifted from the kernel", e.kernel_bans())
    t.ok("lifted the ban of 2001:db8:7::/48: 2001:db8:7::/48 holds 2001:db8:7::5" in d.log_text(),
         "and the log says why", d.log_text()[-1500:])
    pbx.ami.send(e.attack("2001:db8:7::9", 5))
    t.ok(pbx.mon.wait_added("2001:db8:7::9", timeout=10) is not None
         and "2001:db8:7::/64" not in (e.kernel_bans() or {}),
         "a source in the new address's /64 is banned alone", e.kernel_bans())
    subprocess.run(["ip", "addr", "del", f"{new_addr}/64", "dev", nb.pbx_if], check=True)
    ok = e.wait_until(lambda: (d.cli_json("show", new_addr) or {"protected": 1})
                      .get("protected") is None, timeout=5)
    t.ok(ok, "`ip addr del` ends the protection without a restart")
    pbx.ami.send(e.attack("2001:db8:7::10", 5))
    t.ok(pbx.mon.wait_added("2001:db8:7::", timeout=10) is not None,
         "and its /64 is an ordinary key again", e.kernel_bans())

    # The absolute rules: nobody, root with --force included.
    cases = [
        (["127.0.0.0/8", "--force"], "127.0.0.0/8 is protected (loopback): never banned, not "
                                     "even with --force"),
        (["0.0.0.0/1", "--force"], "0.0.0.0/1 is wider than /8, the widest ban allowed: nobody "
                                   "may ban it, not even with --force ([protect] min_prefix4"),
        (["128.0.0.0/1", "--force"], "the widest ban allowed"),
        ([OWN4, "--force"], f"{OWN4} is protected (own address on {nb.pbx_if}): never banned, "
                            "not even with --force; [protect] own_addresses = no"),
        (["2001:db8:1::/64", "--force"], f"holds {OWN6} (own address on {nb.pbx_if})"),
        (["::", "--force"], ":: is protected (unspecified)"),
        (["fe80::/64", "--force"], "fe80::/64 lies in fe80::/10 (link-local)"),
        (["ff02::1", "--force"], "ff02::1 lies in ff00::/8 (multicast)"),
        (["255.255.255.255"], "255.255.255.255 is protected (broadcast)"),
        (["2000::/8", "--force"], "[protect] min_prefix6"),
    ]
    for args, text in cases:
        r = d.cli("ban", *args)
        t.ok(r.returncode == 1 and text in r.stderr,
             f"`pbxguard ban {' '.join(args)}` is refused with its rule named, exit 1",
             f"exit {r.returncode}\n{r.stderr}")
    r = d.cli("--json", "ban", "127.0.0.0/8", "--force")
    try:
        j = json.loads(r.stdout or r.stderr)
    except ValueError:
        j = {}
    t.ok(r.returncode == 1 and j.get("rule") == "protected",
         "the JSON refusal names the rule for scripts", r.stdout + r.stderr)
    r = d.cli("ban", GW4, "--force", "--for", "10m")
    t.ok(r.returncode == 0, "--force still bans what only a softer rule protects (a gateway)",
         r.stderr)
    kb = e.kernel_bans() or {}
    t.ok(not any(k in kb for k in ("127.0.0.0/8", "0.0.0.0/1", "128.0.0.0/1", OWN4, "::",
                                   "fe80::/64", "ff02::1", "255.255.255.255")),
         "none of the refused prefixes reached the kernel", kb)
    j = d.cli_json("show", "fe80::1") or {}
    pr = j.get("protected") or {}
    t.ok(pr.get("reason") == "link-local" and pr.get("ignored") is True
         and pr.get("source") == "builtin", "show says why fe80::1 is never banned", j)
    t.ok(connect(OWN4, SVC_PORT) and connect(OWN6, SVC_PORT) and connect(GOOD6, SVC_PORT),
         "at the end the host still reaches itself and its neighbour")
    t.ok(d.alive(), "the daemon is alive after it all")

    # [protect] on reload: each source turned off, a narrower widest ban.
    with open(d.conf) as f:
        conf = f.read()
    with open(d.conf, "w") as f:
        f.write(conf.replace("[protect]\n", "[protect]\ngateways = no\nresolvers = no\n"
                             "own_addresses = no\nmin_prefix4 = 16\n"))
    r = d.cli("reload")
    t.ok(r.returncode == 0, "a reload turns gateways, resolvers and own addresses off",
         r.stdout + r.stderr)
    gone = e.wait_until(lambda: all((d.cli_json("show", a) or {"protected": 1}).get("protected")
                                    is None for a in (GW4_NEW, RES_B, OWN6)), timeout=5)
    t.ok(gone, "after it the gateway, the resolver and the host's address are no longer "
         "protected", [d.cli_json("show", a) for a in (GW4_NEW, RES_B, OWN6)])
    j = d.cli_json("show", "127.0.0.1") or {}
    t.eq((j.get("protected") or {}).get("reason"), "loopback", "loopback still is")
    r = d.cli("ban", "10.0.0.0/12")
    t.ok(r.returncode == 1 and "wider than /16" in r.stderr and "min_prefix4" in r.stderr,
         "and the new widest ban applies at once", r.stderr)
    with open(d.conf, "w") as f:
        f.write(conf)
    r = d.cli("reload")
    back = e.wait_until(lambda: all(((d.cli_json("show", a) or {}).get("protected") or {})
                                    .get("source") in ("gateway", "resolver", "host")
                                    for a in (GW4_NEW, RES_B, OWN6)), timeout=5)
    t.ok(r.returncode == 0 and back, "turned on again, each is read and protected again",
         [d.cli_json("show", a) for a in (GW4_NEW, RES_B, OWN6)])

    # An upgrade from a version that banned fe80::/64, loopback and the host's /64: the daemon
    # stopped, the bans still in the database and in the kernel (our table is adopted as is).
    t.eq(d.stop(), 0, "the daemon stops")
    now = int(time.time() * 1000)
    import sqlite3
    con = sqlite3.connect(d.db)
    for prefix, fam, ln, reason in (("fe80::/64", 6, 64, "threshold"),
                                    ("127.0.0.0/8", 4, 8, "manual"),
                                    ("2001:db8:1::/64", 6, 64, "threshold")):
        con.execute("INSERT INTO bans (prefix, family, len, start_ms, expires_ms, reason, origin) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'old')", (prefix, fam, ln, now, now + 3600000,
                                                         reason))
    con.commit()
    con.close()
    h.nft("add", "element", "inet", "pbxguard", "banned6", "{ fe80::, 2001:db8:1:: timeout 1h }")
    h.nft("add", "element", "inet", "pbxguard", "banned4_net", "{ 127.0.0.0/8 timeout 1h }")
    kb = e.kernel_bans() or {}
    t.ok(all(k in kb for k in ("fe80::/64", "2001:db8:1::/64", "127.0.0.0/8")),
         "the old bans are in the kernel before the start", kb)
    pbx.start()
    kb = e.kernel_bans() or {}
    t.ok(not any(k in kb for k in ("fe80::/64", "2001:db8:1::/64", "127.0.0.0/8")),
         "after the start none of them is in the kernel", kb)
    left = d.db_query("SELECT prefix FROM bans WHERE origin = 'old' AND ended_ms IS NULL")
    t.eq(left, [], "and the database has lifted them")
    log = d.log_text()
    t.ok("lifted the ban of fe80::/64: fe80::/64 lies in fe80::/10 (link-local)" in log
         and "lifted the ban of 127.0.0.0/8: 127.0.0.0/8 is protected (loopback)" in log
         and f"lifted the ban of 2001:db8:1::/64: 2001:db8:1::/64 holds {OWN6}" in log,
         "the log says why each one was lifted", log[-2500:])


if __name__ == "__main__":
    main()
