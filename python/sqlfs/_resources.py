"""The handles a client gives out: ``client.sandboxes`` → :class:`Sandbox` → ``sb.fs``, and their
async twins. Each holds its client's session and sends through it the calls built in ``_calls``."""

from __future__ import annotations

from typing import IO, Any, AsyncIterator, Iterator, List, Mapping, Optional, Sequence, Union, overload

from . import _calls as calls
from ._base_client import AsyncSession, SyncSession
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
    StreamEvent,
    TreeEntry,
)

__all__ = ["Sandboxes", "Sandbox", "Files", "AsyncSandboxes", "AsyncSandbox", "AsyncFiles"]


class Sandboxes:
    """``client.sandboxes``: list, create, get, attach and delete sandboxes."""

    def __init__(self, session: SyncSession) -> None:
        self._session = session

    def list(self) -> List[SandboxRecord]:
        return self._session.call(calls.list_call(), calls.parse_records)

    def create(
        self,
        name: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        files: Optional[Mapping[str, calls.FileContent]] = None,
        python: Optional[bool] = None,
        javascript: Optional[bool] = None,
        network: Optional[calls.NetworkArg] = None,
        **extra: Any,
    ) -> "Sandbox":
        """Create a sandbox. ``files`` maps absolute paths to UTF-8 text; ``env`` applies to
        every exec of the sandbox. ``network``: ``False`` (the server's default: loopback only),
        ``True`` (the server's ``EGRESS_ALLOW`` policy), a policy ``{"allow": [rules], "deny":
        [rules]}``, or a list of rules, short for ``{"allow": rules, "deny": []}`` (see
        :meth:`Sandbox.set_network`). Unknown keyword arguments are sent as extra body fields."""
        call = calls.create_call(name, env, files, python, javascript, network, extra)
        record = self._session.call(call, calls.parse_record)
        return Sandbox(self._session, record.id, record)

    def get(self, sandbox_id: str) -> SandboxInfo:
        return self._session.call(calls.get_call(sandbox_id), calls.parse_info)

    def attach(self, sandbox_id: str) -> "Sandbox":
        """A handle on an existing sandbox, without any request."""
        calls.sandbox_path(sandbox_id)
        return Sandbox(self._session, sandbox_id, None)

    def delete(self, sandbox_id: str) -> None:
        self._session.call(calls.delete_call(sandbox_id), calls.parse_none)


class Files:
    """``sb.fs``: the sandbox's filesystem. The reads take ``version=``: the sandbox as it was at
    that version of its history (``VersionNotFoundError`` when it was never made or is pruned)."""

    def __init__(self, session: SyncSession, sandbox_id: str) -> None:
        self._session = session
        self._id = sandbox_id

    def read(self, path: calls.PathArg, *, version: Optional[int] = None) -> ReadResult:
        """The file's content and metadata, now or as of ``version``."""
        return self._session.call(calls.read_call(self._id, path, version), calls.parse_read(path))

    def read_text(
        self,
        path: calls.PathArg,
        encoding: str = "utf-8",
        errors: str = "strict",
        *,
        version: Optional[int] = None,
    ) -> str:
        return self.read(path, version=version).content.decode(encoding, errors)

    def read_stream(
        self, path: calls.PathArg, chunk_size: Optional[int] = None, *, version: Optional[int] = None
    ) -> Iterator[bytes]:
        """The file's bytes in chunks as they arrive, for files too large to hold in memory.
        Not retried."""
        call = calls.read_call(self._id, path, version)
        call.retry = calls.Retry.NONE
        return self._session.iter_bytes(call, chunk_size)

    def write(
        self, path: calls.PathArg, content: calls.WriteContent, *, idempotency_key: Optional[str] = None
    ) -> None:
        """Create or replace a file (parents created; an existing file keeps its mode).

        ``content`` is str (UTF-8), bytes, or a binary file object, which is streamed in chunks
        (for files too large to hold in memory; retried only if it can seek back).
        ``idempotency_key``: see the README's "Retries and idempotency"."""
        call = calls.write_call(self._id, path, content, idempotency_key)
        self._session.call(call, calls.parse_none)

    def write_files(
        self, files: Mapping[str, calls.FileContent], *, idempotency_key: Optional[str] = None
    ) -> None:
        """Write several UTF-8 text files in one atomic transaction."""
        call = calls.write_files_call(self._id, files, idempotency_key)
        self._session.call(call, calls.parse_none)

    def delete(self, path: calls.PathArg, recursive: bool = False) -> None:
        self._session.call(calls.delete_file_call(self._id, path, recursive), calls.parse_none)

    def mkdir(self, path: calls.PathArg, recursive: bool = False) -> None:
        self._session.call(calls.mkdir_call(self._id, path, recursive), calls.parse_none)

    def tree(
        self,
        prefix: Optional[calls.PathArg] = None,
        depth: Optional[int] = None,
        *,
        version: Optional[int] = None,
    ) -> List[TreeEntry]:
        """The entries under ``prefix`` (all when None), ``depth`` levels deep, now or as of
        ``version``."""
        return self._session.call(calls.tree_call(self._id, prefix, depth, version), calls.parse_tree)

    def edit(self, path: calls.PathArg, old_string: str, new_string: str, replace_all: bool = False) -> EditResult:
        """Replace an exact string in a UTF-8 file (``PATCH /files/{path}``)."""
        return self._session.call(
            calls.edit_call(self._id, path, old_string, new_string, replace_all), calls.parse_edit
        )


