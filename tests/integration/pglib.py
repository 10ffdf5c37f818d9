"""Throwaway PostgreSQL servers for the fleet tests and benchmarks.

Each server is made with initdb in a temporary directory, runs as the `postgres` user (the
server refuses root) with pg_ctl, listens on the addresses given and on a Unix socket in its own
directory, and is stopped at the end, also on failure (atexit, and callers stop it in finally).
No system service is used or touched.

    import pglib
    pg = pglib.Server(tmp, listen="127.0.0.1", port=55432).init().start()
    pg.sql("SELECT 1")
    pg.stop()
"""
import atexit
import glob
import os
import pwd
import shutil
import subprocess
import time

_SERVERS = []


def bindir():
    """The directory of initdb and pg_ctl (Debian puts them under /usr/lib/postgresql/N/bin),
    or None."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


def missing_reason():
    """Why PostgreSQL cannot be used here, or None if it can."""
    if bindir() is None:
        return "PostgreSQL server binaries not found (scripts/deps.sh test installs postgresql-15)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user (the postgresql-15 package makes it)"
    if not shutil.which("psql"):
        return "psql not found (postgresql-client-15)"
    return None


def _stop_all():
    for s in list(_SERVERS):
        s.stop(mode="immediate")


atexit.register(_stop_all)


class Server:
    """One PostgreSQL server. listen: comma list of addresses for TCP ('' = none); the Unix
    socket is always in self.sockdir. ns: a named network namespace to run it in (None: ours)."""

    def __init__(self, tmp, name="pg", listen="127.0.0.1", port=55432, ns=None):
        self.bin = bindir()
        self.dir = os.path.join(tmp, name)
        self.data = os.path.join(self.dir, "data")
        self.sockdir = os.path.join(self.dir, "sock")
        self.logfile = os.path.join(self.dir, "server.log")
        self.listen, self.port, self.ns = listen, port, ns
        pw = pwd.getpwnam("postgres")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.makedirs(self.sockdir, exist_ok=True)
        # The server's user must reach its directories; the temporary root stays root's.
        for d in (tmp, self.dir):
            os.chmod(d, os.stat(d).st_mode | 0o711)
        for d in (self.dir, self.sockdir):
            os.chown(d, self.uid, self.gid)
        self.running = False

    def _as_pg(self, argv, check=True, timeout=120, **kw):
        pre = ["ip", "netns", "exec", self.ns] if self.ns else []
        return subprocess.run(pre + ["runuser", "-u", "postgres", "--"] + argv, check=check,
                              capture_output=True, text=True, timeout=timeout, **kw)

    def init(self, sync_standby=None):
        """initdb with trust authentication (the server is reachable only from the test's own
        namespaces) and settings for a test: fsync off, replication allowed."""
        self._as_pg([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        self.configure(sync_standby)
        return self

    def configure(self, sync_standby=None):
        conf = [f"listen_addresses = '{self.listen}'", f"port = {self.port}",
                f"unix_socket_directories = '{self.sockdir}'", "fsync = off",
                "full_page_writes = off", "max_connections = 600", "shared_buffers = 32MB",
                "wal_level = replica", "max_wal_senders = 4", "wal_keep_size = 64MB",
                "log_min_messages = warning", "logging_collector = off"]
        if sync_standby:
            conf += [f"synchronous_standby_names = '{sync_standby}'"]
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write("\n".join(conf) + "\n")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\nlocal replication all trust\n"
                    "host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n"
                    "host replication all 0.0.0.0/0 trust\nhost replication all ::/0 trust\n")
        os.chown(os.path.join(self.data, "pg_hba.conf"), self.uid, self.gid)

    def start(self, timeout=60):
        self._as_pg([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", self.logfile,
                     "-w", "-t", str(timeout), "start"], timeout=timeout + 10)
        self.running = True
        if self not in _SERVERS:
            _SERVERS.append(self)
        return self

    def stop(self, mode="fast"):
        if not self.running:
            return
        self._as_pg([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", mode, "-w",
                     "-t", "60", "stop"], check=False, timeout=90)
        self.running = False
        if self in _SERVERS:
            _SERVERS.remove(self)

    def sql(self, text, db="postgres", user="postgres", check=True):
        """Runs text with psql over the Unix socket; returns stdout (unaligned, tuples only)."""
        r = self._as_pg(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                         self.sockdir, "-p", str(self.port), "-U", user, "-d", db, "-c", text],
                        check=False, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}\n{text}")
        return r.stdout.strip()

    def make_fleet_db(self, role="pbxguard", db="pbxguard", password=None):
        """The least-privilege setup of the README: a role that owns one schema in one database.
        """
        pw = f" PASSWORD '{password}'" if password else ""
        self.sql(f"CREATE ROLE {role} LOGIN{pw}")
        self.sql(f"CREATE DATABASE {db} OWNER postgres")
        self.sql(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC; "
                 f"GRANT CONNECT ON DATABASE {db} TO {role}", db=db)
        self.sql(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; "
                 f"CREATE SCHEMA {role} AUTHORIZATION {role}", db=db)
        self.sql(f"ALTER ROLE {role} IN DATABASE {db} SET search_path = {role}", db=db)

    def base_backup_to(self, other, app_name="standby1"):
        """Makes other a streaming standby of this server (pg_basebackup -R)."""
        shutil.rmtree(other.data, ignore_errors=True)
        other._as_pg([os.path.join(self.bin, "pg_basebackup"), "-h", self.sockdir, "-p",
                      str(self.port), "-U", "postgres", "-D", other.data, "-X", "stream", "-R", "-c", "fast",
                      "-d", f"application_name={app_name}"], timeout=300)
        with open(os.path.join(other.data, "postgresql.auto.conf"), "a") as f:
            f.write(f"\nlisten_addresses = '{other.listen}'\nport = {other.port}\n"
                    f"unix_socket_directories = '{other.sockdir}'\n"
                    f"synchronous_standby_names = ''\n"
                    f"primary_conninfo = 'host={self.sockdir} port={self.port} user=postgres "
                    f"application_name={app_name}'\n")

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def wait(pred, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
