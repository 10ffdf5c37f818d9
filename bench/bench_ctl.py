#!/usr/bin/python3
"""The control socket, measured against the real pbxguardd in a private network namespace.
Figures only, never pass/fail.

  bench/bench_ctl.py [--build DIR] [--n N] [--bans K]

  status_rtt     one `status` request over the socket, from send to reply (N times)
  ban_rtt        one manual ban: request -> stored, committed and in the kernel -> reply
  unban_rtt      the same for its unban
  cli_ban        the whole `pbxguard ban` process (fork, exec, connect, reply, exit)
  list_page      one `list` page (500 bans) with K active bans: the longest the loop is held
  list_all       every page of the listing of K bans, following the cursor, end to end
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
import harness as h  # noqa: E402


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.buf = b""

    def call(self, obj):
        self.s.sendall((json.dumps(obj) + "\n").encode())
        while b"\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def figures(name, samples_s):
    xs = sorted(samples_s)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    print(f"{name:14s} n={len(xs):6d}  median {statistics.median(xs) * 1e6:9.1f} us"
          f"  p99 {p99 * 1e6:9.1f} us  max {xs[-1] * 1e6:9.1f} us", flush=True)


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--bans", type=int, default=20000)
    args = ap.parse_args()
    h.in_private_netns()
    h.setup_loopback()
    # A quiet daemon: the AMI section points at a port nobody listens on.
    with h.TempDir() as d:
        conf = h.make_config(d, {("general", "log_level"): "warning"})
        daemon = h.Daemon(conf)
        sock = os.path.join(d, "control.sock")
        if not h.wait_for(lambda: os.path.exists(sock), 10):
            raise SystemExit("bench_ctl: the daemon did not start:\n" + daemon.log())
        c = Conn(sock)
        print(f"# {os.cpu_count()} cores, n={args.n}, K={args.bans} bans", flush=True)

        figures("status_rtt", [timed(lambda: c.call({"cmd": "status"}))[0] for _ in range(args.n)])
        ban, unban = [], []
        for i in range(args.n):
            addr = f"10.{200 + i // 65536}.{(i // 256) % 256}.{i % 256}"
            ban.append(timed(lambda: c.call({"cmd": "ban", "addr": addr, "duration": 600}))[0])
            unban.append(timed(lambda: c.call({"cmd": "unban", "addr": addr}))[0])
        figures("ban_rtt", ban)
        figures("unban_rtt", unban)

        cli = []
        for i in range(min(args.n, 200)):
            addr = f"172.16.{i // 256}.{i % 256}"
            cli.append(timed(lambda: subprocess.run([h.CLI, "-s", sock, "ban", addr],
                                                    capture_output=True))[0])
        figures("cli_ban", cli)

        t0 = time.perf_counter()
        for i in range(args.bans):
            c.call({"cmd": "ban", "addr": f"100.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}",
                    "duration": 3600})
        print(f"# {args.bans} manual bans placed in {time.perf_counter() - t0:.1f} s", flush=True)
        pages, whole = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            req, n = {"cmd": "list"}, 0
            while True:
                dt, r = timed(lambda: c.call(req))
                pages.append(dt)
                n += len(r["bans"])
                if not r.get("cursor"):
                    break
                req = {"cmd": "list", "cursor": r["cursor"]}
            whole.append(time.perf_counter() - t0)
        figures("list_page", pages)
        figures(f"list_all({n})", whole)
        daemon.stop()
        h.nft("delete", "table", "inet", "pbxguard", check=False)


if __name__ == "__main__":
    main()
