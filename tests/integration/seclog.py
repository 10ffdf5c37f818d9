#!/usr/bin/python3
"""The security log source end to end: the real daemon in a private network namespace, a
scripted AMI server (e2elib.AmiServer) and a log file this test writes the way Asterisk's
res_security_log does (one append per line, values unescaped), banning into the kernel.

- backfill: daemon stopped, failures written to the log, daemon started: banned within a second
  of start; events AMI delivered just before the stop are counted once.
- backfill: the AMI session lost for 10 s while failures are logged: banned from the log during
  the gap; the events seen over AMI and in the log count once.
- primary: rotation by rename (the writer still appending to the old file for a while) and by
  copytruncate, in the middle of an attack: every line counted once, none lost.
- primary: SIGKILL in the middle of a big file: the restart resumes where the last commit
  stood; every line counted exactly once. (Its lines are an hour old, so they are deferred and
  written in the table's order: the kill lands while they are being written, and the restart
  reads them again from the cursor before them, each row kept once by its place.)
- hostile lines and a file that appears late: a planted RemoteAddress bans the attacker, never
  the address it names; lines that prove nothing are counted as malformed.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
import e2elib as e  # noqa: E402


class LogWriter:
    """Appends lines as Asterisk's logger does: O_APPEND, one write(2) per record."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, data):
        os.write(self.fd, data)

    def reopen(self):
        """`logger rotate` / `logger reload`: the writer opens the path again."""
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def close(self):
        os.close(self.fd)


def status(d):
    st = d.cli_json("status")
    return (st or {}).get("seclog", [{}])[0] if st else {}


def caught_up(d):
    s = status(d)
    return s.get("offset") is not None and s.get("offset") == s.get("size") and s.get("size")


def count(d, where="", params=()):
    return d.db_query(f"SELECT count(*) FROM failures {where}", params)[0][0]


def of(*ips):
    """A WHERE clause's part and parameters for the raw failures of these IPv4 addresses (keys
    of 32 bits, packed as their 4 bytes: schema/007-compact.sql)."""
    return (f"key IN ({', '.join('?' * len(ips))})",
            tuple(socket.inet_pton(socket.AF_INET, ip) for ip in ips))


def count_of(d, *ips, backfilled=False):
    cond, params = of(*ips)
    if backfilled:
        cond += " AND flags & 2"
    return count(d, "WHERE " + cond, params)


def fail_lines(ip, n, session_prefix, tv_time=None, name="InvalidPassword", first=0):
    out = b""
    for i in range(first, first + n):
        tv = e.event_tv(tv_time) if tv_time is not None else None
        out += e.seclog_line(name, ip, port=40000 + i, session=f"{session_prefix}-{i}@t", tv=tv,
                             when=tv_time)
    return out


