#!/usr/bin/python3
"""Fault injection against the whole daemon: each fault strikes in the middle of an attack.
Nothing crashes, nothing committed is lost, every committed ban is enforced.

Runs in a private network namespace and a private mount namespace (the full-disk case mounts a
small tmpfs). Each case gets a fresh daemon, database and AMI server. Run one case with
`e2e_faults.py CASE`.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import e2elib as e  # noqa: E402

e.in_private_netns_and_mounts()

MAXRETRY = 5


def kernel_matches_db(d):
    """The kernel sets hold exactly the database's active bans."""
    kb = e.kernel_bans()
    return kb is not None and set(kb) == set(d.active_bans_db())


def flood_goes_on(p, fl, batches=2):
    """Waits (bounded) until the flood's next batches, sent from now on, are banned."""
    k = len(fl.sent)
    n = k + 20 * batches
    if e.wait_until(lambda: len(fl.sent) >= n, timeout=10):
        p.mon.wait_added(fl.sent[n - 1], timeout=10)


def case_ami_restart(t, tmp):
    p = e.Pbx(tmp)
    try:
        t.ok(p.ban("192.0.2.10"), "before the fault, an attack is banned")
        fl = e.Flood(p.ami, rate=4000).start()
        p.mon.wait_added(fl.addr(0), timeout=10)  # the flood is being banned
        p.ami.restart(down_s=0.3)                 # Asterisk restarts mid-flood
        t.ok(p.ami.wait_login(2, timeout=10), "the daemon logs in again after the AMI restart",
             p.d.log_text()[-2000:])
        flood_goes_on(p, fl)
        fl.stop()
        t.ok(p.ban("192.0.2.11"), "an attack after the restart is banned")
        e.wait_until(lambda: kernel_matches_db(p.d), timeout=5)
        t.ok(kernel_matches_db(p.d), "kernel and database agree on the active bans")
        t.ok(p.d.alive(), "the daemon is still running")
    finally:
        p.close()


def case_sigkill(t, tmp):
    p = e.Pbx(tmp)
    try:
        # 4 failures committed before the crash: the 5th, after the restart, must ban.
        p.ami.send(e.attack("192.0.2.20", MAXRETRY - 1))
        t.ok(p.ban("192.0.2.21"), "before the fault, an attack is banned")
        fl = e.Flood(p.ami, rate=5000).start()
        # Mid-flood: some of the flood's bans are committed, more are on their way.
        p.mon.wait_added(fl.addr(0), timeout=10)
        e.wait_until(lambda: len(p.d.active_bans_db()) >= 3, timeout=10)
        t.eq(p.d.kill(), -9, "the daemon is SIGKILLed mid-flood")
        fl.stop()
        t.eq(e.integrity_ok(p.d.db), "ok", "PRAGMA integrity_check is ok after the kill")
        committed = p.d.active_bans_db()
        t.ok(len(committed) >= 2, f"the bans committed before the kill are in the database "
             f"({len(committed)})")
        # As after a reboot: the kernel forgot everything.
        h.nft("delete", "table", "inet", "pbxguard", check=False)
        p.mon.forget()
        p.start()
        kb = e.kernel_bans() or {}
        t.ok(set(committed) <= set(kb), "every committed ban is back in the kernel at start-up",
             f"missing: {sorted(set(committed) - set(kb))[:10]}")
        now = time.time() * 1000
        off = [pfx for pfx, exp in committed.items() if exp is not None and pfx in kb
               and kb[pfx] is not None and abs((exp - now) / 1000 - kb[pfx]) > 5]
        t.ok(not off, "each restored ban keeps its remaining time, not a fresh one", off[:5])
        t.ok(p.ban("192.0.2.20", n=1), "counters continue: the 5th failure after the restart bans")
        t.ok(p.d.alive(), "the restarted daemon is running")
    finally:
        p.close()


