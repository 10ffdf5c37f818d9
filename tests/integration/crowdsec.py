#!/usr/bin/python3
"""pbxguard in a CrowdSec deployment, against a real LAPI (Debian's crowdsec 1.4.6, started by
this test in its private network namespace; see lapi.py).

Published: threshold bans become alerts with a decision in LAPI, once, across a daemon restart
and a LAPI restart. Enforced: cscli's decisions reach our kernel sets with their remaining time
and leave them when deleted; whitelisted and own addresses are refused; ranges work; a delete
never lifts what another decision or a local ban still holds. Faults: LAPI down at start and in
the middle, a wrong key, garbage and oversized replies from a fake server: no crash, local bans
unaffected. Skipped only when the crowdsec package cannot be fetched."""
import http.server
import json
import os
import socket
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
import lapi  # noqa: E402
from amipeer import AmiPeer  # noqa: E402

root = lapi.package()
if root is None:
    h.skip_all(lapi.why_not)
with open(h.DAEMON, "rb") as f:
    if b"crowdsec: LAPI" not in f.read():
        h.skip_all("pbxguardd was built without libcurl (no [crowdsec] support)")

t = h.Tap()
SCENARIO = "pbxguard/asterisk-bf"
OWN = "192.0.2.1"  # the host's own address in this namespace


def go_seconds(text):
    """A Go duration ("59m59.5s", "1h0m0s") in seconds."""
    import re
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|us|ns|h|m|s)", text))


def bans():
    return h.pbxguard_bans() or {}


def wait_in(key, timeout=10.0):
    return bool(h.wait_for(lambda: key in bans(), timeout=timeout))


def wait_out(key, timeout=10.0):
    return bool(h.wait_for(lambda: key not in bans(), timeout=timeout))


def ours_in_lapi(l, value):
    return [d for a, d in l.decisions() if d["value"] == value and d["scenario"] == SCENARIO]


