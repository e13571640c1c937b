"""The two store engines side by side, through the whole server: SQLite (the data directory)
and PostgreSQL (a throw-away cluster from scripts/pg-test-cluster.sh, or SQLFS_TEST_PG_URL's).

For each engine: sandbox create latency (POST /v1/sandboxes one at a time, p50 and p99), exec
latency (exec-sync of `true`, and of a one-file write, p50), then one large file PUT and GET
through curl (MB/s) with the server's peak RSS during each; then many files at once: the
benchmark tree (bench/lib.py tree_tarball: --tree-mb of files from /usr/share and /usr/lib as
a tar.gz, the suite's ingest figure) ingested into a new sandbox (MB/s of file bytes, peak RSS),
and 100,000 empty files in one ingest-files request (seconds; the densest body
tests/integration/test_http_hostile.py sends). The PostgreSQL server's own processes are not in
the RSS figures: they are the database's.

Run: make bench-tools, then python3 bench/store_engines.py [--mib 256] [--creates 300]
[--tree-mb 500] [--files 100000]
Writes bench/results/store_engines.json and prints a table.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (RssSampler, Server, curl_transfer, httpbench, save, tarball_files,  # noqa: E402
                 tree_tarball)
import sqlfs_harness  # noqa: E402


def big_file(mib):
    f = tempfile.NamedTemporaryFile(prefix="sqlfs-bench-", delete=False)
    with f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    return f.name


def ingest_tree(s, c, tree):
    """Ingests the tree's tar.gz into a new sandbox: seconds and the server's peak RSS (MiB)."""
    sid = c.post("/v1/sandboxes", json={}).json()["id"]
    with open(tree["path"], "rb") as f, RssSampler(s) as rss:
        t0 = time.perf_counter()
        r = c.post(f"/v1/sandboxes/{sid}/ingest", params={"basePath": "/home/user/tree"},
                   content=f, headers={"Content-Type": "application/gzip"})
        t = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    assert r.json()["bytes"] == tree["bytes"], r.text
    c.delete(f"/v1/sandboxes/{sid}")
    return t, rss.peak_mib


def ingest_empty_files(c, n):
    """n empty files in one ingest-files request into a new sandbox: seconds."""
    sid = c.post("/v1/sandboxes", json={}).json()["id"]
    body = json.dumps({"basePath": "/home/user/i", "files": {str(i): "" for i in range(n)}},
                      separators=(",", ":")).encode()
    t0 = time.perf_counter()
    r = c.post(f"/v1/sandboxes/{sid}/ingest-files", content=body,
               headers={"Content-Type": "application/json"})
    t = time.perf_counter() - t0
    assert r.status_code == 200 and r.json()["fileCount"] == n, r.text
    c.delete(f"/v1/sandboxes/{sid}")
    return t


def measure(engine, mib, creates, src, tree, files):
    env = {}
    if engine == "postgres":
        env["SQLFS_DATABASE"] = sqlfs_harness.pg_new_database()
    s = Server(env)
    s.start()
    try:
        tok = s.token()
        res = httpbench(s, tok, "/v1/sandboxes", method="POST", body="{}", n=creates,
                        expect=201)
        with s.client() as c:
            sid = c.post("/v1/sandboxes", json={}).json()["id"]
            assert c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "true"}
                          ).status_code == 200
        ex = httpbench(s, tok, f"/v1/sandboxes/{sid}/exec-sync", method="POST",
                       body='{"script":"true"}', n=200, expect=200)
        wr = httpbench(s, tok, f"/v1/sandboxes/{sid}/exec-sync", method="POST",
                       body='{"script":"echo x > f"}', n=200, expect=200)
        path = f"/v1/sandboxes/{sid}/files/home/user/big.bin"
        with RssSampler(s) as put_rss:
            t_put, up = curl_transfer(s.url, tok, "PUT", path, src)
        with RssSampler(s) as get_rss:
            t_get, down = curl_transfer(s.url, tok, "GET", path)
        assert up == down == mib << 20, (up, down)
        with s.client(timeout=1200) as c:
            t_tree, tree_rss = ingest_tree(s, c, tree)
            t_files = ingest_empty_files(c, files)
        return {
            "ingest_tree_s": round(t_tree, 2), "ingest_tree_mb_s": round(tree["bytes"] / 1e6 / t_tree),
            "ingest_tree_peak_rss_mib": round(tree_rss),
            "ingest_files_s": round(t_files, 2),
            "create_p50_ms": res["p50_ms"], "create_p99_ms": res["p99_ms"],
            "create_errors": res.get("errors", 0),
            "exec_true_p50_ms": ex["p50_ms"], "exec_write_p50_ms": wr["p50_ms"],
            "put_mb_s": round(up / 1e6 / t_put), "put_peak_rss_mib": round(put_rss.peak_mib),
            "get_mb_s": round(down / 1e6 / t_get), "get_peak_rss_mib": round(get_rss.peak_mib),
        }
    finally:
        s.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--creates", type=int, default=300)
    ap.add_argument("--tree-mb", type=int, default=500)
    ap.add_argument("--files", type=int, default=100000)
    a = ap.parse_args()
    path = tree_tarball(a.tree_mb)
    nfiles, raw = tarball_files(path)
    tree = {"path": path, "files": nfiles, "bytes": raw}
    src = big_file(a.mib)
    try:
        out = {e: measure(e, a.mib, a.creates, src, tree, a.files) for e in ("sqlite", "postgres")}
    finally:
        os.unlink(src)
    out["params"] = {"mib": a.mib, "creates": a.creates, "tree_files": nfiles,
                     "tree_bytes": raw, "files": a.files}
    save("store_engines", out)
    rows = [("create p50 (ms)", "create_p50_ms"), ("create p99 (ms)", "create_p99_ms"),
            ("exec true p50 (ms)", "exec_true_p50_ms"),
            ("exec one-file write p50", "exec_write_p50_ms"),
            (f"PUT {a.mib} MiB (MB/s)", "put_mb_s"), ("  peak RSS (MiB)", "put_peak_rss_mib"),
            (f"GET {a.mib} MiB (MB/s)", "get_mb_s"), ("  peak RSS (MiB)", "get_peak_rss_mib"),
            (f"ingest tree {raw // 1000000} MB (MB/s)", "ingest_tree_mb_s"),
            ("  seconds", "ingest_tree_s"), ("  peak RSS (MiB)", "ingest_tree_peak_rss_mib"),
            (f"ingest-files {a.files} empty (s)", "ingest_files_s")]
    print(f"{'':32}{'sqlite':>10}{'postgres':>10}")
    for label, key in rows:
        print(f"{label:32}{out['sqlite'][key]:>10}{out['postgres'][key]:>10}")


if __name__ == "__main__":
    main()
