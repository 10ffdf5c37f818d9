#!/usr/bin/python3
"""The CLI reads only [general] control_socket and database from the configuration, never the
daemon's secrets: a member of control_group (not root) runs `pbxguard status` against the real
daemon with -c and with the default file, whose AMI secret is in a root-only secret_file. An
unreadable file is named with what to do: an error with -c, a warning and the default socket
without it; an absent default file means the defaults, silently.

The member is uid 4242 (which need not exist) with the group nogroup, through setpriv. The
default file /etc/pbxguard/pbxguard.conf and the default socket /run/pbxguard/control.sock are
made in overlays of /etc and /run inside a private mount namespace: the host's own files are
never touched, and the overlays go with the namespace."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.require_root()
if not os.environ.get("PBXGUARD_NETNS"):
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--",
                        sys.executable, *sys.argv], env=dict(os.environ, PBXGUARD_NETNS="1"))
    sys.exit(r.returncode)
h.in_private_netns()  # inside already: SIGTERM runs the cleanup
h.setup_loopback()
from amipeer import AmiPeer  # noqa: E402

MEMBER = ["setpriv", "--reuid=4242", "--regid=65534", "--clear-groups"]
DEFAULT_CONF = "/etc/pbxguard/pbxguard.conf"
DEFAULT_SOCK = "/run/pbxguard/control.sock"
t = h.Tap()


def member(*args):
    return subprocess.run([*MEMBER, h.CLI, *args], capture_output=True, text=True, timeout=30)


def overlay(tmp, target):
    """Makes target writable in this mount namespace only: an overlay whose upper layer is in
    tmp (a tmpfs). Returns False (and says why) if the kernel refuses."""
    name = target.strip("/").replace("/", "_")
    upper, work = os.path.join(tmp, name + ".u"), os.path.join(tmp, name + ".w")
    os.mkdir(upper)
    os.mkdir(work)
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={target},upperdir={upper},workdir={work}", target],
                       capture_output=True, text=True)
    if r.returncode != 0:
        t.diag(f"overlay on {target}: {r.stderr.strip()}")
    return r.returncode == 0


with h.TempDir() as tmp, AmiPeer(username="pbxguard", secret="s3cret") as peer:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "pbxguard-cli-config", tmp],
                   check=True)
    mounted = [tmp]
    try:
        if not (overlay(tmp, "/etc") and overlay(tmp, "/run")):
            h.skip_all("overlayfs is not available")
        mounted[:0] = ["/run", "/etc"]
        os.makedirs("/etc/pbxguard", exist_ok=True)
        os.makedirs("/run/pbxguard", exist_ok=True)
        secret = os.path.join(tmp, "ami.secret")
        with open(secret, "w") as f:
            f.write("s3cret\n")
        os.chmod(secret, 0o600)
        conf = h.make_config(tmp, {
            ("general", "control_socket"): DEFAULT_SOCK,
            ("general", "control_group"): "nogroup",
            ("ami:local", "port"): str(peer.port),
            ("ami:local", "username"): "pbxguard",
        })
        with open(conf) as f:
            text = f.read().replace("\nsecret = change-me\n", f"\nsecret_file = {secret}\n")
        with open(DEFAULT_CONF, "w") as f:
            f.write(text)
        os.chown(DEFAULT_CONF, 0, 65534)
        os.chmod(DEFAULT_CONF, 0o640)

        d = h.Daemon(DEFAULT_CONF, log_path=os.path.join(tmp, "pbxguardd.log"))
        t.ok(peer.wait_logged_in(), "the daemon reads its secret_file and logs in", d.log())
        t.ok(h.wait_for(lambda: os.path.exists(DEFAULT_SOCK), timeout=5.0),
             "the daemon listens on the default socket")

        r = member("-c", DEFAULT_CONF, "status")
        t.ok(r.returncode == 0 and r.stdout.startswith("pbxguardd ") and r.stderr == "",
             "a control_group member runs status with -c: the secret_file is not opened",
             f"rc={r.returncode}\n{r.stderr}")
        r = member("status")
        t.ok(r.returncode == 0 and r.stdout.startswith("pbxguardd ") and r.stderr == "",
             "... and without -c, from the default file", f"rc={r.returncode}\n{r.stderr}")

        # A file the member may not read.
        os.chmod(DEFAULT_CONF, 0o600)
        r = member("-c", DEFAULT_CONF, "status")
        t.ok(r.returncode == 1 and r.stdout == "", "-c with an unreadable file: exit 1",
             f"rc={r.returncode}\n{r.stderr}")
        t.ok(f"{DEFAULT_CONF}: cannot read: Permission denied" in r.stderr
             and "-s PATH" in r.stderr and "secret" in r.stderr.split("cannot read")[1],
             "... it says the file cannot be read and what to do", r.stderr)
        t.ok("secret_file" not in r.stderr.split("\n")[0],
             "... and does not complain about the daemon's secret", r.stderr)
        r = member("status")
        t.ok(r.returncode == 0 and r.stdout.startswith("pbxguardd "),
             "without -c an unreadable default file falls back to the default socket",
             f"rc={r.returncode}\n{r.stderr}")
        t.ok(f"{DEFAULT_CONF}: cannot read: Permission denied" in r.stderr
             and f"using the default control socket {DEFAULT_SOCK}" in r.stderr,
             "... and says so", r.stderr)
        r = member("report", "--since", "1h")
        t.ok(r.returncode == 1 and "using the default database /var/lib/pbxguard/pbxguard.db"
             in r.stderr, "report without --db: the same warning, for the database", r.stderr)

        # A value the daemon would refuse is refused here too, by file, line and key.
        bad = os.path.join(tmp, "bad.conf")
        with open(bad, "w") as f:
            f.write("[general]\ncontrol_socket = run/control.sock\n")
        os.chmod(bad, 0o644)
        r = member("-c", bad, "status")
        t.ok(r.returncode == 1 and f"{bad}:2: [general] control_socket:" in r.stderr,
             "a bad control_socket: exit 1, named by file, line and key", r.stderr)

        # No default file at all: the defaults, silently.
        os.unlink(DEFAULT_CONF)
        r = member("status")
        t.ok(r.returncode == 0 and r.stdout.startswith("pbxguardd ") and r.stderr == "",
             "no default file: the default socket, and not a word about it",
             f"rc={r.returncode}\n{r.stderr}")

        rc, _ = d.stop()
        t.eq(rc, 0, "the daemon stops")
    finally:
        for m in mounted:
            subprocess.run(["umount", "-l", m], capture_output=True)
t.done()