def case_nft_flush(t, tmp):
    p = e.Pbx(tmp)
    try:
        t.ok(p.ban("192.0.2.30"), "before the fault, an attack is banned")
        fl = e.Flood(p.ami, rate=4000).start()
        p.mon.wait_added(fl.addr(0), timeout=10)  # the flood is being banned
        h.nft("flush", "ruleset")                 # someone wipes the firewall mid-flood
        flood_goes_on(p, fl)
        fl.stop()
        t.ok(p.ban("192.0.2.31"), "a later attack is banned")
        ok = e.wait_until(lambda: kernel_matches_db(p.d), timeout=5)
        kb, db = e.kernel_bans() or {}, p.d.active_bans_db()
        t.ok(ok, "after the flush every active ban is enforced again (kernel = database)",
             f"kernel {len(kb)}, db {len(db)}, missing {sorted(set(db) - set(kb))[:5]}")
        t.ok("192.0.2.30" in kb, "the ban from before the flush is back")
        t.ok(p.d.alive(), "the daemon is still running")
    finally:
        p.close()


def case_db_unwritable(t, tmp):
    p = e.Pbx(tmp)
    dbdir = os.path.dirname(p.d.db)
    files = [dbdir, p.d.db, p.d.db + "-wal"]
    try:
        t.ok(p.ban("192.0.2.40"), "before the fault, an attack is banned")
        r = subprocess.run(["chattr", "+i", *files], capture_output=True, text=True)
        if r.returncode != 0:
            t.skip("the database becomes unwritable", f"chattr +i unsupported here: {r.stderr}")
            return
        t.ok(p.ban("192.0.2.41", timeout=10), "while the database cannot be written, a new "
             "attack is still banned in the kernel", p.d.log_text()[-1500:])
        fl = e.Flood(p.ami, rate=2000, limit=2000).start()
        p.mon.wait_added(fl.addr(19), timeout=10)  # the flood is banned, not recorded
        fl.stop()
        t.ok("database" in p.d.log_text() and "error" in p.d.log_text(),
             "the daemon reports the database failure")
        t.ok(p.d.alive(), "the daemon survives a database it cannot write")
        subprocess.run(["chattr", "-i", *files], capture_output=True)
        t.ok(p.ban("192.0.2.42"), "after recovery, a new attack is banned")
        ok = e.wait_until(lambda: "192.0.2.42" in p.d.active_bans_db(), timeout=10)
        t.ok(ok, "after recovery, new bans are committed to the database again",
             p.d.log_text()[-1500:])
        t.ok("192.0.2.40" in p.d.active_bans_db(), "the ban committed before the fault is kept")
        t.eq(e.integrity_ok(p.d.db), "ok", "PRAGMA integrity_check is ok after recovery")
    finally:
        subprocess.run(["chattr", "-i", *files], capture_output=True)
        p.close()


def case_db_full(t, tmp):
    dbdir = os.path.join(tmp, "db")
    os.makedirs(dbdir)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "pbxguard-e2e", dbdir],
                   check=True)
    p = None
    try:
        p = e.Pbx(tmp)
        t.ok(p.ban("192.0.2.50"), "before the fault, an attack is banned")
        fl = e.Flood(p.ami, rate=5000, limit=6000).start()
        full = e.wait_until(lambda: os.statvfs(dbdir).f_bavail == 0, timeout=20, interval=0.2)
        fl.stop()
        t.ok(full, "the flood fills the database's file system")
        t.ok(p.ban("198.51.100.51", timeout=10), "with the disk full, a new attack is still "
             "banned in the kernel", p.d.log_text()[-1500:])
        t.ok("database" in p.d.log_text() and "error" in p.d.log_text(),
             "the daemon reports the database failure")
        t.ok(p.d.alive(), "the daemon survives a full disk")
        subprocess.run(["mount", "-o", "remount,size=64m", dbdir], check=True)
        t.ok(p.ban("198.51.100.52"), "after space is freed, a new attack is banned")
        ok = e.wait_until(lambda: "198.51.100.52" in p.d.active_bans_db(), timeout=10)
        t.ok(ok, "after space is freed, new bans are committed again", p.d.log_text()[-1500:])
        t.ok("192.0.2.50" in p.d.active_bans_db(), "the ban committed before the fault is kept")
        t.eq(e.integrity_ok(p.d.db), "ok", "PRAGMA integrity_check is ok after recovery")
    finally:
        if p:
            p.close()
        subprocess.run(["umount", "-l", dbdir], capture_output=True)


