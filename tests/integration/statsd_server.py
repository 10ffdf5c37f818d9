#!/usr/bin/python3
"""The emitter against a real StatsD server (etsy's statsd, from npm): the counters StatsD
computes at its flush are the ones the res_auth_stats dashboards expect.

StatsD itself rewrites '/' in a key to '-', so IPV4/UDP/1_2_3_4 is stored as IPV4-UDP-1_2_3_4.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import statsd_helper as sh  # noqa: E402

h.require_root()
if not os.environ.get("PBXGUARD_NETNS"):
    # The registry is reachable only from the host's namespace: install first, then re-exec.
    why = sh.install_statsd()
    if why:
        print("not ok 1 - the statsd npm package is installed")
        print("# " + why.replace("\n", "\n# "))
        print("1..1")
        sys.exit(1)
h.in_private_netns()
h.setup_loopback()

t = h.Tap()

SCRIPT = (
    "failed PJSIP 198.51.100.23 UDP\n" * 5
    + "failed AMI 2001:db8:bad::66 TCP\n" * 3
    + "failed a:b\\x7cc@d\\x20e\\x0a 192.0.2.9 UDP\n"
    + "countby bans policy 1\ncountby bans policy 1\ncount ami.reconnects 1\n"
    + "gauge bans.active.ipv4 7\ngauge bans.active.ipv6 2\nflush\n"
)

WANT = {
    "security.failed_auth.PJSIP.count": 5,
    "security.failed_auth.PJSIP.IPV4-UDP-198_51_100_23": 5,
    "security.failed_auth.AMI.count": 3,
    "security.failed_auth.AMI.IPV6-TCP-2001_db8_bad__66": 3,
    "security.failed_auth.a_b_c_d_e_.count": 1,
    "security.failed_auth.a_b_c_d_e_.IPV4-UDP-192_0_2_9": 1,
    "pbxguard.bans.policy": 2,
    "pbxguard.ami.reconnects": 1,
}


def run(label, ipv6, *args, prefix=""):
    with h.TempDir() as tmp, sh.StatsdServer(tmp, ipv6=ipv6) as srv:
        if not t.ok(srv.wait_up(), f"{label}: statsd is up", "\n".join(srv.log)):
            return
        r = sh.send(srv.host, srv.port, SCRIPT, *args)
        t.ok(r.returncode == 0, f"{label}: statsd-send ran", r.stderr)
        # The prefix is for the res_auth_stats names only; the own meters have own_prefix.
        want = {(prefix + k if k.startswith("security.") else k): v for k, v in WANT.items()}
        counters, gauges = srv.totals(
            lambda c, g: all(c.get(k, 0) >= v for k, v in want.items()))
        ours = {k: v for k, v in counters.items() if not k.startswith("statsd.")}
        t.diag(f"{label}: statsd computed {ours} gauges {gauges}")
        t.eq({k: counters.get(k) for k in want}, want,
             f"{label}: statsd's counters at its flush are the expected ones")
        t.eq(set(ours), set(want), f"{label}: and no other counter was created")
        t.eq((gauges.get("pbxguard.bans.active.ipv4"), gauges.get("pbxguard.bans.active.ipv6")),
             (7, 2), f"{label}: the active-bans gauges hold their values")
        t.eq(counters.get("statsd.bad_lines_seen", 0), 0,
             f"{label}: statsd saw no bad line, hostile service included")


run("IPv4, type c", False)
run("IPv6, type m, prefix", True, "--type", "m", "--prefix", "asterisk", prefix="asterisk.")
t.done()
