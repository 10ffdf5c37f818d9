#!/usr/bin/python3
"""The live view (pbxguard watch), against the real pbxguardd, the real CLI and real nftables in
a private network namespace with the scripted AMI peer:

- watchers (--json and text at once) see each event with its window against the threshold, and
  the ban when it comes; an allowlisted source says so; a manual ban shows as a verdict;
- hostile account names (an escape sequence, quotes, invalid UTF-8) arrive escaped: --json is
  ASCII only and decodes to the bytes sent, text output holds no control byte;
- Ctrl-C ends a watch with exit status 0;
- a watcher that never reads is dropped (status counts it, the log says so) while bans keep
  landing: a ban is in the kernel within 1 s of its last event during and after the flood (a
  bound that holds on a loaded machine, not a measurement: bench/ measures)."""
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
from amipeer import AmiPeer  # noqa: E402
from e2elib import SetMonitor  # noqa: E402

t = h.Tap()


def bans():
    return h.pbxguard_bans() or {}


class Watcher:
    """pbxguard watch in a subprocess; lines collected by polling its stdout."""

    def __init__(self, sock, *args):
        self.p = subprocess.Popen([h.CLI, "-s", sock, "watch", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.buf = b""
        self.lines = []
        self.lock = threading.Lock()
        os.set_blocking(self.p.stdout.fileno(), False)

    def pump(self, timeout=0.0):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            return False
        with self.lock:
            try:
                chunk = os.read(self.p.stdout.fileno(), 1 << 20)
            except BlockingIOError:
                return True
            self.buf += chunk
            *done, self.buf = self.buf.split(b"\n")
            self.lines += done
        return bool(chunk)

    def wait(self, pred, timeout=8.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(pred(ln) for ln in list(self.lines)):
                return True
            self.pump(0.05)
        return any(pred(ln) for ln in list(self.lines))

    def follow(self):
        """Reads continuously from a thread: a watcher that keeps up, whatever the test does."""
        def run():
            while self.p.poll() is None:
                self.pump(0.2)
            while self.pump(0):
                pass
        th = threading.Thread(target=run, daemon=True)
        th.start()
        return th

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def records(w):
    out = []
    for ln in w.lines:
        try:
            out.append(json.loads(ln))
        except ValueError:
            pass
    return out


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    sock = os.path.join(tmp, "control.sock")
    conf = h.make_config(tmp, {
        ("ami:local", "port"): str(peer.port),
        ("ami:local", "secret"): "s3cret",
        ("ami:local", "username"): "pbxguard",
    })
    d = h.Daemon(conf)
    t.ok(peer.wait_logged_in(), "the daemon logs in to the AMI peer", d.log())

    def status():
        r = subprocess.run([h.CLI, "-s", sock, "--json", "status"], capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else {}

    wj = Watcher(sock, "--json")
    wt = Watcher(sock)
    t.ok(h.wait_for(lambda: status().get("watch", {}).get("watchers") == 2, timeout=5),
         "two watchers connect at once", status().get("watch"))

    # ---- events, windows, the ban ------------------------------------------------------------
    hostile = [b"\x1b[31mred\x1b[0m", b'quo"te\\back', b"bad\xff\xfeutf8"]
    for i in range(5):
        data = peer.event_bytes("InvalidPassword", "203.0.113.7", account="ACCOUNTXX")
        peer.send_raw(data.replace(b"ACCOUNTXX", hostile[i % 3]))
    t.ok(wj.wait(lambda ln: b'"verdict":"ban"' in ln), "the JSON watcher sees the ban",
         wj.lines[-6:])
    recs = [r for r in records(wj) if r.get("addr") == "203.0.113.7"]
    windows = [(r.get("window"), r.get("threshold"), r.get("verdict")) for r in recs]
    t.eq(windows, [(1.0, 5, "below-threshold"), (2.0, 5, "below-threshold"),
                   (3.0, 5, "below-threshold"), (4.0, 5, "below-threshold"), (5.0, 5, "ban")],
         "each event shows its window against the threshold, the fifth the ban")
    ban = recs[-1].get("ban", {}) if recs else {}
    t.ok(ban.get("prefix") == "203.0.113.7" and ban.get("duration") and ban.get("offence") == 1,
         "the ban record names the prefix, its length and the offence", ban)
    t.ok(recs and all(r.get("source") == "ami:local" and r.get("service") and
                      r.get("event") == "InvalidPassword" for r in recs),
         "records carry the source, service and event", recs[:1])
    t.ok(all(all(b < 0x80 for b in ln) for ln in wj.lines), "--json output is ASCII only")
    accounts = [r.get("account") for r in recs[:3]]
    t.eq(accounts, ["\x1b[31mred\x1b[0m", 'quo"te\\back', "bad\\xff\\xfeutf8"],
         "accounts decode to what was sent; invalid UTF-8 arrives as \\xNN")
    t.ok(wt.wait(lambda ln: b"BAN 203.0.113.7" in ln), "the text watcher sees the ban",
         wt.lines[-6:])
    text = b"\n".join(wt.lines)
    # The daemon sends invalid UTF-8 as \xNN text, whose backslash the terminal output escapes
    # again, as show does for accounts.
    t.ok(b"\x1b" not in text and b"\xff" not in text and b"\\x1b[31mred" in text
         and b"bad\\\\xff\\\\xfeutf8" in text and b'quo\\"te\\\\back' in text,
         "text output escapes control bytes, quotes and invalid UTF-8", text[-600:])
    t.ok(any(b"1/5" in ln and b"below threshold" in ln for ln in wt.lines),
         "text output shows the window against the threshold", wt.lines[:3])

    # ---- why not ----------------------------------------------------------------------------
    r = subprocess.run([h.CLI, "-s", sock, "allow", "198.51.100.9", "--reason", "test"],
                       capture_output=True, text=True)
    peer.send_event("InvalidPassword", "198.51.100.9")
    t.ok(wj.wait(lambda ln: b'"198.51.100.9"' in ln and b'"allowlisted"' in ln),
         "an allowlisted source shows as allowlisted, with the entry", wj.lines[-3:])
    peer.send_event("InvalidPassword", "203.0.113.7")
    t.ok(wj.wait(lambda ln: b'"203.0.113.7"' in ln and b'"already-banned"' in ln),
         "a banned source's next event shows as already banned")
    subprocess.run([h.CLI, "-s", sock, "ban", "192.0.2.77", "--for", "1h"], capture_output=True)
    t.ok(wj.wait(lambda ln: b'"type":"verdict"' in ln and b'"192.0.2.77"' in ln
                 and b'"manual"' in ln), "a manual ban shows as a verdict")

    # ---- Ctrl-C -----------------------------------------------------------------------------
    wt.p.send_signal(signal.SIGINT)
    try:
        rc = wt.p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        rc = None
    t.eq(rc, 0, "Ctrl-C ends a watch with exit status 0")
    wt.close()

    # ---- a watcher that never reads ---------------------------------------------------------
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(sock)
    slow.sendall(b'{"cmd":"watch"}\n')
    t.ok(h.wait_for(lambda: status().get("watch", {}).get("watchers") == 2, timeout=5),
         "a watcher that will never read connects")
    long_account = "x" * 120
    wj.follow()
    mon = SetMonitor()  # sees each ban land in the kernel (netlink), without polling nft
    lat = []
    t0 = time.monotonic()
    for rnd in range(8):
        # 150 events from 150 sources, each below the threshold, with long accounts: about
        # 75 KB of records a round for a watcher that never takes them...
        burst = b"".join(peer.event_bytes("InvalidPassword", f"10.{rnd}.{i // 250}.{i % 250 + 1}",
                                          account=long_account) for i in range(150))
        peer.send_raw(burst)
        last = f'"10.{rnd}.0.150"'.encode()
        wj.wait(lambda ln: last in ln, timeout=10)
        # ...then, once they are judged, a source that reaches the threshold: its ban must
        # land at once, stuck watcher or not.
        ip = f"192.0.2.{100 + rnd}"
        t1 = time.monotonic()
        peer.send_events("InvalidPassword", ip, count=5)
        if mon.wait_added(ip, timeout=5):
            lat.append(mon.added_at(ip) - t1)
    flood_s = time.monotonic() - t0
    st = status().get("watch", {})
    t.ok(st.get("dropped") == 1, "the watcher that never reads is dropped, and counted", st)
    t.ok(d.wait_log("watcher fell more than 256 KiB behind and was dropped", timeout=3),
         "the daemon logs the drop")
    t.eq(len(lat), 8, "every probe source was banned during the flood")
    t.diag("ban latency during the flood: max %.1f ms, probes %s; flood %.1f s" % (
        max(lat or [0]) * 1000, ["%.0f" % (x * 1000) for x in lat], flood_s))
    t.ok(lat and max(lat) < 1.0, "each ban landed within 1 s of its last event")
    t.ok(h.wait_for(lambda: status().get("watch", {}).get("watchers") == 1, timeout=10),
         "the dropped watcher's connection is closed (the reading one stays)")
    got = b""
    slow.settimeout(2)
    try:
        while True:
            chunk = slow.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    slow.close()
    t.ok(b'"type":"dropped"' not in got or got.rstrip().endswith(b"}"),
         "what the slow watcher got is whole lines")
    mon.close()
    t.ok(wj.p.poll() is None, "the reading watcher is still connected")
    t.ok(wj.wait(lambda ln: b'"192.0.2.107"' in ln and b'"ban"' in ln),
         "and it saw the flood's last ban")
    wj.p.send_signal(signal.SIGINT)
    t.eq(wj.p.wait(timeout=5), 0, "--json watch ends with 0 on SIGINT")
    wj.close()

    rc, _ = d.stop()
    t.eq(rc, 0, "the daemon stops cleanly")
t.done()