def restart_and_gap(t, tmp):
    """Backfill mode: the restart, then a lost AMI session."""
    log = os.path.join(tmp, "security")
    w = LogWriter(log)
    w.write(b"[2026-11-26 09:01:47.730] Asterisk 20.20.1 built by root @ vm on a x86_64\n")
    ami = e.AmiServer().start()
    mon = e.SetMonitor()
    d = e.Daemon(tmp, ami.port, extra=f"[seclog:pbx1]\npath = {log}\n")
    try:
        d.start()
        t.ok(ami.wait_login(), "the daemon logs in to AMI", d.log_text()[-2000:])
        t.ok(e.wait_until(lambda: caught_up(d), timeout=15),
             "the log source follows the file (backfill mode)", status(d))
        st = status(d)
        t.eq(st.get("mode"), "backfill", "with an AMI session, the log only fills its gaps")

        # Two failures AMI delivers and the log repeats, then the daemon stops before the log
        # source could tell that AMI covered them (it waits ping_interval + ping_timeout).
        z = "198.51.100.20"
        now = time.time()
        for i in range(2):
            tv, sess = e.event_tv(now), f"z-{i}@t"
            ami.send(e.ami_event("InvalidPassword", z, port=41000 + i, session=sess, tv=tv))
            w.write(e.seclog_line("InvalidPassword", z, port=41000 + i, session=sess, tv=tv))
        t.ok(e.wait_until(lambda: count_of(d, z) == 2, timeout=10),
             "AMI delivered two failures")
        rc = d.stop()
        t.eq(rc, 0, "the daemon stops")

        # While it is down: five failures from x, three more from z.
        x = "198.51.100.10"
        w.write(fail_lines(x, 5, "x"))
        w.write(fail_lines(z, 3, "z", first=2))
        d.start()
        bx = mon.wait_added(x, timeout=10)
        t.ok(bx is not None and bx - d.t_ready <= 1.0,
             "failures logged while the daemon was down: banned within a second of its start",
             f"ban {None if bx is None else bx - d.t_ready:.3f} s after READY=1, "
             f"{None if bx is None else bx - d.t_start:.3f} s after the process started\n"
             + d.log_text()[-2000:])
        if bx is not None:
            t.diag(f"banned {bx - d.t_ready:.3f} s after READY=1 "
                   f"({bx - d.t_start:.3f} s after the process started)")
        t.ok(mon.wait_added(z, timeout=10) is not None,
             "two failures over AMI before the stop and three logged after it: banned")
        # The ban reaches the kernel before the turn's commit: wait for the rows.
        e.wait_until(lambda: count_of(d, x, z) >= 10, timeout=5)
        t.eq(count_of(d, z), 5,
             "the two failures AMI delivered are not counted again from the log")
        t.eq(count_of(d, x, backfilled=True), 5,
             "the backfilled failures are marked as such")
        r = subprocess.run([d.cli_binary, "report", "--db", d.db, "--since", "1h", "--format",
                            "json"], capture_output=True, text=True, timeout=30)
        try:
            tot = json.loads(r.stdout)["totals"]
        except (ValueError, KeyError):
            tot = {}
        t.ok(tot.get("backfilled") == 8 and tot.get("failures") == 10,
             "the report counts the backfilled failures apart", r.stdout[:600] + r.stderr)
        t.ok(ami.wait_login(2), "the daemon logs in again")

        # The AMI session is lost for 10 s while failures go on.
        y = "198.51.100.30"
        now = time.time()
        for i in range(2):
            tv, sess = e.event_tv(now), f"y-{i}@t"
            ami.send(e.ami_event("InvalidPassword", y, port=42000 + i, session=sess, tv=tv))
            w.write(e.seclog_line("InvalidPassword", y, port=42000 + i, session=sess, tv=tv))
        t.ok(e.wait_until(lambda: count_of(d, y) == 2, timeout=10),
             "AMI delivered two failures before it went away")
        ami.stop()
        t_down = time.monotonic()
        for i in range(2, 5):
            time.sleep(0.5)
            w.write(fail_lines(y, 1, "y", first=i))
        by = mon.wait_added(y, timeout=8)
        t.ok(by is not None and by - t_down < 10,
             "the AMI session lost: failures logged meanwhile are judged from the log, and ban",
             d.log_text()[-2000:])
        e.wait_until(lambda: count_of(d, y) >= 5, timeout=5)
        t.eq(count_of(d, y), 5,
             "the events seen over AMI and in the log count once (2 + 3, not 7)")
        t.ok(status(d).get("duplicates", 0) >= 2, "status counts the duplicates skipped",
             status(d))
        time.sleep(max(0.0, 10 - (time.monotonic() - t_down)))
        ami.start()
        t.ok(ami.wait_login(3, timeout=20), "the session is back after 10 s")

        # Back to normal: an event on both is counted by AMI, and the log only vouches (past the
        # second around the login, where an event may or may not have reached the session).
        time.sleep(1.5)
        v = "198.51.100.40"
        tv, sess = e.event_tv(), "v-0@t"
        ami.send(e.ami_event("InvalidPassword", v, port=43000, session=sess, tv=tv))
        w.write(e.seclog_line("InvalidPassword", v, port=43000, session=sess, tv=tv))
        covered0 = status(d).get("covered_by_ami", 0)
        t.ok(e.wait_until(lambda: status(d).get("covered_by_ami", 0) > covered0, timeout=15),
             "with AMI up, the log's copy of an AMI event is skipped as covered", status(d))
        t.eq(count_of(d, v), 1, "and counted once")
        sd = d.cli("status")
        t.ok("Security logs:" in sd.stdout and "seclog:pbx1" in sd.stdout,
             "`pbxguard status` shows the log source", sd.stdout + sd.stderr)
    finally:
        rc = d.stop()
        w.close()
        ami.stop()
        mon.close()
    t.eq(rc, 0, "the daemon stops cleanly")


