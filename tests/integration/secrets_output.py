#!/usr/bin/python3
"""Secrets and output, with the real binaries in a private network namespace:
- no output quotes the AMI secret: `pbxguardd -t`, the daemon's log and the CLI, for a secret
  with a control character, one pasted on a line of its own, one in a secret_file, and one a
  peer echoes back when it refuses the login;
- a configuration holding an inline secret is refused when group or others can read it or
  another user owns it, like a secret_file; the installed sample is 0600 and valid;
- attacker text that is not UTF-8 (Service, AccountID) or holds C1 controls and DEL is escaped
  everywhere: `show` keeps every failure, `--json` is ASCII only, human output holds no control
  byte."""
import json
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
from amipeer import AmiPeer  # noqa: E402

t = h.Tap()

MARK = "MARK-7f3a"          # part of every secret below: it must appear in no output
SECRET = "PBXG\x1b" + MARK  # with a control character (ESC)


def check(conf):
    return subprocess.run([h.DAEMON, "-t", "-c", conf], capture_output=True, text=True,
                          timeout=30)


def cli(sock, *args):
    return subprocess.run([h.CLI, "-s", sock, *args], capture_output=True, timeout=30)


def leaks(*texts):
    """The texts (str or bytes) that hold any part of the secret."""
    out = []
    for x in texts:
        b = x.encode(errors="surrogateescape") if isinstance(x, str) else x
        if MARK.encode() in b or b"PBXG" in b:
            out.append(x)
    return out


def write(path, text, mode=0o600):
    with open(path, "wb") as f:
        f.write(text.encode(errors="surrogateescape") if isinstance(text, str) else text)
    os.chmod(path, mode)


def ascii_only(b, newline_ok=True):
    return all(0x20 <= c < 0x7f or (newline_ok and c == 0x0a) for c in b)


# --- 1. No output quotes the secret ---

with h.TempDir() as d:
    conf = h.make_config(d, {("ami:local", "secret"): SECRET})
    r = check(conf)
    t.ok(r.returncode == 1 and "[ami:local] secret: the secret holds control characters"
         in r.stderr, "-t refuses a secret holding a control character", r.stderr)
    t.eq(leaks(r.stdout, r.stderr), [], "-t does not quote that secret")

    dm = h.Daemon(conf)
    t.ok(dm.wait() is not None and not dm.running(), "the daemon refuses to start with it")
    t.eq(leaks(dm.log()), [], "the daemon's log does not quote it")
    r = subprocess.run([h.CLI, "-c", conf, "status"], capture_output=True, timeout=30)
    t.ok(r.returncode == 3 and not leaks(r.stdout, r.stderr),
         "the CLI with that configuration says the daemon is not running, and nothing of the "
         "secret", r.stderr)

    # Pasted alone on a line of [ami:local], and mistyped as a key: still not quoted.
    text = open(conf).read().replace(f"secret = {SECRET}\n",
                                     f"secret = s3cret\n{MARK}\n{MARK}\x01 = x\n")
    write(conf, text)
    r = check(conf)
    t.ok(r.returncode == 1 and "not shown" in r.stderr and not leaks(r.stdout, r.stderr),
         "-t names a stray line in [ami:NAME] without quoting it", r.stderr)

    # From a secret_file.
    sf = os.path.join(d, "ami.secret")
    write(sf, SECRET + "\n")
    write(conf, open(conf).read().replace("secret = s3cret\n", f"secret_file = {sf}\n")
          .replace(f"{MARK}\n{MARK}\x01 = x\n", ""))
    r = check(conf)
    t.ok(r.returncode == 1 and "holds control characters" in r.stderr
         and not leaks(r.stdout, r.stderr), "a secret_file's bad secret is not quoted either",
         r.stderr)

