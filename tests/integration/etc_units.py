#!/usr/bin/python3
"""The shipped systemd units and cron file: systemd accepts them without a warning, and the
daemon's unit keeps the hardening it promises (CAP_NET_ADMIN only, read-only system, writes
only to its state and runtime directories)."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ETC = os.path.join(h.SOURCE, "etc")
t = h.Tap()


def render(name, dirpath):
    """The unit as installed, pointing at the binaries of this build."""
    src = os.path.join(ETC, name + ".in")
    if not os.path.exists(src):
        src = os.path.join(ETC, name)
    with open(src) as f:
        text = f.read().replace("@SBINDIR@", h.BUILD).replace("@SYSCONFDIR@", dirpath)
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
    t.eq(dv.get("CapabilityBoundingSet"), ["CAP_NET_ADMIN"],
         "its only capability is CAP_NET_ADMIN")
    t.eq(dv.get("AmbientCapabilities"), ["CAP_NET_ADMIN"], "ambient capabilities: the same one")
    t.eq(dv.get("ProtectSystem"), ["strict"], "the system is read-only")
    t.eq(dv.get("ReadWritePaths"), ["/var/lib/pbxguard /run/pbxguard"],
         "it writes only to its state and runtime directories")
    t.ok(dv.get("PrivateTmp") == ["yes"] and dv.get("NoNewPrivileges") == ["yes"]
         and dv.get("ProtectHome") == ["yes"], "private /tmp, no new privileges, no /home")
    t.eq(dv.get("RestrictAddressFamilies"), ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
         "sockets are limited to UNIX, IP and netlink")
    t.ok(dv.get("ExecReload") == ["/bin/kill -HUP $MAINPID"], "reload sends SIGHUP")


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
test_cron_file_is_well_formed()
t.done()
