"""Names that are not valid UTF-8 (docs/API.md "Names that are not UTF-8"): every response stays
valid JSON with all its fields (`path`/`cwd`/`basePath` with U+FFFD plus `<field>Bytes`, the
exact bytes in base64, only when needed), and such files are addressed by percent-encoding."""
import base64
import io
import json
import tarfile
import time

from conftest import assert_error, raw_http

HOME = b"/home/user"
BAD = [HOME + b"/\xff", HOME + b"/a\xfeb", HOME + b"/d\xff"]
MAKE = "cd /home/user; touch $'\\xff' $'a\\xfeb'; mkdir $'d\\xff'; cd $'d\\xff'"


def url(sid, raw_path):
    """The files URL of a raw byte path: every byte outside [A-Za-z0-9/._-] percent-encoded."""
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-"
    enc = "".join(chr(c) if c in safe else "%%%02X" % c for c in raw_path)
    return f"/v1/sandboxes/{sid}/files{enc}"


def strict_json(resp):
    """The body parsed as strict JSON from its bytes (no lone surrogates, valid UTF-8)."""
    return json.loads(resp.content.decode("utf-8"))


def exec_ok(api, sid, script):
    r = api.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": script})
    assert r.status_code == 200, r.text
    assert r.json()["exitCode"] == 0, r.text
    return r.json()["stdout"]


def check_path_field(obj, key, raw):
    """obj[key] is raw with U+FFFD for bad bytes; obj[key+"Bytes"] exists iff raw is not UTF-8."""
    assert obj[key] == raw.decode("utf-8", "replace"), obj
    try:
        raw.decode("utf-8")
        assert key + "Bytes" not in obj, obj
    except UnicodeDecodeError:
        assert base64.b64decode(obj[key + "Bytes"], validate=True) == raw, obj


def entry_bytes(e):
    return base64.b64decode(e["pathBytes"]) if "pathBytes" in e else e["path"].encode()


def test_tree_has_path_and_path_bytes(api, sandbox):
    exec_ok(api, sandbox, MAKE + "; touch ok.txt")
    r = api.get(f"/v1/sandboxes/{sandbox}/tree", params={"prefix": "/home/user"})
    assert r.status_code == 200
    entries = strict_json(r)
    assert all("path" in e for e in entries), entries
    by_raw = {entry_bytes(e): e for e in entries}
    assert set(by_raw) == set(BAD + [HOME + b"/d\xff/ok.txt"])
    for raw, e in by_raw.items():
        check_path_field(e, "path", raw)
    assert by_raw[HOME + b"/d\xff"]["kind"] == "dir"
    assert by_raw[HOME + b"/\xff"]["path"] == "/home/user/\ufffd"
    # a prefix naming such a directory (the query parameter is percent-decoded too)
    r = api.get(f"/v1/sandboxes/{sandbox}/tree?prefix=/home/user/d%FF")
    assert [entry_bytes(e) for e in strict_json(r)] == [HOME + b"/d\xff/ok.txt"]


def test_record_has_cwd_and_cwd_bytes(api, sandbox):
    exec_ok(api, sandbox, MAKE)
    rec = strict_json(api.get(f"/v1/sandboxes/{sandbox}"))
    check_path_field(rec, "cwd", HOME + b"/d\xff")
    listed = [s for s in strict_json(api.get("/v1/sandboxes"))["sandboxes"] if s["id"] == sandbox]
    check_path_field(listed[0], "cwd", HOME + b"/d\xff")
    assert exec_ok(api, sandbox, "pwd | od -An -tx1 | tr -d ' \\n'").endswith("64ff0a")
    exec_ok(api, sandbox, "cd /tmp")
    rec = strict_json(api.get(f"/v1/sandboxes/{sandbox}"))
    assert rec["cwd"] == "/tmp" and "cwdBytes" not in rec


def test_read_write_delete_through_percent_encoding(api, sandbox):
    exec_ok(api, sandbox, MAKE + "; printf hi > $'/home/user/a\\xfeb'")
    assert api.get(url(sandbox, HOME + b"/a\xfeb")).content == b"hi"
    assert api.put(url(sandbox, HOME + b"/\xff"), content=b"written").status_code == 204
    assert api.put(url(sandbox, HOME + b"/d\xff/new\xfe"), content=b"deep").status_code == 204
    assert exec_ok(api, sandbox, "cat /home/user/$'\\xff'; cat /home/user/$'d\\xff/new\\xfe'") \
        == "writtendeep"
    r = api.get(url(sandbox, HOME + b"/\xff"))
    assert r.status_code == 200 and r.content == b"written"
    assert json.loads(r.headers["x-fs-stat"])["size"] == 7
    assert api.delete(url(sandbox, HOME + b"/\xff")).status_code == 204
    assert api.delete(url(sandbox, HOME + b"/d\xff") + "?recursive=true").status_code == 204
    left = exec_ok(api, sandbox, "ls -A /home/user | od -An -c | tr -s ' '")
    assert "377" not in left  # \xff and d\xff are gone; a\xfeb stays
    assert "376" in left
    assert_error(api.get(url(sandbox, HOME + b"/\xff")), 404, "ENOENT")


