"""Disk full: the data dir on a 64 MiB tmpfs, filled through the API.

Writes past the end of the disk must fail with a clear error status (never hang, never crash
the server), everything committed before stays intact, and writes succeed again once space is
freed through the API. Needs root (mount); skipped otherwise.
"""
import os
import sqlite3
import subprocess

import httpx
import pytest

from conftest import Server, sqlite_only

CLEAR_ERRORS = {413, 500, 503, 507}


@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    yield str(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@sqlite_only("fills the data directory's file system, which holds the SQLite database; a "
             "PostgreSQL database lives on its own server's disk")
def test_disk_full_fails_cleanly_and_recovers(tmpfs):
    data = os.path.join(tmpfs, "data")
    # without history: what the API deletes is freed (with history, the deleted content stays
    # in the versions kept, which is test_quota's and test_history's)
    srv = Server(data, {"AUTH_RATE_LIMIT_MAX": "100000", "HISTORY_MAX_COMMITS": "1"})
    srv.log_path = os.path.join(os.path.dirname(tmpfs), "diskfull.log")  # log off the tmpfs
    srv.start()
    # operator-side slack: freed by "the operator" if the API alone cannot make room
    ballast = os.path.join(tmpfs, "ballast")
    with open(ballast, "wb") as f:
        f.write(os.urandom(16 << 20))
    ballast2 = os.path.join(tmpfs, "ballast2")
    with open(ballast2, "wb") as f:
        f.write(os.urandom(10 << 20))
    try:
        with srv.client(timeout=60) as c:
            sid = c.post("/v1/sandboxes", json={"name": "full"}).json()["id"]
            base = f"/v1/sandboxes/{sid}"
            kept = {f"/home/user/keep/{i}.txt": f"keep {i} " * (1 + i * 1000) for i in range(5)}
            r = c.post(f"{base}/writeFiles", json={"files": kept})
            assert r.status_code == 204, r.text

            # fill: 4 MiB incompressible files until the disk refuses
            big, failures = [], []
            for i in range(40):
                path = f"/home/user/big/{i}.bin"
                r = c.put(f"{base}/files{path}", content=os.urandom(4 << 20))
                assert srv.proc.poll() is None, "server died on a full disk"
                if r.status_code == 204:
                    big.append(path)
                    continue
                failures.append(r)
                print(f"\ndiskfull: PUT #{i} -> {r.status_code} {r.json().get('code')}")
                if len(failures) >= 3:
                    break
            assert failures, "the 64 MiB disk never filled"
            for r in failures:
                assert r.status_code in CLEAR_ERRORS, f"{r.status_code} {r.text}"
                body = r.json()
                assert body["error"] and isinstance(body["retryable"], bool), body
            # other kinds of write fail cleanly too while the disk is full
            r = c.post(f"{base}/writeFiles",
                       json={"files": {f"/home/user/w/{k}": os.urandom(1 << 20).hex()
                                       for k in range(8)}})
            assert r.status_code in CLEAR_ERRORS | {204}, r.text
            assert srv.proc.poll() is None

            # nothing committed before is lost or corrupted
            for p, v in kept.items():
                r = c.get(f"{base}/files{p}")
                assert r.status_code == 200 and r.text == v, p
            for p in big:
                r = c.get(f"{base}/files{p}")
                assert r.status_code == 200 and len(r.content) == 4 << 20, p
            assert c.get("/healthz").status_code == 200

            # free space through the API; service resumes. On a disk with no byte left SQLite
            # cannot even journal a delete (507): then the operator frees some space first.
            r = c.delete(f"{base}/files{big[0]}")
            assert r.status_code in {204} | CLEAR_ERRORS, r.text
            if r.status_code != 204:
                print(f"\ndiskfull: DELETE on a full disk -> {r.status_code} {r.json()['code']}")
                os.unlink(ballast)
                r = c.delete(f"{base}/files{big[0]}")
                assert r.status_code == 204, r.text
            for p in big[1:]:
                assert c.delete(f"{base}/files{p}").status_code == 204
            r = c.put(f"{base}/files/home/user/after.txt", content=b"back")
            assert r.status_code == 204, r.text
            assert c.get(f"{base}/files/home/user/after.txt").text == "back"
            r = c.put(f"{base}/files/home/user/after.bin", content=os.urandom(4 << 20))
            assert r.status_code == 204, r.text
            st = os.statvfs(tmpfs)
            print(f"diskfull: free after deletes {st.f_bavail * st.f_frsize >> 20} MiB; "
                  f"{[(n, os.path.getsize(os.path.join(data, n)) >> 20) for n in os.listdir(data) if n.startswith('sqlfs')]}")
            script = {"script": "cat /home/user/after.txt; echo x > n"}
            r = c.post(f"{base}/exec-sync", json=script)
            # Deleted content becomes free pages inside the database (not free disk), so a
            # checkout may still find no room: that must be a clean 507, and free disk cures it.
            if r.status_code != 200:
                assert r.status_code == 507 and r.json()["code"] == "ENOSPC", r.text
                print(f"diskfull: exec after API deletes -> 507 ENOSPC; freeing disk")
                os.unlink(ballast2)
                r = c.post(f"{base}/exec-sync", json=script)
            assert r.status_code == 200 and r.json()["stdout"] == "back", r.text
            for p, v in kept.items():
                assert c.get(f"{base}/files{p}").text == v
    finally:
        srv.stop()
    # opening a WAL database needs room for its -shm file: check with some disk free
    for b in (ballast, ballast2):
        if os.path.exists(b):
            os.unlink(b)
    db = sqlite3.connect(f"file:{data}/sqlfs.db?mode=ro", uri=True)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    db = sqlite3.connect(f"file:{data}/sqlfs.db.chunks?mode=ro", uri=True)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
