"""Sandboxes (docs/API.md "Sandboxes"): create, list, get, delete, ownership, persistence."""
import io
import json
import re
import sqlite3
import os
import tarfile
import threading
import time
import uuid

import httpx
import pytest

from conftest import SECRET, assert_error, engine, pg_query, status

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_create_defaults_record_shape(api):
    r = api.post("/v1/sandboxes")
    assert r.status_code == 201, r.text
    rec = r.json()
    assert UUID.match(rec["id"])
    for k in ("id", "name", "owner", "createdAt", "lastUsedAt", "python", "javascript",
              "network"):
        assert k in rec
    assert rec["name"] is None and rec["owner"] == "tester"
    assert rec["python"] is False and rec["javascript"] is False and rec["network"] is False
    assert ISO.match(rec["createdAt"])
    tree = api.get(f"/v1/sandboxes/{rec['id']}/tree", params={"prefix": "/"}).json()
    kinds = {e["path"]: (e["kind"], e["mode"]) for e in tree}
    assert kinds["/home/user"] == ("dir", 0o755)
    assert kinds["/tmp"] == ("dir", 0o1777)


def test_create_with_everything(api):
    r = api.post("/v1/sandboxes", json={
        "name": "demo", "env": {"FOO": "bar"}, "python": True, "javascript": True,
        "files": {"/home/user/a/b.txt": "hello", "/opt/x.txt": "ü"}, "unknown": 1})
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["name"] == "demo" and rec["python"] and rec["javascript"]
    assert rec["env"] == {"FOO": "bar"}
    sid = rec["id"]
    assert api.get(f"/v1/sandboxes/{sid}/files/home/user/a/b.txt").content == b"hello"
    assert api.get(f"/v1/sandboxes/{sid}/files/opt/x.txt").content == "ü".encode()


def test_create_empty_body_and_bad_files_is_atomic(api):
    before = len(api.get("/v1/sandboxes").json()["sandboxes"])
    assert api.post("/v1/sandboxes", content=b"").status_code == 201
    assert_error(api.post("/v1/sandboxes", json={"files": {"relative.txt": "x"}}), 400)
    assert_error(api.post("/v1/sandboxes", json={"files": {"/a": 5}}), 400)
    assert_error(api.post("/v1/sandboxes", json={"files": {"/home/user": "x"}}), 400, "EISDIR")
    assert len(api.get("/v1/sandboxes").json()["sandboxes"]) == before + 1


def test_list_newest_first_and_only_own(server, api):
    ids = [api.post("/v1/sandboxes", json={"name": f"n{i}"}).json()["id"] for i in range(3)]
    listed = [s["id"] for s in api.get("/v1/sandboxes").json()["sandboxes"]]
    assert listed[:3] == ids[::-1]
    with server.client(sub="someone-else") as other:
        assert all(s["id"] not in ids for s in other.get("/v1/sandboxes").json()["sandboxes"])
        # a foreign sandbox looks exactly like a missing one
        assert_error(other.get(f"/v1/sandboxes/{ids[0]}"), 404, "SANDBOX_NOT_FOUND")
        assert_error(other.delete(f"/v1/sandboxes/{ids[0]}"), 404, "SANDBOX_NOT_FOUND")
        assert_error(other.get(f"/v1/sandboxes/{ids[0]}/files/home"), 404, "SANDBOX_NOT_FOUND")
    with server.client(sub="tester", tenant="t2") as other_tenant:
        assert_error(other_tenant.get(f"/v1/sandboxes/{ids[0]}"), 404, "SANDBOX_NOT_FOUND")
    assert api.get(f"/v1/sandboxes/{ids[0]}").status_code == 200


def test_get_missing_and_invalid_ids(api):
    assert_error(api.get("/v1/sandboxes/00000000-0000-4000-8000-000000000000"), 404,
                 "SANDBOX_NOT_FOUND")
    assert_error(api.get("/v1/sandboxes/not-a-uuid"), 404, "SANDBOX_NOT_FOUND")


