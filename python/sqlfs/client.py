"""Synchronous client: ``Client`` → ``client.sandboxes`` → ``Sandbox`` → ``sb.fs``."""

from __future__ import annotations

import threading
import time
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    Iterator,
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
from .errors import SQLFSError, TransportError, error_from_response
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

__all__ = ["Client", "Sandboxes", "Sandbox", "Files"]

T = TypeVar("T")


class _Core:
    """Configuration, token and retry loop shared by the sync and async clients."""

    def __init__(
        self,
        base_url: Optional[str],
        auth_secret: Optional[str],
        sub: Optional[str],
        token: Optional[str],
        tenant: Optional[str],
        expires_in: Optional[str],
        timeout: b.TimeoutArg,
        max_retries: int,
        retry_exec: bool,
        max_retry_delay: float,
        headers: Optional[Mapping[str, str]],
    ) -> None:
        url = b.env_default(base_url, "SQLFS_URL")
        if not url:
            raise ValueError("base_url is required (or set SQLFS_URL)")
        self.base_url = url.rstrip("/")
        if token is None and auth_secret is None:
            token = b.env_default(None, "SQLFS_TOKEN")
            if token is None:
                auth_secret = b.env_default(None, "AUTH_SECRET")
        if token is None and auth_secret is not None and not sub:
            raise ValueError("sub is required to mint a token with auth_secret")
        if token is None and auth_secret is None:
            raise ValueError("pass token= or auth_secret= and sub=")
        self._auth_secret = auth_secret
        self.sub = sub
        self.tenant = tenant
        self.expires_in = expires_in
        self._token = token
        self._token_minted = False
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.retry_exec = bool(retry_exec)
        self.max_retry_delay = float(max_retry_delay)
        self._headers: Dict[str, str] = {"User-Agent": f"sql-fs-sdk-python/{_version()}"}
        if headers:
            self._headers.update(headers)

    @property
    def can_mint(self) -> bool:
        return self._auth_secret is not None and bool(self.sub)

    def bootstrap(self) -> b.Call:
        assert self._auth_secret is not None and self.sub
        return b.bootstrap_call(self._auth_secret, self.sub, self.tenant, self.expires_in)

    def build(
        self, http: Union[httpx.Client, httpx.AsyncClient], call: b.Call, token: Optional[str]
    ) -> httpx.Request:
        headers = dict(self._headers)
        headers.update(call.headers)
        if call.auth and token is not None and "Authorization" not in call.headers:
            headers["Authorization"] = f"Bearer {token}"
        kwargs: Dict[str, Any] = {}
        if call.json is not b._UNSET:
            kwargs["json"] = call.json
        if call.content is not None:
            kwargs["content"] = call.content
        elif call.stream_body is not None:
            if isinstance(http, httpx.AsyncClient):
                kwargs["content"] = b.aiter_file(call.stream_body)
            else:
                kwargs["content"] = b.iter_file(call.stream_body)
        if call.files is not None:
            kwargs["files"] = call.files
        if call.data is not None:
            kwargs["data"] = call.data
        return http.build_request(
            call.method,
            self.base_url + call.path,
            params=call.params,
            headers=headers,
            timeout=b.make_timeout(self.timeout, call.read_timeout),
            **kwargs,
        )

    @staticmethod
    def accepted(call: b.Call, resp: httpx.Response) -> bool:
        if call.expect is not None:
            return resp.status_code in call.expect
        return 200 <= resp.status_code < 300

    @staticmethod
    def failure(call: b.Call, resp: httpx.Response) -> SQLFSError:
        if 200 <= resp.status_code < 300:
            return SQLFSError(
                f"unexpected status {resp.status_code} from {call.method} {call.path}",
                code="UNEXPECTED_STATUS",
                status=resp.status_code,
            )
        return error_from_response(resp.status_code, resp.headers, resp.content)

    def retry_wait(self, call: b.Call, err: SQLFSError, resp: httpx.Response, attempt: int) -> Optional[float]:
        """Seconds to wait before another attempt, or None to give up and raise ``err``."""
        if attempt >= self.max_retries or not b.should_retry_response(call, err):
            return None
        delay = b.retry_delay(attempt, resp)
        if delay > self.max_retry_delay:
            return None
        if call.rewind is not None and not call.rewind():
            return None
        return delay

    def transport_wait(self, call: b.Call, exc: Exception, attempt: int) -> Optional[float]:
        if attempt >= self.max_retries or not b.should_retry_transport(call, exc):
            return None
        if call.rewind is not None and not call.rewind():
            return None
        return b.backoff_delay(attempt)


