#!/usr/bin/python3
"""The nftables layer's table, sets and elements, driven through tests/tools/nft-tool (the real
library) in a private network namespace, checked with `nft -j list ...`."""
import os
import subprocess

import harness as h

h.in_private_netns()
h.setup_loopback()
t = h.Tap()


MARK = 'comment "pbxguard format 3 '


def fresh():
    h.nft("flush", "ruleset")


def tool(*args):
    return h.nft_tool(*args)


def setup_ok(*opts):
    r = tool(*opts, "setup")
    if r.returncode != 0:
        t.diag(r.stdout + r.stderr)
    return r


def test_setup_creates_our_table_with_typed_sets_and_drop_rules():
    fresh()
    r = setup_ok()
    t.ok(r.returncode == 0 and "created" in r.stdout, "setup creates the table", r.stdout + r.stderr)
    t.ok("interval+timeout for other prefixes" in r.stdout, "setup says which sets it uses", r.stdout)
    sets = {}
    rules = []
    for o in h.nft_json("list", "table", "inet", "pbxguard") or []:
        if "set" in o:
            sets[o["set"]["name"]] = o["set"]
        if "rule" in o:
            rules.append(o["rule"])
    t.eq(sorted(sets), ["banned4", "banned4_net", "banned6", "banned6_net"],
         "the table holds banned4, banned6 and their _net interval sets")
    t.eq((sets["banned4"]["type"], sets["banned4"]["flags"]), ("ipv4_addr", ["timeout"]),
         "banned4 is an ipv4_addr hash set with timeouts")
    t.eq((sets["banned6"]["type"], sets["banned6"]["flags"]), ("ipv6_addr", ["timeout"]),
         "banned6 is an ipv6_addr hash set with timeouts")
    t.eq((sets["banned4_net"]["type"], sorted(sets["banned4_net"]["flags"])),
         ("ipv4_addr", ["interval", "timeout"]), "banned4_net is an ipv4_addr set with interval,timeout")
    t.eq((sets["banned6_net"]["type"], sorted(sets["banned6_net"]["flags"])),
         ("ipv6_addr", ["interval", "timeout"]), "banned6_net is an ipv6_addr set with interval,timeout")
    chain = [o["chain"] for o in h.nft_json("list", "chain", "inet", "pbxguard", "input") if "chain" in o][0]
    t.eq((chain["hook"], chain["prio"], chain["policy"]), ("input", -10, "accept"),
         "the chain hooks input at priority -10, ahead of filter")
    text = h.nft("list", "chain", "inet", "pbxguard", "input").stdout
    t.ok("ip saddr @banned4 counter" in text and "ip saddr @banned4_net counter" in text
         and "ip6 saddr & ffff:ffff:ffff:ffff:: == @banned6 counter" in text
         and "ip6 saddr @banned6_net counter" in text and text.count("drop") == 4,
         "one saddr counter drop rule per set; banned6 is matched on the /64", text)


def test_setup_adopts_a_table_that_is_already_right():
    fresh()
    setup_ok()
    tool("ban", "192.0.2.1")
    r = setup_ok()
    t.ok("adopted" in r.stdout, "a second setup adopts the table", r.stdout)
    t.ok("192.0.2.1" in (h.pbxguard_bans() or {}), "adopting keeps the bans")


