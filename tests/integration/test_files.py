"""Files (docs/API.md "Files"): read, write, edit, delete, mkdir, writeFiles, tree; hostile paths."""
import json
import os
import threading

import httpx
import pytest

from conftest import assert_error, raw_http


def f(sid, path):
    return f"/v1/sandboxes/{sid}/files/{path.lstrip('/')}"


def test_put_get_roundtrip_and_stat(api, sandbox):
    assert api.put(f(sandbox, "/home/user/hello.txt"), content=b"hello world").status_code == 204
    r = api.get(f(sandbox, "/home/user/hello.txt"))
    assert r.status_code == 200 and r.content == b"hello world"
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith("attachment")
    st = json.loads(r.headers["x-fs-stat"])
    assert st["kind"] == "file" and st["mode"] == 0o644 and st["size"] == 11
    assert st["mtime"].endswith("Z")


def test_put_creates_parents_and_keeps_mode(api, sandbox):
    assert api.put(f(sandbox, "/a/b/c/d.bin"), content=b"\x00\x01").status_code == 204
    tree = {e["path"]: e for e in api.get(f"/v1/sandboxes/{sandbox}/tree",
                                          params={"prefix": "/a"}).json()}
    assert tree["/a/b"]["kind"] == "dir" and tree["/a/b/c/d.bin"]["size"] == 2
    assert api.get(f(sandbox, "/a/b/c/d.bin")).headers["content-type"] == \
        "application/octet-stream"


def test_percent_encoded_names(api, sandbox):
    assert api.put(f"/v1/sandboxes/{sandbox}/files/home/user/a%20b%23c.txt",
                   content=b"sp").status_code == 204
    names = [e["path"] for e in api.get(f"/v1/sandboxes/{sandbox}/tree",
                                        params={"prefix": "/home/user"}).json()]
    assert "/home/user/a b#c.txt" in names


def test_empty_and_binary_and_large(api, sandbox):
    assert api.put(f(sandbox, "/e"), content=b"").status_code == 204
    assert api.get(f(sandbox, "/e")).content == b""
    blob = os.urandom(5 * 1024 * 1024 + 17)
    assert api.put(f(sandbox, "/big.bin"), content=blob).status_code == 204
    assert api.get(f(sandbox, "/big.bin")).content == blob


def test_range_requests(api, sandbox):
    api.put(f(sandbox, "/r.txt"), content=b"0123456789")
    r = api.get(f(sandbox, "/r.txt"), headers={"Range": "bytes=2-5"})
    assert r.status_code == 206 and r.content == b"2345"
    assert r.headers["content-range"] == "bytes 2-5/10"
    assert api.get(f(sandbox, "/r.txt"), headers={"Range": "bytes=-3"}).content == b"789"
    assert api.get(f(sandbox, "/r.txt"), headers={"Range": "bytes=50-"}).status_code == 416


def test_get_errors(api, sandbox):
    assert_error(api.get(f(sandbox, "/home/user")), 400, "EISDIR")
    assert_error(api.get(f(sandbox, "/nope")), 404, "ENOENT")
    assert_error(api.put(f(sandbox, "/home/user"), content=b"x"), 400, "EISDIR")


def test_hostile_paths_stay_inside(api, sandbox, server):
    api.put(f(sandbox, "/srv/passwd"), content=b"sandbox passwd")
    # .. and %2e%2e never leave the sandbox root
    for p in ["home/%2e%2e/%2e%2e/%2e%2e/srv/passwd", "%2E%2E/%2E%2E/srv/passwd",
              "home/user%2f..%2f..%2f..%2fsrv/passwd"]:
        r = api.get(f"/v1/sandboxes/{sandbox}/files/{p}")
        assert r.status_code == 200 and r.content == b"sandbox passwd", p
    # literal ".." segments (httpx would normalise them away): a raw request
    data = raw_http(server.port,
                    f"GET /v1/sandboxes/{sandbox}/files/home/user/../../../../srv/passwd HTTP/1.1"
                    f"\r\nHost: x\r\nAuthorization: {api.headers['authorization']}\r\n"
                    "Connection: close\r\n\r\n".encode())
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"sandbox passwd")
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/files/home/a%00b"), 400, "INVALID_INPUT")
    assert_error(api.put(f"/v1/sandboxes/{sandbox}/files/" + "x" * 300, content=b"1"), 400)
    assert_error(api.put(f"/v1/sandboxes/{sandbox}/files/" + "a/" * 2100 + "x", content=b"1"),
                 400)


