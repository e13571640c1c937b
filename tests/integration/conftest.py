"""Fixtures: the real build/sqlfs binary on a free loopback port with a temporary data dir."""
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time

import httpx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("SQLFS_BINARY") or os.path.join(ROOT, "build", "sqlfs")
SECRET = "test-auth-secret-0123456789abcdef"
ADMIN_SECRET = "test-admin-secret-abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One sqlfs process; start/stop/restart keep the same data dir."""

    def __init__(self, data_dir, env=None, args=None, preexec_fn=None, cwd=None):
        self.data_dir = data_dir  # relative to cwd when cwd is given
        self.cwd = cwd
        self.preexec_fn = preexec_fn  # runs in the child before exec (e.g. set rlimits)
        self.args = list(args or [])
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update({"AUTH_SECRET": SECRET, "ADMIN_SECRET": ADMIN_SECRET,
                         "SQLFS_QUIET": "1"})
        self.env.update(env or {})
        self.proc = None
        self.log_path = os.path.join(cwd or "", data_dir + ".log")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", f"127.0.0.1:{self.port}", "--data", self.data_dir]
            + self.args,
            env=self.env, stdout=self.log, stderr=self.log, preexec_fn=self.preexec_fn,
            cwd=self.cwd)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + open(self.log_path).read()[-2000:])
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become healthy")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        self.log.close()
        return rc

    def restart(self):
        self.stop()
        return self.start()

    def token(self, sub="tester", tenant=None):
        body = {"sub": sub}
        if tenant:
            body["tenant"] = tenant
        r = httpx.post(self.url + "/v1/auth/bootstrap", json=body,
                       headers={"X-Auth-Secret": SECRET})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def client(self, sub="tester", tenant=None, timeout=60):
        # each client mints a token: AUTH_SUCCESS_RATE_LIMIT_MAX per minute per IP (default 600)
        return httpx.Client(base_url=self.url, timeout=timeout,
                            headers={"Authorization": "Bearer " + self.token(sub, tenant)})


def make_server(tmp_root, env=None, args=None, preexec_fn=None):
    data = tempfile.mkdtemp(prefix="sqlfs-test-", dir=tmp_root)
    return Server(data, env, args, preexec_fn)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    if not os.path.exists(BINARY):
        pytest.fail(f"{BINARY} is missing: run `make` first")
    s = make_server(str(tmp_path_factory.mktemp("srv")),
                    {"AUTH_RATE_LIMIT_MAX": "100000"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def api(server):
    with server.client() as c:
        yield c


@pytest.fixture
def sandbox(api):
    r = api.post("/v1/sandboxes", json={"name": "t"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    yield sid
    api.delete(f"/v1/sandboxes/{sid}")


@pytest.fixture
def fresh_server(tmp_path):
    """A private server for tests that restart or configure it."""
    servers = []

    def factory(env=None, args=None, preexec_fn=None):
        s = make_server(str(tmp_path), env, args, preexec_fn)
        servers.append(s)
        return s.start()

    yield factory
    for s in servers:
        if s.proc:
            s.stop()


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


def status(server):
    """GET /v1/status: the operator's view (exec counters and limits, store memory, token
    settings), behind the admin secret."""
    r = httpx.get(server.url + "/v1/status", headers={"X-Admin-Secret": ADMIN_SECRET})
    assert r.status_code == 200, r.text
    return r.json()


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


def assert_error(resp, status, code=None):
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["retryable"], bool)
    if code:
        assert body["code"] == code, body
    return body