def test_setup_replaces_a_wrong_table_of_ours_and_leaves_foreign_tables_alone():
    fresh()
    subprocess.run(["nft", "-f", "-"], input="""
table inet pbxguard {
    comment "pbxguard format 3"
    chain input { type filter hook input priority 0; policy accept; }
}
table inet filter {
    chain input { type filter hook input priority 0; policy accept; counter; }
}
table ip pbxguard {
    set banned4 { type ipv4_addr; elements = { 198.51.100.1 }; }
}
""", text=True, check=True)
    r = setup_ok()
    t.ok("replaced" in r.stdout, "setup replaces a marked table of our name that is not right",
         r.stdout)
    chain = [o["chain"] for o in h.nft_json("list", "chain", "inet", "pbxguard", "input") if "chain" in o][0]
    t.eq(chain["prio"], -10, "the replaced table has our chain")
    t.ok(("inet", "filter") in h.nft_tables(), "the admin's inet filter table is untouched")
    t.eq(h.nft_set_elements("banned4", table="pbxguard", family="ip"), {"198.51.100.1": (None, None)},
         "a table of our name in another family is untouched")
    fresh()
    h.nft("add", "table", "inet", "pbxguard", "{ comment \"pbxguard format 1\"; }")
    r = setup_ok()
    t.ok("replaced" in r.stdout and MARK in h.nft("list", "table", "inet", "pbxguard").stdout,
         "a marked table of another format is replaced by one of ours", r.stdout)


def snapshot(name="pbxguard"):
    return (h.nft("-j", "list", "table", "inet", name, check=False).stdout,
            h.nft("list", "table", "inet", name, check=False).stdout)


def test_setup_leaves_an_unmarked_table_of_our_name_alone():
    fresh()
    subprocess.run(["nft", "-f", "-"], input="""
table inet pbxguard {
    chain input { type filter hook input priority 0; policy drop; tcp dport 22 accept; }
}
""", text=True, check=True)
    before = snapshot()
    r = tool("setup")
    t.ok(r.returncode == 3 and "is not pbxguard's" in r.stderr,
         "setup refuses a table of our name without the pbxguard mark", r.stdout + r.stderr)
    r = tool("check")
    t.ok(r.returncode == 1 and "damaged" in r.stdout, "check reports it", r.stdout + r.stderr)
    r = tool("teardown")
    t.ok(r.returncode == 3 and "is not pbxguard's" in r.stderr, "teardown refuses to delete it",
         r.stdout + r.stderr)
    t.ok(tool("ban", "192.0.2.1").returncode == 3, "bans are not put into it")
    t.eq(snapshot(), before, "the table is byte-for-byte as it was")
    # Comments that only look like the mark are no mark.
    for comment in ("pbxguard format 3x", "pbxguard format ", "xpbxguard format 3",
                    "pbxguard format 12345678901234567890", "pbxguard"):
        fresh()
        h.nft("add", "table", "inet", "pbxguard", "{ comment \"%s\"; }" % comment)
        before = snapshot()
        r = tool("setup")
        t.ok(r.returncode == 3 and snapshot() == before,
             f"a table whose comment is {comment!r} is not ours", r.stdout + r.stderr)


def fingerprint(fmt, set4="banned4", set6="banned6"):
    """The digest our rules carry as their comment (nftruleset.c's make_fingerprint)."""
    v = 1469598103934665603
    for c in f"v{fmt} {set4} {set6} tcp udp".encode():
        v = ((v ^ c) * 1099511628211) % (1 << 64)
    return f"pbxguard {v:016x}"


def legacy_table(extra=""):
    """The table pbxguard built before tables carried the mark: no comment on the table, the
    format 2 digest on every rule."""
    fp = fingerprint(2)
    return f"""
table inet pbxguard {{
    set banned4 {{ type ipv4_addr; flags timeout; }}
    set banned4_net {{ type ipv4_addr; flags interval,timeout; }}
    set banned6 {{ type ipv6_addr; flags timeout; }}
    set banned6_net {{ type ipv6_addr; flags interval,timeout; }}
    chain input {{
        type filter hook input priority filter - 10; policy accept;
        ip saddr @banned4 counter drop comment "{fp}"
        ip saddr @banned4_net counter drop comment "{fp}"
        ip6 saddr & ffff:ffff:ffff:ffff:: == @banned6 counter drop comment "{fp}"
        ip6 saddr @banned6_net counter drop comment "{fp}"
    }}
    {extra}
}}
"""


