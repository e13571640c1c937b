"""Fixtures of the SDK tests; the helpers live in sqlfs_testlib (a unique module name, so this
directory can share a pytest session with other test directories)."""

from __future__ import annotations

from typing import Iterator

import pytest

from sqlfs_testlib import FaultProxy, Server, ServerPool  # first: puts python/ on sys.path

import sqlfs  # noqa: E402

@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path_factory)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def server(servers: ServerPool) -> Server:
    return servers.get()


@pytest.fixture
def client(server: Server) -> Iterator[sqlfs.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def sb(client: sqlfs.Client) -> Iterator[sqlfs.Sandbox]:
    box = client.sandboxes.create(name="pytest")
    yield box
    try:
        box.delete()
    except sqlfs.SQLFSError:
        pass


@pytest.fixture
def py_sb(client: sqlfs.Client) -> Iterator[sqlfs.Sandbox]:
    box = client.sandboxes.create(name="pytest-py", python=True)
    yield box
    try:
        box.delete()
    except sqlfs.SQLFSError:
        pass


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    p = FaultProxy(server.url)
    yield p
    p.close()
