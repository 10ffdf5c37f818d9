#!/bin/sh
# The layout check: every C file of the tree is as clang-format (the root .clang-format) writes
# it. One TAP line per file; a drifting file fails and its diff is printed. Fix with
#   clang-format -i FILE
# Run from the source root (meson's workdir).
set -u
cd "${PBXGUARD_SOURCE:-.}" || exit 1
fmt=$(command -v clang-format) || { echo "1..0 # SKIP clang-format not installed"; exit 0; }
files=$(find base nft store daemon cli tests fuzz bench -name '*.[ch]' 2>/dev/null | sort)
n=$(printf '%s\n' "$files" | grep -c .)
echo "1..$n"
i=0
for f in $files; do
    i=$((i + 1))
    if "$fmt" --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "ok $i - $f"
    else
        echo "not ok $i - $f is not formatted (clang-format -i $f)"
        "$fmt" "$f" | diff -u "$f" - | sed 's/^/# /' | head -40
    fi
done
