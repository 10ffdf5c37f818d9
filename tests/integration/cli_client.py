#!/usr/bin/python3
"""The pbxguard CLI end to end through a real control socket served by tests/tools/ctl-echo (the
daemon's ctl module with an echoing handler): the requests it sends, its exit codes, its
errors, the daemon-not-running case, and a non-root user refused by the server."""
import atexit
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
ECHO = os.path.join(h.BUILD, "tests", "ctl-echo")
t = h.Tap()
procs = []


@atexit.register
def _cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def cli(*args, user=None):
    cmd = [h.CLI, *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=40)


with h.TempDir() as d:
    os.chmod(d, 0o755)
    path = os.path.join(d, "control.sock")

    r = cli("-s", path, "status")
    t.eq(r.returncode, 3, "no daemon: exit code 3")
    t.ok("not running" in r.stderr and "systemctl start pbxguard" in r.stderr,
         "no daemon: the error says how to start it", r.stderr)

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    r = cli("-s", path, "list")
    t.eq(r.returncode, 3, "a stale socket nobody listens on: exit code 3")
    os.unlink(path)

    srv = subprocess.Popen([ECHO, path], stdout=subprocess.PIPE, text=True)
    procs.append(srv)
    t.eq(srv.stdout.readline().strip(), "ready", "the echo server listens")

    r = cli("-s", path, "--json", "ban", "2001:DB8::7", "--for", "1h30m", "--reason", "ticket 9")
    t.eq(r.returncode, 0, "ban --json exits 0")
    try:
        req = json.loads(r.stdout)["req"]
    except (ValueError, KeyError):
        req = None
    t.eq(req, {"cmd": "ban", "addr": "2001:db8::7", "duration": 5400, "note": "ticket 9"},
         "ban sends the canonical address, the duration in seconds and the note")

    r = cli("-s", path, "--json", "list", "--v4", "--reason", "manual")
    t.eq(json.loads(r.stdout).get("req"), {"cmd": "list", "family": 4, "reason": "manual"},
         "list sends its filters")

    conf = os.path.join(d, "pbxguard.conf")
    with open(conf, "w") as f:
        f.write(f"[general]\ncontrol_socket = {path}\n")
    r = cli("-c", conf, "--json", "show", "192.0.2.9")
    t.ok(r.returncode == 0 and json.loads(r.stdout).get("req", {}).get("addr") == "192.0.2.9",
         "-c CONFIG takes the socket path from the configuration", r.stderr)

    r = cli("-c", os.path.join(d, "missing.conf"), "status")
    t.eq(r.returncode, 1, "-c with an unreadable configuration fails with exit code 1")

    r = subprocess.run([h.CLI, "-c", os.path.join(d, "nowhere.conf"), "report", "--since", "1d"],
                       capture_output=True, text=True, timeout=40)
    t.ok(r.returncode == 1 and "nowhere.conf" in r.stderr,
         "pbxguard -c CONFIG report hands the configuration to report", r.stderr)

    r = cli("-s", path, "reload")
    t.eq((r.returncode, r.stdout), (0, "configuration reloaded\n"), "reload prints a one-line answer")

    r = cli("-s", path, "ban", "192.0.2.66")
    t.eq(r.returncode, 1, "an operation the daemon refuses exits 1")
    t.eq(r.stderr, "pbxguard: ban: refused as asked\n", "and prints the daemon's reason")
    r = cli("-s", path, "unban", "192.0.2.67")
    t.eq(r.returncode, 2, "a request the daemon calls malformed exits 2")

    usage_errors = [
        (["ban"], "ban needs an address"),
        (["ban", "1.2.3.400"], "\"1.2.3.400\" is not an IP address"),
        (["ban", "192.0.2.1/33"], "\"/33\" is not a prefix length for IPv4"),
        (["ban", "192.0.2.1/24"], "did you mean 192.0.2.0/24?"),
        (["ban", "192.0.2.1", "--for", "soon"], "--for \"soon\" is not a duration"),
        (["ban", "192.0.2.1", "--for", "1h", "--permanent"], "exclude each other"),
        (["ban", "192.0.2.1", "--bogus"], "unknown option \"--bogus\" for ban"),
        (["unban", "2001:db8::/200"], "\"/200\" is not a prefix length for IPv6"),
        (["list", "--reason", "x"], "not a ban reason"),
        (["show"], "show needs an address"),
        (["frobnicate"], "unknown command \"frobnicate\""),
        ([], "no command given"),
    ]
    for args, want in usage_errors:
        r = cli("-s", path, *args)
        lines = r.stderr.splitlines()
        t.ok(r.returncode == 2 and len(lines) == 2 and want in lines[0]
             and lines[1].startswith("usage: pbxguard"),
             f"pbxguard {' '.join(args)}: exit 2, \"{want}\", and a usage line",
             f"rc={r.returncode}\n{r.stderr}")

    for args in (["--help"], ["ban", "--help"], ["list", "-h"]):
        r = cli(*args)
        t.ok(r.returncode == 0 and r.stdout.startswith("usage: pbxguard"),
             f"pbxguard {' '.join(args)} prints usage and exits 0", r.stderr)

    os.chmod(path, 0o666)
    r = cli("-s", path, "status", user=65534)
    t.eq(r.returncode, 1, "a non-root user is refused by the daemon: exit 1")
    t.ok("permission denied" in r.stderr and "uid 65534" in r.stderr,
         "the refusal comes from the daemon and names the uid", r.stderr)
    os.chmod(path, 0o600)
    r = cli("-s", path, "status", user=65534)
    t.ok(r.returncode == 1 and "permission denied" in r.stderr,
         "through a 0600 socket a non-root user is refused by the file permissions", r.stderr)

    h.stop_process(srv)

t.done()
