#!/usr/bin/python3
"""pbxguardd as pbxguard.service runs it, without systemd: an unprivileged system user whose
only capability is an ambient CAP_NET_ADMIN (setpriv plays systemd's User=, AmbientCapabilities=
and CapabilityBoundingSet=), with its state and runtime directories its own and the
configuration root:GROUP 0640.

It refuses to start without the capability, logs in to a scripted AMI server, bans into the
kernel's sets, serves the CLI to root and to its own user (and nobody else), reloads, hands its
socket to a control group it is a member of (and says why it cannot to one it is not), takes
its secret from a systemd-style credential, refuses a secret its group shares with someone else,
is non-dumpable (/proc/PID is root's, its own user cannot read its memory or environment), and
the report reads its database as the same user through a read-only mount, while it runs and
after it stopped.

The test user and groups are made here (named after this process, so that concurrent runs do not
meet) and removed at the end, also on failure or SIGTERM."""
import atexit
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def skip_all(reason):
    """The whole test skipped: meson's TAP reader takes a 1..0 plan with SKIP and status 0."""
    print(f"1..0 # SKIP {reason}")
    sys.exit(0)


h.in_private_netns()
import e2elib as e  # noqa: E402

for tool in ("setpriv", "useradd", "userdel", "groupadd", "groupdel", "gpasswd", "unshare",
             "mount"):
    if not shutil.which(tool):
        skip_all(f"{tool} not found")

PREFIX = "pbxgt"
USER = f"{PREFIX}{os.getpid()}"
CTL_GROUP = f"{PREFIX}c{os.getpid()}"
CAP_NET_ADMIN = 12

t = h.Tap()
h.setup_loopback()


def run(argv, **kw):
    kw.setdefault("timeout", 30)
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def account_tool(argv):
    """useradd and friends, retried while another run holds /etc/passwd's lock."""
    for _ in range(20):
        r = run(argv)
        if r.returncode == 0 or "lock" not in r.stderr:
            return r
        time.sleep(0.25)
    return r


def remove_accounts():
    for name in (USER, CTL_GROUP):
        try:
            grp.getgrnam(name)
            run(["gpasswd", "-M", "", name])
        except KeyError:
            pass
    try:
        pwd.getpwnam(USER)
        account_tool(["userdel", USER])
    except KeyError:
        pass
    for name in (USER, CTL_GROUP):
        try:
            grp.getgrnam(name)
            account_tool(["groupdel", name])
        except KeyError:
            pass


