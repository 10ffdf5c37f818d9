#!/usr/bin/python3
"""The control plane's limits, against the real pbxguardd and the real CLI in a private network
namespace, with a real unprivileged uid (nobody) and a real group made for the test:

- what a member of control_group may do (read, ban and unban narrow prefixes) and may not
  (--force, a prefix wider than group_min_prefix4/6, reload): refused with exit 1, the rule named;
- the per-uid connection cap: one member's 64 connections cannot lock root out, nor can many
  members together take the slots kept for root;
- a daemon holding 100,000 bans while 64 clients page through `list` at once: another client's
  `status` answers within 100 ms, every lister makes progress, the daemon's memory stays bounded,
  and `pbxguard list --all` still gets every ban (500 per reply, the CLI following the cursor).

The figures (status latencies, pages served, RSS) are printed as TAP comments."""
import atexit
import grp
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
t = h.Tap()

BAN_FIXTURE = os.path.join(h.BUILD, "tests", "ban-fixture")
NOBODY = 65534
GROUP = f"pbxgt{os.getpid()}"
BANS = 100000
LISTERS = 64
STORM_S = 8.0

for tool in ("groupadd", "groupdel", "setpriv"):
    if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
        h.skip_all(f"{tool} not found (scripts/deps.sh installs it)")


def _groupdel():
    subprocess.run(["groupdel", GROUP], capture_output=True)


atexit.register(_groupdel)
subprocess.run(["groupadd", GROUP], check=True)
GID = grp.getgrnam(GROUP).gr_gid


def as_user(uid, argv, member=True):
    groups = [f"--groups={GID}"] if member else ["--clear-groups"]
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", *groups, *argv]


