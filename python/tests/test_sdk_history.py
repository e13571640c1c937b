"""Sandbox history against the real server: commits, diff, reads at a version, restore, undo,
fork and snapshots, through the sync and the async client."""

from __future__ import annotations

import asyncio
from typing import Iterator, List

import pytest

import sqlfs
from sqlfs_testlib import Server, new_sub

pytestmark = [pytest.mark.server, pytest.mark.history]

A = "/home/user/a.txt"
B = "/home/user/b.txt"
MISSING = 10**9  # a version no sandbox of these tests reaches
KINDS = {"create", "exec", "files", "ingest", "restore", "fork"}


def head(sb: sqlfs.Sandbox) -> sqlfs.Commit:
    return sb.commits(limit=1).commits[0]


@pytest.fixture
def forks() -> Iterator[List[sqlfs.Sandbox]]:
    """Sandboxes a test forked, deleted at its end."""
    made: List[sqlfs.Sandbox] = []
    yield made
    for f in made:
        try:
            f.delete()
        except sqlfs.SQLFSError:
            pass


@pytest.fixture
def hist(sb: sqlfs.Sandbox) -> sqlfs.Sandbox:
    """A sandbox with two commits beyond its creation: a file write (``sb.v_write``: a.txt is
    "one\\n") and an exec (``sb.v_exec``: a.txt "two\\n", b.txt added)."""
    sb.fs.write(A, "one\n")
    sb.v_write = head(sb).version  # type: ignore[attr-defined]
    assert sb.exec(f"echo two > {A} && echo bee > {B}").ok
    sb.v_exec = head(sb).version  # type: ignore[attr-defined]
    return sb


def test_commits_newest_first(hist: sqlfs.Sandbox) -> None:
    page = hist.commits()
    assert isinstance(page, sqlfs.CommitPage) and page.next is None
    versions = [c.version for c in page]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert versions[:2] == [hist.v_exec, hist.v_write]  # type: ignore[attr-defined]
    for c in page:
        assert isinstance(c, sqlfs.Commit) and c.kind in KINDS
        assert isinstance(c.at, str) and c.at and isinstance(c.summary, str)
        assert c.paths is None and c.bytes_added >= 0
    exec_c, write_c = page[0], page[1]
    assert exec_c.kind == "exec" and isinstance(exec_c.exec_id, str) and exec_c.exec_id
    assert exec_c.parent == write_c.version
    assert write_c.kind == "files" and write_c.exec_id is None
    first = page[len(page) - 1]
    assert first.kind == "create" and first.parent is None
    assert hist.info().get("version") == exec_c.version  # the record's version is the head


def test_commit_details(hist: sqlfs.Sandbox) -> None:
    c = hist.commit(hist.v_exec)  # type: ignore[attr-defined]
    assert c.version == hist.v_exec and c.kind == "exec"  # type: ignore[attr-defined]
    assert c.paths is not None
    by_path = {p.path: p for p in c.paths}
    assert by_path[A].change == "modified" and by_path[A].kind == "file" and by_path[A].size == 4
    assert by_path[B].change == "added" and by_path[B].size == 4
    assert (c.added, c.modified, c.deleted) == (
        sum(p.change == "added" for p in c.paths),
        sum(p.change == "modified" for p in c.paths),
        sum(p.change == "deleted" for p in c.paths),
    )
    assert c.bytes_added >= 8
    w = hist.commit(hist.v_write)  # type: ignore[attr-defined]
    assert w.kind == "files" and w.paths is not None
    assert [(p.path, p.change, p.size) for p in w.paths if p.path == A] == [(A, "added", 4)]
    hist.fs.delete(B)
    d = hist.commit(head(hist).version)
    assert d.paths is not None and [(p.path, p.change, p.kind) for p in d.paths] == [(B, "deleted", "file")]
    assert d.deleted == 1


