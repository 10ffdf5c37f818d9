#!/usr/bin/python3
"""The runtime allowlist, against the real pbxguardd, the real CLI and real nftables in a
private network namespace with the scripted AMI peer:

- `allow` lifts the bans it covers (the reply names them) and keeps new ones from coming;
- it is kept in the database across a restart, and `--for` ends on the daemon's clock;
- `show` says who allowed an address and why; `allowlist` lists [whitelist] entries as
  "config", which `allow --remove` refuses to touch;
- a member of control_group may not allow wider than group_min_prefix4, nobody wider than
  [protect] min_prefix4; the list is bounded."""
import atexit
import grp
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
from amipeer import AmiPeer  # noqa: E402

t = h.Tap()
NOBODY = 65534
GROUP = f"pbxal{os.getpid()}"
have_group_tools = all(subprocess.run(["sh", "-c", f"command -v {tool}"],
                                      capture_output=True).returncode == 0
                       for tool in ("groupadd", "groupdel", "setpriv"))
GID = None
if have_group_tools:
    atexit.register(lambda: subprocess.run(["groupdel", GROUP], capture_output=True))
    subprocess.run(["groupadd", GROUP], check=True)
    GID = grp.getgrnam(GROUP).gr_gid


def bans():
    return h.pbxguard_bans() or {}


def banned(key, timeout=8.0):
    return bool(h.wait_for(lambda: key in bans(), timeout=timeout))


sentinels = iter(range(1, 200))