def call(s, obj):
    s.sendall((json.dumps(obj) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed without a reply")
        buf += chunk
    return json.loads(buf)


# A helper process that holds connections of one uid: it opens N of them, each asking a cheap
# request at once (an unknown command: a usage error, which the daemon answers to anyone it
# serves) so that the first line tells a kept connection from a refused one; it says on stdout
# how many the daemon refused (and with what), then keeps the others busy with the same request
# every second (so the daemon's 5 s idle deadline does not drop them) until its stdin closes.
HOLDER = r'''
import json, select, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
def ask(s):
    try:
        s.sendall(b'{"cmd":"ping"}\n')
    except OSError:
        pass
    s.settimeout(10)
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(4096)
        if not c:
            break
        buf += c
    return buf.decode(errors="replace").strip()
kept, refused, why = [], 0, ""
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    line = ask(s)
    if "unknown command" in line:
        kept.append(s)
    else:
        refused += 1
        why = why or line
        s.close()
print(json.dumps({"kept": len(kept), "refused": refused, "why": why}), flush=True)
while True:
    r, _, _ = select.select([sys.stdin], [], [], 1.0)
    if r:
        break
    for s in kept:
        ask(s)
'''


class Holder:
    def __init__(self, sock, uid, n):
        self.p = subprocess.Popen(as_user(uid, [sys.executable, "-c", HOLDER, sock, str(n)]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        self.result = json.loads(line) if line else {"kept": 0, "refused": 0, "why": "died"}

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        h.stop_process(self.p)


# 64 listers in one process, one non-blocking socket each: every lister pages through the whole
# listing (following "cursor"), starts over, and so on for the given time; at the end it prints
# the pages and rows each one got and any error reply. (Replies left unread, which hold the
# daemon's reply memory, are ctl_socket.py's.)
STORM = r'''
import json, selectors, socket, sys, time
path, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sel = selectors.DefaultSelector()
state = []
def ask(i):
    st = state[i]
    req = {"cmd": "list"}
    if st["cursor"]:
        req["cursor"] = st["cursor"]
    st["sock"].sendall((json.dumps(req) + "\n").encode())
for i in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.setblocking(False)
    state.append({"sock": s, "buf": b"", "cursor": None, "pages": 0, "rows": 0, "listings": 0})
    sel.register(s, selectors.EVENT_READ, i)
for i in range(n):
    ask(i)
end = time.monotonic() + seconds
errors = []
while time.monotonic() < end:
    for key, _ in sel.select(timeout=0.1):
        st = state[key.data]
        try:
            chunk = st["sock"].recv(1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            errors.append("closed")
            sel.unregister(st["sock"])
            continue
        st["buf"] += chunk
        if not st["buf"].endswith(b"\n"):
            continue
        line, st["buf"] = st["buf"], b""
        if not line.startswith(b'{"ok":true'):
            errors.append(line[:300].decode(errors="replace"))
            st["cursor"] = None
        else:
            st["pages"] += 1
            st["rows"] += line.count(b'"prefix":')
            tail = line[-200:]
            at = tail.rfind(b'"cursor":"')
            st["cursor"] = tail[at + 10:tail.index(b'"', at + 10)].decode() if at >= 0 else None
            if st["cursor"] is None:
                st["listings"] += 1
        ask(key.data)
print(json.dumps({"pages": [s["pages"] for s in state], "rows": [s["rows"] for s in state],
                  "listings": [s["listings"] for s in state], "errors": errors[:5],
                  "nerrors": len(errors)}))
'''

# One status every gap seconds over its own connection, from a process of its own; prints the
# round trips in ms.
PROBE = r'''
import json, socket, sys, time
path, n, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_UNIX)
s.connect(path)
s.settimeout(30)
out = []
for _ in range(n):
    t0 = time.perf_counter()
    s.sendall(b'{"cmd":"status"}\n')
    buf = b""
    while not buf.endswith(b"\n"):
        buf += s.recv(65536)
    out.append(round((time.perf_counter() - t0) * 1000, 2))
    assert buf.startswith(b'{"ok":true'), buf[:200]
    time.sleep(gap)
print(json.dumps(out))
'''


def cpu_ms(pid):
    """User + system CPU time of a process so far, in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def start(conf, sock, timeout=60):
    d = h.Daemon(conf)
    up = h.wait_for(lambda: not d.running() or (os.path.exists(sock) and subprocess.run(
        [h.CLI, "-s", sock, "status"], capture_output=True).returncode == 0), timeout)
    return d, bool(up) and d.running()


with h.TempDir() as d:
    os.chmod(d, 0o755)
    sock = os.path.join(d, "control.sock")
    conf = h.make_config(d, {("general", "control_group"): GROUP,
                             ("general", "log_level"): "notice"})
    with open(conf) as f:
        conf_text = f.read()
    with open(conf, "w") as f:
        f.write(conf_text.replace("[whitelist]\n", "[whitelist]\ncidr = 192.0.2.0/24\n", 1))

    def cli(*args, uid=None, member=True):
        argv = [h.CLI, "-s", sock, *args]
        if uid is not None:
            argv = as_user(uid, argv, member)
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    # ---- privileges -------------------------------------------------------------------------
    srv, up = start(conf, sock)
    t.ok(up, "pbxguardd starts with control_group set", srv.log())
    t.eq(os.stat(sock).st_gid, GID, "the socket belongs to the control group")

    r = cli("status", uid=NOBODY)
    t.ok(r.returncode == 0 and r.stdout.startswith("pbxguardd "),
         "a member of control_group reads the status", r.stderr)
    r = cli("--json", "ban", "203.0.113.7", "--for", "10m", uid=NOBODY)
    ok = r.returncode == 0 and json.loads(r.stdout)["ban"]["origin"] == f"cli:uid={NOBODY}"
    t.ok(ok, "a member bans a single address, recorded as theirs", r.stdout + r.stderr)
    t.ok("203.0.113.7" in (h.pbxguard_bans() or {}), "and it is in the kernel")
    r = cli("ban", "198.51.100.0/24", uid=NOBODY)
    t.eq(r.returncode, 0, "a member bans a /24 (group_min_prefix4 = 24)")
    r = cli("unban", "198.51.100.0/24", uid=NOBODY)
    t.eq(r.returncode, 0, "and lifts it")
    r = cli("list", uid=NOBODY)
    t.ok(r.returncode == 0 and "203.0.113.7" in r.stdout, "a member lists the bans", r.stderr)
    r = cli("show", "203.0.113.7", uid=NOBODY)
    t.eq(r.returncode, 0, "a member shows an address")

    r = cli("ban", "192.0.2.10", "--force", uid=NOBODY)
    t.ok(r.returncode == 1 and "permission denied: --force" in r.stderr and "root" in r.stderr,
         "a member's --force is refused with exit 1, the rule named", r.stderr)
    r = cli("ban", "203.0.113.20", "--force", uid=NOBODY)
    t.ok(r.returncode == 1 and "--force" in r.stderr,
         "even for an address nobody whitelisted", r.stderr)
    r = cli("ban", "10.0.0.0/7", uid=NOBODY)
    t.ok(r.returncode == 1 and "10.0.0.0/7 is wider than /24" in r.stderr
         and "group_min_prefix4" in r.stderr,
         "a member's /7 is refused with exit 1, naming group_min_prefix4", r.stderr)
    r = cli("--json", "ban", "10.0.0.0/7", uid=NOBODY)
    t.ok(r.returncode == 1 and json.loads(r.stdout or "{}").get("rule") == "group-prefix",
         "the refusal names its rule for scripts too (rule: group-prefix)", r.stdout)
    r = cli("ban", "2001:db8::/32", uid=NOBODY)
    t.ok(r.returncode == 1 and "group_min_prefix6" in r.stderr,
         "a member's IPv6 /32 is refused, naming group_min_prefix6", r.stderr)
    r = cli("reload", uid=NOBODY)
    t.ok(r.returncode == 1 and "permission denied: reload is for root" in r.stderr,
         "a member's reload is refused with exit 1", r.stderr)
    t.ok(not any(k.startswith(("10.0.0.0", "2001:db8::/32", "203.0.113.20"))
                 for k in (h.pbxguard_bans() or {})), "nothing refused reached the kernel",
         h.pbxguard_bans())
    t.ok("configuration reloaded" not in srv.log(), "and the daemon did not reload")

    r = cli("ban", "198.51.100.0/22", "--for", "10m")
    t.eq(r.returncode, 0, "root bans a /22")
    r = cli("unban", "198.51.100.0/22", uid=NOBODY)
    t.ok(r.returncode == 1 and "wider than /24" in r.stderr,
         "a member may not lift root's /22", r.stderr)
    r = cli("ban", "192.0.2.10", "--force", "--for", "10m")
    t.eq(r.returncode, 0, "root's --force bans a whitelisted address")
    r = cli("reload")
    t.eq((r.returncode, r.stdout), (0, "configuration reloaded\n"), "root reloads")
    r = cli("status", uid=NOBODY, member=False)
    t.ok(r.returncode == 1 and "permission denied" in r.stderr,
         "the same uid without the group is refused altogether", r.stderr)

    # ---- connections per uid ----------------------------------------------------------------
    hog = Holder(sock, NOBODY, 64)
    t.ok(hog.result["kept"] == 16 and hog.result["refused"] == 48
         and "too many connections" in hog.result["why"],
         "one member's 64 connections: 16 kept, 48 refused at once", hog.result)
    t0 = time.monotonic()
    r = cli("status")
    took = time.monotonic() - t0
    t.ok(r.returncode == 0 and took < 5, "root is still served meanwhile",
         f"{took:.2f}s {r.stderr}")
    t.diag(f"root's status with one member holding its 16 connections: {took * 1000:.0f} ms")
    r = cli("status", uid=NOBODY)
    t.ok(r.returncode == 1 and "too many connections" in r.stderr and str(NOBODY) in r.stderr,
         "that member's next command is refused with exit 1 and the reason", r.stderr)
    r = cli("status", uid=NOBODY - 1)
    t.eq(r.returncode, 0, "another member is served")
    # Members together may hold 112 of the 128 slots; 16 are kept for root.
    others = [Holder(sock, NOBODY - 1 - i, 16) for i in range(7)]
    kept = hog.result["kept"] + sum(o.result["kept"] for o in others)
    refused = [o.result for o in others if o.result["refused"]]
    t.ok(kept == 112 and len(refused) == 1 and "kept for root" in refused[0]["why"],
         "eight members with 16 connections each: 112 kept, the rest refused (kept for root)",
         f"kept {kept}, refusals {refused}")
    t0 = time.monotonic()
    r = cli("--json", "status")
    took = time.monotonic() - t0
    t.ok(r.returncode == 0 and took < 5, "root is still served with every member slot taken",
         f"{took:.2f}s {r.stderr}")
    t.diag(f"root's status with 112 member connections held: {took * 1000:.0f} ms")
    for o in [hog, *others]:
        o.close()
    srv.stop()
    h.nft("delete", "table", "inet", "pbxguard", check=False)

    # ---- 100k bans, 64 listers at once ------------------------------------------------------
    db = os.path.join(d, "pbxguard.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    r = subprocess.run([BAN_FIXTURE, db, str(BANS)], capture_output=True, text=True, timeout=600)
    t.eq(r.stdout.strip(), f"{BANS} bans", "the fixture database holds 100k active bans")
    srv, up = start(conf, sock, timeout=180)
    t.ok(up, "the daemon starts on them", srv.log()[-2000:])
    base_rss = h.proc_status(srv.pid, "VmRSS")
    base_anon = h.proc_status(srv.pid, "RssAnon")

    cpu0 = cpu_ms(srv.pid)
    storm = subprocess.Popen([sys.executable, "-c", STORM, sock, str(LISTERS), str(STORM_S)],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    probe = subprocess.Popen([sys.executable, "-c", PROBE, sock, "20", "0.2"],
                             stdout=subprocess.PIPE, text=True)
    peak_rss = peak_anon = 0
    while storm.poll() is None:
        peak_rss = max(peak_rss, h.proc_status(srv.pid, "VmRSS") or 0)
        peak_anon = max(peak_anon, h.proc_status(srv.pid, "RssAnon") or 0)
        time.sleep(0.05)
    try:
        lat = json.loads(probe.communicate(timeout=60)[0] or "[]")
        st = json.loads(storm.communicate(timeout=60)[0] or "{}")
    except (subprocess.TimeoutExpired, ValueError) as e:
        lat, st = [], {}
        t.diag(f"helper failed: {e}")
    hwm = h.proc_status(srv.pid, "VmHWM")
    cpu = cpu_ms(srv.pid) - cpu0

    pages = st.get("pages", [])
    t.diag(f"{LISTERS} listers over {STORM_S:.0f} s: {sum(pages)} pages "
           f"({sum(st.get('rows', []))} rows), per lister min {min(pages or [0])} "
           f"max {max(pages or [0])}, whole listings {sum(st.get('listings', []))}; "
           f"daemon CPU {cpu:.0f} ms, {cpu / max(1, sum(pages)):.1f} ms per page")
    if lat:
        t.diag(f"status during the storm, {len(lat)} samples: median "
               f"{statistics.median(lat):.1f} ms, max {max(lat):.1f} ms; all: {lat}")
    t.diag(f"daemon RSS: {base_rss} kB after start, peak {peak_rss} kB (VmHWM {hwm} kB); "
           f"anonymous {base_anon} kB after start, peak {peak_anon} kB")
    t.ok(len(lat) == 20 and max(lat) <= 100,
         "another client's status answers within 100 ms while 64 clients list 100k bans", lat)
    t.ok(st.get("nerrors", 1) == 0, "no lister got an error", st.get("errors"))
    t.ok(len(pages) == LISTERS and min(pages) >= 1 and sum(pages) >= 2 * LISTERS,
         "every one of the 64 listers got pages (none starved)", pages)
    t.ok(srv.running(), "the daemon is still running")
    if h.SANITIZED:
        t.skip("the daemon's memory stays bounded", "ASan build: memory figures mean nothing")
    else:
        t.ok(peak_anon - base_anon < 64 * 1024,
             "the daemon's anonymous memory grows by less than 64 MB under the storm",
             f"{base_anon} -> {peak_anon} kB")

    r = cli("--json", "list", "--all")
    try:
        listed = json.loads(r.stdout)
    except ValueError:
        listed = {}
    bans = listed.get("bans", [])
    t.ok(r.returncode == 0 and len(bans) == BANS and listed.get("total") == BANS
         and listed.get("truncated") is False,
         "pbxguard list --all --json follows the cursor to every one of the 100k bans",
         f"rc={r.returncode} n={len(bans)} total={listed.get('total')} {r.stderr[-500:]}")
    t.ok(len({b["prefix"] for b in bans}) == BANS, "each ban once")
    r = cli("list")
    lines = r.stdout.splitlines()
    t.ok(r.returncode == 0 and len(lines) == 1002
         and lines[-1] == f"1000 of {BANS} active bans shown (--limit N or --all for more)",
         "pbxguard list shows the first 1000 and says how many there are", lines[-1:])
    r = cli("list", "--limit", "2500")
    lines = r.stdout.splitlines()
    t.ok(r.returncode == 0 and len(lines) == 2502
         and lines[-1] == f"2500 of {BANS} active bans shown (--limit N or --all for more)",
         "pbxguard list --limit 2500 follows the cursor for 2500", lines[-1:])
    col = lines[0].index("REMAINING")
    t.ok(all(x[col - 2:col] == "  " and x[col] != " " for x in lines[1:-1]),
         "and its columns line up across pages", lines[:3])

    srv.stop()
    h.nft("delete", "table", "inet", "pbxguard", check=False)

t.done()