with h.TempDir() as d, AmiPeer(username="pbxguard", secret="right") as peer:
    # A valid secret the peer refuses, echoing it back in its Message.
    os.chmod(d, 0o755)
    conf = h.make_config(d, {("ami:local", "port"): str(peer.port),
                             ("ami:local", "username"): "pbxguard",
                             ("ami:local", "secret"): "PBXG-" + MARK,
                             ("ami:local", "auth"): "plain"})
    peer.fail_message = f"Authentication failed for secret PBXG-{MARK}"
    r = check(conf)
    t.ok(r.returncode == 0 and "secret = ********" in r.stdout and not leaks(r.stdout, r.stderr),
         "-t prints a valid secret masked", r.stdout[-500:])
    dm = h.Daemon(conf)
    t.ok(peer.wait_logins(1, ok=False), "the daemon tries the secret")
    t.ok(dm.wait_log("refused", timeout=10), "the refused login is logged", dm.log()[-1000:])
    sock = os.path.join(d, "control.sock")
    r = cli(sock, "status")
    rj = cli(sock, "--json", "status")
    t.ok(r.returncode == 0 and rj.returncode == 0, "status answers", r.stderr)
    t.eq(leaks(dm.log(), r.stdout, r.stderr, rj.stdout, rj.stderr), [],
         "neither the log (a peer echoing the secret) nor status show the secret")
    t.ok("********" in dm.log(), "the echoed secret is masked in the log line", dm.log()[-1000:])

    # A reload to a configuration with a bad secret: errors come back, the secret does not.
    write(conf, open(conf).read().replace(f"secret = PBXG-{MARK}\n", f"secret = {SECRET}\n"))
    r = cli(sock, "reload")
    t.ok(r.returncode == 1 and b"control characters" in r.stderr, "reload refuses it",
         r.stderr)
    t.eq(leaks(r.stdout, r.stderr, dm.log()), [], "reload's errors and the log do not quote it")
    dm.stop()

# --- 2. An inline secret is as closed as a secret_file ---

with h.TempDir() as d:
    conf = h.make_config(d, {("ami:local", "secret"): "s3cret"})
    t.eq(check(conf).returncode, 0, "an inline secret in a 0600 root file is accepted")
    os.chmod(conf, 0o644)
    r = check(conf)
    t.ok(r.returncode == 1 and "mode 0644" in r.stderr and f"chmod 600 {conf}" in r.stderr,
         "an inline secret in a file others can read is refused, saying what to do", r.stderr)
    dm = h.Daemon(conf)
    t.ok(dm.wait() is not None and "holds the secret inline" in dm.log(),
         "the daemon refuses to start with it", dm.log()[-500:])
    os.chmod(conf, 0o640)
    t.eq(check(conf).returncode, 1, "... and one its group can read")
    os.chmod(conf, 0o600)
    os.chown(conf, 4242, -1)
    r = check(conf)
    t.ok(r.returncode == 1 and "owned by uid 4242" in r.stderr,
         "an inline secret in a file another user owns is refused", r.stderr)
    os.chown(conf, 0, -1)
    sf = os.path.join(d, "ami.secret")
    write(sf, "s3cret\n")
    write(conf, open(conf).read().replace("secret = s3cret\n", f"secret_file = {sf}\n"), 0o644)
    t.eq(check(conf).returncode, 0, "a readable configuration with a secret_file is fine")

    # The install puts the sample (inline secret "change-me") in place 0600: valid as it is.
    dest = os.path.join(d, "dest")
    r = subprocess.run(["meson", "install", "-C", h.BUILD, "--no-rebuild", "--quiet",
                        "--destdir", dest], capture_output=True, text=True, timeout=120)
    installed = [os.path.join(root, f) for root, _, files in os.walk(dest) for f in files
                 if f == "pbxguard.conf" and "pbxguard" in os.path.basename(root)]
    if r.returncode != 0 or len(installed) != 1:
        t.ok(False, "meson install puts pbxguard.conf in place", r.stdout + r.stderr)
    else:
        mode = stat.S_IMODE(os.stat(installed[0]).st_mode)
        t.eq(oct(mode), oct(0o600), "the installed pbxguard.conf is 0600")
        r = check(installed[0])
        t.ok(r.returncode == 0, "the installed pbxguard.conf passes pbxguardd -t", r.stderr)

# --- 3. Attacker text that is not UTF-8, or holds C1 controls and DEL ---

