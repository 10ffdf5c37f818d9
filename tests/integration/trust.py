#!/usr/bin/python3
"""Trust: learned from Asterisk (the addresses it is configured to talk to are never banned,
and are bannable again once it no longer reports them), and earned by logging in (a source
that produced SuccessfulAuth within trust_window is banned at trusted_maxretry, not maxretry).

The real daemon against the scripted Asterisk (amipeer.py), real nftables, the real CLI, in a
private network namespace and a private mount namespace: the registration server's host name
resolves through a hosts file the test bind-mounts over /etc/hosts there (the host's own
/etc/hosts is never touched). Run one case with `trust.py CASE`."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import e2elib as e  # noqa: E402
from amipeer import AmiPeer  # noqa: E402

e.in_private_netns_and_mounts()
h.in_private_netns()  # inside already: only makes SIGTERM run the finally blocks
h.setup_loopback()

TRUNK = "192.0.2.50"          # a PJSIP identify match
REG_HOST = "sip.carrier2.example"
REG_ADDR = "192.0.2.60"       # what REG_HOST resolves to (the test's hosts file)
REG_ADDR6 = "2001:db8:60::1"
SIP_PEER = "192.0.2.55"       # a chan_sip peer with a static host
CONTROL = "203.0.113.9"       # no trust of any kind: banned at maxretry


def in_kernel(addr):
    kb = e.kernel_bans() or {}
    return addr in kb


def trust_of(d):
    st = d.cli_json("status") or {}
    for s in st.get("ami", []):
        return s.get("trust") or {}
    return {}


def wait_trust(d, pred, timeout=10.0):
    return h.wait_for(lambda: pred(trust_of(d)), timeout=timeout, interval=0.05)


def start(tmp, peer, policy=""):
    """The daemon, logged in to peer, with extra [policy] lines."""
    d = e.Daemon(tmp, peer.port, maxretry=5)
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace("[policy]\n", "[policy]\n" + policy, 1))
    d.start()
    if not peer.wait_logged_in(timeout=20):
        raise RuntimeError("the daemon never logged in:\n" + d.log_text()[-2000:])
    return d


def banned_in_order(peer, addr, n, name="ChallengeResponseFailed", **kw):
    """Sends n failures from addr, then MAXRETRY from a fresh control address, and waits for
    the control ban: everything sent before it has been judged. Returns whether addr is banned
    (in the kernel) at that point."""
    global CONTROL_N
    CONTROL_N += 1
    ctl = f"203.0.113.{100 + CONTROL_N}"
    peer.send_raw(e.attack(addr, n, name=name, **kw) + e.attack(ctl, 5))
    if not h.wait_for(lambda: in_kernel(ctl), timeout=10):
        raise RuntimeError(f"the control attacker {ctl} was never banned")
    return in_kernel(addr)


CONTROL_N = 0


def case_learned(t, tmp):
    """Trunks learned from Asterisk are never banned; dropped from its configuration, they are
    bannable again after the Reload event."""
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        f.write(f"127.0.0.1 localhost\n{REG_ADDR} {REG_HOST}\n{REG_ADDR6} {REG_HOST}\n")
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)
    peer = AmiPeer().start()
    d = None
    try:
        cfg = peer.config
        cfg.modules |= {"chan_sip.so"}
        cfg.endpoints = {
            "carrier1": {"identify": {"carrier1-identify": f"{TRUNK}/255.255.255.255"},
                         "contacts": [("sip:carrier1.invalid:5060", True)]},
            "1001": {"auth": "1001", "contacts": [("sip:1001@198.51.100.77:5062;ob", False)]},
        }
        cfg.registrations = {"carrier2": f"sip:{REG_HOST}"}
        cfg.sip_peers = {"sipgw": (SIP_PEER, False), "2001": ("198.51.100.78", True)}
        d = start(tmp, peer)
        t.ok(wait_trust(d, lambda tr: tr.get("state") == "ok"),
             "the daemon learns what Asterisk talks to after its login", d.log_text()[-2000:])
        tr = trust_of(d)
        t.eq(tr.get("entries"), 4, "4 addresses learned: identify, registration server (IPv4 "
             "and IPv6), static chan_sip peer")
        t.eq(tr.get("unresolved"), 1, "the static contact's name that does not resolve is "
             "counted as unresolved")
        t.ok(tr.get("reloads") is True, "FullyBooted arrived: reloads are followed")
        t.ok(("pjsipshowendpoint", "carrier1") in peer.trust_actions and
             ("pjsipshowendpoint", "1001") in peer.trust_actions,
             "each endpoint is asked about", peer.trust_actions)
        t.ok(not any(a == "iaxpeerlist" for a, _ in peer.trust_actions),
             "no listing is asked of a module that is not loaded", peer.trust_actions)
        t.ok("trusting 4 addresses Asterisk talks to" in d.log_text(),
             "the learned set is logged", d.log_text()[-2000:])
        t.ok(" ".join(peer.logins[-1]["events"].split(",")) == "security system",
             "the login asks for the security and system classes", peer.logins[-1])
        log = d.log_text()
        t.ok("amipeer-auth-secret" not in log and "amipeer-reg-secret" not in log,
             "no credential from Asterisk's answers reaches the log")

        # Floods from the trunk, the registration server and the static peer: never banned.
        for addr, what in ((TRUNK, "identify trunk"), (REG_ADDR, "registration server"),
                           (REG_ADDR6, "registration server (IPv6)"), (SIP_PEER, "chan_sip peer")):
            t.ok(not banned_in_order(peer, addr, 50), f"50 failures from the {what} {addr}: "
                 "not banned")
        t.ok(not in_kernel("2001:db8:60::/64"), "nor is the IPv6 /64 around the server")
        t.ok(banned_in_order(peer, "198.51.100.78", 5), "a dynamic chan_sip peer's address is "
             "not trusted: banned at maxretry")
        t.ok(banned_in_order(peer, "198.51.100.77", 5), "a phone's registered contact is not "
             "trusted: banned at maxretry")

        show = d.cli("show", TRUNK)
        t.ok(show.returncode == 0 and "protected" in show.stdout and
             "pjsip:identify/carrier1-identify (ami:pbx1)" in show.stdout,
             "show says why the trunk is never banned", show.stdout + show.stderr)
        show = d.cli_json("show", REG_ADDR) or {}
        pr = show.get("protected") or {}
        t.eq((pr.get("reason"), pr.get("source"), pr.get("absolute")),
             (f"pjsip:registration/carrier2 {REG_HOST} (ami:pbx1)", "trunk", True),
             "show names the registration and the host name it was resolved from")
        st = d.cli("status")
        t.ok("trust: 4 addresses learned, refreshed" in st.stdout, "status lists the learned "
             "trust of the session", st.stdout)
        r = d.cli("ban", TRUNK, "--force")
        t.ok(r.returncode == 1 and "protected" in r.stderr,
             "a manual ban of the trunk is refused, even with --force", r.stderr)

        # Asterisk's configuration changes: the trunk is gone, a Reload event says so.
        with peer.lock:
            del cfg.endpoints["carrier1"]
        t.eq(peer.send_reload(), 1, "a Reload event reaches the daemon")
        t.ok(wait_trust(d, lambda tr: tr.get("entries") == 3),
             "after the Reload the trunk is no longer trusted", trust_of(d))
        t.ok("1 dropped" in d.log_text(), "the dropped trunk is logged", d.log_text()[-1500:])
        t.ok(banned_in_order(peer, TRUNK, 5), "the dropped trunk is bannable again: banned at "
             "maxretry")
        t.ok(not banned_in_order(peer, REG_ADDR, 20), "the registration server is still "
             "trusted")

        # DNS fails for the registration server's name (its line leaves the hosts file): the
        # addresses it had stay trusted.
        with open(hosts, "w") as f:
            f.write("127.0.0.1 localhost\n")
        before = trust_of(d).get("refreshed")
        t.eq(peer.send_reload("res_pjsip_outbound_registration.so"), 1, "another Reload")
        t.ok(wait_trust(d, lambda tr: tr.get("refreshed") != before and
                        tr.get("unresolved") == 1),
             "the refresh after it finds the name unresolved", trust_of(d))
        t.eq(trust_of(d).get("entries"), 3, "its last known addresses are kept")
        t.ok(not banned_in_order(peer, REG_ADDR6, 20), "and still protected")
        t.ok(d.alive(), "the daemon is still running")
    finally:
        if d:
            d.stop()
        peer.stop()
        subprocess.run(["umount", "/etc/hosts"], capture_output=True)


def case_authenticated(t, tmp):
    """A source that logged in is banned at trusted_maxretry (4 x 5 = 20), one that did not at
    maxretry; a restart keeps the logins."""
    peer = AmiPeer().start()
    d = None
    try:
        d = start(tmp, peer)
        office = "198.51.100.10"
        peer.send_raw(e.ami_event("SuccessfulAuth", office, account="1002"))
        t.ok(not banned_in_order(peer, office, 19), "after a SuccessfulAuth, 19 failures from "
             "the same source do not ban it")
        t.ok(banned_in_order(peer, office, 1), "the 20th (trusted_maxretry) bans it")
        t.ok("trusted_maxretry: it logged in lately" in d.log_text(),
             "the ban line says the higher threshold applied", d.log_text()[-1500:])
        t.ok(banned_in_order(peer, "198.51.100.20", 5), "a source without a success is banned "
             "at maxretry (5)")
        show = d.cli_json("show", office) or {}
        auth = show.get("authenticated") or {}
        t.ok(auth.get("trusted") is True and auth.get("threshold") == 20 and
             auth.get("account") == "1002", "show says it logged in and its threshold", show)

        # A restart keeps the logins: the database has them.
        kept = "198.51.100.40"
        peer.send_raw(e.ami_event("SuccessfulAuth", kept, account="1004"))
        t.ok(not banned_in_order(peer, kept, 4), "4 failures after a login")
        d.stop()
        d.start()
        t.ok(peer.wait_logins(2, timeout=20), "the restarted daemon logs in again")
        t.ok(not banned_in_order(peer, kept, 2), "after a restart, 6 failures in all still do "
             "not ban the source that logged in before it")
        t.ok(d.db_query("SELECT count(*) FROM successes")[0][0] == 2,
             "one row per source that logged in")
    finally:
        if d:
            d.stop()
        peer.stop()


WINDOW = 8


def case_expiry(t, tmp):
    """The trust a login earns runs out after trust_window."""
    peer = AmiPeer().start()
    d = None
    try:
        d = start(tmp, peer, policy=f"trust_window = {WINDOW}s\n")
        late = "198.51.100.30"
        t0 = time.monotonic()
        peer.send_raw(e.ami_event("SuccessfulAuth", late, account="1003"))
        t.ok(not banned_in_order(peer, late, 5), "within trust_window, 5 failures do not ban")
        time.sleep(max(0.0, t0 + WINDOW + 0.5 - time.monotonic()))
        t.ok(banned_in_order(peer, late, 1), "once trust_window has passed, the next failure "
             "(6 >= maxretry) bans it")
        show = d.cli_json("show", late) or {}
        t.ok((show.get("authenticated") or {}).get("trusted") is False,
             "show says the login is too old to count", show)
    finally:
        if d:
            d.stop()
        peer.stop()


def case_no_privilege(t, tmp):
    """An AMI user without write = system: one clear log line naming the manager.conf change,
    and detection otherwise unchanged."""
    peer = AmiPeer()
    peer.system_write = False
    peer.system_read = False
    peer.start()
    d = None
    try:
        d = start(tmp, peer)
        t.ok(wait_trust(d, lambda tr: tr.get("state") == "denied"),
             "the trust queries are refused", trust_of(d))
        t.ok(banned_in_order(peer, "198.51.100.50", 5), "detection is unchanged: banned at "
             "maxretry")
        peer.drop()  # a reconnection asks again, and is refused again
        t.ok(peer.wait_logins(2, timeout=20), "the daemon logs in again")
        h.wait_for(lambda: sum(1 for a, _ in peer.trust_actions) >= 2, timeout=10)
        t.ok(banned_in_order(peer, "198.51.100.51", 5), "and still bans after the reconnection")
        lines = [ln for ln in d.log_text().splitlines() if "Permission denied" in ln]
        t.eq(len(lines), 1, "one log line about the refusal, however often it is refused")
        t.ok(lines and 'write = system' in lines[0] and 'read = security,system' in lines[0] and
             "manager.conf" in lines[0] and "learn_trust = no" in lines[0],
             "it names the manager.conf change (and how to stop asking)", lines)
        t.ok(len(peer.trust_actions) == 2, "one refused action per login, nothing more",
             peer.trust_actions)
        st = d.cli("status")
        t.ok("trust: refused by Asterisk" in st.stdout, "status says trust is refused",
             st.stdout)
        t.ok(not in_kernel("127.0.0.1"), "our own RequestNotAllowed (from loopback) is never "
             "banned")
    finally:
        if d:
            d.stop()
        peer.stop()


CASES = {"learned": case_learned, "authenticated": case_authenticated, "expiry": case_expiry,
         "no_privilege": case_no_privilege}


def main():
    t = h.Tap()
    names = sys.argv[1:] or list(CASES)
    for name in names:
        with h.TempDir() as tmp:
            t.diag(f"case {name}")
            try:
                CASES[name](t, tmp)
            except Exception as ex:  # a case that breaks is a failure, the others still run
                t.ok(False, f"case {name} ran to the end", repr(ex))
    t.done()


main()