def barrier(peer):
    """Returns once every event sent before is judged: a fresh sentinel address gets banned."""
    ip = f"192.0.2.{100 + next(sentinels) % 100}"
    peer.send_events("InvalidPassword", ip, count=5)
    return banned(ip)


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    os.chmod(tmp, 0o755)
    sock = os.path.join(tmp, "control.sock")
    overrides = {
        ("ami:local", "port"): str(peer.port),
        ("ami:local", "secret"): "s3cret",
        ("ami:local", "username"): "pbxguard",
    }
    if GID is not None:
        overrides[("general", "control_group")] = GROUP
    conf = h.make_config(tmp, overrides)
    text = open(conf).read().replace("[whitelist]\n", "[whitelist]\ncidr = 198.51.100.0/24\n", 1)
    open(conf, "w").write(text)

    def cli(*args, uid=None):
        argv = [h.CLI, "-s", sock, *args]
        if uid is not None:
            argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={GID}", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    def cli_json(*args, uid=None):
        r = cli("--json", *args, uid=uid)
        try:
            return r.returncode, json.loads(r.stdout or "{}")
        except ValueError:
            return r.returncode, {"raw": r.stdout + r.stderr}

    d = h.Daemon(conf)
    t.ok(peer.wait_logged_in(), "the daemon logs in to the AMI peer", d.log())

    # ---- allow lifts a ban and prevents new ones --------------------------------------------
    peer.send_events("InvalidPassword", "203.0.113.7", count=5)
    t.ok(banned("203.0.113.7"), "5 failures ban 203.0.113.7")
    r = cli("allow", "203.0.113.7", "--reason", "office 'VPN' \"exit\"")
    t.ok(r.returncode == 0 and "allowed 203.0.113.7 until removed" in r.stdout
         and "lifted the ban of 203.0.113.7" in r.stdout,
         "allow says it lifted the ban", r.stdout + r.stderr)
    t.ok(h.wait_for(lambda: "203.0.113.7" not in bans(), timeout=3),
         "the ban is gone from the kernel at once")
    peer.send_events("InvalidPassword", "203.0.113.7", count=20)
    barrier(peer)
    t.ok("203.0.113.7" not in bans(), "20 more failures from an allowed address ban nothing")

    rc, j = cli_json("show", "203.0.113.7")
    al = j.get("allowed") or {}
    t.ok(rc == 0 and al.get("uid") == 0 and al.get("added_by") == "cli:uid=0"
         and al.get("reason") == "office 'VPN' \"exit\"" and al.get("expires") is None,
         "show --json says who allowed it (uid 0) and why", j)
    t.eq((j.get("protected") or {}).get("source"), "allow", "show names the allowlist as the protection")
    r = cli("show", "203.0.113.7")
    t.ok("allowed" in r.stdout and "root (uid 0)" in r.stdout and "office 'VPN'" in r.stdout,
         "show prints who (root) and why", r.stdout)

    # A prefix: every ban inside it is lifted, and the reply lists them.
    for ip in ("203.0.113.130", "203.0.113.131"):
        peer.send_events("InvalidPassword", ip, count=5)
    t.ok(banned("203.0.113.130") and banned("203.0.113.131"), "two addresses of a /25 banned")
    rc, j = cli_json("allow", "203.0.113.128/25", "--for", "1h")
    t.ok(rc == 0 and sorted(j.get("lifted", [])) == ["203.0.113.130", "203.0.113.131"],
         "allowing their /25 lifts both bans, named in the reply", j)
    t.ok(h.wait_for(lambda: not any(k.startswith("203.0.113.13") for k in bans()), timeout=3),
         "both are gone from the kernel")

    # A manual ban with --force overrides the allowlist (as for [whitelist]); a plain one not.
    r = cli("ban", "203.0.113.7")
    t.ok(r.returncode == 1 and "whitelisted" in r.stderr and "allow" in r.stderr,
         "a manual ban of an allowed address is refused without --force", r.stderr)

    # ---- config entries ---------------------------------------------------------------------
    rc, j = cli_json("allowlist")
    srcs = {e["prefix"]: e["source"] for e in j.get("entries", [])}
    t.ok(rc == 0 and srcs.get("198.51.100.0/24") == "config"
         and srcs.get("203.0.113.7") == "runtime" and srcs.get("203.0.113.128/25") == "runtime",
         "allowlist lists [whitelist] as config and the runtime entries", j)
    r = cli("allowlist")
    t.ok("198.51.100.0/24" in r.stdout and "config" in r.stdout and "root (uid 0)" in r.stdout,
         "allowlist prints both kinds", r.stdout)
    r = cli("allow", "--remove", "198.51.100.0/24")
    t.ok(r.returncode == 1 and "configuration file" in r.stderr and "[whitelist]" in r.stderr,
         "a [whitelist] entry cannot be removed from the CLI, and the error says where it lives",
         r.stderr)
    r = cli("allow", "--remove", "203.0.113.200")
    t.ok(r.returncode == 1 and "inside the allowed 203.0.113.128/25" in r.stderr,
         "removing an address inside an allowed prefix names the prefix", r.stderr)

    # ---- width rules ------------------------------------------------------------------------
    r = cli("allow", "10.0.0.0/7")
    t.ok(r.returncode == 1 and "min_prefix4" in r.stderr,
         "nobody allows a prefix wider than [protect] min_prefix4 (/8)", r.stderr)
    r = cli("allow", "0.0.0.0/0")
    t.ok(r.returncode == 2, "0.0.0.0/0 is refused as a usage error", r.stderr)
    if GID is None:
        t.skip("group member refused a wide allow", "groupadd/setpriv not found")
        t.skip("group member allows a narrow prefix", "groupadd/setpriv not found")
    else:
        rc, j = cli_json("allow", "10.1.0.0/16", uid=NOBODY)
        t.ok(rc == 1 and j.get("rule") == "group-prefix" and "group_min_prefix4" in j.get("error", ""),
             "a member of control_group may not allow wider than group_min_prefix4", j)
        rc, j = cli_json("allow", "10.1.2.3", "--reason", "member", uid=NOBODY)
        t.ok(rc == 0 and (j.get("allow") or {}).get("uid") == NOBODY,
             "a member allows a single address, recorded as theirs", j)

    # ---- --for expiry, kept across a restart ------------------------------------------------
    rc, j = cli_json("allow", "203.0.113.50", "--for", "3s")
    t.ok(rc == 0 and (j.get("allow") or {}).get("remaining") in (2, 3), "an allow --for 3s", j)
    rc, d_ = d.stop()
    t.eq(rc, 0, "the daemon stops cleanly")
    d = h.Daemon(conf)
    t.ok(peer.wait_logins(2), "the restarted daemon logs in again", d.log())
    rc, j = cli_json("allowlist")
    kept = {e["prefix"] for e in j.get("entries", []) if e["source"] == "runtime"}
    t.ok({"203.0.113.7", "203.0.113.128/25"} <= kept, "runtime entries survive a restart", j)
    peer.send_events("InvalidPassword", "203.0.113.7", count=10)
    barrier(peer)
    t.ok("203.0.113.7" not in bans(), "and still keep the address from being banned")
    t.ok(d.wait_log("allowlist: 203.0.113.50 expired", timeout=10),
         "the --for 3s entry expires on the daemon's clock", d.log()[-2000:])
    peer.send_events("InvalidPassword", "203.0.113.50", count=5)
    t.ok(banned("203.0.113.50"), "once expired, the address is banned again")
    r = cli("allow", "--remove", "203.0.113.7")
    t.ok(r.returncode == 0 and "removed 203.0.113.7" in r.stdout, "allow --remove", r.stderr)
    peer.send_events("InvalidPassword", "203.0.113.7", count=5)
    t.ok(banned("203.0.113.7"), "a removed entry no longer protects")

    # ---- a bounded list ---------------------------------------------------------------------
    rc, j = cli_json("allowlist")
    room = j.get("max", 0) - j.get("runtime", 0)
    t.ok(room > 0, "allowlist reports its bound", j)
    n_ok = 0
    t0 = time.monotonic()
    # One connection, one request after another (the CLI would spawn a process per entry).
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock)
        s.settimeout(30)
        f = s.makefile("rb")
        for i in range(room):
            ip = f"100.64.{i // 256}.{i % 256}"
            s.sendall((json.dumps({"cmd": "allow", "addr": ip}) + "\n").encode())
            if json.loads(f.readline()).get("ok"):
                n_ok += 1
    t.eq(n_ok, room, "the list fills up to its bound")
    t.diag(f"{room} allows in {time.monotonic() - t0:.1f} s")
    r = cli("allow", "100.127.255.255")
    t.ok(r.returncode == 1 and "full" in r.stderr, "one more is refused: the list is full", r.stderr)
    # The event path stays an index lookup with a full list.
    peer.send_events("InvalidPassword", "203.0.113.99", count=5)
    t.ok(banned("203.0.113.99"), "bans still land with a full allowlist")
    peer.send_events("InvalidPassword", "100.64.0.9", count=10)
    barrier(peer)
    t.ok("100.64.0.9" not in bans(), "an address of the full list is still protected")

    rc, _ = d.stop()
    t.eq(rc, 0, "the daemon stops cleanly")
t.done()
