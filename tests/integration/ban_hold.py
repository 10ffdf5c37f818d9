#!/usr/bin/python3
"""A ban decided in the middle of a flood reaches the kernel before the rest of the flood is
judged, and a storm of bans still shares transactions; in a private network namespace with
real kernel sets and the scripted AMI server. Nothing is timed: the kernel's own notifications
tell which transaction (NEWGEN) carried each ban."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
import e2elib as e  # noqa: E402

t = h.Tap()
STORM = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(200)]

with h.TempDir() as tmp:
    ami = e.AmiServer().start()
    mon = e.SetMonitor()
    d = e.Daemon(tmp, ami.port, maxretry=5)
    try:
        d.start()
        t.ok(ami.wait_login(1, timeout=30), "the daemon logs in to the AMI server")

        # One write, one read of the daemon (about 45 KiB): an attacker crosses the threshold,
        # then 150 failures of 75 other sources (two each, below the threshold), then another
        # attacker crosses it. Without a bound, both bans would wait for the end of the turn
        # and share its transaction; the first must not wait for the judging of the 150 events
        # behind it. Three rounds, each with fresh addresses.
        for rnd in range(3):
            first, last = f"203.0.113.{10 + 2 * rnd}", f"203.0.113.{11 + 2 * rnd}"
            others = [f"10.9.{rnd}.{i + 1}" for i in range(75)]
            flood = b"".join(e.ami_event("InvalidPassword", ip, port=41000) for ip in others * 2)
            ami.send(e.attack(first, 5) + flood + e.attack(last, 5))
            t.ok(mon.wait_added(last, timeout=60) is not None and mon.added_at(first) is not None,
                 f"round {rnd + 1}: both attackers are banned")
            with mon.cv:
                g_first, g_last = mon.added_gen.get(first), mon.added_gen.get(last)
            t.diag(f"round {rnd + 1}: transactions before the first ban: {g_first}, before the "
                   f"last: {g_last}")
            t.ok(g_first is not None and g_last is not None and g_first < g_last,
                 f"round {rnd + 1}: the first ban was committed in an earlier transaction than "
                 "the last one, before the events behind it were all judged")
            t.eq([ip for ip in others if mon.added_at(ip) is not None], [],
                 f"round {rnd + 1}: sources below the threshold are not banned")

        # A storm: 200 sources at maxretry - 1, then the 5th failure of each in one write: 200
        # bans decided back to back share a few transactions, not one each.
        ami.send(b"".join(e.attack(ip, 4) for ip in STORM))
        sentinel = "203.0.113.99"
        ami.send(e.attack(sentinel, 5))
        t.ok(mon.wait_added(sentinel, timeout=60) is not None, "the storm's 4th failures are in")
        t.eq([ip for ip in STORM if mon.added_at(ip) is not None], [],
             "four failures each ban nobody")
        ami.send(b"".join(e.ami_event("InvalidPassword", ip, port=42000) for ip in STORM))
        with mon.cv:
            all_in = mon.cv.wait_for(lambda: all(ip in mon.added for ip in STORM), timeout=60)
        t.ok(all_in, "the storm's 200 sources are banned")
        with mon.cv:
            gens = {mon.added_gen.get(ip) for ip in STORM}
        t.diag(f"{len(gens)} transactions carried the storm's {len(STORM)} bans")
        t.ok(None not in gens and len(gens) <= len(STORM) // 2,
             "the storm's bans share transactions (at most one per two bans)",
             f"{len(gens)} transactions for {len(STORM)} bans")
        t.ok(d.alive(), "the daemon is still running")
    finally:
        if d.p is not None and d.alive():
            d.stop(timeout=30)
        ami.stop()
        mon.close()

t.done()
