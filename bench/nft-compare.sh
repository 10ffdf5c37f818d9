#!/bin/sh
# Compares ways to install bans, in the same run, inside a private network namespace (the host's
# ruleset is never touched): the library in batches and one ban per transaction (bench_nft),
# `nft -f` with the same elements, and one forked `nft add element` per ban (a smaller N,
# extrapolated and labelled so). Prints figures only.
#
#   bench/nft-compare.sh [BUILD_DIR] [N...]        (default: build, 1000 100000 1000000)
set -eu
build=${1:-build}
[ $# -gt 0 ] && shift
sizes=${*:-1000 100000 1000000}
forked_n=${PBXGUARD_BENCH_FORKED_N:-1000}

if [ "$(id -u)" != 0 ]; then
    echo "nft-compare: needs root (private network namespace)" >&2
    exit 77
fi
if [ -z "${PBXGUARD_NETNS:-}" ]; then
    PBXGUARD_NETNS=1 exec unshare --net -- "$0" "$build" $sizes
fi

tool=$build/tests/nft-tool
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l 2>/dev/null || awk "BEGIN { print $2 - $1 }"; }

echo "# nft-compare: $(nproc) CPUs online, kernel $(uname -r), $(nft --version)"
"$build/bench/bench_nft" $(for n in $sizes; do printf -- '-n %s ' "$n"; done)

for n in $sizes; do
    # The same elements as bench_nft (10.0.0.0/8 in order, each with its own timeout), 1000 per
    # "add element" line, as a generated restore script would write them.
    awk -v n="$n" 'BEGIN {
        for (i = 0; i < n; i++) {
            if (i % 1000 == 0) printf "%sadd element inet pbxguard banned4 { ", (i ? " }\n" : "")
            else printf ", "
            printf "10.%d.%d.%d timeout %dms", int(i / 65536), int(i / 256) % 256, i % 256, 3600000 + i % 1000
        }
        print " }"
    }' >"$tmp/elements.nft"
    "$tool" teardown && "$tool" setup >/dev/null
    t0=$(now)
    nft -f "$tmp/elements.nft"
    t1=$(now)
    awk -v n="$n" -v t="$(elapsed "$t0" "$t1")" \
        'BEGIN { printf "nft -f    N=%-8d wall %8.3f s   %10.0f bans/s\n", n, t, n / t }'
done

"$tool" teardown && "$tool" setup >/dev/null
t0=$(now)
i=0
while [ "$i" -lt "$forked_n" ]; do
    nft add element inet pbxguard banned4 "{ 10.$((i / 65536)).$((i / 256 % 256)).$((i % 256)) timeout 1h }"
    i=$((i + 1))
done
t1=$(now)
awk -v n="$forked_n" -v t="$(elapsed "$t0" "$t1")" -v sizes="$sizes" 'BEGIN {
    printf "forked    N=%-8d wall %8.3f s   %.3f ms per ban (one nft process each)\n", n, t, t / n * 1000
    split(sizes, s, " ")
    for (k in s) if (s[k] + 0 > n)
        printf "forked    N=%-8d wall %8.1f s   (extrapolated from N=%d, not measured)\n", s[k], t / n * s[k], n
}'
"$tool" teardown