def test_setup_takes_over_a_table_from_before_the_mark():
    fresh()
    subprocess.run(["nft", "-f", "-"], input=legacy_table(), text=True, check=True)
    r = setup_ok()
    t.ok("replaced" in r.stdout and MARK in h.nft("list", "table", "inet", "pbxguard").stdout,
         "an unmarked table exactly as older pbxguard built it is replaced by a marked one",
         r.stdout)
    t.ok("adopted" in setup_ok().stdout, "which the next setup adopts")
    for what, extra in (("a set", "set mine { type ipv4_addr; }"),
                        ("a counter", "counter c1 { }"),
                        ("a chain", "chain mine { }")):
        fresh()
        subprocess.run(["nft", "-f", "-"], input=legacy_table(extra), text=True, check=True)
        before = snapshot()
        r = tool("setup")
        t.ok(r.returncode == 3 and snapshot() == before,
             f"the same layout with {what} of someone else's in it is left alone",
             r.stdout + r.stderr)


def test_setup_replaces_a_table_whose_rules_were_changed():
    fresh()
    setup_ok()
    h.nft("add", "rule", "inet", "pbxguard", "input", "counter", "accept")
    r = tool("check")
    t.ok(r.returncode == 1 and "damaged" in r.stdout, "check notices a foreign rule in our chain", r.stdout)
    r = setup_ok()
    t.ok("replaced" in r.stdout, "setup replaces it", r.stdout)
    t.ok("counter packets 0 bytes 0 accept" not in h.nft("list", "chain", "inet", "pbxguard", "input").stdout,
         "the foreign rule is gone")


def test_ban_installs_elements_with_their_timeouts_and_permanent_ones_without():
    fresh()
    r = tool("ban", "192.0.2.0/24,3600000", "198.51.100.7", "2001:db8::/64,600000", "2001:db8:1::5")
    t.ok(r.returncode == 0, "ban of four elements succeeds", r.stdout + r.stderr)
    b = h.pbxguard_bans()
    t.ok(b.get("192.0.2.0/24", (0, 0))[0] == 3600 and 3590 <= b["192.0.2.0/24"][1] <= 3600,
         "the /24 carries a 1h timeout and about 1h remaining", b)
    t.eq(b.get("198.51.100.7"), (None, None), "a ban without timeout is permanent")
    t.ok(b.get("2001:db8::/64", (0, 0))[0] == 600, "the IPv6 /64 carries its 10m timeout", b)
    t.eq(b.get("2001:db8:1::5"), (None, None), "a single IPv6 address is permanent")
    t.ok("192.0.2.0/24" in h.nft_set_elements("banned4_net") and "198.51.100.7" in h.nft_set_elements("banned4")
         and "2001:db8::" in h.nft_set_elements("banned6") and "2001:db8:1::5" in h.nft_set_elements("banned6_net"),
         "addresses and /64s go to the hash sets, other prefixes to the _net sets", b)


def test_ban_of_an_existing_element_refreshes_its_timeout():
    fresh()
    tool("ban", "192.0.2.9,60000")
    r = tool("ban", "192.0.2.9,7200000")
    t.eq(r.returncode, 0, "banning an existing element again succeeds")
    t.eq(h.pbxguard_bans().get("192.0.2.9", (0, 0))[0], 7200, "the element now carries the new timeout")
    tool("ban", "192.0.2.9")
    t.eq(h.pbxguard_bans().get("192.0.2.9"), (None, None),
         "a permanent ban over a timed one makes it permanent")
    tool("ban", "192.0.2.0/24,60000")
    r = tool("ban", "192.0.2.0/24,7200000")
    t.ok(r.returncode == 0 and h.pbxguard_bans()["192.0.2.0/24"][0] == 7200,
         "a prefix in an interval set is refreshed the same way", r.stdout)
    r = tool("ban", "192.0.2.50", "192.0.2.50,5000")
    t.ok(r.returncode == 0 and h.pbxguard_bans()["192.0.2.50"][0] == 5,
         "the same element twice in one commit: the later ban wins", r.stdout)