def remove_stale_accounts():
    """Accounts a killed earlier run (SIGKILL: no cleanup) left, recognised by the name and a
    pid that is gone."""
    for g in grp.getgrall():
        m = re.fullmatch(PREFIX + r"c?(\d+)", g.gr_name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            try:
                pwd.getpwnam(g.gr_name)
                account_tool(["userdel", g.gr_name])
            except KeyError:
                pass
            try:
                grp.getgrnam(g.gr_name)
                account_tool(["groupdel", g.gr_name])
            except KeyError:
                pass


atexit.register(remove_accounts)
remove_stale_accounts()
r = account_tool(["useradd", "--system", "--user-group", "--no-create-home",
                  "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", USER])
if r.returncode != 0:
    skip_all(f"cannot add the test user {USER}: {r.stderr.strip()}")
r = account_tool(["groupadd", "--system", CTL_GROUP])
if r.returncode != 0:
    skip_all(f"cannot add the test group {CTL_GROUP}: {r.stderr.strip()}")
UID = pwd.getpwnam(USER).pw_uid
GID = grp.getgrnam(USER).gr_gid
CTL_GID = grp.getgrnam(CTL_GROUP).gr_gid


def as_user(argv, caps=True, groups=()):
    """argv run as the test user, as systemd runs the service: with the ambient CAP_NET_ADMIN
    as its only capability, or with none at all."""
    pre = ["setpriv", f"--reuid={UID}", f"--regid={GID}"]
    pre += [f"--groups={','.join(str(g) for g in groups)}"] if groups else ["--clear-groups"]
    if caps:
        pre += ["--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin",
                "--bounding-set=-all,+net_admin"]
    else:
        pre += ["--inh-caps=-all", "--bounding-set=-all"]
    return pre + ["--", *argv]


class Rig:
    """The directories systemd would make, the configuration and a scripted AMI server."""

    def __init__(self, tmp):
        self.tmp = tmp
        os.chmod(tmp, 0o755)
        self.etc = os.path.join(tmp, "etc")
        self.state = os.path.join(tmp, "state")
        self.run = os.path.join(tmp, "run")
        self.creds = os.path.join(tmp, "credentials")
        os.mkdir(self.etc, 0o755)
        for d, mode in ((self.state, 0o750), (self.run, 0o755), (self.creds, 0o500)):
            os.mkdir(d)
            os.chown(d, UID, GID)
            os.chmod(d, mode)
        self.db = os.path.join(self.state, "pbxguard.db")
        self.sock = os.path.join(self.run, "control.sock")
        self.conf = os.path.join(self.etc, "pbxguard.conf")
        self.secret = os.path.join(self.etc, "ami.secret")
        self.ami = e.AmiServer(username="guard", secret="guardpass").start()
        self.p = None
        self.logpath = os.path.join(tmp, "pbxguardd.log")

    def write_secret_file(self, mode=0o640):
        with open(self.secret, "w") as f:
            f.write("guardpass\n")
        os.chown(self.secret, 0, GID)
        os.chmod(self.secret, mode)

    def write_config(self, secret_line=None, control_group=""):
        secret_line = secret_line or f"secret_file = {self.secret}"
        with open(self.conf, "w") as f:
            f.write(f"[general]\ndatabase = {self.db}\ncontrol_socket = {self.sock}\n"
                    f"control_group = {control_group}\n"
                    f"lock_file = {self.run}/pbxguardd.lock\n\n"
                    f"[ami:pbx1]\nhost = 127.0.0.1\nport = {self.ami.port}\nusername = guard\n"
                    f"{secret_line}\nauth = md5\nbackoff_min = 100ms\nbackoff_max = 1s\n\n"
                    "[policy]\nmaxretry = 5\nfindtime = 10m\nbantime = 1h\n")
        os.chown(self.conf, 0, GID)
        os.chmod(self.conf, 0o640)

    def start(self, caps=True, groups=(), env=None):
        self.log = open(self.logpath, "w")
        self.p = subprocess.Popen(as_user([h.DAEMON, "-c", self.conf], caps, groups),
                                  stdin=subprocess.DEVNULL, stdout=self.log,
                                  stderr=subprocess.STDOUT, env=dict(os.environ, **(env or {})))
        h._DAEMONS.append(self.p)
        return self

    def log_text(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=10.0):
        h.wait_for(lambda: text in self.log_text() or self.p.poll() is not None, timeout=timeout)
        return text in self.log_text()

    def stop(self):
        rc, _ = h.stop_process(self.p, timeout=10)
        self.log.close()
        return rc

    def cli(self, *args, user=False, groups=()):
        argv = [h.CLI, "-s", self.sock, *args]
        return run(as_user(argv, caps=False, groups=groups) if user else argv)

    def close(self):
        if self.p and self.p.poll() is None:
            self.stop()
        self.ami.stop()


def status_field(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].split()
    except OSError:
        return None
    return None


def test_refuses_without_the_capability(rig):
    rig.write_secret_file()
    rig.write_config()
    rig.start(caps=False)
    try:
        rc = rig.p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = None
    rig.log.close()
    log = rig.log_text()
    t.ok(rc == 1 and "needs CAP_NET_ADMIN" in log and f"uid {UID}" in log,
         "without CAP_NET_ADMIN it refuses to start, saying what it needs", (rc, log))
    t.ok(not h.nft_tables(), "and it left nothing in nftables")


def test_runs_unprivileged(rig):
    rig.start()
    if not t.ok(rig.wait_log("started") and rig.ami.wait_login(1, timeout=15),
                "as the unprivileged user with CAP_NET_ADMIN only it starts and logs in to AMI",
                rig.log_text()[-2000:]):
        return False
    pid = rig.p.pid
    # setpriv execs the daemon in place: the process is pbxguardd itself.
    uids = status_field(pid, "Uid")
    cap_eff = int(status_field(pid, "CapEff")[0], 16)
    cap_bnd = int(status_field(pid, "CapBnd")[0], 16)
    t.ok(uids and set(uids) == {str(UID)} and cap_eff == 1 << CAP_NET_ADMIN
         and cap_bnd == 1 << CAP_NET_ADMIN,
         "its uids are the service user's, its capabilities CAP_NET_ADMIN alone",
         (uids, hex(cap_eff), hex(cap_bnd)))

    st = os.stat(f"/proc/{pid}/status")
    r = run(as_user(["cat", f"/proc/{pid}/environ"], caps=False))
    t.ok(st.st_uid == 0 and r.returncode != 0,
         "it is not dumpable: /proc/PID is root's, and its own user cannot read its environment "
         "(no core dump, no ptrace)", (st.st_uid, r.returncode, r.stderr))

    rig.ami.send(e.attack("192.0.2.10", 5))
    t.ok(h.wait_for(lambda: "192.0.2.10" in (h.pbxguard_bans() or {}), timeout=10),
         "five failures ban the address in the kernel's set", rig.log_text()[-2000:])

    r = rig.cli("status")
    t.ok(r.returncode == 0 and "pbxguardd" in r.stdout, "root's CLI is served", r.stderr)
    r = rig.cli("list", user=True)
    t.ok(r.returncode == 0 and "192.0.2.10" in r.stdout,
         "the daemon's own user's CLI is served", (r.returncode, r.stdout, r.stderr))
    r = run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", h.CLI, "-s",
             rig.sock, "status"])
    t.ok(r.returncode != 0 and "192.0.2.10" not in r.stdout, "another user is turned away",
         (r.returncode, r.stdout, r.stderr))

    r = rig.cli("ban", "198.51.100.7", "--for", "1h")
    t.ok(r.returncode == 0 and h.wait_for(lambda: "198.51.100.7" in (h.pbxguard_bans() or {})),
         "a manual ban from root lands in the kernel", (r.stdout, r.stderr))

    files = {}
    for path in (rig.db, rig.db + ".lock", rig.sock, f"{rig.run}/pbxguardd.lock"):
        try:
            s = os.stat(path)
            files[os.path.basename(path)] = (s.st_uid, s.st_gid, oct(s.st_mode & 0o777))
        except OSError as err:
            files[os.path.basename(path)] = str(err)
    t.ok(all(isinstance(v, tuple) and v[0] == UID and int(v[2], 8) & 0o007 == 0
             for v in files.values()) and files["control.sock"][2] == "0o600",
         "its database, locks and socket are its own, and closed to others", files)

    rig.p.send_signal(signal.SIGHUP)
    t.ok(rig.wait_log("configuration reloaded"), "it re-reads its configuration on SIGHUP",
         rig.log_text()[-1500:])
    return True


