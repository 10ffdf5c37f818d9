#!/usr/bin/python3
"""A scripted Asterisk Manager Interface peer for integration tests.

It speaks the real protocol as Asterisk 20 does (docs/AMI-SECURITY-EVENTS.md): the banner,
`Challenge`, plain and MD5 `Login` (the key is checked against its own secret), the `Events`
mask, `Ping`, `Logoff`; after a login it reports the login itself as `SuccessfulAuth`, as
Asterisk does. It replays security events taken from the real captures in
tests/fixtures/ami/, with `RemoteAddress` rewritten to the address a test wants banned, and it
misbehaves on demand: drop connections, restart (listener closed, then reopened on the same
port), one byte at a time, stall, garbage, a 1 MB line, refuse logins.

Use from a test (other suites too: StatsD, CLI, end to end):

    from amipeer import AmiPeer
    with AmiPeer(secret="s3cret") as peer:          # listens on 127.0.0.1, a free port
        ... start pbxguardd with [ami:x] host=127.0.0.1 port=peer.port ...
        peer.wait_logged_in()
        peer.send_event("InvalidPassword", "203.0.113.7")   # one failed login from there
        peer.send_events("ChallengeResponseFailed", "2001:db8::66", count=5, service="PJSIP")

It also answers the actions pbxguardd sends to learn which addresses Asterisk talks to
(ModuleCheck, PJSIPShowEndpoints, PJSIPShowEndpoint, PJSIPShowRegistrationsOutbound, SIPpeers,
IAXpeerlist), from a model of Asterisk's configuration in `peer.config` (a `PbxConfig`), in the
wire format of tests/fixtures/ami/trust-*.raw (written from Asterisk 20's source; see
TRUST-RESPONSES.md there); `peer.send_reload()` sends the Reload event that says it changed.
With `peer.system_write = False` those actions are refused as Asterisk refuses them to a user
without `write = system` ("Permission denied", and a RequestNotAllowed security event).

Run by hand: `amipeer.py --port 5038 --secret s3cret [--attack 203.0.113.7 --every 1]`.
Everything is bounded: sockets have timeouts, threads are daemons, stop() joins them.
"""
import argparse
import hashlib
import os
import random
import socket
import sys
import threading
import time

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ami")
CAPTURE = os.path.join(FIXTURES, "asterisk20-ipv4-session.raw")


def load_templates(path=CAPTURE):
    """Security events of a capture, keyed by (event name, service): the first of each."""
    with open(path, "rb") as f:
        data = f.read().decode()
    templates = {}
    for block in data.split("\r\n\r\n"):
        lines = [ln for ln in block.split("\r\n") if ln]
        if not lines or not lines[0].startswith("Event: "):
            continue
        headers = [tuple(ln.split(": ", 1)) if ": " in ln else (ln.rstrip(":"), "")
                   for ln in lines]
        d = dict(headers)
        if not d.get("Privilege", "").startswith("security"):
            continue
        templates.setdefault((d["Event"], d.get("Service", "")), headers)
    return templates


def address_field(ip, port=5060, transport="UDP"):
    """'192.0.2.1' -> 'IPV4/UDP/192.0.2.1/5060'; IPv6 is written without brackets."""
    fam = "IPV6" if ":" in ip else "IPV4"
    return f"{fam}/{transport}/{ip}/{port}" if transport else f"{fam}/{ip}/{port}"


def frame(headers):
    return "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n"


def parse_frame(text):
    d = {}
    for ln in text.replace("\r\n", "\n").split("\n"):
        if ":" in ln:
            k, v = ln.split(":", 1)
            d.setdefault(k.strip().lower(), v.lstrip(" \t"))
    return d


