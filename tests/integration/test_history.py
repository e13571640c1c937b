"""Sandbox history through the API: every commit listed and browsable, reads as of a version,
diffs (path lists and unified diffs of one file), restore (undo), fork and snapshots, pruning by
HISTORY_MAX_COMMITS with snapshots pinning, and every error the routes answer. Real server, real
bash in the jail; runs on both engines."""
import os
import signal
import threading
import time

import httpx

import pytest

from conftest import ADMIN_SECRET, assert_error


def exec_ok(api, sid, script):
    r = api.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": script})
    assert r.status_code == 200, r.text
    assert r.json()["exitCode"] == 0, r.text
    return r.json()


def put(api, sid, path, data):
    r = api.put(f"/v1/sandboxes/{sid}/files{path}", content=data)
    assert r.status_code == 204, r.text


def read(api, sid, path, version=None):
    q = f"?version={version}" if version is not None else ""
    return api.get(f"/v1/sandboxes/{sid}/files{path}{q}")


def version_of(api, sid):
    return api.get(f"/v1/sandboxes/{sid}").json()["version"]


def tree(api, sid, version=None):
    q = f"?version={version}" if version is not None else ""
    r = api.get(f"/v1/sandboxes/{sid}/tree{q}")
    assert r.status_code == 200, r.text
    return {e["path"]: (e["kind"], e["size"], e["mode"]) for e in r.json()}


def test_commits_list_every_change_newest_first(api, sandbox):
    v0 = version_of(api, sandbox)
    put(api, sandbox, "/home/user/a.txt", b"one\n")
    exec_ok(api, sandbox, "echo two >> a.txt\nmkdir -p d && echo x > d/x")
    exec_ok(api, sandbox, "rm -r d")
    r = api.get(f"/v1/sandboxes/{sandbox}/commits")
    assert r.status_code == 200, r.text
    body = r.json()
    commits = body["commits"]
    assert [c["version"] for c in commits] == [v0 + 3, v0 + 2, v0 + 1, v0]
    assert body["next"] is None
    rm, two, a, create = commits
    assert create["kind"] == "create" and create["parent"] is None
    assert a["kind"] == "files" and "/home/user/a.txt" in a["summary"]
    assert a["changes"] == {"added": 1, "modified": 0, "deleted": 0}
    assert a["bytesAdded"] == 4 and a["parent"] == v0 and a["execId"] is None
    assert two["kind"] == "exec" and two["summary"] == "echo two >> a.txt"
    assert isinstance(two["execId"], str) and two["execId"]
    assert two["changes"]["added"] == 2 and two["changes"]["modified"] >= 1
    assert rm["changes"]["deleted"] == 2 and rm["changes"]["added"] == 0
    assert two["at"].endswith("Z")

    # one commit with its paths
    r = api.get(f"/v1/sandboxes/{sandbox}/commits/{v0 + 2}")
    assert r.status_code == 200, r.text
    paths = {p["path"]: p for p in r.json()["paths"]}
    assert paths["/home/user/a.txt"]["change"] == "modified"
    assert paths["/home/user/a.txt"]["size"] == 8
    assert paths["/home/user/d"] == {"path": "/home/user/d", "change": "added", "kind": "dir",
                                     "size": paths["/home/user/d"]["size"]}
    assert paths["/home/user/d/x"]["change"] == "added"
    r = api.get(f"/v1/sandboxes/{sandbox}/commits/{v0 + 3}")
    deleted = {p["path"] for p in r.json()["paths"] if p["change"] == "deleted"}
    assert deleted == {"/home/user/d", "/home/user/d/x"}

    # pages
    r = api.get(f"/v1/sandboxes/{sandbox}/commits?limit=2")
    assert [c["version"] for c in r.json()["commits"]] == [v0 + 3, v0 + 2]
    nxt = r.json()["next"]
    assert nxt == v0 + 2
    r = api.get(f"/v1/sandboxes/{sandbox}/commits?limit=2&before={nxt}")
    assert [c["version"] for c in r.json()["commits"]] == [v0 + 1, v0]


