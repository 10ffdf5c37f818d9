#!/usr/bin/python3
"""CrowdSec figures against a real LAPI (Debian's crowdsec 1.4.6, as the tests start it), in a
private network namespace, with the real daemon:

  1. decision latency: a decision added in LAPI (POST /v1/alerts returned) until its element
     is in our kernel set, N samples at random phases of the poll (target: poll_interval +
     50 ms at p99);
  2. startup: 100k decisions in LAPI when the daemon starts: until all are in the kernel
     (target: 2 s), with LAPI's own time to answer apart;
  3. publish burst: 1,000 threshold bans decided at once (3 failures each over the AMI peer)
     until LAPI holds the 1,000 decisions (target: 5 s).

  sudo bench/bench_crowdsec.py [--build DIR] [--samples N] [--decisions N] [--bans N]
                               [--parts latency,startup,publish] [--perf FILE] [--json]

--parts runs some of the three only; --perf records the daemon's start-up under `perf record`
(call graphs into FILE) to see where its time goes.

Figures only: it never passes or fails on time."""
import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))


def say(msg):
    print(msg, file=sys.stderr, flush=True)


WALK_NOTE = "slices of at most 7 ms of walk per loop turn"


def cpu_seconds(pid):
    """User + system CPU time of a process so far, in seconds."""
    st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def parse_seconds(text):
    """'1s', '250ms', '2m' -> seconds."""
    m = re.fullmatch(r"([0-9.]+)(ms|s|m)", text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build-release"))
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--decisions", type=int, default=100000)
    ap.add_argument("--bans", type=int, default=1000)
    ap.add_argument("--poll-interval", default="1s")
    ap.add_argument("--parts", default="latency,startup,publish")
    ap.add_argument("--perf", default=None, help="perf record the start-up into this file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    os.environ["PBXGUARD_BUILD"] = os.path.abspath(args.build)

    import harness as h
    h.in_private_netns()
    h.setup_loopback()
    import lapi
    from amipeer import AmiPeer

    root = lapi.package()
    if root is None:
        say(f"bench_crowdsec: {lapi.why_not}")
        return 77
    out = {"poll_interval": args.poll_interval}
    with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer, \
            lapi.Lapi(root, port=18090) as l:
        key = l.add_bouncer("pbx1")
        l.add_machine("pbx1", "watcher-pw-0123456789")
        l.add_machine("bench", "bench-pw-0123456789")

        def secret(name, text):
            p = os.path.join(tmp, name)
            with open(p, "w") as f:
                f.write(text + "\n")
            os.chmod(p, 0o600)
            return p

        def config(db, publish=True, enforce=True, poll=None):
            return h.make_config(tmp, {
                ("general", "database"): os.path.join(tmp, db),
                ("ami:local", "port"): str(peer.port),
                ("ami:local", "secret"): "s3cret",
                ("ami:local", "username"): "pbxguard",
                ("ami:local", "learn_trust"): "no",
                ("policy", "maxretry"): "3",
                ("general", "log_level"): "notice",
            }, name=db + ".conf", append=f"""
[crowdsec]
lapi_url = {l.url}
machine_id = pbx1
password_file = {secret("pw", "watcher-pw-0123456789")}
api_key_file = {secret("key", key)}
publish = {"yes" if publish else "no"}
enforce = {"yes" if enforce else "no"}
poll_interval = {poll or args.poll_interval}
""")

        tok = json.load(urllib.request.urlopen(urllib.request.Request(
            l.url + "/v1/watchers/login", data=json.dumps(
                {"machine_id": "bench", "password": "bench-pw-0123456789"}).encode(),
            headers={"Content-Type": "application/json"})))["token"]

        def add_decision(value, scenario="bench/latency"):
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            alert = [{"scenario": scenario, "scenario_hash": "", "scenario_version": "",
                      "message": "bench", "events_count": 1, "start_at": now, "stop_at": now,
                      "capacity": 0, "leakspeed": "0", "simulated": False, "events": [],
                      "remediation": True,
                      "source": {"scope": "Ip", "value": value, "ip": value},
                      "decisions": [{"origin": "crowdsec", "type": "ban", "scope": "Ip",
                                     "value": value, "duration": "1h", "scenario": scenario}]}]
            urllib.request.urlopen(urllib.request.Request(
                l.url + "/v1/alerts", data=json.dumps(alert).encode(),
                headers={"Authorization": "Bearer " + tok,
                         "Content-Type": "application/json"})).read()

        def in_kernel(ip):
            return subprocess.run(["nft", "get", "element", "inet", "pbxguard", "banned4",
                                   "{ " + ip + " }"], capture_output=True).returncode == 0

        # 1. latency, at the default poll interval and a short one
        n0 = 0
        for poll in (args.poll_interval, "250ms") if "latency" in parts else ():
            d = h.Daemon(config(f"lat{poll}.db", publish=False, poll=poll))
            if not d.wait_log("decisions read from LAPI", timeout=30):
                say(d.log())
                return 1
            lat = []
            period = parse_seconds(poll)
            for i in range(n0, n0 + args.samples):
                # A sample ends just after a poll: a pause of a random part of the interval
                # puts the next decision at a random phase of the poll cycle.
                time.sleep(random.uniform(0, period))
                ip = f"198.18.{i // 250}.{i % 250 + 1}"
                add_decision(ip)
                t0 = time.monotonic()
                while not in_kernel(ip) and time.monotonic() - t0 < 10:
                    time.sleep(0.002)
                lat.append((time.monotonic() - t0) * 1000)
            n0 += args.samples
            d.stop()
            key_name = "latency_ms" if poll == args.poll_interval else "latency_250ms_ms"
            out[key_name] = {"samples": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99),
                             "max": max(lat), "mean": statistics.mean(lat), "poll": poll}
            say(f"decision latency ({len(lat)} samples, poll_interval {poll}): "
                f"p50 {pct(lat, 50):.0f} ms, p99 {pct(lat, 99):.0f} ms, max {max(lat):.0f} ms")

        # 2. startup with many decisions
        if "startup" in parts:
            startup(args, h, l, tmp, config, key, out)

        # 3. publish burst
        if "publish" in parts and publish(args, h, l, peer, config, key, out):
            return 1
    if args.json:
        print(json.dumps(out))
    return 0


def lapi_floor(url, key, n=3):
    """LAPI's own time to produce the full set, as curl sees it (best and worst of n), and the
    reply's size: the floor under what the daemon can reach."""
    times, size = [], 0
    for _ in range(n):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download}",
                            "-H", "X-Api-Key: " + key, url + "/v1/decisions/stream?startup=true"],
                           capture_output=True, text=True, timeout=120)
        t, size = r.stdout.split()
        times.append(float(t))
    return min(times), max(times), int(size)


