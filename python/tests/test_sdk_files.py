"""sb.fs.* against the real server."""

from __future__ import annotations

import pytest

import sqlfs

pytestmark = pytest.mark.server


def test_write_read_str_and_bytes(sb: sqlfs.Sandbox) -> None:
    sb.fs.write("/home/user/t.txt", "h\u00e9llo\n")
    res = sb.fs.read("/home/user/t.txt")
    assert isinstance(res, sqlfs.ReadResult)
    assert res.content == "h\u00e9llo\n".encode()
    assert res.text == "h\u00e9llo\n"
    assert isinstance(res.stat, sqlfs.FileStat)
    assert res.stat.kind == "file" and res.stat.size == len(res.content) and res.stat.mode == 0o644
    assert res.stat.mtime
    blob = bytes(range(256)) * 300
    sb.fs.write("/home/user/bin/blob.dat", blob)  # parents are created
    assert sb.fs.read("/home/user/bin/blob.dat").content == blob
    assert sb.fs.read_text("/home/user/t.txt") == "h\u00e9llo\n"


def test_write_keeps_mode(sb: sqlfs.Sandbox) -> None:
    sb.fs.write("/home/user/run.sh", "#!/bin/sh\necho ran\n")
    assert sb.exec("chmod 755 /home/user/run.sh").ok
    sb.fs.write("/home/user/run.sh", "#!/bin/sh\necho again\n")
    st = sb.fs.read("/home/user/run.sh").stat
    assert st is not None and st.mode == 0o755
    assert sb.exec("/home/user/run.sh").stdout == "again\n"


def test_awkward_paths(sb: sqlfs.Sandbox) -> None:
    for path in ("/home/user/a b.txt", "/home/user/100%.txt", "/home/user/q?#.txt", "/home/user/\u00e9\u2603.txt"):
        sb.fs.write(path, path)
        assert sb.fs.read_text(path) == path
    ls = sb.exec("ls /home/user").stdout.splitlines()
    assert {"a b.txt", "100%.txt", "q?#.txt", "\u00e9\u2603.txt"} <= set(ls)


def test_write_files_atomic_and_visible_to_exec(sb: sqlfs.Sandbox) -> None:
    sb.fs.write_files({"/home/user/p/a.py": "print('a')\n", "/home/user/p/q/b.txt": b"bee"})
    assert sb.exec("cat /home/user/p/a.py /home/user/p/q/b.txt").stdout == "print('a')\nbee"


def test_delete_and_recursive(sb: sqlfs.Sandbox) -> None:
    sb.fs.write("/home/user/d/x", "1")
    sb.fs.write("/home/user/f", "1")
    sb.fs.delete("/home/user/f")
    with pytest.raises(sqlfs.NotFoundError) as ei:
        sb.fs.read("/home/user/f")
    assert ei.value.code == "ENOENT"
    with pytest.raises(sqlfs.ConflictError) as ci:
        sb.fs.delete("/home/user/d")
    assert ci.value.code == "ENOTEMPTY"
    sb.fs.delete("/home/user/d", recursive=True)
    assert sb.exec("test -e /home/user/d").exit_code == 1
    with pytest.raises(sqlfs.NotFoundError):
        sb.fs.delete("/home/user/nope")


def test_mkdir(sb: sqlfs.Sandbox) -> None:
    sb.fs.mkdir("/home/user/newdir")
    with pytest.raises(sqlfs.ConflictError) as ei:
        sb.fs.mkdir("/home/user/newdir")
    assert ei.value.code == "EEXIST"
    with pytest.raises(sqlfs.NotFoundError):
        sb.fs.mkdir("/home/user/a/b/c")
    sb.fs.mkdir("/home/user/a/b/c", recursive=True)
    assert sb.exec("test -d /home/user/a/b/c").ok


def test_tree(sb: sqlfs.Sandbox) -> None:
    sb.fs.write_files({
        "/home/user/t/a.txt": "aa",
        "/home/user/t/sub/b.txt": "bbb",
        "/home/user/t/sub/deeper/c.txt": "c",
    })
    entries = sb.fs.tree(prefix="/home/user/t")
    assert all(isinstance(e, sqlfs.TreeEntry) for e in entries)
    paths = [e.path for e in entries]
    assert paths == sorted(paths)
    assert "/home/user/t" not in paths
    assert set(paths) == {
        "/home/user/t/a.txt", "/home/user/t/sub", "/home/user/t/sub/b.txt",
        "/home/user/t/sub/deeper", "/home/user/t/sub/deeper/c.txt",
    }
    by = {e.path: e for e in entries}
    assert by["/home/user/t/sub"].kind == "dir" and by["/home/user/t/sub"].is_dir
    assert by["/home/user/t/sub/b.txt"].size == 3 and by["/home/user/t/sub/b.txt"].is_file
    assert by["/home/user/t/a.txt"].mode == 0o644
    shallow = [e.path for e in sb.fs.tree(prefix="/home/user/t", depth=1)]
    assert shallow == ["/home/user/t/a.txt", "/home/user/t/sub"]
    assert sb.fs.tree(prefix="/home/user/missing") == []
    assert "/home/user" in [e.path for e in sb.fs.tree(prefix="/")]


def test_read_directory_is_validation_error(sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.ValidationError) as ei:
        sb.fs.read("/home/user")
    assert ei.value.status == 400 and ei.value.code == "EISDIR"


