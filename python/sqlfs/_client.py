"""The entry points: ``Client`` (blocking, on ``httpx.Client``) and ``AsyncClient`` (on
``httpx.AsyncClient``). Each owns a session (``_base_client``) and gives it to the handles in
``client.sandboxes``; the two have the same arguments, surface and retry rules."""

from __future__ import annotations

from typing import Any, Awaitable, Mapping, Optional

import httpx

from ._base_client import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_DELAY,
    DEFAULT_TIMEOUT,
    AsyncSession,
    SyncSession,
    TimeoutArg,
)
from ._calls import UNSET, request_call
from ._resources import AsyncSandboxes, Sandboxes

__all__ = ["Client", "AsyncClient"]


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

    Idempotency: the calls to exec-sync, exec-sync-batch, PUT files, writeFiles, ingest and
    ingest-files send an ``Idempotency-Key`` (the caller's ``idempotency_key=``, else a uuid4
    generated for the call when it may be retried; ``idempotency_keys=False`` turns generation
    off), the same on every attempt. With a key, a call is also retried after a connection lost
    mid-request: the server answers the repeat from the answer it kept and runs nothing twice.
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
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: Optional[httpx.Client] = None,
        retry_exec: bool = False,
        max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY,
        headers: Optional[Mapping[str, str]] = None,
        idempotency_keys: bool = True,
    ) -> None:
        self._session = SyncSession(
            http_client,
            base_url=base_url,
            auth_secret=auth_secret,
            sub=sub,
            token=token,
            tenant=tenant,
            expires_in=expires_in,
            timeout=timeout,
            max_retries=max_retries,
            retry_exec=retry_exec,
            max_retry_delay=max_retry_delay,
            headers=headers,
            idempotency_keys=idempotency_keys,
        )
        self.sandboxes = Sandboxes(self._session)

    @property
    def base_url(self) -> str:
        return self._session.base_url

    @property
    def token(self) -> str:
        """The bearer token, minted now if needed."""
        return self._session.token()

    def get_token(self) -> str:
        """The bearer token, minted now if needed (the same as :attr:`token`)."""
        return self._session.token()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = UNSET,
        content: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        retry: bool = False,
    ) -> httpx.Response:
        """Send a raw authenticated request to ``path`` (e.g. ``/v1/sandboxes``).

        Non-2xx answers raise the mapped :class:`SQLFSError`. Retried like other calls only
        when ``retry=True``.
        """
        return self._session.execute(request_call(method, path, params, json, content, headers, retry))


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
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: Optional[httpx.AsyncClient] = None,
        retry_exec: bool = False,
        max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY,
        headers: Optional[Mapping[str, str]] = None,
        idempotency_keys: bool = True,
    ) -> None:
        self._session = AsyncSession(
            http_client,
            base_url=base_url,
            auth_secret=auth_secret,
            sub=sub,
            token=token,
            tenant=tenant,
            expires_in=expires_in,
            timeout=timeout,
            max_retries=max_retries,
            retry_exec=retry_exec,
            max_retry_delay=max_retry_delay,
            headers=headers,
            idempotency_keys=idempotency_keys,
        )
        self.sandboxes = AsyncSandboxes(self._session)

    @property
    def base_url(self) -> str:
        return self._session.base_url

    @property
    def token(self) -> Awaitable[str]:
        """The bearer token, minted now if needed: ``await client.token``."""
        return self._session.token()

    async def get_token(self) -> str:
        """The bearer token, minted now if needed (the same as ``await client.token``)."""
        return await self._session.token()

    async def aclose(self) -> None:
        await self._session.close()

    close = aclose

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = UNSET,
        content: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        retry: bool = False,
    ) -> httpx.Response:
        """Send a raw authenticated request; see :meth:`sqlfs.Client.request`."""
        call = request_call(method, path, params, json, content, headers, retry)
        return await self._session.execute(call)
