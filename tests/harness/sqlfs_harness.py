"""The sqlfs server under test, shared by tests/integration, python/tests and bench/: the real
binary on a free loopback port with its own data dir and log file, and the client-side helpers
all three use. Each of them puts this directory on sys.path and imports `sqlfs_harness` (a
unique module name, so that the suites can share one pytest session).

Environment: SQLFS_BINARY selects the binary (default build/sqlfs; scripts/integration-asan.sh
points it at the ASan build); SQLFS_TEST_SERVER_LOG keeps the per-request log lines (the
servers run with SQLFS_QUIET=1 otherwise) and prints where each server's log is.
SQLFS_TEST_DATABASE=postgres runs every server on PostgreSQL: each Server gets a database of its
own (kept across its restarts) on one cluster, the one SQLFS_TEST_PG_URL names or else a
throw-away one this process starts (scripts/pg-test-cluster.sh) and removes at exit. A test that
reads the SQLite files directly asks `engine()` first.

Several servers on one database (replicas): start a cluster of the test's own with `PgCluster`
(whatever SQLFS_TEST_DATABASE says), make a database on it, and give each Server that database
with `database_url=`; they share the AUTH_SECRET (a token minted by one works on all), each with
its own data dir, port and log.
"""
import atexit
import itertools
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("SQLFS_BINARY") or os.path.join(ROOT, "build", "sqlfs")
SECRET = "test-auth-secret-0123456789abcdef"
ADMIN_SECRET = "test-admin-secret-abcdef"
READY_SECONDS = 30  # an ASan build on a loaded machine starts slowly
PG_CLUSTER_SCRIPT = os.path.join(ROOT, "scripts", "pg-test-cluster.sh")


def engine():
    """The store engine the test servers run on: "sqlite" or "postgres"."""
    return "postgres" if os.environ.get("SQLFS_TEST_DATABASE") == "postgres" else "sqlite"


_pg = {"url": None, "databases": [], "seq": itertools.count()}


def _psql(url, sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                   check=True, stdout=subprocess.DEVNULL)