def test_read_and_tree_as_of_a_version(api, sandbox):
    put(api, sandbox, "/home/user/f.txt", b"first")
    v1 = version_of(api, sandbox)
    exec_ok(api, sandbox, "echo second > f.txt; ln -s f.txt link; mkdir sub; echo s > sub/s")
    v2 = version_of(api, sandbox)
    exec_ok(api, sandbox, "rm -r f.txt sub")
    assert read(api, sandbox, "/home/user/f.txt", v1).content == b"first"
    assert read(api, sandbox, "/home/user/f.txt", v2).content == b"second\n"
    assert read(api, sandbox, "/home/user/link", v2).content == b"second\n"  # link followed at v2
    assert_error(read(api, sandbox, "/home/user/f.txt"), 404, "ENOENT")
    assert_error(read(api, sandbox, "/home/user/link"), 404, "ENOENT")  # dangling now
    t1, t2, t3 = tree(api, sandbox, v1), tree(api, sandbox, v2), tree(api, sandbox)
    assert "/home/user/sub/s" not in t1 and t2["/home/user/sub/s"][0] == "file"
    assert "/home/user/sub" not in t3 and t2["/home/user/link"][0] == "symlink"
    assert t3 == tree(api, sandbox, version_of(api, sandbox))


def test_diff_paths_and_unified(api, sandbox):
    put(api, sandbox, "/home/user/code.py", b"a = 1\nb = 2\nc = 3\n")
    v1 = version_of(api, sandbox)
    exec_ok(api, sandbox, "sed -i 's/b = 2/b = 20/' code.py; echo new > new.txt;"
                          "head -c 100 /dev/urandom > blob.bin")
    v2 = version_of(api, sandbox)
    r = api.get(f"/v1/sandboxes/{sandbox}/diff?from={v1}&to={v2}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["from"] == v1 and body["to"] == v2
    changes = {p["path"]: p["change"] for p in body["paths"]}
    assert changes["/home/user/code.py"] == "modified"
    assert changes["/home/user/new.txt"] == "added" and changes["/home/user/blob.bin"] == "added"
    # reversed: what was added is deleted
    r = api.get(f"/v1/sandboxes/{sandbox}/diff?from={v2}&to={v1}")
    assert {p["path"]: p["change"] for p in r.json()["paths"]}["/home/user/new.txt"] == "deleted"

    r = api.get(f"/v1/sandboxes/{sandbox}/diff?from={v1}&to={v2}&path=/home/user/code.py"
                "&format=unified")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/x-diff")
    assert "-b = 2\n+b = 20\n" in r.text and r.text.startswith("--- a/home/user/code.py\n")
    r = api.get(f"/v1/sandboxes/{sandbox}/diff?from={v1}&to={v2}&path=/home/user/new.txt"
                "&format=unified")
    assert r.status_code == 200 and "--- /dev/null" in r.text and "+new" in r.text, r.text
    r = api.get(f"/v1/sandboxes/{sandbox}/diff?from={v1}&to={v2}&path=/home/user/blob.bin"
                "&format=unified")
    assert r.status_code == 200 and r.text.startswith("Binary files") and \
        len(r.text.splitlines()) == 1, r.text

    assert_error(api.get(f"/v1/sandboxes/{sandbox}/diff?from={v1}"), 400, "INVALID_INPUT")
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/diff?from={v1}&to=999999"), 404,
                 "VERSION_NOT_FOUND")
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/diff?from={v1}&to={v2}&format=unified"), 400,
                 "INVALID_INPUT")
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/diff?from={v1}&to={v2}&format=html&path=/x"),
                 400, "INVALID_INPUT")


def test_restore_is_one_new_commit_and_is_itself_undoable(api, sandbox):
    put(api, sandbox, "/home/user/keep.txt", b"good")
    exec_ok(api, sandbox, "mkdir -p /home/user/proj && cd /home/user/proj && echo 1 > one")
    good = version_of(api, sandbox)
    good_tree = tree(api, sandbox)
    exec_ok(api, sandbox, "cd /home/user && rm keep.txt && echo bad > proj/one && "
                          "mkdir junk && echo j > junk/j && cd /tmp")
    bad = version_of(api, sandbox)
    bad_tree = tree(api, sandbox)
    r = api.post(f"/v1/sandboxes/{sandbox}/restore", json={"version": good})
    assert r.status_code == 200, r.text
    assert r.json() == {"version": bad + 1, "restoredFrom": good}
    assert tree(api, sandbox) == good_tree
    assert read(api, sandbox, "/home/user/keep.txt").content == b"good"
    assert read(api, sandbox, "/home/user/proj/one").content == b"1\n"
    # the stored cwd is the restored version's
    assert exec_ok(api, sandbox, "pwd")["stdout"].strip() == "/home/user/proj"
    c = api.get(f"/v1/sandboxes/{sandbox}/commits?limit=1").json()["commits"][0]
    assert c["kind"] == "restore" and c["version"] == bad + 1 and str(good) in c["summary"]
    # undo the restore
    r = api.post(f"/v1/sandboxes/{sandbox}/restore", json={"version": bad})
    assert r.status_code == 200, r.text
    assert tree(api, sandbox) == bad_tree
    assert read(api, sandbox, "/home/user/junk/j").content == b"j\n"

    assert_error(api.post(f"/v1/sandboxes/{sandbox}/restore", json={}), 400, "INVALID_INPUT")
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/restore", json={"version": 424242}), 404,
                 "VERSION_NOT_FOUND")
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/restore", json={"version": "1"}), 400,
                 "INVALID_INPUT")
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/restore",
                          json={"version": 1, "snapshot": "x"}), 400, "INVALID_INPUT")


