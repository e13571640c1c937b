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
