"""Exceptions raised by the SDK.

Every exception derives from :class:`SQLFSError`. HTTP statuses map to classes as follows:

====== ==============================================================
status exception
====== ==============================================================
400    :class:`ValidationError`
401    :class:`AuthError`
403    :class:`AuthError`
404    :class:`NotFoundError`; code ``VERSION_NOT_FOUND``: :class:`VersionNotFoundError`,
       ``EXEC_NOT_FOUND``: :class:`ExecNotFoundError`
408    :class:`ExecTimeoutError` (``.duration_ms``, partial ``.stdout``/``.stderr``, ``.exec_id``)
409    :class:`ConflictError`; code ``IDEMPOTENCY_IN_PROGRESS``:
       :class:`IdempotencyInProgressError`, ``IDEMPOTENCY_ANSWER_UNAVAILABLE``:
       :class:`IdempotencyAnswerUnavailableError`
413    :class:`PayloadTooLargeError` (a :class:`ValidationError`)
415    :class:`UnsupportedMediaTypeError` (a :class:`ValidationError`)
422    :class:`ReadOnlyViolationError`; code ``IDEMPOTENCY_MISMATCH``:
       :class:`IdempotencyMismatchError`
429    :class:`RateLimitError` (``.retry_after`` in seconds)
5xx    :class:`ServerError`
other  :class:`SQLFSError`
(none) :class:`TransportError` (network failure, no HTTP response)
====== ==============================================================

Each error carries ``.code`` (the server's error code, e.g. ``ENOENT``), ``.status`` (the HTTP
status, ``None`` for transport errors), ``.details`` (a list of strings, possibly empty),
``.retryable`` (the server's statement that nothing was applied), ``.body`` (the decoded
JSON error body, or ``None``) and ``.idempotency_key`` (the ``Idempotency-Key`` the failed call
sent, given or generated, or ``None``: pass it back to retry the call without running it twice).
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

__all__ = [
    "SQLFSError",
    "ValidationError",
    "AuthError",
    "NotFoundError",
    "VersionNotFoundError",
    "ExecNotFoundError",
    "ExecTimeoutError",
    "ConflictError",
    "IdempotencyError",
    "IdempotencyMismatchError",
    "IdempotencyInProgressError",
    "IdempotencyAnswerUnavailableError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "ReadOnlyViolationError",
    "RateLimitError",
    "ServerError",
    "TransportError",
]


class SQLFSError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        status: Optional[int] = None,
        details: Optional[List[str]] = None,
        retryable: bool = False,
        body: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details: List[str] = list(details or [])
        self.retryable = retryable
        self.body = body
        # set by the session on errors of calls that sent an Idempotency-Key
        self.idempotency_key: Optional[str] = None

    def __str__(self) -> str:
        head = self.message
        if self.status is not None or self.code:
            tag = " ".join(str(x) for x in (self.status, self.code) if x is not None)
            head = f"[{tag}] {self.message}"
        if self.details:
            head += " (" + "; ".join(self.details) + ")"
        return head

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, code={self.code!r}, "
            f"status={self.status!r}, details={self.details!r})"
        )


class ValidationError(SQLFSError):
    """400: the request was rejected as invalid; nothing was changed."""


class PayloadTooLargeError(ValidationError):
    """413: a body, file, tree listing or the sandbox quota is over a size cap."""


class UnsupportedMediaTypeError(ValidationError):
    """415: the request's Content-Type is not accepted by the route."""


class AuthError(SQLFSError):
    """401 (missing or invalid token) or 403 (wrong secret)."""


class NotFoundError(SQLFSError):
    """404: the sandbox (or one owned by someone else) or the path does not exist."""


class VersionNotFoundError(NotFoundError):
    """404 ``VERSION_NOT_FOUND``: the sandbox exists but has no such version (never made, or
    pruned from its history). Also raised, with ``status`` None, by ``sb.undo()`` when the latest
    commit has no parent to go back to."""


class ExecNotFoundError(NotFoundError):
    """404 ``EXEC_NOT_FOUND``: the sandbox exists but its exec journal has no such exec (never
    run, or pruned with the history)."""


