"""Ingest and export (docs/API.md "Ingest and export"): every format round trip, hostile archives, limits,
consistency, disconnects."""
import base64
import hashlib
import io
import os
import socket
import tarfile
import threading
import time
import zipfile

import httpx
import pytest

from conftest import assert_error


def make_tree():
    return {"src/a.txt": b"alpha\n", "src/sub/b.bin": os.urandom(300000),
            "empty.txt": b"", "README.md": "héllo\n".encode()}


def tar_bytes(files, mode="w", extra=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640 if name.endswith(".txt") else 0o755
            info.mtime = 1600000000
            t.addfile(info, io.BytesIO(data))
        for info, data in (extra or []):
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def zip_bytes(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def ingest(api, sid, data, base="/home/user/project", ctype="application/octet-stream"):
    return api.post(f"/v1/sandboxes/{sid}/ingest", params={"basePath": base}, content=data,
                    headers={"Content-Type": ctype})


def exec_ok(api, sid, script):
    r = api.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": script})
    assert r.status_code == 200, r.text
    return r.json()["stdout"]


def tree_digest(files):
    return sorted((name, hashlib.sha256(data).hexdigest()) for name, data in files.items())


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst", "zip"])
def test_round_trip(api, sandbox, fmt):
    files = make_tree()
    if fmt == "zip":
        data = zip_bytes(files)
    elif fmt == "tar.zst":
        import subprocess
        data = subprocess.run(["zstd", "-q", "-c"], input=tar_bytes(files), capture_output=True,
                              check=True).stdout
    else:
        data = tar_bytes(files, {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2",
                                 "tar.xz": "w:xz"}[fmt])
    r = ingest(api, sandbox, data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"status": "ok", "basePath": "/home/user/project", "fileCount": 4,
                    "bytes": sum(len(v) for v in files.values())}
    # the next exec sees exactly the content
    out = exec_ok(api, sandbox, "cd /home/user/project && find . -type f | sort | "
                                "xargs sha256sum")
    seen = sorted((line.split()[1][2:], line.split()[0]) for line in out.splitlines())
    assert seen == tree_digest(files)
    if fmt != "zip":
        st = exec_ok(api, sandbox, "stat -c '%a %Y' /home/user/project/src/a.txt")
        assert st.strip() == "640 1600000000"
    # export and compare
    r = api.get(f"/v1/sandboxes/{sandbox}/export", params={"basePath": "/home/user/project"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/gzip"
    assert 'filename="export.tar.gz"' in r.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as t:
        got = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
        names = [m.name.rstrip("/") for m in t.getmembers()]
    assert tree_digest(got) == tree_digest(files)
    assert "src" in names and "src/sub" in names


def test_multipart_form_and_uncompressed_export(api, sandbox):
    data = tar_bytes({"x/y.txt": b"multi"}, "w:gz")
    r = api.post(f"/v1/sandboxes/{sandbox}/ingest", data={"basePath": "/opt/m"},
                 files={"archive": ("a.tar.gz", data, "application/gzip")})
    assert r.status_code == 200, r.text
    assert r.json()["basePath"] == "/opt/m"
    assert api.get(f"/v1/sandboxes/{sandbox}/files/opt/m/x/y.txt").content == b"multi"
    r = api.get(f"/v1/sandboxes/{sandbox}/export", params={"basePath": "/opt/m", "format": "tar"})
    assert r.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:") as t:
        assert t.extractfile("x/y.txt").read() == b"multi"


def test_symlinks_and_hardlinks_kept(api, sandbox):
    link = tarfile.TarInfo("lnk")
    link.type = tarfile.SYMTYPE
    link.linkname = "data.txt"
    hard = tarfile.TarInfo("hard.txt")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "data.txt"
    data = tar_bytes({"data.txt": b"shared"}, extra=[(link, None), (hard, None)])
    assert ingest(api, sandbox, data, "/home/user/l").status_code == 200
    out = exec_ok(api, sandbox, "cd /home/user/l; readlink lnk; cat hard.txt; "
                                "test -L hard.txt || echo regular")
    assert out == "data.txt\nsharedregular\n"


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/abs.txt", "a/../../x.txt"])
def test_escaping_entries_refused(api, sandbox, name):
    info = tarfile.TarInfo(name)
    info.size = 1
    data = tar_bytes({"ok.txt": b"1"}, extra=[(info, b"x")])
    body = assert_error(ingest(api, sandbox, data, "/home/user/esc"), 400)
    assert body.get("details"), body  # the offending entry is named
    assert api.get(f"/v1/sandboxes/{sandbox}/tree",
                   params={"prefix": "/home/user/esc"}).json() == []
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/files/home/user/esc/ok.txt"), 404)


def test_symlink_then_write_through_refused(api, sandbox):
    link = tarfile.TarInfo("evil")
    link.type = tarfile.SYMTYPE
    link.linkname = "/"
    through = tarfile.TarInfo("evil/tmp/pwned")
    through.size = 1
    data = tar_bytes({}, extra=[(link, None), (through, b"x")])
    assert_error(ingest(api, sandbox, data, "/home/user/s"), 400)
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/files/tmp/pwned"), 404)


def test_device_and_fifo_refused(api, sandbox):
    for kind in (tarfile.CHRTYPE, tarfile.FIFOTYPE):
        info = tarfile.TarInfo("dev")
        info.type = kind
        assert_error(ingest(api, sandbox, tar_bytes({}, extra=[(info, None)]), "/home/user/d"),
                     400)


def test_corrupt_and_wrong_type(api, sandbox):
    assert_error(ingest(api, sandbox, b"this is not an archive at all" * 100), 400)
    r = api.post(f"/v1/sandboxes/{sandbox}/ingest", content=b"x",
                 headers={"Content-Type": "text/html"})
    assert_error(r, 415)
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/ingest", data={"basePath": "/x"},
                          files={"other": ("a", b"x")}), 400)


def test_limits(fresh_server):
    s = fresh_server({"MAX_INGEST_FILES": "3", "MAX_INGEST_BYTES": "1000"})
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        body = assert_error(ingest(c, sid, tar_bytes({f"f{i}": b"x" for i in range(5)})), 413)
        assert any("MAX_INGEST_FILES=3" in d for d in body["details"])
        body = assert_error(ingest(c, sid, tar_bytes({"big": b"x" * 5000})), 413)
        assert any("MAX_INGEST_BYTES=1000" in d for d in body["details"])
        assert c.get(f"/v1/sandboxes/{sid}/tree", params={"prefix": "/home/user"}).json() == []


def test_bomb_stopped_by_byte_limit(fresh_server):
    s = fresh_server({"MAX_INGEST_BYTES": str(64 << 20)})
    # 1 GiB of zeros, gzip-compressed to about 1 MB, built as a stream
    import gzip
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as gz:
        info = tarfile.TarInfo("zeros")
        info.size = 1 << 30
        gz.write(info.tobuf())
        block = b"\0" * (1 << 20)
        for _ in range(1024):
            gz.write(block)
    data = raw.getvalue()
    assert len(data) < 4 << 20
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        t0 = time.time()
        body = assert_error(ingest(c, sid, data), 413)
        assert time.time() - t0 < 20
        assert any("MAX_INGEST_BYTES" in d for d in body["details"])
    with open(f"/proc/{s.proc.pid}/status") as f:
        hwm = [int(l.split()[1]) for l in f if l.startswith("VmHWM")][0]
    assert hwm < 256 * 1024  # KiB: memory stayed flat


def test_ingest_files(api, sandbox):
    url = f"/v1/sandboxes/{sandbox}/ingest-files"
    files = {"a.txt": base64.b64encode(b"A").decode(),
             "d/b.bin": base64.b64encode(b"\x00\x01").decode()}
    r = api.post(url, json={"basePath": "/home/user/if", "files": files})
    assert r.status_code == 200 and r.json()["fileCount"] == 2
    assert api.get(f"/v1/sandboxes/{sandbox}/files/home/user/if/d/b.bin").content == b"\x00\x01"
    bad = {"/abs": "QQ==", "../up": "QQ==", "ok": "not base64!", "a//b": "QQ==", "fine": "QQ=="}
    body = assert_error(api.post(url, json={"basePath": "/home/user/if2", "files": bad}), 400,
                        "INVALID_INPUT")
    details = " ".join(body["details"])
    for k in ["/abs", "../up", "ok", "a//b"]:
        assert k in details
    assert api.get(f"/v1/sandboxes/{sandbox}/tree",
                   params={"prefix": "/home/user/if2"}).json() == []
    assert_error(api.post(url, json={"files": {"x": "QQ= ="}}), 400)


def test_export_missing_base_404(api, sandbox):
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/export", params={"basePath": "/nope"}), 404)
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/export",
                         params={"basePath": "/home", "format": "rar"}), 400)