def test_commits_pages(sb: sqlfs.Sandbox) -> None:
    for i in range(6):
        sb.fs.write(f"/home/user/f{i}", str(i))
    everything = [c.version for c in sb.commits(limit=1000)]
    assert len(everything) >= 7
    seen: List[int] = []
    before = None
    while True:
        page = sb.commits(limit=2, before=before)
        assert 1 <= len(page) <= 2
        if before is not None:
            assert all(c.version < before for c in page)
        seen += [c.version for c in page]
        if page.next is None:
            break
        before = page.next
    assert seen == everything
    one = sb.commits(limit=1)
    assert len(one) == 1 and one.next is not None
    assert sb.commits(limit=3, before=everything[0]).commits[0].version == everything[1]
    with pytest.raises(sqlfs.ValidationError):
        sb.commits(limit=0)
    with pytest.raises(sqlfs.ValidationError):
        sb.commits(limit=1001)


def test_read_and_tree_at_a_version(hist: sqlfs.Sandbox) -> None:
    v1 = hist.v_write  # type: ignore[attr-defined]
    assert hist.fs.read_text(A) == "two\n"
    old = hist.fs.read(A, version=v1)
    assert old.content == b"one\n" and old.path == A
    assert hist.fs.read_text(A, version=v1) == "one\n"
    assert b"".join(hist.fs.read_stream(A, version=v1)) == b"one\n"
    assert hist.fs.read(A, version=hist.v_exec).content == b"two\n"  # type: ignore[attr-defined]
    with pytest.raises(sqlfs.NotFoundError) as ei:
        hist.fs.read(B, version=v1)  # not there yet
    assert not isinstance(ei.value, sqlfs.VersionNotFoundError)
    then = {e.path: e for e in hist.fs.tree(prefix="/home/user", version=v1)}
    now = {e.path for e in hist.fs.tree(prefix="/home/user")}
    assert A in then and B not in then and then[A].size == 4 and then[A].is_file
    assert {A, B} <= now
    assert {e.path for e in hist.fs.tree(prefix="/home/user", depth=1, version=v1)} >= {A}


def test_diff(hist: sqlfs.Sandbox) -> None:
    v1, v2 = hist.v_write, hist.v_exec  # type: ignore[attr-defined]
    d = hist.diff(v1, v2)
    assert isinstance(d, sqlfs.Diff) and (d.from_version, d.to_version) == (v1, v2)
    assert {(p.path, p.change) for p in d.paths} == {(A, "modified"), (B, "added")}
    back = hist.diff(v2, v1)
    assert {(p.path, p.change) for p in back.paths} == {(A, "modified"), (B, "deleted")}
    assert hist.diff(v2, v2).paths == []
    text = hist.diff(v1, v2, path=A)
    assert isinstance(text, str)
    assert "-one" in text and "+two" in text and "@@" in text
    hist.fs.write("/home/user/bin.dat", b"\x00\x01\x02" * 10)
    b1 = head(hist).version
    hist.fs.write("/home/user/bin.dat", b"\x00\x09\x02" * 10)
    b2 = head(hist).version
    notice = hist.diff(b1, b2, path="/home/user/bin.dat")
    assert notice.strip() and len(notice.strip().splitlines()) == 1 and "@@" not in notice


def test_restore(hist: sqlfs.Sandbox) -> None:
    v1, v2 = hist.v_write, hist.v_exec  # type: ignore[attr-defined]
    r = hist.restore(version=v1)
    assert isinstance(r, sqlfs.RestoreResult) and r.restored_from == v1 and r.version > v2
    assert hist.fs.read_text(A) == "one\n"
    with pytest.raises(sqlfs.NotFoundError):
        hist.fs.read(B)
    c = head(hist)
    assert c.version == r.version and c.kind == "restore" and c.parent == v2
    assert hist.diff(v1, r.version).paths == []
    assert hist.exec(f"cat {A}").stdout == "one\n"  # execs see the restored tree
    r2 = hist.restore(version=v2)
    assert r2.restored_from == v2 and hist.fs.read_text(B) == "bee\n"
    with pytest.raises(ValueError):
        hist.restore()
    with pytest.raises(ValueError):
        hist.restore(version=v1, snapshot="x")


