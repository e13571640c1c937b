"""Fixtures: the real sqlfs binary on a free loopback port with a temporary data dir. The server
and the client-side helpers are tests/harness/sqlfs_harness.py's (shared with python/tests and
bench/); this file re-exports the names the tests import from it."""
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "harness"))
from sqlfs_harness import (ADMIN_SECRET, BINARY, ROOT, SECRET, PeakSampler,  # noqa: E402,F401
                           Server, engine, free_port, pg_query, proc_status_kib, raw_http,
                           read_all)


def sqlite_only(reason):
    """Marks a test that inspects the SQLite files themselves: skipped when the servers run on
    PostgreSQL (SQLFS_TEST_DATABASE=postgres), with the reason."""
    return pytest.mark.skipif(engine() != "sqlite", reason="SQLite only: " + reason)


def make_server(tmp_root, env=None, args=None, preexec_fn=None):
    data = tempfile.mkdtemp(prefix="sqlfs-test-", dir=tmp_root)
    return Server(data, env, args, preexec_fn)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    if not os.path.exists(BINARY):
        pytest.fail(f"{BINARY} is missing: run `make` first")
    s = make_server(str(tmp_path_factory.mktemp("srv")),
                    {"AUTH_RATE_LIMIT_MAX": "100000"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def api(server):
    with server.client() as c:
        yield c


@pytest.fixture
def sandbox(api):
    r = api.post("/v1/sandboxes", json={"name": "t"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    yield sid
    api.delete(f"/v1/sandboxes/{sid}")


@pytest.fixture
def fresh_server(tmp_path):
    """A private server for tests that restart or configure it."""
    servers = []

    def factory(env=None, args=None, preexec_fn=None):
        s = make_server(str(tmp_path), env, args, preexec_fn)
        servers.append(s)
        return s.start()

    yield factory
    for s in servers:
        if s.proc:
            s.stop()


def status(server):
    """GET /v1/status: the operator's view (exec counters and limits, store memory, token
    settings), behind the admin secret."""
    return server.status()


def assert_error(resp, status, code=None):
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["retryable"], bool)
    if code:
        assert body["code"] == code, body
    return body