def db_rows(tmp, sql, *args):
    con = sqlite3.connect(f"file:{os.path.join(tmp, 'pbxguard.db')}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def secret(tmp, name, text, mode=0o600):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)
    return path


STATSD = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def statsd_lines():
    """Every StatsD line received so far (the daemon sends to STATSD's port)."""
    out = []
    STATSD.setblocking(False)
    while True:
        try:
            out += STATSD.recv(65536).decode(errors="replace").split("\n")
        except BlockingIOError:
            return out


def config(tmp, peer, url, pw_file, key_file, extra=""):
    conf = h.make_config(tmp, {
        ("statsd", "enabled"): "yes",
        ("statsd", "port"): str(STATSD.getsockname()[1]),
        ("ami:local", "port"): str(peer.port),
        ("ami:local", "secret"): "s3cret",
        ("ami:local", "username"): "pbxguard",
        ("ami:local", "learn_trust"): "no",
        ("policy", "maxretry"): "3",
    }, append=f"""
[crowdsec]
lapi_url = {url}
machine_id = pbx1
password_file = {pw_file}
api_key_file = {key_file}
poll_interval = 200ms
timeout = 3s
{extra}""")
    text = open(conf).read().replace("[whitelist]\n", "[whitelist]\ncidr = 198.51.100.0/24\n", 1)
    open(conf, "w").write(text)
    return conf


STATSD.bind(("127.0.0.1", 0))

# The host's own address: on loopback in this namespace (never routed anywhere).
subprocess.run(["ip", "addr", "add", f"{OWN}/32", "dev", "lo"], check=True)

with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer, \
        lapi.Lapi(root, port=18080) as l:
    key = l.add_bouncer("pbx1")
    l.add_machine("pbx1", "watcher-pw-0123456789")
    pw_file = secret(tmp, "cs-password", "watcher-pw-0123456789")
    key_file = secret(tmp, "cs-key", key)
    conf = config(tmp, peer, l.url, pw_file, key_file)

    # --- published ---
    d = h.Daemon(conf)
    t.ok(peer.wait_logged_in(), "the daemon logs in to the AMI peer")
    t.ok(d.wait_log("crowdsec: logged in to LAPI", timeout=15), "the watcher logs in to LAPI",
         d.log())
    peer.send_events("InvalidPassword", "203.0.113.50", count=3)
    t.ok(wait_in("203.0.113.50"), "three failures ban the address")
    got = h.wait_for(lambda: ours_in_lapi(l, "203.0.113.50"), timeout=15)
    t.ok(got and got[0]["type"] == "ban" and got[0]["scope"] == "Ip",
         "LAPI holds an alert with our ban decision", l.decisions())
    t.ok(got and 3500 < go_seconds(got[0]["duration"]) <= 3600,
         "its duration is the ban's remaining time (about an hour)", got)
    time.sleep(1.0)  # a few polls: our own decision comes back in the stream
    t.eq(db_rows(tmp, "SELECT reason FROM bans WHERE prefix = ?", "203.0.113.50"),
         [("threshold",)], "our own decision coming back from LAPI is not applied twice")

    # LAPI down while a ban is decided, the daemon restarted meanwhile, LAPI back.
    l.stop()
    peer.send_events("InvalidPassword", "203.0.113.51", count=3)
    t.ok(wait_in("203.0.113.51"), "with LAPI down, a ban still lands in the kernel")
    t.ok(d.wait_log("failed", timeout=15), "LAPI down is noticed and logged")
    rc, _ = d.stop()
    t.eq(rc, 0, "the daemon stops cleanly with LAPI down")
    t.eq(db_rows(tmp, "SELECT count(*) FROM outbox WHERE sink = 'crowdsec'"), [(1,)],
         "the unsent alert waits in the outbox across the restart")
    d = h.Daemon(conf)
    t.ok(d.wait_log("active bans installed", timeout=15), "the daemon restarts with LAPI down")
    l.start()
    t.ok(h.wait_for(lambda: ours_in_lapi(l, "203.0.113.51"), timeout=30),
         "once LAPI is back, the waiting alert reaches it", d.log()[-2000:])
    time.sleep(1.5)
    t.eq((len(ours_in_lapi(l, "203.0.113.50")), len(ours_in_lapi(l, "203.0.113.51"))), (1, 1),
         "each ban reached LAPI exactly once, across a daemon and a LAPI restart")
    t.eq(db_rows(tmp, "SELECT count(*) FROM outbox WHERE sink = 'crowdsec'"), [(0,)],
         "the outbox is empty")

    # LAPI down and back while the daemon runs: the alert waits and goes, without a restart.
    l.stop()
    peer.send_events("InvalidPassword", "203.0.113.52", count=3)
    t.ok(wait_in("203.0.113.52"), "another ban while LAPI is down")
    l.start()
    t.ok(h.wait_for(lambda: ours_in_lapi(l, "203.0.113.52"), timeout=40),
         "it reaches LAPI once LAPI is back, the daemon running all along", d.log()[-1500:])

    # --- enforced ---
    t.ok(d.wait_log("answers the bouncer again", timeout=30) or
         d.wait_log("decisions read from LAPI", timeout=1, count=2), "the bouncer is back")
    t0 = time.monotonic()
    l.cscli("decisions", "add", "--ip", "192.0.2.77", "--duration", "1h")
    t.ok(wait_in("192.0.2.77"), "a decision added with cscli reaches our kernel set")
    t.diag(f"in the kernel {time.monotonic() - t0:.2f} s after cscli returned (poll 200 ms)")
    tmo = bans().get("192.0.2.77", (None, None))[0]
    t.ok(tmo is not None and 3500 < tmo <= 3600, "with about an hour left", tmo)
    origin = db_rows(tmp, "SELECT reason, origin FROM bans WHERE prefix = ? AND ended_ms IS NULL",
                     "192.0.2.77")
    t.ok(origin and origin[0][0] == "remote" and origin[0][1].startswith("crowdsec:cscli/"),
         "stored as a remote ban with its origin crowdsec:cscli/SCENARIO", origin)
    r = subprocess.run([h.CLI, "-s", os.path.join(tmp, "control.sock"), "list"],
                       capture_output=True, text=True)
    t.ok("crowdsec:cscli" in r.stdout, "pbxguard list names the origin", r.stdout + r.stderr)
    t0 = time.monotonic()
    l.cscli("decisions", "delete", "--ip", "192.0.2.77")
    t.ok(wait_out("192.0.2.77"), "cscli decisions delete removes it from the kernel")
    t.diag(f"gone {time.monotonic() - t0:.2f} s after cscli returned")

    l.cscli("decisions", "add", "--ip", "198.51.100.9", "--duration", "1h")
    l.cscli("decisions", "add", "--ip", OWN, "--duration", "1h")
    l.cscli("decisions", "add", "--ip", "127.0.0.1", "--duration", "1h")
    l.cscli("decisions", "add", "--range", "10.0.0.0/8", "--duration", "1h")
    l.cscli("decisions", "add", "--range", "198.18.0.0/24", "--duration", "30m")
    t.ok(wait_in("198.18.0.0/24"), "a range decision lands in the prefix set")
    b = bans()
    t.ok("198.51.100.9" not in b, "a decision for a whitelisted address is refused", b)
    t.ok(OWN not in b, "a decision for the host's own address is refused", b)
    t.ok("127.0.0.1" not in b, "a decision for loopback is refused", b)
    t.ok("10.0.0.0/8" not in b, "a decision wider than max_prefix4 is refused", b)
    t.ok(d.wait_log("refused"), "refusals are logged")
    time.sleep(1.2)  # one StatsD flush
    lines = statsd_lines()
    t.ok(any(x.startswith("pbxguard.crowdsec.applied:") for x in lines) and
         any(x.startswith("pbxguard.crowdsec.refused.protected:") for x in lines) and
         any(x.startswith("pbxguard.crowdsec.alerts:") for x in lines),
         "StatsD gets crowdsec.applied, crowdsec.refused.<rule> and crowdsec.alerts",
         [x for x in lines if "crowdsec" in x][:20])

    # An address inside a banned range: the range holds it; once the range is deleted, the
    # address's own decision is enforced.
    l.cscli("decisions", "add", "--range", "198.18.7.0/24", "--duration", "1h")
    t.ok(wait_in("198.18.7.0/24"), "a second range lands")
    l.cscli("decisions", "add", "--ip", "198.18.7.5", "--duration", "1h")
    time.sleep(0.8)
    l.cscli("decisions", "delete", "--range", "198.18.7.0/24")
    t.ok(wait_out("198.18.7.0/24"), "the range is deleted")
    t.ok(wait_in("198.18.7.5"), "the address inside it is then banned on its own decision")

    # Two decisions for one address: deleting one keeps the ban (the other still holds it).
    # LAPI's stream sends the longest decision of a value, and a delete only once none is left.
    l.cscli("decisions", "add", "--ip", "192.0.2.88", "--duration", "1h")
    l.cscli("decisions", "add", "--ip", "192.0.2.88", "--duration", "2h", "--reason", "second")
    t.ok(wait_in("192.0.2.88"), "two decisions for one address ban it")
    time.sleep(0.6)
    tmo = bans().get("192.0.2.88", (None, None))[0]
    t.ok(tmo is not None and tmo > 7000, "for the longer one's time", tmo)
    longest = max(dd["id"] for a, dd in l.decisions() if dd["value"] == "192.0.2.88")
    l.cscli("decisions", "delete", "--id", str(longest))
    time.sleep(1.0)
    t.ok("192.0.2.88" in bans(), "deleting one of them keeps the ban (the other holds it)")
    l.cscli("decisions", "delete", "--ip", "192.0.2.88")
    t.ok(wait_out("192.0.2.88"), "deleting the last one lifts it")

    # A local ban and a decision for the same address: the delete leaves the local ban.
    l.cscli("decisions", "add", "--ip", "203.0.113.50", "--duration", "10m")
    time.sleep(0.8)
    l.cscli("decisions", "delete", "--ip", "203.0.113.50", "--scenario", "manual 'ban' from '" +
            l.cscli_machine + "'", check=False)
    time.sleep(0.8)
    t.ok("203.0.113.50" in bans(), "a deleted decision never lifts a local ban")

    # Unban of a CrowdSec decision says it will come back.
    l.cscli("decisions", "add", "--ip", "192.0.2.99", "--duration", "1h")
    t.ok(wait_in("192.0.2.99"), "another decision lands")
    r = subprocess.run([h.CLI, "-s", os.path.join(tmp, "control.sock"), "show", "192.0.2.99"],
                       capture_output=True, text=True)
    t.ok("crowdsec:cscli/" in r.stdout, "pbxguard show names the origin", r.stdout + r.stderr)
    r = subprocess.run([h.CLI, "-s", os.path.join(tmp, "control.sock"), "unban", "192.0.2.99"],
                       capture_output=True, text=True)
    t.ok("cscli decisions delete" in r.stdout + r.stderr,
         "unbanning a CrowdSec ban says it comes back unless deleted in CrowdSec",
         r.stdout + r.stderr)

    r = subprocess.run([h.CLI, "-s", os.path.join(tmp, "control.sock"), "status"],
                       capture_output=True, text=True)
    t.ok("crowdsec" in r.stdout and "outbox" in r.stdout, "status shows the CrowdSec state",
         r.stdout)

    # A reload that changes [crowdsec] starts the links over; decisions keep coming.
    text = open(conf).read().replace("poll_interval = 200ms", "poll_interval = 300ms")
    open(conf, "w").write(text)
    r = subprocess.run([h.CLI, "-s", os.path.join(tmp, "control.sock"), "reload"],
                       capture_output=True, text=True)
    t.eq(r.returncode, 0, "a reload with new [crowdsec] settings is taken")
    l.cscli("decisions", "add", "--ip", "192.0.2.111", "--duration", "1h")
    t.ok(wait_in("192.0.2.111"), "and decisions still reach the kernel after it")

    # --- faults: LAPI down at start ---
    rc, _ = d.stop()
    l.stop()
    d = h.Daemon(conf)
    t.ok(d.wait_log("active bans installed", timeout=15), "the daemon starts with LAPI down")
    t.ok("198.18.0.0/24" in bans(), "CrowdSec bans are restored while LAPI is down")
    peer.send_events("InvalidPassword", "203.0.113.60", count=3)
    t.ok(wait_in("203.0.113.60"), "local bans go on while LAPI is down")
    l.start()
    l.cscli("decisions", "delete", "--range", "198.18.0.0/24")
    t.ok(wait_out("198.18.0.0/24", timeout=40),
         "back up, the full set lifts what was deleted meanwhile", d.log()[-1500:])
    rc, _ = d.stop()
    t.eq(rc, 0, "the daemon stops cleanly")

    # --- faults: a wrong key and a wrong password ---
    bad_key = secret(tmp, "cs-bad-key", "0" * 32)
    bad_pw = secret(tmp, "cs-bad-pw", "wrong-password")
    conf2 = config(tmp, peer, l.url, bad_pw, bad_key)
    d = h.Daemon(conf2)
    t.ok(d.wait_log("refuses the bouncer's API key", timeout=15), "a wrong key is logged clearly",
         d.log())
    t.ok(d.wait_log("refuses the watcher's login", timeout=15),
         "a wrong password is logged clearly", d.log())
    peer.send_events("InvalidPassword", "203.0.113.61", count=3)
    t.ok(wait_in("203.0.113.61"), "local bans are unaffected")
    time.sleep(2.0)
    t.ok(d.log().count("refuses the bouncer's API key") == 1,
         "and retried slowly, without flooding the log")
    rc, _ = d.stop()
    t.eq(rc, 0, "the daemon stops cleanly")
l.stop()


# --- TLS: LAPI over HTTPS with a private CA ---
def make_certs(d):
    """A CA and a server certificate for 127.0.0.1 signed by it (EC keys: quick to make)."""
    def run(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
        "/CN=pbxguard test CA")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "2", "-extfile", "ext")
    return [os.path.join(d, x) for x in ("ca.pem", "srv.pem", "srv.key")]


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    ca, cert, key_pem = make_certs(tmp)
    with lapi.Lapi(root, port=18443, tls=(cert, key_pem)) as l:
        key = l.add_bouncer("pbx-tls")
        key_file = secret(tmp, "cs-key", key)
        conf = config(tmp, peer, l.url, secret(tmp, "pw", "unused"), key_file,
                      extra=f"publish = no\nca_file = {ca}\n")
        d = h.Daemon(conf)
        l.cscli("decisions", "add", "--ip", "192.0.2.120", "--duration", "1h")
        t.ok(wait_in("192.0.2.120", timeout=20), "over HTTPS with ca_file, decisions land",
             d.log()[-1500:])
        rc, _ = d.stop()
        # Without the CA, LAPI's certificate is not trusted: nothing is read, and it is said.
        text = open(conf).read().replace(f"ca_file = {ca}\n", "")
        open(conf, "w").write(text)
        d = h.Daemon(conf)
        t.ok(d.wait_log("decision stream failed", timeout=20) and "certificate" in d.log(),
             "without the CA, LAPI's certificate is refused and the log says so", d.log()[-1500:])
        d.stop()