def test_undo(sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.VersionNotFoundError, match="nothing to undo"):
        sb.undo()  # a new sandbox: its one commit has no parent
    sb.fs.write(A, "1")
    v1 = head(sb).version
    sb.exec(f"echo -n 2 > {A}; rm -f /home/user/none")
    v2 = head(sb).version
    r = sb.undo()
    assert r.restored_from == v1 and r.version > v2 and sb.fs.read_text(A) == "1"
    r = sb.undo()  # the undo is the last change: undoing it brings v2 back
    assert r.restored_from == v2 and sb.fs.read_text(A) == "2"


def test_fork(hist: sqlfs.Sandbox, forks: List[sqlfs.Sandbox], client: sqlfs.Client) -> None:
    v1 = hist.v_write  # type: ignore[attr-defined]
    now = hist.fork(name="alt")
    forks.append(now)
    assert isinstance(now, sqlfs.Sandbox) and now.id != hist.id and now.name == "alt"
    assert isinstance(now.record, sqlfs.SandboxRecord)
    assert now.fs.read_text(A) == "two\n" and now.fs.read_text(B) == "bee\n"
    page = now.commits()
    assert len(page) == 1 and page[0].kind == "fork" and page[0].parent is None
    with pytest.raises(sqlfs.VersionNotFoundError, match="nothing to undo"):
        now.undo()
    now.fs.write(A, "fork\n")
    assert hist.fs.read_text(A) == "two\n"  # the two sandboxes are independent
    hist.fs.write(B, "source\n")
    assert now.fs.read_text(B) == "bee\n"
    old = hist.fork(version=v1)
    forks.append(old)
    assert old.fs.read_text(A) == "one\n"
    with pytest.raises(sqlfs.NotFoundError):
        old.fs.read(B)
    assert {now.id, old.id} <= {r.id for r in client.sandboxes.list()}
    hist.snapshot("forkme", version=v1)
    snap = hist.fork(snapshot="forkme")
    forks.append(snap)
    assert snap.fs.read_text(A) == "one\n"
    with pytest.raises(ValueError):
        hist.fork(version=v1, snapshot="forkme")


def test_snapshots(hist: sqlfs.Sandbox) -> None:
    v1 = hist.v_write  # type: ignore[attr-defined]
    s = hist.snapshot("base")
    assert isinstance(s, sqlfs.Snapshot) and s.name == "base" and s.version == head(hist).version
    assert isinstance(s.at, str) and s.at
    old = hist.snapshot("old", version=v1)
    assert old.version == v1
    with pytest.raises(sqlfs.ConflictError) as ei:
        hist.snapshot("base")
    assert ei.value.code == "EEXIST" and ei.value.status == 409
    listed = {x.name: x.version for x in hist.snapshots()}
    assert listed == {"base": s.version, "old": v1}
    hist.fs.write(A, "later\n")
    r = hist.restore(snapshot="old")
    assert r.restored_from == v1 and hist.fs.read_text(A) == "one\n"
    hist.restore(snapshot="base")
    assert hist.fs.read_text(A) == "two\n"
    hist.delete_snapshot("old")
    assert [x.name for x in hist.snapshots()] == ["base"]
    with pytest.raises(sqlfs.NotFoundError):
        hist.delete_snapshot("old")
    with pytest.raises(sqlfs.NotFoundError):
        hist.restore(snapshot="old")
    hist.delete_snapshot("base")
    assert hist.snapshots() == []


def test_unknown_version(hist: sqlfs.Sandbox) -> None:
    v1 = hist.v_write  # type: ignore[attr-defined]
    attempts = [
        lambda: hist.commit(MISSING),
        lambda: hist.fs.read(A, version=MISSING),
        lambda: hist.fs.tree(version=MISSING),
        lambda: hist.diff(v1, MISSING),
        lambda: hist.diff(MISSING, v1, path=A),
        lambda: hist.restore(version=MISSING),
        lambda: hist.fork(version=MISSING),
        lambda: hist.snapshot("nope", version=MISSING),
    ]
    for attempt in attempts:
        with pytest.raises(sqlfs.VersionNotFoundError) as ei:
            attempt()
        assert ei.value.status == 404 and ei.value.code == "VERSION_NOT_FOUND"
        assert isinstance(ei.value, sqlfs.NotFoundError)
    assert [x.name for x in hist.snapshots()] == []


