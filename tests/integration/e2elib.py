"""End-to-end helpers: the whole daemon, a fast scripted AMI server, attacker namespaces joined
by veth, and a netlink listener that sees bans land in the kernel.

Used by the end-to-end and fault-injection tests (tests/integration/e2e_*.py), by
bench/bench_e2e.py and by scripts/demo. Everything here runs inside a network namespace the
caller made (harness.in_private_netns()); namespaces created here are always deleted.

    import harness as h, e2elib as e
    h.in_private_netns(); h.setup_loopback()
    with h.TempDir() as tmp:
        ami = e.AmiServer().start()
        d = e.Daemon(tmp, ami.port).start()
        ami.wait_login()
        ami.send(e.ami_event("ChallengeResponseFailed", "192.0.2.10") * 5)
"""
import hashlib
import ipaddress
import json
import os
import re
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time

import harness as h

# ---------------------------------------------------------------------------------------------
# AMI wire: security events as Asterisk 20 writes them (tests/fixtures/ami/*.raw).

_EXTRA = {
    "ChallengeResponseFailed": [("Challenge", "1795683732/2cf5b232de35410044f7b934dffc488f"),
                                ("Response", "187680b64e33655435fcde20bdf95dcf"),
                                ("ExpectedResponse", "")],
    "InvalidPassword": [],
    "InvalidAccountID": [],
    "FailedACL": [],
    "ChallengeSent": [("Challenge", "1795683732/2cf5b232de35410044f7b934dffc488f")],
    "SuccessfulAuth": [("UsingPassword", "0")],
    "RequestNotAllowed": [("RequestType", "Action: Originate")],
    "RequestBadFormat": [("RequestType", "Action: NONE")],
}
_SEVERITY = {"SuccessfulAuth": "Informational", "ChallengeSent": "Informational"}
_VERSION = {"InvalidPassword": "2"}


def ami_address(ip, port, transport="UDP"):
    fam = "IPV6" if ":" in ip else "IPV4"
    return f"{fam}/{transport}/{ip}/{port}" if transport else f"{fam}/{ip}/{port}"


def event_tv(t=None):
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}+0000"


def event_fields(name, ip, port=5060, service="PJSIP", account="1001", transport="UDP",
                 session=None, tv=None):
    """A security event's fields, in the order Asterisk writes them (AMI and the log alike)."""
    local = "IPV4/UDP/192.0.2.1/5060" if ":" not in ip else "IPV6/UDP/2001:db8::1/5060"
    if service == "AMI":
        transport = "TCP"
        local = "IPV4/TCP/0.0.0.0/5038"
    fields = [("EventTV", tv or event_tv()), ("Severity", _SEVERITY.get(name, "Error")),
              ("Service", service), ("EventVersion", _VERSION.get(name, "1")),
              ("AccountID", account), ("SessionID", session or f"{os.urandom(6).hex()}@e2e"),
              ("LocalAddress", local), ("RemoteAddress", ami_address(ip, port, transport))]
    return fields + _EXTRA.get(name, [])


def ami_event(name, ip, port=5060, service="PJSIP", account="1001", transport="UDP",
              session=None, tv=None):
    """One security event frame, bytes, exactly as Asterisk writes it."""
    lines = [("Event", name), ("Privilege", "security,all")]
    lines += event_fields(name, ip, port, service, account, transport, session, tv)
    return ("".join(f"{k}: {v}\r\n" for k, v in lines) + "\r\n").encode()


def seclog_line(name, ip, port=5060, service="PJSIP", account="1001", transport="UDP",
                session=None, tv=None, when=None):
    """The same event as one line of Asterisk's security log (res_security_log, logger.conf
    "security => security", dateformat "%F %T.%3q"), bytes with its newline. Values are not
    escaped, as Asterisk does not escape them."""
    when = time.time() if when is None else when
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) + f".{int(when % 1 * 1000):03d}"
    body = f'SecurityEvent="{name}"' + "".join(
        f',{k}="{v}"' for k, v in event_fields(name, ip, port, service, account, transport,
                                                session, tv))
    return f"[{date}] SECURITY[4711] res_security_log.c: {body}\n".encode()


