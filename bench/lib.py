"""Shared helpers of the benchmark scripts: a server on a temp dir, tokens, RSS sampling,
percentiles, the httpbench load generator."""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from conftest import PeakSampler  # noqa: E402
BINARY = os.path.join(ROOT, "build", "sqlfs")
HTTPBENCH = os.path.join(ROOT, "build", "bench", "httpbench")
RESULTS = os.path.join(ROOT, "bench", "results")
SECRET = "bench-secret-0123456789abcdef0123456789"
ADMIN_SECRET = "bench-admin-secret-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, env=None, data_dir=None):
        self.tmp = tempfile.mkdtemp(prefix="sqlfs-bench-")
        self.data = data_dir or os.path.join(self.tmp, "data")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, AUTH_SECRET=SECRET, ADMIN_SECRET=ADMIN_SECRET, SQLFS_QUIET="1",
                        AUTH_RATE_LIMIT_MAX="1000000")
        self.env.update(env or {})
        self.proc = None
        self.wedged = False

    def start(self):
        self.proc = subprocess.Popen([BINARY, "serve", "--listen", f"127.0.0.1:{self.port}",
                                      "--data", self.data], env=self.env,
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.tmp, "log"), "ab"))
        for _ in range(400):
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.025)
        raise RuntimeError("server did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                # a wedged server (see docs/BENCHMARKS.md, "Problems found"): kill it and the
                # children it forked, by pid
                kids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                      text=True).stdout.split()
                for k in kids:
                    try:
                        os.kill(int(k), 9)
                    except OSError:
                        pass
                self.proc.kill()
                self.proc.wait(15)
                self.wedged = True
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def status(self):
        """GET /v1/status: the exec counters and the store's memory (admin secret)."""
        r = httpx.get(self.url + "/v1/status", headers={"X-Admin-Secret": ADMIN_SECRET})
        r.raise_for_status()
        return r.json()

    def token(self, sub="bench"):
        r = httpx.post(self.url + "/v1/auth/bootstrap", json={"sub": sub},
                       headers={"X-Auth-Secret": SECRET})
        r.raise_for_status()
        return r.json()["token"]

    def client(self, sub="bench", timeout=120):
        """An httpx client for this server with a token of `sub`."""
        return httpx.Client(base_url=self.url, timeout=timeout,
                            headers={"Authorization": "Bearer " + self.token(sub)})

    def cpu_seconds(self):
        """CPU time of the server and of its reaped children (jails, bash), user + system."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class RssSampler(PeakSampler):
    """Samples a server's RSS every 10 ms in a thread: .peak (KiB), .peak_mib after the block."""

    def __init__(self, server):
        super().__init__(server.rss_kib, 0.01)
        self.server = server

    @property
    def peak_mib(self):
        return self.peak / 1024.0


def httpbench(server, token, path, method="GET", body=None, n=100, concurrency=1, ids=None,
              expect=None, content_type=None, timeout=300, pause_ms=0):
    cmd = [HTTPBENCH, "--url", server.url, "--token", token, "--method", method, "--path", path,
           "--n", str(n), "--concurrency", str(concurrency), "--pause-ms", str(pause_ms)]
    if body is not None:
        cmd += ["--body", body, "--content-type", content_type or "application/json"]
    if expect:
        cmd += ["--expect", str(expect)]
    idfile = None
    if ids:
        idfile = tempfile.NamedTemporaryFile("w", delete=False, suffix=".ids")
        idfile.write("\n".join(ids) + "\n")
        idfile.close()
        cmd += ["--ids", idfile.name]
    try:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"n": n, "errors": n, "hung": True, "p50_ms": None, "p99_ms": None,
                    "rps": 0.0, "statuses": {}}
    finally:
        if idfile:
            os.unlink(idfile.name)
    res = json.loads(out.stdout)
    return res


def percentile(values, p):
    v = sorted(values)
    if not v:
        return 0.0
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]


def summarize(values):
    return {"n": len(values), "p50_ms": round(percentile(values, 0.5), 3),
            "p99_ms": round(percentile(values, 0.99), 3),
            "mean_ms": round(statistics.mean(values), 3) if values else 0}


def save(name, data):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, name + ".json"), "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)


def curl_transfer(url, token, method, path, src=None):
    """Uploads src (a file path) or downloads to /dev/null with curl; returns (seconds, bytes)."""
    cmd = ["curl", "-s", "-S", "-f", "-o", "/dev/null", "-H", "Authorization: Bearer " + token,
           "-H", "Expect:", "-w", "%{time_total} %{size_upload} %{size_download}"]
    if src:
        cmd += ["-X", method, "-T", src]
    cmd.append(url + path)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    t, up, down = float(out[0]), float(out[1]), float(out[2])
    return t, (up if src else down)