def test_fork_shares_content_and_starts_its_own_history(api, sandbox):
    put(api, sandbox, "/home/user/big.bin", os.urandom(3 << 20))
    exec_ok(api, sandbox, "echo a > a.txt")
    v = version_of(api, sandbox)
    exec_ok(api, sandbox, "echo later > later.txt")
    r = api.post(f"/v1/sandboxes/{sandbox}/fork", json={"version": v, "name": "try-b"})
    assert r.status_code == 201, r.text
    fork = r.json()
    try:
        assert fork["id"] != sandbox and fork["name"] == "try-b" and fork["version"] == 1
        assert tree(api, fork["id"]) == tree(api, sandbox, v)
        assert read(api, fork["id"], "/home/user/big.bin").content == \
            read(api, sandbox, "/home/user/big.bin").content
        commits = api.get(f"/v1/sandboxes/{fork['id']}/commits").json()["commits"]
        assert len(commits) == 1 and commits[0]["kind"] == "fork"
        assert sandbox in commits[0]["summary"] and commits[0]["parent"] is None
        # the two evolve apart
        exec_ok(api, fork["id"], "echo b > a.txt")
        assert read(api, sandbox, "/home/user/a.txt").content == b"a\n"
        assert read(api, fork["id"], "/home/user/a.txt").content == b"b\n"
        # default: the current version
        r = api.post(f"/v1/sandboxes/{sandbox}/fork", json={})
        assert r.status_code == 201, r.text
        assert read(api, r.json()["id"], "/home/user/later.txt").content == b"later\n"
        api.delete(f"/v1/sandboxes/{r.json()['id']}")
    finally:
        api.delete(f"/v1/sandboxes/{fork['id']}")
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/fork", json={"version": 99999}), 404,
                 "VERSION_NOT_FOUND")


def test_snapshots(api, sandbox):
    put(api, sandbox, "/home/user/s.txt", b"v1")
    r = api.post(f"/v1/sandboxes/{sandbox}/snapshots", json={"name": "before-refactor"})
    assert r.status_code == 201, r.text
    snap = r.json()
    assert snap["name"] == "before-refactor" and snap["version"] == version_of(api, sandbox)
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/snapshots", json={"name": "before-refactor"}),
                 409, "EEXIST")
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/snapshots", json={}), 400, "INVALID_INPUT")
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/snapshots", json={"name": "a/b"}), 400,
                 "INVALID_INPUT")
    put(api, sandbox, "/home/user/s.txt", b"v2")
    r = api.post(f"/v1/sandboxes/{sandbox}/restore", json={"snapshot": "before-refactor"})
    assert r.status_code == 200, r.text
    assert read(api, sandbox, "/home/user/s.txt").content == b"v1"
    r = api.get(f"/v1/sandboxes/{sandbox}/snapshots")
    assert [s["name"] for s in r.json()["snapshots"]] == ["before-refactor"]
    r = api.post(f"/v1/sandboxes/{sandbox}/fork", json={"snapshot": "before-refactor"})
    assert r.status_code == 201, r.text
    api.delete(f"/v1/sandboxes/{r.json()['id']}")
    assert api.delete(f"/v1/sandboxes/{sandbox}/snapshots/before-refactor").status_code == 204
    assert_error(api.delete(f"/v1/sandboxes/{sandbox}/snapshots/before-refactor"), 404, "ENOENT")
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/restore", json={"snapshot": "nope"}), 404,
                 "ENOENT")


def test_a_foreign_sandbox_is_a_missing_one(server, api, sandbox):
    with server.client(sub="someone-else") as other:
        for method, path, body in [("GET", "commits", None), ("GET", "commits/1", None),
                                   ("GET", "diff?from=1&to=1", None),
                                   ("POST", "restore", {"version": 1}), ("POST", "fork", {}),
                                   ("GET", "snapshots", None),
                                   ("POST", "snapshots", {"name": "x"}),
                                   ("GET", "files/home?version=1", None),
                                   ("GET", "tree?version=1", None)]:
            r = other.request(method, f"/v1/sandboxes/{sandbox}/{path}", json=body)
            assert_error(r, 404, "SANDBOX_NOT_FOUND")


