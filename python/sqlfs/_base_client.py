"""The sessions behind ``Client`` and ``AsyncClient``.

A session holds what one client knows (server URL, credentials and token, timeouts, retry
settings, the httpx client) and sends :class:`~sqlfs._calls.Call` s: it adds the token, retries
what may be retried and maps failures to exceptions. :class:`BaseSession` makes every decision;
:class:`SyncSession` and :class:`AsyncSession` only do the I/O (send, sleep, read a stream). The
client hands its session to every sandbox and file handle it gives out, so they send through it
and see its settings.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from typing import Any, AsyncIterator, Callable, Dict, Iterator, Mapping, Optional, TypeVar, Union

import httpx

from ._calls import (
    UNSET,
    Call,
    Retry,
    bootstrap_call,
    multipart_boundary,
    new_idempotency_key,
    parse_token,
    set_idempotency_key,
)
from ._exceptions import (
    IdempotencyInProgressError,
    SQLFSError,
    TransportError,
    error_from_response,
    parse_retry_after,
)
from ._models import StreamEvent
from ._sse import SSEParser
from ._version import __version__

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_MAX_RETRY_DELAY = 30.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
STREAM_CHUNK = 1 << 20
USER_AGENT = f"sql-fs-sdk-python/{__version__}"

TimeoutArg = Union[float, int, httpx.Timeout, None]

T = TypeVar("T")


def env_default(value: Optional[str], name: str) -> Optional[str]:
    return value if value is not None else os.environ.get(name)


def make_timeout(base: TimeoutArg, read: Optional[float]) -> httpx.Timeout:
    if isinstance(base, httpx.Timeout):
        if read is None:
            return base
        cur = base.read
        r = read if cur is None else max(cur, read)
        return httpx.Timeout(connect=base.connect, read=r, write=base.write, pool=base.pool)
    t = DEFAULT_TIMEOUT if base is None else float(base)
    return httpx.Timeout(t, read=max(t, read) if read is not None else t)


def is_unsent(exc: Exception) -> bool:
    """True when the transport error happened before the request reached the server."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def waits_for_first(call: Call, err: SQLFSError) -> bool:
    """409 IDEMPOTENCY_IN_PROGRESS to a call with a key: its first attempt still runs."""
    return call.idempotency_key is not None and isinstance(err, IdempotencyInProgressError)


def should_retry_response(call: Call, err: SQLFSError) -> bool:
    if call.retry is Retry.NONE:
        return False
    if waits_for_first(call, err):
        return True
    status = err.status or 0
    if status == 429:
        return True
    if status < 500:
        return False
    if call.retry is Retry.SAFE_ONLY:
        return err.retryable
    return True


