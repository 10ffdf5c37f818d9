#!/usr/bin/python3
"""The control socket's own guarantees, tested against a tiny real server (tests/tools/ctl-echo)
that runs the daemon's ctl module with an echoing handler: file mode and ownership, peer
credentials checked by the server, size cap, deadline, many clients, stale-socket handling."""
import atexit
import json
import os
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
ECHO = os.path.join(h.BUILD, "tests", "ctl-echo")
t = h.Tap()


SERVERS = []


@atexit.register
def _stop_servers():
    for p in SERVERS:
        if p.poll() is None:
            p.kill()
            p.wait()


class Server:
    def __init__(self, path, group=None):
        args = [ECHO, path] + ([group] if group else [])
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        SERVERS.append(self.p)
        self.line = self.p.stdout.readline().strip()

    def stop(self):
        return h.stop_process(self.p)[0]


def connect(path, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def read_line(s, limit=1 << 20):
    buf = b""
    while b"\n" not in buf and len(buf) < limit:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def request(path, obj):
    with connect(path) as s:
        s.sendall((json.dumps(obj) + "\n").encode())
        return json.loads(read_line(s))


def as_nobody(path, obj):
    """Sends one request as uid/gid 65534 with no supplementary groups; returns the reply line."""
    code = ("import socket,sys;s=socket.socket(socket.AF_UNIX);s.settimeout(5);"
            "s.connect(sys.argv[1])\n"
            "try: s.sendall(sys.argv[2].encode()+b'\\n')\n"
            "except OSError: pass\n"
            "print(s.recv(65536).decode().strip())")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", code, path, json.dumps(obj)],
                       capture_output=True, text=True, timeout=10)
    return r.stdout.strip(), r.stderr


def closed_within(s, seconds):
    """True if the server closes s within seconds (reads and discards whatever it sends)."""
    s.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if s.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