def attack(ip, n, name="ChallengeResponseFailed", **kw):
    """n failures from ip, as one byte string."""
    return b"".join(ami_event(name, ip, port=40000 + i % 20000, **kw) for i in range(n))


def fixture_frames(path):
    """The frames of a real AMI capture (tests/fixtures/ami/*.raw), banner dropped."""
    with open(path, "rb") as f:
        data = f.read()
    frames = data.split(b"\r\n\r\n")
    if frames and frames[0].startswith(b"Asterisk Call Manager/"):
        frames[0] = frames[0].split(b"\r\n", 1)[1] if b"\r\n" in frames[0] else b""
    return [fr + b"\r\n\r\n" for fr in frames if fr.strip()]


_REMOTE = re.compile(rb"^RemoteAddress: (IPV[46])/((?:[A-Z]+/)?)([^/\r\n]+)/(\d+)\r$", re.M)


def rewrite_remote(frame, ip):
    """The frame with its RemoteAddress pointing at ip (family written to match)."""
    fam = b"IPV6" if ":" in ip else b"IPV4"
    return _REMOTE.sub(lambda m: b"RemoteAddress: " + fam + b"/" + m.group(2) + ip.encode()
                       + b"/" + m.group(4) + b"\r", frame)


# ---------------------------------------------------------------------------------------------
# A fast scripted AMI server. One client (the daemon) at a time; plain and MD5 login; Events,
# Ping, Logoff answered; events pushed by the test with send(). Restartable.

