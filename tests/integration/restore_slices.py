#!/usr/bin/python3
"""A restore of many active bans runs in slices across loop turns, in a private network
namespace with real kernel sets: a threshold-crossing event that arrives meanwhile is judged
and its ban installed before the restore is over; a ban lifted while the restore runs is never
put back; deleting the table while bans are being installed starts the restore over, and every
active ban is back at the end. Nothing is timed: the daemon's own log gives the order in which
things reached the kernel (a ban's line is written after its nftables commit)."""
import ipaddress
import os
import random
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
import e2elib as e  # noqa: E402

N = 300_000
ATTACKER = "203.0.113.9"
LIFTED = "10.250.0.1"    # expires first of all: the restore reaches it last
t = h.Tap()


def fill(db):
    """N active bans (10.x.y.z, expiring over the next hours) and LIFTED, written as an older
    daemon left them."""
    con = sqlite3.connect(db)
    now = int(time.time() * 1000)
    con.execute("PRAGMA synchronous = OFF")
    with con:
        con.executemany(
            "INSERT INTO bans (prefix, family, len, start_ms, expires_ms, reason, origin, "
            "failures, offence, service, event_type) VALUES (?, 4, 32, ?, ?, 'threshold', "
            "'ami:pbx1', 5, 1, 'PJSIP', 11)",
            ((str(ipaddress.IPv4Address(0x0A000001 + i)), now - 1000, now + 7200_000 + i)
             for i in range(N)))
        con.execute(
            "INSERT INTO bans (prefix, family, len, start_ms, expires_ms, reason, origin) "
            "VALUES (?, 4, 32, ?, ?, 'manual', 'cli:uid=0')", (LIFTED, now - 1000, now + 1800_000))
    con.close()


def in_kernel(addrs):
    """Which of addrs are banned in the kernel: one lookup of the element each (`nft get
    element` reads the whole set back, seconds for 300k)."""
    return {a for a in addrs if h.nft_tool("contains", a).returncode == 0}


def log_index(d, needle, start=0):
    return d.log_text().find(needle, start)


with h.TempDir() as tmp:
    ami = e.AmiServer().start()
    d = e.Daemon(tmp, ami.port, log_level="info")
    try:
        d.start()
        ami.wait_login(1)
        d.stop()
        subprocess.run(["nft", "delete", "table", "inet", "pbxguard"], capture_output=True)
        fill(d.db)
        mark = len(d.log_text())

        d.start()
        t.ok(ami.wait_login(2), "the daemon logs in to AMI while it restores")
        ami.send(e.attack(ATTACKER, 5))
        r = d.cli("unban", LIFTED)
        t.ok(r.returncode == 0, f"unban {LIFTED} during the restore", r.stderr)
        done = h.wait_for(lambda: log_index(d, "active bans installed", mark) >= 0, timeout=300)
        t.ok(done, "the restore finishes", d.log_text()[-2000:])
        text = d.log_text()[mark:]
        i_ban = text.find(f"banned {ATTACKER} for")
        i_unban = text.find(f"unbanned {LIFTED}")
        i_done = text.find("active bans installed")
        t.ok(0 <= i_ban < i_done, "the new attacker's ban was in the kernel before the restore "
             "was over", text[:3000])
        t.ok(0 <= i_unban < i_done, "the unban was served while the restore ran", text[:3000])
        line = text[i_done - 200:text.find("\n", i_done)]
        t.ok(f"nftables: {N} active bans installed" in line,
             "every ban but the lifted one was installed, in several slices", line)
        sample = [str(ipaddress.IPv4Address(0x0A000001 + i)) for i in random.sample(range(N), 20)]
        t.eq(in_kernel(sample + [ATTACKER, LIFTED]), set(sample + [ATTACKER]),
             "the restored bans and the new one are in the kernel, the lifted one is not")
        st = d.cli_json("status")
        t.ok(st is not None and st["loop"]["turns"] > 10 and "restoring" not in st
             and st["last_restore"]["bans"] == N and st["last_restore"]["slices"] > 1,
             "status: the loop's turns, no restore under way, the last one's figures", st)
        t.ok(st is not None and all(isinstance(st["loop"].get(k), (int, float)) and
                                    st["loop"][k] >= 0 for k in ("longest_ms", "max_ms", "p99_ms"))
             and st["loop"]["longest_ms"] > 0,
             "status: the longest turn ever, and the window's longest and 99th percentile",
             st and st.get("loop"))
        # Events have paused: the log is checkpointed by the helper (a second or so later).
        t.ok(h.wait_for(lambda: (d.cli_json("status") or {}).get("database", {})
                        .get("wal", {}).get("checkpoints", 0) >= 1, timeout=30),
             "once events pause, the write-ahead log is checkpointed", d.cli_json("status"))

        # The table deleted while a restore runs: it starts over and finishes.
        mark = len(d.log_text())
        subprocess.run(["nft", "delete", "table", "inet", "pbxguard"], check=True)
        t.ok(h.wait_for(lambda: log_index(d, "re-installed in", mark) >= 0, timeout=300),
             "a repair re-installs the bans", d.log_text()[-2000:])
        mark2 = len(d.log_text())
        subprocess.run(["nft", "delete", "table", "inet", "pbxguard"], check=True)
        h.wait_for(lambda: log_index(d, "inet pbxguard was damaged", mark2) >= 0, timeout=60)
        subprocess.run(["nft", "delete", "table", "inet", "pbxguard"], capture_output=True)
        t.ok(h.wait_for(lambda: log_index(d, "re-installed in", mark2) >= 0, timeout=300),
             "deleted again during the repair: the repair starts over and finishes",
             d.log_text()[-2000:])
        text = d.log_text()[mark2:]
        if "damaged again" in text:
            t.ok(True, "the second deletion came while bans were being re-installed")
        else:
            t.skip("the second deletion came while bans were being re-installed",
                   "it came after the repair had finished")
        final = text[text.rfind("re-installed in") - 120:]
        t.ok(f"{N + 1} active bans re-installed" in final,
             "the last repair installed every active ban (the attacker's too)", final[:300])
        sample = [str(ipaddress.IPv4Address(0x0A000001 + i)) for i in random.sample(range(N), 20)]
        t.eq(in_kernel(sample + [ATTACKER, LIFTED]), set(sample + [ATTACKER]),
             "after the repairs the bans are back, the lifted one is not")
    finally:
        if d.alive():
            d.stop()
        ami.stop()
        subprocess.run(["nft", "delete", "table", "inet", "pbxguard"], capture_output=True)
t.done()
