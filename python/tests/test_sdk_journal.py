"""The exec journal and Idempotency-Key handling against the real server, through the sync and
the async client: execId on every exec result, ``sb.execs()`` / ``sb.exec_record()``, replays
of a caller's key, mismatches, and the generated key that makes a retry after a lost answer run
nothing twice."""

from __future__ import annotations

import asyncio
import io
import re
import tarfile
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

import httpx
import pytest

import sqlfs
from sqlfs_testlib import Server, new_sub

pytestmark = [pytest.mark.server, pytest.mark.journal]

HEX32 = re.compile(r"^[0-9a-f]{32}$")
LOG = "/home/user/log.txt"
APPEND = f"echo line >> {LOG}; wc -l < {LOG}"


def lines(sb: sqlfs.Sandbox, path: str = LOG) -> List[str]:
    return sb.fs.read_text(path).splitlines()


def tar_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---- execId ----


def test_exec_id_on_every_kind_of_exec(sb: sqlfs.Sandbox) -> None:
    r = sb.exec("echo hi; touch /home/user/f")
    assert HEX32.match(r.exec_id or "") and not r.replayed
    assert sb.commits(limit=1)[0].exec_id == r.exec_id
    events = list(sb.exec_stream("echo streamed"))
    assert events[0].type == "start" and HEX32.match(events[0].exec_id or "")
    assert events[-1].type == "exit" and events[-1].exec_id == events[0].exec_id
    batch = sb.exec_batch(["echo one", "echo two"])
    assert HEX32.match(batch[0].exec_id or "") and batch[1].exec_id == batch[0].exec_id
    assert len({r.exec_id, events[0].exec_id, batch[0].exec_id}) == 3
    with pytest.raises(sqlfs.ExecTimeoutError) as ei:
        sb.exec("sleep 5", timeout_ms=200)
    assert HEX32.match(ei.value.exec_id or "")
    assert sb.exec_record(ei.value.exec_id).timed_out


# ---- the journal ----


def test_execs_listing_and_paging(sb: sqlfs.Sandbox) -> None:
    ids = [sb.exec(f"echo {i}").exec_id for i in range(5)]
    page = sb.execs()
    assert isinstance(page, sqlfs.ExecPage) and page.next is None
    assert [e.exec_id for e in page] == ids[::-1] and len(page) == 5
    rec = page[0]
    assert isinstance(rec, sqlfs.ExecRecord) and rec.kind == "sync" and rec.script == "echo 4"
    assert rec.exit_code == 0 and rec.ok and rec.stdout_bytes == 2 and rec.stderr_bytes == 0
    assert rec.started_at and rec.version is None  # changed nothing
    assert rec.stdout is None and rec.stdout_raw is None  # a listing carries no output
    seen: List[Optional[str]] = []
    before: Optional[str] = None
    while True:
        p = sb.execs(limit=2, before=before)
        assert len(p) <= 2
        seen += [e.exec_id for e in p]
        if p.next is None:
            break
        before = p.next
    assert seen == ids[::-1]
    with pytest.raises(sqlfs.ValidationError):
        sb.execs(limit=0)
    with pytest.raises(sqlfs.ExecNotFoundError):
        sb.execs(before="0" * 32)


def test_exec_record_output(sb: sqlfs.Sandbox) -> None:
    r = sb.exec("echo out; echo err >&2; touch /home/user/made; exit 3")
    rec = sb.exec_record(r.exec_id)
    assert (rec.exec_id, rec.kind, rec.exit_code, rec.ok) == (r.exec_id, "sync", 3, False)
    assert (rec.stdout, rec.stderr) == ("out\n", "err\n")
    assert (rec.stdout_raw, rec.stderr_raw) == (b"out\n", b"err\n")
    assert not rec.stdout_truncated and not rec.stderr_truncated
    assert rec.version == sb.info().get("version")
    # output that is not UTF-8 travels as base64: exact bytes in *_raw, text as exec gave it
    b = sb.exec(r"printf 'ok \xff\xfe\xe2\x82 end'")
    brec = sb.exec_record(b.exec_id)
    assert brec.get("stdoutEncoding") == "base64"
    assert brec.stdout_raw == b"ok \xff\xfe\xe2\x82 end"
    assert brec.stdout == b.stdout == "ok " + "\ufffd" * 4 + " end"
    # the journal keeps the start of a stream (EXEC_JOURNAL_OUTPUT_BYTES, default 16 KiB)
    big = sb.exec("head -c 20000 /dev/zero | tr '\\0' a")
    grec = sb.exec_record(big.exec_id)
    assert grec.stdout_bytes == 20000 and grec.stdout_truncated
    assert grec.stdout_raw is not None and 0 < len(grec.stdout_raw) < 20000
    assert set(grec.stdout or "") == {"a"}
    with pytest.raises(sqlfs.ExecNotFoundError) as ei:
        sb.exec_record("f" * 32)
    assert isinstance(ei.value, sqlfs.NotFoundError) and ei.value.code == "EXEC_NOT_FOUND"


