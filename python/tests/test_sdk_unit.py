"""Pure unit tests: error mapping, Retry-After, retry policy, paths, request bodies, models."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import time

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
