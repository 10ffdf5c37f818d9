#!/usr/bin/python3
"""Prometheus from the whole daemon, against Debian's own programs: pbxguardd writes its
textfile ([prometheus]); a missing, then read-only directory gives one log line each and the
file comes back when the directory is fixed; `promtool check metrics` accepts the file; a real
prometheus-node-exporter (textfile collector only) serves it; a real Prometheus scrapes that
node_exporter while an attack runs through the scripted AMI peer, and every query of the Grafana
dashboard (etc/grafana/pbxguard-dashboard.json, read here so the two cannot drift) returns data
through Prometheus' HTTP API.

Runs in private network and mount namespaces: everything listens on the namespace's loopback,
the read-only directory is a tmpfs mounted there. Grafana's variables are given fixed values
for the queries: $instance = .*, $__rate_interval = 15s, $__range = 5m."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import e2elib as e  # noqa: E402

e.in_private_netns_and_mounts()
e.exit_on_sigterm()
h.setup_loopback()
from amipeer import AmiPeer  # noqa: E402

DASHBOARD = os.path.join(h.SOURCE, "etc", "grafana", "pbxguard-dashboard.json")
GRAFANA_VARS = {"$instance": ".*", "$__rate_interval": "15s", "$__range": "5m"}
PROGRAMS = {"promtool": "prometheus", "prometheus": "prometheus",
            "prometheus-node-exporter": "prometheus-node-exporter"}

missing = [f"{p} (Debian package {pkg})" for p, pkg in PROGRAMS.items() if not shutil.which(p)]
if missing:
    h.skip_all("not installed: " + ", ".join(missing) + "; scripts/deps.sh test installs them")

t = h.Tap()
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except OSError as ex:
        return None, str(ex)


def start(argv, log):
    p = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    procs.append(p)
    return p


def query(base, expr):
    """The result list of an instant query, or None if Prometheus refused it."""
    st, body = http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if st != 200:
        return None
    reply = json.loads(body)
    return reply["data"]["result"] if reply.get("status") == "success" else None


def dashboard_queries():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for tgt in p.get("targets", []):
            expr = tgt["expr"]
            for k, v in GRAFANA_VARS.items():
                expr = expr.replace(k, v)
            out.append((p["title"], expr))
    return out


def log_count(d, pattern):
    return len(re.findall(pattern, d.log()))


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    textdir = os.path.join(tmp, "textfile")
    prom_path = os.path.join(textdir, "pbxguard.prom")
    conf = h.make_config(tmp, {
        ("ami:local", "port"): str(peer.port),
        ("ami:local", "secret"): "s3cret",
        ("ami:local", "username"): "pbxguard",
        ("prometheus", "textfile"): prom_path,
        ("prometheus", "interval"): "1s",
    })
    d = h.Daemon(conf)
    mounted = False
    try:
        t.ok(peer.wait_logged_in(), "the daemon logs in to the scripted AMI peer")

        # 1. The directory is missing: one clear line, not one per interval.
        err_re = r"\[prometheus\] textfile \S+: cannot create it: No such file or directory"
        t.ok(d.wait_log("cannot create it: No such file", timeout=5),
             "a missing textfile directory is logged", d.log()[-2000:])
        time.sleep(3.2)  # three more intervals, each one retried
        t.eq(log_count(d, err_re), 1, "the missing directory is logged once, not per interval")
        line = next((ln for ln in d.log().splitlines() if "cannot create it" in ln), "")
        t.ok("node_exporter" in line and "retrying every 1s" in line,
             "the line says what to check and that it retries", line)

        # 2. The directory exists but is read-only (a tmpfs mounted ro in our mount namespace).
        os.mkdir(textdir)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0755", "pbxguard-prom",
                        textdir], check=True)
        mounted = True
        t.ok(d.wait_log("Read-only file system", timeout=5),
             "a read-only textfile directory is logged", d.log()[-2000:])
        time.sleep(3.2)
        t.eq(log_count(d, r"cannot create it: Read-only file system"), 1,
             "the read-only directory is logged once, not per interval")
        t.ok(not os.path.exists(prom_path), "nothing is written while it is read-only")

        # 3. Fixed: the file comes back at the next interval, and that is said once.
        subprocess.run(["mount", "-o", "remount,rw", textdir], check=True)
        t.ok(h.wait_for(lambda: os.path.exists(prom_path), timeout=5),
             "the file is written once the directory is writable again")
        t.ok(d.wait_log("written again", timeout=3), "the recovery is logged")
        st = os.stat(prom_path)
        t.eq(oct(st.st_mode & 0o777), "0o644", "the file is readable by node_exporter's user")

        # 4. An attack, and a service name no real Asterisk sends: quote and backslash.
        peer.send_garbage()
        peer.send_events("InvalidPassword", "203.0.113.7", count=5)
        peer.send_events("ChallengeResponseFailed", "2001:db8::66", count=5, service="PJSIP")
        hostile = peer.event_bytes("InvalidPassword", "198.51.100.9").replace(
            b"Service: AMI\r\n", b'Service: A"M\\I\r\n')
        peer.send_raw(hostile)

        def file_text():
            try:
                with open(prom_path) as f:
                    return f.read()
            except OSError:
                return ""

        def settled():
            txt = file_text()
            return ('pbxguard_bans_active{family="ipv6"} 1' in txt
                    and 'pbxguard_bans_active{family="ipv4"} 1' in txt
                    and 'service="A\\"M\\\\I"' in txt)
        t.ok(h.wait_for(settled, timeout=15), "the file shows the bans and the hostile service",
             file_text())
        text = file_text()
        for want in ['pbxguard_failed_auth_total{service="AMI",event="InvalidPassword"} 5',
                     'pbxguard_failed_auth_total{service="PJSIP",event="ChallengeResponseFailed"} 5',
                     'pbxguard_bans_total{reason="threshold"} 2',
                     'pbxguard_ami_up{source="ami:local"} 1',
                     'pbxguard_ami_frames_malformed_total{source="ami:local"} 1',
                     'pbxguard_nft_enforcing 1',
                     '# TYPE pbxguard_loop_turn_seconds summary']:
            t.ok(want in text, f"the file holds: {want}")
        t.ok(not re.search(r"\d+\.\d+\.\d+\.\d+|2001:db8", text), "no address in any label")
        t.diag("sample of the file:\n" + "\n".join(
            ln for ln in text.splitlines() if ln.startswith(("pbxguard_failed", "pbxguard_bans",
                                                             "pbxguard_ami_up", "pbxguard_loop"))))

        # 5. promtool, the Prometheus project's own checker (format and naming lints).
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        t.ok(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
             "promtool check metrics accepts the file without a remark", r.stdout + r.stderr)

        # 6. A real node_exporter with the textfile collector alone.
        ne_port = free_port()
        start(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ne_port}",
               "--collector.disable-defaults", "--collector.textfile",
               f"--collector.textfile.directory={textdir}"], os.path.join(tmp, "ne.log"))
        ne_url = f"http://127.0.0.1:{ne_port}/metrics"
        body = h.wait_for(lambda: (http_get(ne_url)[1] if http_get(ne_url)[0] == 200 else ""),
                          timeout=15, interval=0.1)
        t.ok('pbxguard_bans_total{reason="threshold"} 2' in (body or ""),
             "node_exporter serves pbxguard's metrics", (body or "")[:2000])
        t.ok(re.search(r"^node_textfile_scrape_error 0$", body or "", re.M),
             "node_exporter read the file without an error",
             "\n".join(ln for ln in (body or "").splitlines() if "textfile" in ln))

        # 7. A real Prometheus scraping that node_exporter every second.
        pr_port = free_port()
        pr_conf = os.path.join(tmp, "prometheus.yml")
        with open(pr_conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: node\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{ne_port}']\n")
        start(["prometheus", f"--config.file={pr_conf}",
               f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
               f"--web.listen-address=127.0.0.1:{pr_port}"], os.path.join(tmp, "prom.log"))
        base = f"http://127.0.0.1:{pr_port}"
        t.ok(h.wait_for(lambda: http_get(f"{base}/-/ready")[0] == 200, timeout=30, interval=0.2),
             "Prometheus is ready")
        t.ok(h.wait_for(lambda: query(base, "pbxguard_ami_up"), timeout=15, interval=0.2),
             "Prometheus scraped pbxguard_ami_up")
        # More of the attack while Prometheus watches, so that rates have something to show.
        for i in range(3):
            peer.send_events("InvalidPassword", f"203.0.113.{20 + i}", count=5)
            time.sleep(1.0)

        queries = dashboard_queries()
        t.ok(len(queries) >= 10, f"the dashboard has {len(queries)} queries")
        pending = dict(enumerate(queries))
        results = {}
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for i, (title, expr) in list(pending.items()):
                res = query(base, expr)
                if res:
                    results[i] = res
                    del pending[i]
            if pending:
                time.sleep(0.5)
        for i, (title, expr) in enumerate(queries):
            res = results.get(i)
            t.ok(res, f"dashboard query returns data: {title}: {expr}",
                 query(base, expr) if not res else None)
            if res:
                t.diag("  " + "; ".join(
                    f"{ {k: v for k, v in r['metric'].items() if k not in ('job',)} } = "
                    f"{r['value'][1]}" for r in res[:4]))

        # 8. A reload that moves the file: the old one goes, the new one comes.
        new_path = os.path.join(textdir, "pbxguard-moved.prom")
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace(f"textfile = {prom_path}", f"textfile = {new_path}"))
        d.send_signal(signal.SIGHUP)
        t.ok(h.wait_for(lambda: os.path.exists(new_path) and not os.path.exists(prom_path),
                        timeout=10),
             "a reload that changes textfile removes the old file and writes the new one",
             os.listdir(textdir))

        # 9. A clean stop takes the file away: stale metrics would look current.
        d.stop()
        t.ok(not os.path.exists(new_path), "the file is removed when the daemon stops")
    finally:
        for p in procs:
            h.stop_process(p)
        if d.running():
            d.stop()
        if mounted:
            subprocess.run(["umount", "-l", textdir], capture_output=True)

t.done()