def primary_daemon(tmp, ami, log, maxretry=1000, extra=""):
    return e.Daemon(tmp, ami.port, maxretry=maxretry,
                    extra=f"[seclog:pbx1]\npath = {log}\nmode = primary\n{extra}")


def rotations(t, tmp):
    """Primary mode: rename and copytruncate while lines keep coming."""
    log = os.path.join(tmp, "security")
    w = LogWriter(log)
    ami = e.AmiServer().start()
    d = primary_daemon(tmp, ami, log)
    total = 0
    try:
        d.start()

        def burst(n, tag):
            nonlocal total
            for i in range(n):
                w.write(e.seclog_line("ChallengeResponseFailed", f"203.0.113.{total % 200 + 1}",
                                      port=40000 + total, session=f"{tag}-{i}@rot"))
                total += 1
                if i % 10 == 0:
                    time.sleep(0.005)

        burst(100, "before")
        # The daemon is held (SIGSTOP) while each rotation happens, so that it always has lines
        # left in the old file to find again.
        # logrotate's default (create): renamed, a new file made; the writer keeps appending to
        # the old one until it is told (postrotate: "logger reload").
        d.p.send_signal(signal.SIGSTOP)
        burst(50, "old-before-rename")
        os.rename(log, log + ".1")
        burst(50, "old-after-rename")
        open(log, "a").close()
        d.p.send_signal(signal.SIGCONT)
        time.sleep(0.3)
        burst(20, "old-still")
        w.reopen()
        burst(100, "new")
        # Asterisk's own `logger rotate`: rename and reopen at once.
        d.p.send_signal(signal.SIGSTOP)
        burst(50, "before-logger-rotate")
        os.rename(log + ".1", log + ".2")
        os.rename(log, log + ".1")
        w.reopen()
        burst(50, "logger-rotate")
        d.p.send_signal(signal.SIGCONT)
        burst(50, "after-logger-rotate")
        # copytruncate: copied aside, then truncated in place; the writer never knows.
        d.p.send_signal(signal.SIGSTOP)
        burst(50, "before-copy")
        os.rename(log + ".1", log + ".2")
        shutil.copyfile(log, log + ".1")
        os.truncate(log, 0)
        burst(50, "after-truncate")
        d.p.send_signal(signal.SIGCONT)
        burst(50, "after-copytruncate")
        lost = 0
        ok = e.wait_until(lambda: count(d) >= total - lost, timeout=20)
        got = count(d)
        t.ok(ok and got == total - lost,
             "rotations by rename, logger rotate and copytruncate: every line counted",
             f"{got} of {total - lost}\n{status(d)}\n" + d.log_text()[-2000:])
        dup = d.db_query("SELECT count(*) - count(DISTINCT session) FROM failures")[0][0]
        t.eq(dup, 0, "and none counted twice")
        st = status(d)
        t.ok(st.get("rotations", 0) >= 2 and st.get("truncations", 0) >= 1,
             "status counts the rotations and the truncation", st)
    finally:
        d.stop()
        w.close()
        ami.stop()


def sigkill(t, tmp):
    """Primary mode: killed mid-file, it resumes where its last commit stood."""
    log = os.path.join(tmp, "security")
    n = 40000
    # An hour old (recorded for the reports, not judged), each line its own session.
    when = time.time() - 3600
    with open(log, "wb") as f:
        for i in range(n):
            f.write(e.seclog_line("InvalidAccountID", f"10.{i // 65536 % 256}.{i // 256 % 256}."
                                  f"{i % 256}", port=40000 + i % 20000, session=f"k-{i}@kill",
                                  tv=e.event_tv(when), when=when))
    ami = e.AmiServer().start()
    d = primary_daemon(tmp, ami, log)
    try:
        d.start()
        e.wait_until(lambda: count(d) > 0, timeout=20, interval=0.005)
        d.kill()
        mid = count(d)
        t.ok(0 < mid < n, "SIGKILL in the middle of the file", f"{mid} of {n} lines judged")
        d.start()
        ok = e.wait_until(lambda: count(d) >= n, timeout=60)
        t.ok(ok and count(d) == n, "after the restart every line is counted",
             f"{count(d)} of {n}")
        dup = d.db_query("SELECT count(*) - count(DISTINCT session) FROM failures")[0][0]
        t.eq(dup, 0, "none twice: the restart resumed at the offset of the last commit")
    finally:
        d.stop()
        ami.stop()