def test_pruning_keeps_snapshots_and_what_they_use(fresh_server):
    srv = fresh_server({"HISTORY_MAX_COMMITS": "3"})
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        blobs = {}
        for i in range(6):
            blobs[i] = os.urandom(20000) + bytes([i])
            put(c, sid, "/home/user/f.bin", blobs[i])
            if i == 1:
                pinned = version_of(c, sid)
                assert c.post(f"/v1/sandboxes/{sid}/snapshots",
                              json={"name": "one"}).status_code == 201
        now = version_of(c, sid)
        versions = [x["version"] for x in c.get(f"/v1/sandboxes/{sid}/commits").json()["commits"]]
        assert versions == [now, now - 1, now - 2, pinned]
        for v in (now - 1, now - 2):
            assert read(c, sid, "/home/user/f.bin", v).content == blobs[5 - (now - v)]
        assert read(c, sid, "/home/user/f.bin", pinned).content == blobs[1]
        assert_error(read(c, sid, "/home/user/f.bin", now - 3), 404, "VERSION_NOT_FOUND")
        assert_error(c.get(f"/v1/sandboxes/{sid}/commits/{now - 3}"), 404, "VERSION_NOT_FOUND")
        # the snapshot's deletion releases its version
        assert c.delete(f"/v1/sandboxes/{sid}/snapshots/one").status_code == 204
        assert_error(read(c, sid, "/home/user/f.bin", pinned), 404, "VERSION_NOT_FOUND")


def test_history_survives_a_kill_during_restore(fresh_server):
    """kill -9 while a restore of many files commits: after the restart the sandbox is at the old
    version or at the restored one, whole, never between."""
    srv = fresh_server()
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        exec_ok(c, sid, "mkdir m && for i in $(seq 2000); do echo $i > m/f$i; done")
        full = version_of(c, sid)
        exec_ok(c, sid, "rm -r m")
        empty_tree = tree(c, sid)
        full_tree = tree(c, sid, full)
        def restore():
            try:
                c.post(f"/v1/sandboxes/{sid}/restore", json={"version": full})
            except httpx.HTTPError:
                pass  # the server was killed under it

        t = threading.Thread(target=restore, daemon=True)
        t.start()
        time.sleep(0.05)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        t.join(30)
    srv.start()
    with srv.client() as c:
        now = tree(c, sid)
        assert now in (empty_tree, full_tree), "half a restore"


def test_a_large_restore_is_seen_by_the_next_exec(api, sandbox):
    """A restore of thousands of files answers without writing them to the exec's cached tree;
    the next exec still sees exactly the restored tree (and the one after a restore away)."""
    exec_ok(api, sandbox, "cd && mkdir big && for i in $(seq 1500); do echo $i > big/f$i; done")
    full = version_of(api, sandbox)
    exec_ok(api, sandbox, "cd && rm -r big && echo after > after.txt")
    empty = version_of(api, sandbox)
    for _ in range(2):
        assert api.post(f"/v1/sandboxes/{sandbox}/restore",
                        json={"version": full}).status_code == 200
        # a small write on top of the cached tree left behind: both reach the next exec
        put(api, sandbox, "/home/user/small.txt", b"small")
        out = exec_ok(api, sandbox, "cd && ls big | wc -l; cat big/f1234; ls after.txt 2>&1 | "
                                    "grep -c 'No such'; cat small.txt")["stdout"]
        assert out.split() == ["1500", "1234", "1", "small"], out
        r = api.get("/v1/status", headers={"X-Admin-Secret": ADMIN_SECRET})
        checkouts = r.json()["exec"]["checkouts"]
        assert checkouts["refreshes"] + checkouts["builds"] >= 1, checkouts
        assert api.post(f"/v1/sandboxes/{sandbox}/restore",
                        json={"version": empty}).status_code == 200
        out = exec_ok(api, sandbox, "cd && ls big 2>&1 | grep -c 'No such'; cat after.txt")
        assert out["stdout"].split() == ["1", "after"], out