class AmiServer:
    def __init__(self, host="127.0.0.1", port=0, username="guard", secret="guardpass",
                 version="9.0.0"):
        self.host, self.port = host, port
        self.username, self.secret, self.version = username, secret, version
        self.lsock = None
        self.conn = None
        self.lock = threading.Lock()          # one writer at a time on the connection
        self.cv = threading.Condition()
        self.logins = 0                        # successful logins so far
        self.failed_logins = 0
        self.actions = []                      # action names received, in order
        self.stopping = False
        self.thread = None

    def start(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(8)
        self.port = s.getsockname()[1]
        self.lsock = s
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()
        return self

    # The listener is closed only after the accept thread has stopped using it.

    def _accept_loop(self):
        ls = self.lsock
        while not self.stopping:
            try:
                r, _, _ = select.select([ls], [], [], 0.2)
                if not r:
                    continue
                c, _ = ls.accept()
            except (OSError, ValueError):
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            old = self.conn
            with self.cv:
                self.conn = c
                self.session_logged_in = False
            if old:
                _close(old)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _write(self, c, data):
        with self.lock:
            c.sendall(data)

    def _serve(self, c):
        try:
            self._write(c, f"Asterisk Call Manager/{self.version}\r\n".encode())
            buf = b""
            challenge = None
            while not self.stopping:
                r, _, _ = select.select([c], [], [], 0.2)
                if not r:
                    continue
                data = c.recv(65536)
                if not data:
                    break
                buf += data.replace(b"\r\n", b"\n")
                while b"\n\n" in buf:
                    raw, buf = buf.split(b"\n\n", 1)
                    msg = {}
                    for line in raw.decode(errors="replace").split("\n"):
                        if ":" in line:
                            k, v = line.split(":", 1)
                            msg[k.strip().lower()] = v.strip()
                    act = msg.get("action", "").lower()
                    aid = msg.get("actionid")
                    idl = f"ActionID: {aid}\r\n" if aid else ""
                    with self.cv:
                        self.actions.append(act)
                    if act == "challenge":
                        challenge = str(int.from_bytes(os.urandom(3), "big"))
                        self._write(c, f"Response: Success\r\n{idl}Challenge: {challenge}\r\n\r\n"
                                    .encode())
                    elif act == "login":
                        ok = msg.get("username") == self.username
                        if msg.get("authtype", "").lower() == "md5":
                            want = hashlib.md5((challenge or "").encode()
                                               + self.secret.encode()).hexdigest()
                            ok = ok and challenge is not None and msg.get("key") == want
                        else:
                            ok = ok and msg.get("secret") == self.secret
                        if not ok:
                            self._write(c, f"Response: Error\r\n{idl}Message: Authentication "
                                        "failed\r\n\r\n".encode())
                            with self.cv:
                                self.failed_logins += 1
                                self.cv.notify_all()
                            _close(c)
                            return
                        self._write(c, f"Response: Success\r\n{idl}Message: Authentication "
                                    "accepted\r\n\r\n".encode())
                        self._write(c, ami_event("SuccessfulAuth", "127.0.0.1", 53226,
                                                 service="AMI", account=self.username))
                        with self.cv:
                            self.logins += 1
                            self.session_logged_in = True
                            self.cv.notify_all()
                    elif act == "ping":
                        self._write(c, f"Response: Success\r\n{idl}Ping: Pong\r\nTimestamp: "
                                    f"{time.time():.6f}\r\n\r\n".encode())
                    elif act == "events":
                        self._write(c, f"Response: Success\r\n{idl}Events: On\r\n\r\n".encode())
                    elif act == "logoff":
                        self._write(c, f"Response: Goodbye\r\n{idl}Message: Thanks for all the "
                                    "fish.\r\n\r\n".encode())
                        _close(c)
                        return
                    else:
                        self._write(c, f"Response: Error\r\n{idl}Message: Invalid/unknown "
                                    "command\r\n\r\n".encode())
        except OSError:
            pass

    def wait_login(self, count=1, timeout=15.0):
        """Waits until the daemon has logged in count times in all; True if it has."""
        with self.cv:
            return self.cv.wait_for(lambda: self.logins >= count, timeout=timeout)

    def send(self, data):
        """Writes data to the daemon's session; returns time.monotonic() after the last byte
        left (sendall returned), or None if no session is connected."""
        c = self.conn
        if c is None:
            return None
        try:
            self._write(c, data)
        except OSError:
            return None
        return time.monotonic()

    def drop(self):
        """Closes the daemon's current session (Asterisk going away), listener kept."""
        c, self.conn = self.conn, None
        if c:
            _close(c)

    def restart(self, down_s=0.0):
        """Closes the listener and the session, then listens again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def stop(self):
        self.stopping = True
        if self.thread:
            self.thread.join(2)
        if self.lsock:
            self.lsock.close()
            self.lsock = None
        self.drop()


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


# ---------------------------------------------------------------------------------------------
# The kernel's side: nf_tables notifications over netlink (NETLINK_NETFILTER, group
# NFNLGRP_NFTABLES). Records when each address first entered (and left) a set of our table, so a
# test never has to list a big set; the kernel pushes every change as it commits it.

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE = 0, 2
NFT_MSG_DELSET = 11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFT_MSG_NEWGEN = 15  # sent once per committed transaction, after its changes
NFNL_SUBSYS_NFTABLES = 10


def _attrs(buf):
    off = 0
    while off + 4 <= len(buf):
        ln, ty = struct.unpack_from("=HH", buf, off)
        if ln < 4:
            return
        yield ty & 0x3FFF, buf[off + 4:off + ln]
        off += (ln + 3) & ~3


class SetMonitor:
    def __init__(self, table="pbxguard"):
        self.table = table
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
        self.cv = threading.Condition()
        self.added = {}       # address string -> monotonic time of the first add seen
        self.deleted = {}     # address string -> monotonic time of the last delete seen
        self.n_added = 0
        self.gens = 0         # transactions committed (NEWGEN) since the monitor started
        self.added_gen = {}   # address string -> transactions committed before its add
        self.table_deleted = 0
        self.overflows = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if not r:
                    continue
                data = self.sock.recv(1 << 20)
            except OSError as e:
                if e.errno == 105:  # ENOBUFS: notifications were lost
                    with self.cv:
                        self.overflows += 1
                    continue
                return
            now = time.monotonic()
            self._parse(data, now)

    def _parse(self, data, now):
        off = 0
        with self.cv:
            while off + 16 <= len(data):
                ln, ty, _fl, _seq, _pid = struct.unpack_from("=IHHII", data, off)
                if ln < 16:
                    break
                body = data[off + 16:off + ln]
                off += (ln + 3) & ~3
                if ty >> 8 != NFNL_SUBSYS_NFTABLES:
                    continue
                msg = ty & 0xFF
                attrs = dict(_attrs(body[4:])) if msg != NFT_MSG_NEWSETELEM and \
                    msg != NFT_MSG_DELSETELEM else None
                if msg == NFT_MSG_DELTABLE and attrs and \
                        attrs.get(1, b"").rstrip(b"\0").decode() == self.table:
                    self.table_deleted += 1
                if msg == NFT_MSG_NEWGEN:
                    self.gens += 1
                if msg not in (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM):
                    continue
                table = None
                for aty, aval in _attrs(body[4:]):
                    if aty == 1:
                        table = aval.rstrip(b"\0").decode()
                    elif aty == 3 and table == self.table:
                        for _, elem in _attrs(aval):
                            self._elem(elem, msg, now)
            self.cv.notify_all()

    def _elem(self, elem, msg, now):
        key, flags = None, 0
        for ty, val in _attrs(elem):
            if ty == 1:                       # NFTA_SET_ELEM_KEY
                for dty, dval in _attrs(val):
                    if dty == 1:              # NFTA_DATA_VALUE
                        key = dval
            elif ty == 3 and len(val) == 4:   # NFTA_SET_ELEM_FLAGS
                flags = struct.unpack(">I", val)[0]
        if key is None or flags & 1:          # NFT_SET_ELEM_INTERVAL_END
            return
        if len(key) == 4:
            a = str(ipaddress.IPv4Address(key))
        elif len(key) == 16:
            a = str(ipaddress.IPv6Address(key))
        else:
            return
        if msg == NFT_MSG_NEWSETELEM:
            self.n_added += 1
            self.added.setdefault(a, now)
            self.added_gen.setdefault(a, self.gens)
        else:
            self.deleted[a] = now

    def added_at(self, addr):
        with self.cv:
            return self.added.get(addr)

    def wait_added(self, addr, timeout=5.0):
        """Monotonic time addr (an address, or the start of a banned prefix) entered a set."""
        with self.cv:
            self.cv.wait_for(lambda: addr in self.added, timeout=timeout)
            return self.added.get(addr)

    def wait_count(self, n, timeout=10.0):
        with self.cv:
            return self.cv.wait_for(lambda: len(self.added) >= n, timeout=timeout)

    def forget(self):
        with self.cv:
            self.added.clear()
            self.added_gen.clear()
            self.deleted.clear()
            self.n_added = 0

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# Attacker namespaces joined to ours (the PBX) by veth, with documentation addresses.

def exit_on_sigterm():
    """Turns SIGTERM (meson's timeout) into SystemExit, so finally blocks delete namespaces."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Attacker:
    """A namespace joined to the caller's by a veth pair. net4/net6: the link's networks; the
    PBX side holds .1, the attacker every address of `hosts` (extra source addresses). Networks
    in `onlink` are reachable over the same link without being the PBX's own: their addresses in
    `hosts` are the attacker's, and both sides route them on-link (so an attacker need not share
    the PBX's own /64)."""

    def __init__(self, tag, net4, net6, hosts=(), onlink=()):
        self.ns = f"pg-e2e-{os.getpid()}-{tag}"
        self.pbx_if = f"pg{tag}{os.getpid() % 10000}"[:15]
        n4, n6 = ipaddress.ip_network(net4), ipaddress.ip_network(net6)
        self.pbx4, self.pbx6 = str(n4.network_address + 1), str(n6.network_address + 1)
        self.hosts = list(hosts)
        self.servers = []
        self._run(["ip", "netns", "add", self.ns])
        try:
            self._run(["ip", "link", "add", self.pbx_if, "type", "veth", "peer", "name", "eth0",
                       "netns", self.ns])
            self._run(["ip", "addr", "add", f"{self.pbx4}/{n4.prefixlen}", "dev", self.pbx_if])
            self._run(["ip", "addr", "add", f"{self.pbx6}/{n6.prefixlen}", "dev", self.pbx_if,
                       "nodad"])
            self._run(["ip", "link", "set", self.pbx_if, "up"])
            self.exec(["ip", "link", "set", "lo", "up"])
            nets = [n4, n6] + [ipaddress.ip_network(n) for n in onlink]
            for a in self.hosts:
                ip = ipaddress.ip_address(a)
                ln = next(n.prefixlen for n in nets if n.version == ip.version and ip in n)
                extra = ["nodad"] if ":" in a else []
                self.exec(["ip", "addr", "add", f"{a}/{ln}", "dev", "eth0", *extra])
            self.exec(["ip", "link", "set", "eth0", "up"])
            for n in onlink:
                self._run(["ip", "route", "add", str(n), "dev", self.pbx_if])
                for own in (n4, n6):
                    if own.version == ipaddress.ip_network(n).version:
                        self.exec(["ip", "route", "replace", str(own), "dev", "eth0"])
        except Exception:
            self.close()
            raise

    @staticmethod
    def _run(argv):
        subprocess.run(argv, check=True, capture_output=True)

    def exec(self, argv, check=True, timeout=30):
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], check=check,
                              capture_output=True, text=True, timeout=timeout)

    def connect(self, src, dst, port, timeout=1.0):
        """True if a TCP connection from src (an attacker address) to dst:port succeeds."""
        code = ("import socket,sys\n"
                f"fam = socket.AF_INET6 if ':' in {dst!r} else socket.AF_INET\n"
                "s = socket.socket(fam, socket.SOCK_STREAM)\n"
                f"s.settimeout({timeout})\n"
                f"s.bind(({src!r}, 0))\n"
                f"try:\n    s.connect(({dst!r}, {port}))\n    print('ok')\n"
                "except OSError as e:\n    print('fail', e)\n")
        r = self.exec(["/usr/bin/python3", "-c", code], check=False, timeout=timeout + 10)
        return r.stdout.startswith("ok")

    def serve(self, port):
        """A TCP service in the attacker's namespace (every address, v4 and v6) that accepts
        and closes, so the PBX can test that it still reaches this side."""
        code = ("import socket\n"
                "s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n"
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
                f"s.bind(('::', {port}))\ns.listen(64)\nprint('ready', flush=True)\n"
                "while True:\n    c, _ = s.accept()\n    c.close()\n")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-c", code],
                             stdout=subprocess.PIPE, text=True)
        self.servers.append(p)
        p.stdout.readline()
        return p

    def close(self):
        for p in self.servers:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.pbx_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