def hostile(t, tmp):
    """A file that appears late, with planted fields and lines that prove nothing."""
    log = os.path.join(tmp, "security")
    ami = e.AmiServer().start()
    mon = e.SetMonitor()
    prom = os.path.join(tmp, "pbxguard.prom")
    d = primary_daemon(tmp, ami, log, maxretry=5,
                       extra=f"[prometheus]\ntextfile = {prom}\ninterval = 1s\n")
    try:
        d.start()
        t.ok(e.wait_until(lambda: "does not exist" in d.log_text(), 10),
             "a missing log file is one clear log line", d.log_text()[-1500:])
        t.ok(d.alive(), "and the daemon goes on")
        attacker, victim = "198.51.100.66", "203.0.113.99"
        w = LogWriter(log)
        planted = f'x",RemoteAddress="IPV4/UDP/{victim}/5060'
        for i in range(5):
            w.write(e.seclog_line("InvalidAccountID", attacker, port=40000 + i,
                                  account=planted, session=f"h-{i}@t"))
        # Two readings, two addresses: the Call-ID ends in fields, a free field after the
        # address swallows the rest. Proves nothing.
        for i in range(3):
            sess = (f'h{i}",LocalAddress="IPV4/UDP/192.0.2.1/5060",RemoteAddress="IPV4/UDP/'
                    f'{victim}/5060",Challenge="c",Response="r')
            w.write(e.seclog_line("ChallengeResponseFailed", attacker, session=sess))
        w.close()
        t.ok(mon.wait_added(attacker, timeout=10) is not None,
             "a planted RemoteAddress counts for the attacker, who is banned")
        time.sleep(0.5)
        kb = e.kernel_bans() or {}
        t.ok(victim not in kb, "the address it names is never banned", kb)
        t.eq(count_of(d, victim), 0, "nor counted")
        st = status(d)
        t.ok(st.get("malformed", 0) >= 3 and st.get("injected", 0) >= 5,
             "status counts the lines that prove nothing and the planted ones", st)
        t.ok("proves no address" in d.log_text(), "a malformed line is logged, escaped",
             d.log_text()[-1500:])

        # status keeps today's count from what came since its last call: failures read now
        # but recorded at an earlier time (two minutes ago) must be in it too.
        def today():
            return (d.cli_json("status") or {}).get("failures_today")

        today()
        late = "198.51.100.67"
        w = LogWriter(log)
        w.write(fail_lines(late, 3, "late", tv_time=time.time() - 120))
        w.close()
        t.ok(e.wait_until(lambda: count_of(d, late, backfilled=True) == 3,
                          10), "lines read late count at their own time")
        midnight = time.mktime(time.localtime()[:3] + (0, 0, 0, 0, 0, -1)) * 1000
        t.eq(today(), count(d, "WHERE ts_ms >= ?", (int(midnight),)),
             "status counts them in today's failures")

        def prom_value(name):
            try:
                with open(prom) as f:
                    for line in f:
                        if line.startswith(name + " ") or line.startswith(name + "{"):
                            return float(line.rsplit(" ", 1)[1])
            except (OSError, ValueError):
                pass
            return None

        lines = status(d).get("lines", 0)
        t.ok(e.wait_until(lambda: (prom_value('pbxguard_seclog_lines_total{source="seclog:pbx1"}')
                                   or 0) >= lines
                          and (prom_value("pbxguard_seclog_lines_malformed_total") or 0) >= 3
                          and prom_value('pbxguard_seclog_behind_bytes{source="seclog:pbx1"}')
                          == 0, 10),
             "the Prometheus textfile has the log source's lines, malformed lines and bytes "
             "behind", open(prom).read()[-3000:] if os.path.exists(prom) else "no file")
    finally:
        d.stop()
        ami.stop()
        mon.close()


def main():
    e.exit_on_sigterm()
    h.setup_loopback()
    t = h.Tap()
    for part in (restart_and_gap, rotations, sigkill, hostile):
        with h.TempDir() as tmp:
            try:
                part(t, tmp)
            except Exception as ex:  # report and go on with the next part
                t.ok(False, f"{part.__name__} ran to its end", repr(ex))
    t.done()


if __name__ == "__main__":
    main()