def test_report_reads_through_a_readonly_mount(rig, when):
    """pbxguard report as the service user, the state directory mounted read-only (as
    ProtectSystem=strict shows it to pbxguard-report.service)."""
    script = (f'mount --bind -o ro "{rig.state}" "{rig.state}" && exec '
              + " ".join(f"'{a}'" for a in as_user(
                  [h.CLI, "report", "--db", rig.db, "--since", "1h"], caps=False)))
    r = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
    t.ok(r.returncode == 0 and "192.0.2.10" in r.stdout,
         f"the report reads the database as the service user through a read-only mount {when}",
         (r.returncode, r.stdout[-800:], r.stderr))


def test_stops(rig):
    rc = rig.stop()
    t.ok(rc == 0 and "stopped" in rig.log_text(), "SIGTERM stops it cleanly", rig.log_text()[-800:])
    t.ok("192.0.2.10" in (h.pbxguard_bans() or {}), "its bans stay in the kernel after it stops")


def test_control_group(rig):
    rig.write_config(control_group=CTL_GROUP)
    rig.start()
    h.wait_for(lambda: rig.p.poll() is not None, timeout=10)
    log = rig.log_text()
    t.ok(rig.p.poll() == 1 and f"cannot give it to control_group {CTL_GROUP}" in log
         and f"SupplementaryGroups={CTL_GROUP}" in log,
         "a control_group the daemon's user is not in: it refuses, naming SupplementaryGroups=",
         log[-1500:])
    rig.log.close()

    rig.start(groups=(GID, CTL_GID))
    ok = rig.wait_log("started")
    s = os.stat(rig.sock) if ok else None
    t.ok(ok and s.st_gid == CTL_GID and (s.st_mode & 0o777) == 0o660,
         "a member of control_group (SupplementaryGroups=) hands the socket to it, mode 0660",
         s and (s.st_gid, oct(s.st_mode)))
    r = run(["setpriv", "--reuid=nobody", f"--regid={CTL_GID}", "--clear-groups", h.CLI, "-s",
             rig.sock, "status"])
    t.ok(r.returncode == 0, "and a member of that group is served", (r.stdout, r.stderr))
    rig.stop()