def _load_endpoint_detail():
    """The EndpointDetail event of trust-pjsip-endpoint-trunk.raw, as (name, value) pairs."""
    with open(os.path.join(FIXTURES, "trust-pjsip-endpoint-trunk.raw"), "rb") as f:
        for block in f.read().decode().split("\r\n\r\n"):
            lines = block.split("\r\n")
            if lines and lines[0] == "Event: EndpointDetail":
                return [tuple(ln.split(": ", 1)) if ": " in ln else (ln.rstrip(":"), "")
                        for ln in lines]
    raise RuntimeError("no EndpointDetail in trust-pjsip-endpoint-trunk.raw")


ENDPOINT_DETAIL = _load_endpoint_detail()


class PbxConfig:
    """What the scripted Asterisk is configured with, as its trust queries report it.

    endpoints: {name: {"identify": {identify_name: "ADDR/MASK,..."},   # IdentifyDetail Match
                       "contacts": [(uri, static)],                      # ContactStatusDetail
                       "auth": name or None}}
    registrations: {name: server_uri}
    sip_peers / iax_peers: {name: (ip or None, dynamic)}
    modules: the modules ModuleCheck finds loaded."""

    def __init__(self):
        self.modules = {"res_pjsip.so", "res_pjsip_outbound_registration.so"}
        self.endpoints = {}
        self.registrations = {}
        self.sip_peers = {}
        self.iax_peers = {}


def _contact_id(aor, uri, static):
    h = hashlib.md5(uri.encode()).hexdigest()
    return f"{aor}@@{h}" if static else f"{aor};@{h}"


