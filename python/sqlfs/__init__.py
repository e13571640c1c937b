"""sqlfs: Python SDK for the sqlfs API — persistent bash sandboxes for AI agents.

>>> from sqlfs import Client
>>> with Client(base_url="http://127.0.0.1:8080", auth_secret="...", sub="agent-001") as fs:
...     sb = fs.sandboxes.create(name="demo")
...     print(sb.exec("echo hello").stdout)

Every public name is imported from here; the modules behind it (``sqlfs._client``, ...) are
private and may change.
"""

from ._client import AsyncClient, Client
from ._exceptions import (
    AuthError,
    ConflictError,
    ExecNotFoundError,
    ExecTimeoutError,
    IdempotencyAnswerUnavailableError,
    IdempotencyError,
    IdempotencyInProgressError,
    IdempotencyMismatchError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ReadOnlyViolationError,
    ServerError,
    SQLFSError,
    TransportError,
    UnsupportedMediaTypeError,
    ValidationError,
    VersionNotFoundError,
)
from ._models import (
    BatchExecResult,
    Commit,
    CommitPage,
    Diff,
    EditResult,
    EgressRecord,
    ExecPage,
    ExecRecord,
    ExecResult,
    FileStat,
    IngestResult,
    PathChange,
    ReadResult,
    RestoreResult,
    SandboxInfo,
    SandboxRecord,
    Snapshot,
    StreamEvent,
    TreeEntry,
)
from ._resources import AsyncFiles, AsyncSandbox, AsyncSandboxes, Files, Sandbox, Sandboxes
from ._version import __version__

__all__ = [
    "__version__",
    "Client",
    "AsyncClient",
    "Sandboxes",
    "Sandbox",
    "Files",
    "AsyncSandboxes",
    "AsyncSandbox",
    "AsyncFiles",
    "SandboxRecord",
    "SandboxInfo",
    "FileStat",
    "ReadResult",
    "TreeEntry",
    "ExecResult",
    "BatchExecResult",
    "StreamEvent",
    "IngestResult",
    "EditResult",
    "Commit",
    "CommitPage",
    "ExecRecord",
    "ExecPage",
    "PathChange",
    "Diff",
    "RestoreResult",
    "Snapshot",
    "EgressRecord",
    "SQLFSError",
    "ValidationError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
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
    "ReadOnlyViolationError",
    "RateLimitError",
    "ServerError",
    "TransportError",
]
