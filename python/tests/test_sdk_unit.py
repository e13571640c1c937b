"""Pure unit tests: error mapping, Retry-After, retry policy, paths, request bodies, models."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import time
import uuid

import httpx
import pytest

import sqlfs
from sqlfs import _base_client as base
from sqlfs import _calls as calls
from sqlfs._exceptions import error_from_response, parse_retry_after


def err(status: int, body: object = None, headers: dict = None) -> sqlfs.SQLFSError:
    content = json.dumps(body).encode() if body is not None else b""
    return error_from_response(status, httpx.Headers(headers or {}), content)


@pytest.mark.parametrize(
    "status,cls",
    [
        (400, sqlfs.ValidationError),
        (401, sqlfs.AuthError),
        (403, sqlfs.AuthError),
        (404, sqlfs.NotFoundError),
        (408, sqlfs.ExecTimeoutError),
        (409, sqlfs.ConflictError),
        (413, sqlfs.PayloadTooLargeError),
        (415, sqlfs.UnsupportedMediaTypeError),
        (422, sqlfs.ReadOnlyViolationError),
        (429, sqlfs.RateLimitError),
        (500, sqlfs.ServerError),
        (502, sqlfs.ServerError),
        (503, sqlfs.ServerError),
        (405, sqlfs.SQLFSError),
    ],
)
def test_status_mapping(status: int, cls: type) -> None:
    e = err(status, {"error": "msg", "code": "CODE", "details": ["d1", "d2"], "retryable": True})
    assert type(e) is cls
    assert isinstance(e, sqlfs.SQLFSError)
    assert (e.status, e.code, e.details, e.retryable, e.message) == (status, "CODE", ["d1", "d2"], True, "msg")
    assert "CODE" in str(e) and "d1" in str(e)


def test_subclass_choices() -> None:
    assert issubclass(sqlfs.PayloadTooLargeError, sqlfs.ValidationError)
    assert issubclass(sqlfs.UnsupportedMediaTypeError, sqlfs.ValidationError)
    assert not issubclass(sqlfs.ReadOnlyViolationError, sqlfs.ValidationError)
    assert issubclass(sqlfs.TransportError, sqlfs.SQLFSError)


def test_non_json_and_empty_bodies() -> None:
    e = error_from_response(502, httpx.Headers({}), b"<html>bad gateway</html>")
    assert isinstance(e, sqlfs.ServerError) and e.code == "HTTP_502" and "bad gateway" in e.message
    assert e.details == [] and e.body is None and not e.retryable
    e = error_from_response(404, httpx.Headers({}), b"")
    assert isinstance(e, sqlfs.NotFoundError) and e.message == "HTTP 404"


def test_exec_timeout_fields() -> None:
    e = err(408, {"error": "exec timed out after 500 ms", "code": "EXEC_TIMEOUT", "timedOut": True,
                  "durationMs": 512, "stdout": "part", "stderr": "e"})
    assert isinstance(e, sqlfs.ExecTimeoutError)
    assert (e.duration_ms, e.stdout, e.stderr, e.code) == (512, "part", "e", "EXEC_TIMEOUT")


def test_rate_limit_retry_after() -> None:
    e = err(429, {"error": "slow down", "code": "RATE_LIMITED"}, {"Retry-After": "17"})
    assert isinstance(e, sqlfs.RateLimitError) and e.retry_after == 17.0
    assert err(429, {"code": "RATE_LIMITED"}).retry_after is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(date, now=now) or 0) <= 31


def call(retry: calls.Retry) -> calls.Call:
    return calls.Call("GET", "/x", retry=retry)


def test_retry_policy_on_responses() -> None:
    r500 = err(500, {"code": "INTERNAL_ERROR"})
    r503 = err(503, {"code": "EBUSY", "retryable": True})
    r429 = err(429, {"code": "RATE_LIMITED"})
    r404 = err(404, {"code": "ENOENT"})
    for e in (r500, r503, r429):
        assert base.should_retry_response(call(calls.Retry.IDEMPOTENT), e)
        assert base.should_retry_response(call(calls.Retry.ATOMIC), e)
        assert not base.should_retry_response(call(calls.Retry.NONE), e)
    assert not base.should_retry_response(call(calls.Retry.IDEMPOTENT), r404)
    assert not base.should_retry_response(call(calls.Retry.SAFE_ONLY), r500)
    assert base.should_retry_response(call(calls.Retry.SAFE_ONLY), r503)
    assert base.should_retry_response(call(calls.Retry.SAFE_ONLY), r429)
    for status in (400, 401, 403, 408, 409, 413, 415, 422):
        assert not base.should_retry_response(call(calls.Retry.IDEMPOTENT), err(status, {"code": "X"}))


def test_retry_policy_on_transport_errors() -> None:
    req = httpx.Request("GET", "http://x")
    unsent = httpx.ConnectError("refused", request=req)
    sent = httpx.ReadError("reset", request=req)
    assert base.should_retry_transport(call(calls.Retry.SAFE_ONLY), unsent)
    assert not base.should_retry_transport(call(calls.Retry.SAFE_ONLY), sent)
    assert not base.should_retry_transport(call(calls.Retry.ATOMIC), sent)
    assert base.should_retry_transport(call(calls.Retry.IDEMPOTENT), sent)
    assert not base.should_retry_transport(call(calls.Retry.NONE), unsent)


def test_exec_retry_modes() -> None:
    def mode(read_only: bool, retry_exec: bool) -> calls.Retry:
        return calls.exec_call("id", "true", None, None, None, False, read_only, None, retry_exec).retry

    assert mode(False, False) is calls.Retry.SAFE_ONLY
    assert mode(True, False) is calls.Retry.IDEMPOTENT
    assert mode(False, True) is calls.Retry.IDEMPOTENT
    assert calls.stream_call("id", "true", None, None, None, False, False, None).retry is calls.Retry.NONE
    assert calls.export_call("id", None, True).retry is calls.Retry.NONE
    assert calls.export_call("id", None, False).retry is calls.Retry.IDEMPOTENT


def test_backoff_grows_and_is_capped() -> None:
    for attempt in range(10):
        d = base.backoff_delay(attempt)
        top = min(base.BACKOFF_CAP, base.BACKOFF_BASE * 2 ** attempt)
        assert top / 2 <= d <= top


def test_file_url_path() -> None:
    assert calls.file_url_path("/home/user/a b.txt") == "home/user/a%20b.txt"
    assert calls.file_url_path("/a/%/#/?/\u00e9") == "a/%25/%23/%3F/%C3%A9"
    with pytest.raises(ValueError):
        calls.file_url_path("relative/path")
    with pytest.raises(ValueError):
        calls.file_url_path("/a\0b")
    # names that are not UTF-8: surrogate escapes or bytes, percent-encoded byte by byte
    assert calls.file_url_path("/home/\udcff/a\udcfeb") == "home/%FF/a%FEb"
    assert calls.file_url_path(b"/home/\xff/a\xfeb") == "home/%FF/a%FEb"
    with pytest.raises(ValueError):
        calls.file_url_path(b"rel")
    with pytest.raises(TypeError):
        calls.file_url_path(7)  # type: ignore[arg-type]
    assert calls.tree_call("id", "/d\udcff x", 2).path == "/v1/sandboxes/id/tree?prefix=/d%FF%20x&depth=2"
    assert calls.tree_call("id", None, None).path == "/v1/sandboxes/id/tree"
    assert calls.export_call("id", b"/\xfe", False).path == "/v1/sandboxes/id/export?basePath=/%FE"
    assert calls.ingest_archive_call("id", b"", "/\udcff", "a.tar").data == {"basePath": b"/\xff"}
    assert calls.parse_read(b"/x\xff")  # builds
    with pytest.raises(ValueError):
        calls.mkdir_call("id", "/\udcff", False)
    with pytest.raises(ValueError):
        calls.exec_body("ls", b"/\xff", None, None, False, False, None)


def test_models_decode_path_bytes() -> None:
    import base64

    enc = base64.b64encode(b"/home/user/d\xff").decode()
    e = sqlfs.TreeEntry.from_json({"path": "/home/user/d\ufffd", "pathBytes": enc, "kind": "dir"})
    assert e.path == "/home/user/d\udcff" and e.raw["path"] == "/home/user/d\ufffd"
    assert sqlfs.TreeEntry.from_json({"path": "/ok", "kind": "file"}).path == "/ok"
    rec = sqlfs.SandboxRecord.from_json({"id": "s", "cwd": "/x\ufffd", "cwdBytes": "L3j/"})
    assert rec.cwd == "/x\udcff" and rec.get("cwd") == "/x\ufffd"
    res = sqlfs.IngestResult.from_json({"status": "ok", "basePath": "/\ufffd", "basePathBytes": "L/4="})
    assert res.base_path == "/\udcfe"
    ed = sqlfs.EditResult.from_json({"path": "/\ufffd", "pathBytes": "L/4=", "replacements": 1, "size": 1})
    assert ed.path == "/\udcfe"


def test_exec_body_camel_case() -> None:
    body = calls.exec_body("ls", "/tmp", {"A": "1"}, 500, True, True, "in")
    assert body == {"script": "ls", "cwd": "/tmp", "env": {"A": "1"}, "timeoutMs": 500,
                    "debug": True, "readOnly": True, "stdin": "in"}
    assert calls.exec_body("ls", None, None, None, False, False, None) == {"script": "ls"}


def test_batch_body() -> None:
    c = calls.batch_call("id", ["a", {"id": "x", "script": "b"}], 1000, True, True, 50, False)
    assert c.json == {"scripts": [{"id": "0", "script": "a"}, {"id": "x", "script": "b"}],
                      "timeoutMs": 1000, "perScriptTimeoutMs": 50, "readOnly": True, "stopOnError": True}
    with pytest.raises(ValueError):
        calls.batch_call("id", [{"id": "x"}], None, False, None, None, False)


def test_ingest_files_body_is_base64() -> None:
    c = calls.ingest_files_call("id", {"a.bin": b"\x00\xff", "t.txt": "h\u00e9"}, "/home/user/p")
    assert c.json["basePath"] == "/home/user/p"
    assert base64.b64decode(c.json["files"]["a.bin"]) == b"\x00\xff"
    assert base64.b64decode(c.json["files"]["t.txt"]) == "h\u00e9".encode()


def test_write_files_rejects_binary() -> None:
    assert calls.write_files_call("id", {"/a": b"text"}).json == {"files": {"/a": "text"}}
    with pytest.raises(ValueError):
        calls.write_files_call("id", {"/a": b"\xff\xfe"})


def test_ingest_archive_rewind() -> None:
    f = io.BytesIO(b"0123456789")
    f.read(2)
    c = calls.ingest_archive_call("id", f, "/x", "a.tar")
    f.read()
    assert c.rewind is not None and c.rewind() and f.tell() == 2
    assert c.data == {"basePath": b"/x"} and "archive" in c.files


def test_make_timeout_extends_read() -> None:
    t = base.make_timeout(10.0, 45.0)
    assert t.read == 45.0 and t.connect == 10.0
    assert base.make_timeout(100.0, 45.0).read == 100.0
    custom = httpx.Timeout(5.0, connect=1.0)
    assert base.make_timeout(custom, 20.0).connect == 1.0 and base.make_timeout(custom, 20.0).read == 20.0


def test_models_keep_unknown_fields() -> None:
    rec = sqlfs.SandboxRecord.from_json({
        "id": "i", "name": None, "owner": "default/a", "createdAt": "2026-01-01T00:00:00.000Z",
        "lastUsedAt": None, "python": True, "javascript": False, "network": False,
        "fileCount": 3, "sizeBytes": 10, "cwd": "/home/user", "someNewField": [1],
    })
    assert rec.python and rec.file_count == 3 and rec.size_bytes == 10
    assert rec.cwd == "/home/user" and rec.some_new_field == [1] and rec.get("someNewField") == [1]
    assert rec.extra == {"cwd": "/home/user", "someNewField": [1]}
    with pytest.raises(AttributeError):
        rec.nope
    info = sqlfs.SandboxInfo.from_json({"id": "j"})
    assert isinstance(info, sqlfs.SandboxRecord) and info.name is None and not info.python


def test_exec_result() -> None:
    r = sqlfs.ExecResult.from_json({"stdout": "o", "stderr": "e", "exitCode": 0, "exitSignal": None,
                                    "timedOut": False, "durationMs": 5, "stdoutTruncated": True})
    assert r.ok and r.error == "e" and r.duration_ms == 5 and r.stdout_truncated and not r.stderr_truncated
    r = sqlfs.ExecResult.from_json({"stdout": "", "stderr": "", "exitCode": 137, "exitSignal": "SIGKILL"})
    assert not r.ok and r.exit_signal == "SIGKILL"


def test_batch_result() -> None:
    r = sqlfs.BatchExecResult.from_json({"id": "a", "stdout": "", "stderr": "", "exitCode": -1,
                                         "durationMs": 3, "error": "timeout"})
    assert r.timed_out and not r.ok and r.error == "timeout"


def test_client_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SQLFS_TOKEN", "AUTH_SECRET", "SQLFS_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError):
        sqlfs.Client(base_url="http://x", auth_secret="s")  # no sub
    with pytest.raises(ValueError):
        sqlfs.Client(base_url="http://x")  # no credentials
    c = sqlfs.Client(base_url="http://x/", token="tok")
    assert c.base_url == "http://x" and c.token == "tok"
    c.close()
    with pytest.raises(ValueError):
        sqlfs.Client(base_url="http://x", token="t").sandboxes.attach("")


def test_write_call_streams_file_objects() -> None:
    f = io.BytesIO(b"x" * 10)
    c = calls.write_call("id", "/a", f)
    assert c.content is None and c.stream_body is f
    assert b"".join(base.iter_file(f)) == b"x" * 10
    assert c.rewind is not None and c.rewind() and f.tell() == 0
    assert calls.write_call("id", "/a", "t\u00e9").content == "t\u00e9".encode()
    with pytest.raises(TypeError):
        calls.write_call("id", "/a", 5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# History: error mapping, requests, models, and every method against an in-memory fake of the
# routes (httpx.MockTransport), sync and async.


def test_version_not_found_mapping() -> None:
    e = err(404, {"error": "no such version", "code": "VERSION_NOT_FOUND"})
    assert type(e) is sqlfs.VersionNotFoundError and isinstance(e, sqlfs.NotFoundError)
    assert (e.status, e.code) == (404, "VERSION_NOT_FOUND")
    assert type(err(404, {"code": "ENOENT"})) is sqlfs.NotFoundError
    # a code selects a subclass of its status's class only
    assert type(err(400, {"code": "VERSION_NOT_FOUND"})) is sqlfs.ValidationError


def test_history_calls() -> None:
    assert calls.read_call("id", "/a b", 7).path == "/v1/sandboxes/id/files/a%20b?version=7"
    assert calls.read_call("id", "/a").path == "/v1/sandboxes/id/files/a"
    assert calls.tree_call("id", "/h", 1, 3).path == "/v1/sandboxes/id/tree?prefix=/h&depth=1&version=3"
    assert calls.tree_call("id", None, None, 3).path == "/v1/sandboxes/id/tree?version=3"
    assert calls.commits_call("id", None, None).path == "/v1/sandboxes/id/commits"
    assert calls.commits_call("id", 5, 40).path == "/v1/sandboxes/id/commits?limit=5&before=40"
    assert calls.commit_call("id", 12).path == "/v1/sandboxes/id/commits/12"
    assert calls.diff_call("id", 1, 2, None).path == "/v1/sandboxes/id/diff?from=1&to=2"
    assert (calls.diff_call("id", 1, 2, "/home/a b\udcff").path
            == "/v1/sandboxes/id/diff?from=1&to=2&path=/home/a%20b%FF&format=unified")
    with pytest.raises(ValueError):
        calls.diff_call("id", 1, 2, "relative")
    r = calls.restore_call("id", 4, None)
    assert (r.method, r.path, r.json, r.retry) == ("POST", "/v1/sandboxes/id/restore", {"version": 4},
                                                    calls.Retry.ATOMIC)
    assert calls.restore_call("id", None, "base").json == {"snapshot": "base"}
    with pytest.raises(ValueError):
        calls.restore_call("id", None, None)
    with pytest.raises(ValueError):
        calls.restore_call("id", 1, "base")
    f = calls.fork_call("id", None, None, None)
    assert (f.method, f.path, f.json, f.expect) == ("POST", "/v1/sandboxes/id/fork", {}, (201, 200))
    assert calls.fork_call("id", 3, "alt", None).json == {"version": 3, "name": "alt"}
    assert calls.fork_call("id", None, None, "s").json == {"snapshot": "s"}
    with pytest.raises(ValueError):
        calls.fork_call("id", 3, None, "s")
    s = calls.snapshot_call("id", "base", None)
    assert (s.method, s.path, s.json) == ("POST", "/v1/sandboxes/id/snapshots", {"name": "base"})
    assert calls.snapshot_call("id", "b", 9).json == {"name": "b", "version": 9}
    assert calls.snapshots_call("id").path == "/v1/sandboxes/id/snapshots"
    d = calls.delete_snapshot_call("id", "a/b c")
    assert (d.method, d.path) == ("DELETE", "/v1/sandboxes/id/snapshots/a%2Fb%20c")
    with pytest.raises(ValueError):
        calls.delete_snapshot_call("id", "")
    for bad in (True, "3", 1.5):
        with pytest.raises(TypeError):
            calls.commit_call("id", bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            calls.read_call("id", "/a", bad)  # type: ignore[arg-type]


COMMIT_JSON = {
    "version": 5, "parent": 4, "at": "2026-01-02T03:04:05.000Z", "kind": "exec",
    "summary": "echo two > a.txt", "execId": "ex1",
    "changes": {"added": 1, "modified": 2, "deleted": 0}, "bytesAdded": 12,
}


def test_history_models() -> None:
    c = sqlfs.Commit.from_json(COMMIT_JSON)
    assert (c.version, c.parent, c.at, c.kind, c.summary, c.exec_id) == (
        5, 4, "2026-01-02T03:04:05.000Z", "exec", "echo two > a.txt", "ex1")
    assert (c.added, c.modified, c.deleted, c.bytes_added, c.paths) == (1, 2, 0, 12, None)
    assert c.changes == {"added": 1, "modified": 2, "deleted": 0}  # the wire object, through raw
    first = sqlfs.Commit.from_json({"version": 1, "parent": None, "at": "t", "kind": "create",
                                    "summary": "", "execId": None,
                                    "changes": {"added": 3, "modified": 0, "deleted": 0},
                                    "bytesAdded": 0, "paths": []})
    assert first.parent is None and first.exec_id is None and first.paths == []
    enc = base64.b64encode(b"/home/user/\xff").decode()
    full = sqlfs.Commit.from_json({**COMMIT_JSON, "paths": [
        {"path": "/home/user/a.txt", "change": "modified", "kind": "file", "size": 4},
        {"path": "/home/user/\ufffd", "pathBytes": enc, "change": "deleted", "kind": "dir", "size": 0},
    ]})
    assert full.paths is not None and [p.path for p in full.paths] == ["/home/user/a.txt", "/home/user/\udcff"]
    assert (full.paths[0].change, full.paths[0].kind, full.paths[0].size) == ("modified", "file", 4)
    assert full.paths[1].raw["path"] == "/home/user/\ufffd"
    page = sqlfs.CommitPage.from_json({"commits": [COMMIT_JSON, {**COMMIT_JSON, "version": 4}], "next": 4})
    assert len(page) == 2 and page[0].version == 5 and [x.version for x in page] == [5, 4] and page.next == 4
    assert sqlfs.CommitPage.from_json({"commits": [], "next": None}).next is None
    d = sqlfs.Diff.from_json({"from": 2, "to": 5, "paths": [{"path": "/x", "change": "added",
                                                              "kind": "symlink", "size": 1}]})
    assert (d.from_version, d.to_version, d.paths[0].kind) == (2, 5, "symlink")
    r = sqlfs.RestoreResult.from_json({"version": 9, "restoredFrom": 3})
    assert (r.version, r.restored_from) == (9, 3)
    s = sqlfs.Snapshot.from_json({"name": "base", "version": 3, "at": "t"})
    assert (s.name, s.version, s.at) == ("base", 3, "t")


def test_undo_target() -> None:
    assert calls.undo_target(sqlfs.CommitPage.from_json({"commits": [COMMIT_JSON], "next": 4})) == 4
    root = {**COMMIT_JSON, "version": 1, "parent": None, "kind": "fork"}
    with pytest.raises(sqlfs.VersionNotFoundError, match="nothing to undo.*version 1 \\(fork\\)") as ei:
        calls.undo_target(sqlfs.CommitPage.from_json({"commits": [root], "next": None}))
    assert ei.value.status is None and ei.value.code == "VERSION_NOT_FOUND"
    with pytest.raises(sqlfs.VersionNotFoundError):
        calls.undo_target(sqlfs.CommitPage.from_json({"commits": [], "next": None}))


class FakeHistory:
    """The history routes of one sandbox ("sb"), as the contract describes them, in memory."""

    def __init__(self) -> None:
        self.requests: list = []
        self.versions = {1: {"/home/user/a.txt": b"one\n"}}
        self.commits = [{"version": 1, "parent": None, "kind": "create"}]
        self.snaps: dict = {}

    def head(self) -> int:
        return self.commits[-1]["version"]

    def add(self, tree: dict, kind: str) -> int:
        v = self.head() + 1
        self.versions[v] = dict(tree)
        self.commits.append({"version": v, "parent": v - 1, "kind": kind})
        return v

    def commit_json(self, c: dict) -> dict:
        return {**c, "at": "2026-01-01T00:00:00.000Z", "summary": c["kind"],
                "execId": "e" if c["kind"] == "exec" else None,
                "changes": {"added": 0, "modified": 1, "deleted": 0}, "bytesAdded": 4}

    def paths(self, a: int, b: int) -> list:
        ta, tb = self.versions[a], self.versions[b]
        out = []
        for p in sorted(set(ta) | set(tb)):
            if p not in ta:
                out.append({"path": p, "change": "added", "kind": "file", "size": len(tb[p])})
            elif p not in tb:
                out.append({"path": p, "change": "deleted", "kind": "file", "size": len(ta[p])})
            elif ta[p] != tb[p]:
                out.append({"path": p, "change": "modified", "kind": "file", "size": len(tb[p])})
        return out

    def version(self, raw: object) -> int:
        v = int(raw)  # type: ignore[arg-type]
        if v not in self.versions:
            raise KeyError(v)
        return v

    def handle(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        url = req.url
        path = url.path
        q = dict(url.params)
        body = json.loads(req.content) if req.content else None
        prefix = "/v1/sandboxes/sb"
        assert req.headers["authorization"] == "Bearer tok"
        assert path.startswith(prefix), path
        route = path[len(prefix):]
        try:
            if req.method == "GET" and route == "/commits":
                before = int(q.get("before", 1 << 62))
                limit = int(q.get("limit", 100))
                if not 1 <= limit <= 1000:
                    return httpx.Response(400, json={"error": "limit", "code": "EINVAL"})
                older = [c for c in reversed(self.commits) if c["version"] < before]
                page = older[:limit]
                nxt = page[-1]["version"] if len(older) > limit else None
                return httpx.Response(200, json={"commits": [self.commit_json(c) for c in page], "next": nxt})
            if req.method == "GET" and route.startswith("/commits/"):
                v = self.version(route.split("/")[-1])
                c = next(c for c in self.commits if c["version"] == v)
                paths = self.paths(c["parent"], v) if c["parent"] else []
                return httpx.Response(200, json={**self.commit_json(c), "paths": paths})
            if req.method == "GET" and route == "/diff":
                a, b = self.version(q["from"]), self.version(q["to"])
                if "path" in q:
                    assert q["format"] == "unified"
                    p = q["path"]
                    text = (f"--- a{p}\n+++ b{p}\n@@ -1 +1 @@\n-" + self.versions[a][p].decode()
                            + "+" + self.versions[b][p].decode())
                    return httpx.Response(200, content=text.encode(), headers={"Content-Type": "text/x-diff"})
                return httpx.Response(200, json={"from": a, "to": b, "paths": self.paths(a, b)})
            if req.method == "GET" and route.startswith("/files/"):
                v = self.version(q.get("version", self.head()))
                data = self.versions[v].get("/" + route[len("/files/"):])
                if data is None:
                    return httpx.Response(404, json={"error": "no such file", "code": "ENOENT"})
                return httpx.Response(200, content=data)
            if req.method == "GET" and route == "/tree":
                v = self.version(q.get("version", self.head()))
                entries = [{"path": p, "kind": "file", "size": len(d)} for p, d in sorted(self.versions[v].items())]
                return httpx.Response(200, json={"entries": entries})
            if req.method == "POST" and route == "/restore":
                src = self.snaps[body["snapshot"]]["version"] if "snapshot" in body else self.version(body["version"])
                v = self.add(self.versions[src], "restore")
                return httpx.Response(200, json={"version": v, "restoredFrom": src})
            if req.method == "POST" and route == "/fork":
                return httpx.Response(201, json={"id": "sb2", "name": body.get("name"), "version": 1})
            if req.method == "POST" and route == "/snapshots":
                if body["name"] in self.snaps:
                    return httpx.Response(409, json={"error": "exists", "code": "EEXIST"})
                v = self.version(body.get("version", self.head()))
                self.snaps[body["name"]] = {"name": body["name"], "version": v, "at": "t"}
                return httpx.Response(201, json=self.snaps[body["name"]])
            if req.method == "GET" and route == "/snapshots":
                return httpx.Response(200, json={"snapshots": list(self.snaps.values())})
            if req.method == "DELETE" and route.startswith("/snapshots/"):
                name = route[len("/snapshots/"):]
                if self.snaps.pop(name, None) is None:
                    return httpx.Response(404, json={"error": "no such snapshot", "code": "ENOENT"})
                return httpx.Response(204)
        except KeyError:
            return httpx.Response(404, json={"error": "no such version", "code": "VERSION_NOT_FOUND"})
        return httpx.Response(404, json={"error": "no such route", "code": "ENOROUTE"})


def check_history_walk(fake: FakeHistory, results: dict) -> None:
    """What the walk in test_history_methods_on_a_fake_server saw (sync and async alike)."""
    assert [c.version for c in results["all"]] == [3, 2, 1]
    assert results["all"][2].kind == "create" and results["all"][2].parent is None
    assert [c.version for c in results["page1"]] == [3, 2] and results["page1"].next == 2
    assert [c.version for c in results["page2"]] == [1] and results["page2"].next is None
    c3 = results["commit3"]
    assert c3.version == 3 and c3.parent == 2 and c3.exec_id == "e"
    assert c3.paths is not None and [(p.path, p.change) for p in c3.paths] == [
        ("/home/user/a.txt", "modified"), ("/home/user/b.txt", "added")]
    d = results["diff"]
    assert isinstance(d, sqlfs.Diff) and (d.from_version, d.to_version) == (1, 3)
    assert [(p.path, p.change) for p in d.paths] == [
        ("/home/user/a.txt", "modified"), ("/home/user/b.txt", "added"), ("/home/user/x", "added")]
    assert "-one\n+two\n" in results["unified"]
    assert results["old"] == "one\n" and results["now"] == "two\n" and results["stream"] == b"one\n"
    assert [e.path for e in results["tree1"]] == ["/home/user/a.txt"]
    assert results["restore"].restored_from == 1 and results["restore"].version == 4
    assert results["undo"].restored_from == 3 and results["undo"].version == 5
    assert results["fork"].id == "sb2" and results["fork"].name == "alt" and results["fork"].record is not None
    assert [s.name for s in results["snaps"]] == ["base", "old"] and results["snaps"][1].version == 2
    assert [s.name for s in results["after_delete"]] == ["base"]
    sent = [(r.method, r.url.path) for r in fake.requests]
    assert ("DELETE", "/v1/sandboxes/sb/snapshots/old") in sent
    bodies = [json.loads(r.content) for r in fake.requests if r.url.path.endswith("/fork")]
    assert bodies == [{"version": 2, "name": "alt"}]


def make_fake() -> FakeHistory:
    fake = FakeHistory()
    fake.add({"/home/user/a.txt": b"one\n", "/home/user/x": b"x"}, "files")  # 2
    fake.add({"/home/user/a.txt": b"two\n", "/home/user/b.txt": b"b", "/home/user/x": b"x"}, "exec")  # 3
    return fake


def test_history_methods_on_a_fake_server() -> None:
    fake = make_fake()
    with sqlfs.Client(base_url="http://fake", token="tok", max_retries=0,
                      http_client=httpx.Client(transport=httpx.MockTransport(fake.handle))) as fs:
        sb = fs.sandboxes.attach("sb")
        r: dict = {}
        r["all"] = sb.commits().commits
        r["page1"] = sb.commits(limit=2)
        r["page2"] = sb.commits(limit=2, before=r["page1"].next)
        r["commit3"] = sb.commit(3)
        r["diff"] = sb.diff(1, 3)
        r["unified"] = sb.diff(1, 3, path="/home/user/a.txt")
        r["old"] = sb.fs.read_text("/home/user/a.txt", version=1)
        r["now"] = sb.fs.read("/home/user/a.txt").text
        r["stream"] = b"".join(sb.fs.read_stream("/home/user/a.txt", version=2))
        r["tree1"] = sb.fs.tree(version=1)
        r["restore"] = sb.restore(version=1)
        r["undo"] = sb.undo()
        sb.snapshot("base")
        sb.snapshot("old", version=2)
        r["snaps"] = sb.snapshots()
        with pytest.raises(sqlfs.ConflictError):
            sb.snapshot("base")
        r["fork"] = sb.fork(version=2, name="alt")
        assert isinstance(r["fork"], sqlfs.Sandbox)
        sb.delete_snapshot("old")
        r["after_delete"] = sb.snapshots()
        with pytest.raises(sqlfs.NotFoundError):
            sb.delete_snapshot("old")
        with pytest.raises(sqlfs.VersionNotFoundError):
            sb.commit(99)
        with pytest.raises(sqlfs.VersionNotFoundError):
            sb.fs.read("/home/user/a.txt", version=99)
        with pytest.raises(ValueError):
            sb.restore()
        fake.commits = fake.commits[:1]
        with pytest.raises(sqlfs.VersionNotFoundError, match="nothing to undo"):
            sb.undo()
    check_history_walk(fake, r)


def test_async_history_methods_on_a_fake_server() -> None:
    import asyncio

    fake = make_fake()

    async def main() -> dict:
        http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handle))
        async with sqlfs.AsyncClient(base_url="http://fake", token="tok", max_retries=0, http_client=http) as fs:
            sb = fs.sandboxes.attach("sb")
            r: dict = {}
            r["all"] = (await sb.commits()).commits
            r["page1"] = await sb.commits(limit=2)
            r["page2"] = await sb.commits(limit=2, before=r["page1"].next)
            r["commit3"] = await sb.commit(3)
            r["diff"] = await sb.diff(1, 3)
            r["unified"] = await sb.diff(1, 3, path="/home/user/a.txt")
            r["old"] = await sb.fs.read_text("/home/user/a.txt", version=1)
            r["now"] = (await sb.fs.read("/home/user/a.txt")).text
            r["stream"] = b"".join([c async for c in sb.fs.read_stream("/home/user/a.txt", version=2)])
            r["tree1"] = await sb.fs.tree(version=1)
            r["restore"] = await sb.restore(version=1)
            r["undo"] = await sb.undo()
            await sb.snapshot("base")
            await sb.snapshot("old", version=2)
            r["snaps"] = await sb.snapshots()
            with pytest.raises(sqlfs.ConflictError):
                await sb.snapshot("base")
            r["fork"] = await sb.fork(version=2, name="alt")
            assert isinstance(r["fork"], sqlfs.AsyncSandbox)
            await sb.delete_snapshot("old")
            r["after_delete"] = await sb.snapshots()
            with pytest.raises(sqlfs.VersionNotFoundError):
                await sb.fs.tree(version=99)
            fake.commits = fake.commits[:1]
            with pytest.raises(sqlfs.VersionNotFoundError, match="nothing to undo"):
                await sb.undo()
            await http.aclose()
            return r

    check_history_walk(fake, asyncio.run(main()))


# ---------------------------------------------------------------------------------------------
# Exec journal and Idempotency-Key (no server)


def test_journal_and_idempotency_error_mapping() -> None:
    cases = [
        (404, "EXEC_NOT_FOUND", sqlfs.ExecNotFoundError),
        (422, "IDEMPOTENCY_MISMATCH", sqlfs.IdempotencyMismatchError),
        (409, "IDEMPOTENCY_IN_PROGRESS", sqlfs.IdempotencyInProgressError),
        (409, "IDEMPOTENCY_ANSWER_UNAVAILABLE", sqlfs.IdempotencyAnswerUnavailableError),
        (422, "EREADONLY_VIOLATION", sqlfs.ReadOnlyViolationError),
        (400, "IDEMPOTENCY_MISMATCH", sqlfs.ValidationError),  # a code only counts with its status
    ]
    for status, code, cls in cases:
        e = err(status, {"error": "m", "code": code, "retryable": code.endswith("PROGRESS")})
        assert type(e) is cls, (status, code)
    assert issubclass(sqlfs.ExecNotFoundError, sqlfs.NotFoundError)
    assert issubclass(sqlfs.IdempotencyInProgressError, sqlfs.ConflictError)
    assert issubclass(sqlfs.IdempotencyAnswerUnavailableError, sqlfs.ConflictError)
    for cls in (sqlfs.IdempotencyMismatchError, sqlfs.IdempotencyInProgressError,
                sqlfs.IdempotencyAnswerUnavailableError):
        assert issubclass(cls, sqlfs.IdempotencyError)
    assert not issubclass(sqlfs.IdempotencyMismatchError, sqlfs.ReadOnlyViolationError)
    msg = ("the request with Idempotency-Key 'k' was applied (status 200), but its answer was larger "
           "than IDEMPOTENCY_MAX_BODY_BYTES and was not kept; read its record with GET "
           "/v1/sandboxes/sb/execs/0123456789abcdef0123456789abcdef")
    e = err(409, {"error": msg, "code": "IDEMPOTENCY_ANSWER_UNAVAILABLE"})
    assert e.exec_id == "0123456789abcdef0123456789abcdef"
    assert err(409, {"error": "applied", "code": "IDEMPOTENCY_ANSWER_UNAVAILABLE"}).exec_id is None
    t = err(408, {"error": "t", "code": "EXEC_TIMEOUT", "execId": "ab" * 16, "durationMs": 5})
    assert t.exec_id == "ab" * 16
    assert e.idempotency_key is None


def test_exec_ids_on_results() -> None:
    xid = "0f" * 16
    r = sqlfs.ExecResult.from_json({"execId": xid, "stdout": "", "stderr": "", "exitCode": 0})
    assert r.exec_id == xid and not r.replayed
    assert sqlfs.ExecResult.from_json({"exitCode": 0}, replayed=True).replayed
    resp = httpx.Response(
        200, json={"execId": xid, "results": [{"id": "a", "exitCode": 0, "stdoutTruncated": True}]},
        headers={"Idempotent-Replayed": "true"},
    )
    (b,) = calls.parse_batch(resp)
    assert b.exec_id == xid and b.replayed and b.stdout_truncated and not b.stderr_truncated
    start = sqlfs.StreamEvent.from_frame("start", json.dumps({"t": 0, "execId": xid}))
    assert start.type == "start" and start.exec_id == xid and start.data == ""
    assert sqlfs.StreamEvent.from_frame("stdout", '{"t":1,"data":"x"}').exec_id is None
    assert calls.parse_exec(httpx.Response(200, json={"execId": xid})).replayed is False
    assert calls.parse_ingest(httpx.Response(200, json={"fileCount": 1}, headers={"Idempotent-Replayed": "true"})).replayed


def test_exec_record_model() -> None:
    xid = "1" * 32
    base_rec = {"execId": xid, "kind": "sync", "script": "echo", "startedAt": "2026-01-01T00:00:00.000Z",
                "durationMs": 3, "exitCode": 0, "timedOut": False, "version": None,
                "stdoutBytes": 9, "stderrBytes": 2}
    listed = sqlfs.ExecRecord.from_json(base_rec)
    assert (listed.exec_id, listed.kind, listed.version, listed.stdout_bytes, listed.ok) == (xid, "sync", None, 9, True)
    assert listed.stdout is None and listed.stdout_raw is None and not listed.stdout_truncated
    full = sqlfs.ExecRecord.from_json({
        **base_rec, "version": 4,
        "stdout": base64.b64encode(b"ok \xff\xe2\x82A").decode(), "stdoutEncoding": "base64",
        "stderr": "h\u00e9\n", "stderrEncoding": "utf-8", "stdoutTruncated": True, "stderrTruncated": False,
    })
    assert full.version == 4 and full.stdout_truncated and not full.stderr_truncated
    assert full.stdout_raw == b"ok \xff\xe2\x82A"
    assert full.stdout == "ok \ufffd\ufffd\ufffdA"  # one U+FFFD per byte, as exec-sync sends it
    assert full.stderr == "h\u00e9\n" and full.stderr_raw == "h\u00e9\n".encode()
    page = sqlfs.ExecPage.from_json({"execs": [base_rec, {**base_rec, "execId": "2" * 32}], "next": "2" * 32})
    assert [e.exec_id for e in page] == [xid, "2" * 32] and len(page) == 2 and page[1].exec_id == "2" * 32
    assert page.next == "2" * 32
    assert sqlfs.ExecPage.from_json({"execs": [], "next": None}).next is None


def test_journal_calls() -> None:
    c = calls.execs_call("sb", 2, "ab" * 16)
    assert (c.method, c.path) == ("GET", "/v1/sandboxes/sb/execs?limit=2&before=" + "ab" * 16)
    assert calls.execs_call("sb", None, None).path == "/v1/sandboxes/sb/execs"
    assert calls.exec_record_call("sb", "cd" * 16).path == "/v1/sandboxes/sb/execs/" + "cd" * 16
    with pytest.raises(ValueError):
        calls.exec_record_call("sb", "")
    with pytest.raises(TypeError):
        calls.execs_call("sb", "2", None)  # type: ignore[arg-type]


def keyed_calls(key):
    return [
        calls.exec_call("sb", "true", None, None, None, False, False, None, False, key),
        calls.batch_call("sb", ["true"], None, False, None, None, False, key),
        calls.write_call("sb", "/a", b"x", key),
        calls.write_files_call("sb", {"/a": "x"}, key),
        calls.ingest_archive_call("sb", b"tar", None, "archive", key),
        calls.ingest_files_call("sb", {"a": b"x"}, None, key),
    ]


def test_idempotency_keys_on_calls() -> None:
    for c in keyed_calls("k-1"):
        assert c.keyed and c.idempotency_key == "k-1" and c.headers["Idempotency-Key"] == "k-1"
    for c in keyed_calls(None):
        assert c.keyed and c.idempotency_key is None and "Idempotency-Key" not in c.headers
    others = [calls.stream_call("sb", "true", None, None, None, False, False, None),
              calls.edit_call("sb", "/a", "x", "y", False), calls.mkdir_call("sb", "/d", False),
              calls.restore_call("sb", 1, None)]
    assert not any(c.keyed for c in others)
    for bad in ("", "a b", "x" * 256, "\u00e9", "tab\t"):
        with pytest.raises(ValueError):
            calls.exec_call("sb", "true", None, None, None, False, False, None, False, bad)
    with pytest.raises(TypeError):
        calls.write_files_call("sb", {}, 5)  # type: ignore[arg-type]
    assert calls.check_idempotency_key("~" * 255) == "~" * 255


def session(**kw) -> base.SyncSession:
    opts = dict(base_url="http://fake", auth_secret=None, sub=None, token="tok", tenant=None,
                expires_in=None, timeout=60.0, max_retries=3, retry_exec=False,
                max_retry_delay=30.0, headers=None)
    opts.update(kw)
    return base.SyncSession(None, **opts)


def test_generated_keys() -> None:
    s = session()
    c = keyed_calls(None)[0]
    s.prepare(c)
    key = c.idempotency_key
    assert key and str(uuid.UUID(key, version=4)) == key
    assert s.build(c, "tok").headers["idempotency-key"] == key
    mine = keyed_calls("mine")[2]
    s.prepare(mine)
    assert mine.idempotency_key == "mine"
    for off in (session(max_retries=0), session(idempotency_keys=False)):
        c = keyed_calls(None)[1]
        off.prepare(c)
        assert c.idempotency_key is None and "idempotency-key" not in off.build(c, "tok").headers
        off.close()
    plain = calls.list_call()
    s.prepare(plain)
    assert plain.idempotency_key is None
    s.close()


def test_keyed_multipart_body_is_the_same_on_every_attempt() -> None:
    s = session()
    bodies = []
    for _ in range(2):
        c = calls.ingest_archive_call("sb", io.BytesIO(b"archive-bytes"), "/home/user/x", "archive", "same-key")
        req = s.build(c, "tok")
        bodies.append((req.headers["content-type"], req.read()))
    assert bodies[0] == bodies[1] and bodies[0][0].startswith("multipart/form-data; boundary=")
    assert b"archive-bytes" in bodies[0][1]
    s.close()


def test_retry_policy_with_a_key() -> None:
    req = httpx.Request("POST", "http://x")
    sent = httpx.ReadError("reset", request=req)
    c = calls.exec_call("sb", "true", None, None, None, False, False, None, False)
    assert not base.should_retry_transport(c, sent)
    calls.set_idempotency_key(c, "k")
    assert base.should_retry_transport(c, sent)
    busy = err(409, {"code": "IDEMPOTENCY_IN_PROGRESS", "retryable": True})
    assert base.should_retry_response(c, busy)
    assert not base.should_retry_response(c, err(500, {"code": "INTERNAL_ERROR"}))  # key forgotten: may have run
    assert not base.should_retry_response(c, err(422, {"code": "IDEMPOTENCY_MISMATCH"}))
    assert not base.should_retry_response(c, err(409, {"code": "IDEMPOTENCY_ANSWER_UNAVAILABLE"}))
    assert not base.should_retry_response(calls.exec_call("sb", "true", None, None, None, False, False, None, False), busy)
    none = calls.Call("POST", "/x", retry=calls.Retry.NONE)
    calls.set_idempotency_key(none, "k")
    assert not base.should_retry_transport(none, sent)


class FakeIdempotentServer:
    """exec-sync and writeFiles with Idempotency-Key, as the contract describes them: the answer
    of the first request is kept; ``busy`` repeats get 409 IDEMPOTENCY_IN_PROGRESS first; the
    first ``lose`` answers are lost on the way back (ReadError after the work was done)."""

    def __init__(self, busy: int = 0, lose: int = 0) -> None:
        self.busy = busy
        self.lose = lose
        self.runs = 0
        self.keys: list = []
        self.answers: dict = {}

    def handle(self, req: httpx.Request) -> httpx.Response:
        key = req.headers.get("idempotency-key")
        self.keys.append(key)
        if key in self.answers:
            if self.busy > 0:
                self.busy -= 1
                return httpx.Response(409, json={"error": "running", "code": "IDEMPOTENCY_IN_PROGRESS",
                                                 "retryable": True})
            return httpx.Response(200, json=self.answers[key], headers={"Idempotent-Replayed": "true"})
        self.runs += 1
        body = {"execId": "e" * 32, "stdout": f"{self.runs}\n", "stderr": "", "exitCode": 0}
        if key is not None:
            self.answers[key] = body
        if self.lose > 0:
            self.lose -= 1
            raise httpx.ReadError("lost", request=req)
        return httpx.Response(200, json=body)


def test_lost_answer_and_in_progress_are_retried_with_one_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "backoff_delay", lambda attempt: 0.0)
    fake = FakeIdempotentServer(busy=5, lose=1)
    with sqlfs.Client(base_url="http://fake", token="tok", max_retries=1,
                      http_client=httpx.Client(transport=httpx.MockTransport(fake.handle))) as fs:
        r = fs.sandboxes.attach("sb").exec("echo x >> f")
    # 1 lost + 5 in progress + 1 replay: the in-progress waits do not count against max_retries
    assert len(fake.keys) == 7 and len(set(fake.keys)) == 1 and fake.keys[0]
    assert fake.runs == 1 and r.replayed and r.stdout == "1\n" and r.exec_id == "e" * 32


def test_in_progress_wait_is_bounded_by_the_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "backoff_delay", lambda attempt: 0.02)
    fake = FakeIdempotentServer(busy=10**6)
    fake.answers["k"] = {}
    t0 = time.monotonic()
    with sqlfs.Client(base_url="http://fake", token="tok", timeout=0.3,
                      http_client=httpx.Client(transport=httpx.MockTransport(fake.handle))) as fs:
        with pytest.raises(sqlfs.IdempotencyInProgressError) as ei:
            fs.sandboxes.attach("sb").fs.write_files({"/a": "x"}, idempotency_key="k")
    assert ei.value.idempotency_key == "k" and ei.value.retryable
    assert 0.25 <= time.monotonic() - t0 < 5 and len(fake.keys) > 4


def test_async_lost_answer_is_retried_with_one_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.setattr(base, "backoff_delay", lambda attempt: 0.0)
    fake = FakeIdempotentServer(busy=2, lose=1)

    async def main():
        http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handle))
        async with sqlfs.AsyncClient(base_url="http://fake", token="tok", http_client=http) as fs:
            r = await fs.sandboxes.attach("sb").exec("echo x >> f")
        await http.aclose()
        return r

    r = asyncio.run(main())
    assert len(fake.keys) == 4 and len(set(fake.keys)) == 1 and fake.runs == 1 and r.replayed


# ---------------------------------------------------------------------------------------------
# Network egress (no server): the record's three forms of ``network``, request bodies, the
# egress log, and set_network/egress against an in-memory fake of the routes, sync and async.

POLICY = {"allow": ["pypi.org", "*.pythonhosted.org", "github.com:443"], "deny": ["203.0.113.0/24"]}


def test_record_network_forms() -> None:
    off = sqlfs.SandboxRecord.from_json({"id": "s", "network": False})
    assert off.network is False and off.network_policy is None
    missing = sqlfs.SandboxRecord.from_json({"id": "s"})
    assert missing.network is False and missing.network_policy is None
    on = sqlfs.SandboxRecord.from_json({"id": "s", "network": True})
    assert on.network is True and on.network_policy is None and on.raw["network"] is True
    pol = sqlfs.SandboxRecord.from_json({"id": "s", "network": POLICY})
    assert pol.network is True and pol.network_policy == POLICY and pol.raw["network"] == POLICY
    assert pol.network_policy is not POLICY and pol.network_policy["allow"] is not POLICY["allow"]
    empty = sqlfs.SandboxInfo.from_json({"id": "s", "network": {"allow": [], "deny": []}})
    assert empty.network is True and empty.network_policy == {"allow": [], "deny": []}
    # a key left out reads as an empty list; a key the SDK does not know is kept
    odd = sqlfs.SandboxRecord.from_json({"id": "s", "network": {"allow": ["a.org"], "ports": [443]}})
    assert odd.network_policy == {"allow": ["a.org"], "deny": [], "ports": [443]}
    assert "network" not in pol.extra and "network_policy" in repr(pol)
    # records stay hashable; the policy counts for equality
    assert len({pol, on, off, sqlfs.SandboxRecord.from_json({"id": "s", "network": POLICY})}) == 3
    assert pol != sqlfs.SandboxRecord.from_json({"id": "s", "network": {"allow": [], "deny": []}})


def test_network_argument() -> None:
    assert calls.network_arg(True) is True and calls.network_arg(False) is False
    assert calls.network_arg(POLICY) == POLICY
    assert calls.network_arg({"allow": ("a.org",)}) == {"allow": ["a.org"]}  # deny left to the server
    assert calls.network_arg({"deny": ["b.org"], "x": 1}) == {"deny": ["b.org"], "x": 1}
    assert calls.network_arg(["a.org", "b.org:443"]) == {"allow": ["a.org", "b.org:443"], "deny": []}
    assert calls.network_arg(()) == {"allow": [], "deny": []}
    for bad in (None, "pypi.org", 1, 0, b"x", {"allow": "pypi.org"}, {"deny": [1]}, ["ok", None]):
        with pytest.raises(TypeError):
            calls.network_arg(bad)
    body = calls.create_call("n", None, None, None, None, ["pypi.org"], {}).json
    assert body == {"name": "n", "network": {"allow": ["pypi.org"], "deny": []}}
    assert calls.create_call(None, None, None, None, None, False, {}).json == {"network": False}
    assert "network" not in calls.create_call(None, None, None, None, None, None, {}).json
    with pytest.raises(TypeError):
        calls.create_call(None, None, None, None, None, "yes", {})  # type: ignore[arg-type]


def test_network_calls() -> None:
    c = calls.set_network_call("sb", POLICY)
    assert (c.method, c.path, c.json, c.retry) == ("PATCH", "/v1/sandboxes/sb", {"network": POLICY},
                                                   calls.Retry.IDEMPOTENT)
    assert calls.set_network_call("sb", False).json == {"network": False}
    with pytest.raises(TypeError):
        calls.set_network_call("sb", None)  # type: ignore[arg-type]
    e = calls.egress_call("a b", None)
    assert (e.method, e.path) == ("GET", "/v1/sandboxes/a%20b/egress")
    assert calls.egress_call("sb", 5).path == "/v1/sandboxes/sb/egress?limit=5"
    for bad in (True, "5", 1.0):
        with pytest.raises(TypeError):
            calls.egress_call("sb", bad)  # type: ignore[arg-type]


EGRESS_JSON = {
    "at": "2026-01-02T03:04:05.000Z", "execId": "ab" * 16, "host": "pypi.org", "port": 443,
    "address": "151.101.0.223", "allowed": True, "rule": "pypi.org", "error": None,
    "bytesUp": 812, "bytesDown": 50210, "durationMs": 340,
}


def test_egress_record_model() -> None:
    e = sqlfs.EgressRecord.from_json(EGRESS_JSON)
    assert (e.at, e.exec_id, e.host, e.port, e.address, e.allowed, e.rule, e.error) == (
        "2026-01-02T03:04:05.000Z", "ab" * 16, "pypi.org", 443, "151.101.0.223", True, "pypi.org", None)
    assert (e.bytes_up, e.bytes_down, e.duration_ms) == (812, 50210, 340) and e.raw == EGRESS_JSON
    refused = sqlfs.EgressRecord.from_json({
        "at": "t", "execId": None, "host": "example.test", "port": 80, "address": None,
        "allowed": False, "rule": "no rule allows it", "error": None, "bytesUp": 0, "bytesDown": 0,
        "durationMs": 0, "someNewField": "x",
    })
    assert refused.allowed is False and refused.exec_id is None and refused.address is None
    assert refused.some_new_field == "x" and refused.get("someNewField") == "x"
    failed = sqlfs.EgressRecord.from_json({**EGRESS_JSON, "error": "connection refused", "bytesDown": 0})
    assert failed.allowed and failed.error == "connection refused"
    assert calls.parse_egress(httpx.Response(200, json={"egress": [EGRESS_JSON, EGRESS_JSON]})) == [e, e]
    assert calls.parse_egress(httpx.Response(200, json={"egress": []})) == []


class FakeNetwork:
    """PATCH /v1/sandboxes/{id} and GET /egress of one sandbox ("sb"), as the contract describes
    them, in memory; any other sandbox is 404."""

    def __init__(self) -> None:
        self.network: object = False
        self.requests: list = []

    def record(self) -> dict:
        return {"id": "sb", "name": "n", "python": False, "javascript": False, "network": self.network}

    def handle(self, req: httpx.Request) -> httpx.Response:
        self.requests.append((req.method, req.url.raw_path.decode(), req.content))
        path = req.url.path
        if not path.startswith("/v1/sandboxes/sb"):
            return httpx.Response(404, json={"error": "sandbox not found", "code": "ENOENT"})
        if req.method == "PATCH" and path == "/v1/sandboxes/sb":
            body = json.loads(req.content)
            if set(body) != {"network"}:
                return httpx.Response(400, json={"error": "only 'network' may be changed",
                                                 "code": "INVALID_INPUT"})
            net = body["network"]
            if isinstance(net, dict):
                for rule in net.get("allow", []) + net.get("deny", []):
                    if " " in rule:
                        return httpx.Response(400, json={"error": f"invalid egress rule '{rule}'",
                                                         "code": "INVALID_INPUT"})
                net = {"allow": net.get("allow", []), "deny": net.get("deny", [])}
            self.network = net
            return httpx.Response(200, json=self.record())
        if req.method == "GET" and path == "/v1/sandboxes/sb/egress":
            limit = int(req.url.params.get("limit", "100"))
            return httpx.Response(200, json={"egress": [EGRESS_JSON] * min(limit, 3)})
        return httpx.Response(405, json={"error": "no such route", "code": "METHOD_NOT_ALLOWED"})


def check_network_walk(fake: FakeNetwork, r: dict) -> None:
    assert r["policy"].network is True and r["policy"].network_policy == POLICY
    assert isinstance(r["policy"], sqlfs.SandboxInfo)
    assert r["short"].network_policy == {"allow": ["a.org"], "deny": []}
    assert r["on"].network is True and r["on"].network_policy is None
    assert r["off"].network is False and r["off"].network_policy is None
    assert r["record_after"] is r["off"]
    assert [e.host for e in r["log"]] == ["pypi.org"] * 3 and len(r["log1"]) == 1
    assert "invalid egress rule 'bad rule'" in r["bad"]
    patches = [json.loads(c) for m, p, c in fake.requests if m == "PATCH"]
    assert patches[:4] == [{"network": POLICY}, {"network": {"allow": ["a.org"], "deny": []}},
                           {"network": True}, {"network": False}]
    paths = [p for m, p, _ in fake.requests if m == "GET"]
    assert "/v1/sandboxes/sb/egress" in paths and "/v1/sandboxes/sb/egress?limit=1" in paths


def test_network_methods_on_a_fake_server() -> None:
    fake = FakeNetwork()
    with sqlfs.Client(base_url="http://fake", token="tok", max_retries=0,
                      http_client=httpx.Client(transport=httpx.MockTransport(fake.handle))) as fs:
        sb = fs.sandboxes.attach("sb")
        r: dict = {"policy": sb.set_network(POLICY), "short": sb.set_network(["a.org"]),
                   "on": sb.set_network(True), "off": sb.set_network(False)}
        r["record_after"] = sb.record
        r["log"], r["log1"] = sb.egress(), sb.egress(limit=1)
        with pytest.raises(sqlfs.ValidationError) as ei:
            sb.set_network({"allow": ["bad rule"]})
        r["bad"] = str(ei.value)
        assert sb.record is r["off"]  # a refused change leaves the kept record alone
        with pytest.raises(sqlfs.NotFoundError):
            fs.sandboxes.attach("other").egress()
        with pytest.raises(sqlfs.NotFoundError):
            fs.sandboxes.attach("other").set_network(True)
    check_network_walk(fake, r)


def test_async_network_methods_on_a_fake_server() -> None:
    import asyncio

    fake = FakeNetwork()

    async def main() -> dict:
        http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handle))
        async with sqlfs.AsyncClient(base_url="http://fake", token="tok", max_retries=0, http_client=http) as fs:
            sb = fs.sandboxes.attach("sb")
            r: dict = {"policy": await sb.set_network(POLICY), "short": await sb.set_network(["a.org"]),
                       "on": await sb.set_network(True), "off": await sb.set_network(False)}
            r["record_after"] = sb.record
            r["log"], r["log1"] = await sb.egress(), await sb.egress(limit=1)
            with pytest.raises(sqlfs.ValidationError) as ei:
                await sb.set_network({"allow": ["bad rule"]})
            r["bad"] = str(ei.value)
            with pytest.raises(sqlfs.NotFoundError):
                await fs.sandboxes.attach("other").egress()
        await http.aclose()
        return r

    check_network_walk(fake, asyncio.run(main()))
