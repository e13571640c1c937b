"""What each SDK method sends and how its answer is parsed, written once for both clients.

A :class:`Call` describes one request (method, path, body, headers, read timeout) and how it may
be retried; each method of the sync and async handles builds one here, hands it to its session
(``_base_client``) with a parser from here, and returns what the parser returns.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from urllib.parse import quote

import httpx

from ._exceptions import SQLFSError, VersionNotFoundError
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
    IngestResult,
    ReadResult,
    RestoreResult,
    SandboxInfo,
    SandboxRecord,
    Snapshot,
    TreeEntry,
    parse_stat_header,
    records_from_list,
)

# Extra seconds the HTTP read timeout allows beyond an exec's own timeout.
EXEC_READ_SLACK = 15.0
DEFAULT_EXEC_TIMEOUT_MS = 30000

FileContent = Union[str, bytes]
WriteContent = Union[str, bytes, IO[bytes]]
# A sandbox path: str (undecodable bytes as surrogate escapes, like os.fsdecode) or raw bytes.
PathArg = Union[str, bytes]
BatchItem = Union[str, Mapping[str, Any]]
# A sandbox's network: False (loopback only), True (the server's EGRESS_ALLOW policy), a policy
# ``{"allow": [rules], "deny": [rules]}``, or a list of rules, short for ``{"allow": rules,
# "deny": []}``.
NetworkArg = Union[bool, Mapping[str, Any], List[str], Tuple[str, ...]]


class Retry(enum.Enum):
    """How a call may be repeated after a failure. A call that sends an Idempotency-Key is
    also retried after any transport error (the server answers a repeat from what it kept), and
    on 409 ``IDEMPOTENCY_IN_PROGRESS``, unless it is ``NONE``."""

    NONE = "none"  # streams: at most once
    IDEMPOTENT = "idempotent"  # 429, 5xx, any transport error
    ATOMIC = "atomic"  # 429, 5xx responses, connect errors (the request was never sent)
    SAFE_ONLY = "safe-only"  # 429, responses marked retryable, connect errors (write exec)


# Call.json when the request has no JSON body (None is a JSON body: ``null``).
UNSET: Any = object()


@dataclass
class Call:
    method: str
    path: str
    params: Optional[Dict[str, Any]] = None
    json: Any = UNSET
    content: Optional[bytes] = None
    files: Any = None
    data: Optional[Dict[str, Union[str, bytes]]] = None
    headers: Dict[str, str] = field(default_factory=dict)
    read_timeout: Optional[float] = None
    retry: Retry = Retry.IDEMPOTENT
    auth: bool = True
    expect: Optional[Tuple[int, ...]] = None
    rewind: Optional[Callable[[], bool]] = None
    # A binary file object sent in chunks (chunked transfer encoding), for large uploads.
    stream_body: Any = None
    # The route takes an Idempotency-Key header (the session generates one when none is given).
    keyed: bool = False
    # The Idempotency-Key sent with every attempt of this call (also in ``headers``).
    idempotency_key: Optional[str] = None


IDEMPOTENCY_KEY_MAX = 255


def check_idempotency_key(key: Any) -> str:
    """A caller's Idempotency-Key: 1 to 255 printable ASCII characters, no spaces (what the
    server accepts)."""
    if not isinstance(key, str):
        raise TypeError(f"idempotency_key must be a str, not {type(key).__name__}")
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or any(not "!" <= ch <= "~" for ch in key):
        raise ValueError(
            f"idempotency_key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters "
            f"without spaces: {key!r}"
        )
    return key


def set_idempotency_key(call: Call, key: str) -> None:
    call.idempotency_key = key
    call.headers["Idempotency-Key"] = key


def keyed(call: Call, key: Optional[str]) -> Call:
    """Mark ``call`` as one of the routes that take an Idempotency-Key, with the caller's
    ``key`` if given (else the session may generate one)."""
    call.keyed = True
    if key is not None:
        set_idempotency_key(call, check_idempotency_key(key))
    return call


def multipart_boundary(key: str) -> str:
    """The multipart boundary of a call that sends Idempotency-Key ``key``: the server matches a
    repeat by its body's bytes, so every request with one key and one archive must be
    byte-identical (httpx would draw a new random boundary for each)."""
    return hashlib.sha256(b"sqlfs-multipart\0" + key.encode("ascii")).hexdigest()[:32]


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def replayed(resp: httpx.Response) -> bool:
    """The answer was replayed from the server's store of Idempotency-Key answers."""
    return resp.headers.get("idempotent-replayed", "").strip().lower() == "true"


