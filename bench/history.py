"""History benchmark: fork of a 10,000-file sandbox (latency, and what the store grows by: content
bytes must not grow at all), restore of 10,000 files, and the commit list of a sandbox with
1,000 commits. One real server (SQLite, or PostgreSQL with --engine postgres on a throw-away
cluster); figures printed and written to bench/results/history[-postgres].json.

    make bench-history            # SQLite
    make bench-history ENGINE=postgres
"""
import argparse
import glob
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Server, httpbench, save, summarize  # noqa: E402

import sqlfs_harness  # noqa: E402

FILES = 10000
FORKS = 20
RESTORES = 10
COMMITS = 1000


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return (time.perf_counter() - t) * 1000.0, r


def store_sizes(server, cluster):
    """(bytes of the whole store, bytes of content: chunks and inline contents)."""
    if cluster:
        q = lambda sql: int(sqlfs_harness.pg_query(server.database_url, sql)[0][0])  # noqa: E731
        total = q("SELECT pg_database_size(current_database())")
        content = q("SELECT coalesce(sum(size), 0) FROM chunks") + \
            q("SELECT coalesce(sum(length(data)), 0) FROM contents")
        return total, content
    data = server.data_dir
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(data, "sqlfs.db*")))
    db = sqlite3.connect(f"file:{data}/sqlfs.db?mode=ro", uri=True)
    db.execute(f"ATTACH DATABASE 'file:{data}/sqlfs.db.chunks?mode=ro' AS blobs")
    content = db.execute("SELECT coalesce(sum(size), 0) FROM blobs.chunks").fetchone()[0] + \
        db.execute("SELECT coalesce(sum(length(data)), 0) FROM contents").fetchone()[0]
    db.close()
    return total, content


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    args = ap.parse_args()
    cluster = None
    url = None
    if args.engine == "postgres":
        cluster = sqlfs_harness.PgCluster().start()
        url = cluster.new_database("bench_history")
    server = Server({"HISTORY_MAX_COMMITS": str(COMMITS + 10)}, database_url=url).start()
    out = {"engine": args.engine, "files": FILES}
    try:
        with server.client() as c:
            sid = c.post("/v1/sandboxes", json={}).json()["id"]
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync", timeout=600, json={
                "script": f"mkdir -p w && cd w && for i in $(seq {FILES // 100}); do mkdir d$i; "
                          f"for j in $(seq 100); do echo file $i $j > d$i/f$j; done; done"})
            assert r.status_code == 200 and r.json()["exitCode"] == 0, r.text
            full = c.get(f"/v1/sandboxes/{sid}").json()["version"]

            # fork: latency, and the store's growth per fork
            before_total, before_content = store_sizes(server, cluster)
            forks, ms = [], []
            for _ in range(FORKS):
                t, r = timed(lambda: c.post(f"/v1/sandboxes/{sid}/fork", json={}))
                assert r.status_code == 201, r.text
                forks.append(r.json()["id"])
                ms.append(t)
            after_total, after_content = store_sizes(server, cluster)
            out["fork"] = summarize(ms)
            out["fork"]["store_growth_per_fork_bytes"] = (after_total - before_total) // FORKS
            out["fork"]["content_growth_bytes"] = after_content - before_content
            got = c.get(f"/v1/sandboxes/{forks[-1]}/files/home/user/w/d7/f42").content
            assert got == b"file 7 42\n", got
            for f in forks:
                c.delete(f"/v1/sandboxes/{f}")

            # restore: 10,000 files back (puts), then away again (one subtree delete)
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "cd && rm -r w"})
            assert r.status_code == 200 and r.json()["exitCode"] == 0, r.text
            empty = c.get(f"/v1/sandboxes/{sid}").json()["version"]
            entries = lambda: len(c.get(f"/v1/sandboxes/{sid}/tree").json())  # noqa: E731
            small = entries()
            assert small < 10, small
            back, away = [], []
            for _ in range(RESTORES):
                t, r = timed(lambda: c.post(f"/v1/sandboxes/{sid}/restore",
                                            json={"version": full}))
                assert r.status_code == 200, r.text
                back.append(t)
                t, r = timed(lambda: c.post(f"/v1/sandboxes/{sid}/restore",
                                            json={"version": empty}))
                assert r.status_code == 200, r.text
                away.append(t)
                assert entries() == small
            r = c.post(f"/v1/sandboxes/{sid}/restore", json={"version": full})
            assert entries() == small + 1 + FILES // 100 + FILES  # w, its dirs, their files
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "cat ~/w/d7/f42"})
            assert r.json()["stdout"] == "file 7 42\n", r.text
            out["restore_10k_files"] = summarize(back)
            out["restore_10k_away"] = summarize(away)

            # the commit list of a sandbox with 1,000 commits
            sid2 = c.post("/v1/sandboxes", json={}).json()["id"]
            for i in range(COMMITS):
                r = c.put(f"/v1/sandboxes/{sid2}/files/home/user/n.txt", content=str(i).encode())
                assert r.status_code == 204, r.text
            token = server.token()
            res = httpbench(server, token, f"/v1/sandboxes/{sid2}/commits", n=300, expect=200)
            out["commits_list_1000"] = {"p50_ms": res["p50_ms"], "p99_ms": res["p99_ms"],
                                        "limit": 100}
            res = httpbench(server, token, f"/v1/sandboxes/{sid2}/commits/{COMMITS // 2}", n=300,
                            expect=200)
            out["commit_get"] = {"p50_ms": res["p50_ms"], "p99_ms": res["p99_ms"]}
    finally:
        server.cleanup()
        if cluster:
            cluster.stop()
    name = "history" if args.engine == "sqlite" else "history-postgres"
    save(name, out)
    f = out["fork"]
    print(f"history ({args.engine}): fork of {FILES} files p50 {f['p50_ms']:.1f} ms "
          f"(p99 {f['p99_ms']:.1f}); store +{f['store_growth_per_fork_bytes'] / 1024:.0f} KiB per "
          f"fork, content +{f['content_growth_bytes']} bytes")
    print(f"  restore of {FILES} files p50 {out['restore_10k_files']['p50_ms']:.1f} ms, "
          f"back to empty p50 {out['restore_10k_away']['p50_ms']:.1f} ms")
    print(f"  commits list at {COMMITS} commits p50 {out['commits_list_1000']['p50_ms']:.2f} ms, "
          f"one commit p50 {out['commit_get']['p50_ms']:.2f} ms")


if __name__ == "__main__":
    main()
