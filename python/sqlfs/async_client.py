"""Asynchronous client on ``httpx.AsyncClient``: the same surface as :mod:`sqlfs.client`, with
``await`` on every call and ``async for`` over streams."""

from __future__ import annotations

import asyncio
from typing import (
    IO,
    Any,
    AsyncIterator,
    Callable,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

import httpx

from . import _base as b
from ._sse import SSEParser
from .client import _Core, _transport_error
from .errors import TransportError
from .models import (
    BatchExecResult,
    EditResult,
    ExecResult,
    IngestResult,
    ReadResult,
    SandboxInfo,
    SandboxRecord,
    StreamEvent,
    TreeEntry,
)

__all__ = ["AsyncClient", "AsyncSandboxes", "AsyncSandbox", "AsyncFiles"]

T = TypeVar("T")


class AsyncClient:
    """Asynchronous twin of :class:`sqlfs.Client` (same arguments, same retry rules).

    ``async with AsyncClient(...) as fs: sb = await fs.sandboxes.create()``.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        *,
        auth_secret: Optional[str] = None,
        sub: Optional[str] = None,
        token: Optional[str] = None,
        tenant: Optional[str] = None,
        expires_in: Optional[str] = None,
        timeout: b.TimeoutArg = b.DEFAULT_TIMEOUT,
        max_retries: int = b.DEFAULT_MAX_RETRIES,
        http_client: Optional[httpx.AsyncClient] = None,
        retry_exec: bool = False,
        max_retry_delay: float = b.DEFAULT_MAX_RETRY_DELAY,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._core = _Core(
            base_url, auth_secret, sub, token, tenant, expires_in, timeout, max_retries,
            retry_exec, max_retry_delay, headers,
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self._lock: Optional[asyncio.Lock] = None
        self.sandboxes = AsyncSandboxes(self)

    @property
    def base_url(self) -> str:
        return self._core.base_url

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def get_token(self) -> str:
        """The bearer token, minted now if needed."""
        return await self._ensure_token()

    async def _ensure_token(self) -> str:
        core = self._core
        if core._token is not None:
            return core._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if core._token is None:
                resp = await self._execute(core.bootstrap())
                core._token = b.parse_token(resp)
                core._token_minted = True
            return core._token

    async def _execute(self, call: b.Call, stream: bool = False) -> httpx.Response:
        core = self._core
        attempt = 0
        refreshed = False
        while True:
            token = await self._ensure_token() if call.auth else None
            try:
                req = core.build(self._http, call, token)
                resp = await self._http.send(req, stream=stream)
            except httpx.RequestError as exc:
                wait = core.transport_wait(call, exc, attempt)
                if wait is None:
                    raise _transport_error(exc) from exc
                await asyncio.sleep(wait)
                attempt += 1
                continue
            if core.accepted(call, resp):
                return resp
            try:
                if stream:
                    await resp.aread()
            except httpx.RequestError as exc:
                raise _transport_error(exc) from exc
            finally:
                if stream:
                    await resp.aclose()
            err = core.failure(call, resp)
            if resp.status_code == 401 and call.auth and core.can_mint and not refreshed:
                refreshed = True
                if core._token == token:
                    core._token = None
                if call.rewind is None or call.rewind():
                    continue
            wait = core.retry_wait(call, err, resp, attempt)
            if wait is None:
                raise err
            await asyncio.sleep(wait)
            attempt += 1

    async def _call(self, call: b.Call, parse: Callable[[httpx.Response], T]) -> T:
        return parse(await self._execute(call))

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = b._UNSET,
        content: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        retry: bool = False,
    ) -> httpx.Response:
        """Send a raw authenticated request; see :meth:`sqlfs.Client.request`."""
        call = b.Call(
            method.upper(),
            path if path.startswith("/") else "/" + path,
            params=dict(params) if params else None,
            json=json,
            content=content,
            headers=dict(headers or {}),
            retry=b.Retry.IDEMPOTENT if retry else b.Retry.NONE,
        )
        return await self._execute(call)

    async def _iter_events(self, call: b.Call) -> AsyncIterator[StreamEvent]:
        resp = await self._execute(call, stream=True)
        try:
            parser = SSEParser()
            try:
                async for chunk in resp.aiter_bytes():
                    for frame in parser.feed(chunk):
                        ev = StreamEvent.from_frame(frame.event, frame.data)
                        yield ev
                        if ev.type == "exit":
                            return
            except httpx.RequestError as exc:
                raise _transport_error(exc) from exc
            raise TransportError("stream ended before the exit event", code="STREAM_INCOMPLETE")
        finally:
            await resp.aclose()

    async def _iter_bytes(self, call: b.Call, chunk_size: Optional[int]) -> AsyncIterator[bytes]:
        resp = await self._execute(call, stream=True)
        try:
            try:
                async for chunk in resp.aiter_bytes(chunk_size):
                    yield chunk
            except httpx.RequestError as exc:
                raise _transport_error(exc) from exc
        finally:
            await resp.aclose()


class AsyncSandboxes:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> List[SandboxRecord]:
        return await self._client._call(b.Call("GET", "/v1/sandboxes"), b.parse_records)

    async def create(
        self,
        name: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        files: Optional[Mapping[str, b.FileContent]] = None,
        python: Optional[bool] = None,
        javascript: Optional[bool] = None,
        network: Optional[bool] = None,
        **extra: Any,
    ) -> "AsyncSandbox":
        call = b.create_call(name, env, files, python, javascript, network, extra)
        record = await self._client._call(call, b.parse_record)
        return AsyncSandbox(self._client, record.id, record)

    async def get(self, sandbox_id: str) -> SandboxInfo:
        return await self._client._call(b.Call("GET", b.sandbox_path(sandbox_id)), b.parse_info)

    def attach(self, sandbox_id: str) -> "AsyncSandbox":
        """A handle on an existing sandbox, without any request (not a coroutine)."""
        b.sandbox_path(sandbox_id)
        return AsyncSandbox(self._client, sandbox_id, None)

    async def delete(self, sandbox_id: str) -> None:
        await self._client._call(b.Call("DELETE", b.sandbox_path(sandbox_id)), b.parse_none)


class AsyncFiles:
    def __init__(self, client: AsyncClient, sandbox_id: str) -> None:
        self._client = client
        self._id = sandbox_id

    async def read(self, path: b.PathArg) -> ReadResult:
        return await self._client._call(b.read_call(self._id, path), b.parse_read(path))

    async def read_text(self, path: b.PathArg, encoding: str = "utf-8", errors: str = "strict") -> str:
        return (await self.read(path)).content.decode(encoding, errors)

    def read_stream(self, path: b.PathArg, chunk_size: Optional[int] = None) -> AsyncIterator[bytes]:
        """``async for chunk in sb.fs.read_stream(path)`` (not awaited itself). Not retried."""
        call = b.read_call(self._id, path)
        call.retry = b.Retry.NONE
        return self._client._iter_bytes(call, chunk_size)

    async def write(self, path: b.PathArg, content: b.WriteContent) -> None:
        await self._client._call(b.write_call(self._id, path, content), b.parse_none)

    async def write_files(self, files: Mapping[str, b.FileContent]) -> None:
        await self._client._call(b.write_files_call(self._id, files), b.parse_none)

    async def delete(self, path: b.PathArg, recursive: bool = False) -> None:
        await self._client._call(b.delete_file_call(self._id, path, recursive), b.parse_none)

    async def mkdir(self, path: b.PathArg, recursive: bool = False) -> None:
        await self._client._call(b.mkdir_call(self._id, path, recursive), b.parse_none)

    async def tree(self, prefix: Optional[b.PathArg] = None, depth: Optional[int] = None) -> List[TreeEntry]:
        return await self._client._call(b.tree_call(self._id, prefix, depth), b.parse_tree)

    async def edit(
        self, path: b.PathArg, old_string: str, new_string: str, replace_all: bool = False
    ) -> EditResult:
        return await self._client._call(
            b.edit_call(self._id, path, old_string, new_string, replace_all), b.parse_edit
        )


class AsyncSandbox:
    def __init__(self, client: AsyncClient, sandbox_id: str, record: Optional[SandboxRecord]) -> None:
        self._client = client
        self.id = sandbox_id
        self.record = record
        self.fs = AsyncFiles(client, sandbox_id)

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r}, name={self.name!r})"

    @property
    def name(self) -> Optional[str]:
        return self.record.name if self.record is not None else None

    async def info(self) -> SandboxInfo:
        rec = await self._client.sandboxes.get(self.id)
        self.record = rec
        return rec

    async def exec(
        self,
        script: str,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout_ms: Optional[int] = None,
        debug: bool = False,
        read_only: bool = False,
        stdin: Optional[str] = None,
    ) -> ExecResult:
        call = b.exec_call(
            self.id, script, cwd, env, timeout_ms, debug, read_only, stdin, self._client._core.retry_exec
        )
        return await self._client._call(call, b.parse_exec)

    async def exec_batch(
        self,
        scripts: Sequence[b.BatchItem],
        timeout_ms: Optional[int] = None,
        read_only: bool = False,
        stop_on_error: Optional[bool] = None,
        per_script_timeout_ms: Optional[int] = None,
    ) -> List[BatchExecResult]:
        call = b.batch_call(
            self.id, scripts, timeout_ms, read_only, stop_on_error, per_script_timeout_ms,
            self._client._core.retry_exec,
        )
        return await self._client._call(call, b.parse_batch)

    def exec_stream(
        self,
        script: str,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout_ms: Optional[int] = None,
        debug: bool = False,
        read_only: bool = False,
        stdin: Optional[str] = None,
    ) -> AsyncIterator[StreamEvent]:
        """``async for ev in sb.exec_stream(...)`` (not awaited itself)."""
        call = b.stream_call(self.id, script, cwd, env, timeout_ms, debug, read_only, stdin)
        return self._client._iter_events(call)

    async def ingest_archive(
        self,
        file_obj: Union[IO[bytes], bytes],
        base_path: Optional[b.PathArg] = None,
        *,
        filename: str = "archive",
    ) -> IngestResult:
        call = b.ingest_archive_call(self.id, file_obj, base_path, filename)
        return await self._client._call(call, b.parse_ingest)

    async def ingest_files(
        self, files: Mapping[str, b.FileContent], base_path: Optional[b.PathArg] = None
    ) -> IngestResult:
        return await self._client._call(b.ingest_files_call(self.id, files, base_path), b.parse_ingest)

    async def export(self, base_path: Optional[b.PathArg] = None) -> bytes:
        return await self._client._call(b.export_call(self.id, base_path, False), b.parse_bytes)

    def export_stream(
        self, base_path: Optional[b.PathArg] = None, chunk_size: Optional[int] = None
    ) -> AsyncIterator[bytes]:
        """``async for chunk in sb.export_stream(...)`` (not awaited itself)."""
        return self._client._iter_bytes(b.export_call(self.id, base_path, True), chunk_size)

    async def delete(self) -> None:
        await self._client.sandboxes.delete(self.id)

