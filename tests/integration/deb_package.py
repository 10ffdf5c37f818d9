#!/usr/bin/python3
"""The Debian package, built, checked, installed on this machine and purged again.

dpkg-buildpackage builds it from a copy of the source tree; lintian finds no error and no
warning in it; installed with apt-get, it starts nothing, makes the pbxguard system user and its
state directory, and puts every file in place with its owner and mode; the installed daemon
checks the installed configuration (as root and as its own user) and runs as that user; an
upgrade keeps the database and the admin's configuration, a remove keeps the database, and a
purge leaves nothing behind.

Installing a package changes the machine, so this test is careful: it runs in the normal build
only (not again under ASan), one run at a time on the machine (a lock), never over an installed
pbxguard or state an earlier install or scripts/run left (it skips, saying so), and it purges
the package and removes the user it made at the end, also on failure or SIGTERM."""
import fcntl
import grp
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def skip_all(reason):
    """The whole test skipped: meson's TAP reader takes a 1..0 plan with SKIP and status 0."""
    print(f"1..0 # SKIP {reason}")
    sys.exit(0)


h.require_root()
if h.SANITIZED:
    skip_all("the package is built and installed once, in the normal build's run")
for tool in ("dpkg-buildpackage", "dh", "lintian", "apt-get", "dpkg-deb", "setpriv", "unshare"):
    if not shutil.which(tool):
        skip_all(f"{tool} not found (scripts/deps.sh test installs it)")
# SIGTERM (a meson timeout) must still purge the package.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

PKG = "pbxguard"
CONF = "/etc/pbxguard/pbxguard.conf"
STATE = "/var/lib/pbxguard"
LOCK = "/run/lock/pbxguard-deb-test.lock"
LOCK_WAIT_S = 480
APT = ["apt-get", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600"]
ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive", DEB_BUILD_OPTIONS="nocheck",
           LC_ALL="C.UTF-8")

t = h.Tap()


def run(argv, timeout=120, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV, **kw)


def installed():
    r = run(["dpkg-query", "-W", "-f=${Status}", PKG])
    return r.returncode == 0 and "installed" in r.stdout and "not-installed" not in r.stdout


