#!/usr/bin/python3
"""Every pbxguard command through the control socket of the real pbxguardd, in a private network
namespace: human and JSON output, bans visible in the kernel sets and surviving a restart,
unban, whitelisted refusal, reload errors, the daemon-not-running case, and hostile clients."""
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
t = h.Tap()


def elements(family):
    """The bans in the kernel (all four sets) of one family, as "addr" or "addr/len"."""
    bans = h.pbxguard_bans() or {}
    return {k for k in bans if (":" in k) == (family == "banned6")}


with h.TempDir() as d:
    os.chmod(d, 0o755)
    sock = os.path.join(d, "control.sock")
    conf = h.make_config(d, {("policy", "bantime"): "2h"})
    conf_text = open(conf).read().replace("[whitelist]\n", "[whitelist]\ncidr = 192.0.2.0/24\n", 1)
    with open(conf, "w") as f:
        f.write(conf_text)

    def cli(*args, user=None):
        cmd = [h.CLI, "-s", sock, *args]
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=40)

    def cli_json(*args):
        r = cli("--json", *args)
        try:
            return r.returncode, json.loads(r.stdout)
        except ValueError:
            return r.returncode, {"stdout": r.stdout, "stderr": r.stderr}

    def start():
        daemon = h.Daemon(conf)
        up = h.wait_for(lambda: cli("status").returncode == 0 or not daemon.running(), 10)
        return daemon, bool(up) and daemon.running()

    srv, up = start()
    t.ok(up, "pbxguardd starts and serves the control socket")

    # status
    r = cli("status")
    t.ok(r.returncode == 0 and r.stdout.startswith("pbxguardd ") and "database" in r.stdout
         and "nftables     ok" in r.stdout, "status prints a human summary", r.stdout + r.stderr)
    rc, j = cli_json("status")
    t.ok(rc == 0 and j.get("ok") and j["database"]["path"] == f"{d}/pbxguard.db"
         and j["database"]["size"] > 0 and j["database"].get("journal_lost") == 0
         and j["active_bans"] == {"v4": 0, "v6": 0}
         and j["nftables"]["ok"] is True,
         "status --json: database path, size and lost ban changes, bans, nftables", j)
    t.ok(j.get("failures_today") == 0 and j.get("bans_today") == 0,
         "status --json: failures and bans today, from the database", j)

    # ban
    r = cli("ban", "203.0.113.7", "--for", "1h", "--reason", "ticket 4711")
    t.ok(r.returncode == 0 and r.stdout.startswith("banned 203.0.113.7 for 1h (until "),
         "ban prints what was banned and until when", r.stdout + r.stderr)
    t.ok("203.0.113.7" in elements("banned4"), "the manual ban is in the kernel set banned4",
         elements("banned4"))
    t.ok(srv.wait_log("banned 203.0.113.7 for 1h (manual"),
         "the daemon's log records the manual ban", srv.log()[-2000:])
    rc, j = cli_json("ban", "2001:db8:1:2::/64")
    b = j.get("ban", {})
    t.ok(rc == 0 and b.get("prefix") == "2001:db8:1:2::/64" and b.get("reason") == "manual"
         and b.get("origin") == "cli:uid=0" and 7190 <= (b.get("remaining") or 0) <= 7200,
         "ban --json without --for: the policy's bantime, reason manual, origin the uid", j)
    t.ok("2001:db8:1:2::/64" in elements("banned6"), "an IPv6 prefix ban is in banned6",
         elements("banned6"))
    rc, j = cli_json("ban", "198.51.100.0/24", "--permanent")
    t.ok(rc == 0 and j["ban"]["expires"] is None and j["ban"]["remaining"] is None,
         "ban --permanent has no end", j)
    t.ok("198.51.100.0/24" in elements("banned4"), "the permanent prefix ban is in the kernel")
    r = cli("ban", "198.51.0.0/16", "--for", "1h")
    t.ok(r.returncode == 1 and "the kernel refused the ban of 198.51.0.0/16" in r.stderr
         and "overlaps another banned prefix" in r.stderr,
         "a prefix overlapping another banned prefix: the kernel's refusal comes back, exit 1",
         r.stderr)
    rc, j = cli_json("list", "--v4")
    t.ok(rc == 0 and "198.51.0.0/16" not in {b["prefix"] for b in j.get("bans", [])},
         "and the refused ban is not left recorded as active", j)

    # whitelist
    r = cli("ban", "192.0.2.10")
    t.eq(r.returncode, 1, "banning a whitelisted address fails with exit 1")
    t.ok("whitelisted" in r.stderr and "192.0.2.0/24" in r.stderr and "--force" in r.stderr,
         "the refusal names the whitelist entry and --force", r.stderr)
    t.ok("192.0.2.10" not in elements("banned4"), "the whitelisted address is not in the kernel")
    r = cli("ban", "127.0.0.1", "--force")
    t.ok(r.returncode == 1 and "loopback" in r.stderr and "not even with --force" in r.stderr,
         "loopback is refused too, even forced", r.stderr)
    r = cli("ban", "192.0.2.10", "--force", "--for", "10m")
    t.ok(r.returncode == 0 and "192.0.2.10" in elements("banned4"),
         "--force bans a whitelisted address", r.stderr)

    # list
    r = cli("list")
    lines = r.stdout.splitlines()
    t.ok(r.returncode == 0 and lines[0].split()[:3] == ["PREFIX", "REMAINING", "REASON"]
         and any(x.startswith("203.0.113.7 ") for x in lines)
         and any(x.startswith("198.51.100.0/24 ") and "permanent" in x for x in lines)
         and lines[-1] == "4 active bans", "list prints an aligned table of the active bans",
         r.stdout + r.stderr)
    col = lines[0].index("REMAINING")
    t.ok(all(x[col - 2:col] == "  " and x[col] != " " for x in lines[1:-1]),
         "the columns are aligned", r.stdout)
    rc, j = cli_json("list", "--limit", "2")
    t.ok(len(j.get("bans", [])) == 2 and j.get("total") == 4 and j.get("truncated") is True,
         "list --limit 2 lists two and counts all four", j)
    r = cli("list", "--limit", "2")
    t.eq(r.stdout.splitlines()[-1], "2 of 4 active bans shown (--limit N or --all for more)",
         "the human list says how many were left out")
    rc, j = cli_json("list", "--v6")
    t.eq([b["prefix"] for b in j.get("bans", [])], ["2001:db8:1:2::/64"], "list --v6 filters")
    rc, j = cli_json("list", "--v4", "--reason", "threshold")
    t.eq(j.get("bans"), [], "list --reason threshold: no earned bans yet")

    # show
    r = cli("show", "203.0.113.7")
    t.ok(r.returncode == 0 and "banned       yes, as 203.0.113.7 (manual" in r.stdout
         and "protected    no" in r.stdout, "show explains the current ban", r.stdout + r.stderr)
    rc, j = cli_json("show", "198.51.100.77")
    t.ok(rc == 0 and j["ban"]["prefix"] == "198.51.100.0/24" and j["whitelist"] is None,
         "show of an address inside a banned prefix names the prefix", j)
    rc, j = cli_json("show", "192.0.2.99")
    t.ok(rc == 0 and j["whitelist"] == "192.0.2.0/24" and j["ban"] is None,
         "show names the whitelist entry of a whitelisted address", j)

    # unban
    r = cli("unban", "198.51.100.77")
    t.eq(r.returncode, 1, "unban of an address inside a banned prefix fails with exit 1")
    t.ok("lies inside the banned prefix 198.51.100.0/24" in r.stderr,
         "and explains which prefix holds it", r.stderr)
    t.ok("198.51.100.0/24" in elements("banned4"), "the prefix stays banned")
    r = cli("unban", "203.0.113.7")
    t.eq((r.returncode, r.stdout), (0, "unbanned 203.0.113.7\n"), "unban lifts a ban")
    t.ok(srv.wait_log("unbanned 203.0.113.7 (manual)"), "the daemon's log records the unban")
    t.ok("203.0.113.7" not in elements("banned4"), "the unbanned address left the kernel set")
    rc, j = cli_json("unban", "192.0.2.10")
    t.eq((rc, j), (0, {"ok": True, "lifted": ["192.0.2.10"]}), "unban --json lists what was lifted")
    rc, j = cli_json("unban", "198.51.100.77")
    t.ok(rc == 1 and j.get("ok") is False and j.get("code") == 1
         and j.get("covered_by") == "198.51.100.0/24",
         "unban --json of a covered address: the error with the covering prefix, exit 1", j)
    r = cli("unban", "203.0.113.7")
    t.ok(r.returncode == 1 and "is not banned" in r.stderr, "unban of an address not banned: exit 1",
         r.stderr)
    rc, j = cli_json("show", "203.0.113.7")
    past = j.get("past_bans", [])
    t.ok(j.get("ban") is None and past and past[0]["end_reason"] == "lifted"
         and past[0]["lifted_by"] == "cli:uid=0", "show records who lifted the ban", j)
    t.ok(past and past[0].get("note") == "ticket 4711",
         "the --reason note is kept with the ban in the database and shown later", past)
    rc, j = cli_json("status")
    t.ok(j.get("bans_today", 0) >= 3, "status counts today's bans from the database", j)
    r = cli("status")
    t.ok("today " in r.stdout and " bans" in r.stdout, "status prints today's figures", r.stdout)
    r = cli("ban", "203.0.113.8", "--for", "10500w")
    t.ok(r.returncode == 2 and "at most 100 years" in r.stderr,
         "a ban longer than the kernel can time is a usage error (exit 2)", r.stderr)

    # restart: bans come back from the store, even if the kernel lost them
    cli("ban", "203.0.113.99", "--for", "3h")
    srv.stop()
    r = cli("status")
    t.ok(r.returncode == 3 and "systemctl start pbxguard" in r.stderr,
         "with the daemon stopped the CLI exits 3 and says how to start it", r.stderr)
    h.nft("delete", "table", "inet", "pbxguard")
    srv, up = start()
    t.ok(up, "the daemon restarts", srv.log())
    t.ok("203.0.113.99" in elements("banned4") and "198.51.100.0/24" in elements("banned4"),
         "manual bans survive a restart (restored into an empty kernel table)",
         elements("banned4"))
    rc, j = cli_json("list", "--v4")
    t.ok({"203.0.113.99", "198.51.100.0/24"} <= {b["prefix"] for b in j.get("bans", [])},
         "and are listed after the restart", j)

    # reload
    r = cli("reload")
    t.eq((r.returncode, r.stdout), (0, "configuration reloaded\n"), "reload reports success")
    rc, j = cli_json("reload")
    t.eq((rc, j), (0, {"ok": True}), "reload --json")
    with open(conf, "w") as f:
        f.write(conf_text.replace("cidr = 192.0.2.0/24", "cidr = 192.0.2.300"))
    r = cli("reload")
    t.eq(r.returncode, 1, "reload of a broken configuration fails with exit 1")
    rc, j = cli_json("reload")
    t.ok(rc == 1 and len(j.get("errors", [])) == 1 and "192.0.2.300" in j["errors"][0],
         "reload --json carries each error in \"errors\"", j)
    t.ok("not reloaded" in r.stderr and "pbxguard.conf:" in r.stderr and "192.0.2.300" in r.stderr,
         "and reports the file:line error to the caller", r.stderr)
    with open(conf, "w") as f:
        f.write(conf_text)
    t.eq(cli("status").returncode, 0, "the daemon still serves after a refused reload")
    t.ok(srv.wait_log("configuration reloaded", timeout=3), "a good reload is applied by the daemon")
    # A valid file the daemon cannot apply (a StatsD server whose name does not resolve here):
    # the reply carries the failure, not an early "ok".
    with open(conf, "w") as f:
        f.write(conf_text.replace("enabled = no\nhost = 127.0.0.1",
                                  "enabled = yes\nhost = statsd.invalid", 1))
    reloads = srv.log().count("configuration reloaded from")
    r = cli("reload")
    t.ok(r.returncode == 1 and "not reloaded" in r.stderr and "previous one keeps running" in r.stderr,
         "a file the daemon cannot apply: reload fails with exit 1 and says why", r.stdout + r.stderr)
    t.ok(srv.log().count("configuration reloaded from") == reloads
         and "configuration reload failed" in srv.log(),
         "and the daemon logged the failure and kept its configuration", srv.log()[-1500:])
    with open(conf, "w") as f:
        f.write(conf_text)
    r = cli("reload")
    t.ok(r.returncode == 0 and srv.log().count("configuration reloaded from") == reloads + 1,
         "the reply of a good reload comes once the new configuration runs", r.stderr)

    # security: the daemon refuses other users, and survives hostile clients
    os.chmod(sock, 0o666)
    r = cli("ban", "203.0.113.50", user=65534)
    t.ok(r.returncode == 1 and "permission denied" in r.stderr and "65534" in r.stderr,
         "a non-root user is refused by the daemon itself", r.stderr)
    t.ok("203.0.113.50" not in elements("banned4"), "and nothing was banned")
    os.chmod(sock, 0o600)
    flood = socket.socket(socket.AF_UNIX)
    flood.connect(sock)
    flood.settimeout(5)
    sent = 0
    try:
        while sent < 10 * 1024 * 1024:
            sent += flood.send(b"z" * 65536)
    except OSError:
        pass
    staller = socket.socket(socket.AF_UNIX)
    staller.connect(sock)
    r = cli("ban", "203.0.113.51", "--for", "5m")
    t.ok(r.returncode == 0 and "203.0.113.51" in elements("banned4"),
         "after a 10 MB flood and with a stalled client the daemon keeps banning",
         f"sent {sent}\nrc={r.returncode}\n{r.stdout}{r.stderr}\n{elements('banned4')}")
    t.ok(sent < 10 * 1024 * 1024, "the flooding client was cut off before 10 MB", f"sent {sent}")
    flood.close()
    staller.close()

    procs = [subprocess.Popen([h.CLI, "-s", sock, "--json", "list"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(150)]
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        results.append(p.returncode == 0 and '"203.0.113.51"' in out)
    t.eq(sum(results), 150, "150 CLI processes at once all get the list (more than 64 wait)")

    srv.stop()
    h.nft("delete", "table", "inet", "pbxguard", check=False)

t.done()
