#!/usr/bin/python3
"""A broken or hostile AMI peer against the real daemon, in a private network namespace: what
it writes stays data (escaped in the log) and never takes the daemon down."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
from amipeer import AmiPeer, address_field, frame  # noqa: E402

t = h.Tap()


def event(service, ip):
    return frame([("Event", "InvalidPassword"), ("Privilege", "security,all"),
                  ("EventTV", "2026-11-26T09:01:51.213+0000"), ("Severity", "Error"),
                  ("Service", service), ("EventVersion", "2"), ("AccountID", "100"),
                  ("SessionID", "0x1"), ("LocalAddress", address_field("192.0.2.1", 5060)),
                  ("RemoteAddress", address_field(ip, 5060))])


def test_control_bytes_in_service_are_escaped_in_the_ban_log(d, peer):
    peer.send_raw(event("SI\x1b[2J\x07P", "203.0.113.9") * 5)
    t.ok(d.wait_log("banned 203.0.113.9", timeout=8.0), "5 failures ban the source", d.log())
    line = next((ln for ln in d.log().splitlines() if "banned 203.0.113.9" in ln), "")
    t.ok("\x1b" not in line and "\x07" not in line, "no raw control byte reaches the log",
         repr(line))
    t.ok("SI\\x1b[2J\\x07P" in line, "the service is logged escaped", repr(line))


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    conf = h.make_config(tmp, {
        ("ami:local", "port"): str(peer.port),
        ("ami:local", "secret"): "s3cret",
        ("ami:local", "username"): "pbxguard",
    })
    d = h.Daemon(conf)
    t.ok(peer.wait_logged_in(), "the daemon logs in to the AMI peer")
    test_control_bytes_in_service_are_escaped_in_the_ban_log(d, peer)
    rc, _ = d.stop()
    t.eq(rc, 0, "the daemon stops cleanly")
t.done()
