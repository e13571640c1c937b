"""Result types returned by the SDK.

All are immutable dataclasses built from the server's camelCase JSON. Each keeps the decoded
object in ``.raw``; fields the SDK does not know yet stay reachable there and as snake_case
attributes (``record.file_count`` reads ``fileCount``).

Paths (``TreeEntry.path``, ``EditResult.path``, ``PathChange.path``, ``IngestResult.base_path``,
``record.cwd``) are str; a name that is not UTF-8 arrives with its exact bytes in ``<field>Bytes`` and becomes
``bytes.decode("utf-8", "surrogateescape")``, which every SDK method accepts back as a path.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Type, TypeVar

__all__ = [
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
    "PathChange",
    "Commit",
    "CommitPage",
    "ExecRecord",
    "ExecPage",
    "Diff",
    "RestoreResult",
    "Snapshot",
    "EgressRecord",
]

R = TypeVar("R", bound="SandboxRecord")

_CAMEL_RE = re.compile(r"_([a-z0-9])")


def _camel(name: str) -> str:
    return _CAMEL_RE.sub(lambda m: m.group(1).upper(), name)


def _path(d: Mapping[str, Any], key: str) -> Any:
    """d[key], or, when the server added ``<key>Bytes`` (a name that is not UTF-8), those bytes
    decoded the way Python decodes file names (undecodable bytes as surrogate escapes)."""
    enc = d.get(key + "Bytes")
    if isinstance(enc, str):
        try:
            return base64.b64decode(enc, validate=True).decode("utf-8", "surrogateescape")
        except (binascii.Error, ValueError):
            pass
    return d.get(key)


class _RawAccess:
    """Mixin: unknown snake_case attributes fall back to camelCase keys of ``raw``."""

    raw: Dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "raw":
            raise AttributeError(name)
        raw = self.__dict__.get("raw") or {}
        for key in (name, _camel(name)):
            if key in raw:
                return _path(raw, key)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def get(self, key: str, default: Any = None) -> Any:
        """The raw wire field ``key`` (camelCase), or ``default``."""
        return self.raw.get(key, default)


def _opt_int(v: Any) -> Optional[int]:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return int(v)
    return None


def _network_policy(v: Any) -> Optional[Dict[str, Any]]:
    """The object form of a record's ``network`` (``{"allow": [...], "deny": [...]}``, both
    lists always present here, other keys kept as sent); None for ``true``/``false``."""
    if not isinstance(v, Mapping):
        return None
    policy: Dict[str, Any] = dict(v)
    for key in ("allow", "deny"):
        rules = v.get(key)
        policy[key] = [str(r) for r in rules] if isinstance(rules, list) else []
    return policy


@dataclass(frozen=True)
class SandboxRecord(_RawAccess):
    """A sandbox as listed by ``GET /v1/sandboxes``.

    ``network`` is True when the sandbox's execs have network egress (the wire's ``true``, the
    server's ``EGRESS_ALLOW`` policy, or a policy object of its own) and False when they have
    loopback only (the default). ``network_policy`` is that object, ``{"allow": [rules],
    "deny": [rules]}`` in the server's normal form, or None when ``network`` is a plain
    bool; ``raw["network"]`` is the wire value itself.
    """

    id: str
    name: Optional[str] = None
    owner: Optional[str] = None
    created_at: Optional[str] = None
    last_used_at: Optional[str] = None
    python: bool = False
    javascript: bool = False
    network: bool = False
    file_count: Optional[int] = None
    size_bytes: Optional[int] = None
    # compared, but left out of the hash (a dict has none), so a record stays hashable
    network_policy: Optional[Dict[str, Any]] = field(default=None, hash=False)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def extra(self) -> Dict[str, Any]:
        """Wire fields beyond the documented record shape."""
        known = {
            "id", "name", "owner", "createdAt", "lastUsedAt", "python", "javascript",
            "network", "fileCount", "sizeBytes",
        }
        return {k: v for k, v in self.raw.items() if k not in known}

    @classmethod
    def from_json(cls: Type[R], d: Mapping[str, Any]) -> R:
        owner = d.get("owner")
        network = d.get("network", False)
        policy = _network_policy(network)
        return cls(
            id=str(d["id"]),
            name=d.get("name"),
            owner=owner if isinstance(owner, str) or owner is None else json.dumps(owner),
            created_at=d.get("createdAt"),
            last_used_at=d.get("lastUsedAt"),
            python=bool(d.get("python", False)),
            javascript=bool(d.get("javascript", False)),
            network=policy is not None or bool(network),
            file_count=_opt_int(d.get("fileCount")),
            size_bytes=_opt_int(d.get("sizeBytes")),
            network_policy=policy,
            raw=dict(d),
        )


@dataclass(frozen=True)
class SandboxInfo(SandboxRecord):
    """A sandbox as returned by ``GET /v1/sandboxes/{id}`` (same shape as the record)."""


@dataclass(frozen=True)
class FileStat(_RawAccess):
    """Metadata of a file from the ``X-FS-Stat`` header."""

    kind: str
    mode: int
    size: int
    mtime: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FileStat":
        return cls(
            kind=str(d.get("kind", "file")),
            mode=int(d.get("mode", 0)),
            size=int(d.get("size", 0)),
            mtime=d.get("mtime"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class ReadResult:
    """Content and metadata of a file read."""

    path: str
    content: bytes
    stat: Optional[FileStat] = None
    content_type: Optional[str] = None

    @property
    def text(self) -> str:
        """The content decoded as UTF-8 (undecodable bytes replaced)."""
        return self.content.decode("utf-8", "replace")

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class TreeEntry(_RawAccess):
    """One entry of ``sb.fs.tree()``."""

    path: str
    kind: str
    size: int = 0
    mtime: Optional[str] = None
    mode: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TreeEntry":
        return cls(
            path=str(_path(d, "path") if "pathBytes" in d else d["path"]),
            kind=str(d.get("kind", "file")),
            size=int(d.get("size") or 0),
            mtime=d.get("mtime"),
            mode=_opt_int(d.get("mode")),
            raw=dict(d),
        )


def _opt_str(v: Any) -> Optional[str]:
    return v if isinstance(v, str) else None


@dataclass(frozen=True)
class ExecResult(_RawAccess):
    """Outcome of ``sb.exec()``. A non-zero exit code is a result, not an exception.

    ``exec_id`` names the exec's record in the journal (``sb.exec_record(exec_id)``).
    ``replayed`` is True when the server answered from its store of ``Idempotency-Key`` answers:
    this is the answer of an earlier run of the same request, and nothing ran this time."""

    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int = 0
    timed_out: bool = False
    exit_signal: Optional[str] = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    exec_id: Optional[str] = None
    replayed: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def error(self) -> str:
        """Alias of ``stderr``."""
        return self.stderr

    @property
    def ok(self) -> bool:
        """True when the script exited 0 and was not killed."""
        return self.exit_code == 0 and not self.timed_out

    @classmethod
    def from_json(cls, d: Mapping[str, Any], replayed: bool = False) -> "ExecResult":
        code = d.get("exitCode")
        return cls(
            stdout=str(d.get("stdout") or ""),
            stderr=str(d.get("stderr") or ""),
            exit_code=int(code) if isinstance(code, (int, float)) else -1,
            duration_ms=int(d.get("durationMs") or 0),
            timed_out=bool(d.get("timedOut", False)),
            exit_signal=d.get("exitSignal"),
            stdout_truncated=bool(d.get("stdoutTruncated", False)),
            stderr_truncated=bool(d.get("stderrTruncated", False)),
            exec_id=_opt_str(d.get("execId")),
            replayed=replayed,
            raw=dict(d),
        )


@dataclass(frozen=True)
class BatchExecResult(_RawAccess):
    """One script's outcome in ``sb.exec_batch()``.

    ``error`` is the server's per-script status (``"timeout"``, ``"skipped"``) or None; unlike
    :attr:`ExecResult.error` it is not an alias of stderr. ``exec_id`` is the batch's (one for
    all its scripts) and ``replayed`` the batch's answer's (see :class:`ExecResult`).
    """

    id: str
    stdout: str
    stderr: str
    exit_code: int
    duration_ms: int = 0
    error: Optional[str] = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    exec_id: Optional[str] = None
    replayed: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None

    @property
    def timed_out(self) -> bool:
        return self.error == "timeout"

    @classmethod
    def from_json(
        cls, d: Mapping[str, Any], exec_id: Optional[str] = None, replayed: bool = False
    ) -> "BatchExecResult":
        code = d.get("exitCode")
        err = d.get("error")
        return cls(
            id=str(d.get("id", "")),
            stdout=str(d.get("stdout") or ""),
            stderr=str(d.get("stderr") or ""),
            exit_code=int(code) if isinstance(code, (int, float)) else -1,
            duration_ms=int(d.get("durationMs") or 0),
            error=str(err) if err is not None else None,
            stdout_truncated=bool(d.get("stdoutTruncated", False)),
            stderr_truncated=bool(d.get("stderrTruncated", False)),
            exec_id=exec_id if exec_id is not None else _opt_str(d.get("execId")),
            replayed=replayed,
            raw=dict(d),
        )


@dataclass(frozen=True)
class StreamEvent(_RawAccess):
    """One event of ``sb.exec_stream()``.

    ``type`` is ``"start"`` (the first event), ``"stdout"``, ``"stderr"``, ``"exit"`` or
    ``"error"`` (unknown types are passed through). ``data`` is the output chunk for
    stdout/stderr, the message for ``error`` and ``""`` otherwise.
    ``exit_code``/``duration_ms``/``timed_out`` are set on ``exit``; ``code`` on ``error``;
    ``exec_id`` (the exec's journal record) on ``start`` and ``exit``. ``t`` is milliseconds
    since the script started.
    """

    type: str
    data: str = ""
    t: Optional[float] = None
    exit_code: Optional[int] = None
    duration_ms: Optional[int] = None
    timed_out: bool = False
    code: Optional[str] = None
    error: Optional[str] = None
    exec_id: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, event: str, data: str) -> "StreamEvent":
        try:
            d = json.loads(data) if data else {}
        except ValueError:
            d = {"data": data}
        if not isinstance(d, dict):
            d = {"data": d}
        t = d.get("t")
        text = d.get("data")
        if event == "error" and text is None:
            text = d.get("error")
        code = d.get("exitCode")
        err = d.get("error")
        return cls(
            type=event,
            data=text if isinstance(text, str) else ("" if text is None else json.dumps(text)),
            t=float(t) if isinstance(t, (int, float)) else None,
            exit_code=int(code) if isinstance(code, (int, float)) else None,
            duration_ms=_opt_int(d.get("durationMs")),
            timed_out=bool(d.get("timedOut", False)),
            code=d.get("code"),
            error=str(err) if err is not None else None,
            exec_id=_opt_str(d.get("execId")),
            raw=d,
        )


@dataclass(frozen=True)
class IngestResult(_RawAccess):
    """Outcome of ``ingest_archive``/``ingest_files``. ``replayed``: the answer of an earlier
    run of the same request with the same ``Idempotency-Key`` (nothing was written this time)."""

    status: str
    file_count: int = 0
    base_path: Optional[str] = None
    bytes: Optional[int] = None
    replayed: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], replayed: bool = False) -> "IngestResult":
        return cls(
            status=str(d.get("status", "ok")),
            file_count=int(d.get("fileCount") or 0),
            base_path=_path(d, "basePath"),
            bytes=_opt_int(d.get("bytes")),
            replayed=replayed,
            raw=dict(d),
        )


@dataclass(frozen=True)
class EditResult(_RawAccess):
    """Outcome of ``sb.fs.edit()``."""

    path: str
    replacements: int
    size: int
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "EditResult":
        return cls(
            path=str(_path(d, "path") or ""),
            replacements=int(d.get("replacements") or 0),
            size=int(d.get("size") or 0),
            raw=dict(d),
        )


@dataclass(frozen=True)
class PathChange(_RawAccess):
    """One path a commit changed (``sb.commit(v).paths``) or that differs between two versions
    (``sb.diff(v1, v2).paths``). ``change`` is ``"added"``, ``"modified"`` or ``"deleted"``;
    ``kind`` (``file``/``dir``/``symlink``) and ``size`` describe the path after the change, or
    before it when it was deleted."""

    path: str
    change: str
    kind: str = "file"
    size: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PathChange":
        return cls(
            path=str(_path(d, "path") or ""),
            change=str(d.get("change", "")),
            kind=str(d.get("kind", "file")),
            size=int(d.get("size") or 0),
            raw=dict(d),
        )


def _path_changes(items: Any) -> List[PathChange]:
    return [PathChange.from_json(p) for p in (items or [])]


@dataclass(frozen=True)
class Commit(_RawAccess):
    """One commit of a sandbox's history (``sb.commits()``, ``sb.commit(v)``).

    ``version`` is the version the commit made and ``parent`` the one it was made on (None for
    the first commit of a sandbox, created or forked). ``at`` is ISO-8601. ``kind`` is
    ``"create"``, ``"exec"``, ``"files"``, ``"ingest"``, ``"restore"`` or ``"fork"``;
    ``exec_id`` is set for exec commits. ``added``/``modified``/``deleted`` count the paths
    it changed (the wire's ``changes``) and ``bytes_added`` the bytes of the files it wrote.
    ``paths`` lists those paths for ``sb.commit(v)``; it is None in a listing."""

    version: int
    parent: Optional[int] = None
    at: Optional[str] = None
    kind: str = ""
    summary: str = ""
    exec_id: Optional[str] = None
    added: int = 0
    modified: int = 0
    deleted: int = 0
    bytes_added: int = 0
    paths: Optional[List[PathChange]] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Commit":
        changes = d.get("changes")
        if not isinstance(changes, Mapping):
            changes = {}
        exec_id = d.get("execId")
        return cls(
            version=int(d["version"]),
            parent=_opt_int(d.get("parent")),
            at=d.get("at"),
            kind=str(d.get("kind") or ""),
            summary=str(d.get("summary") or ""),
            exec_id=str(exec_id) if exec_id is not None else None,
            added=int(changes.get("added") or 0),
            modified=int(changes.get("modified") or 0),
            deleted=int(changes.get("deleted") or 0),
            bytes_added=int(d.get("bytesAdded") or 0),
            paths=_path_changes(d["paths"]) if isinstance(d.get("paths"), list) else None,
            raw=dict(d),
        )


@dataclass(frozen=True)
class CommitPage:
    """One page of ``sb.commits()``, newest first. Iterating it iterates ``commits``. ``next``
    is the ``before=`` of the following (older) page, None on the last page."""

    commits: List[Commit]
    next: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __iter__(self) -> Iterator[Commit]:
        return iter(self.commits)

    def __len__(self) -> int:
        return len(self.commits)

    def __getitem__(self, index: int) -> Commit:
        return self.commits[index]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CommitPage":
        return cls(
            commits=[Commit.from_json(c) for c in (d.get("commits") or [])],
            next=_opt_int(d.get("next")),
            raw=dict(d),
        )


def _each_byte(exc: UnicodeError) -> Any:
    """Decoding error handler: one U+FFFD per byte that is not part of a valid character."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "\ufffd" * (exc.end - exc.start), exc.end


codecs.register_error("sqlfs.each-byte", _each_byte)


def output_text(data: bytes) -> str:
    """Script output as text the way exec results carry it: UTF-8, each byte that is not part
    of a valid character replaced by U+FFFD."""
    return data.decode("utf-8", "sqlfs.each-byte")


def _stream_bytes(d: Mapping[str, Any], name: str) -> Optional[bytes]:
    """The exact bytes of a record's ``stdout``/``stderr``: text for ``"utf-8"``, standard base64
    for ``"base64"``; None when the record carries no output (a listing)."""
    value = d.get(name)
    if not isinstance(value, str):
        return None
    if d.get(name + "Encoding") == "base64":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value.encode("utf-8", "surrogatepass")
    return value.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class ExecRecord(_RawAccess):
    """One exec of a sandbox's journal (``sb.execs()``, ``sb.exec_record(exec_id)``).

    ``kind`` is ``"sync"``, ``"stream"`` or ``"batch"``; ``script`` the start of the script (a
    batch: each script's first line); ``started_at`` ISO-8601; ``exit_code`` bash's (-1 when
    killed at its timeout; a batch: its last started script's); ``version`` the version its
    commit made (None when it changed nothing, was read-only or its commit was refused);
    ``stdout_bytes``/``stderr_bytes`` the bytes the script wrote.

    From ``sb.exec_record()`` only (None in a listing): the start of each stream as the server
    kept it. ``stdout``/``stderr`` are text like :class:`ExecResult`'s (each byte that is not
    part of a UTF-8 character replaced by U+FFFD); ``stdout_raw``/``stderr_raw`` the exact bytes (the server sends a
    stream that is not UTF-8 as base64, decoded here). ``stdout_truncated``/``stderr_truncated``:
    the script wrote more than was kept."""

    exec_id: str
    kind: str = ""
    script: str = ""
    started_at: Optional[str] = None
    duration_ms: int = 0
    exit_code: int = -1
    timed_out: bool = False
    version: Optional[int] = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    stdout_raw: Optional[bytes] = field(default=None, repr=False)
    stderr_raw: Optional[bytes] = field(default=None, repr=False)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the exec exited 0 and was not killed."""
        return self.exit_code == 0 and not self.timed_out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ExecRecord":
        code = d.get("exitCode")
        out = _stream_bytes(d, "stdout")
        err = _stream_bytes(d, "stderr")
        return cls(
            exec_id=str(d["execId"]),
            kind=str(d.get("kind") or ""),
            script=str(d.get("script") or ""),
            started_at=d.get("startedAt"),
            duration_ms=int(d.get("durationMs") or 0),
            exit_code=int(code) if isinstance(code, (int, float)) else -1,
            timed_out=bool(d.get("timedOut", False)),
            version=_opt_int(d.get("version")),
            stdout_bytes=int(d.get("stdoutBytes") or 0),
            stderr_bytes=int(d.get("stderrBytes") or 0),
            stdout=None if out is None else output_text(out),
            stderr=None if err is None else output_text(err),
            stdout_raw=out,
            stderr_raw=err,
            stdout_truncated=bool(d.get("stdoutTruncated", False)),
            stderr_truncated=bool(d.get("stderrTruncated", False)),
            raw=dict(d),
        )


@dataclass(frozen=True)
class ExecPage:
    """One page of ``sb.execs()``, newest first. Iterating it iterates ``execs``. ``next`` is
    the ``before=`` (an exec id) of the following (older) page, None on the last page."""

    execs: List[ExecRecord]
    next: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __iter__(self) -> Iterator[ExecRecord]:
        return iter(self.execs)

    def __len__(self) -> int:
        return len(self.execs)

    def __getitem__(self, index: int) -> ExecRecord:
        return self.execs[index]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ExecPage":
        return cls(
            execs=[ExecRecord.from_json(e) for e in (d.get("execs") or [])],
            next=_opt_str(d.get("next")),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Diff(_RawAccess):
    """``sb.diff(v1, v2)``: the paths that differ between two versions (``from_version`` →
    ``to_version``; ``change`` says what happened going from the first to the second)."""

    from_version: int
    to_version: int
    paths: List[PathChange] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Diff":
        return cls(
            from_version=int(d["from"]),
            to_version=int(d["to"]),
            paths=_path_changes(d.get("paths")),
            raw=dict(d),
        )


@dataclass(frozen=True)
class RestoreResult(_RawAccess):
    """Outcome of ``sb.restore()`` / ``sb.undo()``: ``version`` is the new commit, whose tree
    equals the tree of ``restored_from``."""

    version: int
    restored_from: int
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RestoreResult":
        return cls(version=int(d["version"]), restored_from=int(d["restoredFrom"]), raw=dict(d))


@dataclass(frozen=True)
class Snapshot(_RawAccess):
    """A named version of a sandbox (``sb.snapshot()``); a snapshot's version is never pruned."""

    name: str
    version: int
    at: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Snapshot":
        return cls(name=str(d["name"]), version=int(d["version"]), at=d.get("at"), raw=dict(d))


@dataclass(frozen=True)
class EgressRecord(_RawAccess):
    """One connection a sandbox's exec asked its egress proxy for (``sb.egress()``), allowed or
    refused.

    ``at`` is ISO-8601; ``exec_id`` the exec that asked (None when the server could not tell);
    ``host``/``port`` what was asked for; ``address`` the address connected to (None when
    refused or unresolved); ``rule`` the policy rule that decided; ``error`` why an allowed
    connection failed (None otherwise); ``bytes_up``/``bytes_down`` what went each way and
    ``duration_ms`` how long the connection lasted."""

    at: Optional[str] = None
    exec_id: Optional[str] = None
    host: str = ""
    port: int = 0
    address: Optional[str] = None
    allowed: bool = False
    rule: str = ""
    error: Optional[str] = None
    bytes_up: int = 0
    bytes_down: int = 0
    duration_ms: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "EgressRecord":
        return cls(
            at=_opt_str(d.get("at")),
            exec_id=_opt_str(d.get("execId")),
            host=str(d.get("host") or ""),
            port=_opt_int(d.get("port")) or 0,
            address=_opt_str(d.get("address")),
            allowed=d.get("allowed") is True,
            rule=str(d.get("rule") or ""),
            error=_opt_str(d.get("error")),
            bytes_up=_opt_int(d.get("bytesUp")) or 0,
            bytes_down=_opt_int(d.get("bytesDown")) or 0,
            duration_ms=_opt_int(d.get("durationMs")) or 0,
            raw=dict(d),
        )


def parse_stat_header(value: Optional[str]) -> Optional[FileStat]:
    if not value:
        return None
    try:
        d = json.loads(value)
    except ValueError:
        return None
    if not isinstance(d, dict):
        return None
    try:
        return FileStat.from_json(d)
    except (TypeError, ValueError):
        return None


def records_from_list(body: Any) -> List[SandboxRecord]:
    items = body.get("sandboxes", []) if isinstance(body, dict) else body
    return [SandboxRecord.from_json(x) for x in (items or [])]