def dpkg_status():
    r = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG])
    return r.stdout.strip() if r.returncode == 0 else ""


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def owner_mode(path):
    st = os.lstat(path)
    user = pwd.getpwuid(st.st_uid).pw_name
    group = grp.getgrgid(st.st_gid).gr_name
    return f"{user}:{group} {stat.S_IMODE(st.st_mode):04o}"


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def pbxguardd_processes():
    """Processes running the installed daemon (other tests run the build's binaries)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink(f"/proc/{pid}/exe") == "/usr/sbin/pbxguardd":
                    found.append(int(pid))
            except OSError:
                pass
    return found


def copy_source(dest):
    """The source tree as git sees it (tracked and new files, not build directories)."""
    if os.path.isdir(os.path.join(h.SOURCE, ".git")) or os.path.isfile(
            os.path.join(h.SOURCE, ".git")):
        r = run(["git", "-C", h.SOURCE, "ls-files", "-z", "--cached", "--others",
                 "--exclude-standard"])
        if r.returncode == 0:
            for rel in filter(None, r.stdout.split("\0")):
                src = os.path.join(h.SOURCE, rel)
                if os.path.isfile(src):
                    os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                    shutil.copy2(src, os.path.join(dest, rel))
            return
    shutil.copytree(h.SOURCE, dest, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        "build", "build-*", "*.log", ".git", "obj-*", "__pycache__"))


def build(tmp):
    src = os.path.join(tmp, "pbxguard-src")
    copy_source(src)
    t0 = time.monotonic()
    r = run(["dpkg-buildpackage", "-us", "-uc", "-b"], timeout=900, cwd=src)
    secs = time.monotonic() - t0
    debs = [f for f in os.listdir(tmp) if f.startswith(PKG + "_") and f.endswith(".deb")]
    changes = [f for f in os.listdir(tmp) if f.endswith(".changes")]
    ok = t.ok(r.returncode == 0 and len(debs) == 1 and len(changes) == 1,
              f"dpkg-buildpackage -us -uc -b builds the package ({secs:.0f} s)",
              (r.stdout + r.stderr)[-3000:])
    if not ok:
        return None, None
    return os.path.join(tmp, debs[0]), os.path.join(tmp, changes[0])


def check_lintian(changes):
    r = run(["lintian", "--info", "--display-info", "--tag-display-limit", "0", changes],
            timeout=600)
    tags = [ln for ln in r.stdout.splitlines() if ln[:2] in ("E:", "W:", "I:", "O:")]
    bad = [ln for ln in tags if ln.startswith(("E:", "W:"))]
    t.ok(r.returncode == 0 and not bad, "lintian finds no error and no warning",
         "\n".join(bad) or r.stderr[-2000:])
    t.diag("lintian, for information: " + ("; ".join(ln for ln in tags if ln[:2] in ("I:", "O:"))
                                           or "nothing"))


def check_contents(deb, tmp):
    r = run(["dpkg-deb", "-c", deb])
    listing = {ln.split()[-1].lstrip("."): ln.split()[0] for ln in r.stdout.splitlines()}
    want = ["/usr/sbin/pbxguardd", "/usr/sbin/pbxguard", "/usr/share/man/man8/pbxguard.8.gz",
            "/usr/share/man/man8/pbxguardd.8.gz", "/usr/share/man/man5/pbxguard.conf.5.gz",
            "/usr/share/bash-completion/completions/pbxguard",
            "/lib/systemd/system/pbxguard.service", "/lib/systemd/system/pbxguard-report.service",
            "/lib/systemd/system/pbxguard-report.timer", "/etc/cron.d/pbxguard", CONF,
            "/usr/lib/sysusers.d/pbxguard.conf", "/usr/lib/tmpfiles.d/pbxguard.conf",
            "/usr/share/pbxguard/grafana/pbxguard-dashboard.json",
            "/usr/share/pbxguard/grafana/provisioning.yaml"]
    missing = [p for p in want if p not in listing]
    t.ok(not missing, "the package holds the daemon, the CLI, man pages, bash completion, units "
         "and timer, cron file, sample config, sysusers.d and tmpfiles.d files, the Grafana "
         "dashboard", missing)
    ctl = os.path.join(tmp, "control")
    run(["dpkg-deb", "-e", deb, ctl])
    with open(os.path.join(ctl, "conffiles")) as f:
        conffiles = f.read().split()
    t.ok(CONF in conffiles and listing.get(CONF) == "-rw-r-----",
         "the sample configuration is a conffile, mode 0640 in the package",
         (conffiles, listing.get(CONF)))
    return sorted(p for p in listing if p and not p.endswith("/"))


def check_installed(files):
    t.ok(installed(), "apt-get installs the package")
    t.ok(not pbxguardd_processes() and not os.path.exists("/run/pbxguard")
         and not os.path.exists("/etc/systemd/system/multi-user.target.wants/pbxguard.service")
         and not os.path.exists("/etc/systemd/system/timers.target.wants/pbxguard-report.timer"),
         "installing starts nothing and enables nothing", pbxguardd_processes())
    u = pwd.getpwnam(PKG) if user_exists(PKG) else None
    t.ok(u and u.pw_uid < 1000 and u.pw_dir == STATE and u.pw_shell.endswith("nologin")
         and group_exists(PKG) and not grp.getgrnam(PKG).gr_mem,
         "the pbxguard system user and group exist, no login shell, nobody else in the group", u)
    modes = {}
    for path in [CONF, STATE, "/usr/sbin/pbxguardd", "/usr/sbin/pbxguard",
                 "/lib/systemd/system/pbxguard.service", "/etc/cron.d/pbxguard"]:
        try:
            modes[path] = owner_mode(path)
        except (OSError, KeyError) as err:
            modes[path] = str(err)
    want = {CONF: "root:pbxguard 0640", STATE: "pbxguard:pbxguard 0750",
            "/usr/sbin/pbxguardd": "root:root 0755", "/usr/sbin/pbxguard": "root:root 0755",
            "/lib/systemd/system/pbxguard.service": "root:root 0644",
            "/etc/cron.d/pbxguard": "root:root 0644"}
    t.eq(modes, want, "owners and modes: the configuration root:pbxguard 0640, the state "
         "directory the daemon's own")
    gone = [p for p in files if not os.path.lexists(p)]
    t.ok(not gone, "every file of the package is on disk", gone)

    r = run(["/usr/sbin/pbxguardd", "-t", "-c", CONF])
    t.ok(r.returncode == 0 and "configuration OK" in r.stderr,
         "pbxguardd -t accepts the installed configuration", r.stderr[-1500:])
    r = run(["setpriv", f"--reuid={PKG}", f"--regid={PKG}", "--init-groups",
             "/usr/sbin/pbxguardd", "-t", "-c", CONF])
    t.ok(r.returncode == 0, "and so it does as the pbxguard user, which reads it through its group",
         r.stderr[-1500:])
    r = run(["/usr/sbin/pbxguard", "--version"])
    t.ok(r.returncode == 0 and "0.1.0" in r.stdout, "pbxguard --version", (r.stdout, r.stderr))
    r = run(["man", "-w", "pbxguard"])
    t.ok(r.returncode == 0 and r.stdout.strip() == "/usr/share/man/man8/pbxguard.8.gz",
         "man -w pbxguard finds the installed page", (r.stdout, r.stderr))


def run_installed_daemon():
    """The installed daemon as pbxguard.service runs it (its user, CAP_NET_ADMIN alone), with
    the installed configuration, in private network and mount namespaces (/run is a tmpfs there,
    as RuntimeDirectory= would make /run/pbxguard). It creates its database in the state
    directory and answers root's CLI."""
    script = r"""
set -e
ip link set lo up
mount -t tmpfs -o mode=0755 tmpfs /run
install -d -o pbxguard -g pbxguard -m 0755 /run/pbxguard
setpriv --reuid=pbxguard --regid=pbxguard --init-groups --inh-caps=-all,+net_admin \
    --ambient-caps=-all,+net_admin --bounding-set=-all,+net_admin \
    /usr/sbin/pbxguardd -c /etc/pbxguard/pbxguard.conf 2>"$LOG" &
pid=$!
i=0
while [ ! -S /run/pbxguard/control.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
/usr/sbin/pbxguard status || true
kill -TERM $pid
wait $pid
"""
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        r = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script],
                           capture_output=True, text=True, timeout=60,
                           env=dict(ENV, LOG=log.name))
        text = log.read()
    db = os.path.join(STATE, "pbxguard.db")
    t.ok(r.returncode == 0 and "pbxguardd 0.1.0" in r.stdout and os.path.exists(db)
         and owner_mode(db).startswith("pbxguard:pbxguard"),
         "the installed daemon runs as pbxguard, makes its database and answers the CLI",
         (r.returncode, r.stdout[-1000:], r.stderr[-1000:], text[-2000:]))
    return db