def should_retry_transport(call: Call, exc: Exception) -> bool:
    if call.retry is Retry.NONE:
        return False
    if is_unsent(exc):
        return True
    # With a key, a repeat of a request the server already got is answered from what it kept
    # (or 409 IDEMPOTENCY_IN_PROGRESS while the first still runs): nothing runs twice.
    return call.retry is Retry.IDEMPOTENT or call.idempotency_key is not None


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with jitter: attempt 0 → 0.25..0.5 s, 1 → 0.5..1 s, ..."""
    top = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** attempt))
    return random.uniform(top / 2, top)


def retry_delay(attempt: int, response: Optional[httpx.Response]) -> float:
    if response is not None:
        ra = parse_retry_after(response.headers.get("retry-after"))
        if ra is not None:
            return ra
    return backoff_delay(attempt)


class Attempts:
    """The retries of one call. ``count`` is bounded by ``max_retries``; the waits for a first
    attempt that still runs under the same Idempotency-Key (409 IDEMPOTENCY_IN_PROGRESS) are
    bounded by time instead: ``pending_until``, set at the first such answer."""

    def __init__(self) -> None:
        self.count = 0
        self.pending = 0
        self.pending_until: Optional[float] = None


def iter_file(file_obj: Any) -> Iterator[bytes]:
    while True:
        chunk = file_obj.read(STREAM_CHUNK)
        if not chunk:
            return
        yield chunk


async def aiter_file(file_obj: Any) -> AsyncIterator[bytes]:
    while True:
        chunk = file_obj.read(STREAM_CHUNK)
        if not chunk:
            return
        yield chunk


def transport_error(exc: Exception) -> TransportError:
    text = str(exc) or type(exc).__name__
    return TransportError(f"{type(exc).__name__}: {text}", code="TRANSPORT_ERROR")


def stream_incomplete() -> TransportError:
    return TransportError("stream ended before the exit event", code="STREAM_INCOMPLETE")


class BaseSession:
    """Configuration, token and retry decisions shared by the sync and async sessions."""

    _http: Union[httpx.Client, httpx.AsyncClient]

    def __init__(
        self,
        *,
        base_url: Optional[str],
        auth_secret: Optional[str],
        sub: Optional[str],
        token: Optional[str],
        tenant: Optional[str],
        expires_in: Optional[str],
        timeout: TimeoutArg,
        max_retries: int,
        retry_exec: bool,
        max_retry_delay: float,
        headers: Optional[Mapping[str, str]],
        idempotency_keys: bool = True,
    ) -> None:
        url = env_default(base_url, "SQLFS_URL")
        if not url:
            raise ValueError("base_url is required (or set SQLFS_URL)")
        self.base_url = url.rstrip("/")
        if token is None and auth_secret is None:
            token = env_default(None, "SQLFS_TOKEN")
            if token is None:
                auth_secret = env_default(None, "AUTH_SECRET")
        if token is None and auth_secret is not None and not sub:
            raise ValueError("sub is required to mint a token with auth_secret")
        if token is None and auth_secret is None:
            raise ValueError("pass token= or auth_secret= and sub=")
        self._auth_secret = auth_secret
        self.sub = sub
        self.tenant = tenant
        self.expires_in = expires_in
        self._token = token
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.retry_exec = bool(retry_exec)
        self.max_retry_delay = float(max_retry_delay)
        self.idempotency_keys = bool(idempotency_keys)
        self._headers: Dict[str, str] = {"User-Agent": USER_AGENT}
        if headers:
            self._headers.update(headers)

    @property
    def can_mint(self) -> bool:
        return self._auth_secret is not None and bool(self.sub)

    def bootstrap(self) -> Call:
        assert self._auth_secret is not None and self.sub
        return bootstrap_call(self._auth_secret, self.sub, self.tenant, self.expires_in)

    def _chunks(self, file_obj: Any) -> Any:
        """The body of a call with ``stream_body``, in the form the session's httpx client sends."""
        raise NotImplementedError

    def prepare(self, call: Call) -> Attempts:
        """Before the first attempt: a call to a route that takes an Idempotency-Key and may be
        retried gets a generated key (uuid4) unless the caller gave one; every attempt sends it."""
        if (
            call.keyed
            and call.idempotency_key is None
            and self.idempotency_keys
            and self.max_retries > 0
            and call.retry is not Retry.NONE
        ):
            set_idempotency_key(call, new_idempotency_key())
        return Attempts()

    @staticmethod
    def failed(call: Call, err: SQLFSError) -> SQLFSError:
        """``err``, naming the Idempotency-Key its call sent (to retry it later with that key)."""
        err.idempotency_key = call.idempotency_key
        return err

    def read_budget(self, call: Call) -> float:
        """The call's read timeout in seconds: how long its first attempt may still run."""
        read = make_timeout(self.timeout, call.read_timeout).read
        return DEFAULT_TIMEOUT if read is None else float(read)

    def build(self, call: Call, token: Optional[str]) -> httpx.Request:
        headers = dict(self._headers)
        headers.update(call.headers)
        if call.auth and token is not None and "Authorization" not in call.headers:
            headers["Authorization"] = f"Bearer {token}"
        kwargs: Dict[str, Any] = {}
        if call.json is not UNSET:
            kwargs["json"] = call.json
        if call.content is not None:
            kwargs["content"] = call.content
        elif call.stream_body is not None:
            kwargs["content"] = self._chunks(call.stream_body)
        if call.files is not None:
            kwargs["files"] = call.files
            if call.idempotency_key is not None and "Content-Type" not in call.headers:
                boundary = multipart_boundary(call.idempotency_key)
                headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        if call.data is not None:
            kwargs["data"] = call.data
        return self._http.build_request(
            call.method,
            self.base_url + call.path,
            params=call.params,
            headers=headers,
            timeout=make_timeout(self.timeout, call.read_timeout),
            **kwargs,
        )

    @staticmethod
    def accepted(call: Call, resp: httpx.Response) -> bool:
        if call.expect is not None:
            return resp.status_code in call.expect
        return 200 <= resp.status_code < 300

    @staticmethod
    def failure(call: Call, resp: httpx.Response) -> SQLFSError:
        if 200 <= resp.status_code < 300:
            return SQLFSError(
                f"unexpected status {resp.status_code} from {call.method} {call.path}",
                code="UNEXPECTED_STATUS",
                status=resp.status_code,
            )
        return error_from_response(resp.status_code, resp.headers, resp.content)

    def should_remint(self, call: Call, resp: httpx.Response) -> bool:
        """A 401 to a token this session minted: mint a new one (the caller does it once)."""
        return resp.status_code == 401 and call.auth and self.can_mint

    def forget_token(self, token: Optional[str]) -> None:
        """Drop ``token`` so that the next request mints another (unless one already did)."""
        if self._token == token:
            self._token = None

    def retry_wait(
        self, call: Call, err: SQLFSError, resp: httpx.Response, tries: Attempts
    ) -> Optional[float]:
        """Seconds to wait before another attempt, or None to give up and raise ``err``."""
        if self.max_retries == 0 or not should_retry_response(call, err):
            return None
        if waits_for_first(call, err):
            now = time.monotonic()
            if tries.pending_until is None:
                tries.pending_until = now + self.read_budget(call)
            if now >= tries.pending_until:
                return None
            delay = min(backoff_delay(min(tries.pending, 16)), tries.pending_until - now)
            if call.rewind is not None and not call.rewind():
                return None
            tries.pending += 1
            return delay
        if tries.count >= self.max_retries:
            return None
        delay = retry_delay(tries.count, resp)
        if delay > self.max_retry_delay:
            return None
        if call.rewind is not None and not call.rewind():
            return None
        tries.count += 1
        return delay

    def transport_wait(self, call: Call, exc: Exception, tries: Attempts) -> Optional[float]:
        if tries.count >= self.max_retries or not should_retry_transport(call, exc):
            return None
        if call.rewind is not None and not call.rewind():
            return None
        delay = backoff_delay(tries.count)
        tries.count += 1
        return delay