def test_one_bad_element_does_not_stop_the_others_in_its_batch():
    fresh()
    tool("ban", "192.0.2.0/24")
    r = tool("ban", "198.51.100.1", "192.0.2.128/25", "198.51.100.2")
    t.ok(r.returncode == 1 and "192.0.2.128/25: error: overlaps" in r.stdout,
         "a prefix inside a banned prefix fails alone, explained", r.stdout)
    b = h.pbxguard_bans()
    t.ok("198.51.100.1" in b and "198.51.100.2" in b, "its batch-mates are installed", b)
    r = tool("unban", "203.0.113.1", "198.51.100.1")
    t.ok(r.returncode == 1 and "198.51.100.1" not in h.pbxguard_bans(),
         "an unban of something not banned fails alone; the other unban is applied", r.stdout)


def test_a_failure_in_the_middle_of_a_shared_message_fails_alone():
    fresh()
    tool("ban", "198.51.100.1", "198.51.100.2", "198.51.100.3")
    r = tool("unban", "198.51.100.1", "203.0.113.1", "198.51.100.2", "198.51.100.3")
    t.ok(r.returncode == 1 and "unban 203.0.113.1: error: not in the set" in r.stdout
         and r.stdout.count(": ok") == 3, "only the missing element fails", r.stdout)
    t.eq(h.pbxguard_bans(), {}, "the elements before and after it are removed")


def test_unban_removes_exactly_the_element():
    fresh()
    tool("ban", "192.0.2.1", "192.0.2.2", "2001:db8::/64")
    r = tool("unban", "192.0.2.1", "2001:db8::/64")
    t.ok(r.returncode == 0, "unban succeeds", r.stdout + r.stderr)
    t.eq(h.pbxguard_bans(), {"192.0.2.2": (None, None)}, "only the other element is left")


def test_unban_of_an_address_inside_a_banned_prefix_names_the_prefix():
    fresh()
    tool("ban", "192.0.2.0/24", "2001:db8::/64")
    r = tool("unban", "192.0.2.77")
    t.ok(r.returncode == 1 and "(held by 192.0.2.0/24)" in r.stdout,
         "unbanning 192.0.2.77 explains that 192.0.2.0/24 holds it", r.stdout)
    r = tool("unban", "2001:db8::abc")
    t.ok("(held by 2001:db8::/64)" in r.stdout, "the same for IPv6", r.stdout)
    r = tool("unban", "203.0.113.1")
    t.ok(r.returncode == 1 and "not in the set" in r.stdout and "held" not in r.stdout,
         "unbanning an address that is not banned says so", r.stdout)
    t.ok("192.0.2.0/24" in h.pbxguard_bans(), "the prefix stays banned")


def test_contains_reports_the_prefix_and_remaining_time():
    fresh()
    tool("ban", "192.0.2.0/24,3600000", "198.51.100.7")
    r = tool("contains", "192.0.2.200")
    t.ok(r.returncode == 0 and "in 192.0.2.0/24, expires in" in r.stdout, "contains finds the /24", r.stdout)
    r = tool("contains", "198.51.100.7")
    t.ok("permanent" in r.stdout, "contains says permanent", r.stdout)
    r = tool("contains", "198.51.100.8")
    t.ok(r.returncode == 1 and "not banned" in r.stdout, "a neighbour is not banned", r.stdout)


def test_elements_survive_a_restart_of_the_layer_and_restore_is_idempotent():
    fresh()
    tool("ban", "192.0.2.3,3600000", "198.51.100.7")
    r = setup_ok()  # a new process: what a restarted daemon does first
    t.ok("adopted" in r.stdout, "a restarted layer adopts the table", r.stdout)
    t.eq(sorted(h.pbxguard_bans()), ["192.0.2.3", "198.51.100.7"], "the bans stayed in the kernel")
    r = tool("ban", "192.0.2.3,1800000", "198.51.100.7", "203.0.113.9,60000")
    t.ok(r.returncode == 0, "restoring over existing elements succeeds", r.stdout)
    b = h.pbxguard_bans()
    t.ok(b["192.0.2.3"][0] == 1800 and b["203.0.113.9"][0] == 60,
         "restored elements carry their remaining time", b)