# --- faults: a fake LAPI that answers garbage and floods ---
class Fake(http.server.BaseHTTPRequestHandler):
    mode = "garbage"
    hits = []

    def log_message(self, *a):
        pass

    def reply(self, body, status=200):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def do_GET(self):
        Fake.hits.append((Fake.mode, self.path))
        if Fake.mode == "garbage":
            self.reply(b'{"new":[{"id":1,"value":"192.0.2.5"},]]}{{{\x00\xff')
        elif Fake.mode == "stall":
            time.sleep(5)  # past the daemon's 3 s timeout
            self.reply(b'{"new":null,"deleted":null}')
        elif Fake.mode == "oversized":
            self.reply(b'{"new":[' + b'{"id":1,"duration":"1h","origin":"cscli","scope":"Ip",'
                       b'"type":"ban","value":"192.0.2.5","scenario":"x"},' * 30000 + b'{}]}')
        else:
            self.reply(b'<html>502</html>', status=502)

    def do_POST(self):
        Fake.hits.append((Fake.mode, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length, 1 << 20))
        self.reply(b'{"token": 12, "expire": [}')


srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Fake)
srv.daemon_threads = True
threading.Thread(target=srv.serve_forever, daemon=True).start()
try:
    with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
        conf = config(tmp, peer, f"http://127.0.0.1:{srv.server_address[1]}",
                      secret(tmp, "pw", "pw"), secret(tmp, "key", "k" * 32),
                      extra="max_reply_mib = 1\n")
        d = h.Daemon(conf)
        t.ok(d.wait_log("not a decision stream", timeout=15), "garbage JSON is refused, said once",
             d.log())
        t.ok(d.wait_log("holds no token", timeout=15), "a garbage login reply is refused")
        Fake.mode = "oversized"
        t.ok(d.wait_log("larger than max_reply_mib", timeout=40),
             "an oversized reply is cut off and said", d.log()[-1500:])
        Fake.mode = "stall"
        t.ok(d.wait_log("timed out", timeout=40), "a LAPI that stalls is given up on after the "
             "timeout, and said", d.log()[-1500:])
        Fake.mode = "error"
        peer.send_events("InvalidPassword", "203.0.113.62", count=3)
        t.ok(wait_in("203.0.113.62"), "local bans are unaffected by a hostile LAPI")
        t.ok("192.0.2.5" not in bans(), "nothing from the hostile replies was applied")
        t.ok(d.running(), "the daemon is still running")
        rc, _ = d.stop()
        t.eq(rc, 0, "and stops cleanly")
finally:
    srv.shutdown()
t.done()