with h.TempDir() as d:
    os.chmod(d, 0o755)  # so the other-uid client reaches the socket: only the server may refuse
    path = os.path.join(d, "run", "control.sock")
    srv = Server(path)
    t.eq(srv.line, "ready", "the server listens (creating the socket's directory)")

    st = os.stat(path)
    t.ok(stat.S_ISSOCK(st.st_mode), "the control socket is a unix socket")
    t.eq(stat.S_IMODE(st.st_mode), 0o600, "the socket is mode 0600 without a control group")
    t.eq(st.st_uid, 0, "the socket is owned by root")

    r = request(path, {"cmd": "status", "x": [1, 2]})
    t.eq((r.get("ok"), r.get("cmd"), r.get("req")), (True, "status", {"cmd": "status", "x": [1, 2]}),
         "a request line gets one reply line carrying the handler's answer")
    t.eq(r.get("peer", {}).get("uid"), 0, "the handler sees the peer's uid from SO_PEERCRED")

    with connect(path) as s:
        s.sendall(b"{not json\n")
        r = json.loads(read_line(s))
    t.eq((r.get("ok"), r.get("code")), (False, 2), "malformed JSON is answered as a usage error")
    t.ok("malformed request" in r.get("error", ""), "the error says the request is malformed",
         r)

    t.eq(request(path, ["cmd"]).get("code"), 2, "a request that is not an object is a usage error")
    t.eq(request(path, {"nocmd": 1}).get("code"), 2, "a request without cmd is a usage error")
    t.eq(request(path, {"cmd": "fail"}), {"ok": False, "error": "failed as asked", "code": 1},
         "a handler's error reply reaches the client unchanged")

    with connect(path) as s:
        s.sendall(b'{"cmd":"one"}\n{"cmd":"two"}\n')
        got = b""
        while got.count(b"\n") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        cmds = [json.loads(x)["cmd"] for x in got.splitlines()]
    t.eq(cmds, ["one", "two"], "pipelined requests on one connection are answered in order")

    with connect(path) as s:
        s.sendall(b'{"cmd":"last"}\n')
        s.shutdown(socket.SHUT_WR)
        r = json.loads(read_line(s))
        t.eq(r.get("cmd"), "last", "a client that half-closes after its request still gets the reply")
        t.ok(closed_within(s, 2), "and the server then closes the connection")

    # Security: file permissions are not the only gate.
    os.chmod(path, 0o666)
    out, err = as_nobody(path, {"cmd": "status"})
    try:
        r = json.loads(out)
    except ValueError:
        r = {}
    t.eq((r.get("ok"), r.get("code")), (False, 1),
         "a non-root peer is refused by the server even through a 0666 socket")
    t.ok("permission denied" in r.get("error", "") and "65534" in r.get("error", ""),
         "the refusal names the uid", out + err)

    # A client that sends 10 MB without a newline is cut off; others are still served.
    big = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    big.connect(path)
    big.settimeout(5)
    sent = 0
    cut = False
    chunk = b"x" * 65536
    while sent < 10 * 1024 * 1024:
        try:
            sent += big.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            cut = True
            break
        except socket.timeout:
            break
    if not cut:
        cut = closed_within(big, 3)
    big.close()
    t.ok(cut, "a client sending 10 MB without a newline is cut off",
         f"sent {sent} bytes")
    t.eq(request(path, {"cmd": "after-flood"}).get("cmd"), "after-flood",
         "the server keeps answering others after the flood")

    with connect(path) as s:
        s.sendall(b"y" * (70 * 1024))
        r = read_line(s)
    t.ok(b"request too long" in r, "an oversized request is told why before being cut off", r)

    # A client that connects and stalls is cut off after the deadline; meanwhile others are served.
    staller = connect(path)
    half = connect(path)
    half.sendall(b'{"cmd":"never-fin')
    t0 = time.monotonic()
    t.eq(request(path, {"cmd": "during-stall"}).get("cmd"), "during-stall",
         "a stalled client does not delay others")
    t.ok(closed_within(staller, 9), "a client that connects and says nothing is cut off")
    t.ok(closed_within(half, 9), "a client that stops mid-request is cut off")
    waited = time.monotonic() - t0
    t.diag(f"stalled clients cut after {waited:.1f} s (deadline 5 s)")
    staller.close()
    half.close()

    # Many clients at once, more than the server serves at a time (128): every one answered, the
    # extra ones once earlier ones leave (they wait in the listen backlog, not turned away).
    socks = [connect(path) for _ in range(200)]
    for i, s in enumerate(socks):
        s.sendall((json.dumps({"cmd": f"c{i}"}) + "\n").encode())
    answers = []
    for s in socks:
        try:
            answers.append(json.loads(read_line(s)).get("cmd"))
        except (ValueError, OSError):
            answers.append(None)
        s.close()
    t.eq(answers, [f"c{i}" for i in range(200)], "200 concurrent clients are all answered")

    # 60,000 empty lines in one go: each is a malformed request with its own error reply, but
    # they are budgeted like any request, so another client is answered meanwhile.
    flood = connect(path, timeout=30)
    flood.sendall(b"\n" * 60000)
    time.sleep(0.2)
    t0 = time.monotonic()
    t.eq(request(path, {"cmd": "beside-flood"}).get("cmd"), "beside-flood",
         "another client is answered while 60,000 malformed lines are worked off")
    took = time.monotonic() - t0
    lines = 0
    try:
        while lines < 60000:
            chunk = flood.recv(1 << 20)
            if not chunk:
                break
            lines += chunk.count(b"\n")
    except OSError:
        pass
    flood.close()
    t.diag(f"the other client waited {took * 1000:.1f} ms")
    t.ok(took < 1.0 and lines == 60000, "and each of the 60,000 lines got its error reply",
         f"{lines} replies, other client {took:.2f} s")

    # Reply memory is shared: 24 clients ask for a page (1 MiB) each and read nothing. The
    # server queues no more than 16 MiB of replies in all; the other pages wait, a light request
    # is still answered at once, and every page arrives once the readers read.
    readers = [connect(path, timeout=20) for _ in range(24)]
    for s in readers:
        s.sendall(b'{"cmd":"page"}\n')
    time.sleep(0.5)
    t0 = time.monotonic()
    c = request(path, {"cmd": "clients"})
    took = time.monotonic() - t0
    t.diag(f"24 unread pages: {c.get('reply_bytes')} bytes queued, {c.get('waiting')} waiting; "
           f"a light request took {took * 1000:.1f} ms")
    t.ok(0 < c.get("reply_bytes", 0) <= 16 * 1024 * 1024 and c.get("waiting", 0) >= 8,
         "unread pages hold at most 16 MiB of the server's memory; the rest wait", c)
    t.ok(took < 1.0, "a light request is answered meanwhile", f"{took:.2f} s")
    got = []
    for s in readers:
        try:
            got.append(len(read_line(s, limit=2 << 20)))
        except OSError:
            got.append(0)
        s.close()
    t.ok(all(n > 1000000 for n in got), "and every page arrives once its reader reads", got)

    # A live daemon's socket is never taken over.
    second = Server(path)
    t.ok(second.line.startswith("error:") and "in use" in second.line,
         "a second server refuses to replace a live socket", second.line)
    second.p.wait(timeout=5)
    t.eq(request(path, {"cmd": "still"}).get("cmd"), "still", "the first server still serves")

    # A stale socket from a dead daemon is replaced.
    srv.p.kill()
    srv.p.wait()
    t.ok(os.path.exists(path), "a killed server leaves its socket file behind")
    srv = Server(path)
    t.eq(srv.line, "ready", "a new server replaces the stale socket")
    t.eq(request(path, {"cmd": "fresh"}).get("cmd"), "fresh", "and serves on it")
    t.eq(srv.stop(), 0, "the server stops on SIGTERM")
    t.ok(not os.path.exists(path), "a stopping server removes its socket")

    # Something that is not a socket is left alone.
    with open(path, "w") as f:
        f.write("not a socket")
    other = Server(path)
    t.ok(other.line.startswith("error:"), "a regular file at the socket path is not replaced",
         other.line)
    other.p.wait(timeout=5)
    t.ok(os.path.isfile(path), "the file is still there")
    os.unlink(path)

    # With a control group: 0660, that group, and its members are admitted.
    srv = Server(path, "nogroup")
    t.eq(srv.line, "ready", "the server starts with control_group = nogroup")
    st = os.stat(path)
    t.eq((stat.S_IMODE(st.st_mode), st.st_gid), (0o660, 65534),
         "with a control group the socket is 0660 and owned by that group")
    out, err = as_nobody(path, {"cmd": "member"})
    try:
        r = json.loads(out)
    except ValueError:
        r = {}
    t.ok((r.get("ok"), r.get("peer", {}).get("uid")) == (True, 65534),
         "a member of the control group is admitted", out + err)
    srv.stop()

    srv = Server(path, "no-such-group-pbxguard")
    t.ok(srv.line.startswith("error:"), "an unknown control group is refused at start", srv.line)
    srv.p.wait(timeout=5)

t.done()