# ---- caller keys ----


def test_caller_key_replays_exec(sb: sqlfs.Sandbox) -> None:
    key = "k-" + uuid.uuid4().hex
    first = sb.exec(APPEND, idempotency_key=key)
    again = sb.exec(APPEND, idempotency_key=key)
    assert first.stdout == again.stdout == "1\n"
    assert not first.replayed and again.replayed and again.exec_id == first.exec_id
    assert lines(sb) == ["line"]
    assert [e.exec_id for e in sb.execs()] == [first.exec_id]
    # another key runs again
    assert sb.exec(APPEND, idempotency_key=key + "-2").stdout == "2\n"


def test_caller_key_mismatch(sb: sqlfs.Sandbox) -> None:
    key = "mm-" + uuid.uuid4().hex
    sb.exec("true", idempotency_key=key)
    with pytest.raises(sqlfs.IdempotencyMismatchError) as ei:
        sb.exec("false", idempotency_key=key)
    e = ei.value
    assert (e.status, e.code, e.idempotency_key) == (422, "IDEMPOTENCY_MISMATCH", key)
    assert isinstance(e, sqlfs.IdempotencyError) and not isinstance(e, sqlfs.ReadOnlyViolationError)
    with pytest.raises(sqlfs.IdempotencyMismatchError):
        sb.fs.write("/home/user/x", "x", idempotency_key=key)
    with pytest.raises(ValueError):
        sb.exec("true", idempotency_key="has space")


def test_caller_key_on_the_other_routes(sb: sqlfs.Sandbox) -> None:
    def version() -> int:
        return sb.info().get("version")

    k = uuid.uuid4().hex
    sb.fs.write("/home/user/p.txt", "hello", idempotency_key=k + "put")
    v = version()
    sb.fs.write("/home/user/p.txt", "hello", idempotency_key=k + "put")
    sb.fs.write_files({"/home/user/w.txt": "w"}, idempotency_key=k + "wf")
    assert version() == v + 1
    sb.fs.write_files({"/home/user/w.txt": "w"}, idempotency_key=k + "wf")
    first = sb.ingest_files({"a.txt": b"a"}, base_path="/home/user/ing", idempotency_key=k + "if")
    again = sb.ingest_files({"a.txt": b"a"}, base_path="/home/user/ing", idempotency_key=k + "if")
    assert not first.replayed and again.replayed and again.file_count == first.file_count == 1
    tar = tar_of("t.txt", b"hi")
    first = sb.ingest_archive(tar, base_path="/home/user/tar", idempotency_key=k + "tar")
    again = sb.ingest_archive(tar, base_path="/home/user/tar", idempotency_key=k + "tar")
    assert not first.replayed and again.replayed
    batch = ["echo b >> /home/user/b.txt"]
    r1 = sb.exec_batch(batch, idempotency_key=k + "batch")
    r2 = sb.exec_batch(batch, idempotency_key=k + "batch")
    assert not r1[0].replayed and r2[0].replayed and r2[0].exec_id == r1[0].exec_id
    assert version() == v + 4  # write_files, ingest_files, ingest, batch: once each
    assert sb.fs.read_text("/home/user/b.txt") == "b\n"


# ---- generated keys: a retry after a lost answer runs nothing twice ----