class SyncSession(BaseSession):
    """The session of a :class:`sqlfs.Client`, on an ``httpx.Client``."""

    def __init__(self, http_client: Optional[httpx.Client], **options: Any) -> None:
        super().__init__(**options)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client()
        self._lock = threading.Lock()

    def _chunks(self, file_obj: Any) -> Iterator[bytes]:
        return iter_file(file_obj)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def token(self) -> str:
        """The bearer token, minted now if needed."""
        if self._token is not None:
            return self._token
        with self._lock:
            if self._token is None:
                self._token = parse_token(self.execute(self.bootstrap()))
            return self._token

    def execute(self, call: Call, stream: bool = False) -> httpx.Response:
        """Send ``call`` (retrying as it allows) and return its accepted response, or raise."""
        tries = self.prepare(call)
        refreshed = False
        while True:
            token = self.token() if call.auth else None
            try:
                req = self.build(call, token)
                resp = self._http.send(req, stream=stream)
            except httpx.RequestError as exc:
                wait = self.transport_wait(call, exc, tries)
                if wait is None:
                    raise self.failed(call, transport_error(exc)) from exc
                time.sleep(wait)
                continue
            if self.accepted(call, resp):
                return resp
            if stream:
                try:
                    resp.read()
                except httpx.RequestError as exc:
                    raise transport_error(exc) from exc
                finally:
                    resp.close()
            err = self.failure(call, resp)
            if not refreshed and self.should_remint(call, resp):
                refreshed = True
                with self._lock:
                    self.forget_token(token)
                if call.rewind is None or call.rewind():
                    continue
            wait = self.retry_wait(call, err, resp, tries)
            if wait is None:
                raise self.failed(call, err)
            time.sleep(wait)

    def call(self, call: Call, parse: Callable[[httpx.Response], T]) -> T:
        return parse(self.execute(call))

    def iter_events(self, call: Call) -> Iterator[StreamEvent]:
        resp = self.execute(call, stream=True)
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
                raise transport_error(exc) from exc
            raise stream_incomplete()
        finally:
            resp.close()

    def iter_bytes(self, call: Call, chunk_size: Optional[int]) -> Iterator[bytes]:
        resp = self.execute(call, stream=True)
        try:
            try:
                for chunk in resp.iter_bytes(chunk_size):
                    yield chunk
            except httpx.RequestError as exc:
                raise transport_error(exc) from exc
        finally:
            resp.close()