def test_export_consistent_during_writes(api, sandbox):
    # two files always written together by one exec: every export must show them equal
    api.post(f"/v1/sandboxes/{sandbox}/exec-sync",
             json={"script": "mkdir -p c; echo 0 > c/a; echo 0 > c/b"})
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            api.post(f"/v1/sandboxes/{sandbox}/writeFiles",
                     json={"files": {"/home/user/c/a": str(i), "/home/user/c/b": str(i)}})

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(15):
            r = api.get(f"/v1/sandboxes/{sandbox}/export", params={"basePath": "/home/user/c"})
            with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tf:
                assert tf.extractfile("a").read() == tf.extractfile("b").read()
    finally:
        stop.set()
        t.join()


def test_disconnect_mid_ingest_leaves_nothing(server, api, sandbox):
    data = tar_bytes({f"f{i}.bin": os.urandom(50000) for i in range(40)}, "w")
    tok = api.headers["authorization"]
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"POST /v1/sandboxes/{sandbox}/ingest?basePath=/home/user/cut HTTP/1.1\r\n"
                 f"Host: x\r\nAuthorization: {tok}\r\nContent-Type: application/x-tar\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode())
    sock.sendall(data[:len(data) // 2])
    time.sleep(0.3)
    sock.close()
    time.sleep(0.5)
    assert api.get(f"/v1/sandboxes/{sandbox}/tree",
                   params={"prefix": "/home/user/cut"}).json() == []
    assert httpx.get(server.url + "/healthz").status_code == 200


def long_path_archive(n=20000, path_len=3500):
    """The archive of the finding: n empty files, each under a ~path_len-byte path of 200-byte
    names (a 0.7 MB tar.gz holding about 70 MB of paths)."""
    deep = "/".join(f"d{j:03d}" + "x" * 195 for j in range((path_len - 220) // 200))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        for i in range(n):
            t.addfile(tarfile.TarInfo(f"{deep}/f{i:06d}"))
    return buf.getvalue()


def vm_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return [int(l.split()[1]) for l in f if l.startswith(field + ":")][0]


def asan(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def test_ingest_path_bytes_bound_memory(fresh_server):
    """Entry paths stay in memory until the commit: 20,000 entries of 3.5 KB paths (0.7 MB of
    tar.gz) raised the server's peak RSS by about 140 MB. MAX_INGEST_PATH_BYTES (default 32 MiB)
    refuses the archive with 413 naming it, nothing is written, and the peak grows by less than
    the limit plus the ingest's two 4 MiB queues and its per-entry bookkeeping (48 MiB)."""
    data = long_path_archive()
    assert len(data) < 1 << 20
    s = fresh_server()
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        before = vm_kb(s.proc.pid, "VmHWM")
        body = assert_error(ingest(c, sid, data, ctype="application/gzip"), 413,
                            "PAYLOAD_TOO_LARGE")
        grown = vm_kb(s.proc.pid, "VmHWM") - before
        assert "MAX_INGEST_PATH_BYTES=33554432" in body["details"]
        # AddressSanitizer keeps up to 32 MiB of freed memory aside and shadows the rest
        bound = (96 if asan(s.proc.pid) else 48) * 1024
        assert grown < bound, f"peak RSS grew by {grown} KiB"
        assert c.get(f"/v1/sandboxes/{sid}/tree", params={"prefix": "/home/user"}).json() == []


def test_ingest_path_bytes_limit(fresh_server):
    """MAX_INGEST_PATH_BYTES counts each entry's full path (basePath included) and each symlink
    target; an archive at the limit goes in whole."""
    s = fresh_server({"MAX_INGEST_PATH_BYTES": "1000"})
    base = "/home/user/p"  # 13 bytes with the slash before each name
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        fits = {f"{c * 243}/{c * 243}": c.encode() for c in "ab"}  # 2 x 500
        assert ingest(c, sid, tar_bytes(fits), base=base).status_code == 200
        body = assert_error(ingest(c, sid, tar_bytes(dict(fits, c=b"3")), base=base), 413)
        assert "MAX_INGEST_PATH_BYTES=1000" in body["details"]
        link = tarfile.TarInfo("l")
        link.type, link.linkname = tarfile.SYMTYPE, "t" * 987  # 14 + 987 bytes
        body = assert_error(ingest(c, sid, tar_bytes({}, extra=[(link, None)]), base=base), 413)
        assert "MAX_INGEST_PATH_BYTES=1000" in body["details"]
        tree = c.get(f"/v1/sandboxes/{sid}/tree", params={"prefix": base}).json()
        files = sorted(e["path"] for e in tree if e["kind"] == "file")
        assert files == sorted(f"{base}/{n}" for n in fits)