ADDR = "203.0.113.77"
ADDR2 = "203.0.113.78"
with h.TempDir() as d, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    os.chmod(d, 0o755)
    conf = h.make_config(d, {("ami:local", "port"): str(peer.port),
                             ("ami:local", "username"): "pbxguard",
                             ("ami:local", "secret"): "s3cret",
                             ("policy", "maxretry"): "10"})
    sock = os.path.join(d, "control.sock")
    dm = h.Daemon(conf)
    t.ok(peer.wait_logged_in(), "the daemon logs in")
    # Invalid UTF-8 in Service and AccountID.
    ev = peer.event_bytes("InvalidAccountID", ADDR, service="PJSIP", account="ACCT")
    ev = ev.replace(b"Service: PJSIP\r\n", b"Service: \xff\x9bSIP\r\n") \
           .replace(b"AccountID: ACCT\r\n", b"AccountID: \xc3\x28\x9b[2J\x7f\r\n")
    # Valid UTF-8 holding C1 controls (U+009B is CSI) and DEL.
    ev2 = peer.event_bytes("InvalidAccountID", ADDR2, service="PJSIP", account="ACCT") \
        .replace(b"AccountID: ACCT\r\n", "AccountID: a\u009b[31m\u0085\x7fb\r\n".encode())
    peer.send_raw(ev * 3 + ev2 * 2)
    t.ok(h.wait_for(lambda: json.loads(cli(sock, "--json", "show", ADDR2).stdout or b"{}")
                    .get("failure_count") == 2, 10), "the daemon recorded the events")

    r = cli(sock, "show", ADDR)
    t.ok(r.returncode == 0 and b"\\xff\\x9bSIP" in r.stdout.replace(b"\\\\", b"\\")
         and b"InvalidAccountID" in r.stdout, "show lists the failures of a service that is "
         "not UTF-8, escaped", r.stdout)
    t.ok(ascii_only(r.stdout), "show's human output holds no control byte", r.stdout)
    r = cli(sock, "--json", "show", ADDR)
    j = json.loads(r.stdout)
    t.ok(ascii_only(r.stdout), "show --json is ASCII only", r.stdout)
    t.eq(sum(f["count"] for f in j["failures"]), j["failure_count"],
         "show --json accounts for every failure (3), whatever the service's bytes")
    t.ok(j["failures"] and j["failures"][0]["service"] == "\\xff\\x9bSIP"
         and j["accounts"] and j["accounts"][0]["account"].startswith("\\xc3(\\x9b[2J"),
         "show --json escapes the service and account that are not UTF-8", j)

    r = cli(sock, "--json", "show", ADDR2)
    low = r.stdout.lower()
    t.ok(ascii_only(r.stdout) and b"\\u009b" in low and b"\\u0085" in low
         and b"\\u007f" in low, "--json writes C1 controls and DEL as \\u escapes", r.stdout)
    t.eq(json.loads(r.stdout)["accounts"][0]["account"], "a\u009b[31m\u0085\x7fb",
         "... and the account reads back exactly")
    r = cli(sock, "show", ADDR2)
    t.ok(ascii_only(r.stdout) and b"a\\xc2\\x9b[31m\\xc2\\x85\\x7fb" in r.stdout,
         "human output escapes C1 controls and DEL", r.stdout)

    # A manual ban's note and an error quoting attacker-shaped input: escaped too.
    r = cli(sock, "ban", "198.51.100.9", "--reason", "x\u009by")
    r2 = cli(sock, "--json", "list")
    r3 = cli(sock, "show", "1.2.3.4\u009b")
    t.ok(r.returncode == 0 and ascii_only(r2.stdout) and ascii_only(r3.stderr),
         "list --json with a note holding a C1 control, and an error about a bad address, are "
         "ASCII only", r2.stdout + r3.stderr)
    dm.stop()
    r = subprocess.run([h.CLI, "report", "--db", os.path.join(d, "pbxguard.db"), "--format",
                        "json", "--since", "1d"], capture_output=True, timeout=60)
    t.ok(r.returncode == 0 and ascii_only(r.stdout), "report --format json is ASCII only",
         r.stderr)
    t.eq(leaks(dm.log()), [], "nothing of any secret in this log either")
t.done()
