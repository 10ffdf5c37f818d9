#!/bin/sh
# The layout check: every C file of the tree is as clang-format (the root .clang-format) writes
# it. One TAP line per file; a drifting file fails and its diff is printed. Fix with
#   clang-format -i FILE
# Run from the source root (meson's workdir). One clang-format process checks every file (one
# per file took over 30 s on a loaded 2-core machine); only a drifting file costs a second run,
# for its diff.
set -u
cd "${PBXGUARD_SOURCE:-.}" || exit 1
fmt=$(command -v clang-format) || { echo "1..0 # SKIP clang-format not installed"; exit 0; }
files=$(find base nft store daemon cli tests fuzz bench -name '*.[ch]' 2>/dev/null | sort)
n=$(printf '%s\n' "$files" | grep -c .)
# shellcheck disable=SC2086 # the paths hold no blanks (find over our own tree)
bad=$("$fmt" --dry-run -Werror $files 2>&1 | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: .*/\1/p' |
    sort -u)
echo "1..$n"
i=0
for f in $files; do
    i=$((i + 1))
    if ! printf '%s\n' "$bad" | grep -qxF -- "$f"; then
        echo "ok $i - $f"
    else
        echo "not ok $i - $f is not formatted (clang-format -i $f)"
        "$fmt" "$f" | diff -u "$f" - | sed 's/^/# /' | head -40
    fi
done
