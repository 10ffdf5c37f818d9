"""A real CrowdSec Local API (LAPI) for the tests, started by the test itself.

Debian 12 packages CrowdSec 1.4.6. Installing the package would register with CrowdSec's
central API and start services, so the package is only downloaded (`apt-get download`, cached
in CACHE so a second run costs nothing) and unpacked (`dpkg -x`, cached beside it). Each Lapi
runs `crowdsec -no-cs` (the LAPI alone: no agent, no acquisition, no hub) from a temporary
directory with a minimal configuration: a SQLite database, the API on a loopback port, no
central API (no online_client section; -no-capi besides), no Prometheus, no plugins. Its
`cscli` registers a machine and a bouncer; the process is stopped when the test ends, also on
failure and on SIGTERM (harness.in_private_netns() turns SIGTERM into SystemExit).

    import lapi
    pkg = lapi.package()          # None + lapi.why_not if the package cannot be fetched
    with lapi.Lapi(pkg, port=18080) as l:
        key = l.add_bouncer("pbxguard")
        l.add_machine("pbxguard-pbx1", "s3cret-pw")
        l.cscli("decisions", "add", "--ip", "192.0.2.77", "--duration", "1h")
"""
import atexit
import glob
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time

CACHE = os.environ.get("PBXGUARD_TEST_CACHE", "/var/cache/pbxguard-test")
why_not = None


