#!/usr/bin/python3
"""pbxguard export and import against the real pbxguardd in a private network namespace:
the export's three formats (the nft script loaded by `nft -f` in another fresh namespace, with
no pbxguard in it), a JSON export imported into a fresh daemon giving the same bans, imports
that never shorten a ban, the manual-ban rules applied to every imported entry, and hostile
files (corrupt JSON, CSV with extra or missing columns, CRLF, NUL bytes, invalid UTF-8, binary
garbage, a 100 MB line)."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.in_private_netns()
h.setup_loopback()
t = h.Tap()

# The host's own address in this namespace, besides loopback's.
subprocess.run(["ip", "addr", "add", "198.18.7.1/32", "dev", "lo"], check=True)

BANS = [
    # (prefix, ban args, note)
    ("203.0.113.7", ["--for", "1h", "--reason", "ticket 4711, \"quoted\""]),
    ("198.51.100.0/24", ["--permanent"]),
    ("2001:db8:1:2::/64", ["--for", "2h"]),
    ("2001:db8:5::7", ["--for", "3h", "--reason", "=cmd|' /C calc'!A0"]),
    ("192.0.2.128/25", ["--for", "30m"]),
    ("203.0.113.9", ["--for", "45m"]),
]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def in_fresh_netns(script):
    """Runs a shell script in a new, empty network namespace (gone when it exits)."""
    return run(["unshare", "--net", "--", "sh", "-c", script])


def nft_elements(ruleset, table):
    """{set name: {element: timeout or None}} of one table of an `nft -j list ruleset`."""
    sets = {}
    for obj in json.loads(ruleset)["nftables"]:
        s = obj.get("set")
        if not s or s.get("table") != table:
            continue
        elems = sets.setdefault(s["name"], {})
        for e in s.get("elem", []):
            inner = e["elem"] if isinstance(e, dict) and "elem" in e else {"val": e}
            elems[h._nft_elem_key(inner["val"])] = inner.get("timeout")
    return sets


with h.TempDir() as d:
    os.chmod(d, 0o755)
    da, db_ = os.path.join(d, "a"), os.path.join(d, "b")
    os.mkdir(da)
    os.mkdir(db_)
    conf_a = h.make_config(da, {("policy", "bantime"): "2h"})
    conf_b = h.make_config(db_, {("policy", "bantime"): "2h"})
    sock_a, sock_b = os.path.join(da, "control.sock"), os.path.join(db_, "control.sock")

    def cli(sock, *args, **kw):
        return run([h.CLI, "-s", sock, *args], **kw)

    def start(conf, sock):
        daemon = h.Daemon(conf)
        up = h.wait_for(lambda: cli(sock, "status").returncode == 0 or not daemon.running(), 10)
        return daemon, bool(up) and daemon.running()

    def bans_of(sock):
        r = cli(sock, "--json", "list", "--all")
        return {b["prefix"]: b for b in json.loads(r.stdout)["bans"]} if r.returncode == 0 else {}

    # Export with no daemon: exit 3, no file.
    r = cli(sock_a, "export", "-o", os.path.join(d, "none.json"))
    t.ok(r.returncode == 3 and "not running" in r.stderr
         and not os.path.exists(os.path.join(d, "none.json")),
         "export without a daemon exits 3 and writes nothing", r.stderr)

    srv, up = start(conf_a, sock_a)
    t.ok(up, "pbxguardd A starts")
    for prefix, args in BANS:
        r = cli(sock_a, "ban", prefix, *args)
        if r.returncode != 0:
            t.diag(f"ban {prefix}: {r.stderr}")
    a_bans = bans_of(sock_a)
    t.eq(sorted(a_bans), sorted(p for p, _ in BANS), "A holds the bans to export")

    # JSON
    jpath = os.path.join(d, "bans.json")
    r = cli(sock_a, "export", "-o", jpath)
    t.ok(r.returncode == 0 and os.path.exists(jpath), "export -o FILE (json) exits 0", r.stderr)
    doc = json.load(open(jpath))
    exported = {b["prefix"]: b for b in doc["bans"]}
    t.ok(doc.get("schema") == "pbxguard-export/1" and doc["total"] == len(BANS)
         and sorted(exported) == sorted(a_bans), "the JSON export holds every ban", doc)
    b = exported.get("203.0.113.7", {})
    t.ok(b.get("family") == 4 and b.get("reason") == "manual"
         and b.get("note") == 'ticket 4711, "quoted"' and b.get("origin", "").startswith("cli:")
         and b.get("expires") == a_bans["203.0.113.7"]["expires"]
         and 3500 < b.get("remaining", 0) <= 3600, "a ban's fields: family, reason, note, "
         "origin, expiry, remaining time", b)
    p = exported.get("198.51.100.0/24", {})
    t.ok(p.get("expires") is None and p.get("remaining") is None,
         "a permanent ban has no expiry", p)
    t.ok(not [f for f in os.listdir(d) if f.startswith("bans.json.")],
         "no temporary file is left beside the export")

    # CSV
    r = cli(sock_a, "export", "--format", "csv")
    raw = subprocess.run([h.CLI, "-s", sock_a, "export", "--format", "csv"], capture_output=True)
    lines = raw.stdout.decode().split("\r\n")
    t.ok(r.returncode == 0 and lines[0] == "prefix,family,reason,remaining,expires,expires_utc,"
         "origin,note" and len([x for x in lines[1:] if x]) == len(BANS),
         "export --format csv: our header and a CRLF line per ban", r.stdout)
    formula = [x for x in lines if x.startswith("2001:db8:5::7,")]
    t.ok(formula and formula[0].endswith(",\"'=cmd|' /C calc'!A0\""),
         "a CSV cell never starts a spreadsheet formula", formula)

    # nft: loaded by nft -f in another fresh namespace, with no pbxguard in it.
    npath = os.path.join(d, "bans.nft")
    r = cli(sock_a, "export", "--format", "nft", "-o", npath)
    t.ok(r.returncode == 0, "export --format nft exits 0", r.stderr)
    script = open(npath).read()
    t.ok("table inet pbxguard_export" in script and "inet pbxguard " not in script,
         "the nft script makes its own table, never pbxguardd's", script[:600])
    r = in_fresh_netns(f"nft -f {npath} && nft -f {npath} && nft -j list ruleset")
    t.ok(r.returncode == 0, "nft -f loads the script in a fresh namespace (twice: it replaces "
         "its table)", r.stderr)
    sets = nft_elements(r.stdout, "pbxguard_export") if r.returncode == 0 else {}
    t.eq({k: sorted(v) for k, v in sets.items()},
         {"banned4": ["203.0.113.7", "203.0.113.9"], "banned4_net": ["192.0.2.128/25",
                                                                     "198.51.100.0/24"],
          "banned6": ["2001:db8:1:2::"], "banned6_net": ["2001:db8:5::7"]},
         "nft -j list: every ban in the set its kind belongs to")
    t.ok(sets and sets["banned4_net"]["198.51.100.0/24"] is None
         and 3500 < (sets["banned4"]["203.0.113.7"] or 0) <= 3600
         and 7100 < (sets["banned6"]["2001:db8:1:2::"] or 0) <= 7200,
         "elements carry their remaining time; a permanent ban none", sets)
    r = in_fresh_netns(f"nft -f {npath} && nft -j list chain inet pbxguard_export input")
    t.ok(r.returncode == 0 and r.stdout.count('"drop"') == 4,
         "the script's chain drops the four sets' sources", r.stdout[:400])
    t.ok(("inet", "pbxguard") in h.nft_tables() and ("inet", "pbxguard_export")
         not in h.nft_tables(), "the daemon's namespace is untouched by the nft checks")

    rc, _ = srv.stop()
    t.ok(rc == 0, "pbxguardd A stops")

    # JSON export into a fresh daemon: the same bans.
    srv, up = start(conf_b, sock_b)
    t.ok(up, "pbxguardd B starts on an empty database")
    r = cli(sock_b, "import", jpath)
    t.ok(r.returncode == 0 and r.stdout.startswith(f"imported {len(BANS)},"),
         "import of the JSON export exits 0 and imports every ban", r.stdout + r.stderr)
    b_bans = bans_of(sock_b)
    t.eq(sorted(b_bans), sorted(a_bans), "B holds the same prefixes")
    same = all(
        (a_bans[k]["expires"] is None) == (b_bans[k]["expires"] is None)
        and (a_bans[k]["expires"] is None or abs(a_bans[k]["expires"] - b_bans[k]["expires"]) <= 2)
        and a_bans[k].get("note") == b_bans[k].get("note")
        for k in a_bans if k in b_bans)
    t.ok(same, "... with the same expiry (remaining time kept; permanent stays permanent) and "
         "note", json.dumps(b_bans, indent=1)[:2000])
    kern = h.pbxguard_bans() or {}
    t.ok(set(a_bans) <= set(kern), "... and in B's kernel sets", kern)

    r = cli(sock_b, "--json", "import", jpath)  # the global --json, before the command
    s = json.loads(r.stdout) if r.returncode == 0 else {}
    t.ok(s.get("imported") == 0 and s.get("kept") == len(BANS),
         "importing it again changes nothing: each ban already lasts as long", r.stdout + r.stderr)

    # An import never shortens a ban: the CSV below says 1h for 203.0.113.7, which B now holds
    # for 5h.
    cli(sock_b, "ban", "203.0.113.7", "--for", "5h")
    csvpath = os.path.join(d, "bans.csv")
    now = int(time.time())
    with open(csvpath, "w", newline="") as f:
        f.write("prefix,family,reason,remaining,expires,expires_utc,origin,note\r\n"
                f"203.0.113.7,4,manual,3600,{now + 3600},,cli:uid=0,short\r\n"
                f"203.0.113.50,4,manual,600,{now + 600},,cli:uid=0,\"a, note\"\r\n"
                f"203.0.113.51,4,manual,0,{now - 10},,cli:uid=0,expired\r\n"
                "203.0.113.52,4,manual,,,,cli:uid=0,\"'=forever\"\r\n")
    r = cli(sock_b, "import", csvpath)
    b_bans = bans_of(sock_b)
    t.ok(r.returncode == 0 and "imported 2, skipped 1 expired and 1 already banned as long"
         in r.stdout, "CSV import: expired skipped and counted, a longer ban kept",
         r.stdout + r.stderr)
    t.ok(b_bans.get("203.0.113.7", {}).get("remaining", 0) > 4 * 3600
         and 500 < (b_bans.get("203.0.113.50", {}).get("remaining") or 0) <= 600
         and b_bans.get("203.0.113.50", {}).get("note") == "a, note"
         and b_bans.get("203.0.113.52", {}).get("expires", 1) is None
         and b_bans.get("203.0.113.52", {}).get("note") == "=forever"
         and "203.0.113.51" not in b_bans, "... with their lengths and notes", b_bans)

    # A plain list from stdin, with the rules of a manual ban applied to each line.
    listing = ("# attackers from the old firewall\r\n"
               "203.0.113.60\r\n"
               "   203.0.113.64/26   # a comment after it\n"
               "\n"
               "127.0.0.1\n"
               "0.0.0.0/1\n"
               "198.18.7.1\n"
               "not-an-address\n"
               "203.0.113.70/24\n"
               "2001:db8:77::1\n")
    r = cli(sock_b, "import", "--for", "10m", "-", input=listing)
    b_bans = bans_of(sock_b)
    t.ok(r.returncode == 1, "a list with refused and malformed lines: exit 1", r.stdout)
    t.ok("imported 3," in r.stdout and "refused 3 (protected 2, too-wide 1)" in r.stdout
         and "malformed 2" in r.stdout, "the summary counts imported, refused by rule and "
         "malformed", r.stdout)
    t.ok("stdin:5: 127.0.0.1 refused:" in r.stderr and "stdin:6: 0.0.0.0/1 refused:" in r.stderr
         and "stdin:7: 198.18.7.1 refused:" in r.stderr and "stdin:8:" in r.stderr
         and "stdin:9:" in r.stderr and "host bits" in r.stderr,
         "each refused or malformed line is named by its number, with the daemon's reason",
         r.stderr)
    t.ok(all(k in b_bans for k in ("203.0.113.60", "203.0.113.64/26", "2001:db8:77::1"))
         and not any(k in b_bans for k in ("127.0.0.1", "0.0.0.0/1", "198.18.7.1"))
         and 500 < (b_bans.get("203.0.113.60", {}).get("remaining") or 0) <= 600,
         "the good lines are banned for --for, the refused ones are not", sorted(b_bans))

    # Hostile files.
    def imp(name, data, *args):
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(data)
        start_t = time.monotonic()
        r = run([h.CLI, "-s", sock_b, "import", *args, path])
        return r, time.monotonic() - start_t

    r, _ = imp("corrupt.json", b'{"schema": "pbxguard-export/1", "bans": [{"prefix": "203.0.113.80",')
    t.ok(r.returncode == 1 and "not valid JSON" in r.stderr and "imported 0" in r.stdout,
         "corrupt JSON: refused whole, exit 1, nothing imported", r.stdout + r.stderr)
    r, _ = imp("wrong.json", b'{"bans": [{"prefix": 7}, "x", {"prefix": "203.0.113.81", '
               b'"expires": "soon"}, {"prefix": "203.0.113.82", "expires": null, "note": 5}, '
               b'{"prefix": "203.0.113.83", "expires": null}]}')
    t.ok(r.returncode == 1 and "bans[0]" in r.stderr and "bans[3]" in r.stderr
         and "imported 1," in r.stdout and "malformed 4" in r.stdout,
         "JSON entries of the wrong shape: each named by its index, the good one imported",
         r.stdout + r.stderr)
    r, _ = imp("columns.csv", b"prefix,expires,note\n203.0.113.90,,ok\n203.0.113.91,,x,extra\n"
               b"203.0.113.92\n\"203.0.113.93\",\"\",\"quoted\"\n203.0.113.94,\"unclosed\n")
    t.ok(r.returncode == 1 and "columns.csv:3: 4 fields where the header has 3" in r.stderr
         and "columns.csv:4: 1 field where the header has 3" in r.stderr
         and "columns.csv:6:" in r.stderr and "imported 2," in r.stdout
         and "malformed 3" in r.stdout, "CSV with extra and missing columns: those lines "
         "refused by number, the others imported", r.stdout + r.stderr)
    r, _ = imp("noprefix.csv", b"prefix;expires\n1.2.3.4;\n", "--format", "csv")
    t.ok(r.returncode == 1 and "no \"prefix\" column" in r.stderr,
         "a CSV header without a prefix column is refused", r.stderr)
    r, _ = imp("binary.txt", b"203.0.113.100\n\x00\x01\x02garbage\n\xff\xfe\xc3\x28\n"
               b"203.0.113.1\x0001\n" + os.urandom(4096) + b"\n203.0.113.101\n")
    t.ok(r.returncode == 1 and "203.0.113.100" in bans_of(sock_b)
         and "203.0.113.101" in bans_of(sock_b) and "\\x00" in r.stderr,
         "NUL bytes, invalid UTF-8 and binary lines are malformed (escaped in the message); "
         "the addresses around them are imported", r.stdout + r.stderr[:2000])
    t.ok(all(c == "\n" or 0x20 <= ord(c) < 0x7f for c in r.stderr),
         "no byte of the file reaches the terminal as it is")
    big = os.path.join(d, "big.txt")
    with open(big, "wb") as f:
        f.write(b"203.0.113.110\n")
        chunk = b"1" * (1 << 20)
        for _ in range(100):
            f.write(chunk)
        f.write(b"\n203.0.113.111\n")
    t0 = time.monotonic()
    r = run([h.CLI, "-s", sock_b, "import", big])
    took = time.monotonic() - t0
    t.ok(r.returncode == 1 and "big.txt:2: line longer than 4096 bytes" in r.stderr
         and "imported 2," in r.stdout, "a 100 MB line is skipped (never held) and named",
         r.stdout + r.stderr)
    t.diag(f"100 MB line read in {took:.1f} s")
    with open(big, "wb") as f:
        f.write(b"[" + b" " * (65 << 20) + b"]")
    r = run([h.CLI, "-s", sock_b, "import", big])
    t.ok(r.returncode == 1 and "larger than 64 MiB" in r.stderr,
         "a JSON document over 64 MiB is refused, not loaded", r.stderr)
    os.unlink(big)
    r, _ = imp("empty.txt", b"")
    t.ok(r.returncode == 0 and "imported 0," in r.stdout, "an empty file imports nothing",
         r.stdout + r.stderr)
    r = cli(sock_b, "import", os.path.join(d, "missing.txt"))
    t.ok(r.returncode == 1 and "No such file" in r.stderr, "a missing file: exit 1", r.stderr)
    r = cli(sock_b, "import")
    t.ok(r.returncode == 2 and "usage:" in r.stderr, "import without a file: usage, exit 2",
         r.stderr)
    r = cli(sock_b, "import", "--dry-run", "-", input="203.0.113.120\n")
    t.ok(r.returncode == 0 and "would import 1" in r.stdout
         and "203.0.113.120" not in bans_of(sock_b), "--dry-run bans nothing", r.stdout)
    t.ok(srv.running(), "pbxguardd B is still running after every hostile import")
    srv.stop()

    r = cli(sock_b, "import", jpath)
    t.ok(r.returncode == 3 and "not running" in r.stderr, "import without a daemon exits 3",
         r.stderr)

t.done()
