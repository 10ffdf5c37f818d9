#!/usr/bin/env python3
"""Fleet mode end to end: three pbxguardd nodes, each in a network namespace of its own (its own
kernel sets), sharing one real PostgreSQL server that this test starts with initdb/pg_ctl in a
temporary directory (as the postgres user) and stops at the end.

  * a threshold ban on A is in B's and C's kernel sets; `list`/`show` on B name node A;
  * a manual unban on C lifts it on A and B, and says so;
  * an address whitelisted on B: A's ban of it is refused on B only (counted), enforced on C;
  * database stopped: local bans go on; back, the outbox drains and the others catch up, and
    nothing is counted twice (one row per prefix here and there, no remote copy of one's own);
  * database restarted in the middle of a ban storm: every ban of the storm reaches every node;
  * hostile rows written straight into the shared table (0.0.0.0/0, ::/0, the node's own
    address, a /1, an expiry in 3000, garbage node and reason, a sequence number past the
    sequence): refused and counted, and the legitimate rows around them still applied."""
import os
import sys
import time

import e2elib as e
import fleetlib as fl
import harness as h
import pglib

h.in_private_netns()
reason = pglib.missing_reason()
if reason:
    h.skip_all(reason)
h.setup_loopback()
e.exit_on_sigterm()

PORT = 55432
t = h.Tap()


def bans_rows(node, prefix):
    return node.daemon.db_query("SELECT reason, origin FROM bans WHERE prefix = ?", (prefix,))


