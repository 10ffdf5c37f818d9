#!/usr/bin/python3
"""pbxguard report, end to end: a fixture database built through the real store
(tests/tools/report-fixture.c) gives exactly the golden text, CSV and JSON of
tests/fixtures/report/; the HTML is well-formed, self-contained and its charts hold the right
numbers; empty, eventless, uninitialized, absent and too-new databases each give a clear result;
the report reads while a writer holds a transaction and never changes the file.

No network, no nftables: it needs no namespace. Times are UTC (TZ=UTC) so the goldens hold
anywhere. Set REPORT_UPDATE_GOLDEN=1 to rewrite the goldens after a deliberate change.
"""
import hashlib
import html.parser
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

FIXTURE = os.path.join(h.BUILD, "tests", "report-fixture")
GOLDEN = os.path.join(h.FIXTURES, "report")
ENV = dict(os.environ, TZ="UTC", LC_ALL="C")
DAY = ["--from", "2026-11-25", "--to", "2026-11-26", "--now", "2026-11-26T06:00",
       "--host", "pbx1.example.net"]
SVG = "{http://www.w3.org/2000/svg}"


def run(cmd, *args):
    """Runs the report; stdout and stderr decoded as they are (CSV's CRLF stays CRLF)."""
    r = subprocess.run([*cmd, *args], capture_output=True, env=ENV, timeout=60)
    r.stdout = r.stdout.decode("utf-8", "replace")
    r.stderr = r.stderr.decode("utf-8", "replace")
    return r


def golden(t, name, got):
    path = os.path.join(GOLDEN, name)
    if os.environ.get("REPORT_UPDATE_GOLDEN"):
        with open(path, "w", newline="") as f:
            f.write(got)
    with open(path, newline="") as f:
        want = f.read()
    t.ok(got == want, f"{name}: the fixture day renders exactly as the golden file",
         "".join(__import__("difflib").unified_diff(
             want.splitlines(True), got.splitlines(True), "want", "got"))[:4000])


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def svg_bars(root, chart_id):
    """[(label, value)] of the bars of one chart."""
    for svg in root.iter(SVG + "svg"):
        if svg.get("id") == chart_id:
            return [(r.get("data-label"), int(r.get("data-value")))
                    for r in svg.iter(SVG + "rect") if "bar" in r.get("class", "").split()]
    return None


CHAR_PX = 7.0  # the estimate report_html.c sizes its labels by: 11 px text, generous advance


def svg_overflow(root):
    """[(chart, text, left, right, width)] for every SVG text whose estimated extent leaves the
    SVG's width (its viewBox)."""
    bad = []
    for svg in root.iter(SVG + "svg"):
        width = float(svg.get("viewBox").split()[2])
        for el in svg.iter(SVG + "text"):
            text = "".join(el.itertext())
            w, x = CHAR_PX * len(text), float(el.get("x"))
            anchor = el.get("text-anchor", "start")
            left = x - w if anchor == "end" else x - w / 2 if anchor == "middle" else x
            if left < 0 or left + w > width:
                bad.append((svg.get("id"), text, left, left + w, width))
    return bad