def trust_answer(cfg, action, req, aid):
    """The frames Asterisk 20 writes in answer to one trust query (bytes), or None if the
    action is not one of them. Formats: tests/fixtures/ami/trust-*.raw."""
    def ev(name, *headers):
        return frame([("Event", name), ("ActionID", aid), *headers])

    def listing(message, items, complete, extra=()):
        out = frame([("Response", "Success"), ("ActionID", aid), ("EventList", "start"),
                     ("Message", message)])
        out += b"".join(items)
        out += ev(complete, ("EventList", "Complete"), ("ListItems", str(len(items))), *extra)
        return out

    if action == "modulecheck":
        mod = req.get("module", "")
        if not mod.endswith(".so"):
            mod += ".so"
        if mod in cfg.modules:
            return frame([("Response", "Success"), ("ActionID", aid), ("Version", "")])
        return frame([("Response", "Error"), ("ActionID", aid), ("Message", "Module not loaded")])
    pjsip = "res_pjsip.so" in cfg.modules
    if action == "pjsipshowendpoints" and pjsip:
        if not cfg.endpoints:
            # Asterisk's own message ends in "\n" before the CRLF (astman_send_error()).
            return (f"Response: Error\r\nActionID: {aid}\r\nMessage: No endpoints found\n"
                    "\r\n\r\n").encode()
        items = []
        for name, e in cfg.endpoints.items():
            cids = "".join(_contact_id(name, u, st) + "," for u, st in e.get("contacts", []))
            items.append(ev("EndpointList", ("ObjectType", "endpoint"), ("ObjectName", name),
                            ("Transport", "transport-udp"), ("Aor", name),
                            ("Auths", e.get("auth") or ""),
                            ("OutboundAuths", "" if e.get("auth") else f"{name}-auth"),
                            ("Contacts", cids), ("DeviceState", "Not in use"),
                            ("ActiveChannels", "0")))
        return listing("A listing of Endpoints follows, presented as EndpointList events", items,
                       "EndpointListComplete")
    if action == "pjsipshowendpoint" and pjsip:
        name = req.get("endpoint", "")
        e = cfg.endpoints.get(name)
        if e is None:
            return (f"Response: Error\r\nActionID: {aid}\r\nMessage: Unable to retrieve "
                    f"endpoint {name}\n\r\n\r\n").encode()
        # EndpointDetail lists every endpoint option (about 145 lines in Asterisk 20): the
        # fixture's, with this endpoint's name.
        detail = [(k, {"ObjectName": name, "Aors": name}.get(k, v))
                  for k, v in ENDPOINT_DETAIL if k not in ("Event", "ActionID")]
        items = [ev("EndpointDetail", *detail)]
        contacts = e.get("contacts", [])
        items.append(ev("AorDetail", ("ObjectType", "aor"), ("ObjectName", name),
                        ("Contacts", ",".join(_contact_id(name, u, st) for u, st in contacts)),
                        ("TotalContacts", str(len(contacts))),
                        ("ContactsRegistered", str(sum(1 for _, st in contacts if not st))),
                        ("EndpointName", name)))
        items.append(ev("AuthDetail", ("ObjectType", "auth"), ("ObjectName", f"{name}-auth"),
                        ("Username", name), ("Password", "amipeer-auth-secret"), ("Md5Cred", ""),
                        ("Realm", ""), ("NonceLifetime", "32"), ("AuthType", "userpass"),
                        ("EndpointName", name)))
        for iname, match in e.get("identify", {}).items():
            items.append(ev("IdentifyDetail", ("ObjectType", "identify"), ("ObjectName", iname),
                            ("Endpoint", name), ("Match", match), ("MatchHeader", ""),
                            ("MatchRequestUri", ""), ("SrvLookups", "true"),
                            ("EndpointName", name)))
        for uri, static in contacts:
            items.append(ev("ContactStatusDetail", ("AOR", name), ("URI", uri), ("UserAgent", ""),
                            ("RegExpire", "1970-01-01T00:00:00+0000"), ("Status", "Unknown"),
                            ("RoundtripUsec", "N/A"), ("EndpointName", name),
                            ("ID", _contact_id(name, uri, static)), ("AuthenticateQualify", "0"),
                            ("OutboundProxy", ""), ("Path", ""), ("QualifyFrequency", "0"),
                            ("QualifyTimeout", "3.000"), ("Qualify2xxOnly", "0")))
        return listing("Following are Events for each object associated with the Endpoint",
                       items, "EndpointDetailComplete")
    if (action == "pjsipshowregistrationsoutbound"
            and "res_pjsip_outbound_registration.so" in cfg.modules):
        items = []
        for name, uri in cfg.registrations.items():
            items.append(ev("OutboundRegistrationDetail", ("ObjectType", "registration"),
                            ("ObjectName", name), ("ServerUri", uri),
                            ("ClientUri", "sip:pbx@" + uri.split(":", 1)[-1]), ("ContactUser", ""),
                            ("Transport", "transport-udp"), ("OutboundProxy", ""),
                            ("Expiration", "3600"), ("OutboundAuth", f"{name}-auth"),
                            ("Status", "Registered"), ("NextReg", "3540")))
            items.append(ev("AuthDetail", ("ObjectType", "auth"), ("ObjectName", f"{name}-auth"),
                            ("Username", "pbx"), ("Password", "amipeer-reg-secret"),
                            ("Md5Cred", ""), ("Realm", ""), ("NonceLifetime", "32"),
                            ("AuthType", "userpass"), ("EndpointName", "")))
        n = len(cfg.registrations)
        out = frame([("Response", "Success"), ("ActionID", aid), ("EventList", "start"),
                     ("Message", "Following are Events for each Outbound registration")])
        out += b"".join(items)
        out += ev("OutboundRegistrationDetailComplete", ("EventList", "Complete"),
                  ("ListItems", str(n)), ("Registered", str(n)), ("NotRegistered", "0"))
        return out
    if action == "sippeers" and "chan_sip.so" in cfg.modules:
        items = [ev("PeerEntry", ("Channeltype", "SIP"), ("ObjectName", name),
                    ("ChanObjectType", "peer"), ("IPaddress", ip or "-none-"),
                    ("IPport", "5060" if ip else "0"), ("Dynamic", "yes" if dyn else "no"),
                    ("Status", "OK (10 ms)"))
                 for name, (ip, dyn) in cfg.sip_peers.items()]
        return listing("Peer status list will follow", items, "PeerlistComplete")
    if action == "iaxpeerlist" and "chan_iax2.so" in cfg.modules:
        items = [ev("PeerEntry", ("Channeltype", "IAX"), ("ObjectName", name),
                    ("ChanObjectType", "peer"), ("IPaddress", ip or "(null)"),
                    ("Mask", "255.255.255.255"), ("Port", "4569" if ip else "0"),
                    ("Dynamic", "yes" if dyn else "no"), ("Trunk", "no"),
                    ("Encryption", "no"), ("Status", "OK (5 ms)"))
                 for name, (ip, dyn) in cfg.iax_peers.items()]
        return listing("IAX Peer status list will follow", items, "PeerlistComplete")
    return None