class TcpListener:
    """A TCP service in the PBX namespace that accepts and closes, so connects can be tested."""

    def __init__(self, host, port):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.s = socket.socket(fam, socket.SOCK_STREAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind((host, port))
        self.s.listen(64)
        self.stopping = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stopping:
            r, _, _ = select.select([self.s], [], [], 0.2)
            if r:
                try:
                    c, _ = self.s.accept()
                    c.close()
                except OSError:
                    return

    def close(self):
        self.stopping = True
        self.t.join(2)
        self.s.close()


class UdpSink:
    """A UDP server (StatsD stand-in) that keeps every datagram it receives."""

    def __init__(self, host="127.0.0.1", read=True):
        self.s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                               socket.SOCK_DGRAM)
        if not read:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        self.s.bind((host, 0))
        self.port = self.s.getsockname()[1]
        self.lines = []
        self.cv = threading.Condition()
        self.stopping = False
        self.t = None
        if read:
            self.t = threading.Thread(target=self._run, daemon=True)
            self.t.start()

    def _run(self):
        while not self.stopping:
            r, _, _ = select.select([self.s], [], [], 0.2)
            if r:
                d = self.s.recv(65536)
                with self.cv:
                    self.lines += d.decode(errors="replace").splitlines()
                    self.cv.notify_all()

    def total(self, name):
        """Sum of the values of every counter line named name."""
        n = 0
        with self.cv:
            for line in self.lines:
                k, _, rest = line.partition(":")
                if k == name:
                    try:
                        n += float(rest.split("|")[0])
                    except ValueError:
                        pass
        return n

    def wait(self, pred, timeout=5.0):
        with self.cv:
            return self.cv.wait_for(lambda: pred(self), timeout=timeout)

    def close(self):
        self.stopping = True
        if self.t:
            self.t.join(2)
        self.s.close()