def check_upgrade_and_remove(deb, db):
    with open(CONF, "a") as f:
        f.write("; the admin's own line\n")
    before = sha(db) if os.path.exists(db) else None
    r = run(APT + ["install", "--reinstall", deb], timeout=600)
    with open(CONF) as f:
        kept = "; the admin's own line" in f.read()
    t.ok(r.returncode == 0 and installed() and kept and before and sha(db) == before
         and owner_mode(CONF) == "root:pbxguard 0640",
         "an upgrade keeps the database and the admin's configuration (root:pbxguard 0640)",
         (r.stdout + r.stderr)[-1500:])
    r = run(APT + ["remove", PKG], timeout=600)
    t.ok(r.returncode == 0 and dpkg_status().startswith("rc") and os.path.exists(db)
         and os.path.exists(CONF),
         "remove keeps the database and the configuration", (dpkg_status(), r.stderr[-1000:]))


def check_purge(files):
    r = run(APT + ["purge", PKG], timeout=600)
    left = [p for p in files + [STATE, "/etc/pbxguard"] if os.path.lexists(p)]
    t.ok(r.returncode == 0 and dpkg_status() in ("", "un", "pn") and not left,
         "purge removes every file, the configuration and the state directory",
         (dpkg_status(), left, r.stderr[-1000:]))


def main():
    if installed() or dpkg_status().startswith("rc"):
        skip_all("pbxguard is installed on this machine: the test never touches an install")
    for path in (STATE, "/etc/pbxguard"):
        if os.path.exists(path):
            skip_all(f"{path} exists (an earlier install or scripts/run): installing the "
                       "package would take it over")
    lock = open(LOCK, "w")
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                skip_all(f"another run held {LOCK} for {LOCK_WAIT_S} s")
            time.sleep(1)

    had_user, had_group = user_exists(PKG), group_exists(PKG)
    tmp = tempfile.mkdtemp(prefix="pbxguard-deb-")
    try:
        deb, changes = build(tmp)
        if not deb:
            return
        check_lintian(changes)
        files = check_contents(deb, tmp)
        r = run(APT + ["install", deb], timeout=600)
        if not installed():
            t.ok(False, "apt-get installs the package", (r.stdout + r.stderr)[-2000:])
            return
        check_installed(files)
        db = run_installed_daemon()
        check_upgrade_and_remove(deb, db)
        check_purge(files)
    finally:
        if installed() or dpkg_status().startswith("rc"):
            run(APT + ["purge", PKG], timeout=600)
        # The package leaves its system user on purge, as Debian does; the test removes the
        # one it made.
        if not had_user and user_exists(PKG):
            run(["userdel", PKG])
        if not had_group and group_exists(PKG):
            run(["groupdel", PKG])
        shutil.rmtree(tmp, ignore_errors=True)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


main()
t.done()