def startup(args, h, l, tmp, config, key, out):
    """100k decisions in LAPI, then the daemon started: until all are in the kernel."""
    csv = os.path.join(tmp, "decisions.csv")
    with open(csv, "w") as f:
        f.write("duration,scope,value,reason,origin,type\n")
        for i in range(args.decisions):
            f.write(f"2h,ip,100.{64 + i // 65536}.{i // 256 % 256}.{i % 256},bench/bulk,"
                    "cscli,ban\n")
    t0 = time.monotonic()
    l.cscli("decisions", "import", "-i", csv, timeout=900)
    say(f"({args.decisions} decisions imported into LAPI in {time.monotonic() - t0:.1f} s)")
    t0 = time.monotonic()
    d = h.Daemon(config("start.db", publish=False))
    prof = None
    if args.perf:
        prof = subprocess.Popen(["perf", "record", "-q", "-F", "2000", "--call-graph", "dwarf,16384",
                                 "-o", args.perf, "-p",
                                 str(d.pid)], stderr=subprocess.DEVNULL)
    ok = h.wait_for(lambda: "decisions read from LAPI" in d.log(), timeout=120, interval=0.005)
    total = time.monotonic() - t0
    cpu = cpu_seconds(d.pid)
    time.sleep(0.5)  # the last slice's turn commits after the line is written
    elems = len(h.nft_set_elements("banned4") or {})
    line = [x for x in d.log().splitlines() if "decisions read from LAPI" in x]
    if prof:
        prof.send_signal(2)
        prof.wait()
    d.stop()
    fmin, fmax, fsize = lapi_floor(l.url, key)
    out["lapi_floor"] = {"best_s": fmin, "worst_s": fmax, "bytes": fsize}
    say(f"  LAPI alone (curl, 3 times, after the daemon): {fmin:.2f}-{fmax:.2f} s for the "
        f"full set of {fsize} bytes")
    m = re.search(r"LAPI answered in (\d+) ms\) and applied in (\d+) ms", line[-1] if line else "")
    lapi_ms, applied_ms = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    out["startup"] = {"decisions": args.decisions, "seconds_to_log": total if ok else None,
                      "lapi_answer_s": lapi_ms / 1000 if lapi_ms is not None else None,
                      "ours_s": applied_ms / 1000 if applied_ms is not None else None,
                      "daemon_cpu_s": cpu, "elements": elems,
                      "load": open("/proc/loadavg").read().split()[0]}
    say(f"startup with {args.decisions} decisions: {elems} elements in the kernel; the "
        f"daemon was done {total:.2f} s after it was started")
    if m:
        say(f"  LAPI producing the stream {lapi_ms / 1000:.2f} s; pbxguardd from the reply to "
            f"the last decision judged, stored and committed {applied_ms / 1000:.2f} s "
            f"(wall, in {WALK_NOTE}); the daemon's CPU time from its start {cpu:.2f} s; "
            f"load average {out['startup']['load']}")


def publish(args, h, l, peer, config, key, out):
    """Returns 0, or 1 if the daemon never logged in."""
    d = h.Daemon(config("pub.db", enforce=False))
    if not d.wait_log("crowdsec: logged in", timeout=30):
        say(d.log())
        return 1
    ips = [f"203.0.{113 + i // 250}.{i % 250 + 1}" for i in range(args.bans)]
    data = b"".join(peer.event_bytes("InvalidPassword", ip) * 3 for ip in ips)
    t0 = time.monotonic()
    peer.send_raw(data)

    def ours():
        r = urllib.request.urlopen(urllib.request.Request(
            l.url + "/v1/decisions?scenarios_containing=asterisk-bf",
            headers={"X-Api-Key": key}))
        return len(json.load(r) or [])
    n = 0
    while time.monotonic() - t0 < 60:
        n = ours()
        if n >= args.bans:
            break
        time.sleep(0.05)
    burst = time.monotonic() - t0
    d.stop()
    out["publish"] = {"bans": args.bans, "in_lapi": n, "seconds": burst}
    say(f"publish burst: {n} of {args.bans} bans in LAPI {burst:.2f} s after the events "
        "were sent")


if __name__ == "__main__":
    sys.exit(main())