def _version() -> str:
    from . import __version__

    return __version__


def _transport_error(exc: Exception) -> TransportError:
    text = str(exc) or type(exc).__name__
    return TransportError(f"{type(exc).__name__}: {text}", code="TRANSPORT_ERROR")


class Client:
    """Client of one sqlfs server, as one owner.

    Authenticate with ``token=`` (a JWT) or with ``auth_secret=`` and ``sub=``: then a token is
    minted lazily through ``POST /v1/auth/bootstrap`` on the first request (and minted again once
    if the server later answers 401, e.g. after expiry). Use it as a context manager, or call
    :meth:`close`. ``http_client`` may be a caller-owned ``httpx.Client`` (it is not closed).

    Retries: up to ``max_retries`` more attempts on 429 and 5xx, honouring ``Retry-After`` (a
    wait longer than ``max_retry_delay`` seconds is not made: the error is raised at once),
    exponential backoff with jitter otherwise. Other 4xx are raised at once. Streams are never
    retried. A write-mode exec is retried only when the server reports that nothing was applied
    (429, or a 5xx with ``retryable: true``), unless ``retry_exec=True``.
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
        http_client: Optional[httpx.Client] = None,
        retry_exec: bool = False,
        max_retry_delay: float = b.DEFAULT_MAX_RETRY_DELAY,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._core = _Core(
            base_url, auth_secret, sub, token, tenant, expires_in, timeout, max_retries,
            retry_exec, max_retry_delay, headers,
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client()
        self._lock = threading.Lock()
        self.sandboxes = Sandboxes(self)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._core.base_url

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- auth -----------------------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The bearer token, minted now if needed."""
        return self._ensure_token()

    def _ensure_token(self) -> str:
        core = self._core
        if core._token is not None:
            return core._token
        with self._lock:
            if core._token is None:
                resp = self._execute(core.bootstrap())
                core._token = b.parse_token(resp)
                core._token_minted = True
            return core._token

    # -- transport ------------------------------------------------------------------------------

    def _execute(self, call: b.Call, stream: bool = False) -> httpx.Response:
        core = self._core
        attempt = 0
        refreshed = False
        while True:
            token = self._ensure_token() if call.auth else None
            try:
                req = core.build(self._http, call, token)
                resp = self._http.send(req, stream=stream)
            except httpx.RequestError as exc:
                wait = core.transport_wait(call, exc, attempt)
                if wait is None:
                    raise _transport_error(exc) from exc
                time.sleep(wait)
                attempt += 1
                continue
            if core.accepted(call, resp):
                return resp
            try:
                if stream:
                    resp.read()
            except httpx.RequestError as exc:
                raise _transport_error(exc) from exc
            finally:
                if stream:
                    resp.close()
            err = core.failure(call, resp)
            if resp.status_code == 401 and call.auth and core.can_mint and not refreshed:
                refreshed = True
                with self._lock:
                    if core._token == token:
                        core._token = None
                if call.rewind is None or call.rewind():
                    continue
            wait = core.retry_wait(call, err, resp, attempt)
            if wait is None:
                raise err
            time.sleep(wait)
            attempt += 1

    def _call(self, call: b.Call, parse: Callable[[httpx.Response], T]) -> T:
        return parse(self._execute(call))

    def request(
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
        """Send a raw authenticated request to ``path`` (e.g. ``/v1/sandboxes``).

        Non-2xx answers raise the mapped :class:`SQLFSError`. Retried like other calls only
        when ``retry=True``.
        """
        call = b.Call(
            method.upper(),
            path if path.startswith("/") else "/" + path,
            params=dict(params) if params else None,
            json=json,
            content=content,
            headers=dict(headers or {}),
            retry=b.Retry.IDEMPOTENT if retry else b.Retry.NONE,
        )
        return self._execute(call)

    def _iter_events(self, call: b.Call) -> Iterator[StreamEvent]:
        resp = self._execute(call, stream=True)
        try:
            parser = SSEParser()
            try:
                for chunk in resp.iter_bytes():
                    for frame in parser.feed(chunk):
                        ev = StreamEvent.from_frame(frame.event, frame.data)
                        yield ev
                        if ev.type == "exit":
                            return
            except httpx.RequestError as exc:
                raise _transport_error(exc) from exc
            raise TransportError("stream ended before the exit event", code="STREAM_INCOMPLETE")
        finally:
            resp.close()

    def _iter_bytes(self, call: b.Call, chunk_size: Optional[int]) -> Iterator[bytes]:
        resp = self._execute(call, stream=True)
        try:
            try:
                for chunk in resp.iter_bytes(chunk_size):
                    yield chunk
            except httpx.RequestError as exc:
                raise _transport_error(exc) from exc
        finally:
            resp.close()


class Sandboxes:
    """``client.sandboxes``: list, create, get, attach and delete sandboxes."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> List[SandboxRecord]:
        return self._client._call(b.Call("GET", "/v1/sandboxes"), b.parse_records)

    def create(
        self,
        name: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        files: Optional[Mapping[str, b.FileContent]] = None,
        python: Optional[bool] = None,
        javascript: Optional[bool] = None,
        network: Optional[bool] = None,
        **extra: Any,
    ) -> "Sandbox":
        """Create a sandbox. ``files`` maps absolute paths to UTF-8 text; ``env`` applies to
        every exec of the sandbox. Unknown keyword arguments are sent as extra body fields."""
        call = b.create_call(name, env, files, python, javascript, network, extra)
        record = self._client._call(call, b.parse_record)
        return Sandbox(self._client, record.id, record)

    def get(self, sandbox_id: str) -> SandboxInfo:
        return self._client._call(b.Call("GET", b.sandbox_path(sandbox_id)), b.parse_info)

    def attach(self, sandbox_id: str) -> "Sandbox":
        """A handle on an existing sandbox, without any request."""
        b.sandbox_path(sandbox_id)
        return Sandbox(self._client, sandbox_id, None)

    def delete(self, sandbox_id: str) -> None:
        self._client._call(b.Call("DELETE", b.sandbox_path(sandbox_id)), b.parse_none)


class Files:
    """``sb.fs``: the sandbox's filesystem."""

    def __init__(self, client: Client, sandbox_id: str) -> None:
        self._client = client
        self._id = sandbox_id

    def read(self, path: b.PathArg) -> ReadResult:
        return self._client._call(b.read_call(self._id, path), b.parse_read(path))

    def read_text(self, path: b.PathArg, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read(path).content.decode(encoding, errors)

    def read_stream(self, path: b.PathArg, chunk_size: Optional[int] = None) -> Iterator[bytes]:
        """The file's bytes in chunks as they arrive, for files too large to hold in memory.
        Not retried."""
        call = b.read_call(self._id, path)
        call.retry = b.Retry.NONE
        return self._client._iter_bytes(call, chunk_size)

    def write(self, path: b.PathArg, content: b.WriteContent) -> None:
        """Create or replace a file (parents created; an existing file keeps its mode).

        ``content`` is str (UTF-8), bytes, or a binary file object, which is streamed in chunks
        (for files too large to hold in memory; retried only if it can seek back)."""
        self._client._call(b.write_call(self._id, path, content), b.parse_none)

    def write_files(self, files: Mapping[str, b.FileContent]) -> None:
        """Write several UTF-8 text files in one atomic transaction."""
        self._client._call(b.write_files_call(self._id, files), b.parse_none)

    def delete(self, path: b.PathArg, recursive: bool = False) -> None:
        self._client._call(b.delete_file_call(self._id, path, recursive), b.parse_none)

    def mkdir(self, path: b.PathArg, recursive: bool = False) -> None:
        self._client._call(b.mkdir_call(self._id, path, recursive), b.parse_none)

    def tree(self, prefix: Optional[b.PathArg] = None, depth: Optional[int] = None) -> List[TreeEntry]:
        return self._client._call(b.tree_call(self._id, prefix, depth), b.parse_tree)

    def edit(self, path: b.PathArg, old_string: str, new_string: str, replace_all: bool = False) -> EditResult:
        """Replace an exact string in a UTF-8 file (``PATCH /files/{path}``)."""
        return self._client._call(
            b.edit_call(self._id, path, old_string, new_string, replace_all), b.parse_edit
        )


class Sandbox:
    """A handle on one sandbox: ``sb.fs``, exec, ingest/export, delete."""

    def __init__(self, client: Client, sandbox_id: str, record: Optional[SandboxRecord]) -> None:
        self._client = client
        self.id = sandbox_id
        self.record = record
        self.fs = Files(client, sandbox_id)

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, name={self.name!r})"

    @property
    def name(self) -> Optional[str]:
        return self.record.name if self.record is not None else None

    def info(self) -> SandboxInfo:
        """Fetch the current record (``GET /v1/sandboxes/{id}``) and remember it."""
        rec = self._client.sandboxes.get(self.id)
        self.record = rec
        return rec

    def exec(
        self,
        script: str,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout_ms: Optional[int] = None,
        debug: bool = False,
        read_only: bool = False,
        stdin: Optional[str] = None,
    ) -> ExecResult:
        """Run a bash script and wait for it. A timeout raises :class:`ExecTimeoutError`."""
        call = b.exec_call(
            self.id, script, cwd, env, timeout_ms, debug, read_only, stdin, self._client._core.retry_exec
        )
        return self._client._call(call, b.parse_exec)

    def exec_batch(
        self,
        scripts: Sequence[b.BatchItem],
        timeout_ms: Optional[int] = None,
        read_only: bool = False,
        stop_on_error: Optional[bool] = None,
        per_script_timeout_ms: Optional[int] = None,
    ) -> List[BatchExecResult]:
        """Run several scripts in one request (``{"id", "script"}`` mappings or plain strings,
        whose ids are then their indexes). Write mode: sequential, shared shell state, one
        commit. ``read_only=True``: parallel, nothing may be written.

        ``per_script_timeout_ms``: a script that runs longer is killed (``exit_code`` -1,
        ``error == "timeout"``) and the batch continues with the next script, which starts from
        the shell state after the last script that completed. ``timeout_ms`` is the budget of
        the whole batch: when it runs out, the running script and every later one time out."""
        call = b.batch_call(
            self.id, scripts, timeout_ms, read_only, stop_on_error, per_script_timeout_ms,
            self._client._core.retry_exec,
        )
        return self._client._call(call, b.parse_batch)

    def exec_stream(
        self,
        script: str,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout_ms: Optional[int] = None,
        debug: bool = False,
        read_only: bool = False,
        stdin: Optional[str] = None,
    ) -> Iterator[StreamEvent]:
        """Run a script and yield its output live; the last event has ``type == "exit"``.

        Never retried. Leaving the loop early closes the connection, which kills the script.
        """
        call = b.stream_call(self.id, script, cwd, env, timeout_ms, debug, read_only, stdin)
        return self._client._iter_events(call)

    def ingest_archive(
        self,
        file_obj: Union[IO[bytes], bytes],
        base_path: Optional[b.PathArg] = None,
        *,
        filename: str = "archive",
    ) -> IngestResult:
        """Upload a tar/tar.gz/tar.bz2/tar.xz/tar.zst/zip archive and unpack it at ``base_path``
        (server default ``/home/user/project``). All or nothing."""
        call = b.ingest_archive_call(self.id, file_obj, base_path, filename)
        return self._client._call(call, b.parse_ingest)

    def ingest_files(
        self, files: Mapping[str, b.FileContent], base_path: Optional[b.PathArg] = None
    ) -> IngestResult:
        """Write files given as ``{relative/path: bytes or str}`` under ``base_path`` (sent
        base64-encoded, so binary content is fine). Atomic."""
        return self._client._call(b.ingest_files_call(self.id, files, base_path), b.parse_ingest)

    def export(self, base_path: Optional[b.PathArg] = None) -> bytes:
        """The subtree at ``base_path`` as a gzip-compressed tar archive."""
        return self._client._call(b.export_call(self.id, base_path, False), b.parse_bytes)

    def export_stream(
        self, base_path: Optional[b.PathArg] = None, chunk_size: Optional[int] = None
    ) -> Iterator[bytes]:
        """Like :meth:`export` but yields the archive in chunks as it is produced."""
        return self._client._iter_bytes(b.export_call(self.id, base_path, True), chunk_size)

    def delete(self) -> None:
        self._client.sandboxes.delete(self.id)