TRUST_ACTIONS = {"modulecheck", "pjsipshowendpoints", "pjsipshowendpoint",
                 "pjsipshowregistrationsoutbound", "sippeers", "iaxpeerlist"}


class Conn:
    def __init__(self, peer, sock, addr):
        self.peer = peer
        self.sock = sock
        self.addr = addr
        self.lock = threading.Lock()
        self.logged_in = False
        self.closed = False
        self.challenge = None
        self.events_mask = None
        self.pings = 0

    def send(self, data):
        with self.lock:
            if self.closed or self.peer.stalled.is_set():
                return False
            try:
                if self.peer.byte_at_a_time:
                    for i in range(len(data)):
                        self.sock.sendall(data[i:i + 1])
                        time.sleep(0.0005)
                else:
                    self.sock.sendall(data)
                return True
            except OSError:
                return False

    def close(self):
        with self.lock:
            if not self.closed:
                self.closed = True
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.sock.close()

    def respond(self, action_id, headers):
        out = [headers[0]]
        if action_id is not None:
            out.append(("ActionID", action_id))
        out.extend(headers[1:])
        self.send(frame(out))

    def run(self):
        p = self.peer
        self.sock.settimeout(0.2)
        self.send(f"{p.banner}\r\n".encode())
        buf = b""
        deadline = time.monotonic() + 3600
        while not self.closed and not p.stopping and time.monotonic() < deadline:
            if p.stalled.is_set():
                time.sleep(0.05)
                continue
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while True:
                cut = buf.find(b"\r\n\r\n")
                if cut < 0:
                    break
                text, buf = buf[:cut].decode(errors="replace"), buf[cut + 4:]
                if text.strip():
                    self.handle(parse_frame(text))
        self.close()

    def handle(self, req):
        p = self.peer
        action = req.get("action", "").lower()
        aid = req.get("actionid")
        p.actions.append(action)
        if action == "challenge":
            if req.get("authtype", "").lower() != "md5":
                self.respond(aid, [("Response", "Error"), ("Message", "Must specify AuthType")])
                return
            if self.challenge is None:
                self.challenge = str(random.randrange(1, 10**9))
            self.respond(aid, [("Response", "Success"), ("Challenge", self.challenge)])
        elif action == "login":
            user = req.get("username", "")
            if req.get("authtype", "").lower() == "md5":
                kind = "md5"
                want = hashlib.md5(((self.challenge or "") + p.secret).encode()).hexdigest()
                ok = self.challenge is not None and req.get("key") == want
            else:
                kind = "plain"
                ok = req.get("secret") == p.secret
            ok = ok and user == p.username and not p.reject_login
            p.logins.append({"user": user, "auth": kind, "ok": ok,
                             "events": req.get("events"), "time": time.monotonic()})
            if not ok:
                time.sleep(p.fail_delay)  # Asterisk sleeps 1 s, then answers and hangs up
                self.respond(aid, [("Response", "Error"), ("Message", p.fail_message)])
                self.close()
                return
            self.events_mask = req.get("events")
            self.logged_in = True
            self.respond(aid, [("Response", "Success"), ("Message", "Authentication accepted")])
            # action_login(): FullyBooted right after the reply, when the session's mask and
            # the user's read permission both hold the system class.
            if p.system_read and "system" in (self.events_mask or "").split(","):
                self.send(frame([("Event", "FullyBooted"), ("Privilege", "system,all"),
                                 ("Uptime", "1234"), ("LastReload", "1234"),
                                 ("Status", "Fully Booted")]))
            if p.own_auth_event:
                host, port = self.sock.getpeername()[:2]
                self.send(p.event_bytes("SuccessfulAuth", host, port=port, service="AMI",
                                        transport="TCP", account=user))
        elif action == "ping":
            if not self.logged_in:
                self.respond(aid, [("Response", "Error"), ("Message", "Permission denied")])
                return
            self.pings += 1
            p.pings += 1
            if p.ignore_pings:
                return
            self.respond(aid, [("Response", "Success"), ("Ping", "Pong"),
                               ("Timestamp", f"{time.time():.6f}")])
        elif action in TRUST_ACTIONS and self.logged_in:
            p.trust_actions.append((action, req.get("module") or req.get("endpoint")))
            if not p.system_write:
                # process_message(): the user's write permission lacks the action's class.
                self.respond(aid, [("Response", "Error"), ("Message", "Permission denied")])
                host, port = self.sock.getpeername()[:2]
                self.send(p.event_bytes("RequestNotAllowed", host, port=port, service="AMI",
                                        transport="TCP", account=p.username))
                return
            with p.lock:
                answer = trust_answer(p.config, action, req, aid)
            if answer is None:
                self.respond(aid, [("Response", "Error"), ("Message", "Invalid/unknown command")])
            else:
                self.send(answer)
        elif action == "logoff":
            self.respond(aid, [("Response", "Goodbye"), ("Message", "Thanks for all the fish.")])
            self.close()
        else:
            self.respond(aid, [("Response", "Error"), ("Message", "Invalid/unknown command")])