def test_owner_scoped(hist: sqlfs.Sandbox, server: Server) -> None:
    with server.client(sub=new_sub()) as other:
        theirs = other.sandboxes.attach(hist.id)
        for attempt in (
            lambda: theirs.commits(),
            lambda: theirs.commit(hist.v_write),  # type: ignore[attr-defined]
            lambda: theirs.diff(1, hist.v_write),  # type: ignore[attr-defined]
            lambda: theirs.fs.read(A, version=hist.v_write),  # type: ignore[attr-defined]
            lambda: theirs.restore(version=hist.v_write),  # type: ignore[attr-defined]
            lambda: theirs.fork(),
            lambda: theirs.snapshot("x"),
            lambda: theirs.snapshots(),
        ):
            with pytest.raises(sqlfs.NotFoundError) as ei:
                attempt()
            assert not isinstance(ei.value, sqlfs.VersionNotFoundError)
    assert hist.fs.read_text(A) == "two\n" and hist.snapshots() == []


def test_async_history(server: Server) -> None:
    async def main() -> None:
        async with sqlfs.AsyncClient(base_url=server.url, auth_secret=server.secret, sub=new_sub()) as fs:
            sb = await fs.sandboxes.create(name="async-hist")
            made = [sb]
            try:
                with pytest.raises(sqlfs.VersionNotFoundError):
                    await sb.undo()
                await sb.fs.write(A, "one\n")
                v1 = (await sb.commits(limit=1)).commits[0].version
                assert (await sb.exec(f"echo two > {A} && echo bee > {B}")).ok
                page = await sb.commits()
                v2 = page[0].version
                assert page[0].kind == "exec" and page[0].parent == v1 and page.next is None
                assert [c.version for c in (await sb.commits(limit=1, before=v2))] == [v1]
                c = await sb.commit(v2)
                assert c.paths is not None  # the exec also touched /home/user (its mtime)
                assert {(p.path, p.change) for p in c.paths if p.kind == "file"} == {
                    (A, "modified"), (B, "added")}
                d = await sb.diff(v1, v2)
                assert {(p.path, p.change) for p in d.paths} == {(A, "modified"), (B, "added")}
                text = await sb.diff(v1, v2, path=A)
                assert "-one" in text and "+two" in text
                assert await sb.fs.read_text(A, version=v1) == "one\n"
                assert (await sb.fs.read(A, version=v1)).content == b"one\n"
                assert b"".join([x async for x in sb.fs.read_stream(A, version=v1)]) == b"one\n"
                assert B not in {e.path for e in await sb.fs.tree(prefix="/home/user", version=v1)}
                snap = await sb.snapshot("s1", version=v1)
                assert snap.version == v1
                with pytest.raises(sqlfs.ConflictError):
                    await sb.snapshot("s1")
                assert [s.name for s in await sb.snapshots()] == ["s1"]
                r = await sb.restore(version=v1)
                assert r.restored_from == v1 and await sb.fs.read_text(A) == "one\n"
                u = await sb.undo()
                assert u.restored_from == v2 and await sb.fs.read_text(B) == "bee\n"
                r = await sb.restore(snapshot="s1")
                assert r.restored_from == v1
                f = await sb.fork(name="async-fork")
                made.append(f)
                assert isinstance(f, sqlfs.AsyncSandbox) and f.id != sb.id and f.name == "async-fork"
                assert await f.fs.read_text(A) == "one\n"
                g = await sb.fork(version=v2, snapshot=None)
                made.append(g)
                assert await g.fs.read_text(A) == "two\n"
                h = await sb.fork(snapshot="s1")
                made.append(h)
                assert await h.fs.read_text(A) == "one\n"
                with pytest.raises(sqlfs.VersionNotFoundError):
                    await sb.commit(MISSING)
                with pytest.raises(sqlfs.VersionNotFoundError):
                    await sb.fs.tree(version=MISSING)
                await sb.delete_snapshot("s1")
                assert await sb.snapshots() == []
                with pytest.raises(sqlfs.NotFoundError):
                    await sb.delete_snapshot("s1")
            finally:
                for box in made:
                    try:
                        await box.delete()
                    except sqlfs.SQLFSError:
                        pass

    asyncio.run(main())