class ExecTimeoutError(SQLFSError):
    """408: the script ran out of time and its process tree was killed.

    Changes made before the kill are committed. ``stdout``/``stderr`` hold the partial output;
    ``exec_id`` names the exec's journal record.
    """

    def __init__(
        self,
        message: str,
        *,
        duration_ms: Optional[int] = None,
        stdout: str = "",
        stderr: str = "",
        exec_id: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.duration_ms = duration_ms
        self.stdout = stdout
        self.stderr = stderr
        self.exec_id = exec_id


class ConflictError(SQLFSError):
    """409: the target exists, a directory is not empty, an edit did not match uniquely, or the
    owner already has as many sandboxes as the server allows (``ESANDBOX_LIMIT``)."""


class ReadOnlyViolationError(SQLFSError):
    """422: a read-only exec tried to change the filesystem; nothing was kept."""


class IdempotencyError(SQLFSError):
    """Base of the answers about an ``Idempotency-Key`` itself (not about the request)."""


class IdempotencyMismatchError(IdempotencyError):
    """422 ``IDEMPOTENCY_MISMATCH``: the key was used before for a different request (method,
    path, query, content type, sandbox or body). Nothing ran; use a new key."""


class IdempotencyInProgressError(ConflictError, IdempotencyError):
    """409 ``IDEMPOTENCY_IN_PROGRESS`` (retryable): the first request with this key is still
    running. The SDK waits and retries it (see the README's "Retries and idempotency"); raised
    when that wait runs out."""


class IdempotencyAnswerUnavailableError(ConflictError, IdempotencyError):
    """409 ``IDEMPOTENCY_ANSWER_UNAVAILABLE``: the first request with this key **was applied**,
    but its answer was too large for the server to keep. For an exec, ``exec_id`` names its
    journal record (``sb.exec_record(exec_id)``); otherwise None."""

    def __init__(self, message: str, *, exec_id: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.exec_id = exec_id


class RateLimitError(SQLFSError):
    """429: rate limited. ``retry_after`` is the server's Retry-After in seconds (or None)."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(SQLFSError):
    """5xx: the server failed or is overloaded (raised after retries are exhausted)."""


class TransportError(SQLFSError):
    """The request failed without an HTTP response (connection refused, reset, timeout)."""


_BY_STATUS: Dict[int, Type[SQLFSError]] = {
    400: ValidationError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    408: ExecTimeoutError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: ReadOnlyViolationError,
    429: RateLimitError,
}

# Codes that select a class of their own, applied only with the status the server gives them.
_BY_CODE: Dict[str, Tuple[int, Type[SQLFSError]]] = {
    "VERSION_NOT_FOUND": (404, VersionNotFoundError),
    "EXEC_NOT_FOUND": (404, ExecNotFoundError),
    "IDEMPOTENCY_MISMATCH": (422, IdempotencyMismatchError),
    "IDEMPOTENCY_IN_PROGRESS": (409, IdempotencyInProgressError),
    "IDEMPOTENCY_ANSWER_UNAVAILABLE": (409, IdempotencyAnswerUnavailableError),
}

# The journal record an IDEMPOTENCY_ANSWER_UNAVAILABLE message names (``.../execs/<id>``).
_EXEC_REF_RE = re.compile(r"/execs/([0-9A-Za-z]+)")


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if secs != secs:  # NaN
        return None
    return max(0.0, secs)


def error_from_response(
    status: int, headers: Mapping[str, str], content: bytes
) -> SQLFSError:
    """Build the exception for a non-2xx response from its status, headers and body."""
    body: Optional[Dict[str, Any]] = None
    try:
        decoded = json.loads(content.decode("utf-8")) if content else None
        if isinstance(decoded, dict):
            body = decoded
    except (ValueError, UnicodeDecodeError):
        body = None

    code: Optional[str] = None
    details: List[str] = []
    retryable = False
    if body is not None:
        message = str(body.get("error") or body.get("message") or f"HTTP {status}")
        raw_code = body.get("code")
        code = str(raw_code) if raw_code is not None else None
        raw_details = body.get("details")
        if isinstance(raw_details, list):
            details = [d if isinstance(d, str) else json.dumps(d) for d in raw_details]
        elif isinstance(raw_details, str):
            details = [raw_details]
        retryable = body.get("retryable") is True
    else:
        text = content[:200].decode("utf-8", "replace").strip()
        message = text or f"HTTP {status}"
    if code is None:
        code = f"HTTP_{status}"

    common: Dict[str, Any] = dict(
        code=code, status=status, details=details, retryable=retryable, body=body
    )
    if status == 408:
        b = body or {}
        duration = b.get("durationMs")
        return ExecTimeoutError(
            message,
            duration_ms=int(duration) if isinstance(duration, (int, float)) else None,
            stdout=str(b.get("stdout") or ""),
            stderr=str(b.get("stderr") or ""),
            exec_id=b.get("execId") if isinstance(b.get("execId"), str) else None,
            **common,
        )
    if status == 429:
        return RateLimitError(
            message, retry_after=parse_retry_after(headers.get("retry-after")), **common
        )
    if status >= 500:
        return ServerError(message, **common)
    cls = _BY_STATUS.get(status, SQLFSError)
    by_code = _BY_CODE.get(code)
    if by_code is not None and by_code[0] == status:
        cls = by_code[1]
    if cls is IdempotencyAnswerUnavailableError:
        ref = _EXEC_REF_RE.search(message)
        return IdempotencyAnswerUnavailableError(
            message, exec_id=ref.group(1) if ref else None, **common
        )
    return cls(message, **common)
