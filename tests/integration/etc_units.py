#!/usr/bin/python3
"""The shipped systemd units, sysusers.d and tmpfiles.d files and cron file: systemd accepts
them without a warning, the daemon's unit keeps the hardening it promises (an unprivileged
user with CAP_NET_ADMIN only, no core dumps, read-only system, writes only to its state and
runtime directories), and both services score at most 2.0 on `systemd-analyze security`."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ETC = os.path.join(h.SOURCE, "etc")
USER = "pbxguard"
STATEDIR = "/var/lib/pbxguard"
# The most exposure systemd-analyze security may find in either service (0 safe .. 10 unsafe).
MAX_EXPOSURE = 2.0
t = h.Tap()


def render(name, dirpath):
    """The unit as installed, pointing at the binaries of this build."""
    src = os.path.join(ETC, name + ".in")
    if not os.path.exists(src):
        src = os.path.join(ETC, name)
    with open(src) as f:
        text = (f.read().replace("@SBINDIR@", h.BUILD).replace("@SYSCONFDIR@", dirpath)
                .replace("@USER@", USER).replace("@STATEDIR@", STATEDIR))
    path = os.path.join(dirpath, name)
    with open(path, "w") as f:
        f.write(text)
    return path, text


def directives(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def test_systemd_accepts_the_units():
    if not shutil.which("systemd-analyze"):
        t.skip("systemd accepts the units", "systemd-analyze not found")
        return
    with h.TempDir() as d:
        for name in ["pbxguard.service", "pbxguard-report.service", "pbxguard-report.timer"]:
            path, _ = render(name, d)
            r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True,
                               text=True, timeout=60)
            about_us = [ln for ln in r.stderr.splitlines() if name in ln]
            t.ok(r.returncode == 0 and not about_us,
                 f"systemd-analyze verify accepts {name} without a warning", r.stderr)


def test_daemon_unit_is_hardened():
    with h.TempDir() as d:
        _, text = render("pbxguard.service", d)
    dv = directives(text)
    t.eq(dv.get("Type"), ["notify"], "pbxguard.service is Type=notify")
    t.ok(dv.get("WatchdogSec"), "pbxguard.service has a watchdog")
    t.ok(dv.get("User") == [USER] and dv.get("Group") == [USER],
         f"it runs as the unprivileged {USER} user and group", dv.get("User"))
    t.eq(dv.get("CapabilityBoundingSet"), ["CAP_NET_ADMIN"],
         "its only capability is CAP_NET_ADMIN")
    t.eq(dv.get("AmbientCapabilities"), ["CAP_NET_ADMIN"], "ambient capabilities: the same one")
    t.ok(dv.get("LimitCORE") == ["0"] and dv.get("PrivateMounts") == ["yes"],
         "no core dumps (LimitCORE=0) and private mounts")
    t.eq(dv.get("ProtectSystem"), ["strict"], "the system is read-only")
    t.ok(dv.get("StateDirectory") == ["pbxguard"] and dv.get("RuntimeDirectory") == ["pbxguard"]
         and dv.get("ReadWritePaths") == ["-/var/lib/prometheus/node-exporter"],
         "it writes only to its own state and runtime directories, and node_exporter's "
         "textfile directory", dv.get("ReadWritePaths"))
    t.ok(dv.get("PrivateTmp") == ["yes"] and dv.get("NoNewPrivileges") == ["yes"]
         and dv.get("ProtectHome") == ["yes"], "private /tmp, no new privileges, no /home")
    t.eq(dv.get("RestrictAddressFamilies"), ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
         "sockets are limited to UNIX, IP and netlink")
    t.ok(dv.get("ExecReload") == ["/bin/kill -HUP $MAINPID"], "reload sends SIGHUP")
    # Ahead of batch work for the CPU, never realtime (RestrictRealtime= stays on).
    t.ok(dv.get("CPUWeight") == ["300"] and dv.get("Nice") == ["-5"]
         and dv.get("RestrictRealtime") == ["yes"] and "CPUSchedulingPolicy" not in dv,
         "it runs ahead of batch work (CPUWeight=300, Nice=-5), and never realtime",
         (dv.get("CPUWeight"), dv.get("Nice")))
    # The filters apply in order: @chown must come back after "~@privileged", which holds it,
    # or the daemon could never hand its socket to control_group.
    filters = dv.get("SystemCallFilter", [])
    t.ok(filters[:2] == ["@system-service", "~@privileged @resources"]
         and filters[2:] == ["@chown"],
         "system calls: @system-service without @privileged and @resources, but with @chown",
         filters)


def test_report_unit_is_hardened():
    with h.TempDir() as d:
        _, text = render("pbxguard-report.service", d)
    dv = directives(text)
    t.ok(dv.get("User") == [USER] and dv.get("CapabilityBoundingSet") == [""]
         and dv.get("NoNewPrivileges") == ["yes"],
         f"the report runs as {USER} without any capability")
    t.ok(dv.get("ProtectSystem") == ["strict"] and not dv.get("ReadWritePaths")
         and not dv.get("StateDirectory") and dv.get("RuntimeDirectory") == ["pbxguard-report"],
         "it sees the database read-only and writes only to its runtime directory")
    t.eq(dv.get("RestrictAddressFamilies"), ["AF_UNIX"], "it may not open network sockets")
    privileged = [v for k in ("ExecStart", "ExecStartPre", "ExecStartPost") for v in dv.get(k, [])
                  if v.startswith(("+", "!"))]
    t.ok(len(privileged) == 1 and "| mail " in privileged[0]
         and f"setpriv --reuid={USER}" in privileged[0],
         "only the mail step runs outside the sandbox, reading the report as the report's user",
         privileged)


def exposure(path):
    """The overall exposure systemd-analyze security gives the unit, or None."""
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", path],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    return (float(m.group(1)) if m else None), r.stdout + r.stderr


def test_exposure_scores():
    if not shutil.which("systemd-analyze"):
        t.skip("systemd-analyze security scores", "systemd-analyze not found")
        return
    with h.TempDir() as d:
        for name in ["pbxguard.service", "pbxguard-report.service"]:
            path, _ = render(name, d)
            score, out = exposure(path)
            t.ok(score is not None and score <= MAX_EXPOSURE,
                 f"systemd-analyze security rates {name} {score} (at most {MAX_EXPOSURE})", out)


def test_sysusers_and_tmpfiles():
    """The user and the state directory, made by systemd's own tools in a scratch root."""
    for tool in ("systemd-sysusers", "systemd-tmpfiles"):
        if not shutil.which(tool):
            t.skip(f"{tool} makes the user and the directory", f"{tool} not found")
            return
    with h.TempDir() as root:
        os.makedirs(os.path.join(root, "etc"))
        sysusers, _ = render("pbxguard.sysusers", root)
        tmpfiles, _ = render("pbxguard.tmpfiles", root)
        r = subprocess.run(["systemd-sysusers", f"--root={root}", sysusers], capture_output=True,
                           text=True, timeout=60)
        with open(os.path.join(root, "etc", "passwd")) as f:
            users = {ln.split(":")[0]: ln.strip().split(":") for ln in f if ln.strip()}
        u = users.get(USER)
        t.ok(r.returncode == 0 and u and int(u[2]) < 1000 and u[5] == STATEDIR
             and u[6].endswith("nologin"),
             f"sysusers.d makes {USER} a system user without a login shell", (r.stderr, u))
        r = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", tmpfiles],
                           capture_output=True, text=True, timeout=60)
        st = os.stat(root + STATEDIR) if os.path.isdir(root + STATEDIR) else None
        t.ok(r.returncode == 0 and st and (st.st_mode & 0o7777) == 0o750 and u
             and st.st_uid == int(u[2]) and st.st_gid == int(u[3]),
             f"tmpfiles.d makes {STATEDIR} 0750, owned by {USER}",
             (r.stderr, st and oct(st.st_mode)))


def test_cron_file_is_well_formed():
    with open(os.path.join(ETC, "pbxguard.cron.in")) as f:
        jobs = [ln for ln in f.read().splitlines()
                if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    t.eq(len(jobs), 1, "the cron file holds one job")
    fields = jobs[0].split(None, 6) if jobs else []
    t.ok(len(fields) == 7 and fields[5] == "root" and "report --since 24h" in fields[6],
         "the job runs 'pbxguard report --since 24h' daily as root", jobs)


test_systemd_accepts_the_units()
test_daemon_unit_is_hardened()
test_report_unit_is_hardened()
test_exposure_scores()
test_sysusers_and_tmpfiles()
test_cron_file_is_well_formed()
t.done()