def test_last_used_at_updates(api, sandbox):
    assert api.get(f"/v1/sandboxes/{sandbox}").json()["lastUsedAt"] is not None or True
    api.put(f"/v1/sandboxes/{sandbox}/files/home/user/x", content=b"1")
    rec = api.get(f"/v1/sandboxes/{sandbox}").json()
    assert ISO.match(rec["lastUsedAt"])


def test_delete_reclaims_storage(server, api):
    blob = os.urandom(3 * 1024 * 1024)
    sid = api.post("/v1/sandboxes").json()["id"]
    assert api.put(f"/v1/sandboxes/{sid}/files/home/user/big.bin", content=blob).status_code == 204
    db = os.path.join(server.data_dir, "sqlfs.db")

    def chunk_bytes():
        if engine() == "postgres":
            return int(pg_query(server.database_url,
                                "SELECT coalesce(sum(length(data)), 0) FROM chunks")[0][0])
        con = sqlite3.connect(db)
        try:
            # chunk bytes live in a second database file beside the main one
            con.execute("ATTACH ? AS blobs", (db + ".chunks",))
            return con.execute("SELECT COALESCE(SUM(length(data)),0) FROM blobs.chunks"
                               ).fetchone()[0]
        finally:
            con.close()

    before = chunk_bytes()
    assert before >= len(blob)
    assert api.delete(f"/v1/sandboxes/{sid}").status_code == 204
    assert chunk_bytes() <= before - len(blob)
    assert_error(api.get(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")
    assert_error(api.delete(f"/v1/sandboxes/{sid}"), 404, "SANDBOX_NOT_FOUND")


def test_data_survives_restart(fresh_server):
    s = fresh_server()
    with s.client() as c:
        sid = c.post("/v1/sandboxes", json={"name": "keep", "env": {"K": "v"}}).json()["id"]
        assert c.put(f"/v1/sandboxes/{sid}/files/home/user/f.txt",
                     content=b"persisted").status_code == 204
    assert s.stop() == 0  # clean shutdown on SIGTERM
    s.start()
    with s.client() as c:
        rec = c.get(f"/v1/sandboxes/{sid}").json()
        assert rec["name"] == "keep" and rec["env"] == {"K": "v"}
        assert c.get(f"/v1/sandboxes/{sid}/files/home/user/f.txt").content == b"persisted"


def test_generated_secret_file(tmp_path):
    import subprocess
    import time
    from conftest import BINARY, free_port
    data = tmp_path / "d"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "AUTH_SECRET"}
    p = subprocess.Popen([BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--data", str(data)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        secret_file = data / "auth_secret"
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
        secret = secret_file.read_text().strip()
        r = httpx.post(f"http://127.0.0.1:{port}/v1/auth/bootstrap", json={"sub": "a"},
                       headers={"X-Auth-Secret": secret})
        assert r.status_code == 201
        # the offline CLI mints a token the server accepts
        tok = subprocess.run([BINARY, "token", "--sub", "cli-user", "--data", str(data)],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
        r = httpx.get(f"http://127.0.0.1:{port}/v1/sandboxes",
                      headers={"Authorization": "Bearer " + tok})
        assert r.status_code == 200
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    assert secret.encode() not in out + err


# ---- a sandbox of someone else looks like a missing one, also while it is busy ----

def small_tgz():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ti = tarfile.TarInfo("pwned.txt")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"pwned"))
    return buf.getvalue()


def foreign_requests(sid):
    """Every route that names a sandbox, each as a stranger would send it (nothing in them may
    ever reach the sandbox): (label, method, path, httpx keyword arguments)."""
    base = f"/v1/sandboxes/{sid}"
    evil = "echo pwned > /home/user/pwned"
    return [
        ("get", "GET", base, {}),
        ("delete", "DELETE", base, {}),
        ("file-get", "GET", base + "/files/home/user/a.txt", {}),
        ("file-put", "PUT", base + "/files/home/user/a.txt", {"content": b"pwned"}),
        ("file-patch", "PATCH", base + "/files/home/user/a.txt",
         {"json": {"oldString": "hello", "newString": "pwned"}}),
        ("file-delete", "DELETE", base + "/files/home/user/a.txt", {}),
        ("mkdir", "POST", base + "/mkdir", {"json": {"path": "/home/user/pwned"}}),
        ("writeFiles", "POST", base + "/writeFiles",
         {"json": {"files": {"/home/user/pwned": "x"}}}),
        ("tree", "GET", base + "/tree", {}),
        ("exec-sync", "POST", base + "/exec-sync", {"json": {"script": evil}}),
        ("exec-stream", "POST", base + "/exec", {"json": {"script": evil}}),
        ("exec-batch", "POST", base + "/exec-sync-batch",
         {"json": {"scripts": [{"id": "a", "script": evil}]}}),
        ("ingest", "POST", base + "/ingest",
         {"content": small_tgz(), "headers": {"Content-Type": "application/gzip"}}),
        ("ingest-files", "POST", base + "/ingest-files", {"json": {"files": {"pwned": "eA=="}}}),
        ("export", "GET", base + "/export", {}),
    ]


def exec_running(server):
    return status(server)["exec"]["running"]


def start_busy_exec(server, client, sid, read_only, seconds=3):
    """Alice's exec holding her sandbox's lock (shared when read_only) for `seconds`."""
    out = {}

    def run():
        out["r"] = client.post(f"/v1/sandboxes/{sid}/exec-sync",
                               json={"script": f"sleep {seconds}", "readOnly": read_only})
    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 10
    while exec_running(server) < 1:
        assert time.monotonic() < deadline, "the exec did not start"
        time.sleep(0.02)
    return th, out


def answer(resp, sid):
    """What a client can tell from an answer: status and body, with the id it named blanked."""
    return resp.status_code, resp.text.replace(sid, "<id>")


def test_strangers_get_a_busy_sandbox_answered_like_a_missing_one(server, api):
    """Ownership is decided before the sandbox lock: on a sandbox whose owner holds its lock
    (an exec in write mode, then a read-only one), another sub and another tenant get, on every
    route, the answer of a random id, as fast; and the stranger's DELETE, which would wait as a
    writer, does not hold back the owner's own read."""
    sid = api.post("/v1/sandboxes").json()["id"]
    assert api.put(f"/v1/sandboxes/{sid}/files/home/user/a.txt",
                   content=b"hello\n").status_code == 204
    missing = str(uuid.uuid4())
    with server.client(sub="stranger") as bob, \
            server.client(sub="tester", tenant="elsewhere") as carol:
        expected = {}
        for label, method, path, kw in foreign_requests(missing):
            r = bob.request(method, path, **kw)
            assert_error(r, 404, "SANDBOX_NOT_FOUND")
            expected[label] = answer(r, missing)
        for read_only in (False, True):
            th, alice = start_busy_exec(server, api, sid, read_only)
            slow = []
            for who in (bob, carol):
                for label, method, path, kw in foreign_requests(sid):
                    t = time.monotonic()
                    r = who.request(method, path, **kw)
                    took = time.monotonic() - t
                    assert answer(r, sid) == expected[label], label
                    if took >= 0.3:
                        slow.append((label, round(took, 2)))
            assert not slow, f"answers waited for the owner's lock: {slow}"
            assert th.is_alive(), "the owner's exec ended before the checks did"
            if read_only:
                # a stranger's DELETE must not queue as a writer in front of the owner's reads
                deleter = threading.Thread(target=lambda: bob.delete(f"/v1/sandboxes/{sid}"))
                deleter.start()
                time.sleep(0.1)
                t = time.monotonic()
                r = api.get(f"/v1/sandboxes/{sid}/files/home/user/a.txt")
                took = time.monotonic() - t
                assert r.status_code == 200 and r.content == b"hello\n"
                assert took < 0.3, f"the owner's read waited {took:.2f} s behind a stranger"
                deleter.join()
            th.join()
            assert alice["r"].status_code == 200, alice["r"].text
    tree = {e["path"] for e in api.get(f"/v1/sandboxes/{sid}/tree").json()}
    assert tree == {"/home", "/home/user", "/home/user/a.txt", "/tmp"}
    assert api.get(f"/v1/sandboxes/{sid}/files/home/user/a.txt").content == b"hello\n"
    api.delete(f"/v1/sandboxes/{sid}")


def test_a_stranger_gets_404_not_a_lock_timeout(fresh_server):
    """LOCK_TIMEOUT_MS bounds the owner's own waits; a stranger never waits, so never gets
    503 ELOCKTIMEOUT for someone else's sandbox."""
    srv = fresh_server({"LOCK_TIMEOUT_MS": "1000"})
    with srv.client() as alice, srv.client(sub="stranger") as bob:
        sid = alice.post("/v1/sandboxes").json()["id"]
        th, out = start_busy_exec(srv, alice, sid, False, seconds=2)
        for label, method, path, kw in foreign_requests(sid):
            t = time.monotonic()
            r = bob.request(method, path, **kw)
            assert_error(r, 404, "SANDBOX_NOT_FOUND")
            assert time.monotonic() - t < 0.3, label
        # the owner herself still waits for her own lock, up to LOCK_TIMEOUT_MS
        assert_error(alice.put(f"/v1/sandboxes/{sid}/files/home/user/x", content=b"x"), 503,
                     "ELOCKTIMEOUT")
        th.join()
        assert out["r"].status_code == 200


# ---- MAX_SANDBOXES_PER_OWNER ----

def test_sandboxes_per_owner_limit(fresh_server):
    """An owner (tenant, sub) has at most MAX_SANDBOXES_PER_OWNER sandboxes: one more is refused
    with 409 ESANDBOX_LIMIT naming the setting, creates nothing, and does not touch other
    owners; a delete makes room again."""
    srv = fresh_server({"MAX_SANDBOXES_PER_OWNER": "3"})
    with srv.client() as alice, srv.client(sub="bob") as bob, \
            srv.client(sub="tester", tenant="t2") as alice2:
        ids = [alice.post("/v1/sandboxes", json={}).json()["id"] for _ in range(3)]
        body = assert_error(alice.post("/v1/sandboxes", json={"name": "one too many"}), 409,
                            "ESANDBOX_LIMIT")
        assert body["retryable"] is False
        assert "MAX_SANDBOXES_PER_OWNER=3" in body["details"]
        assert "3 sandboxes" in body["error"] and "delete" in body["error"]
        listed = [s["id"] for s in alice.get("/v1/sandboxes").json()["sandboxes"]]
        assert sorted(listed) == sorted(ids)
        # the same sub in another tenant, and another sub, count on their own
        for other in (bob, alice2):
            assert other.post("/v1/sandboxes", json={}).status_code == 201
        assert alice.delete(f"/v1/sandboxes/{ids[0]}").status_code == 204
        assert alice.post("/v1/sandboxes", json={}).status_code == 201
        assert_error(alice.post("/v1/sandboxes", json={}), 409, "ESANDBOX_LIMIT")


def test_sandboxes_per_owner_limit_holds_under_concurrent_creates(fresh_server):
    """The count is taken in the create's own transaction: 16 concurrent creates at limit - 1
    make exactly one sandbox."""
    srv = fresh_server({"MAX_SANDBOXES_PER_OWNER": "5"})
    with srv.client() as alice:
        for _ in range(4):
            assert alice.post("/v1/sandboxes", json={}).status_code == 201
        codes = []
        barrier = threading.Barrier(16)

        def create():
            barrier.wait()
            codes.append(alice.post("/v1/sandboxes", json={}).status_code)
        threads = [threading.Thread(target=create) for _ in range(16)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sorted(codes) == [201] + [409] * 15
        assert len(alice.get("/v1/sandboxes").json()["sandboxes"]) == 5
