#!/usr/bin/python3
"""StatsD emitter over real UDP sockets: exactly the expected lines reach the server.

Runs tests/statsd-send (the real emitter, driven by a script) against UDP sockets bound on
127.0.0.1 and ::1 inside a private network namespace, and compares the datagrams received.
"""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
SEND = os.path.join(h.BUILD, "tests", "statsd-send")


class Server:
    """A UDP socket standing in for the StatsD server."""

    def __init__(self, family=socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        self.host = self.sock.getsockname()[0]
        self.port = self.sock.getsockname()[1]

    def datagrams(self, timeout=0.3, limit=10000):
        """Everything that arrives until the socket is quiet for timeout seconds (bounded)."""
        out = []
        self.sock.settimeout(timeout)
        while len(out) < limit:
            try:
                out.append(self.sock.recv(65536).decode())
            except socket.timeout:
                break
        return out

    def close(self):
        self.sock.close()


def send(server, script, *args):
    r = subprocess.run([SEND, "--host", server.host, "--port", str(server.port), *args],
                       input=script, capture_output=True, text=True, timeout=30)
    return r


t = h.Tap()

srv = Server()
r = send(srv, "failed PJSIP 198.51.100.23 UDP\nflush\n")
t.eq(srv.datagrams(), ["security.failed_auth.PJSIP.count:1|c\n"
                       "security.failed_auth.PJSIP.IPV4/UDP/198_51_100_23:1|c"],
     "a failure sends the two res_auth_stats meters in one datagram, port dropped, dots made _")

r = send(srv, "failed PJSIP 2001:db8:bad::66 UDP\nfailed AMI fe80::1 TCP eth0\n"
              "failed SIP 2001:db8::1 -\nflush\n", "--no-per-address")
t.eq(srv.datagrams(), ["security.failed_auth.PJSIP.count:1|c\n"
                       "security.failed_auth.AMI.count:1|c\n"
                       "security.failed_auth.SIP.count:1|c"],
     "with the per-address meter off only the .count meters are sent")

r = send(srv, "failed PJSIP 2001:db8:bad::66 UDP\nfailed AMI fe80::1 TCP eth0\n"
              "failed SIP 2001:db8::1 -\nflush\n")
t.eq(srv.datagrams(), ["security.failed_auth.PJSIP.count:1|c\n"
                       "security.failed_auth.PJSIP.IPV6/UDP/2001_db8_bad__66:1|c\n"
                       "security.failed_auth.AMI.count:1|c\n"
                       "security.failed_auth.AMI.IPV6/TCP/fe80__1_eth0:1|c\n"
                       "security.failed_auth.SIP.count:1|c\n"
                       "security.failed_auth.SIP.IPV6/2001_db8__1:1|c"],
     "IPv6 addresses carry no ':' (with and without transport, scoped link-local)")

r = send(srv, "failed a:b\\x7cc@d\\x20e\\x0a 192.0.2.1 UDP\nflush\n", "--no-per-address")
got = srv.datagrams()
t.eq(got, ["security.failed_auth.a_b_c_d_e_.count:1|c"],
     "a hostile service name arrives as one well-formed line")

r = send(srv, "failed PJSIP 192.0.2.1 TLS\nflush\n", "--type", "m", "--prefix", "asterisk")
t.eq(srv.datagrams(), ["asterisk.security.failed_auth.PJSIP.count:1|m\n"
                       "asterisk.security.failed_auth.PJSIP.IPV4/TLS/192_0_2_1:1|m"],
     "type m (as the original module sent) and a prefix apply to the res_auth_stats meters")

r = send(srv, "countby bans policy 1\ncountby unbans expired 2\ncountby events InvalidPassword 3\n"
              "gauge bans.active.ipv4 7\ngauge bans.active.ipv6 0\ncount ami.frames_malformed 1\n"
              "count ami.frames_oversized 1\ncount ami.reconnects 1\ncount nft.errors 1\n"
              "count db.errors 1\nflush\n")
t.eq(srv.datagrams(), ["pbxguard.bans.policy:1|c\npbxguard.unbans.expired:2|c\n"
                       "pbxguard.events.InvalidPassword:3|c\npbxguard.bans.active.ipv4:7|g\n"
                       "pbxguard.bans.active.ipv6:0|g\npbxguard.ami.frames_malformed:1|c\n"
                       "pbxguard.ami.frames_oversized:1|c\npbxguard.ami.reconnects:1|c\n"
                       "pbxguard.nft.errors:1|c\npbxguard.db.errors:1|c"],
     "the daemon's own meters go under the default own prefix pbxguard.")

r = send(srv, "count db.errors 1\nflush\n", "--own-prefix", "pg.host1")
t.eq(srv.datagrams(), ["pg.host1.db.errors:1|c"], "the own prefix is configurable")

# Three addresses, limit two: the third address gets no meter of its own and is reported.
r = send(srv, "failed PJSIP 192.0.2.1 UDP\nfailed PJSIP 192.0.2.2 UDP\nfailed PJSIP 192.0.2.3 UDP\n"
              "failed PJSIP 192.0.2.1 UDP\nflush\n", "--limit", "2", "--interval-ms", "60000")
got = srv.datagrams()
lines = "\n".join(got).split("\n")
t.eq(lines.count("security.failed_auth.PJSIP.count:1|c"), 4,
     "every failure counts in .count whatever the per-address limit")
t.eq(sorted(x for x in lines if "/" in x),
     ["security.failed_auth.PJSIP.IPV4/UDP/192_0_2_1:1|c",
      "security.failed_auth.PJSIP.IPV4/UDP/192_0_2_1:1|c",
      "security.failed_auth.PJSIP.IPV4/UDP/192_0_2_2:1|c"],
     "only the first N distinct addresses of the interval get a per-address meter")
t.ok("pbxguard.statsd.suppressed:1|c" in lines, "the suppressed per-address line is reported",
     lines)

r = send(srv, "failed PJSIP 192.0.2.1 UDP\nfailed PJSIP 192.0.2.2 UDP\nflush\nsleep 250\n"
              "failed PJSIP 192.0.2.2 UDP\nflush\n", "--limit", "1", "--interval-ms", "200")
lines = "\n".join(srv.datagrams()).split("\n")
t.ok("security.failed_auth.PJSIP.IPV4/UDP/192_0_2_2:1|c" in lines,
     "the limit starts afresh at the next flush interval", lines)

# Payload size: 60 failures with the per-address meter make 120 lines; no datagram over 200.
r = send(srv, "".join(f"failed PJSIP 192.0.2.{i} UDP\n" for i in range(1, 61)) + "flush\n",
         "--max-payload", "200")
got = srv.datagrams()
t.ok(len(got) > 1 and all(len(d.encode()) <= 200 for d in got),
     "lines are packed into several datagrams, none over max_payload",
     [len(d) for d in got])
lines = "\n".join(got).split("\n")
t.eq(len(lines), 120, "no line is lost or split at a datagram boundary")
t.ok(all(ln.endswith("|c") and ln.count(":") == 1 for ln in lines),
     "every line is whole")

srv6 = Server(socket.AF_INET6)
r = send(srv6, "failed PJSIP 2001:db8::7 WSS\nflush\n")
t.eq(srv6.datagrams(), ["security.failed_auth.PJSIP.count:1|c\n"
                        "security.failed_auth.PJSIP.IPV6/WSS/2001_db8__7:1|c"],
     "the server can be reached over IPv6 (::1)")
srv6.close()

r = send(srv, "stats\n")
t.ok(r.returncode == 0 and "datagrams_sent=0" in r.stdout, "stats are readable", r.stdout)

srv.close()
t.done()
