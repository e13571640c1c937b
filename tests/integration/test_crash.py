"""Crash safety: kill -9 the server during concurrent writes, restart, check nothing is lost.

Each cycle runs writers in threads (write-mode execs, file PUTs, multi-file writeFiles and
ingest-files) against the live server, kills it with SIGKILL at a random moment, checks the
database files while it is down, restarts it on the same data dir and verifies:
  - PRAGMA integrity_check is ok on sqlfs.db and sqlfs.db.chunks (SQLite; PostgreSQL rolls back
    the killed server's transactions itself);
  - every acknowledged (2xx) write reads back with its content;
  - every multi-file write that was in flight is all or nothing;
  - the sandbox still execs, no jail process of the killed server survives, <data>/uppers is empty.
"""
import base64
import os
import random
import signal
import sqlite3
import threading
import time
import uuid

import httpx

from conftest import engine

CYCLES = 5
MARK = "crashmark" + uuid.uuid4().hex[:12]


def integrity(path):
    """PRAGMA integrity_check of a SQLite database file ("ok" on PostgreSQL: not a file)."""
    if engine() != "sqlite":
        return "ok"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def jail_procs():
    """Host pids whose command line carries this test's marker (the jailed bash -c script)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if MARK.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


class Writers:
    """Writer threads; acked: path -> content; groups: list of (acked, {path: content})."""

    def __init__(self, srv, token, sid_exec, sid_files, cycle):
        self.srv, self.token, self.cycle = srv, token, cycle
        self.sid_exec, self.sid_files = sid_exec, sid_files
        self.acked = {}
        self.groups = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def client(self):
        return httpx.Client(base_url=self.srv.url, timeout=20,
                            headers={"Authorization": "Bearer " + self.token})

    def run_exec(self):
        with self.client() as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                path = f"/home/user/exec/c{self.cycle}-{n}-{uuid.uuid4().hex[:6]}.txt"
                val = f"{MARK}-{self.cycle}-{n}-{random.random()}"
                files = {path: val, path + ".b": val + "b"}
                script = (f"mkdir -p /home/user/exec; printf %s '{val}' > {path}; sleep 0.1; "
                          f"printf %s '{val}b' > {path}.b; sleep 0.2  # {MARK}")
                with self.lock:
                    g = [False, files, self.sid_exec]
                    self.groups.append(g)
                try:
                    r = c.post(f"/v1/sandboxes/{self.sid_exec}/exec-sync", json={"script": script})
                except httpx.HTTPError:
                    return
                if r.status_code == 200 and r.json()["exitCode"] == 0:
                    with self.lock:
                        g[0] = True

    def run_put(self):
        with self.client() as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                path = f"/home/user/put/c{self.cycle}-{n}.bin"
                val = os.urandom(random.choice([10, 5000, 200000])).hex()
                with self.lock:
                    g = [False, {path: val}, self.sid_files]
                    self.groups.append(g)
                try:
                    r = c.put(f"/v1/sandboxes/{self.sid_files}/files{path}", content=val.encode())
                except httpx.HTTPError:
                    return
                if r.status_code == 204:
                    with self.lock:
                        g[0] = True

    def run_write_files(self):
        with self.client() as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                files = {f"/home/user/wf/c{self.cycle}-{n}/{k}": f"{k}-{random.random()}" * 200
                         for k in "abcd"}
                with self.lock:
                    g = [False, files, self.sid_files]
                    self.groups.append(g)
                try:
                    r = c.post(f"/v1/sandboxes/{self.sid_files}/writeFiles", json={"files": files})
                except httpx.HTTPError:
                    return
                if r.status_code == 204:
                    with self.lock:
                        g[0] = True

    def run_ingest(self):
        with self.client() as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                base = f"/home/user/ing/c{self.cycle}-{n}"
                raw = {k: os.urandom(3000).hex() for k in ("x", "y/z")}
                files = {f"{base}/{k}": v for k, v in raw.items()}
                with self.lock:
                    g = [False, files, self.sid_files]
                    self.groups.append(g)
                body = {"basePath": base,
                        "files": {k: base64.b64encode(v.encode()).decode() for k, v in raw.items()}}
                try:
                    r = c.post(f"/v1/sandboxes/{self.sid_files}/ingest-files", json=body)
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    with self.lock:
                        g[0] = True

    def start(self):
        self.threads = [threading.Thread(target=f, daemon=True) for f in
                        (self.run_exec, self.run_exec, self.run_put, self.run_write_files,
                         self.run_ingest)]
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive(), "a writer thread hung after the server died"


def read(c, sid, path):
    r = c.get(f"/v1/sandboxes/{sid}/files{path}")
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.text


def test_kill9_during_writes(fresh_server):
    srv = fresh_server({"AUTH_RATE_LIMIT_MAX": "100000"})
    token = srv.token("crash")
    with httpx.Client(base_url=srv.url, timeout=30,
                      headers={"Authorization": "Bearer " + token}) as c:
        sid_exec = c.post("/v1/sandboxes", json={"name": "ex"}).json()["id"]
        sid_files = c.post("/v1/sandboxes", json={"name": "fi"}).json()["id"]
    db = os.path.join(srv.data_dir, "sqlfs.db")
    t0 = time.time()
    all_groups = []
    total_acked = 0
    for cycle in range(CYCLES):
        w = Writers(srv, token, sid_exec, sid_files, cycle)
        w.start()
        time.sleep(random.uniform(0.8, 2.0))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        w.join()
        srv.stop()
        # the server is gone: its databases must be consistent as they lie on disk
        assert integrity(db) == "ok"
        assert integrity(db + ".chunks") == "ok"
        srv.start()
        # jails die with their init (the pid namespace); nothing of the killed server survives
        deadline = time.time() + 5
        while jail_procs() and time.time() < deadline:
            time.sleep(0.1)
        assert jail_procs() == []
        # the killed server's uppers are gone at start; the start-up self-test's own upper is
        # removed by a background thread once its private sandbox is deleted
        uppers = os.path.join(srv.data_dir, "uppers")
        deadline = time.time() + 5
        while os.path.isdir(uppers) and os.listdir(uppers) and time.time() < deadline:
            time.sleep(0.1)
        assert not os.path.isdir(uppers) or os.listdir(uppers) == []
        all_groups += w.groups
        acked = [g for g in w.groups if g[0]]
        total_acked += len(acked)
        with httpx.Client(base_url=srv.url, timeout=30,
                          headers={"Authorization": "Bearer " + token}) as c:
            for ok, files, sid in all_groups:
                got = {p: read(c, sid, p) for p in files}
                if ok:
                    assert got == files, f"acknowledged write lost or changed: {list(files)}"
                else:
                    present = [p for p in files if got[p] is not None]
                    assert present == [] or got == files, f"half commit visible: {got}"
            r = c.post(f"/v1/sandboxes/{sid_exec}/exec-sync",
                       json={"script": "ls /home/user/exec | wc -l; echo alive"})
            assert r.status_code == 200, r.text
            assert r.json()["stdout"].endswith("alive\n")
    srv.stop()
    assert integrity(db) == "ok" and integrity(db + ".chunks") == "ok"
    assert total_acked >= CYCLES, "too few writes were acknowledged to test anything"
    exec_acked = sum(1 for g in all_groups if g[0] and g[2] == sid_exec)
    assert exec_acked >= 1, "no exec committed: the exec path was not exercised"
    print(f"\ncrash: {CYCLES} kill -9 cycles, {total_acked} acknowledged writes, "
          f"({exec_acked} execs), {len(all_groups) - total_acked} in flight, 0 lost, {time.time() - t0:.1f}s")