def test_restore_of_many_bans_installs_them_all():
    fresh()
    with h.TempDir() as d:
        path = os.path.join(d, "bans")
        with open(path, "w") as f:
            for i in range(5000):
                f.write(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256},{3600000 + i}\n")
        r = tool("--file", path, "ban")
    t.ok(r.returncode == 0, "5000 bans in one commit succeed", r.stderr[-500:])
    t.eq(len(h.pbxguard_bans()), 5000, "all 5000 are in the set")
    with h.TempDir() as d:
        path = os.path.join(d, "bans")
        with open(path, "w") as f:
            for i in range(5000):
                f.write(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256},{7200000}\n")
        r = tool("--file", path, "ban")
    t.ok(r.returncode == 0 and "error" not in r.stdout,
         "restoring the same 5000 again succeeds for every one", r.stdout[-300:])
    t.ok(all(v[0] == 7200 for v in h.pbxguard_bans().values()), "all now carry the new timeout")


def test_a_full_set_fails_the_extra_elements_with_a_clear_message():
    fresh()
    r = tool("--size", "3", "ban", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::1")
    t.ok(r.returncode == 1, "the commit reports a failure")
    t.ok("192.0.2.4: error: the set is full (raise [nftables] set_size)" in r.stdout,
         "the element that did not fit says the set is full", r.stdout)
    t.eq(len(h.nft_set_elements("banned4")), 3, "the three that fit are installed")
    t.ok("2001:db8::1" in h.pbxguard_bans(), "the other family is unaffected")


def test_ports_option_limits_drops_to_the_pbx_ports():
    fresh()
    r = setup_ok("--tcp", "5060,5061", "--udp", "5060")
    t.eq(r.returncode, 0, "setup with ports succeeds")
    text = h.nft("list", "chain", "inet", "pbxguard", "input").stdout
    t.ok("tcp dport { 5060, 5061 }" in text and "udp dport { 5060 }" in text and text.count("drop") == 8,
         "one rule per set and protocol, matching the ports", text)
    r = setup_ok()
    t.ok("replaced" in r.stdout, "dropping the ports option replaces the table", r.stdout)


def test_forward_option_adds_a_forward_chain():
    fresh()
    setup_ok("--forward")
    chains = {o["chain"]["name"]: o["chain"] for o in h.nft_json("list", "table", "inet", "pbxguard")
              if "chain" in o}
    t.ok("forward" in chains and chains["forward"]["hook"] == "forward",
         "a forward chain hooks forward", chains)
    t.eq(h.nft("list", "chain", "inet", "pbxguard", "forward").stdout.count("drop"), 4,
         "it has the same drop rules")


def test_teardown_removes_only_our_table():
    fresh()
    subprocess.run(["nft", "add", "table", "inet", "filter"], check=True)
    tool("ban", "192.0.2.1")
    r = tool("teardown")
    t.eq(r.returncode, 0, "teardown succeeds")
    t.eq(h.nft_tables(), {("inet", "filter")}, "our table is gone, the other stays")
    t.eq(tool("teardown").returncode, 0, "teardown of a missing table is not an error")


def test_without_cap_net_admin_the_tool_says_so():
    fresh()
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all", "--bounding-set=-all", h.NFT_TOOL, "setup"],
                       capture_output=True, text=True, timeout=30)
    t.eq(r.returncode, 3, "exit status 3, no crash")
    t.ok("needs CAP_NET_ADMIN" in r.stderr, "the message names CAP_NET_ADMIN", r.stderr)
    t.eq(h.nft_tables(), set(), "nothing was created")


for name, fn in list(globals().items()):
    if name.startswith("test_") and callable(fn):
        fn()
t.done()