class Balance(html.parser.HTMLParser):
    """What an HTML parser sees: every non-void element closed, nothing that fetches."""
    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.fetches = [], [], []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") or (k == "style" and "url(" in (v or "")):
                self.fetches.append((tag, k, v))
        if tag in ("script", "link", "iframe", "object", "embed", "img"):
            self.fetches.append((tag, "", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def main():
    t = h.Tap()
    if not os.access(FIXTURE, os.X_OK):
        h.skip_all("report-fixture not built")
    cmd = [h.CLI, "report"]

    with h.TempDir() as tmp:
        db = os.path.join(tmp, "pbxguard.db")
        r = subprocess.run([FIXTURE, db], capture_output=True, text=True, env=ENV)
        if not t.ok(r.returncode == 0, "the fixture database builds through the store", r.stderr):
            t.done()

        before = sha(db)
        outs = {}
        for fmt in ("text", "csv", "json", "html"):
            r = run(cmd, "--db", db, "--format", fmt, *DAY)
            t.ok(r.returncode == 0 and r.stderr == "", f"--format {fmt} exits 0, silently",
                 r.stderr)
            outs[fmt] = r.stdout
        golden(t, "db.txt", outs["text"])
        golden(t, "db.csv", outs["csv"])
        golden(t, "db.json", outs["json"])

        # The same day with part of it, or all of it, rolled up into the hourly history, and
        # the same day written by a version-6 binary and migrated: the same report, byte for
        # byte, in every format.
        variants = []
        for hours in ("12", "48"):
            v = os.path.join(tmp, f"rolled-{hours}.db")
            r = subprocess.run([FIXTURE, "--rollup", hours, v], capture_output=True, text=True,
                               env=ENV)
            t.ok(r.returncode == 0, f"the fixture day, rolled up before +{hours}h, builds",
                 r.stderr)
            variants.append((v, f"rolled up before 2026-11-25 +{hours}h"))
        old = os.path.join(tmp, "v6.db")
        c = sqlite3.connect(old)
        with open(os.path.join(GOLDEN, "v6-day.sql")) as f:
            c.executescript(f.read())
        c.close()
        r = subprocess.run([FIXTURE, "--open", old], capture_output=True, text=True, env=ENV)
        t.ok(r.returncode == 0, "a version-6 database of the day migrates", r.stderr)
        variants.append((old, "written by schema version 6 and migrated"))
        for v, what in variants:
            for fmt, name in (("text", "db.txt"), ("csv", "db.csv"), ("json", "db.json")):
                r = run(cmd, "--db", v, "--format", fmt, *DAY)
                with open(os.path.join(GOLDEN, name), newline="") as f:
                    want = f.read()
                t.ok(r.returncode == 0 and r.stdout == want, f"{name}: the same when {what}",
                     r.stderr + "".join(__import__("difflib").unified_diff(
                         want.splitlines(True), r.stdout.splitlines(True), "want", "got"))[:3000])

        t.ok(max(len(line) for line in outs["text"].splitlines()) <= 80,
             "the text report fits 80 columns")
        t.ok(all(ord(c) < 127 for c in outs["text"]), "the text report is plain ASCII")

        # JSON: the schema documented in docs/report-json.md
        j = json.loads(outs["json"])
        t.eq(j["schema"], "pbxguard-report/1", "json: carries its schema version")
        t.eq(j["totals"]["failures"], sum(j["timeline"]["attempts"]),
             "json: the timeline adds up to the failures")
        t.eq(j["totals"]["failures"], sum(s["failures"] for s in j["by_service"]),
             "json: failures by service add up to the failures")

        # HTML: strict XML parse (well-formed), HTML parse (balanced, fetches nothing)
        page = outs["html"]
        try:
            root = ET.fromstring(page.split("\n", 1)[1])  # past <!DOCTYPE html>
            t.ok(True, "html: well-formed (parses as XML)")
        except ET.ParseError as e:
            root = None
            t.ok(False, "html: well-formed (parses as XML)", e)
        p = Balance()
        p.feed(page)
        p.close()
        t.ok(not p.errors and not p.stack, "html: every element is closed in order",
             p.errors + p.stack)
        t.ok(not p.fetches, "html: nothing is fetched, nothing runs (no script, src, href)",
             p.fetches)
        if root is not None:
            tl = svg_bars(root, "chart-timeline")
            t.eq([v for _, v in tl], j["timeline"]["attempts"],
                 "html: the hourly chart holds the attempts of each hour")
            t.eq(tl[2] if tl else None, ("2026-11-25 02:00", 6),
                 "html: a bar is labelled with its hour")
            t.eq(svg_bars(root, "chart-services"),
                 [(s["service"], s["failures"]) for s in j["by_service"]],
                 "html: the services chart holds the failures by service")
            t.eq(svg_bars(root, "chart-sources"),
                 [(s["source"], s["attempts"]) for s in j["top_sources"]],
                 "html: the sources chart holds the top sources' attempts")
        t.ok("&lt;script&gt;alert(1)&lt;/script&gt;" in page,
             "html: an account name full of markup is shown as text")
        if root is not None:
            runs = [tr for tr in root.iter("tr") if (tr.get("class") or "").startswith("run-")]
            t.eq([tr.get("class") for tr in runs],
                 ["run-stop", "run-start", "run-unclean_stop", "run-start"],
                 "html: the daemon section lists the stop, the starts and the unclean stop")
            t.ok("25m" in "".join(root.find(".//*[@id='daemon']").itertext()),
                 "html: ... and the time not running in the period")

        # The daemon's own runs: the clean stop at 06:00, the kill at 10:00, 25 minutes down.
        runs = j.get("daemon_runs") or []
        t.eq([(e["event"], e["time"]) for e in runs],
             [("stop", "2026-11-25T06:00:00Z"), ("start", "2026-11-25T06:05:00Z"),
              ("unclean_stop", "2026-11-25T10:00:00Z"), ("start", "2026-11-25T10:20:00Z")],
             "json: the clean stop, the unclean stop at the last thing it wrote, and the starts")
        t.eq(j["totals"].get("not_running_seconds"), 5 * 60 + 20 * 60,
             "json: the time not running in the period adds both stretches")
        t.ok("UNCLEAN STOP" in outs["text"] and "Not running in this period" in outs["text"],
             "text: the daemon section says so in words")

        # Every label of every chart inside its SVG: a day, a day not aligned on the hour (25
        # hourly buckets: the last tick label used to be cut), a week, a month.
        for args, what in ((DAY, "a day"),
                           (["--from", "2026-11-25T00:30", "--to", "2026-11-26T00:30"],
                            "a day from half past"),
                           (["--from", "2026-11-19T07:10", "--to", "2026-11-26T07:10"], "a week"),
                           (["--from", "2026-10-27T07:10", "--to", "2026-11-26T07:10"],
                            "a month")):
            r = run(cmd, "--db", db, "--format", "html", "--now", "2026-11-26T06:00", *args)
            try:
                bad = svg_overflow(ET.fromstring(r.stdout.split("\n", 1)[1]))
            except (ET.ParseError, IndexError) as e:
                bad = [str(e)]
            t.ok(r.returncode == 0 and not bad,
                 f"html, {what}: every chart label lies within its SVG's width", bad)

        # --output: same bytes, atomically in place, nothing left behind
        out = os.path.join(tmp, "report.html")
        r = run(cmd, "--db", db, "--format", "html", "--output", out, *DAY)
        with open(out) as f:
            t.ok(r.returncode == 0 and f.read() == page, "--output writes the same report")
        t.eq([n for n in os.listdir(tmp) if n.startswith("report.html.")], [],
             "--output leaves no temporary file")

        r = run(cmd, "--db", db, "--format", "csv", "--table", "by_service", *DAY)
        t.eq(r.stdout, "service,failures\r\nPJSIP,28\r\nAMI,5\r\nSIP,3\r\n",
             "--table writes one CSV table alone")

        # a period with no events
        r = run(cmd, "--db", db, "--from", "2026-01-01", "--to", "2026-01-02", "--format", "json",
                "--now", "2026-11-26T06:00")
        e = json.loads(r.stdout) if r.returncode == 0 else {}
        t.ok(r.returncode == 0 and e["totals"]["failures"] == 0 and e["top_sources"] == []
             and sum(e["timeline"]["attempts"]) == 0,
             "a period with no events: exit 0, all zeros", r.stderr)
        r = run(cmd, "--db", db, "--from", "2026-01-01", "--to", "2026-01-02")
        t.ok(r.returncode == 0 and "No failed attempts in this period." in r.stdout,
             "a period with no events: the text says so")

        # the writer holds a transaction: the report still reads (WAL) and sees only commits
        w = sqlite3.connect(db, isolation_level=None, timeout=5)
        w.execute("BEGIN IMMEDIATE")
        w.execute("INSERT INTO failures (key, ts_ms, seq, addr, kind, account, weight, flags) "
                  "VALUES (x'C0000201', 1795600000000, 0, x'', 1, 0, 1, 0)")
        r = run(cmd, "--db", db, "--format", "json", *DAY)
        t.ok(r.returncode == 0 and json.loads(r.stdout)["totals"]["failures"] == 36,
             "reads while a writer holds a transaction, and sees only what is committed",
             r.stderr)
        w.execute("ROLLBACK")
        w.close()
        t.eq(sha(db), before, "the report never changes the database file")

        # an initialized database with nothing in it
        empty = os.path.join(tmp, "empty.db")
        subprocess.run([FIXTURE, "--empty", empty], check=True, env=ENV)
        r = run(cmd, "--db", empty, "--since", "24h")
        t.ok(r.returncode == 0 and "No failed attempts in this period." in r.stdout
             and "Daemon" in r.stdout, "an empty database: exit 0, a report of nothing", r.stderr)
        r = run(cmd, "--db", empty, "--since", "24h", "--format", "json")
        e = json.loads(r.stdout) if r.returncode == 0 else {}
        t.ok(e.get("daemon_runs", 1) is None and e.get("totals", {}).get("not_running_seconds", 1)
             is None, "an empty database: no run recorded, so the time not running is unknown "
             "(null), not 0", r.stderr)

        # a file pbxguardd never initialized
        blank = os.path.join(tmp, "blank.db")
        open(blank, "w").close()
        r = run(cmd, "--db", blank)
        t.ok(r.returncode == 1 and "empty database, never initialized" in r.stderr,
             "an uninitialized file: exit 1 and says so", r.stderr)

        # a schema from the future
        newer = os.path.join(tmp, "newer.db")
        shutil.copy(empty, newer)
        c = sqlite3.connect(newer)
        c.execute("PRAGMA user_version = 99")
        c.commit()
        c.close()
        r = run(cmd, "--db", newer)
        t.ok(r.returncode == 1 and "schema version 99 is newer than this pbxguard knows"
             in r.stderr and r.stdout == "", "an unknown schema version: exit 1, names it",
             r.stderr)

        r = run(cmd, "--db", os.path.join(tmp, "absent.db"))
        t.ok(r.returncode == 1 and "no such database" in r.stderr,
             "an absent database: exit 1 and says so", r.stderr)
        t.ok(not os.path.exists(os.path.join(tmp, "absent.db")), "an absent database is not "
             "created")

        notdb = os.path.join(tmp, "notdb")
        with open(notdb, "w") as f:
            f.write("this is not sqlite\n" * 100)
        r = run(cmd, "--db", notdb)
        t.ok(r.returncode == 1 and "not a pbxguard database" in r.stderr,
             "a file that is not SQLite: exit 1 and says so", r.stderr)

        # usage errors: exit 2
        for args, what in ((["--format", "xml"], "an unknown format"),
                           (["--since", "yesterday"], "a bad duration"),
                           (["--since", "1h", "--from", "2026-11-25"], "two periods"),
                           (["--from", "2026-11-26", "--to", "2026-11-25"], "an empty period"),
                           (["--top", "0"], "--top 0"),
                           (["--table", "totals"], "--table without csv"),
                           (["extra"], "a stray argument")):
            r = run(cmd, "--db", db, *args)
            t.ok(r.returncode == 2 and "pbxguard report:" in r.stderr,
                 f"usage error, exit 2: {what}", r.stderr)
    t.done()


if __name__ == "__main__":
    main()