class Sandbox:
    """A handle on one sandbox: ``sb.fs``, exec, ingest/export, network, history, delete."""

    def __init__(self, session: SyncSession, sandbox_id: str, record: Optional[SandboxRecord]) -> None:
        self._session = session
        self.id = sandbox_id
        self.record = record
        self.fs = Files(session, sandbox_id)

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, name={self.name!r})"

    @property
    def name(self) -> Optional[str]:
        return self.record.name if self.record is not None else None

    def info(self) -> SandboxInfo:
        """Fetch the current record (``GET /v1/sandboxes/{id}``) and remember it."""
        rec = self._session.call(calls.get_call(self.id), calls.parse_info)
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
        *,
        idempotency_key: Optional[str] = None,
    ) -> ExecResult:
        """Run a bash script and wait for it. A timeout raises :class:`ExecTimeoutError`.

        ``idempotency_key``: sent as ``Idempotency-Key`` (else one is generated when the call may
        be retried): a repeat with the same key and request gets the first answer
        (``result.replayed``) without running again. See the README's "Retries and idempotency".
        """
        call = calls.exec_call(
            self.id, script, cwd, env, timeout_ms, debug, read_only, stdin, self._session.retry_exec,
            idempotency_key,
        )
        return self._session.call(call, calls.parse_exec)

    def exec_batch(
        self,
        scripts: Sequence[calls.BatchItem],
        timeout_ms: Optional[int] = None,
        read_only: bool = False,
        stop_on_error: Optional[bool] = None,
        per_script_timeout_ms: Optional[int] = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> List[BatchExecResult]:
        """Run several scripts in one request (``{"id", "script"}`` mappings or plain strings,
        whose ids are then their indexes). Write mode: sequential, shared shell state, one
        commit. ``read_only=True``: parallel, nothing may be written.

        ``per_script_timeout_ms``: a script that runs longer is killed (``exit_code`` -1,
        ``error == "timeout"``) and the batch continues with the next script, which starts from
        the shell state after the last script that completed. ``timeout_ms`` is the budget of
        the whole batch: when it runs out, the running script and every later one time out."""
        call = calls.batch_call(
            self.id, scripts, timeout_ms, read_only, stop_on_error, per_script_timeout_ms,
            self._session.retry_exec, idempotency_key,
        )
        return self._session.call(call, calls.parse_batch)

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
        call = calls.stream_call(self.id, script, cwd, env, timeout_ms, debug, read_only, stdin)
        return self._session.iter_events(call)

    def ingest_archive(
        self,
        file_obj: Union[IO[bytes], bytes],
        base_path: Optional[calls.PathArg] = None,
        *,
        filename: str = "archive",
        idempotency_key: Optional[str] = None,
    ) -> IngestResult:
        """Upload a tar/tar.gz/tar.bz2/tar.xz/tar.zst/zip archive and unpack it at ``base_path``
        (server default ``/home/user/project``). All or nothing."""
        call = calls.ingest_archive_call(self.id, file_obj, base_path, filename, idempotency_key)
        return self._session.call(call, calls.parse_ingest)

    def ingest_files(
        self,
        files: Mapping[str, calls.FileContent],
        base_path: Optional[calls.PathArg] = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> IngestResult:
        """Write files given as ``{relative/path: bytes or str}`` under ``base_path`` (sent
        base64-encoded, so binary content is fine). Atomic."""
        call = calls.ingest_files_call(self.id, files, base_path, idempotency_key)
        return self._session.call(call, calls.parse_ingest)

    def export(self, base_path: Optional[calls.PathArg] = None) -> bytes:
        """The subtree at ``base_path`` as a gzip-compressed tar archive."""
        return self._session.call(calls.export_call(self.id, base_path, False), calls.parse_bytes)

    def export_stream(
        self, base_path: Optional[calls.PathArg] = None, chunk_size: Optional[int] = None
    ) -> Iterator[bytes]:
        """Like :meth:`export` but yields the archive in chunks as it is produced."""
        return self._session.iter_bytes(calls.export_call(self.id, base_path, True), chunk_size)

    # ---- network ----

    def set_network(self, network: calls.NetworkArg) -> SandboxInfo:
        """Change the sandbox's network egress (``PATCH /v1/sandboxes/{id}``) and return the
        updated record, which ``sb.record`` then holds. ``network`` takes the forms of
        ``create(network=)``: ``False`` (loopback only), ``True`` (the server's ``EGRESS_ALLOW``
        policy), ``{"allow": [rules], "deny": [rules]}``, or a list of rules (allow only). A rule
        is a host name (``pypi.org``) or a wildcard (``*.pythonhosted.org``), optionally with a
        port (``github.com:443``), or an address or CIDR range (``203.0.113.0/24``); a rule the
        server refuses raises :class:`ValidationError` naming it. Takes effect at the next exec."""
        rec = self._session.call(calls.set_network_call(self.id, network), calls.parse_info)
        self.record = rec
        return rec

    def egress(self, limit: Optional[int] = None) -> List[EgressRecord]:
        """The sandbox's latest connections through its egress proxy, allowed and refused,
        newest first: at most ``limit`` (1..1000, server default 100)."""
        return self._session.call(calls.egress_call(self.id, limit), calls.parse_egress)

    # ---- exec journal ----

    def execs(self, limit: Optional[int] = None, before: Optional[str] = None) -> ExecPage:
        """One page of the sandbox's exec journal, newest first: at most ``limit`` (1..1000,
        server default 100) records added before the exec ``before`` (an exec id).
        ``page.next`` is the ``before`` of the next (older) page, None on the last one. A
        listing carries no output: see :meth:`exec_record`."""
        return self._session.call(calls.execs_call(self.id, limit, before), calls.parse_exec_page)

    def exec_record(self, exec_id: str) -> ExecRecord:
        """The journal record of one exec, with the start of its stdout and stderr.
        :class:`ExecNotFoundError` when the journal has no such exec (never run, or pruned)."""
        return self._session.call(calls.exec_record_call(self.id, exec_id), calls.parse_exec_record)

    # ---- history ----

    def commits(self, limit: Optional[int] = None, before: Optional[int] = None) -> CommitPage:
        """One page of the sandbox's commits, newest first: at most ``limit`` (1..1000, server
        default 100) with versions below ``before``. ``page.next`` is the ``before`` of the next
        (older) page, None on the last one."""
        return self._session.call(calls.commits_call(self.id, limit, before), calls.parse_commit_page)

    def commit(self, version: int) -> Commit:
        """The commit that made ``version``, with the paths it changed (``.paths``)."""
        return self._session.call(calls.commit_call(self.id, version), calls.parse_commit)

    @overload
    def diff(self, from_version: int, to_version: int, path: None = None) -> Diff: ...

    @overload
    def diff(self, from_version: int, to_version: int, path: calls.PathArg) -> str: ...

    def diff(
        self, from_version: int, to_version: int, path: Optional[calls.PathArg] = None
    ) -> Union[Diff, str]:
        """The paths that differ between two versions (:class:`Diff`); with ``path``, the
        unified diff of that one file as text (a one-line notice for a binary file)."""
        call = calls.diff_call(self.id, from_version, to_version, path)
        if path is None:
            return self._session.call(call, calls.parse_diff)
        return self._session.call(call, calls.parse_text)

    def restore(self, version: Optional[int] = None, snapshot: Optional[str] = None) -> RestoreResult:
        """Make a new commit whose tree is the tree of ``version`` or of the snapshot named
        ``snapshot`` (exactly one). History is kept: the restore itself can be undone."""
        return self._session.call(calls.restore_call(self.id, version, snapshot), calls.parse_restore)

    def undo(self) -> RestoreResult:
        """Restore the parent of the latest commit, i.e. take back the last change. An undo is a
        commit too: a second undo takes the first one back. Raises
        :class:`VersionNotFoundError` when the latest commit has no parent (a new sandbox or
        fork; ``status`` is None then) or its parent is pruned. Two requests, not one
        transaction: a commit made by someone else in between is the one taken back."""
        target = calls.undo_target(self.commits(limit=1))
        return self.restore(version=target)

    def fork(
        self, version: Optional[int] = None, name: Optional[str] = None, snapshot: Optional[str] = None
    ) -> "Sandbox":
        """A new sandbox whose first version is this one's tree at ``version``, at the snapshot
        ``snapshot``, or now (neither given), named ``name``. Its content is shared with this
        sandbox, not copied, so forking is cheap; from then on the two are independent."""
        record = self._session.call(calls.fork_call(self.id, version, name, snapshot), calls.parse_record)
        return Sandbox(self._session, record.id, record)

    def snapshot(self, name: str, version: Optional[int] = None) -> Snapshot:
        """Name ``version`` (default: the current one); a named version is never pruned.
        A name the sandbox already has raises :class:`ConflictError` (``EEXIST``)."""
        return self._session.call(calls.snapshot_call(self.id, name, version), calls.parse_snapshot)

    def snapshots(self) -> List[Snapshot]:
        return self._session.call(calls.snapshots_call(self.id), calls.parse_snapshots)

    def delete_snapshot(self, name: str) -> None:
        """Remove the name; its version becomes prunable like any other."""
        self._session.call(calls.delete_snapshot_call(self.id, name), calls.parse_none)

    def delete(self) -> None:
        self._session.call(calls.delete_call(self.id), calls.parse_none)


class AsyncSandboxes:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list(self) -> List[SandboxRecord]:
        return await self._session.call(calls.list_call(), calls.parse_records)

    async def create(
        self,
        name: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        files: Optional[Mapping[str, calls.FileContent]] = None,
        python: Optional[bool] = None,
        javascript: Optional[bool] = None,
        network: Optional[calls.NetworkArg] = None,
        **extra: Any,
    ) -> "AsyncSandbox":
        call = calls.create_call(name, env, files, python, javascript, network, extra)
        record = await self._session.call(call, calls.parse_record)
        return AsyncSandbox(self._session, record.id, record)

    async def get(self, sandbox_id: str) -> SandboxInfo:
        return await self._session.call(calls.get_call(sandbox_id), calls.parse_info)

    def attach(self, sandbox_id: str) -> "AsyncSandbox":
        """A handle on an existing sandbox, without any request (not a coroutine)."""
        calls.sandbox_path(sandbox_id)
        return AsyncSandbox(self._session, sandbox_id, None)

    async def delete(self, sandbox_id: str) -> None:
        await self._session.call(calls.delete_call(sandbox_id), calls.parse_none)


class AsyncFiles:
    def __init__(self, session: AsyncSession, sandbox_id: str) -> None:
        self._session = session
        self._id = sandbox_id

    async def read(self, path: calls.PathArg, *, version: Optional[int] = None) -> ReadResult:
        return await self._session.call(calls.read_call(self._id, path, version), calls.parse_read(path))

    async def read_text(
        self,
        path: calls.PathArg,
        encoding: str = "utf-8",
        errors: str = "strict",
        *,
        version: Optional[int] = None,
    ) -> str:
        return (await self.read(path, version=version)).content.decode(encoding, errors)

    def read_stream(
        self, path: calls.PathArg, chunk_size: Optional[int] = None, *, version: Optional[int] = None
    ) -> AsyncIterator[bytes]:
        """``async for chunk in sb.fs.read_stream(path)`` (not awaited itself). Not retried."""
        call = calls.read_call(self._id, path, version)
        call.retry = calls.Retry.NONE
        return self._session.iter_bytes(call, chunk_size)

    async def write(
        self, path: calls.PathArg, content: calls.WriteContent, *, idempotency_key: Optional[str] = None
    ) -> None:
        call = calls.write_call(self._id, path, content, idempotency_key)
        await self._session.call(call, calls.parse_none)

    async def write_files(
        self, files: Mapping[str, calls.FileContent], *, idempotency_key: Optional[str] = None
    ) -> None:
        call = calls.write_files_call(self._id, files, idempotency_key)
        await self._session.call(call, calls.parse_none)

    async def delete(self, path: calls.PathArg, recursive: bool = False) -> None:
        await self._session.call(calls.delete_file_call(self._id, path, recursive), calls.parse_none)

    async def mkdir(self, path: calls.PathArg, recursive: bool = False) -> None:
        await self._session.call(calls.mkdir_call(self._id, path, recursive), calls.parse_none)

    async def tree(
        self,
        prefix: Optional[calls.PathArg] = None,
        depth: Optional[int] = None,
        *,
        version: Optional[int] = None,
    ) -> List[TreeEntry]:
        return await self._session.call(
            calls.tree_call(self._id, prefix, depth, version), calls.parse_tree
        )

    async def edit(
        self, path: calls.PathArg, old_string: str, new_string: str, replace_all: bool = False
    ) -> EditResult:
        return await self._session.call(
            calls.edit_call(self._id, path, old_string, new_string, replace_all), calls.parse_edit
        )


class AsyncSandbox:
    def __init__(self, session: AsyncSession, sandbox_id: str, record: Optional[SandboxRecord]) -> None:
        self._session = session
        self.id = sandbox_id
        self.record = record
        self.fs = AsyncFiles(session, sandbox_id)

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r}, name={self.name!r})"

    @property
    def name(self) -> Optional[str]:
        return self.record.name if self.record is not None else None

    async def info(self) -> SandboxInfo:
        rec = await self._session.call(calls.get_call(self.id), calls.parse_info)
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
        *,
        idempotency_key: Optional[str] = None,
    ) -> ExecResult:
        call = calls.exec_call(
            self.id, script, cwd, env, timeout_ms, debug, read_only, stdin, self._session.retry_exec,
            idempotency_key,
        )
        return await self._session.call(call, calls.parse_exec)

    async def exec_batch(
        self,
        scripts: Sequence[calls.BatchItem],
        timeout_ms: Optional[int] = None,
        read_only: bool = False,
        stop_on_error: Optional[bool] = None,
        per_script_timeout_ms: Optional[int] = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> List[BatchExecResult]:
        call = calls.batch_call(
            self.id, scripts, timeout_ms, read_only, stop_on_error, per_script_timeout_ms,
            self._session.retry_exec, idempotency_key,
        )
        return await self._session.call(call, calls.parse_batch)

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
        call = calls.stream_call(self.id, script, cwd, env, timeout_ms, debug, read_only, stdin)
        return self._session.iter_events(call)

    async def ingest_archive(
        self,
        file_obj: Union[IO[bytes], bytes],
        base_path: Optional[calls.PathArg] = None,
        *,
        filename: str = "archive",
        idempotency_key: Optional[str] = None,
    ) -> IngestResult:
        call = calls.ingest_archive_call(self.id, file_obj, base_path, filename, idempotency_key)
        return await self._session.call(call, calls.parse_ingest)

    async def ingest_files(
        self,
        files: Mapping[str, calls.FileContent],
        base_path: Optional[calls.PathArg] = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> IngestResult:
        call = calls.ingest_files_call(self.id, files, base_path, idempotency_key)
        return await self._session.call(call, calls.parse_ingest)

    async def export(self, base_path: Optional[calls.PathArg] = None) -> bytes:
        return await self._session.call(calls.export_call(self.id, base_path, False), calls.parse_bytes)

    def export_stream(
        self, base_path: Optional[calls.PathArg] = None, chunk_size: Optional[int] = None
    ) -> AsyncIterator[bytes]:
        """``async for chunk in sb.export_stream(...)`` (not awaited itself)."""
        return self._session.iter_bytes(calls.export_call(self.id, base_path, True), chunk_size)

    # ---- network (see :class:`Sandbox`) ----

    async def set_network(self, network: calls.NetworkArg) -> SandboxInfo:
        rec = await self._session.call(calls.set_network_call(self.id, network), calls.parse_info)
        self.record = rec
        return rec

    async def egress(self, limit: Optional[int] = None) -> List[EgressRecord]:
        return await self._session.call(calls.egress_call(self.id, limit), calls.parse_egress)

    # ---- exec journal (see :class:`Sandbox`) ----

    async def execs(self, limit: Optional[int] = None, before: Optional[str] = None) -> ExecPage:
        call = calls.execs_call(self.id, limit, before)
        return await self._session.call(call, calls.parse_exec_page)

    async def exec_record(self, exec_id: str) -> ExecRecord:
        call = calls.exec_record_call(self.id, exec_id)
        return await self._session.call(call, calls.parse_exec_record)

    # ---- history (see :class:`Sandbox`) ----

    async def commits(self, limit: Optional[int] = None, before: Optional[int] = None) -> CommitPage:
        call = calls.commits_call(self.id, limit, before)
        return await self._session.call(call, calls.parse_commit_page)

    async def commit(self, version: int) -> Commit:
        return await self._session.call(calls.commit_call(self.id, version), calls.parse_commit)

    @overload
    async def diff(self, from_version: int, to_version: int, path: None = None) -> Diff: ...

    @overload
    async def diff(self, from_version: int, to_version: int, path: calls.PathArg) -> str: ...

    async def diff(
        self, from_version: int, to_version: int, path: Optional[calls.PathArg] = None
    ) -> Union[Diff, str]:
        call = calls.diff_call(self.id, from_version, to_version, path)
        if path is None:
            return await self._session.call(call, calls.parse_diff)
        return await self._session.call(call, calls.parse_text)

    async def restore(
        self, version: Optional[int] = None, snapshot: Optional[str] = None
    ) -> RestoreResult:
        call = calls.restore_call(self.id, version, snapshot)
        return await self._session.call(call, calls.parse_restore)

    async def undo(self) -> RestoreResult:
        target = calls.undo_target(await self.commits(limit=1))
        return await self.restore(version=target)

    async def fork(
        self, version: Optional[int] = None, name: Optional[str] = None, snapshot: Optional[str] = None
    ) -> "AsyncSandbox":
        call = calls.fork_call(self.id, version, name, snapshot)
        record = await self._session.call(call, calls.parse_record)
        return AsyncSandbox(self._session, record.id, record)

    async def snapshot(self, name: str, version: Optional[int] = None) -> Snapshot:
        call = calls.snapshot_call(self.id, name, version)
        return await self._session.call(call, calls.parse_snapshot)

    async def snapshots(self) -> List[Snapshot]:
        return await self._session.call(calls.snapshots_call(self.id), calls.parse_snapshots)

    async def delete_snapshot(self, name: str) -> None:
        await self._session.call(calls.delete_snapshot_call(self.id, name), calls.parse_none)

    async def delete(self) -> None:
        await self._session.call(calls.delete_call(self.id), calls.parse_none)