def test_restore_over_a_directory_made_a_file_and_diff_of_a_subtree(api, sandbox):
    exec_ok(api, sandbox, "cd && echo f > thing && mkdir -p keep && echo k > keep/k")
    as_file = version_of(api, sandbox)
    exec_ok(api, sandbox, "cd && rm thing && mkdir -p thing/sub && echo x > thing/sub/x && "
                          "echo y > thing/y && echo k2 > keep/k")
    as_dir = version_of(api, sandbox)
    r = api.get(f"/v1/sandboxes/{sandbox}/diff?from={as_file}&to={as_dir}&path=/home/user/thing")
    assert r.status_code == 200, r.text
    assert {p["path"] for p in r.json()["paths"]} == {
        "/home/user/thing", "/home/user/thing/sub", "/home/user/thing/sub/x", "/home/user/thing/y"}
    # restore: the directory becomes a file again, and the next exec's tree agrees
    assert api.post(f"/v1/sandboxes/{sandbox}/restore",
                    json={"version": as_file}).status_code == 200
    assert tree(api, sandbox) == tree(api, sandbox, as_file)
    out = exec_ok(api, sandbox, "cd && cat thing keep/k")["stdout"]
    assert out == "f\nk\n", out
    assert api.post(f"/v1/sandboxes/{sandbox}/restore",
                    json={"version": as_dir}).status_code == 200
    out = exec_ok(api, sandbox, "cd && cat thing/sub/x thing/y keep/k")["stdout"]
    assert out == "x\ny\nk2\n", out
    c = api.get(f"/v1/sandboxes/{sandbox}/commits?limit=1").json()["commits"][0]
    assert c["kind"] == "restore"
    s = api.get(f"/v1/sandboxes/{sandbox}").json()
    assert s["lastUsedAt"] is not None


def test_history_bounds(fresh_server):
    """What one request or one sandbox can make the server hold is bounded: snapshots per
    sandbox (MAX_SNAPSHOTS), changed paths listed at once (MAX_TREE_ENTRIES), the size of a file
    a unified diff reads (8 MiB), the commits of a page (1000)."""
    srv = fresh_server({"MAX_SNAPSHOTS": "2", "MAX_TREE_ENTRIES": "50"})
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        for name in ("a", "b"):
            assert c.post(f"/v1/sandboxes/{sid}/snapshots", json={"name": name}).status_code == 201
        r = c.post(f"/v1/sandboxes/{sid}/snapshots", json={"name": "c"})
        body = assert_error(r, 409, "ESNAPSHOT_LIMIT")
        assert "MAX_SNAPSHOTS=2" in body.get("details", []), body
        v0 = version_of(c, sid)
        exec_ok(c, sid, "cd && mkdir many && for i in $(seq 60); do echo $i > many/f$i; done; "
                        "head -c 9M /dev/zero > big.txt")
        v1 = version_of(c, sid)
        body = assert_error(c.get(f"/v1/sandboxes/{sid}/diff?from={v0}&to={v1}"), 413,
                            "PAYLOAD_TOO_LARGE")
        assert "MAX_TREE_ENTRIES=50" in body.get("details", []), body
        assert_error(c.get(f"/v1/sandboxes/{sid}/commits/{v1}"), 413, "PAYLOAD_TOO_LARGE")
        # narrowed to a path, it fits
        r = c.get(f"/v1/sandboxes/{sid}/diff?from={v0}&to={v1}&path=/home/user/big.txt")
        assert r.status_code == 200 and len(r.json()["paths"]) == 1, r.text
        assert_error(c.get(f"/v1/sandboxes/{sid}/diff?from={v0}&to={v1}&path=/home/user/big.txt"
                           "&format=unified"), 413, "EFBIG")
        assert_error(c.get(f"/v1/sandboxes/{sid}/commits?limit=1001"), 400, "INVALID_INPUT")
        assert_error(c.get(f"/v1/sandboxes/{sid}/commits?limit=0"), 400, "INVALID_INPUT")
        assert_error(c.get(f"/v1/sandboxes/{sid}/commits/abc"), 400, "INVALID_INPUT")
        assert_error(c.get(f"/v1/sandboxes/{sid}/files/home?version=-1"), 400, "INVALID_INPUT")


def test_a_kill_during_fork_leaves_no_half_sandbox(fresh_server):
    """kill -9 while forks of a 3,000-file sandbox commit: after the restart every sandbox the
    owner has is either the source or a whole copy of it."""
    srv = fresh_server()
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        exec_ok(c, sid, "cd && mkdir m && for i in $(seq 3000); do echo $i > m/f$i; done")
        source_tree = tree(c, sid)

        def forks():
            try:
                for _ in range(50):
                    c.post(f"/v1/sandboxes/{sid}/fork", json={})
            except httpx.HTTPError:
                pass  # the server was killed under it

        t = threading.Thread(target=forks, daemon=True)
        t.start()
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        t.join(30)
    srv.start()
    with srv.client() as c:
        ids = [s["id"] for s in c.get("/v1/sandboxes").json()["sandboxes"]]
        assert sid in ids and len(ids) >= 2, ids  # some forks made it before the kill
        for other in ids:
            assert tree(c, other) == source_tree, f"sandbox {other} is half a fork"