class AsyncSession(BaseSession):
    """The session of a :class:`sqlfs.AsyncClient`, on an ``httpx.AsyncClient``."""

    def __init__(self, http_client: Optional[httpx.AsyncClient], **options: Any) -> None:
        super().__init__(**options)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        # created on first use: before Python 3.10 a Lock binds to the loop current at creation
        self._lock: Optional[asyncio.Lock] = None

    def _chunks(self, file_obj: Any) -> AsyncIterator[bytes]:
        return aiter_file(file_obj)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def token(self) -> str:
        """The bearer token, minted now if needed."""
        if self._token is not None:
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is None:
                self._token = parse_token(await self.execute(self.bootstrap()))
            return self._token

    async def execute(self, call: Call, stream: bool = False) -> httpx.Response:
        """Send ``call`` (retrying as it allows) and return its accepted response, or raise."""
        tries = self.prepare(call)
        refreshed = False
        while True:
            token = await self.token() if call.auth else None
            try:
                req = self.build(call, token)
                resp = await self._http.send(req, stream=stream)
            except httpx.RequestError as exc:
                wait = self.transport_wait(call, exc, tries)
                if wait is None:
                    raise self.failed(call, transport_error(exc)) from exc
                await asyncio.sleep(wait)
                continue
            if self.accepted(call, resp):
                return resp
            if stream:
                try:
                    await resp.aread()
                except httpx.RequestError as exc:
                    raise transport_error(exc) from exc
                finally:
                    await resp.aclose()
            err = self.failure(call, resp)
            if not refreshed and self.should_remint(call, resp):
                refreshed = True
                self.forget_token(token)
                if call.rewind is None or call.rewind():
                    continue
            wait = self.retry_wait(call, err, resp, tries)
            if wait is None:
                raise self.failed(call, err)
            await asyncio.sleep(wait)

    async def call(self, call: Call, parse: Callable[[httpx.Response], T]) -> T:
        return parse(await self.execute(call))

    async def iter_events(self, call: Call) -> AsyncIterator[StreamEvent]:
        resp = await self.execute(call, stream=True)
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
                raise transport_error(exc) from exc
            raise stream_incomplete()
        finally:
            await resp.aclose()

    async def iter_bytes(self, call: Call, chunk_size: Optional[int]) -> AsyncIterator[bytes]:
        resp = await self.execute(call, stream=True)
        try:
            try:
                async for chunk in resp.aiter_bytes(chunk_size):
                    yield chunk
            except httpx.RequestError as exc:
                raise transport_error(exc) from exc
        finally:
            await resp.aclose()