def rewinder(file_obj: Any) -> Callable[[], bool]:
    """A function that puts ``file_obj`` back where it is now (False if it cannot seek)."""
    try:
        pos = file_obj.tell() if file_obj.seekable() else None
    except (AttributeError, OSError):
        pos = None
    if pos is None:
        return lambda: False

    def rewind() -> bool:
        file_obj.seek(pos)
        return True

    return rewind


# ---------------------------------------------------------------------------------------------
# Paths


# Names in a sandbox are bytes. The server sends a name that is not UTF-8 as text with U+FFFD
# plus its exact bytes (``pathBytes``); the SDK turns those into a str the way Python does for
# file names (``bytes.decode("utf-8", "surrogateescape")``) and back again here, so every path
# the SDK returns can be passed to it unchanged.


def path_bytes(path: PathArg) -> bytes:
    """The raw bytes of a path given as str (surrogate escapes for undecodable bytes) or bytes."""
    if isinstance(path, str):
        return path.encode("utf-8", "surrogateescape")
    if isinstance(path, (bytes, bytearray, memoryview)):
        return bytes(path)
    raise TypeError(f"path must be str or bytes, not {type(path).__name__}")


def path_text(path: PathArg) -> str:
    """A path as the SDK returns paths: str, undecodable bytes as surrogate escapes."""
    return path if isinstance(path, str) else path_bytes(path).decode("utf-8", "surrogateescape")


def absolute_path(path: PathArg) -> bytes:
    raw = path_bytes(path)
    if not raw.startswith(b"/"):
        raise ValueError(f"path must be absolute (start with '/'): {path!r}")
    if b"\0" in raw:
        raise ValueError("path must not contain NUL")
    return raw


def json_path(path: PathArg, what: str = "path") -> str:
    """A path for a JSON body, which can only carry UTF-8 names."""
    try:
        return path_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"{what} {path!r} is not UTF-8 and cannot travel in a JSON body; "
            "use fs.write() / ingest_archive(), whose paths take any bytes"
        ) from None


def file_url_path(path: PathArg) -> str:
    """``/home/user/a b.txt`` → ``home/user/a%20b.txt`` (each segment's bytes percent-encoded)."""
    raw = absolute_path(path)
    return "/".join(quote(seg, safe="") for seg in raw[1:].split(b"/"))


def with_query(path: str, params: Mapping[str, Optional[PathArg]]) -> str:
    """``path?k=v&...`` with each value's bytes percent-encoded (None values left out). Built here,
    not by httpx, because a value may hold bytes that are not UTF-8."""
    parts = [f"{k}={quote(path_bytes(v), safe='/')}" for k, v in params.items() if v is not None]
    return path + ("?" + "&".join(parts) if parts else "")


def sandbox_path(sandbox_id: str, suffix: str = "") -> str:
    if not isinstance(sandbox_id, str) or not sandbox_id:
        raise ValueError("sandbox id must be a non-empty string")
    return f"/v1/sandboxes/{quote(sandbox_id, safe='')}{suffix}"


# ---------------------------------------------------------------------------------------------
# Calls


def bootstrap_call(
    auth_secret: str, sub: str, tenant: Optional[str], expires_in: Optional[str]
) -> Call:
    body: Dict[str, Any] = {"sub": sub}
    if tenant is not None:
        body["tenant"] = tenant
    if expires_in is not None:
        body["expiresIn"] = expires_in
    return Call(
        "POST",
        "/v1/auth/bootstrap",
        json=body,
        headers={"X-Auth-Secret": auth_secret},
        auth=False,
        expect=(201,),
    )


def parse_token(resp: httpx.Response) -> str:
    body = resp.json()
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise SQLFSError("bootstrap response has no token", code="BAD_RESPONSE", status=resp.status_code)
    return token


