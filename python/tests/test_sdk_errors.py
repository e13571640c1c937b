"""Every error class, provoked for real against the server."""

from __future__ import annotations

import time
import uuid

import pytest

import sqlfs
from sqlfs_testlib import Server, ServerPool, free_port, new_sub

pytestmark = pytest.mark.server


def check(e: sqlfs.SQLFSError, status: int, code: str) -> None:
    assert e.status == status, e
    assert e.code == code, e
    assert isinstance(e.details, list)
    assert isinstance(e.message, str) and e.message


def test_400_validation(sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.ValidationError) as ei:
        sb.exec("true", timeout_ms=0)
    assert ei.value.status == 400
    with pytest.raises(sqlfs.ValidationError) as ei:
        sb.fs.tree(prefix="/home/user", depth=0)
    assert ei.value.status == 400
    with pytest.raises(sqlfs.ValidationError) as ei:
        sb.fs.read("/home/user")
    check(ei.value, 400, "EISDIR")


def test_401_invalid_token(server: Server) -> None:
    with sqlfs.Client(base_url=server.url, token="not.a.jwt") as c:
        with pytest.raises(sqlfs.AuthError) as ei:
            c.sandboxes.list()
    check(ei.value, 401, "AUTH_INVALID")


def test_401_missing_token(server: Server) -> None:
    with server.client() as c:
        with pytest.raises(sqlfs.AuthError) as ei:
            c.request("GET", "/v1/sandboxes", headers={"Authorization": "Basic xyz"})
    check(ei.value, 401, "AUTH_REQUIRED")


def test_403_wrong_secret(server: Server) -> None:
    with sqlfs.Client(base_url=server.url, auth_secret="wrong", sub="x") as c:
        with pytest.raises(sqlfs.AuthError) as ei:
            c.sandboxes.list()
    check(ei.value, 403, "FORBIDDEN")


def test_404(client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.NotFoundError) as ei:
        client.sandboxes.get(str(uuid.uuid4()))
    check(ei.value, 404, "SANDBOX_NOT_FOUND")
    with pytest.raises(sqlfs.NotFoundError) as ei:
        sb.fs.read("/home/user/missing")
    check(ei.value, 404, "ENOENT")


def test_408_exec_timeout(sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.ExecTimeoutError) as ei:
        sb.exec("sleep 10", timeout_ms=300)
    check(ei.value, 408, "EXEC_TIMEOUT")
    assert ei.value.duration_ms is not None and ei.value.duration_ms >= 250


def test_409_conflict(sb: sqlfs.Sandbox) -> None:
    sb.fs.mkdir("/home/user/c")
    with pytest.raises(sqlfs.ConflictError) as ei:
        sb.fs.mkdir("/home/user/c")
    check(ei.value, 409, "EEXIST")


def test_413_payload_too_large(servers: ServerPool) -> None:
    srv = servers.get(MAX_FILE_WRITE_BYTES="4096", MAX_TREE_ENTRIES="3")
    with srv.client() as c:
        sb = c.sandboxes.create()
        sb.fs.write("/home/user/small", b"x" * 4096)
        with pytest.raises(sqlfs.PayloadTooLargeError) as ei:
            sb.fs.write("/home/user/big", b"x" * 8192)
        assert isinstance(ei.value, sqlfs.ValidationError)
        assert ei.value.status == 413 and ei.value.code in ("PAYLOAD_TOO_LARGE", "EFBIG")
        with pytest.raises(sqlfs.NotFoundError):
            sb.fs.read("/home/user/big")
        sb.fs.write_files({f"/home/user/t/{i}": "" for i in range(5)})
        with pytest.raises(sqlfs.PayloadTooLargeError) as ei:
            sb.fs.tree(prefix="/home/user/t")
        assert ei.value.status == 413
        sb.delete()


def test_415_unsupported_media_type(client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.UnsupportedMediaTypeError) as ei:
        client.request(
            "POST", f"/v1/sandboxes/{sb.id}/exec-sync", content=b"<x/>",
            headers={"Content-Type": "application/xml"},
        )
    check(ei.value, 415, "UNSUPPORTED_MEDIA_TYPE")
    # The text/plain form of exec-sync is accepted.
    resp = client.request(
        "POST", f"/v1/sandboxes/{sb.id}/exec-sync", content=b"echo plain",
        headers={"Content-Type": "text/plain"},
    )
    assert resp.json()["stdout"] == "plain\n"


def test_422_read_only_violation(sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.ReadOnlyViolationError) as ei:
        sb.exec("mkdir /home/user/nope", read_only=True)
    check(ei.value, 422, "EREADONLY_VIOLATION")


def test_429_rate_limit(servers: ServerPool) -> None:
    srv = servers.get(AUTH_SUCCESS_RATE_LIMIT_MAX="2", AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS="60000")
    errors = []
    for _ in range(4):
        with sqlfs.Client(base_url=srv.url, auth_secret=srv.secret, sub=new_sub(), max_retries=0) as c:
            try:
                c.token
            except sqlfs.RateLimitError as e:
                errors.append(e)
    assert len(errors) == 2
    e = errors[0]
    check(e, 429, "RATE_LIMITED")
    assert e.retry_after is not None and 0 < e.retry_after <= 60
    # With retries on, a Retry-After longer than max_retry_delay is not slept through.
    t0 = time.monotonic()
    with sqlfs.Client(base_url=srv.url, auth_secret=srv.secret, sub=new_sub(), max_retry_delay=0.5) as c:
        with pytest.raises(sqlfs.RateLimitError):
            c.token
    assert time.monotonic() - t0 < 5


def test_5xx_server_error_from_busy_server(servers: ServerPool) -> None:
    import threading

    srv = servers.get(EXEC_CONCURRENCY="1", EXEC_QUEUE="0")
    sub = new_sub()
    with srv.client(sub=sub) as c:
        a = c.sandboxes.create()
        b = c.sandboxes.create()
        t = threading.Thread(target=lambda: a.exec("sleep 2"))
        t.start()
        time.sleep(0.7)
        try:
            with srv.client(sub=sub, max_retries=0) as c0:
                with pytest.raises(sqlfs.ServerError) as ei:
                    c0.sandboxes.attach(b.id).exec("echo hi")
        finally:
            t.join()
        assert ei.value.status == 503 and ei.value.retryable is True
        assert ei.value.code == "EBUSY"
        a.delete()
        b.delete()


def test_transport_error() -> None:
    port = free_port()
    with sqlfs.Client(base_url=f"http://127.0.0.1:{port}", token="t", max_retries=1) as c:
        with pytest.raises(sqlfs.TransportError) as ei:
            c.sandboxes.list()
    assert ei.value.status is None
    assert isinstance(ei.value.__cause__, Exception)