def package():
    """The unpacked crowdsec package's root (holding usr/bin/crowdsec and usr/bin/cscli), or
    None with why_not set when it cannot be had."""
    global why_not
    os.makedirs(CACHE, exist_ok=True)
    debs = sorted(glob.glob(os.path.join(CACHE, "crowdsec_*.deb")))
    # A machine whose package lists were never fetched knows no crowdsec: fetch them once.
    for update in (False, True):
        if debs:
            break
        try:
            if update:
                subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"],
                               capture_output=True, timeout=600)
            r = subprocess.run(["apt-get", "download", "crowdsec"], cwd=CACHE,
                               capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            why_not = f"apt-get download crowdsec: {e}"
            return None
        debs = sorted(glob.glob(os.path.join(CACHE, "crowdsec_*.deb")))
        if r.returncode != 0 or not debs:
            why_not = ("the crowdsec package cannot be fetched (apt-get download crowdsec: "
                       f"{(r.stderr or r.stdout).strip().splitlines()[-1:]})")
            return None
    deb = debs[-1]
    root = deb[:-len(".deb")] + ".root"
    if not os.path.exists(os.path.join(root, "usr", "bin", "crowdsec")):
        # Unpacked beside, then renamed into place: another test run doing the same at the
        # same time finds either nothing or a whole tree.
        tmp = tempfile.mkdtemp(prefix=os.path.basename(root) + ".", dir=CACHE)
        r = subprocess.run(["dpkg", "-x", deb, tmp], capture_output=True, text=True)
        if r.returncode != 0:
            why_not = f"dpkg -x {deb}: {r.stderr.strip()}"
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        try:
            os.rename(tmp, root)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # the other run's tree is in place
        if not os.path.exists(os.path.join(root, "usr", "bin", "crowdsec")):
            why_not = f"{root}: unpacked, but usr/bin/crowdsec is missing"
            return None
    return root


_RUNNING = []


def _stop_all():
    for l in list(_RUNNING):
        l.stop()


atexit.register(_stop_all)

CONFIG = """\
common:
  daemonize: false
  log_media: stdout
  log_level: {log_level}
  working_dir: {dir}
config_paths:
  config_dir: {dir}/etc/
  data_dir: {dir}/data/
  simulation_path: {dir}/etc/simulation.yaml
  hub_dir: {dir}/hub/
  index_path: {dir}/hub/.index.json
  notification_dir: {dir}/etc/notifications/
  plugin_dir: {dir}/plugins/
crowdsec_service:
  acquisition_path: {dir}/etc/acquis.yaml
  parser_routines: 1
cscli:
  output: human
  color: false
db_config:
  log_level: warning
  type: sqlite
  db_path: {dir}/data/crowdsec.db
  use_wal: true
  flush:
    max_items: 5000000
    max_age: 7d
api:
  client:
    insecure_skip_verify: false
    credentials_path: {dir}/etc/local_api_credentials.yaml
  server:
    log_level: {log_level}
    listen_uri: {listen}
    profiles_path: {dir}/etc/profiles.yaml
    console_path: {dir}/etc/console.yaml
    trusted_ips:
      - 127.0.0.1
      - ::1
prometheus:
  enabled: false
"""

PROFILES = """\
name: default_ip_remediation
filters:
 - Alert.Remediation == true && Alert.GetScope() == "Ip"
decisions:
 - type: ban
   duration: 4h
on_success: break
"""


class Lapi:
    """One LAPI process with its own directory and database (kept across restart())."""

    def __init__(self, root, host="127.0.0.1", port=18080, log_level="warning", tls=None):
        """tls: (cert_file, key_file) to serve HTTPS; cscli then skips verification."""
        self.root = root
        self.host = host
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="pbxguard-lapi-")
        os.chmod(self.dir, 0o755)
        for d in ("etc", "data", "hub", "plugins", "etc/notifications"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.url = f"{'https' if tls else 'http'}://{listen}"
        self.config = os.path.join(self.dir, "etc", "config.yaml")
        text = CONFIG.format(dir=self.dir, listen=listen, log_level=log_level)
        if tls:
            text = text.replace("    insecure_skip_verify: false", "    insecure_skip_verify: true")
            text = text.replace("    trusted_ips:", f"    tls:\n      cert_file: {tls[0]}\n"
                                f"      key_file: {tls[1]}\n    trusted_ips:")
        with open(self.config, "w") as f:
            f.write(text)
        with open(os.path.join(self.dir, "etc", "profiles.yaml"), "w") as f:
            f.write(PROFILES)
        with open(os.path.join(self.dir, "etc", "simulation.yaml"), "w") as f:
            f.write("simulation: false\n")
        with open(os.path.join(self.dir, "etc", "acquis.yaml"), "w") as f:
            f.write("")
        self.log_path = os.path.join(self.dir, "crowdsec.log")
        self.p = None
        self.cscli_machine = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def bin(self, name):
        return os.path.join(self.root, "usr", "bin", name)

    def start(self, timeout=30.0):
        log = open(self.log_path, "a")
        self.p = subprocess.Popen([self.bin("crowdsec"), "-c", self.config, "-no-cs", "-no-capi"],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=self.dir)
        log.close()
        _RUNNING.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"crowdsec exited ({self.p.returncode}):\n{self.log()[-2000:]}")
            if self.answers():
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"LAPI did not answer within {timeout} s:\n{self.log()[-2000:]}")
        if self.cscli_machine is None:
            # cscli's own commands (decisions add/list/delete) log in as a machine.
            self.cscli_machine = "cscli-" + secrets.token_hex(4)
            creds = os.path.join(self.dir, "etc", "local_api_credentials.yaml")
            self.cscli("machines", "add", self.cscli_machine, "--password",
                       secrets.token_hex(16), "--force", "-f", creds)
            # cscli writes the URL as plain http: its own client must speak what LAPI serves.
            with open(creds) as f:
                text = f.read()
            with open(creds, "w") as f:
                f.write("".join(f"url: {self.url}/\n" if line.startswith("url:") else line
                                for line in text.splitlines(True)))

    def answers(self):
        import socket
        import ssl
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                if self.url.startswith("https"):
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    s = ctx.wrap_socket(s)
                s.sendall(b"GET /v1/decisions HTTP/1.0\r\n\r\n")
                return s.recv(12).startswith(b"HTTP/1.")
        except OSError:
            return False

    def stop(self, timeout=10.0):
        if self.p and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self in _RUNNING:
            _RUNNING.remove(self)

    def restart(self):
        self.stop()
        self.start()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cscli(self, *args, check=True, timeout=60):
        r = subprocess.run([self.bin("cscli"), "-c", self.config, *args], capture_output=True,
                           text=True, timeout=timeout, cwd=self.dir)
        if check and r.returncode != 0:
            raise RuntimeError(f"cscli {' '.join(args)}: {r.stderr.strip()}")
        return r

    def add_bouncer(self, name):
        """Registers a bouncer and returns its API key."""
        key = secrets.token_hex(16)
        self.cscli("bouncers", "add", name, "--key", key)
        return key

    def add_machine(self, name, password):
        self.cscli("machines", "add", name, "--password", password, "--force", "-f", "/dev/null")

    def decisions(self):
        """Every active decision, as cscli lists them: [(alert, decision)]."""
        r = self.cscli("decisions", "list", "-o", "json", "--limit", "0")
        alerts = json.loads(r.stdout or "null") or []
        return [(a, d) for a in alerts for d in (a.get("decisions") or [])]

    def alerts(self, *args):
        r = self.cscli("alerts", "list", "-o", "json", "--limit", "0", *args)
        return json.loads(r.stdout or "null") or []