def test_credential(rig):
    cred = os.path.join(rig.creds, "ami-pbx1")
    with open(cred, "w") as f:
        f.write("guardpass\n")
    os.chown(cred, UID, GID)
    os.chmod(cred, 0o400)
    rig.write_config(secret_line="secret_file = credential:ami-pbx1")
    logins = rig.ami.logins
    rig.start(env={"CREDENTIALS_DIRECTORY": rig.creds})
    t.ok(rig.wait_log("started") and rig.ami.wait_login(logins + 1, timeout=15),
         "secret_file = credential:NAME: the secret comes from $CREDENTIALS_DIRECTORY",
         rig.log_text()[-1500:])
    rig.stop()

    os.environ.pop("CREDENTIALS_DIRECTORY", None)
    rig.start()
    h.wait_for(lambda: rig.p.poll() is not None, timeout=10)
    rig.log.close()
    t.ok(rig.p.poll() == 1 and "$CREDENTIALS_DIRECTORY is not set" in rig.log_text(),
         "without the credentials directory it refuses to start, saying why",
         rig.log_text()[-1000:])
    r = run(as_user([h.DAEMON, "-t", "-c", rig.conf], caps=False))
    t.ok(r.returncode == 0 and "not checked" in r.stderr,
         "pbxguardd -t outside the unit accepts it and says the credential was not checked",
         (r.returncode, r.stderr[-800:]))


def test_shared_group_secret_is_refused(rig):
    rig.write_secret_file()
    rig.write_config()
    r = account_tool(["gpasswd", "-a", "nobody", USER])
    if r.returncode != 0:
        t.skip("a secret its group shares with others is refused", r.stderr.strip())
        return
    try:
        r = run(as_user([h.DAEMON, "-t", "-c", rig.conf], caps=False))
        t.ok(r.returncode == 1 and "whose members (nobody)" in r.stderr,
             "a secret file its group can read is refused once the group has other members",
             (r.returncode, r.stderr[-800:]))
    finally:
        account_tool(["gpasswd", "-d", "nobody", USER])


def main():
    with h.TempDir() as tmp:
        rig = Rig(tmp)
        try:
            test_refuses_without_the_capability(rig)
            if test_runs_unprivileged(rig):
                test_report_reads_through_a_readonly_mount(rig, "while the daemon runs")
                test_stops(rig)
                test_report_reads_through_a_readonly_mount(rig, "after it stopped")
                test_control_group(rig)
                test_credential(rig)
            test_shared_group_secret_is_refused(rig)
        finally:
            rig.close()
    t.done()


main()
