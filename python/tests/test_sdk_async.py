"""AsyncClient: the same surface on httpx.AsyncClient, against the real server."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import uuid
from typing import Any, Awaitable, Callable

import httpx
import pytest

import sqlfs
from sqlfs_testlib import FaultProxy, Server, json_error, new_sub

pytestmark = pytest.mark.server


def run(fn: Callable[[sqlfs.AsyncClient], Awaitable[Any]], server: Server, **kw: Any) -> Any:
    async def main() -> Any:
        async with sqlfs.AsyncClient(
            base_url=kw.pop("base_url", server.url), auth_secret=server.secret,
            sub=kw.pop("sub", new_sub()), **kw
        ) as fs:
            return await fn(fs)

    return asyncio.run(main())


def test_async_sandboxes_and_files(server: Server) -> None:
    async def body(fs: sqlfs.AsyncClient) -> None:
        sb = await fs.sandboxes.create(name="async", env={"E": "v"})
        assert isinstance(sb, sqlfs.AsyncSandbox) and sb.name == "async"
        assert sb.id in [r.id for r in await fs.sandboxes.list()]
        info = await fs.sandboxes.get(sb.id)
        assert isinstance(info, sqlfs.SandboxInfo) and info.id == sb.id
        await sb.fs.write("/home/user/a.txt", "alpha")
        await sb.fs.write("/home/user/s.bin", io.BytesIO(b"\x00" * 3_000_000))
        assert (await sb.fs.read("/home/user/s.bin")).content == b"\x00" * 3_000_000
        assert b"".join([c async for c in sb.fs.read_stream("/home/user/s.bin")]) == b"\x00" * 3_000_000
        await sb.fs.write_files({"/home/user/d/b.txt": "beta"})
        res = await sb.fs.read("/home/user/a.txt")
        assert res.content == b"alpha" and res.stat is not None and res.stat.size == 5
        assert await sb.fs.read_text("/home/user/d/b.txt") == "beta"
        await sb.fs.mkdir("/home/user/m/n", recursive=True)
        paths = [e.path for e in await sb.fs.tree(prefix="/home/user", depth=1)]
        assert {"/home/user/a.txt", "/home/user/d", "/home/user/m"} <= set(paths)
        assert (await sb.fs.edit("/home/user/a.txt", "alpha", "omega")).replacements == 1
        await sb.fs.delete("/home/user/d", recursive=True)
        with pytest.raises(sqlfs.NotFoundError):
            await sb.fs.read("/home/user/d/b.txt")
        same = fs.sandboxes.attach(sb.id)
        assert await same.fs.read_text("/home/user/a.txt") == "omega"
        await sb.delete()
        with pytest.raises(sqlfs.NotFoundError):
            await fs.sandboxes.get(sb.id)

    run(body, server)


def test_async_exec_batch_stream(server: Server) -> None:
    async def body(fs: sqlfs.AsyncClient) -> None:
        sb = await fs.sandboxes.create(env={"E": "v"})
        try:
            r = await sb.exec('echo $E; echo err >&2; cat', stdin="in\n", cwd="/tmp")
            assert (r.stdout, r.error, r.exit_code, r.ok) == ("v\nin\n", "err\n", 0, True)
            with pytest.raises(sqlfs.ExecTimeoutError) as ei:
                await sb.exec("sleep 10", timeout_ms=300)
            assert ei.value.duration_ms is not None
            with pytest.raises(sqlfs.ReadOnlyViolationError):
                await sb.exec("touch /home/user/x", read_only=True)
            res = await sb.exec_batch([{"id": "a", "script": "X=1"}, {"id": "b", "script": "echo $X"}])
            assert [(x.id, x.stdout) for x in res] == [("a", ""), ("b", "1\n")]
            res = await sb.exec_batch(["false", "echo no"], stop_on_error=True)
            assert res[1].error == "skipped"
            t0 = time.monotonic()
            events = []
            async for ev in sb.exec_stream("echo one; sleep 1.5; echo two"):
                events.append((ev, time.monotonic() - t0))
            assert [e.type for e, _ in events][-1] == "exit"
            assert events[-1][0].exit_code == 0
            first = next(t for e, t in events if e.type == "stdout")
            assert events[-1][1] - first > 1.0
        finally:
            await sb.delete()

    run(body, server)


@pytest.mark.ingest_export
def test_async_ingest_export(server: Server) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("t/one.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"one"))
    buf.seek(0)

    async def body(fs: sqlfs.AsyncClient) -> None:
        sb = await fs.sandboxes.create()
        try:
            res = await sb.ingest_archive(buf, base_path="/home/user/arc")
            assert res.file_count == 1
            res = await sb.ingest_files({"b.bin": b"\x00\xff"}, base_path="/home/user/arc")
            assert res.file_count == 1
            blob = await sb.export(base_path="/home/user/arc")
            chunks = [c async for c in sb.export_stream(base_path="/home/user/arc")]
            for data in (blob, b"".join(chunks)):
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                    names = {m.name.lstrip("./") for m in tar.getmembers() if m.isfile()}
                assert names == {"t/one.txt", "b.bin"}
        finally:
            await sb.delete()

    run(body, server)


def test_async_errors_and_retries(server: Server, proxy: FaultProxy) -> None:
    async def body(fs: sqlfs.AsyncClient) -> None:
        with pytest.raises(sqlfs.NotFoundError) as ei:
            await fs.sandboxes.get(str(uuid.uuid4()))
        assert ei.value.code == "SANDBOX_NOT_FOUND"
        proxy.add("GET /v1/sandboxes ", times=2, **json_error(503, "EBUSY", retryable=True))
        assert isinstance(await fs.sandboxes.list(), list)
        assert proxy.hits("GET /v1/sandboxes ") == 3
        sb = await fs.sandboxes.create()
        try:
            proxy.add("/exec-sync", times=2, **json_error(500, "INTERNAL_ERROR"))
            with pytest.raises(sqlfs.ServerError):
                await sb.exec("echo once")
            assert proxy.hits("/exec-sync") == 1
            proxy.add(f"/{sb.id}/exec ", times=2, **json_error(503, "EBUSY", retryable=True))
            with pytest.raises(sqlfs.ServerError):
                async for _ in sb.exec_stream("true"):
                    pass
            assert proxy.hits(f"/{sb.id}/exec ") == 1
        finally:
            await sb.delete()

    run(body, server, base_url=proxy.url)

    async def wrong_secret() -> None:
        async with sqlfs.AsyncClient(base_url=server.url, auth_secret="nope", sub="x") as fs:
            await fs.sandboxes.list()

    with pytest.raises(sqlfs.AuthError) as ei:
        asyncio.run(wrong_secret())
    assert ei.value.status == 403


def test_async_caller_owned_http_client(server: Server) -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as http:
            async with sqlfs.AsyncClient(base_url=server.url, auth_secret=server.secret,
                                         sub=new_sub(), http_client=http) as fs:
                await fs.sandboxes.list()
                assert (await fs.get_token()).count(".") == 2
            assert not http.is_closed

    asyncio.run(main())
