#!/usr/bin/python3
"""The daemon's pipeline, wired: AMI events -> judge -> nftables sets, in a private network
namespace with the scripted AMI peer. Restart continuity, restore and self-healing."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
from amipeer import AmiPeer  # noqa: E402

t = h.Tap()


def elements(family):
    # Bans live in four sets (addresses and /64s in hash sets, other prefixes in _net sets).
    bans = h.pbxguard_bans() or {}
    return {k: v for k, v in bans.items() if (":" in k) == (family == 6)}


def banned(key, family=4, timeout=8.0):
    """Waits (bounded) for key in the set. Generous: a loaded machine or the ASan build must
    not fail a behaviour test; how fast it happens is measured in bench/, not asserted here."""
    return bool(h.wait_for(lambda: key in elements(family), timeout=timeout))


sentinels = iter(range(1, 200))


def barrier(peer):
    """Returns once the daemon has handled everything sent before: events on one AMI
    connection are handled in order, so when a fresh sentinel address is banned, every earlier
    event has been judged. Makes the negative checks ("not banned") mean something."""
    ip = f"192.0.2.{200 + next(sentinels) % 50}"
    peer.send_events("InvalidPassword", ip, count=5)
    return banned(ip)


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    conf = h.make_config(tmp, {
        ("ami:local", "port"): str(peer.port),
        ("ami:local", "secret"): "s3cret",
        ("ami:local", "username"): "pbxguard",
    })
    # The shipped [whitelist] has only comments: add a CIDR to it (a second [whitelist]
    # section would be a duplicate).
    text = open(conf).read().replace("[whitelist]\n", "[whitelist]\ncidr = 198.51.100.0/24\n", 1)
    open(conf, "w").write(text)

    d = h.Daemon(conf)
    t.ok(peer.wait_logged_in(), "the daemon logs in to the AMI peer")

    peer.send_events("InvalidPassword", "203.0.113.7", count=4)
    barrier(peer)
    t.ok("203.0.113.7" not in elements(4), "4 failures (threshold 5) do not ban")
    peer.send_events("InvalidPassword", "203.0.113.7", count=1)
    t.ok(banned("203.0.113.7"), "the 5th failure bans the address in the kernel set")
    tmo = elements(4).get("203.0.113.7", (None, None))[0]
    t.eq(tmo, 3600, "the first offence's kernel timeout is bantime (1h)")

    peer.send_events("ChallengeResponseFailed", "2001:db8:1:2::66", count=3, service="PJSIP")
    peer.send_events("ChallengeResponseFailed", "2001:db8:1:2::77", count=2, service="PJSIP")
    t.ok(banned("2001:db8:1:2::/64", family=6),
         "two IPv6 addresses of one /64 count together and the /64 is banned")

    peer.send_events("SuccessfulAuth", "203.0.113.20", count=10)
    peer.send_events("ChallengeSent", "203.0.113.20", count=10, service="PJSIP")
    barrier(peer)
    t.ok("203.0.113.20" not in elements(4), "SuccessfulAuth and ChallengeSent do not count")

    peer.send_events("InvalidPassword", "127.0.0.1", count=10)
    peer.send_events("InvalidPassword", "198.51.100.9", count=10)
    barrier(peer)
    e4 = elements(4)
    t.ok("127.0.0.1" not in e4, "loopback (and so the AMI peer) is never banned")
    t.ok(not any(k.startswith("198.51.100.") for k in e4), "a whitelisted CIDR is never banned")

    peer.send_events("InvalidAccountID", "192.0.2.50", count=4)
    barrier(peer)
    rc, secs = d.stop()
    t.eq(rc, 0, "SIGTERM stops the daemon cleanly")

    # Restart: the kernel kept the bans; the daemon restores them and carries on counting.
    d = h.Daemon(conf)
    t.ok(d.wait_log("active bans installed"), "the restarted daemon restores the active bans",
         d.log())
    e4 = elements(4)
    tmo = e4.get("203.0.113.7", (None, None))[0]
    t.ok(tmo is not None and tmo < 3600, "a restored ban carries its remaining time", e4)
    t.ok(peer.wait_logins(2), "the restarted daemon logs in again")
    peer.send_events("InvalidAccountID", "192.0.2.50", count=1)
    t.ok(banned("192.0.2.50"), "4 failures before a restart and 1 after ban (threshold 5)")

    # Self-healing.
    t0 = time.monotonic()
    h.nft("flush", "ruleset")
    back = banned("203.0.113.7") and banned("2001:db8:1:2::/64", 6)
    t.ok(back, "after `nft flush ruleset` every ban is back")
    t.diag(f"bans back {time.monotonic() - t0:.3f} s after the flush")
    t.ok(d.wait_log("was damaged"), "the repair is logged")
    t0 = time.monotonic()
    h.nft("delete", "table", "inet", "pbxguard")
    t.ok(banned("192.0.2.50"), "after `nft delete table inet pbxguard` the bans are back")
    t.diag(f"bans back {time.monotonic() - t0:.3f} s after the delete")

    rc, _ = d.stop()
    t.eq(rc, 0, "the daemon stops cleanly after the repairs")
    out = subprocess.run(["sqlite3", "-readonly", os.path.join(tmp, "pbxguard.db"),
                          "PRAGMA integrity_check"], capture_output=True, text=True).stdout
    t.eq(out.strip(), "ok", "the database passes integrity_check")
    t.ok(("inet", "pbxguard") in h.nft_tables() and "192.0.2.50" in elements(4),
         "by default the table and its bans stay in the kernel after a stop")

    # remove_on_stop = yes: the table goes with the daemon.
    text = open(conf).read().replace("remove_on_stop = no", "remove_on_stop = yes")
    open(conf, "w").write(text)
    d = h.Daemon(conf)
    t.ok(d.wait_log("active bans installed"), "the daemon starts with remove_on_stop = yes")
    rc, _ = d.stop()
    t.ok(rc == 0 and ("inet", "pbxguard") not in h.nft_tables(),
         "with remove_on_stop = yes the table is removed when the daemon stops", h.nft_tables())
    t.ok(d.wait_log("removed (remove_on_stop)"), "and the removal is logged")
t.done()
