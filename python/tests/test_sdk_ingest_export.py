"""ingest_archive, ingest_files, export, export_stream against the real server."""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Dict

import pytest

import sqlfs

pytestmark = [pytest.mark.server, pytest.mark.ingest_export]


def make_tar_gz(files: Dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def untar(blob: bytes) -> Dict[str, bytes]:
    out: Dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                out[m.name.lstrip("./")] = f.read()
    return out


def test_ingest_archive_tar_gz_file_object(sb: sqlfs.Sandbox) -> None:
    files = {"src/main.py": b"print('hi')\n", "README": b"readme", "bin/blob": bytes(range(256))}
    res = sb.ingest_archive(io.BytesIO(make_tar_gz(files)), base_path="/home/user/proj")
    assert isinstance(res, sqlfs.IngestResult)
    assert res.status == "ok" and res.file_count == 3 and res.base_path == "/home/user/proj"
    assert sb.fs.read("/home/user/proj/bin/blob").content == bytes(range(256))
    assert sb.exec("cd /home/user/proj && cat src/main.py").stdout == "print('hi')\n"


def test_ingest_archive_zip_bytes_default_base(sb: sqlfs.Sandbox) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("z/one.txt", "1")
    res = sb.ingest_archive(buf.getvalue())
    assert res.file_count == 1
    assert sb.fs.read_text("/home/user/project/z/one.txt") == "1"


def test_ingest_archive_escape_is_refused_atomically(sb: sqlfs.Sandbox) -> None:
    blob = make_tar_gz({"ok.txt": b"ok", "../escape.txt": b"bad"})
    with pytest.raises(sqlfs.ValidationError):
        sb.ingest_archive(io.BytesIO(blob), base_path="/home/user/p")
    assert sb.fs.tree(prefix="/home/user/p") == []
    with pytest.raises(sqlfs.NotFoundError):
        sb.fs.read("/home/user/escape.txt")


def test_ingest_files_bytes_and_str(sb: sqlfs.Sandbox) -> None:
    res = sb.ingest_files({"a/b.bin": b"\x00\x01\xff", "c.txt": "t\u00e9xt"}, base_path="/home/user/in")
    assert res.status == "ok" and res.file_count == 2
    assert sb.fs.read("/home/user/in/a/b.bin").content == b"\x00\x01\xff"
    assert sb.fs.read_text("/home/user/in/c.txt") == "t\u00e9xt"


def test_ingest_files_bad_keys(sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.ValidationError) as ei:
        sb.ingest_files({"../x": b"1", "/abs": b"2", "fine": b"3"}, base_path="/home/user/bad")
    assert ei.value.details, "details should name the bad keys"
    assert any("../x" in d for d in ei.value.details)
    assert sb.fs.tree(prefix="/home/user/bad") == []


def test_export_and_export_stream(sb: sqlfs.Sandbox) -> None:
    files = {"x.txt": b"x", "d/y.bin": bytes(range(256)) * 1000}
    sb.ingest_files(files, base_path="/home/user/exp")
    blob = sb.export(base_path="/home/user/exp")
    assert blob[:2] == b"\x1f\x8b"
    assert untar(blob) == files
    chunks = list(sb.export_stream(base_path="/home/user/exp"))
    assert all(isinstance(c, bytes) for c in chunks)
    assert untar(b"".join(chunks)) == files


def test_export_missing_base(sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.NotFoundError):
        sb.export(base_path="/home/user/none")
    with pytest.raises(sqlfs.NotFoundError):
        list(sb.export_stream(base_path="/home/user/none"))
