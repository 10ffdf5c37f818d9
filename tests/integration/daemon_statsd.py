#!/usr/bin/python3
"""StatsD from the whole daemon: the scripted AMI peer feeds pbxguardd, and what it sends is
caught by a real UDP socket (exact lines), then computed by a real StatsD server (etsy's, from
npm), then thrown at a blackhole (bans still land, memory stays flat)."""
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import statsd_helper as sh  # noqa: E402

install_error = sh.install_statsd() if os.geteuid() == 0 else None
h.in_private_netns()
h.setup_loopback()
from amipeer import AmiPeer  # noqa: E402

t = h.Tap()


def config(tmp, peer, host, port, extra=None):
    o = {
        ("ami:local", "port"): str(peer.port),
        ("ami:local", "secret"): "s3cret",
        ("ami:local", "username"): "pbxguard",
        ("statsd", "enabled"): "yes",
        ("statsd", "host"): host,
        ("statsd", "port"): str(port),
    }
    o.update(extra or {})
    return h.make_config(tmp, o)


def attack(peer):
    peer.send_garbage()  # one frame without a colon: malformed
    peer.send_big_line()  # one 1 MB line: over the line bound
    peer.send_events("InvalidPassword", "203.0.113.7", count=5)
    peer.send_events("ChallengeResponseFailed", "2001:db8::66", count=2, service="PJSIP")
    peer.send_events("ChallengeSent", "2001:db8::66", count=3, service="PJSIP")


EXPECTED = {
    "security.failed_auth.AMI.count:1|c": 5,
    "security.failed_auth.AMI.IPV4/TCP/203_0_113_7:1|c": 5,
    "security.failed_auth.PJSIP.count:1|c": 2,
    "security.failed_auth.PJSIP.IPV6/UDP/2001_db8__66:1|c": 2,
    "pbxguard.events.InvalidPassword:1|c": 5,
    "pbxguard.events.ChallengeResponseFailed:1|c": 2,
    "pbxguard.events.ChallengeSent:1|c": 3,
    "pbxguard.bans.threshold:1|c": 1,
    "pbxguard.ami.frames_malformed:1|c": 1,
    "pbxguard.ami.frames_oversized:1|c": 1,
}


# Gauges sent together every 10 s (the first time at start-up): waited for before checking.
WAITED_GAUGES = ("pbxguard.bans.active.ipv6:", "pbxguard.loop.turn_max_us:",
                 "pbxguard.loop.turn_p99_us:")


def rss_kb(pid):
    return h.proc_status(pid, "VmRSS") or 0


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    # 1. A plain UDP socket gets exactly the expected lines.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    d = h.Daemon(config(tmp, peer, "127.0.0.1", sock.getsockname()[1]))
    t.ok(peer.wait_logged_in(), "the daemon logs in")
    attack(peer)
    lines = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            if all(lines.count(k) >= n for k, n in EXPECTED.items()) and \
                    all(any(ln.startswith(g) for ln in lines) for g in WAITED_GAUGES):
                break
            continue
        if len(data) > 1432:
            t.ok(False, f"a datagram fits the default payload ({len(data)} bytes)")
        lines += data.decode().split("\n")
    for line, n in EXPECTED.items():
        t.eq(lines.count(line), n, f"{line} arrives {n} times")
    gauges = [ln for ln in lines if ln.startswith("pbxguard.bans.active.")]
    t.ok(any(re.fullmatch(r"pbxguard\.bans\.active\.ipv4:\d+\|g", g) for g in gauges) and
         any(re.fullmatch(r"pbxguard\.bans\.active\.ipv6:\d+\|g", g) for g in gauges),
         "the active-bans gauges arrive, by family", gauges)
    turns = {g.split(":")[0]: g for g in lines if g.startswith("pbxguard.loop.turn_")}
    t.ok(set(turns) == {"pbxguard.loop.turn_max_us", "pbxguard.loop.turn_p99_us"} and
         all(re.fullmatch(r"pbxguard\.loop\.turn_(max|p99)_us:\d+\|g", g)
             for g in turns.values()),
         "the loop's longest turn and its 99th percentile arrive as gauges (us)", turns)
    t.ok(not any(":" in ln.split(":", 1)[0] or " " in ln for ln in lines if ln),
         "no metric name carries a ':' or a space")
    t.ok(not any("ChallengeSent" in ln and "failed_auth" in ln for ln in lines),
         "benign ChallengeSent events are not failed_auth meters")
    d.stop()
    sock.close()

    # 2. A real StatsD server computes the counters.
    if install_error:
        t.skip("etsy statsd computes the daemon's counters", install_error)
    else:
        with sh.StatsdServer(tmp) as srv:
            srv.wait_up()
            d = h.Daemon(config(tmp, peer, srv.host, srv.port))
            t.ok(peer.wait_logins(2), "the daemon logs in again")
            peer.send_events("InvalidPassword", "198.51.100.23", count=5)
            want = {
                "security.failed_auth.AMI.count": 5,
                # etsy statsd turns '/' into '-' in names, as res_auth_stats users know.
                "security.failed_auth.AMI.IPV4-TCP-198_51_100_23": 5,
                "pbxguard.bans.threshold": 1,
            }
            counters, _ = srv.totals(lambda c, g: all(c.get(k, 0) >= v for k, v in want.items()))
            for k, v in want.items():
                t.eq(counters.get(k), v, f"statsd computed {k} = {v}")
            d.stop()

    # 3. A blackholed server: a flood from 2000 addresses still bans on time, memory stays flat.
    subprocess.run(["ip", "route", "add", "blackhole", "192.0.2.0/24"], capture_output=True)
    d = h.Daemon(config(tmp, peer, "192.0.2.1", 8125))
    t.ok(peer.wait_logins(3), "the daemon logs in with a blackholed StatsD server")
    peer.send_events("InvalidPassword", "203.0.113.99", count=1)
    time.sleep(0.3)
    before = rss_kb(d.pid)
    for i in range(2000):
        peer.send_event("InvalidAccountID", f"198.18.{i // 250}.{i % 250 + 1}")
    peer.send_events("InvalidPassword", "203.0.113.99", count=4)
    ok = h.wait_for(lambda: "203.0.113.99" in (h.nft_set_elements("banned4") or {}), timeout=10)
    t.ok(ok, "a ban still lands while every StatsD datagram is dropped")
    after = rss_kb(d.pid)
    if h.SANITIZED:
        t.skip("the daemon's memory stays flat", "ASan's quarantine keeps freed memory")
    else:
        t.ok(after - before < 4096, f"the daemon's memory stays flat ({before} -> {after} kB)")
    t.ok(d.running(), "the daemon is still running")
    d.stop()
t.done()
