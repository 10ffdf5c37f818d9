#!/usr/bin/python3
"""End to end: an attack from many addresses, v4 and v6, replayed by the scripted AMI server,
reaches the daemon, and exactly the sources over the threshold die in the kernel.

Topology: this test's private namespace is the PBX (daemon, AMI server, StatsD sink, a TCP
service on :5060); two attacker namespaces joined by veth hold documentation addresses:
  a1: 192.0.2.0/24 and 2001:db8:1::/64, the attackers' IPv6 addresses in 2001:db8:1:1::/64 on
      the same link (the PBX's own /64 is never banned as a whole)
  a2: 198.51.100.0/24 and 2001:db8:2::/64 (198.51.100.192/26 and 2001:db8:2::/64 whitelisted)
The CLI (`pbxguard list --json`), the report (`pbxguard report --format json`), the database
(read-only) and the kernel set must tell the same story.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
import e2elib as e  # noqa: E402

MAXRETRY = 5
OVER4 = ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"]
UNDER4 = "192.0.2.15"          # maxretry-1 failures: counted, not banned
BENIGN4 = "192.0.2.16"         # only SuccessfulAuth / ChallengeSent: weighs nothing
V6_A, V6_B = "2001:db8:1:1::10", "2001:db8:1:1::11"   # one /64: 3 + 2 failures = banned together
V6_PREFIX = "2001:db8:1:1::/64"
WL4, WL6 = "198.51.100.200", "2001:db8:2::200"    # whitelisted, 20 failures each
EXPECTED = set(OVER4) | {V6_PREFIX}
EVENTS = ["ChallengeResponseFailed", "InvalidPassword", "InvalidAccountID", "FailedACL",
          "ChallengeResponseFailed"]


def main():
    e.exit_on_sigterm()
    h.setup_loopback()
    t = h.Tap()
    a1 = a2 = None
    with h.TempDir() as tmp:
        ami = e.AmiServer().start()
        statsd = e.UdpSink()
        mon = e.SetMonitor()
        svc4 = e.TcpListener("0.0.0.0", 5060)
        svc6 = e.TcpListener("::", 5061)
        d = None
        try:
            a1 = e.Attacker("a1", "192.0.2.0/24", "2001:db8:1::/64",
                            hosts=OVER4 + [UNDER4, BENIGN4, V6_A, V6_B], onlink=[V6_PREFIX])
            a2 = e.Attacker("a2", "198.51.100.0/24", "2001:db8:2::/64", hosts=[WL4, WL6])
            d = e.Daemon(tmp, ami.port, auth="md5", maxretry=MAXRETRY, statsd_port=statsd.port,
                         whitelist=["198.51.100.192/26", "2001:db8:2::/64"])
            d.start()
            t.ok(ami.wait_login(), "the daemon logs in to the AMI server with MD5",
                 d.log_text()[-2000:])
            t.ok(all(a1.connect(ip, a1.pbx4, 5060) for ip in OVER4)
                 and a1.connect(V6_A, a1.pbx6, 5061),
                 "before the attack every attacker reaches the PBX")
            run(t, d, ami, statsd, mon, a1, a2)
        finally:
            rc = d.stop() if d else None
            if d:
                t.ok(rc == 0, "the daemon stops cleanly on SIGTERM after the attack",
                     f"exit status {rc}\n" + d.log_text()[-1500:])
            for x in (svc4, svc6, statsd, mon):
                x.close()
            ami.stop()
            for a in (a1, a2):
                if a:
                    a.close()
    t.done()


def run(t, d, ami, statsd, mon, a1, a2):
    burst = b""
    for i, ip in enumerate(OVER4):
        burst += b"".join(e.ami_event(EVENTS[(i + k) % len(EVENTS)], ip, port=40000 + k)
                          for k in range(MAXRETRY))
    burst += e.attack(UNDER4, MAXRETRY - 1)
    burst += e.attack(BENIGN4, 10, name="ChallengeSent") + e.attack(BENIGN4, 3, name="SuccessfulAuth")
    burst += e.attack(V6_A, 3, name="InvalidPassword") + e.attack(V6_B, 2, name="InvalidPassword")
    burst += e.attack(WL4, 20) + e.attack(WL6, 20)
    # AMI failures (probing the manager port) count as well: one more banned address.
    burst += e.attack("192.0.2.17", MAXRETRY, name="InvalidPassword", service="AMI")
    expected = EXPECTED | {"192.0.2.17"}
    ami.send(burst)

    banned = all(mon.wait_added(p.split("/")[0], timeout=10) for p in expected)
    t.ok(banned, "every source over the threshold is banned in the kernel",
         f"seen: {sorted(mon.added)}\n{d.log_text()[-2000:]}")
    # A last, later ban proves everything sent before it was handled.
    ami.send(e.attack("192.0.2.18", MAXRETRY))
    mon.wait_added("192.0.2.18", timeout=10)
    expected.add("192.0.2.18")

    kb = e.kernel_bans() or {}
    t.eq(set(kb), expected, "the kernel sets hold exactly those sources (v4 addresses, the v6 /64)")
    t.ok(all(kb.get(p) and 3500 <= kb[p] <= 3600 for p in expected),
         "each kernel element carries the first-offence ban time (1h)", kb)
    t.ok(not any(x in kb for x in (UNDER4, BENIGN4, WL4, WL6, "2001:db8:2::/64")),
         "no source under the threshold, benign or whitelisted is banned")

    db = d.active_bans_db()
    t.eq(set(db), expected, "the database's active bans are the kernel's")

    lst = d.cli_json("list")
    got = {b.get("prefix") for b in (lst or {}).get("bans", [])} if lst else None
    t.eq(got, expected, "`pbxguard list --json` lists the same bans")

    # Made at once: the report's period ends at "now" rounded up to the second, so the
    # attack that just happened is in it.
    r = subprocess.run([d.cli_binary, "report", "--db", d.db, "--since", "1h", "--format", "json"],
                       capture_output=True, text=True, timeout=30)
    try:
        rep = json.loads(r.stdout)
    except ValueError:
        rep = None
    counted = len(OVER4) * MAXRETRY + (MAXRETRY - 1) + 5 + 40 + MAXRETRY * 2
    db_failures = d.db_query("SELECT count(*) FROM failures")[0][0]
    t.eq(db_failures, counted, "the database recorded every weighing failure, whitelisted included")
    if t.ok(rep is not None, "`pbxguard report --format json` reads the live database",
            r.stderr):
        t.eq(rep["totals"]["failures"], db_failures, "the report counts the database's failures")
        t.eq(rep["totals"]["active"], len(expected), "the report counts the active bans")
        active = {s["source"] for s in rep["top_sources"] if s.get("ban") == "active"}
        t.ok(active <= expected and len(active) > 0,
             "the report's top sources marked banned are banned", rep["top_sources"])

    t.ok(not any(a1.connect(ip, a1.pbx4, 5060, timeout=0.5) for ip in OVER4),
         "a banned IPv4 attacker's TCP connection is dropped")
    t.ok(not a1.connect(V6_B, a1.pbx6, 5061, timeout=0.5)
         and not a1.connect(V6_A, a1.pbx6, 5061, timeout=0.5),
         "both IPv6 attackers in the banned /64 are dropped")
    t.ok(a1.connect(UNDER4, a1.pbx4, 5060), "a source under the threshold still connects")
    t.ok(a2.connect(WL4, a2.pbx4, 5060) and a2.connect(WL6, a2.pbx6, 5061),
         "whitelisted sources still connect, v4 and v6")

    ok = statsd.wait(lambda s: s.total("security.failed_auth.PJSIP.count") >= 42, timeout=5)
    t.ok(ok, "StatsD receives security.failed_auth.PJSIP.count for the PJSIP failures",
         statsd.lines[-20:])
    t.ok(any(".failed_auth.PJSIP.IPV4/UDP/192_0_2_10" in x or "IPV4/UDP/192_0_2_10" in x
             for x in statsd.lines),
         "StatsD receives the per-address meter in res_auth_stats form", statsd.lines[-20:])
    t.ok(any(x.startswith("pbxguard.bans") for x in statsd.lines),
         "StatsD receives the daemon's own ban meters", statsd.lines[-20:])

    st = d.cli_json("status")
    t.ok(st is not None, "the daemon answers `status` after the attack", d.log_text()[-2000:])
    t.ok(d.alive(), "the daemon is alive after the attack")


if __name__ == "__main__":
    main()