# ---------------------------------------------------------------------------------------------
# The daemon.

def priority_fn(nice):
    """A preexec_fn: a session of its own at nice, its autogroup's weight raised as much."""
    def fn():
        os.setsid()
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(nice))
        except OSError:
            pass  # a kernel without autogroups: the session's nice value is all there is
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return fn


class Daemon:
    """pbxguardd in the caller's namespace with a generated config under tmp. Readiness comes
    from the daemon's own sd_notify("READY=1") on a NOTIFY_SOCKET we hold."""

    def __init__(self, tmp, ami_port, *, ami_host="127.0.0.1", auth="plain", maxretry=5,
                 findtime="10m", bantime="1h", whitelist=(), statsd_port=None, extra="",
                 binary=None, cli=None, log_level="info", database=None, log_pipe=False,
                 general="", policy="", nice=None):
        self.tmp = tmp
        # A CPU priority, as the unit gives it (None: ours): in a session of its own, as
        # systemd starts a service, at that nice value and with its session's weight (the
        # kernel's autogroup) raised as much, as CPUWeight= raises a service's cgroup.
        self.nice = nice
        self.binary = binary or h.DAEMON
        self.cli_binary = cli or h.CLI
        self.conf = os.path.join(tmp, "pbxguard.conf")
        self.db = database or os.path.join(tmp, "db", "pbxguard.db")
        self.sock = os.path.join(tmp, "control.sock")
        self.logpath = os.path.join(tmp, "pbxguardd.log")
        self.p = None
        self.starts = 0
        # log_pipe: the daemon writes its log into a pipe that a thread copies to the file, as
        # it writes into journald's socket under systemd; a slow disk then never stalls it.
        self.log_pipe = log_pipe
        wl = "".join(f"cidr = {c}\n" for c in whitelist)
        statsd = (f"enabled = yes\nhost = 127.0.0.1\nport = {statsd_port}\nflush_interval = 100ms\n"
                  if statsd_port else "enabled = no\n")
        with open(self.conf, "w") as f:
            f.write(f"[general]\ndatabase = {self.db}\ncontrol_socket = {self.sock}\n"
                    f"lock_file = {tmp}/pbxguardd.lock\nlog_level = {log_level}\n{general}\n"
                    f"[ami:pbx1]\nhost = {ami_host}\nport = {ami_port}\nusername = guard\n"
                    f"secret = guardpass\nauth = {auth}\nbackoff_min = 100ms\n"
                    "backoff_max = 1s\nping_interval = 2s\nping_timeout = 2s\n\n"
                    f"[policy]\nmaxretry = {maxretry}\nfindtime = {findtime}\n"
                    f"bantime = {bantime}\n{policy}\n[whitelist]\n{wl}\n[statsd]\n{statsd}\n"
                    f"{extra}")
        os.chmod(self.conf, 0o600)  # it holds an inline secret

    def start(self, wait_ready=True, timeout=60.0):
        """Starts the daemon; with wait_ready, returns once it said READY=1 (or raises)."""
        ns_path = os.path.join(self.tmp, f"notify-{self.starts}.sock")
        self.starts += 1
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(ns_path)
        env = dict(os.environ, NOTIFY_SOCKET=ns_path)
        self.log = open(self.logpath, "ab" if self.log_pipe else "a")
        self.t_start = time.monotonic()
        out = subprocess.PIPE if self.log_pipe else self.log
        self.p = subprocess.Popen(
            [self.binary, "-c", self.conf], stdout=out, stderr=subprocess.STDOUT, env=env,
            preexec_fn=None if self.nice is None else priority_fn(self.nice))
        if self.log_pipe:
            threading.Thread(target=self._drain, args=(self.p.stdout, self.log),
                             daemon=True).start()
        self.t_ready = None
        try:
            if wait_ready:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if self.p.poll() is not None:
                        raise RuntimeError(f"pbxguardd exited {self.p.returncode}:\n"
                                           + self.log_text()[-3000:])
                    r, _, _ = select.select([ns], [], [], 0.1)
                    if r and b"READY=1" in ns.recv(4096):
                        self.t_ready = time.monotonic()
                        break
                else:
                    raise RuntimeError("pbxguardd not ready in time:\n" + self.log_text()[-3000:])
        finally:
            ns.close()
            os.unlink(ns_path)
        return self

    @staticmethod
    def _drain(src, dst):
        for chunk in iter(lambda: src.read1(65536), b""):
            try:
                dst.buffer.write(chunk) if hasattr(dst, "buffer") else dst.write(chunk)
                dst.flush()
            except (ValueError, OSError):
                return

    def startup_seconds(self):
        return None if self.t_ready is None else self.t_ready - self.t_start

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def stop(self, timeout=30.0):
        if self.p is None:
            return None
        rc, _ = h.stop_process(self.p, timeout=timeout)
        self.log.close()
        return rc

    def kill(self):
        """SIGKILL, as a crash or the OOM killer would."""
        self.p.kill()
        self.p.wait()
        self.log.close()
        return self.p.returncode

    def log_text(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def proc_status(self, key):
        return h.proc_status(self.p.pid, key)

    def sanitized(self):
        """True if the running daemon is an AddressSanitizer build."""
        try:
            with open(f"/proc/{self.p.pid}/maps") as f:
                return "libasan" in f.read()
        except OSError:
            return False

    def cpu_seconds(self):
        try:
            with open(f"/proc/{self.p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return None

    def cli(self, *args, timeout=15):
        return subprocess.run([self.cli_binary, "-s", self.sock, *args], capture_output=True,
                              text=True, timeout=timeout)

    def cli_json(self, *args):
        r = self.cli("--json", *args)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def db_query(self, sql, params=()):
        """Reads the database read-only, as the report does, while the daemon may be writing."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def active_bans_db(self):
        now = int(time.time() * 1000)
        return {r[0]: r[1] for r in self.db_query(
            "SELECT prefix, expires_ms FROM bans WHERE ended_ms IS NULL AND "
            "(expires_ms IS NULL OR expires_ms > ?)", (now,))}


def unpack_key(blob):
    """A counting key as the store packs it (schema/004-compact.sql), as an ip_network."""
    n = len(blob)
    if n in (4, 5):
        return ipaddress.ip_network((bytes(blob[:4]), 32 if n == 4 else blob[4]))
    if n in (8, 16, 17):
        raw = bytes(blob[:16]).ljust(16, b"\0")
        return ipaddress.ip_network((raw, {8: 64, 16: 128}.get(n) or blob[16]))
    raise ValueError(f"not a packed key: {bytes(blob).hex()}")


def db_failure_keys(d):
    """The counting key of every raw failure row of daemon d's database."""
    return [unpack_key(r[0]) for r in d.db_query("SELECT key FROM failures")]


def kernel_set(name="banned4", table="pbxguard"):
    """The elements of one of our sets, as {address-or-prefix: expires-in-seconds or None}."""
    out = h.nft_json("list", "set", "inet", table, name)
    if out is None:
        return None
    elems = {}
    for obj in out:
        s = obj.get("set")
        if not s:
            continue
        for e in s.get("elem", []):
            timeout = None
            if isinstance(e, dict) and "elem" in e:
                timeout = e["elem"].get("expires")
                e = e["elem"]["val"]
            if isinstance(e, dict) and "prefix" in e:
                p = e["prefix"]
                key = p["addr"] if p["len"] in (32, 128) else f"{p['addr']}/{p['len']}"
            elif isinstance(e, dict) and "range" in e:
                key = "-".join(e["range"])
            else:
                key = e
            elems[str(key)] = timeout
    return elems


def kernel_bans():
    """Every set of our table merged, as {prefix: expires-in-seconds or None}, prefixes written
    as the database writes them ("192.0.2.7", "2001:db8:1::/64", "198.51.100.0/24"). banned6 holds
    /64s keyed by their first address. None if our table is missing."""
    out = {}
    for name, suffix in (("banned4", ""), ("banned6", "/64"), ("banned4_net", ""),
                         ("banned6_net", "")):
        elems = kernel_set(name)
        if elems is None:
            if name.endswith("_net"):
                continue
            return None
        for k, v in elems.items():
            out[k + suffix if suffix and "/" not in k else k] = v
    return out



# ---------------------------------------------------------------------------------------------
# Namespaces for fault tests that also mount (a small tmpfs for a full disk): a private network
# namespace and a private mount namespace, so nothing leaks to the host.

def in_private_netns_and_mounts():
    h.require_root()
    if os.environ.get("PBXGUARD_NETNS"):
        return
    env = dict(os.environ, PBXGUARD_NETNS="1")
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--",
                        sys.executable, *sys.argv], env=env)
    sys.exit(r.returncode)