def case_statsd_blackhole(t, tmp):
    p = e.Pbx(tmp, statsd_read=False)           # a StatsD server that never reads
    try:
        t.ok(p.ban("192.0.2.60"), "with a blackholed StatsD server, an attack is banned")
        e.Flood(p.ami, rate=10000, limit=4000).start().stop()
        p.ban("192.0.2.61", timeout=30)
        rss1 = p.d.proc_status("VmRSS")
        e.Flood(p.ami, base="10.2.0.0/16", rate=10000, limit=4000).start().stop()
        t.ok(p.ban("192.0.2.62", timeout=30), "after two floods, a new attack is still banned")
        rss2 = p.d.proc_status("VmRSS")
        # A sanitizer build keeps freed memory in quarantine for a while: more slack there.
        slack = 32 * 1024 if p.d.sanitized() else 8 * 1024
        t.ok(rss1 and rss2 and rss2 - rss1 < slack,
             f"memory does not grow with unsent meters ({rss1} kB, then {rss2} kB)")
        t.ok(p.d.alive(), "the daemon is still running")
    finally:
        p.close()


def case_cli_storm(t, tmp):
    p = e.Pbx(tmp)
    try:
        t.ok(p.ban("192.0.2.70"), "before the storm, an attack is banned")
        procs = [subprocess.Popen([p.d.cli_binary, "-s", p.d.sock, "--json", "list"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(100)]
        banned = p.ban("192.0.2.71", timeout=15)
        outs = []
        for pr in procs:
            try:
                out, _ = pr.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pr.kill()
                out, _ = pr.communicate()
            outs.append((pr.returncode, out))
        good = sum(1 for rc, out in outs if rc == 0 and '"192.0.2.70"' in out)
        t.eq(good, 100, "100 CLI clients at once all get the list")
        t.ok(banned, "an attack during the storm is banned")
        t.ok(p.d.alive(), "the daemon is still running")
    finally:
        p.close()


def case_garbage(t, tmp):
    p = e.Pbx(tmp)
    try:
        junk = [b"\x00\xff\xfe garbage \x01\x02\r\n\r\n",
                b"this is not a header line\r\nnor this\r\n\r\n",
                b"Event: PeerStatus\r\nPrivilege: system,all\r\nPeer: PJSIP/1001\r\n\r\n",
                b"X" * (1 << 20) + b"\r\n\r\n",
                e.ami_event("InvalidPassword", "192.0.2.99").replace(b"IPV4/UDP/192.0.2.99",
                                                                       b"IPV4/UDP/999.1.2.3"),
                b"Event: InvalidPassword\r\nPrivilege: security,all\r\n\r\n"]
        ips = ["192.0.2.80", "192.0.2.81", "2001:db8:5::80"]
        stream = b""
        for k in range(MAXRETRY):
            for ip in ips:
                stream += e.ami_event("ChallengeResponseFailed", ip, port=41000 + k)
                stream += junk[(k + len(stream)) % len(junk)]
        p.ami.send(stream)
        got = [p.mon.wait_added(ip if ":" not in ip else "2001:db8:5::", timeout=10) for ip in ips]
        t.ok(all(got), "attacks interleaved with garbage, a 1 MiB line and foreign events are "
             "all banned", p.d.log_text()[-1500:])
        t.ok(p.ban("192.0.2.82"), "the stream is still in sync afterwards")
        kb = e.kernel_bans() or {}
        t.eq(set(kb), {"192.0.2.80", "192.0.2.81", "2001:db8:5::/64", "192.0.2.82"},
             "nothing else is banned")
        t.ok(p.d.alive() and p.ami.logins == 1, "the daemon kept its one AMI session and runs")
    finally:
        p.close()


CASES = [("ami_restart", case_ami_restart), ("sigkill", case_sigkill),
         ("nft_flush", case_nft_flush), ("db_unwritable", case_db_unwritable),
         ("db_full", case_db_full), ("statsd_blackhole", case_statsd_blackhole),
         ("cli_storm", case_cli_storm), ("garbage", case_garbage)]


def main():
    # meson's timeout sends SIGTERM: the finally blocks (chattr -i, umount, namespaces) must run.
    e.exit_on_sigterm()
    h.setup_loopback()
    only = set(sys.argv[1:])
    t = h.Tap()
    for name, fn in CASES:
        if only and name not in only:
            continue
        t.diag(f"--- {name}")
        with h.TempDir(prefix=f"pbxguard-e2e-{name}-") as tmp:
            try:
                fn(t, tmp)
            except Exception as ex:  # a broken case fails loudly and the next one still runs
                t.ok(False, f"{name}: runs to the end", repr(ex))
        h.nft("delete", "table", "inet", "pbxguard", check=False)
    t.done()


if __name__ == "__main__":
    main()
