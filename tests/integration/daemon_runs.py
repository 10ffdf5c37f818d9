#!/usr/bin/python3
"""What the report says about the daemon itself: pbxguardd started, stopped with SIGTERM,
started, killed with SIGKILL after writing a few failures, started again, in a private network
namespace against the scripted AMI peer. The report lists the three starts, the clean stop,
one unclean stop at the time of the last thing the killed daemon wrote, and the time it was
not running; the third daemon's log and `pbxguard status` tell of the unclean stop."""
import datetime
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
from amipeer import AmiPeer  # noqa: E402

t = h.Tap()
DOWN = 2.0  # seconds each stop lasts: long enough to be measured in whole seconds


def unix(iso):
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def cli(conf, *args):
    return subprocess.run([h.CLI, "-c", conf, *args], capture_output=True, text=True, timeout=30)


def report_json(conf):
    r = cli(conf, "report", "--since", "1h", "--format", "json")
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def start(conf, tmp, n, peer):
    d = h.Daemon(conf, log_path=os.path.join(tmp, f"pbxguardd-{n}.log"))
    ok = peer.wait_logins(n, timeout=10.0)
    t.ok(ok and d.running(), f"daemon {n} starts and logs in", d.log())
    return d


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    conf = h.make_config(tmp, {
        ("ami:local", "port"): str(peer.port),
        ("ami:local", "secret"): "s3cret",
        ("ami:local", "username"): "pbxguard",
    })
    t0 = time.time()
    d1 = start(conf, tmp, 1, peer)
    rc, _ = d1.stop(signal.SIGTERM)
    t.eq(rc, 0, "daemon 1 stops on SIGTERM")
    t_stop = time.time()

    time.sleep(DOWN)
    d2 = start(conf, tmp, 2, peer)
    t_up2 = time.time()
    peer.send_events("InvalidPassword", "198.51.100.20", count=3, service="AMI", account="admin")
    t_sent = time.time()
    seen = h.wait_for(lambda: (report_json(conf) or {}).get("totals", {}).get("failures") == 3,
                      timeout=10.0)
    t.ok(seen, "daemon 2 writes the failures it is sent")
    d2.p.kill()
    d2.p.wait(timeout=10)
    t_kill = time.time()
    t.eq(d2.p.returncode, -signal.SIGKILL, "daemon 2 is killed with SIGKILL")

    time.sleep(DOWN)
    d3 = start(conf, tmp, 3, peer)
    t_up3 = time.time()
    t.ok(d3.wait_log("did not stop cleanly", timeout=5.0),
         "daemon 3 logs that the previous one did not stop cleanly", d3.log())

    j = report_json(conf)
    runs = (j or {}).get("daemon_runs") or []
    t.eq([e["event"] for e in runs], ["start", "stop", "start", "unclean_stop", "start"],
         "the report lists three starts, the clean stop and one unclean stop")
    if len(runs) == 5:
        first, stop, second, died, third = runs
        t.eq((first["down_seconds"], first["pid"]), (None, d1.pid),
             "the first start is the first recorded: nothing is known before it")
        t.ok(stop["reason"] == "SIGTERM" and stop["pid"] == d1.pid
             and abs(unix(stop["time"]) - t_stop) <= 2,
             "the clean stop: SIGTERM, daemon 1, at the time it stopped", stop)
        t.ok(second["pid"] == d2.pid and not second["after_unclean_stop"]
             and DOWN - 1 <= second["down_seconds"] <= t_up2 - t_stop + 1,
             "daemon 2's start: not running for the time between", second)
        t.ok(died["pid"] == d2.pid and t_stop <= unix(died["time"]) <= t_kill + 1
             and unix(died["time"]) >= t_sent - 2,
             "the unclean stop: daemon 2, at the last thing it wrote (its failures)", died)
        t.ok(third["pid"] == d3.pid and third["after_unclean_stop"]
             and DOWN - 1 <= third["down_seconds"] <= t_up3 - t_sent + 1,
             "daemon 3's start: after the unclean stop, with the time nothing was judged", third)
        # (each is rounded down to the second, and so is their sum)
        both = second["down_seconds"] + third["down_seconds"]
        t.ok(both <= j["totals"]["not_running_seconds"] <= both + 1,
             "the time not running in the period is both stretches", j["totals"])
        t.ok(j["totals"]["not_running_seconds"] <= time.time() - t0,
             "... and no longer than the test itself")

    r = cli(conf, "report", "--since", "1h")
    t.ok(r.returncode == 0 and "UNCLEAN STOP: pid %d" % d2.pid in r.stdout
         and "stopped cleanly (SIGTERM)" in r.stdout and "Not running in this period" in r.stdout,
         "the text report says so in words", r.stdout[-2000:] + r.stderr)

    r = cli(conf, "--json", "status")
    try:
        st = json.loads(r.stdout).get("last_unclean_stop") or {}
    except ValueError:
        st = {}
    t.ok(st.get("pid") == d2.pid and t_kill - 1 <= st.get("restarted", 0) <= t_up3 + 1,
         "status (JSON) names the recent unclean stop and the restart", r.stdout + r.stderr)
    r = cli(conf, "status")
    t.ok(r.returncode == 0 and f"unclean stop pid {d2.pid} died after" in r.stdout,
         "status (text) shows it", r.stdout + r.stderr)

    rc, _ = d3.stop(signal.SIGTERM)
    t.eq(rc, 0, "daemon 3 stops")
t.done()
