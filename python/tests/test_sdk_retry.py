"""Retry behaviour, through a fault-injecting proxy in front of the real server."""

from __future__ import annotations

import time

import pytest

import sqlfs
from sqlfs_testlib import FaultProxy, Server, json_error

pytestmark = pytest.mark.server


@pytest.fixture
def via(client: sqlfs.Client, proxy: FaultProxy):
    """Clients that talk to the server through the proxy, as the owner of the `sb` fixture."""
    token = client.token
    clients = []

    def make(**kw) -> sqlfs.Client:
        c = sqlfs.Client(base_url=proxy.url, token=token, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def test_5xx_retried_then_success(via, proxy: FaultProxy) -> None:
    c = via()
    proxy.add("GET /v1/sandboxes ", times=2, **json_error(503, "EBUSY", retryable=True))
    assert isinstance(c.sandboxes.list(), list)
    assert proxy.hits("GET /v1/sandboxes ") == 3


def test_5xx_gives_up_after_three_retries(via, proxy: FaultProxy) -> None:
    c = via()
    proxy.add("GET /v1/sandboxes ", times=10, **json_error(500, "INTERNAL_ERROR"))
    t0 = time.monotonic()
    with pytest.raises(sqlfs.ServerError) as ei:
        c.sandboxes.list()
    elapsed = time.monotonic() - t0
    assert ei.value.status == 500 and ei.value.code == "INTERNAL_ERROR"
    assert proxy.hits("GET /v1/sandboxes ") == 4
    # exponential backoff with jitter: 0.25-0.5 + 0.5-1 + 1-2 seconds
    assert 1.7 <= elapsed <= 6


def test_max_retries_zero(via, proxy: FaultProxy) -> None:
    c = via(max_retries=0)
    proxy.add("GET /v1/sandboxes ", times=1, **json_error(502, "BAD_GATEWAY"))
    with pytest.raises(sqlfs.ServerError):
        c.sandboxes.list()
    assert proxy.hits("GET /v1/sandboxes ") == 1


def test_429_honours_retry_after(via, proxy: FaultProxy) -> None:
    c = via()
    fault = json_error(429, "RATE_LIMITED")
    fault["headers"]["Retry-After"] = "1"
    proxy.add("GET /v1/sandboxes ", times=1, **fault)
    t0 = time.monotonic()
    c.sandboxes.list()
    assert time.monotonic() - t0 >= 0.95
    assert proxy.hits("GET /v1/sandboxes ") == 2


def test_retry_after_beyond_cap_is_not_waited(via, proxy: FaultProxy) -> None:
    c = via(max_retry_delay=2)
    fault = json_error(429, "RATE_LIMITED")
    fault["headers"]["Retry-After"] = "120"
    proxy.add("GET /v1/sandboxes ", times=1, **fault)
    t0 = time.monotonic()
    with pytest.raises(sqlfs.RateLimitError) as ei:
        c.sandboxes.list()
    assert ei.value.retry_after == 120 and time.monotonic() - t0 < 2


@pytest.mark.parametrize("status,code", [(400, "INVALID_INPUT"), (404, "ENOENT"), (409, "EEXIST"), (401, "AUTH_INVALID")])
def test_other_4xx_not_retried(via, proxy: FaultProxy, status: int, code: str) -> None:
    c = via()
    proxy.add("GET /v1/sandboxes ", times=5, **json_error(status, code))
    with pytest.raises(sqlfs.SQLFSError) as ei:
        c.sandboxes.list()
    assert ei.value.status == status
    assert proxy.hits("GET /v1/sandboxes ") == 1


def test_write_exec_not_retried_on_plain_5xx(via, proxy: FaultProxy, sb: sqlfs.Sandbox) -> None:
    c = via()
    box = c.sandboxes.attach(sb.id)
    proxy.add("/exec-sync", times=5, **json_error(500, "INTERNAL_ERROR"))
    with pytest.raises(sqlfs.ServerError):
        box.exec("echo once >> /home/user/count")
    assert proxy.hits("/exec-sync") == 1


def test_write_exec_retried_when_server_says_nothing_applied(via, proxy: FaultProxy, sb: sqlfs.Sandbox) -> None:
    c = via()
    box = c.sandboxes.attach(sb.id)
    proxy.add("/exec-sync", times=2, **json_error(503, "EBUSY", retryable=True))
    assert box.exec("echo x >> /home/user/count; cat /home/user/count").stdout == "x\n"
    assert proxy.hits("/exec-sync") == 3


def test_read_only_exec_and_retry_exec_opt_in(via, proxy: FaultProxy, sb: sqlfs.Sandbox) -> None:
    box = via().sandboxes.attach(sb.id)
    proxy.add("/exec-sync", times=1, **json_error(500, "INTERNAL_ERROR"))
    assert box.exec("echo ro", read_only=True).stdout == "ro\n"
    assert proxy.hits("/exec-sync") == 2
    opted = via(retry_exec=True).sandboxes.attach(sb.id)
    proxy.add("/exec-sync", times=1, **json_error(500, "INTERNAL_ERROR"))
    assert opted.exec("echo rw").stdout == "rw\n"
    assert proxy.hits("/exec-sync") == 4


def test_streams_are_never_retried(via, proxy: FaultProxy, sb: sqlfs.Sandbox) -> None:
    box = via().sandboxes.attach(sb.id)
    proxy.add("POST /v1/sandboxes/" + sb.id + "/exec ", times=3, **json_error(503, "EBUSY", retryable=True))
    proxy.add("/export", times=3, **json_error(503, "EBUSY", retryable=True))
    with pytest.raises(sqlfs.ServerError):
        list(box.exec_stream("echo hi"))
    with pytest.raises(sqlfs.ServerError):
        list(box.export_stream(base_path="/home/user"))
    assert proxy.hits(f"/{sb.id}/exec ") == 1
    assert proxy.hits("/export") == 1


def test_dropped_connection(via, proxy: FaultProxy, sb: sqlfs.Sandbox) -> None:
    box = via().sandboxes.attach(sb.id)
    proxy.add(f"GET /v1/sandboxes/{sb.id} ", kind="drop", times=1)
    assert box.info().id == sb.id
    assert proxy.hits(f"GET /v1/sandboxes/{sb.id} ") == 2
    # A write exec sends an Idempotency-Key, so a connection lost mid-request is retried: the
    # server would answer a repeat of a request it got from what it kept.
    proxy.add("/exec-sync", kind="drop", times=1)
    assert box.exec("echo once >> /home/user/dropped; cat /home/user/dropped").stdout == "once\n"
    assert proxy.hits("/exec-sync") == 2
    # Without a key (generation turned off) it is raised: it may have run.
    keyless = via(idempotency_keys=False).sandboxes.attach(sb.id)
    proxy.add("/exec-sync", kind="drop", times=1)
    with pytest.raises(sqlfs.TransportError) as ei:
        keyless.exec("echo maybe-ran")
    assert ei.value.idempotency_key is None
    assert proxy.hits("/exec-sync") == 3


def test_expired_token_is_reminted_once(server: Server, proxy: FaultProxy) -> None:
    with sqlfs.Client(base_url=proxy.url, auth_secret=server.secret, sub="remint") as c:
        c.sandboxes.list()
        proxy.add("GET /v1/sandboxes ", times=1, **json_error(401, "AUTH_INVALID"))
        c.sandboxes.list()
    assert proxy.hits("POST /v1/auth/bootstrap") == 2
    assert proxy.hits("GET /v1/sandboxes ") == 3


def test_real_503_from_exec_queue_is_retried(servers) -> None:
    import threading

    srv = servers.get(EXEC_CONCURRENCY="1", EXEC_QUEUE="0")
    with srv.client() as c:
        a = c.sandboxes.create()
        b = c.sandboxes.create()
        t = threading.Thread(target=lambda: a.exec("sleep 1"))
        t.start()
        time.sleep(0.5)
        # The second exec is refused (503 EBUSY, retryable) while the first runs, then retried.
        r = b.exec("echo after-retry")
        t.join()
        assert r.stdout == "after-retry\n"
        a.delete()
        b.delete()
