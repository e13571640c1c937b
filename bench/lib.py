"""Shared helpers of the benchmark scripts: a server on a temp dir, tokens, RSS sampling,
percentiles, the httpbench load generator."""
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
import sqlfs_harness  # noqa: E402
from sqlfs_harness import ADMIN_SECRET, SECRET, PeakSampler  # noqa: E402,F401

BINARY = sqlfs_harness.BINARY  # SQLFS_BINARY measures another build
HTTPBENCH = os.path.join(ROOT, "build", "bench", "httpbench")
RESULTS = os.path.join(ROOT, "bench", "results")
CACHE = os.path.join(ROOT, "build", "bench", "cache")  # inputs built once and kept


class Server(sqlfs_harness.Server):
    """A server on a fresh temporary directory (its data dir unless data_dir is given, and its
    log), removed by cleanup(), with the failed-auth limit out of the way. database_url: a
    PostgreSQL database (servers given the same one are replicas)."""

    def __init__(self, env=None, data_dir=None, binary=None, database_url=None):
        self.tmp = tempfile.mkdtemp(prefix="sqlfs-bench-")
        super().__init__(data_dir or os.path.join(self.tmp, "data"),
                         {"AUTH_RATE_LIMIT_MAX": "1000000", **(env or {})},
                         binary=binary or BINARY, log_path=os.path.join(self.tmp, "log"),
                         database_url=database_url)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def token(self, sub="bench", tenant=None):
        return super().token(sub, tenant)

    def client(self, sub="bench", tenant=None, timeout=120):
        return super().client(sub, tenant, timeout)


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


def tree_tarball(target_mb):
    """A tar.gz of up to target_mb of regular files from /usr/share and /usr/lib."""
    out = os.path.join(CACHE, f"tree-{target_mb}mb.tar.gz")
    if os.path.exists(out):
        return out
    os.makedirs(CACHE, exist_ok=True)
    files, total = [], 0
    for top in ("/usr/share", "/usr/lib"):
        for root, dirs, names in os.walk(top):
            dirs.sort()
            for fn in sorted(names):
                p = os.path.join(root, fn)
                try:
                    if not os.path.isfile(p) or os.path.islink(p) or not os.access(p, os.R_OK):
                        continue
                    sz = os.path.getsize(p)
                except OSError:
                    continue
                if total + sz > target_mb * 1_000_000:
                    continue
                files.append(p[1:])
                total += sz
            if total >= target_mb * 1_000_000 * 0.98:
                break
        if total >= target_mb * 1_000_000 * 0.98:
            break
    lst = out + ".list"
    with open(lst, "w") as f:
        f.write("\n".join(files) + "\n")
    subprocess.run(f"tar -C / -cf - -T {lst} | gzip -1 > {out}.tmp", shell=True, check=True)
    os.rename(out + ".tmp", out)
    os.unlink(lst)
    return out


def tarball_files(path):
    """The regular files of a tar.gz and their bytes: (count, bytes)."""
    n = raw = 0
    with gzip.open(path, "rb") as g, tarfile.open(fileobj=g, mode="r|") as t:
        for m in t:
            if m.isfile():
                n += 1
                raw += m.size
    return n, raw