def test_patch_edit(api, sandbox):
    p = f(sandbox, "/home/user/e.py")
    api.put(p, content=b"a = 1\nb = 1\n")
    r = api.patch(p, json={"oldString": "a = 1", "newString": "a = 2"})
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/home/user/e.py", "replacements": 1, "size": 12}
    assert api.get(p).content == b"a = 2\nb = 1\n"
    body = assert_error(api.patch(p, json={"oldString": " = ", "newString": "="}), 409,
                        "EDIT_NOT_UNIQUE")
    assert "2 matches" in body["details"][0]
    assert_error(api.patch(p, json={"oldString": "zzz", "newString": "y"}), 409, "EDIT_NO_MATCH")
    r = api.patch(p, json={"oldString": " = ", "newString": "=", "replaceAll": True})
    assert r.json()["replacements"] == 2 and api.get(p).content == b"a=2\nb=1\n"
    assert_error(api.patch(p, json={"oldString": "", "newString": "x"}), 400, "INVALID_INPUT")
    assert_error(api.patch(p, json={"oldString": "x", "newString": "x"}), 400, "INVALID_INPUT")
    assert_error(api.patch(f(sandbox, "/nope"), json={"oldString": "a", "newString": "b"}), 404,
                 "ENOENT")
    assert_error(api.patch(f(sandbox, "/home"), json={"oldString": "a", "newString": "b"}), 400,
                 "EISDIR")
    api.put(f(sandbox, "/bin.dat"), content=b"\xff\xfe\x00abc")
    assert_error(api.patch(f(sandbox, "/bin.dat"), json={"oldString": "abc", "newString": "d"}),
                 400, "EDIT_BINARY")


def test_patch_keeps_mode(api, server):
    sid = api.post("/v1/sandboxes").json()["id"]
    api.put(f(sid, "/x.sh"), content=b"echo 1")
    api.patch(f(sid, "/x.sh"), json={"oldString": "1", "newString": "2"})
    st = json.loads(api.get(f(sid, "/x.sh")).headers["x-fs-stat"])
    assert st["mode"] == 0o644


def test_delete(api, sandbox):
    api.put(f(sandbox, "/d/x/y.txt"), content=b"1")
    assert_error(api.delete(f(sandbox, "/d")), 409, "ENOTEMPTY")
    assert_error(api.delete(f(sandbox, "/missing")), 404, "ENOENT")
    assert_error(api.delete(f(sandbox, "/d"), params={"recursive": "maybe"}), 400)
    assert api.delete(f(sandbox, "/d/x/y.txt")).status_code == 204
    assert api.delete(f(sandbox, "/d/x")).status_code == 204
    api.put(f(sandbox, "/d/x/z.txt"), content=b"1")
    assert api.delete(f(sandbox, "/d"), params={"recursive": "true"}).status_code == 204
    assert api.get(f"/v1/sandboxes/{sandbox}/tree", params={"prefix": "/d"}).json() == []
    assert_error(api.get(f(sandbox, "/d/x/z.txt")), 404, "ENOENT")


def test_mkdir(api, sandbox):
    url = f"/v1/sandboxes/{sandbox}/mkdir"
    assert api.post(url, json={"path": "/home/user/new"}).status_code == 204
    assert_error(api.post(url, json={"path": "/home/user/new"}), 409, "EEXIST")
    assert_error(api.post(url, json={"path": "/x/y/z"}), 404, "ENOENT")
    assert api.post(url, json={"path": "/x/y/z", "recursive": True}).status_code == 204
    assert api.post(url, json={"path": "/x/y/z", "recursive": True}).status_code == 204
    assert_error(api.post(url, json={"path": "rel"}), 400, "INVALID_INPUT")
    assert_error(api.post(url, json={}), 400, "INVALID_INPUT")
    api.put(f(sandbox, "/afile"), content=b"1")
    assert_error(api.post(url, json={"path": "/afile/sub"}), 400, "ENOTDIR")
    tree = {e["path"]: e["kind"] for e in api.get(f"/v1/sandboxes/{sandbox}/tree",
                                                  params={"prefix": "/x"}).json()}
    assert tree == {"/x/y": "dir", "/x/y/z": "dir"}


