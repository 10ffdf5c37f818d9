#!/bin/sh
# Installs the Debian packages pbxguard needs that are missing; quick when nothing is.
# Usage: scripts/deps.sh run|test
set -eu

# libpq-dev: fleet mode ([cluster] over PostgreSQL); a build without it has no fleet mode.
run_pkgs="meson ninja-build pkg-config gcc libc6-dev libnftnl-dev libmnl-dev libjansson-dev
  libsqlite3-dev libmd-dev libsystemd-dev libpq-dev libcurl4-openssl-dev nftables iproute2 python3 scdoc"
# postgresql-15: the fleet tests start throwaway servers of their own (initdb, pg_ctl).
# prometheus (promtool too), prometheus-node-exporter: the Prometheus test starts its own, on a
# private namespace's loopback.
# fail2ban: the import test runs a fail2ban-server of its own in a temporary directory; the
# package's own service is never started (see below).
test_pkgs="$run_pkgs libcmocka-dev clang clang-format libclang-rt-14-dev sqlite3 util-linux procps e2fsprogs
  systemd passwd man-db dpkg-dev build-essential debhelper lintian postgresql-15 prometheus
  prometheus-node-exporter fail2ban"

case "${1:-}" in
run) want=$run_pkgs ;;
test) want=$test_pkgs ;;
*) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
# The StatsD integration test runs etsy's statsd (from npm) on Node: any node with npm will do
# (Node from elsewhere than Debian ships its own npm, which Debian's npm package would clash with).
if [ "$1" = test ] && ! { command -v node && command -v npm; } >/dev/null 2>&1; then
    want="$want nodejs npm"
fi

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "pbxguard: missing Debian packages:$missing" >&2
    echo "pbxguard: run this as root (or: sudo apt-get install$missing)" >&2
    exit 1
fi
echo "pbxguard: installing:$missing" >&2
# The fleet tests run PostgreSQL servers of their own in temporary directories: the package
# need not make (and start) a "main" cluster of its own.
case " $missing " in
*" postgresql-15 "*)
    if [ ! -e /etc/postgresql-common/createcluster.d/pbxguard-tests.conf ]; then
        mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/pbxguard-tests.conf
    fi
    ;;
esac
# fail2ban's postinst starts its service through invoke-rc.d (/etc/init.d/fail2ban where systemd
# does not run): a policy-rc.d that denies every start keeps it from running for the install.
case " $missing " in
*" fail2ban "*)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# made by pbxguard scripts/deps.sh for one install\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    ;;
esac
export DEBIAN_FRONTEND=noninteractive
# Another apt/dpkg run (an unattended upgrade, a second test run) holds dpkg's lock: wait for it.
apt_opts="-o DPkg::Lock::Timeout=600"
# shellcheck disable=SC2086
apt-get $apt_opts update -qq
# shellcheck disable=SC2086
apt-get $apt_opts install -y -qq --no-install-recommends $missing >/dev/null
# Should a fail2ban server have started all the same (a policy that allowed it), stop it
# through its own default socket: nothing may be left running.
if [ -S /var/run/fail2ban/fail2ban.sock ] && command -v fail2ban-client >/dev/null; then
    fail2ban-client stop >/dev/null 2>&1 || true
fi
exit 0