def test_edit_reply_has_path_bytes(api, sandbox):
    assert api.put(url(sandbox, HOME + b"/e\xff.txt"), content=b"old text").status_code == 204
    r = api.patch(url(sandbox, HOME + b"/e\xff.txt"),
                  json={"oldString": "old", "newString": "new"})
    assert r.status_code == 200, r.text
    body = strict_json(r)
    check_path_field(body, "path", HOME + b"/e\xff.txt")
    assert body["replacements"] == 1
    assert api.get(url(sandbox, HOME + b"/e\xff.txt")).content == b"new text"


def test_errors_naming_such_paths_keep_their_message(api, sandbox):
    exec_ok(api, sandbox, MAKE + "; touch inside")
    body = assert_error(api.get(url(sandbox, HOME + b"/\xff\xfe")), 404, "ENOENT")
    assert "/home/user/\ufffd\ufffd" in body["error"]
    body = assert_error(api.put(url(sandbox, HOME + b"/d\xff"), content=b"x"), 400, "EISDIR")
    assert "/home/user/d\ufffd" in body["error"]
    body = assert_error(api.delete(url(sandbox, HOME + b"/d\xff")), 409, "ENOTEMPTY")
    assert "/home/user/d\ufffd" in body["error"]
    body = assert_error(api.patch(url(sandbox, HOME + b"/d\xff"),
                                  json={"oldString": "a", "newString": "b"}), 400, "EISDIR")
    assert "d\ufffd" in body["error"]


def tar_of(entries):
    """A GNU tar whose member names are the given raw bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name.decode("utf-8", "surrogateescape"))
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_ingest_base_path_bytes(api, sandbox):
    data = tar_of({b"f\xfe.txt": b"in"})
    r = api.post(f"/v1/sandboxes/{sandbox}/ingest?basePath=/home/user/%FF", content=data,
                 headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 200, r.text
    body = strict_json(r)
    check_path_field(body, "basePath", HOME + b"/\xff")
    assert body["fileCount"] == 1
    assert api.get(url(sandbox, HOME + b"/\xff/f\xfe.txt")).content == b"in"
    # the multipart field carries raw bytes too
    r = api.post(f"/v1/sandboxes/{sandbox}/ingest", data={"basePath": b"/opt/m\xfe"},
                 files={"archive": ("a.tar", data, "application/x-tar")})
    assert r.status_code == 200, r.text
    check_path_field(strict_json(r), "basePath", b"/opt/m\xfe")


def test_export_round_trips_raw_names(api, sandbox):
    exec_ok(api, sandbox, MAKE + "; printf 1 > $'in\\xfe'; cd; printf 2 > $'\\xff'")
    r = api.get(f"/v1/sandboxes/{sandbox}/export", params={"basePath": "/home/user",
                                                           "format": "tar"})
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:", encoding="utf-8",
                      errors="surrogateescape") as t:
        names = {m.name.rstrip("/").encode("utf-8", "surrogateescape") for m in t.getmembers()}
    assert {b"\xff", b"a\xfeb", b"d\xff", b"d\xff/in\xfe"} <= names
    r = api.post(f"/v1/sandboxes/{sandbox}/ingest?basePath=/copy", content=r.content,
                 headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 200, r.text
    assert api.get(url(sandbox, b"/copy/d\xff/in\xfe")).content == b"1"
    assert api.get(url(sandbox, b"/copy/\xff")).content == b"2"


def test_request_log_line_keeps_path(fresh_server):
    s = fresh_server(env={"SQLFS_QUIET": "0"})
    token = s.token()
    reply = raw_http(s.port, b"GET /v1/sandboxes/x\xff/tree HTTP/1.1\r\nHost: h\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 404")
    deadline = time.time() + 5
    while True:
        with open(s.log_path, "rb") as f:
            lines = [json.loads(l) for l in f.read().splitlines() if l.startswith(b"{")]
        hit = [l for l in lines if l.get("msg") == "request" and "/tree" in l.get("path", "")]
        if hit or time.time() > deadline:
            break
        time.sleep(0.05)
    assert hit and hit[0]["path"] == "/v1/sandboxes/x\ufffd/tree", lines[-5:]