def _pg_cleanup(cluster_dir):
    for name in _pg["databases"]:
        try:
            _psql(_pg["url"], f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except (OSError, subprocess.CalledProcessError):
            pass
    if cluster_dir:
        subprocess.run(["bash", PG_CLUSTER_SCRIPT, "stop", cluster_dir], check=False)


def pg_cluster_url():
    """The URL of the test cluster (SQLFS_TEST_PG_URL, else one started for this process)."""
    if _pg["url"]:
        return _pg["url"]
    url = os.environ.get("SQLFS_TEST_PG_URL")
    cluster_dir = None
    if not url:
        import tempfile
        cluster_dir = tempfile.mkdtemp(prefix="sqlfs-pg.", dir="/tmp")
        url = subprocess.run(["bash", PG_CLUSTER_SCRIPT, "start", cluster_dir], check=True,
                             capture_output=True, text=True).stdout.strip()
    _pg["url"] = url
    atexit.register(_pg_cleanup, cluster_dir)
    return url


def pg_new_database():
    """A new empty database on the test cluster; its URL."""
    base = pg_cluster_url()
    name = f"sqlfs_it_{os.getpid()}_{next(_pg['seq'])}"
    _psql(base, f"CREATE DATABASE {name}")
    _pg["databases"].append(name)
    return base + ("&" if "?" in base else "?") + "dbname=" + name


class PgCluster:
    """A throw-away PostgreSQL cluster of the caller's own (scripts/pg-test-cluster.sh), for
    tests that restart or limit the database under servers: start() with server settings
    (`max_connections=12`), restart() (fast: every session ends), down() and up() (the server
    stopped, its files kept), stop() (removed; also at exit). As root the cluster belongs to
    the `postgres` user; `available()` says whether one can run here."""

    def __init__(self, *settings):
        self.settings = list(settings)
        self.dir = None
        self.url = None

    @staticmethod
    def available():
        """None when a cluster can be started here, else why not."""
        import glob
        import pwd
        if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
            return "PostgreSQL is not installed (apt-get install postgresql-15)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "no postgres user to own a cluster started by root"
        return None

    def _script(self, cmd, *extra):
        return subprocess.run(["bash", PG_CLUSTER_SCRIPT, cmd, self.dir, *extra], check=True,
                              capture_output=True, text=True).stdout.strip()

    def start(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="sqlfs-pg.", dir="/tmp")
        try:
            self.url = self._script("start", *self.settings)
        except subprocess.CalledProcessError as e:
            self.dir = None
            raise RuntimeError("cannot start a PostgreSQL cluster: " + e.stderr) from e
        atexit.register(self.stop)
        return self

    def restart(self):
        self._script("restart")

    def down(self):
        self._script("down")

    def up(self):
        self._script("up")

    def stop(self):
        if self.dir:
            subprocess.run(["bash", PG_CLUSTER_SCRIPT, "stop", self.dir], check=False,
                           capture_output=True)
            self.dir = None

    def sql(self, sql):
        """Runs sql as the cluster's superuser on its "postgres" database."""
        _psql(self.url, sql)

    def new_database(self, name=None, owner=None):
        """A new empty database on this cluster (owned by the role owner if given); its URL."""
        name = name or f"sqlfs_r_{os.getpid()}_{next(_pg['seq'])}"
        _psql(self.url, f"CREATE DATABASE {name}" + (f" OWNER {owner}" if owner else ""))
        return self.url + ("&" if "?" in self.url else "?") + "dbname=" + name

    def log_tail(self, n=40):
        try:
            with open(os.path.join(self.dir, "log"), errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except (OSError, TypeError):
            return "(no log)"


def pg_query(url, sql):
    """The rows of a query on the database at url, as lists of strings."""
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                          "-d", url, "-c", sql], check=True, capture_output=True,
                         text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    """The server exited or did not answer /healthz in time; the message ends with its log's
    tail."""


class Server:
    """One `sqlfs serve` process; start/stop/restart keep the same port, data dir and log.

    data_dir is relative to cwd when cwd is given. env is added to this process's environment
    with AUTH_SECRET=secret, ADMIN_SECRET=admin_secret (not set when None) and SQLFS_QUIET=1;
    env, args and log_path may be changed between stop() and start(). preexec_fn runs in the
    child before exec (e.g. to drop privileges). The server's stdout and stderr append to
    log_path (default: <data_dir>.log). database_url (a postgres:// URL) is the database the
    server uses whatever engine() says: servers given the same one are replicas of each other
    (each with its own data dir and port, the same secrets)."""

    def __init__(self, data_dir, env=None, args=None, preexec_fn=None, cwd=None, *,
                 secret=SECRET, admin_secret=ADMIN_SECRET, binary=None, log_path=None,
                 database_url=None):
        self.data_dir = str(data_dir)
        self.cwd = cwd
        self.preexec_fn = preexec_fn
        self.args = list(args or [])
        self.binary = binary or BINARY
        self.port = free_port()
        self.env = dict(os.environ, AUTH_SECRET=secret)
        if admin_secret is not None:
            self.env["ADMIN_SECRET"] = admin_secret
        if not os.environ.get("SQLFS_TEST_SERVER_LOG"):
            self.env["SQLFS_QUIET"] = "1"
        self.env.update(env or {})
        if database_url:
            self.env["SQLFS_DATABASE"] = database_url
        elif engine() == "postgres" and "SQLFS_DATABASE" not in self.env:
            self.env["SQLFS_DATABASE"] = pg_new_database()
        self.log_path = str(log_path or os.path.join(cwd or "", self.data_dir + ".log"))
        self.proc = None
        self.wedged = False  # a stop() had to kill the server

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self):
        """The PostgreSQL database this server uses, or None on SQLite."""
        db = self.env.get("SQLFS_DATABASE") or ""
        return db if db.startswith(("postgres://", "postgresql://")) else None

    @property
    def secret(self):
        """The AUTH_SECRET the server runs with (the one that mints tokens)."""
        return self.env.get("AUTH_SECRET", "")

    def start(self, timeout=READY_SECONDS):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                 "--data", self.data_dir] + self.args,
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=self.preexec_fn, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"sqlfs serve exited with {self.proc.returncode} before "
                                  "answering /healthz:\n" + self.log_tail())
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    if os.environ.get("SQLFS_TEST_SERVER_LOG"):
                        print(f"sqlfs server {self.url} log: {self.log_path}", file=sys.stderr)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"sqlfs serve did not answer /healthz within {timeout} s:\n"
                          + self.log_tail())

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig and waits; a server still running after timeout seconds is wedged: it and
        the processes it forked are killed, by pid. Returns the exit status (None when it was
        not running)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                      text=True).stdout.split()
                for k in kids:
                    try:
                        os.kill(int(k), signal.SIGKILL)
                    except OSError:
                        pass
                self.proc.kill()
                self.proc.wait()
                self.wedged = True
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def restart(self):
        self.stop()
        return self.start()

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def token(self, sub="tester", tenant=None):
        """A new token for sub (and tenant) from POST /v1/auth/bootstrap. Successful mints are
        rate-limited per client address (AUTH_SUCCESS_RATE_LIMIT_MAX a minute, default 600)."""
        body = {"sub": sub}
        if tenant:
            body["tenant"] = tenant
        r = httpx.post(self.url + "/v1/auth/bootstrap", json=body,
                       headers={"X-Auth-Secret": self.secret})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def client(self, sub="tester", tenant=None, timeout=60):
        """An httpx client of this server with a new token of sub."""
        return httpx.Client(base_url=self.url, timeout=timeout,
                            headers={"Authorization": "Bearer " + self.token(sub, tenant)})

    def status(self):
        """GET /v1/status: the operator's view (exec counters and limits, store memory, token
        settings), behind the admin secret."""
        r = httpx.get(self.url + "/v1/status",
                      headers={"X-Admin-Secret": self.env.get("ADMIN_SECRET", "")})
        assert r.status_code == 200, r.text
        return r.json()

    def rss_kib(self):
        return proc_status_kib(self.proc.pid, "VmRSS")

    def cpu_seconds(self):
        """CPU time of the server and of its reaped children (jails, bash), user + system."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid, key):
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class PeakSampler:
    """The largest value measure() returned while a with-block ran (.peak, 0 before the first
    sample), sampled every `interval` seconds in a thread. A sample that fails because what it
    reads changed under it (a file removed, a database busy) is skipped."""

    def __init__(self, measure, interval=0.005):
        self.measure, self.interval, self.peak = measure, interval, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.measure())
            except (OSError, sqlite3.Error):
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def raw_http(port, request):
    """Sends request bytes as they are (no client normalisation) and returns the whole reply;
    the request should say `Connection: close`."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk


def read_all(sock, timeout=15):
    """Everything the peer sends until it closes the connection (or resets it, or is silent
    for `timeout` seconds)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except OSError:
        return data