def test_write_files_all_or_nothing(api, sandbox):
    url = f"/v1/sandboxes/{sandbox}/writeFiles"
    assert api.post(url, json={"files": {"/w/1.txt": "one", "/w/sub/2.txt": "two"}}
                    ).status_code == 204
    assert api.get(f(sandbox, "/w/sub/2.txt")).content == b"two"
    body = assert_error(api.post(url, json={"files": {"/w/3.txt": "x", "bad": "y"}}), 400,
                        "INVALID_INPUT")
    assert any("bad" in d for d in body["details"])
    assert_error(api.post(url, json={"files": {"/w/4.txt": "x", "/w": "dir!"}}), 400, "EISDIR")
    assert_error(api.get(f(sandbox, "/w/3.txt")), 404)
    assert_error(api.get(f(sandbox, "/w/4.txt")), 404)
    assert_error(api.post(url, json={}), 400, "INVALID_INPUT")


def test_write_files_limit(fresh_server):
    s = fresh_server({"MAX_BULK_WRITE_FILES": "3"})
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        files = {f"/f{i}": "x" for i in range(4)}
        assert_error(c.post(f"/v1/sandboxes/{sid}/writeFiles", json={"files": files}), 413)


def test_tree(api, sandbox):
    api.post(f"/v1/sandboxes/{sandbox}/writeFiles",
             json={"files": {"/t/a.txt": "1", "/t/d/b.txt": "22", "/t/d/e/c.txt": "333"}})
    url = f"/v1/sandboxes/{sandbox}/tree"
    all_ = api.get(url, params={"prefix": "/t"}).json()
    assert [e["path"] for e in all_] == ["/t/a.txt", "/t/d", "/t/d/b.txt", "/t/d/e",
                                         "/t/d/e/c.txt"]
    e = all_[0]
    assert set(e) == {"path", "kind", "size", "mtime", "mode"} and e["size"] == 1
    assert [e["path"] for e in api.get(url, params={"prefix": "/t", "depth": 1}).json()] == \
        ["/t/a.txt", "/t/d"]
    assert api.get(url, params={"prefix": "/nothing"}).json() == []
    for bad in ["0", "-1", "x", "1.5"]:
        assert_error(api.get(url, params={"prefix": "/t", "depth": bad}), 400)


def test_tree_limit(fresh_server):
    s = fresh_server({"MAX_TREE_ENTRIES": "3"})
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        c.post(f"/v1/sandboxes/{sid}/writeFiles", json={"files": {f"/q/{i}": "x"
                                                                   for i in range(5)}})
        body = assert_error(c.get(f"/v1/sandboxes/{sid}/tree", params={"prefix": "/q"}), 413)
        assert "narrow" in body["error"]


def test_file_too_large(fresh_server):
    s = fresh_server({"MAX_FILE_WRITE_BYTES": "1000"})
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        assert_error(c.put(f(sid, "/big"), content=b"x" * 2000), 413, "PAYLOAD_TOO_LARGE")

        def chunks():
            for _ in range(4):
                yield b"y" * 500
        r = c.put(f(sid, "/big2"), content=chunks())  # chunked: no Content-Length
        assert_error(r, 413, "PAYLOAD_TOO_LARGE")
        assert_error(c.get(f(sid, "/big2")), 404)


def test_quota(fresh_server):
    s = fresh_server({"SANDBOX_QUOTA_BYTES": "10000"})
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        assert c.put(f(sid, "/a"), content=b"x" * 6000).status_code == 204
        body = assert_error(c.put(f(sid, "/b"), content=b"x" * 6000), 413, "EQUOTA")
        assert any("10000" in d for d in body["details"])
        assert_error(c.get(f(sid, "/b")), 404)
        assert c.put(f(sid, "/a"), content=b"x" * 9000).status_code == 204  # replace fits


def test_concurrent_writers_same_path(api, sandbox):
    p = f(sandbox, "/race.txt")
    payloads = [bytes([65 + i]) * 200000 for i in range(8)]
    errors = []

    def put(data):
        r = api.put(p, content=data)
        if r.status_code != 204:
            errors.append(r.status_code)

    threads = [threading.Thread(target=put, args=(d,)) for d in payloads]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert api.get(p).content in payloads  # one whole write wins, never a mix