class Pbx:
    """The PBX side of a test: AMI server, kernel monitor, StatsD sink, and the daemon."""

    def __init__(self, tmp, statsd=True, statsd_read=True, start=True, **daemon_kw):
        self.tmp = tmp
        self.ami = AmiServer().start()
        self.mon = SetMonitor()
        self.statsd = UdpSink(read=statsd_read) if statsd else None
        self.d = Daemon(tmp, self.ami.port, statsd_port=self.statsd.port if statsd else None,
                        **daemon_kw)
        if start:
            self.start()

    def start(self):
        want = self.ami.logins + 1
        self.d.start()
        if not self.ami.wait_login(want, timeout=20):
            raise RuntimeError("the daemon never logged in:\n" + self.d.log_text()[-2000:])
        return self

    def ban(self, ip, n=5, timeout=10.0, **kw):
        """Sends n failures from ip; returns the time it was banned in the kernel, or None."""
        self.ami.send(attack(ip, n, **kw))
        return self.mon.wait_added(ip, timeout=timeout)

    def close(self):
        if self.d.p is not None and self.d.alive():
            self.d.stop()
        self.ami.stop()
        self.mon.close()
        if self.statsd:
            self.statsd.close()


class Flood:
    """A background flood from distinct addresses (5 failures each, so each gets banned),
    from first address `base`, at most `rate` events/s, until stopped or `limit` sources."""

    def __init__(self, ami, base="10.1.0.0/16", rate=5000, limit=50000, per=5):
        self.ami, self.rate, self.limit, self.per = ami, rate, limit, per
        net = ipaddress.ip_network(base)
        self.first = int(net.network_address) + 1
        self.sent = []          # addresses whose every failure was written to the socket
        self.stopping = False
        self.t = threading.Thread(target=self._run, daemon=True)

    def addr(self, i):
        return str(ipaddress.ip_address(self.first + i))

    def start(self):
        self.t.start()
        return self

    def _run(self):
        batch = 20
        period = batch * self.per / self.rate
        t_next = time.monotonic()
        i = 0
        deadline = time.monotonic() + 120
        while not self.stopping and i < self.limit and time.monotonic() < deadline:
            ips = [self.addr(i + k) for k in range(batch)]
            data = b"".join(attack(ip, self.per, name="InvalidAccountID") for ip in ips)
            if self.ami.send(data) is not None:
                self.sent += ips
            i += batch
            t_next += period
            d = t_next - time.monotonic()
            if d > 0:
                time.sleep(d)

    def stop(self):
        self.stopping = True
        self.t.join(10)
        return self


def integrity_ok(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def wait_until(pred, timeout=10.0, interval=0.05):
    return h.wait_for(pred, timeout=timeout, interval=interval)
