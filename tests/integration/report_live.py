#!/usr/bin/python3
"""pbxguard report against the real daemon: pbxguardd, fed by the scripted AMI peer in a private
network namespace, writes its database; `pbxguard report -c CONFIG` reads it while the daemon
runs (WAL) and after it stopped, and shows what happened: the failures, the ban, the accounts,
the daemon's own incidents."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
from amipeer import AmiPeer  # noqa: E402

t = h.Tap()


def report(conf, *args):
    r = subprocess.run([h.CLI, "report", "-c", conf, "--since", "1h", *args],
                       capture_output=True, text=True, timeout=30)
    return r


def report_json(conf):
    r = report(conf, "--format", "json")
    try:
        return json.loads(r.stdout), r
    except ValueError:
        return None, r


def failures_reach(conf, n):
    j, _ = report_json(conf)
    return j if j and j["totals"]["failures"] >= n else None


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    conf = h.make_config(tmp, {
        ("ami:local", "port"): str(peer.port),
        ("ami:local", "secret"): "s3cret",
        ("ami:local", "username"): "pbxguard",
    })
    d = h.Daemon(conf)
    t.ok(peer.wait_logged_in(), "the daemon logs in to the AMI peer")

    peer.send_events("InvalidAccountID", "203.0.113.7", count=3, service="PJSIP",
                     account="1001")
    peer.send_events("ChallengeResponseFailed", "203.0.113.7", count=2, service="PJSIP",
                     account="1002")
    peer.send_events("InvalidPassword", "198.51.100.20", count=2, service="AMI",
                     account="admin")

    j = h.wait_for(lambda: failures_reach(conf, 7), timeout=5.0)
    t.ok(j is not None and d.p.poll() is None,
         "report reads the database while the daemon runs and writes it", d.log())
    if j:
        t.eq(j["totals"]["failures"], 7, "the report counts every failure the peer sent")
        t.eq(j["totals"]["sources"], 2, "... from two sources")
        top = {s["source"]: s for s in j["top_sources"]}
        t.eq((top.get("203.0.113.7") or {}).get("attempts"), 5, "the top source has 5 attempts")
        t.eq((top.get("203.0.113.7") or {}).get("ban"), "active",
             "the source that crossed the threshold is shown banned")
        t.eq(j["totals"]["bans"], 1, "one ban issued")
        t.eq({a["account"] for a in j["top_accounts"]}, {"1001", "1002", "admin"},
             "the accounts tried")
        t.eq({s["service"]: s["failures"] for s in j["by_service"]}, {"PJSIP": 5, "AMI": 2},
             "failures by service")

    # an AMI disconnect is one of the daemon's incidents
    peer.drop()
    t.ok(peer.wait_logins(2), "the daemon logs in again after the peer dropped it")
    j = h.wait_for(lambda: (report_json(conf)[0] or {}).get("daemon", {}).get("ami-disconnect"),
                   timeout=5.0)
    t.ok(j, "the report shows the AMI disconnect among the daemon's incidents")

    text = report(conf)
    t.ok(text.returncode == 0 and "203.0.113.7" in text.stdout and "until" in text.stdout,
         "the text report names the banned source and its ban's end", text.stderr)

    rc, _ = d.stop()
    t.eq(rc, 0, "the daemon stops")
    j2, r = report_json(conf)
    t.ok(j2 is not None and j2["totals"]["failures"] == 7,
         "the report works with the daemon stopped, with the same figures", r.stderr)
t.done()