def test_edit(sb: sqlfs.Sandbox) -> None:
    sb.fs.write("/home/user/e.txt", "one two two\n")
    res = sb.fs.edit("/home/user/e.txt", "one", "1")
    assert isinstance(res, sqlfs.EditResult) and res.replacements == 1
    with pytest.raises(sqlfs.ConflictError) as ei:
        sb.fs.edit("/home/user/e.txt", "two", "2")
    assert ei.value.code == "EDIT_NOT_UNIQUE"
    assert sb.fs.edit("/home/user/e.txt", "two", "2", replace_all=True).replacements == 2
    assert sb.fs.read_text("/home/user/e.txt") == "1 2 2\n"
    with pytest.raises(sqlfs.ConflictError) as ei:
        sb.fs.edit("/home/user/e.txt", "zzz", "y")
    assert ei.value.code == "EDIT_NO_MATCH"


def test_relative_path_is_refused_locally(sb: sqlfs.Sandbox) -> None:
    with pytest.raises(ValueError):
        sb.fs.read("home/user/x")


def test_write_streams_file_objects(sb: sqlfs.Sandbox, tmp_path) -> None:
    import io

    blob = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB: several chunks
    sb.fs.write("/home/user/big.bin", io.BytesIO(blob))
    assert sb.fs.read("/home/user/big.bin").content == blob
    chunks = list(sb.fs.read_stream("/home/user/big.bin", chunk_size=65536))
    assert len(chunks) > 1 and b"".join(chunks) == blob
    with pytest.raises(sqlfs.NotFoundError):
        list(sb.fs.read_stream("/home/user/absent"))
    p = tmp_path / "src.bin"
    p.write_bytes(blob[:1000])
    with open(p, "rb") as f:
        sb.fs.write("/home/user/from-file.bin", f)
    assert sb.fs.read("/home/user/from-file.bin").content == blob[:1000]


def test_names_that_are_not_utf8_round_trip(sb: sqlfs.Sandbox) -> None:
    """Such names come back as surrogate-escaped str (os.fsdecode style) and go in as str or
    bytes, so every tree entry can be read, edited and deleted as listed."""
    assert sb.exec("cd /home/user; touch $'\\xff' $'a\\xfeb'; mkdir $'d\\xff'; "
                   "printf 'x y' > $'d\\xff/f\\xfe'; cd $'d\\xff'").ok
    entries = sb.fs.tree("/home/user")
    assert {e.path for e in entries} == {"/home/user/\udcff", "/home/user/a\udcfeb",
                                         "/home/user/d\udcff", "/home/user/d\udcff/f\udcfe"}
    for e in entries:
        assert e.raw["path"] == e.path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if e.is_file:
            assert sb.fs.read(e.path).path == e.path
    assert sb.fs.read("/home/user/d\udcff/f\udcfe").content == b"x y"
    assert sb.fs.read(b"/home/user/d\xff/f\xfe").content == b"x y"
    assert [e.path for e in sb.fs.tree(b"/home/user/d\xff")] == ["/home/user/d\udcff/f\udcfe"]
    assert [e.path for e in sb.fs.tree("/home/user/d\udcff")] == ["/home/user/d\udcff/f\udcfe"]
    assert sb.info().cwd == "/home/user/d\udcff"
    res = sb.fs.edit("/home/user/d\udcff/f\udcfe", "x", "z")
    assert res.path == "/home/user/d\udcff/f\udcfe" and res.replacements == 1
    sb.fs.write(b"/home/user/w\xfe", b"by bytes")
    assert sb.exec("cat /home/user/$'w\\xfe'").stdout == "by bytes"
    sb.fs.delete("/home/user/w\udcfe")
    sb.fs.delete("/home/user/\udcff")
    assert sb.exec("ls -A /home/user | od -An -c | tr -s ' '").stdout.count("377") == 1  # d\xff
    with pytest.raises(sqlfs.NotFoundError) as ei:
        sb.fs.read("/home/user/\udcff")
    assert "\ufffd" in str(ei.value)
    # a JSON body can only carry UTF-8 names: refused before any request
    with pytest.raises(ValueError):
        sb.fs.mkdir("/home/user/m\udcff")
    with pytest.raises(ValueError):
        sb.fs.write_files({b"/home/user/\xfe": "x"})  # type: ignore[dict-item]


def test_archive_paths_that_are_not_utf8(sb: sqlfs.Sandbox) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo("in\udcfe.txt")  # surrogate escape: written as the byte 0xfe
        info.size = 2
        t.addfile(info, io.BytesIO(b"ok"))
    res = sb.ingest_archive(buf.getvalue(), base_path=b"/home/user/\xff")
    assert res.base_path == "/home/user/\udcff" and res.file_count == 1
    assert "basePathBytes" in res.raw
    assert sb.fs.read("/home/user/\udcff/in\udcfe.txt").content == b"ok"
    exported = sb.export(base_path="/home/user/\udcff")
    with tarfile.open(fileobj=io.BytesIO(exported), mode="r:gz") as t:
        assert t.extractfile("in\udcfe.txt").read() == b"ok"
    with pytest.raises(ValueError):
        sb.ingest_files({"a.txt": b"1"}, base_path="/home/user/\udcff")
