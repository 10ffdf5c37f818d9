#!/usr/bin/python3
"""Sums meson's test logs into one closing line, "N passed, N failed, N skipped".

A TAP test counts each of its "ok"/"not ok" lines; a test whose program failed or timed out
without failing any TAP line still counts one failure. Other tests count once each.
Exit status 1 if anything failed.
"""
import json
import re
import sys

TAP_LINE = re.compile(r"^(not ok|ok)\b(.*)$")


def count(build_dir):
    passed = failed = skipped = 0
    failures = []
    with open(f"{build_dir}/meson-logs/testlog.json") as f:
        for line in f:
            t = json.loads(line)
            result = t["result"]
            name = f'{build_dir.rsplit("/", 1)[-1]}:{t["name"]}'
            if result == "SKIP":
                skipped += 1
                continue
            p = fl = s = 0
            for out_line in (t.get("stdout") or "").splitlines():
                m = TAP_LINE.match(out_line.strip())
                if not m:
                    continue
                if "# SKIP" in m.group(2).upper():
                    s += 1
                elif m.group(1) == "ok":
                    p += 1
                else:
                    fl += 1
                    failures.append(f"{name}: not ok{m.group(2)}")
            if p + fl + s == 0:
                # Not TAP (or it died before printing any line): the program counts once.
                if result in ("OK", "EXPECTEDFAIL"):
                    p = 1
                else:
                    fl = 1
                    failures.append(f"{name}: {result}")
            elif result not in ("OK", "EXPECTEDFAIL") and fl == 0:
                fl = 1
                failures.append(f"{name}: {result} after its TAP lines passed")
            passed += p
            failed += fl
            skipped += s
    return passed, failed, skipped, failures


def main():
    total = [0, 0, 0]
    all_failures = []
    for d in sys.argv[1:]:
        try:
            p, f, s, fails = count(d)
        except FileNotFoundError:
            print(f"{d}: no test log (did the tests run?)")
            total[1] += 1
            continue
        print(f"{d}: {p} passed, {f} failed, {s} skipped")
        total[0] += p
        total[1] += f
        total[2] += s
        all_failures += fails
    for fl in all_failures:
        print(f"FAILED {fl}")
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    return 1 if total[1] else 0


if __name__ == "__main__":
    sys.exit(main())
