#!/usr/bin/env python3
"""Fleet mode across a database failover: a PostgreSQL primary with a synchronous streaming
standby (pg_basebackup -R), both started by this test in temporary directories; two pbxguardd
nodes in namespaces of their own, whose conninfo lists both servers with
target_session_attrs=read-write. Bans flow from both nodes; the primary is killed (pg_ctl stop
-m immediate) and the standby promoted (SELECT pg_promote()): the nodes reconnect to it through
the multi-host conninfo, and every ban any node made is on every node afterwards."""
import threading
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

P1, P2 = 55442, 55443
t = h.Tap()

with h.TempDir() as tmp:
    nodes, servers = [], []
    stop = threading.Event()
    try:
        a = fl.Node(tmp, 1, "A", P1)
        nodes.append(a)
        b = fl.Node(tmp, 2, "B", P1)
        nodes.append(b)
        primary = pglib.Server(tmp, "pg1", listen="*", port=P1).init()
        servers.append(primary)
        primary.start()
        primary.make_fleet_db()
        standby = pglib.Server(tmp, "pg2", listen="*", port=P2)
        servers.append(standby)
        primary.base_backup_to(standby)
        standby.start()
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
        primary.sql("SELECT pg_reload_conf()")
        t.ok(pglib.wait(lambda: primary.sql("SELECT sync_state FROM pg_stat_replication")
                        == "sync", timeout=30),
             "the standby streams synchronously from the primary")
        for n in nodes:
            with open(n.daemon.conf) as f:
                text = f.read()
            text = text.replace(f"conninfo = {n.conninfo}",
                                f"conninfo = host={n.gw},{n.gw} port={P1},{P2} dbname=pbxguard "
                                "user=pbxguard target_session_attrs=read-write")
            with open(n.daemon.conf, "w") as f:
                f.write(text)
            n.start()
        t.ok(all(n.wait_cluster(lambda s: s.get("state") == "connected" and s.get("port") ==
                                str(P1)) for n in nodes),
             "both nodes connect to the primary, the first host of the conninfo")

        made = {"A": [], "B": []}

        def flow(node, prefix, count):
            for i in range(count):
                if stop.is_set():
                    return
                ip = f"{prefix}.{i // 250}.{i % 250 + 1}"
                node.ban_threshold(ip)
                made[node.name].append(ip)
                time.sleep(0.01)

        ta = threading.Thread(target=flow, args=(a, "10.81", 400), daemon=True)
        tb = threading.Thread(target=flow, args=(b, "10.82", 400), daemon=True)
        ta.start()
        tb.start()
        time.sleep(1.5)
        t_kill = time.monotonic()
        primary.stop(mode="immediate")
        standby.sql("SELECT pg_promote()")
        t_promoted = time.monotonic()
        ta.join(60)
        tb.join(60)
        t.ok(len(made["A"]) == 400 and len(made["B"]) == 400,
             "bans kept flowing on both nodes through the failover")
        back = [n.wait_cluster(lambda s: s.get("state") == "connected" and s.get("port") ==
                               str(P2), timeout=30) for n in nodes]
        t_back = time.monotonic()
        t.ok(all(back), "both nodes reconnect to the promoted standby (the second host)")
        t.diag(f"killed at 0, promoted at {t_promoted - t_kill:.2f} s, both connected at "
               f"{t_back - t_kill:.2f} s")
        every = made["A"] + made["B"]
        ok = [n.wait_banned(every, timeout=30) for n in nodes]
        t_all = time.monotonic()
        t.ok(all(ok), "every ban either node made is on both nodes afterwards",
             {n.name: len(set(every) - set(n.kernel_bans())) for n in nodes})
        t.diag(f"every ban on every node {t_all - t_promoted:.2f} s after the promotion")
        rows = standby.sql("SELECT count(*) FROM pbxguard.pbxguard_bans WHERE NOT deleted",
                           db="pbxguard")
        t.eq(rows, "800", "the promoted server holds all 800 bans once each")
        t.ok(all(n.cluster().get("outbox") == 0 for n in nodes), "both outboxes are empty")
        t.ok(all(n.cluster().get("reconnects", 0) >= 1 for n in nodes),
             "status counts the reconnect")
        a.ban_threshold("203.0.113.40")
        t.ok(b.wait_banned("203.0.113.40"), "bans flow through the new primary")
        t.ok(all(n.daemon.alive() for n in nodes), "no node crashed")
    except Exception as ex:
        t.ok(False, f"the test ran to its end: {ex!r}")
    finally:
        stop.set()
        if t.failed:
            for n in nodes:
                t.diag(f"--- node {n.name} status: {n.cluster()}")
                t.diag(f"--- node {n.name} log (fleet lines, tail)")
                t.diag("\n".join([ln for ln in n.log().splitlines()
                                   if "cluster" in ln and "from the fleet applied" not in ln]
                                  [-40:]))
            for s in servers:
                t.diag(f"--- {s.dir} log (tail)")
                t.diag(s.log()[-2000:])
        for n in nodes:
            n.close()
        for s in servers:
            s.stop(mode="immediate")
    t.done()