class AmiPeer:
    def __init__(self, host="127.0.0.1", port=0, username="guard", secret="guardpass",
                 banner="Asterisk Call Manager/9.0.0", own_auth_event=True, fail_delay=0.2):
        self.host = host
        self.port = port
        self.username = username
        self.secret = secret
        self.banner = banner
        self.own_auth_event = own_auth_event
        self.fail_delay = fail_delay
        self.reject_login = False
        self.config = PbxConfig()
        self.system_read = True       # manager.conf "read" holds system (Reload events)
        self.system_write = True      # manager.conf "write" holds system (the trust queries)
        self.trust_actions = []       # (action, module or endpoint) received
        self.fail_message = "Authentication failed"  # the Message of a refused login
        self.byte_at_a_time = False
        self.ignore_pings = False
        self.stalled = threading.Event()
        self.templates = load_templates()
        self.logins = []
        self.actions = []
        self.accepted = 0
        self.pings = 0
        self.conns = []
        self.stopping = False
        self.listener = None
        self.threads = []
        self.lock = threading.Lock()

    # --- lifecycle ---

    def start(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(16)
        s.settimeout(0.1)
        self.port = s.getsockname()[1]
        self.listener = s
        self.stopping = False
        t = threading.Thread(target=self._accept_loop, args=(s,), daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def _accept_loop(self, lsock):
        while not self.stopping and self.listener is lsock:
            try:
                sock, addr = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Conn(self, sock, addr)
            with self.lock:
                self.conns.append(c)
                self.accepted += 1
            t = threading.Thread(target=c.run, daemon=True)
            t.start()
            self.threads.append(t)

    def _close_listener(self):
        s, self.listener = self.listener, None
        if s:
            s.close()

    def stop(self):
        self.stopping = True
        self._close_listener()
        self.drop()
        for t in self.threads:
            t.join(timeout=2)
        self.threads = []

    def restart(self, down=0.0):
        """Asterisk restarting: every connection dropped, the port closed for `down` seconds."""
        self.stop()
        time.sleep(down)
        self.stalled.clear()
        self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- misbehaviour ---

    def drop(self):
        """Closes every open connection at once (as a crash or a network cut would)."""
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            c.close()

    def stall(self):
        """Stops reading and writing on every connection, without closing anything."""
        self.stalled.set()

    def unstall(self):
        self.stalled.clear()

    def send_raw(self, data):
        """Sends bytes to every logged-in connection; returns how many got them."""
        if isinstance(data, str):
            data = data.encode()
        n = 0
        for c in self.live():
            if c.send(data):
                n += 1
        return n

    def send_garbage(self):
        return self.send_raw(b"\x00\xff garbage without colon\r\n\x01\x02\r\nmore junk\r\n\r\n")

    def send_big_line(self, size=1 << 20):
        return self.send_raw(b"Event: Huge\r\nPrivilege: security,all\r\nX: " + b"A" * size +
                             b"\r\n\r\n")

    def send_reload(self, module="res_pjsip.so"):
        """The Reload event (main/loader.c publish_reload_message()) to the sessions whose
        mask and read permission hold the system class, as Asterisk filters it."""
        data = frame([("Event", "Reload"), ("Privilege", "system,all"), ("Module", module),
                      ("Status", "0")])
        n = 0
        if not self.system_read:
            return 0
        for c in self.live():
            if "system" in (c.events_mask or "").split(",") and c.send(data):
                n += 1
        return n

    def send_shutdown(self):
        return self.send_raw(frame([("Event", "Shutdown"), ("Privilege", "system,all"),
                                    ("Shutdown", "Cleanly"), ("Restart", "True")]))

    # --- events ---

    def live(self):
        with self.lock:
            return [c for c in self.conns if c.logged_in and not c.closed]

    def event_bytes(self, name, ip, port=5060, service=None, transport=None, account=None,
                    session=None):
        """A captured security event with RemoteAddress rewritten to ip:port."""
        key = next((k for k in self.templates
                    if k[0] == name and (service is None or k[1] == service)), None)
        if key is None:
            raise KeyError(f"no captured {name} event for service {service}")
        if transport is None:
            transport = "TCP" if key[1] == "AMI" else "UDP"
        out = []
        for k, v in self.templates[key]:
            if k == "RemoteAddress":
                v = address_field(ip, port, transport)
            elif k == "AccountID" and account is not None:
                v = account
            elif k == "SessionID" and session is not None:
                v = session
            out.append((k, v))
        return frame(out)

    def send_event(self, name, ip, **kw):
        """Sends one captured event (e.g. "InvalidPassword") from ip to every logged-in
        session; returns how many sessions got it."""
        return self.send_raw(self.event_bytes(name, ip, **kw))

    def send_events(self, name, ip, count, **kw):
        data = self.event_bytes(name, ip, **kw) * count
        return self.send_raw(data)

    # --- waiting (bounded) ---

    def wait_logged_in(self, n=1, timeout=5.0):
        """Waits until n connections are logged in; returns True if they are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.live()) >= n:
                return True
            time.sleep(0.01)
        return len(self.live()) >= n

    def wait_logins(self, n, timeout=5.0, ok=True):
        """Waits until n login attempts (successful ones if ok) have been seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len([x for x in self.logins if x["ok"] or not ok]) >= n:
                return True
            time.sleep(0.01)
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5038)
    ap.add_argument("--user", default="guard")
    ap.add_argument("--secret", default="guardpass")
    ap.add_argument("--attack", help="send InvalidPassword from this address periodically")
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=3600)
    a = ap.parse_args()
    peer = AmiPeer(a.host, a.port, a.user, a.secret).start()
    print(f"amipeer: listening on {a.host}:{peer.port}", file=sys.stderr, flush=True)
    end = time.monotonic() + a.seconds
    try:
        while time.monotonic() < end:
            time.sleep(a.every)
            if a.attack:
                peer.send_event("InvalidPassword", a.attack)
    except KeyboardInterrupt:
        pass
    peer.stop()


if __name__ == "__main__":
    main()