def request_call(
    method: str,
    path: str,
    params: Optional[Mapping[str, Any]],
    json: Any,
    content: Optional[bytes],
    headers: Optional[Mapping[str, str]],
    retry: bool,
) -> Call:
    """``client.request()``: a raw authenticated request, retried only when asked."""
    return Call(
        method.upper(),
        path if path.startswith("/") else "/" + path,
        params=dict(params) if params else None,
        json=json,
        content=content,
        headers=dict(headers or {}),
        retry=Retry.IDEMPOTENT if retry else Retry.NONE,
    )


def list_call() -> Call:
    return Call("GET", "/v1/sandboxes")


def get_call(sid: str) -> Call:
    return Call("GET", sandbox_path(sid))


def delete_call(sid: str) -> Call:
    return Call("DELETE", sandbox_path(sid))


def create_call(
    name: Optional[str],
    env: Optional[Mapping[str, str]],
    files: Optional[Mapping[str, FileContent]],
    python: Optional[bool],
    javascript: Optional[bool],
    network: Optional[NetworkArg],
    extra: Mapping[str, Any],
) -> Call:
    body: Dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if env is not None:
        body["env"] = dict(env)
    if files is not None:
        body["files"] = {json_path(p): as_text(c, p) for p, c in files.items()}
    if python is not None:
        body["python"] = bool(python)
    if javascript is not None:
        body["javascript"] = bool(javascript)
    if network is not None:
        body["network"] = network_arg(network)
    body.update(extra)
    return Call("POST", "/v1/sandboxes", json=body, retry=Retry.ATOMIC, expect=(201, 200))


def parse_record(resp: httpx.Response) -> SandboxRecord:
    return SandboxRecord.from_json(resp.json())


def parse_info(resp: httpx.Response) -> SandboxInfo:
    return SandboxInfo.from_json(resp.json())


def parse_records(resp: httpx.Response) -> List[SandboxRecord]:
    return records_from_list(resp.json())


def parse_none(resp: httpx.Response) -> None:
    return None


def as_text(content: FileContent, path: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (bytes, bytearray, memoryview)):
        try:
            return bytes(content).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"{path}: content is not UTF-8 text; use fs.write() or ingest_files() for binary data"
            ) from None
    raise TypeError(f"{path}: content must be str or bytes, not {type(content).__name__}")


def as_bytes(content: FileContent) -> bytes:
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content)
    raise TypeError(f"content must be str or bytes, not {type(content).__name__}")