class LoseAnswers(httpx.BaseTransport):
    """Forwards every request to the real server; for the first ``times`` requests whose path
    ends with ``suffix``, reads the server's answer and then raises ``ReadError`` as if the
    connection had dropped before the answer arrived. With ``early=True`` it raises at once,
    while the server still runs the request (the answer is read by a thread and dropped)."""

    def __init__(self, suffix: str, times: int = 1, early: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.suffix = suffix
        self.left = times
        self.early = early
        self.seen: List[Dict[str, Any]] = []
        self.threads: List[threading.Thread] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        hit = request.url.path.endswith(self.suffix) and self.left > 0
        if hit:
            self.left -= 1
        if hit and self.early:
            request.read()
            t = threading.Thread(target=self._forward_and_drop, args=(request,))
            t.start()
            self.threads.append(t)
            time.sleep(0.4)  # the server has the body and has claimed the key
            self.seen.append({"key": request.headers.get("idempotency-key"), "status": None})
            raise httpx.ReadError("connection lost (test)", request=request)
        resp = self.inner.handle_request(request)
        if request.url.path.endswith(self.suffix):
            resp.read()
            self.seen.append({
                "key": request.headers.get("idempotency-key"),
                "status": resp.status_code,
                "replayed": resp.headers.get("idempotent-replayed") == "true",
            })
        if hit:
            resp.close()
            raise httpx.ReadError("connection lost (test)", request=request)
        return resp

    def _forward_and_drop(self, request: httpx.Request) -> None:
        with httpx.HTTPTransport() as own:
            own.handle_request(request).read()

    def close(self) -> None:
        for t in self.threads:
            t.join(timeout=30)
        self.inner.close()


def lossy_client(server: Server, transport: httpx.BaseTransport, token: str, **kw: Any) -> sqlfs.Client:
    return sqlfs.Client(base_url=server.url, token=token, http_client=httpx.Client(transport=transport), **kw)


def assert_one_key_replayed(seen: List[Dict[str, Any]]) -> str:
    """Two attempts with one generated key: the first's answer lost, the second a replay."""
    assert len(seen) == 2, seen
    key = seen[0]["key"]
    assert key and str(uuid.UUID(key, version=4)) == key and seen[1]["key"] == key
    assert not seen[0]["replayed"] and seen[1]["replayed"]
    return key


@pytest.mark.parametrize("route", ["exec-sync", "exec-sync-batch", "files", "writeFiles", "ingest", "ingest-files"])
def test_retry_after_lost_answer_is_deduplicated(server: Server, client: sqlfs.Client, sb: sqlfs.Sandbox, route: str) -> None:
    suffix = {"files": "/files/home/user/put.txt"}.get(route, "/" + route)
    transport = LoseAnswers(suffix)
    with lossy_client(server, transport, client.token) as c:
        box = c.sandboxes.attach(sb.id)
        v0 = sb.info().get("version")
        if route == "exec-sync":
            r = box.exec(APPEND)
            assert r.stdout == "1\n" and r.replayed and lines(sb) == ["line"]
        elif route == "exec-sync-batch":
            res = box.exec_batch([f"echo line >> {LOG}", f"wc -l < {LOG}"])
            assert res[1].stdout == "1\n" and res[0].replayed and lines(sb) == ["line"]
        elif route == "files":
            box.fs.write("/home/user/put.txt", "put")
        elif route == "writeFiles":
            box.fs.write_files({"/home/user/wf.txt": "wf"})
        elif route == "ingest":
            assert box.ingest_archive(io.BytesIO(tar_of("t.txt", b"t")), base_path="/home/user/t").replayed
        else:
            assert box.ingest_files({"i.txt": b"i"}, base_path="/home/user/i").replayed
    transport.close()
    assert_one_key_replayed(transport.seen)
    assert sb.info().get("version") == v0 + 1  # one commit, not two


def test_retry_waits_for_a_first_attempt_still_running(server: Server, client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    """The retry arrives while the first attempt still runs: 409 IDEMPOTENCY_IN_PROGRESS, which
    the SDK waits out, then the first attempt's answer."""
    transport = LoseAnswers("/exec-sync", early=True)
    with lossy_client(server, transport, client.token) as c:
        r = c.sandboxes.attach(sb.id).exec(f"sleep 1.5; {APPEND}")
    transport.close()
    assert r.stdout == "1\n" and r.replayed and lines(sb) == ["line"]
    statuses = [s["status"] for s in transport.seen]
    assert statuses[0] is None and 409 in statuses and statuses[-1] == 200, statuses
    assert len({s["key"] for s in transport.seen}) == 1
    assert len(sb.execs()) == 1


def test_caller_key_is_used_on_retries(server: Server, client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    transport = LoseAnswers("/exec-sync")
    with lossy_client(server, transport, client.token) as c:
        c.sandboxes.attach(sb.id).exec(APPEND, idempotency_key="mine-1")
    transport.close()
    assert [s["key"] for s in transport.seen] == ["mine-1", "mine-1"] and lines(sb) == ["line"]


def test_no_generated_key_no_retry(server: Server, client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    """With generation off, a write exec whose answer was lost is raised (it may have run)."""
    transport = LoseAnswers("/exec-sync")
    with lossy_client(server, transport, client.token, idempotency_keys=False) as c:
        with pytest.raises(sqlfs.TransportError) as ei:
            c.sandboxes.attach(sb.id).exec(APPEND)
    transport.close()
    assert ei.value.idempotency_key is None and transport.seen[0]["key"] is None
    assert len(transport.seen) == 1 and lines(sb) == ["line"]


def test_exhausted_retries_name_the_key(server: Server, client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    """When every attempt loses its answer, the error names the key: a later call with it gets
    the answer without running the script again."""
    transport = LoseAnswers("/exec-sync", times=2)
    with lossy_client(server, transport, client.token, max_retries=1) as c:
        with pytest.raises(sqlfs.TransportError) as ei:
            c.sandboxes.attach(sb.id).exec(APPEND)
    transport.close()
    key = ei.value.idempotency_key
    assert key and [s["key"] for s in transport.seen] == [key, key]
    again = sb.exec(APPEND, idempotency_key=key)
    assert again.replayed and again.stdout == "1\n" and lines(sb) == ["line"]


# ---- async ----


class AsyncLoseAnswers(httpx.AsyncBaseTransport):
    """The async twin of :class:`LoseAnswers` (answers read, then lost)."""

    def __init__(self, suffix: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.suffix = suffix
        self.left = 1
        self.keys: List[Optional[str]] = []
        self.replayed: List[bool] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        if not request.url.path.endswith(self.suffix):
            return resp
        await resp.aread()
        self.keys.append(request.headers.get("idempotency-key"))
        self.replayed.append(resp.headers.get("idempotent-replayed") == "true")
        if self.left > 0:
            self.left -= 1
            await resp.aclose()
            raise httpx.ReadError("connection lost (test)", request=request)
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_async_journal_and_idempotency(server: Server) -> None:
    async def main() -> None:
        sub = new_sub()
        async with sqlfs.AsyncClient(base_url=server.url, auth_secret=server.secret, sub=sub) as fs:
            sb = await fs.sandboxes.create(name="async-journal")
            try:
                r = await sb.exec("echo a; echo e >&2")
                assert HEX32.match(r.exec_id or "")
                events = [ev async for ev in sb.exec_stream("echo s")]
                assert events[0].type == "start" and events[-1].exec_id == events[0].exec_id
                batch = await sb.exec_batch(["echo b"])
                assert HEX32.match(batch[0].exec_id or "")
                page = await sb.execs(limit=2)
                assert [e.exec_id for e in page] == [batch[0].exec_id, events[0].exec_id]
                rest = await sb.execs(limit=2, before=page.next)
                assert [e.exec_id for e in rest] == [r.exec_id] and rest.next is None
                rec = await sb.exec_record(r.exec_id)
                assert (rec.stdout, rec.stderr, rec.kind) == ("a\n", "e\n", "sync")
                with pytest.raises(sqlfs.ExecNotFoundError):
                    await sb.exec_record("0" * 32)

                key = "ak-" + uuid.uuid4().hex
                first = await sb.exec(APPEND, idempotency_key=key)
                again = await sb.exec(APPEND, idempotency_key=key)
                assert again.replayed and again.exec_id == first.exec_id and again.stdout == "1\n"
                with pytest.raises(sqlfs.IdempotencyMismatchError):
                    await sb.exec("true", idempotency_key=key)
                again_files = await sb.ingest_files({"a": b"a"}, idempotency_key=key + "f")
                assert not again_files.replayed
                assert (await sb.ingest_files({"a": b"a"}, idempotency_key=key + "f")).replayed

                transport = AsyncLoseAnswers("/exec-sync")
                async with sqlfs.AsyncClient(
                    base_url=server.url, token=await fs.token,
                    http_client=httpx.AsyncClient(transport=transport),
                ) as lossy:
                    res = await lossy.sandboxes.attach(sb.id).exec(APPEND)
                assert res.replayed and res.stdout == "2\n"
                assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
                assert transport.keys[0] and transport.replayed == [False, True]
                assert (await sb.fs.read_text(LOG)).splitlines() == ["line", "line"]
            finally:
                await sb.delete()

    asyncio.run(main())
