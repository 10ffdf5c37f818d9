#!/usr/bin/python3
"""AMI sessions (daemon/ami_session.c) against the scripted AMI peer, through tests/tools/ami-tap:
logins, several servers, and recovery from every misbehaviour the peer can act out."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from amipeer import AmiPeer  # noqa: E402

h.in_private_netns()
h.setup_loopback()

TAP = os.path.join(h.BUILD, "tests", "ami-tap")


def spec(peer, name="local", auth="md5", **kw):
    opts = dict(name=name, host=peer.host, port=peer.port, user=peer.username,
                secret=peer.secret, auth=auth, ping=20000, ping_timeout=10000,
                connect_timeout=2000, backoff_min=100, backoff_max=800)
    opts.update(kw)
    return ",".join(f"{k}={v}" for k, v in opts.items())


class AmiTap:
    """ami-tap running in the background; stdout JSON lines and stderr log lines collected."""

    def __init__(self, *specs, quiet_ms=None):
        args = [TAP]
        for s in specs:
            args += [s] if s.startswith("-c") else ["-a", s]
        if quiet_ms:
            args += ["-q", str(quiet_ms)]
        self.events, self.stats, self.log = [], [], []
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        self.threads = [threading.Thread(target=self._read_out, daemon=True),
                        threading.Thread(target=self._read_err, daemon=True)]
        for t in self.threads:
            t.start()

    def _read_out(self):
        for line in self.p.stdout:
            j = json.loads(line)
            (self.stats if "stats" in j else self.events).append(j)

    def _read_err(self):
        for line in self.p.stderr:
            self.log.append(line.rstrip("\n"))

    def wait_events(self, n, timeout=5.0):
        return h.wait_for(lambda: len(self.events) >= n, timeout)

    def get_stats(self, timeout=3.0):
        # SIGUSR1 before ami-tap has routed it through its loop would kill it.
        h.wait_for(lambda: self.logged("ami-tap: ready"), timeout)
        before = len(self.stats)
        self.p.send_signal(signal.SIGUSR1)
        h.wait_for(lambda: len(self.stats) > before, timeout)
        return self.stats[-1]["stats"] if len(self.stats) > before else {}

    def logged(self, text):
        return [ln for ln in self.log if text in ln]

    def stop(self):
        rc, _ = h.stop_process(self.p)
        for t in self.threads:
            t.join(timeout=2)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def attackers(tap):
    return [(e["type"], e["remote"]["addr"]) for e in tap.events if e["type"] != "SuccessfulAuth"]


t = h.Tap()


def check_clean_exit(tap, what):
    rc = tap.stop()
    t.eq(rc, 0, f"{what}: ami-tap exits cleanly (no crash, no leak under ASan)")
    bad = [ln for ln in tap.log if "ERROR: AddressSanitizer" in ln or "runtime error" in ln]
    if bad:
        t.ok(False, f"{what}: sanitizer report", "\n".join(bad[:20]))


# --- logins ---

with AmiPeer() as peer, AmiTap(spec(peer, auth="plain")) as tap:
    t.ok(peer.wait_logins(1), "plain login is accepted by the peer")
    t.eq(peer.logins[0]["auth"], "plain", "plain login sends Secret")
    t.eq(peer.logins[0]["events"], "security", "login asks for the security class only")
    t.ok(tap.wait_events(1), "our own SuccessfulAuth comes back as an event")
    peer.send_event("InvalidPassword", "203.0.113.7")
    t.ok(tap.wait_events(2), "a replayed InvalidPassword is delivered")
    e = tap.events[-1]
    t.eq((e["type"], e["service"], e["remote"]["addr"], e["source"]),
         ("InvalidPassword", "AMI", "203.0.113.7", "ami:local"),
         "the event carries the rewritten remote address and the source name")
    st = tap.get_stats()["ami:local"]
    t.eq((st["state"], st["version"], st["peer"]), ("up", "9.0.0", "127.0.0.1"),
         "status: up, banner version, connected peer address")

with AmiPeer() as peer, AmiTap(spec(peer, port=1)) as tap:
    st = tap.get_stats()["ami:local"]
    t.eq(st["peer"], "127.0.0.1", "a numeric host is known as the peer before any connection")
    check_clean_exit(tap, "plain")

with AmiPeer(secret="md5-secret") as peer, AmiTap(spec(peer, auth="md5")) as tap:
    t.ok(peer.wait_logins(1), "MD5 login: the peer accepts the key computed from its challenge")
    t.eq([a for a in peer.actions[:2]], ["challenge", "login"], "MD5 login asks for a challenge first")
    t.eq(peer.logins[0]["auth"], "md5", "MD5 login sends AuthType MD5 and no secret")
    peer.send_events("ChallengeResponseFailed", "2001:db8:bad::66", 5, service="PJSIP")
    t.ok(tap.wait_events(6), "IPv6 attacker events delivered")
    t.eq(attackers(tap), [("ChallengeResponseFailed", "2001:db8:bad::66")] * 5,
         "five PJSIP ChallengeResponseFailed from the IPv6 address")
    check_clean_exit(tap, "md5")

with AmiPeer(host="::1") as peer, AmiTap(spec(peer, host="::1")) as tap:
    t.ok(peer.wait_logins(1), "connects to an IPv6 AMI address")
    st = tap.get_stats()["ami:local"]
    t.eq(st["peer"], "::1", "peer address is the IPv6 one")
    tap.stop()

with AmiPeer() as peer, AmiTap(spec(peer, host="localhost")) as tap:
    t.ok(peer.wait_logins(1), "connects to a host name (resolved without blocking the loop)")
    tap.stop()

with AmiPeer(secret="right") as peer, AmiTap(spec(peer, secret="wrong", backoff_max=1500)) as tap:
    t.ok(peer.wait_logins(1, ok=False), "a wrong secret is tried")
    # The attempts of the 3 s after the first one, by the peer's own arrival times.
    first = peer.logins[0]["time"]
    h.wait_for(lambda: time.monotonic() >= first + 3.0, timeout=4.0)
    n = len([x for x in peer.logins if x["time"] <= first + 3.0])
    t.ok(1 <= n <= 4, "a refused login is retried slowly (at backoff_max, not backoff_min)",
         f"{n} attempts in 3 s")
    t.eq(len(tap.logged("refused")), 1, "the refused login is logged once, not per attempt")
    t.ok(tap.logged("check username and secret"), "the log line says what to fix")
    peer.secret = "wrong"
    t.ok(peer.wait_logins(1, timeout=4.0), "logs in once the secret matches")
    t.ok(h.wait_for(lambda: tap.logged("after"), 2.0), "the recovery is logged with the attempt count")
    check_clean_exit(tap, "wrong secret")

# --- several servers ---

with AmiPeer() as p1, AmiPeer(host="::1") as p2, \
        AmiTap(spec(p1, name="one"), spec(p2, name="two", auth="plain")) as tap:
    t.ok(p1.wait_logins(1) and p2.wait_logins(1), "two AMI servers at once, both logged in")
    p1.send_event("InvalidAccountID", "198.51.100.1", service="PJSIP")
    p2.send_event("InvalidAccountID", "198.51.100.2", service="PJSIP")
    t.ok(tap.wait_events(4), "events from both servers")
    got = sorted((e["source"], e["remote"]["addr"]) for e in tap.events
                 if e["type"] == "InvalidAccountID")
    t.eq(got, [("ami:one", "198.51.100.1"), ("ami:two", "198.51.100.2")],
         "each event names the server it came from")
    p1.stall()
    p2.send_event("InvalidPassword", "198.51.100.3")
    t.ok(h.wait_for(lambda: any(e["remote"]["addr"] == "198.51.100.3" for e in tap.events), 3),
         "a stalled server does not hold up the other one")
    p1.unstall()
    check_clean_exit(tap, "two servers")

# --- misbehaviour ---

with AmiPeer() as peer, AmiTap(spec(peer)) as tap:
    peer.wait_logins(1)
    peer.drop()
    t.ok(peer.wait_logins(2, timeout=4), "reconnects after the peer drops the connection")
    peer.wait_logged_in()
    peer.send_event("InvalidPassword", "192.0.2.10")
    t.ok(h.wait_for(lambda: ("InvalidPassword", "192.0.2.10") in attackers(tap), 3),
         "events flow again after the reconnect")
    t.eq(len(tap.logged("lost")), 1, "the lost connection is logged once")
    t.ok(tap.get_stats()["ami:local"]["reconnects"] >= 1, "reconnect counted")
    check_clean_exit(tap, "drop")

with AmiPeer() as peer, AmiTap(spec(peer, backoff_min=50, backoff_max=1600)) as tap:
    # Drop every session at once: the backoff doubles (50, 100, ... 1600 ms).
    for i in range(1, 7):
        peer.wait_logins(i, timeout=5)
        peer.drop()
    peer.wait_logins(7, timeout=5)
    t0 = time.monotonic()
    peer.drop()
    peer.wait_logins(8, timeout=5)
    flapping_gap = time.monotonic() - t0
    t.ok(flapping_gap >= 0.6, "sessions dropped at once keep doubling the backoff",
         f"{flapping_gap:.2f} s")
    # Up longer than backoff_max since the last login: healthy.
    h.wait_for(lambda: time.monotonic() - peer.logins[-1]["time"] >= 1.8, timeout=3.0)
    t0 = time.monotonic()
    peer.drop()
    peer.wait_logins(9, timeout=5)
    healthy_gap = time.monotonic() - t0
    t.ok(healthy_gap < flapping_gap / 2, "a healthy session resets the backoff to its minimum",
         f"{healthy_gap:.2f} s after healthy vs {flapping_gap:.2f} s while flapping")
    check_clean_exit(tap, "backoff reset")

with AmiPeer() as peer, AmiTap(spec(peer, backoff_max=1000)) as tap:
    peer.wait_logins(1)
    t0 = time.monotonic()
    peer.restart(down=1.5)
    ok = peer.wait_logins(2, timeout=5)
    dt = time.monotonic() - t0
    t.ok(ok, "reconnects after the peer restarts (port closed 1.5 s)")
    t.ok(dt < 1.5 + 1.0 + 1.5, "the reconnect comes within the backoff (max 1 s) of the restart",
         f"{dt:.2f} s")
    t.ok(tap.logged("cannot connect"), "the refused reconnect is logged")
    t.ok(len(tap.logged("cannot connect")) == 1, "...once, not per attempt")
    check_clean_exit(tap, "restart")

with AmiPeer() as peer, AmiTap(spec(peer)) as tap:
    peer.byte_at_a_time = True
    t.ok(peer.wait_logins(1, timeout=8), "logs in when the peer writes one byte at a time")
    t.ok(tap.wait_events(1, timeout=5), "an event written one byte at a time arrives whole")
    peer.send_event("InvalidPassword", "192.0.2.11")
    t.ok(h.wait_for(lambda: ("InvalidPassword", "192.0.2.11") in attackers(tap), 5),
         "a replayed event written one byte at a time arrives whole")
    check_clean_exit(tap, "byte at a time")

with AmiPeer() as peer, AmiTap(spec(peer, ping=300, ping_timeout=300)) as tap:
    peer.wait_logins(1)
    t.ok(h.wait_for(lambda: peer.pings >= 1, 2), "keepalive Ping is sent")
    peer.stall()
    t.ok(h.wait_for(lambda: tap.logged("keepalive"), 3), "a stalled peer is detected by the keepalive")
    peer.unstall()
    t.ok(peer.wait_logins(2, timeout=4), "and the session reconnects")
    check_clean_exit(tap, "stall")

with AmiPeer() as peer, AmiTap(spec(peer)) as tap:
    peer.wait_logged_in()
    peer.send_garbage()
    peer.send_event("InvalidPassword", "192.0.2.12")
    t.ok(h.wait_for(lambda: ("InvalidPassword", "192.0.2.12") in attackers(tap), 3),
         "garbage is skipped and the next event still arrives")
    st = tap.get_stats()["ami:local"]
    t.ok(st["frames_discarded"] >= 1, "the garbage frame is counted", st)
    t.eq(st["reconnects"], 0, "garbage does not cost the connection")
    peer.send_big_line()
    peer.send_event("InvalidPassword", "192.0.2.13")
    t.ok(h.wait_for(lambda: ("InvalidPassword", "192.0.2.13") in attackers(tap), 5),
         "a 1 MB line is discarded and the next event still arrives")
    st = tap.get_stats()["ami:local"]
    t.ok(st["frames_discarded"] >= 2, "the 1 MB frame is counted", st)
    check_clean_exit(tap, "garbage")

with AmiPeer() as peer, AmiTap(spec(peer)) as tap:
    peer.wait_logged_in()
    peer.send_shutdown()
    t.ok(peer.wait_logins(2, timeout=4), "a Shutdown event makes the session reconnect")
    check_clean_exit(tap, "shutdown")

with AmiPeer(banner="SSH-2.0-OpenSSH_9.2") as peer, AmiTap(spec(peer)) as tap:
    t.ok(h.wait_for(lambda: tap.logged("not an Asterisk manager interface"), 3),
         "a wrong banner is refused and logged")
    t.eq(len(peer.logins), 0, "no credentials are sent to something that is not AMI")
    check_clean_exit(tap, "banner")

with AmiPeer(own_auth_event=False) as peer, AmiTap(spec(peer), quiet_ms=500) as tap:
    peer.wait_logins(1)
    t.ok(h.wait_for(lambda: tap.logged("read = security"), 3),
         "no security event after login: warns that the user probably lacks read = security")
    check_clean_exit(tap, "quiet")

# Sessions from a real pbxguard.conf (config_load), a secret_file among them.
with AmiPeer(secret="from-file") as p1, AmiPeer(host="::1", secret="inline") as p2, \
        h.TempDir() as d:
    with open(os.path.join(d, "secret"), "w") as f:
        f.write("from-file\n")
    os.chmod(os.path.join(d, "secret"), 0o600)
    conf = os.path.join(d, "pbxguard.conf")
    with open(conf, "w") as f:
        f.write(f"[ami:one]\nhost = 127.0.0.1\nport = {p1.port}\nusername = guard\n"
                f"secret_file = {d}/secret\nauth = md5\n\n"
                f"[ami:two]\nhost = ::1\nport = {p2.port}\nusername = guard\n"
                f"secret = inline\nauth = plain\nbackoff_min = 1s\n")
    os.chmod(conf, 0o600)  # it holds an inline secret
    tap = AmiTap(f"-c{conf}")
    t.ok(p1.wait_logins(1) and p2.wait_logins(1),
         "sessions start from [ami:NAME] sections of pbxguard.conf")
    st = tap.get_stats()
    t.eq(sorted(st), ["ami:one", "ami:two"], "one session per [ami:NAME] section")
    check_clean_exit(tap, "config")

# Nothing listening at all.
with AmiTap("name=none,host=127.0.0.1,port=1,user=u,secret=s,backoff_min=50,backoff_max=200") as tap:
    h.wait_for(lambda: tap.get_stats()["ami:none"]["connects"] >= 4, timeout=5.0)
    st = tap.get_stats()["ami:none"]
    t.ok(st["connects"] >= 4, "keeps retrying a refused connection", st)
    t.eq(len(tap.logged("cannot connect")), 1, "a refused connection is logged once")
    t.ok(tap.logged("Connection refused"), "the log line gives the reason")
    check_clean_exit(tap, "refused")

t.done()