def int_arg(value: Any, what: str = "version") -> int:
    """A version (or a limit) for a request: an int (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def version_query(version: Optional[int]) -> Dict[str, Optional[PathArg]]:
    return {"version": None if version is None else str(int_arg(version))}


def read_call(sid: str, path: PathArg, version: Optional[int] = None) -> Call:
    return Call(
        "GET", with_query(sandbox_path(sid, "/files/" + file_url_path(path)), version_query(version))
    )


def parse_read(path: PathArg) -> Callable[[httpx.Response], ReadResult]:
    def parse(resp: httpx.Response) -> ReadResult:
        return ReadResult(
            path=path_text(path),
            content=resp.content,
            stat=parse_stat_header(resp.headers.get("x-fs-stat")),
            content_type=resp.headers.get("content-type"),
        )

    return parse


def write_call(
    sid: str, path: PathArg, content: WriteContent, idempotency_key: Optional[str] = None
) -> Call:
    call = Call(
        "PUT",
        sandbox_path(sid, "/files/" + file_url_path(path)),
        headers={"Content-Type": "application/octet-stream"},
        read_timeout=300.0,
    )
    if isinstance(content, (str, bytes, bytearray, memoryview)):
        call.content = as_bytes(content)
    elif hasattr(content, "read"):
        call.stream_body = content
        call.rewind = rewinder(content)
    else:
        raise TypeError(f"content must be str, bytes or a binary file object, not {type(content).__name__}")
    return keyed(call, idempotency_key)


def edit_call(sid: str, path: PathArg, old: str, new: str, replace_all: bool) -> Call:
    body: Dict[str, Any] = {"oldString": old, "newString": new}
    if replace_all:
        body["replaceAll"] = True
    # Not idempotent once applied (the old string is gone), so only retry what was not applied.
    return Call(
        "PATCH", sandbox_path(sid, "/files/" + file_url_path(path)), json=body, retry=Retry.SAFE_ONLY
    )


def parse_edit(resp: httpx.Response) -> EditResult:
    return EditResult.from_json(resp.json())


def write_files_call(
    sid: str, files: Mapping[str, FileContent], idempotency_key: Optional[str] = None
) -> Call:
    call = Call(
        "POST",
        sandbox_path(sid, "/writeFiles"),
        json={"files": {json_path(p): as_text(c, p) for p, c in files.items()}},
    )
    return keyed(call, idempotency_key)


def delete_file_call(sid: str, path: PathArg, recursive: bool) -> Call:
    return Call(
        "DELETE",
        sandbox_path(sid, "/files/" + file_url_path(path)),
        params={"recursive": "true"} if recursive else None,
    )


def mkdir_call(sid: str, path: PathArg, recursive: bool) -> Call:
    body = {"path": json_path(absolute_path(path)), "recursive": bool(recursive)}
    return Call("POST", sandbox_path(sid, "/mkdir"), json=body)


def tree_call(
    sid: str, prefix: Optional[PathArg], depth: Optional[int], version: Optional[int] = None
) -> Call:
    query = {"prefix": prefix, "depth": None if depth is None else str(depth), **version_query(version)}
    return Call("GET", with_query(sandbox_path(sid, "/tree"), query))


def parse_tree(resp: httpx.Response) -> List[TreeEntry]:
    body = resp.json()
    if isinstance(body, dict):
        body = body.get("entries", body.get("tree", []))
    return [TreeEntry.from_json(e) for e in body]


def exec_body(
    script: str,
    cwd: Optional[str],
    env: Optional[Mapping[str, str]],
    timeout_ms: Optional[int],
    debug: bool,
    read_only: bool,
    stdin: Optional[str],
) -> Dict[str, Any]:
    if not isinstance(script, str):
        raise TypeError("script must be a str")
    body: Dict[str, Any] = {"script": script}
    if cwd is not None:
        body["cwd"] = json_path(cwd, "cwd")
    if env is not None:
        body["env"] = dict(env)
    if timeout_ms is not None:
        body["timeoutMs"] = int(timeout_ms)
    if debug:
        body["debug"] = True
    if read_only:
        body["readOnly"] = True
    if stdin is not None:
        body["stdin"] = stdin
    return body


def exec_read_timeout(timeout_ms: Optional[int]) -> float:
    ms = DEFAULT_EXEC_TIMEOUT_MS if timeout_ms is None else max(0, int(timeout_ms))
    return ms / 1000.0 + EXEC_READ_SLACK


def exec_retry(read_only: bool, retry_exec: bool) -> Retry:
    # A write-mode exec may have changed the sandbox before a failure, so by default it is only
    # repeated when the server said nothing was applied (429, or a 5xx marked retryable).
    return Retry.IDEMPOTENT if (read_only or retry_exec) else Retry.SAFE_ONLY


def exec_call(
    sid: str,
    script: str,
    cwd: Optional[str],
    env: Optional[Mapping[str, str]],
    timeout_ms: Optional[int],
    debug: bool,
    read_only: bool,
    stdin: Optional[str],
    retry_exec: bool,
    idempotency_key: Optional[str] = None,
) -> Call:
    call = Call(
        "POST",
        sandbox_path(sid, "/exec-sync"),
        json=exec_body(script, cwd, env, timeout_ms, debug, read_only, stdin),
        read_timeout=exec_read_timeout(timeout_ms),
        retry=exec_retry(read_only, retry_exec),
    )
    return keyed(call, idempotency_key)


def parse_exec(resp: httpx.Response) -> ExecResult:
    return ExecResult.from_json(resp.json(), replayed=replayed(resp))


def batch_call(
    sid: str,
    scripts: Sequence[BatchItem],
    timeout_ms: Optional[int],
    read_only: bool,
    stop_on_error: Optional[bool],
    per_script_timeout_ms: Optional[int],
    retry_exec: bool,
    idempotency_key: Optional[str] = None,
) -> Call:
    items: List[Dict[str, Any]] = []
    for i, s in enumerate(scripts):
        if isinstance(s, str):
            items.append({"id": str(i), "script": s})
        elif isinstance(s, Mapping):
            if "script" not in s:
                raise ValueError(f"batch item {i} has no 'script'")
            item = dict(s)
            item.setdefault("id", str(i))
            items.append(item)
        else:
            raise TypeError(f"batch item {i} must be a str or a mapping with 'id' and 'script'")
    body: Dict[str, Any] = {"scripts": items}
    if timeout_ms is not None:
        body["timeoutMs"] = int(timeout_ms)
    if per_script_timeout_ms is not None:
        body["perScriptTimeoutMs"] = int(per_script_timeout_ms)
    if read_only:
        body["readOnly"] = True
    if stop_on_error is not None:
        body["stopOnError"] = bool(stop_on_error)
    call = Call(
        "POST",
        sandbox_path(sid, "/exec-sync-batch"),
        json=body,
        read_timeout=exec_read_timeout(timeout_ms),
        retry=exec_retry(read_only, retry_exec),
    )
    return keyed(call, idempotency_key)


def parse_batch(resp: httpx.Response) -> List[BatchExecResult]:
    body = resp.json()
    items = body.get("results", []) if isinstance(body, dict) else body
    exec_id = body.get("execId") if isinstance(body, dict) else None
    again = replayed(resp)
    return [
        BatchExecResult.from_json(r, exec_id=exec_id if isinstance(exec_id, str) else None, replayed=again)
        for r in items
    ]


def stream_call(
    sid: str,
    script: str,
    cwd: Optional[str],
    env: Optional[Mapping[str, str]],
    timeout_ms: Optional[int],
    debug: bool,
    read_only: bool,
    stdin: Optional[str],
) -> Call:
    return Call(
        "POST",
        sandbox_path(sid, "/exec"),
        json=exec_body(script, cwd, env, timeout_ms, debug, read_only, stdin),
        headers={"Accept": "text/event-stream"},
        # Keep-alive comments arrive every 15 s while the script is silent.
        read_timeout=max(exec_read_timeout(timeout_ms), 45.0),
        retry=Retry.NONE,
    )


def ingest_archive_call(
    sid: str,
    file_obj: Any,
    base_path: Optional[PathArg],
    filename: str,
    idempotency_key: Optional[str] = None,
) -> Call:
    # a form field carries raw bytes: any base path works here
    data: Optional[Dict[str, Union[str, bytes]]] = None
    if base_path is not None:
        data = {"basePath": path_bytes(base_path)}
    rewind: Optional[Callable[[], bool]] = None
    if isinstance(file_obj, (bytes, bytearray, memoryview)):
        payload: Any = bytes(file_obj)
    else:
        payload = file_obj
        rewind = rewinder(file_obj)
    call = Call(
        "POST",
        sandbox_path(sid, "/ingest"),
        files={"archive": (filename, payload, "application/octet-stream")},
        data=data,
        read_timeout=300.0,
        rewind=rewind,
    )
    return keyed(call, idempotency_key)


def ingest_files_call(
    sid: str,
    files: Mapping[str, FileContent],
    base_path: Optional[PathArg],
    idempotency_key: Optional[str] = None,
) -> Call:
    body: Dict[str, Any] = {
        "files": {
            json_path(p): base64.b64encode(as_bytes(c)).decode("ascii") for p, c in files.items()
        }
    }
    if base_path is not None:
        body["basePath"] = json_path(base_path, "base_path")
    call = Call("POST", sandbox_path(sid, "/ingest-files"), json=body, read_timeout=300.0)
    return keyed(call, idempotency_key)


def parse_ingest(resp: httpx.Response) -> IngestResult:
    return IngestResult.from_json(resp.json(), replayed=replayed(resp))


def export_call(sid: str, base_path: Optional[PathArg], stream: bool) -> Call:
    return Call(
        "GET",
        with_query(sandbox_path(sid, "/export"), {"basePath": base_path}),
        read_timeout=300.0,
        retry=Retry.NONE if stream else Retry.IDEMPOTENT,
    )


def parse_bytes(resp: httpx.Response) -> bytes:
    return resp.content


# ---------------------------------------------------------------------------------------------
# History


def commits_call(sid: str, limit: Optional[int], before: Optional[int]) -> Call:
    query: Dict[str, Optional[PathArg]] = {
        "limit": None if limit is None else str(int_arg(limit, "limit")),
        "before": None if before is None else str(int_arg(before, "before")),
    }
    return Call("GET", with_query(sandbox_path(sid, "/commits"), query))


def parse_commit_page(resp: httpx.Response) -> CommitPage:
    return CommitPage.from_json(resp.json())


def commit_call(sid: str, version: int) -> Call:
    return Call("GET", sandbox_path(sid, f"/commits/{int_arg(version)}"))


def parse_commit(resp: httpx.Response) -> Commit:
    return Commit.from_json(resp.json())


def diff_call(sid: str, from_version: int, to_version: int, path: Optional[PathArg]) -> Call:
    query: Dict[str, Optional[PathArg]] = {
        "from": str(int_arg(from_version, "from_version")),
        "to": str(int_arg(to_version, "to_version")),
    }
    if path is not None:
        query["path"] = absolute_path(path)
        query["format"] = "unified"
    return Call("GET", with_query(sandbox_path(sid, "/diff"), query))


def parse_diff(resp: httpx.Response) -> Diff:
    return Diff.from_json(resp.json())


def parse_text(resp: httpx.Response) -> str:
    """A text body (a unified diff): UTF-8, undecodable bytes replaced."""
    return resp.content.decode("utf-8", "replace")


def version_or_snapshot(version: Optional[int], snapshot: Optional[str], required: bool) -> Dict[str, Any]:
    """The ``{"version"}`` or ``{"snapshot"}`` of a restore or fork body (at most one; exactly
    one when ``required``)."""
    if version is not None and snapshot is not None:
        raise ValueError("pass version or snapshot, not both")
    if version is not None:
        return {"version": int_arg(version)}
    if snapshot is not None:
        if not isinstance(snapshot, str):
            raise TypeError(f"snapshot must be a str, not {type(snapshot).__name__}")
        return {"snapshot": snapshot}
    if required:
        raise ValueError("pass version or snapshot")
    return {}


def restore_call(sid: str, version: Optional[int], snapshot: Optional[str]) -> Call:
    # One transaction: a failure answered with a 5xx applied nothing (a repeat only ever adds a
    # commit with the same tree).
    body = version_or_snapshot(version, snapshot, True)
    return Call("POST", sandbox_path(sid, "/restore"), json=body, retry=Retry.ATOMIC)


def parse_restore(resp: httpx.Response) -> RestoreResult:
    return RestoreResult.from_json(resp.json())


def fork_call(sid: str, version: Optional[int], name: Optional[str], snapshot: Optional[str]) -> Call:
    body = version_or_snapshot(version, snapshot, False)
    if name is not None:
        body["name"] = name
    # Like create: atomic, so retried on 429/5xx responses but not after a lost connection.
    return Call("POST", sandbox_path(sid, "/fork"), json=body, retry=Retry.ATOMIC, expect=(201, 200))


def snapshot_call(sid: str, name: str, version: Optional[int]) -> Call:
    if not isinstance(name, str):
        raise TypeError(f"snapshot name must be a str, not {type(name).__name__}")
    body: Dict[str, Any] = {"name": name}
    if version is not None:
        body["version"] = int_arg(version)
    return Call(
        "POST", sandbox_path(sid, "/snapshots"), json=body, retry=Retry.ATOMIC, expect=(201, 200)
    )


def parse_snapshot(resp: httpx.Response) -> Snapshot:
    return Snapshot.from_json(resp.json())


def snapshots_call(sid: str) -> Call:
    return Call("GET", sandbox_path(sid, "/snapshots"))


def parse_snapshots(resp: httpx.Response) -> List[Snapshot]:
    body = resp.json()
    items = body.get("snapshots", []) if isinstance(body, dict) else body
    return [Snapshot.from_json(s) for s in (items or [])]


def delete_snapshot_call(sid: str, name: str) -> Call:
    if not isinstance(name, str) or not name:
        raise ValueError("snapshot name must be a non-empty string")
    return Call("DELETE", sandbox_path(sid, "/snapshots/" + quote(name, safe="")))


def undo_target(page: CommitPage) -> int:
    """The version ``sb.undo()`` restores: the parent of the latest commit."""
    latest = page.commits[0] if page.commits else None
    if latest is None or latest.parent is None:
        what = f"version {latest.version} ({latest.kind})" if latest is not None else "the sandbox"
        raise VersionNotFoundError(
            f"nothing to undo: {what} has no parent commit", code="VERSION_NOT_FOUND"
        )
    return latest.parent


# ---------------------------------------------------------------------------------------------
# Exec journal


def exec_id_arg(exec_id: Any, what: str = "exec_id") -> str:
    if not isinstance(exec_id, str) or not exec_id:
        raise ValueError(f"{what} must be a non-empty string")
    return exec_id


def execs_call(sid: str, limit: Optional[int], before: Optional[str]) -> Call:
    query: Dict[str, Optional[PathArg]] = {
        "limit": None if limit is None else str(int_arg(limit, "limit")),
        "before": None if before is None else exec_id_arg(before, "before"),
    }
    return Call("GET", with_query(sandbox_path(sid, "/execs"), query))


def parse_exec_page(resp: httpx.Response) -> ExecPage:
    return ExecPage.from_json(resp.json())


def exec_record_call(sid: str, exec_id: str) -> Call:
    return Call("GET", sandbox_path(sid, "/execs/" + quote(exec_id_arg(exec_id), safe="")))


def parse_exec_record(resp: httpx.Response) -> ExecRecord:
    return ExecRecord.from_json(resp.json())


# ---------------------------------------------------------------------------------------------
# Network egress


def rule_list(rules: Any, what: str) -> List[str]:
    """A list of egress rules for a JSON body: a list or tuple of str (the server judges each
    rule; a bare str is refused here, since it would read as a list of characters)."""
    if isinstance(rules, (str, bytes)) or not isinstance(rules, (list, tuple)):
        raise TypeError(f"{what} must be a list of rule strings, not {type(rules).__name__}")
    for rule in rules:
        if not isinstance(rule, str):
            raise TypeError(f"{what}: each rule must be a str, not {type(rule).__name__}")
    return list(rules)


def network_arg(network: Any) -> Any:
    """The wire form of a ``network=`` argument: a bool as it is; a mapping with its ``allow``
    and ``deny`` made lists of str (a key left out is left out: the server decides what that
    means, and other keys are sent for the server to judge); a list or tuple of rules as
    ``{"allow": rules, "deny": []}``."""
    if isinstance(network, bool):
        return network
    if isinstance(network, Mapping):
        body = dict(network)
        for key in ("allow", "deny"):
            if key in body:
                body[key] = rule_list(body[key], f"network[{key!r}]")
        return body
    if isinstance(network, (list, tuple)):
        return {"allow": rule_list(network, "network"), "deny": []}
    raise TypeError(
        "network must be a bool, a mapping {'allow': [...], 'deny': [...]} or a list of rules, "
        f"not {type(network).__name__}"
    )


def set_network_call(sid: str, network: NetworkArg) -> Call:
    # Setting a value is idempotent: a repeat sets the same policy again.
    return Call("PATCH", sandbox_path(sid), json={"network": network_arg(network)})


def egress_call(sid: str, limit: Optional[int]) -> Call:
    query: Dict[str, Optional[PathArg]] = {
        "limit": None if limit is None else str(int_arg(limit, "limit")),
    }
    return Call("GET", with_query(sandbox_path(sid, "/egress"), query))


def parse_egress(resp: httpx.Response) -> List[EgressRecord]:
    body = resp.json()
    items = body.get("egress", []) if isinstance(body, dict) else body
    return [EgressRecord.from_json(e) for e in (items or [])]