with h.TempDir() as tmp:
    nodes = []
    pg = None
    try:
        a = fl.Node(tmp, 1, "A", PORT)
        nodes.append(a)
        b = fl.Node(tmp, 2, "B", PORT, whitelist=["203.0.113.50"])
        nodes.append(b)
        c = fl.Node(tmp, 3, "C", PORT)
        nodes.append(c)
        pg = pglib.Server(tmp, listen="*", port=PORT).init().start()
        pg.make_fleet_db()
        for n in nodes:
            n.start()
        t.ok(all(n.wait_cluster(lambda s: s.get("state") == "connected") for n in nodes),
             "every node connects to the fleet database and creates or finds the schema")
        t.eq(pg.sql("SELECT version FROM pbxguard.pbxguard_schema", db="pbxguard"), "1",
             "the shared schema is at version 1, migrated once")

        # --- a threshold ban on A reaches B and C ---
        a.ban_threshold("203.0.113.10")
        t.ok(a.wait_banned("203.0.113.10"), "A bans 203.0.113.10 after 3 failures")
        t.ok(b.wait_banned("203.0.113.10") and c.wait_banned("203.0.113.10"),
             "A's threshold ban is in B's and C's kernel sets")
        t.eq(bans_rows(b, "203.0.113.10"), [("remote", "cluster:A")],
             "B stores it as a remote ban with its origin node")
        ls = b.cli("list").stdout
        t.ok("remote" in ls and "node A" in ls, "`pbxguard list` on B names node A", ls)
        sh = b.cli("show", "203.0.113.10").stdout
        t.ok("decided by node A" in sh, "`pbxguard show` on B names node A", sh)
        st = b.cli("status").stdout
        t.ok("fleet        node B, connected to" in st and "(primary)" in st,
             "`pbxguard status` shows the link, the host and that it is a primary", st)

        # --- whitelisted on B only ---
        a.ban_threshold("203.0.113.50")
        t.ok(a.wait_banned("203.0.113.50") and c.wait_banned("203.0.113.50"),
             "A's ban of 203.0.113.50 is on A and C")
        t.ok(b.wait_cluster(lambda s: s.get("refused", 0) >= 1, timeout=10),
             "B refuses it and counts the refusal")
        t.ok(not b.has("203.0.113.50") and bans_rows(b, "203.0.113.50") == [],
             "it is neither in B's kernel nor in B's store")
        t.ok("refused the ban of 203.0.113.50/32 from node A: whitelisted" in b.log(),
             "B logs why it refused it")

        # --- a manual unban on C lifts it everywhere ---
        r = c.cli("unban", "203.0.113.10")
        t.ok(r.returncode == 0 and "lifted on every node of the fleet" in r.stdout,
             "`pbxguard unban` on C says it lifts the ban on every node", r.stdout + r.stderr)
        t.ok(a.wait_unbanned("203.0.113.10") and b.wait_unbanned("203.0.113.10"),
             "C's unban lifts it in A's and B's kernels")
        t.ok(all(n.daemon.active_bans_db().get("203.0.113.10", "gone") == "gone"
                 for n in (a, b, c)),
             "no node keeps it active in its store")

        # --- a manual ban on B with a note reaches A and C ---
        r = b.cli("ban", "198.51.100.0/24", "--for", "2h", "--reason", "ticket 4711")
        t.ok(r.returncode == 0 and "banned on every node" in r.stdout, "B bans a /24 by hand",
             r.stdout + r.stderr)
        t.ok(a.wait_banned("198.51.100.0/24") and c.wait_banned("198.51.100.0/24"),
             "B's manual /24 is in A's and C's kernels")
        left = a.kernel_bans().get("198.51.100.0/24")
        t.ok(left is not None and 7000 <= left <= 7200,
             "with the remaining time the server computed (about 2h)", left)

        # --- the database stops: local bans go on, the outbox drains when it is back ---
        pg.stop()
        t.ok(a.wait_cluster(lambda s: s.get("state") != "connected", timeout=15),
             "A notices the database is gone")
        down = [f"203.0.113.{i}" for i in (20, 21, 22)]
        t0 = time.monotonic()
        for ip in down:
            a.ban_threshold(ip)
        t.ok(a.wait_banned(down, timeout=5), "A keeps banning locally while the database is down")
        t.diag(f"3 local bans with the database down took {time.monotonic() - t0:.2f} s")
        t.ok(a.wait_cluster(lambda s: s.get("outbox") == 3, timeout=5),
             "A's status shows 3 changes waiting in the outbox")
        st = a.cli("status").stdout
        t.ok("last error" in st, "and the last error", st)
        pg.start()
        t.ok(b.wait_banned(down, timeout=20) and c.wait_banned(down, timeout=20),
             "once it is back, the outbox drains and B and C catch up")
        t.ok(a.wait_cluster(lambda s: s.get("outbox") == 0 and s.get("state") == "connected"),
             "A's outbox is empty again")
        # A node puts a ban into its kernel before its turn's transaction commits, so a reader
        # may see the ban in the set a moment before its row: wait (bounded) for the row.
        once = h.wait_for(lambda: all(len(bans_rows(n, ip)) == 1 for n in (a, b, c)
                                      for ip in down), timeout=5)
        t.ok(once, "nothing counted twice: one ban row per prefix on every node",
             {n.name: [bans_rows(n, ip) for ip in down] for n in (a, b, c)})
        t.ok(all(r[0] != "remote" for ip in down for r in bans_rows(a, ip)),
             "A never stores its own bans back as remote ones")
        t.eq(pg.sql("SELECT count(*) FROM pbxguard.pbxguard_bans WHERE prefix <<= "
                    "'203.0.113.20/31' OR prefix = '203.0.113.22'", db="pbxguard"), "3",
             "one row per prefix in the shared table")

        # --- the database restarts in the middle of a ban storm ---
        storm = [f"10.77.{i // 200}.{i % 200 + 1}" for i in range(300)]
        half = len(storm) // 2
        a.ami.send(b"".join(e.attack(ip, 3) for ip in storm[:half]))
        pg.stop(mode="fast")
        a.ami.send(b"".join(e.attack(ip, 3) for ip in storm[half:]))
        time.sleep(0.5)
        pg.start()
        t.ok(a.wait_banned(storm, timeout=30), "A bans all 300 of the storm")
        ok_b, ok_c = b.wait_banned(storm, timeout=60), c.wait_banned(storm, timeout=60)
        t.ok(ok_b and ok_c, "every ban of the storm reaches B and C across the restart",
             f"B misses {len(set(storm) - set(b.kernel_bans()))}, "
             f"C misses {len(set(storm) - set(c.kernel_bans()))}")
        rows = b.daemon.db_query("SELECT count(*), count(DISTINCT prefix) FROM bans WHERE "
                                 "prefix LIKE '10.77.%'")
        t.eq(rows, [(300, 300)], "B stored each storm ban once")

        # --- hostile rows written straight into the shared table ---
        before_b = b.cluster().get("refused", 0)
        before_c = c.cluster().get("refused", 0)
        hostile = [
            ("0.0.0.0/0", "now() + interval '1 h'", "'X'", "'threshold'"),
            ("::/0", "now() + interval '1 h'", "'X'", "'threshold'"),
            (f"{b.addr}/32", "now() + interval '1 h'", "'X'", "'threshold'"),
            ("128.0.0.0/1", "now() + interval '1 h'", "'X'", "'threshold'"),
            ("203.0.113.99/32", "'3000-01-01'", "'X'", "'threshold'"),
            ("203.0.113.98/32", "now() + interval '1 h'", "E'evil\\001node; DROP'", "'manual'"),
            ("203.0.113.97/32", "now() + interval '1 h'", "'X'", "E'<script>\\x7f'"),
        ]
        sql = ["BEGIN"]
        for p, exp, node, rsn in hostile:
            sql.append("INSERT INTO pbxguard.pbxguard_bans (prefix, seq, expires, node, reason, "
                       f"note) VALUES ('{p}', nextval('pbxguard.pbxguard_seq'), {exp}, {node}, "
                       f"{rsn}, E'\\033[31m')")
        # A legitimate row among them, with garbage in its note, and one past the sequence.
        sql.append("INSERT INTO pbxguard.pbxguard_bans (prefix, seq, expires, node, reason, note) "
                   "VALUES ('203.0.113.77/32', nextval('pbxguard.pbxguard_seq'), now() + "
                   "interval '1 h', 'X', 'manual', E'\\033[31mred\\x01')")
        sql.append("INSERT INTO pbxguard.pbxguard_bans (prefix, seq, expires, node, reason) "
                   "VALUES ('203.0.113.78/32', 9000000000000000000, now() + interval '1 h', "
                   "'X', 'manual')")
        sql.append("COMMIT")
        sql.append("NOTIFY pbxguard_bans, '999'")
        pg.sql("; ".join(sql), db="pbxguard")
        t.ok(b.wait_banned("203.0.113.77") and c.wait_banned("203.0.113.77"),
             "the legitimate row among the hostile ones is applied")
        t.ok(b.wait_cluster(lambda s: s.get("refused", 0) - before_b == 7, timeout=10),
             "B refuses and counts all 7 hostile rows (its own address among them)",
             b.cluster())
        t.ok(c.wait_cluster(lambda s: s.get("refused", 0) - before_c == 6, timeout=10),
             "C refuses the 6 that break its rules (B's address is no protected one of C's)",
             c.cluster())
        kb = b.kernel_bans()
        bad = [p for p in ("0.0.0.0/0", "::/0", b.addr, "128.0.0.0/1", "203.0.113.99",
                           "203.0.113.98", "203.0.113.97") if p in kb]
        t.eq(bad, [], "none of them reaches B's kernel")
        note = b.daemon.db_query("SELECT note FROM bans WHERE prefix = '203.0.113.77'")
        t.ok(note and "\x1b" not in (note[0][0] or "") and "\x01" not in (note[0][0] or ""),
             "garbage in a text column is stored escaped", note)
        t.ok(not b.has("203.0.113.78") and b.cluster().get("cursor", 0) < 10**18,
             "a row numbered past the sequence is not read and does not move the cursor")
        a.ban_threshold("203.0.113.30")
        t.ok(b.wait_banned("203.0.113.30") and c.wait_banned("203.0.113.30"),
             "bans still flow afterwards")
        t.ok(all(n.daemon.alive() for n in nodes), "no node crashed")
        lines = b.log().count("cluster: refused the ban of")
        t.ok(1 <= lines < b.cluster().get("refused", 0),
             "refusals are logged, at most one line per 10 s (the others are counted)",
             f"{lines} lines for {b.cluster().get('refused')} refusals")

        # --- a restart while the database is down restores the remote bans ---
        pg.stop()
        c.stop()
        c.start()
        t.ok(c.wait_banned(["203.0.113.20", "198.51.100.0/24"] + storm[:10], timeout=15),
             "C restarted while the database is down restores the fleet's bans from its store")
        pg.start()
        t.ok(c.wait_cluster(lambda s: s.get("state") == "connected", timeout=20),
             "and reconnects once the database is back")
    except Exception as ex:  # a helper failed: say so in TAP, then clean up
        t.ok(False, f"the test ran to its end: {ex!r}")
    finally:
        if t.failed:
            for n in nodes:
                t.diag(f"--- node {n.name} log (fleet lines, tail)")
                t.diag("\n".join([ln for ln in n.log().splitlines()
                                   if "cluster" in ln and "from the fleet applied" not in ln]
                                  [-40:]))
            if pg:
                t.diag("--- postgres log (tail)")
                t.diag(pg.log()[-2000:])
        for n in nodes:
            n.close()
        if pg:
            pg.stop(mode="immediate")
    t.done()
