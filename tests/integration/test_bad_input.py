"""Bad input, one row per hostile request (docs/API.md "Errors"-§6).

Every row is sent to the real server and must get (a) the exact status and error `code` from
API.md, (b) an `error` message that says what to fix and leaks no host path, SQL or secret, and
(c) no change at all: the target sandbox's record, its full tree listing, the content of every
file in it (an export of `/`) and the caller's list of sandboxes are compared before and after.

`python3 test_bad_input.py` prints the number of rows and the count by status (for SECURITY.md).
"""
import base64
import gzip
import hashlib
import hmac
import http.client
import io
import json
import random
import re
import socket
import tarfile
import time
import uuid
import zipfile
from collections import Counter, namedtuple

import httpx
import pytest

from conftest import ADMIN_SECRET, SECRET, assert_error, read_all
from test_exec_bounds import FD3_FLOOD, FD3_RECORDS  # scripts that flood a batch's fd 3

# A script that would visibly change the sandbox if a rejected exec ran it anyway.
EVIL = "rm -rf /home/user/*; echo pwned > /home/user/pwned; mkdir -p /tmp/x; cd /tmp/x"
FILES = "/v1/sandboxes/{sid}/files"
SBX = "/v1/sandboxes/{sid}"


# ---- request builders (each returns a function of the context) ----

def req(method, path, who="api", **kw):
    """A request by client `who` (api, mallory, tenant, anon) to `path` ({sid} = the target)."""
    def send(ctx):
        return getattr(ctx, who).request(method, path.format(sid=ctx.sid), **kw)
    return send


def bearer(token_fn, method="PUT", path=FILES + "/home/user/a.txt", content=b"pwned", **kw):
    """A request carrying the Authorization header token_fn() returns (None = no header)."""
    def send(ctx):
        value = token_fn()
        headers = {} if value is None else {"Authorization": value}
        return ctx.anon.request(method, path.format(sid=ctx.sid), content=content,
                                headers=headers, **kw)
    return send


def raw_length(method, path, length, content_type="application/json"):
    """Headers only, announcing `length` body bytes: the server must refuse before reading."""
    def send(ctx):
        conn = http.client.HTTPConnection("127.0.0.1", ctx.server.port, timeout=30)
        try:
            conn.putrequest(method, path.format(sid=ctx.sid))
            conn.putheader("Authorization", ctx.api.headers["Authorization"])
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
            r = conn.getresponse()
            return Raw(r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read())
        finally:
            conn.close()
    return send


def raw_bytes(build):
    """Bytes as they are on one connection (build(ctx) → bytes, with {sid} and {auth} filled):
    exactly one response may come back, and the server must close the connection after it, so
    a request smuggled after the first is never answered (nor run: the snapshot would see it)."""
    def send(ctx):
        data = build(ctx).replace(b"{sid}", ctx.sid.encode()).replace(
            b"{auth}", ctx.api.headers["Authorization"].encode())
        with socket.create_connection(("127.0.0.1", ctx.server.port)) as s:
            s.sendall(data)
            got = read_all(s, 10)  # a server that keeps the connection open: 10 s, then fail
        head, _, body = got.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (x.partition(":") for x in lines[1:])}
        n = int(headers["content-length"])
        assert not body[n:], f"more than one response: {got!r}"
        assert headers.get("connection", "").lower() == "close", headers
        return Raw(int(lines[0].split()[1]), headers, body[:n])
    return send


# a request that would visibly change the target sandbox if it were ever read as one
SMUGGLE = (b"DELETE /v1/sandboxes/{sid}/files/home/user/a.txt HTTP/1.1\r\nHost: x\r\n"
           b"Authorization: {auth}\r\n\r\n")
PWN = json.dumps({"files": {"/home/user/a.txt": "pwned"}}).encode()


def framed(headers, body=b"0\r\n\r\n", version=b"HTTP/1.1", path=b"/writeFiles"):
    """A writeFiles request of the target with the given framing headers, then SMUGGLE."""
    return raw_bytes(lambda ctx: b"POST /v1/sandboxes/{sid}" + path + b" " + version +
                     b"\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n" +
                     headers + b"\r\n" + body + SMUGGLE)


def chunked(body):
    return b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


class Raw:
    """The part of an httpx.Response that assert_error and the checks use."""

    def __init__(self, status, headers, body):
        self.status_code, self.headers, self.content = status, headers, body
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


# ---- JWTs ----

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(header=None, claims=None, key=SECRET.encode(), sign=True):
    header = {"alg": "HS256", "typ": "JWT"} if header is None else header
    claims = {"sub": "tester", "iat": int(time.time())} if claims is None else claims
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(claims).encode())
    if not sign:
        return f"{h}.{p}."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}.get(header.get("alg"),
                                                                    hashlib.sha256)
    sig = hmac.new(key, f"{h}.{p}".encode(), digest).digest()
    return f"{h}.{p}.{b64url(sig)}"


def flip_last_char(token):
    return token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]


# ---- archives ----

def tar_bytes(entries, mode="w:gz"):
    """entries: (name, type, data_or_linkname)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as t:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.mtime = 1700000000
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname = data
                t.addfile(ti)
            elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                ti.devmajor, ti.devminor = 1, 3
                t.addfile(ti)
            elif kind == tarfile.FIFOTYPE:
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return out.getvalue()


def zip_bytes(entries):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


GOOD = ("ok.txt", tarfile.REGTYPE, b"fine")
NOISE = random.Random(8).randbytes(6000)  # incompressible: a cut archive is really cut


def ingest(body, ctype="application/gzip", query=""):
    return req("POST", SBX + "/ingest" + query, content=body, headers={"Content-Type": ctype})


def long_paths_tgz():
    """12,000 empty files under 3.4 KB paths: 40 MB of entry paths in 0.4 MB of tar.gz."""
    deep = "/".join(f"d{j:03d}" + "x" * 195 for j in range(17))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        for i in range(12000):
            t.addfile(tarfile.TarInfo(f"{deep}/f{i:05d}"))
    return out.getvalue()


def ingest_built(build):
    """An ingest whose body is built when the row runs (not at import)."""
    def send(ctx):
        return ctx.api.post(SBX.format(sid=ctx.sid) + "/ingest", content=build(),
                            headers={"Content-Type": "application/gzip"})
    return send


# ---- the catalogue ----

Case = namedtuple("Case", "id status code send hint", defaults=(None,))

X400, INV = 400, "INVALID_INPUT"
LONG = "a" * 300  # one name over PATH_NAME_MAX
OVERLONG = "/".join(["abcdefgh"] * 600)  # 5,399 bytes, over PATH_MAX_LEN


def jpost(path, body, **kw):
    return req("POST", path, json=body, **kw)


def ingest_files(files, base="/home/user"):
    return jpost(SBX + "/ingest-files", {"basePath": base, "files": files})


def exec_sync(route="/exec-sync", **fields):
    """An exec request whose script would change the sandbox, plus the fields under test."""
    return jpost(SBX + route, dict({"script": EVIL}, **fields))


def batch(**fields):
    return jpost(SBX + "/exec-sync-batch",
                 dict({"scripts": [{"id": "a", "script": EVIL}]}, **fields))


def jraw(method, path, text, ctype="application/json"):
    return req(method, path, content=text.encode() if isinstance(text, str) else text,
               headers={"Content-Type": ctype})


CASES = [
    # -- auth (a write route: nothing may be written) --
    Case("auth-no-header", 401, "AUTH_REQUIRED", bearer(lambda: None)),
    Case("auth-basic-scheme", 401, "AUTH_REQUIRED", bearer(lambda: "Basic dGVzdGVyOnB3")),
    Case("auth-bearer-empty", 401, "AUTH_REQUIRED", bearer(lambda: "Bearer")),
    Case("auth-not-a-jwt", 401, "AUTH_INVALID", bearer(lambda: "Bearer not.a.jwt")),
    Case("auth-four-segments", 401, "AUTH_INVALID", bearer(lambda: "Bearer " + jwt() + ".x")),
    Case("auth-garbled-signature", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + flip_last_char(jwt()))),
    Case("auth-wrong-key", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt(key=b"not-the-secret"))),
    Case("auth-expired", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt(claims={"sub": "tester", "exp": int(time.time()) - 60}))),
    Case("auth-alg-none", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt({"alg": "none", "typ": "JWT"}, sign=False))),
    Case("auth-alg-none-signed", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt({"alg": "none", "typ": "JWT"}))),
    Case("auth-alg-hs512", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt({"alg": "HS512", "typ": "JWT"}))),
    Case("auth-alg-rs256", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt({"alg": "RS256", "typ": "JWT"}))),
    Case("auth-missing-sub", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt(claims={"tenant": "default"}))),
    Case("auth-empty-sub", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt(claims={"sub": ""}))),
    Case("auth-long-sub", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt(claims={"sub": "s" * 257}))),
    Case("auth-sub-not-string", 401, "AUTH_INVALID",
         bearer(lambda: "Bearer " + jwt(claims={"sub": 42}))),
    Case("auth-other-sub-get", 404, "SANDBOX_NOT_FOUND", req("GET", SBX, who="mallory")),
    Case("auth-other-sub-put", 404, "SANDBOX_NOT_FOUND",
         req("PUT", FILES + "/home/user/a.txt", who="mallory", content=b"pwned")),
    Case("auth-other-sub-delete", 404, "SANDBOX_NOT_FOUND", req("DELETE", SBX, who="mallory")),
    Case("auth-other-sub-exec", 404, "SANDBOX_NOT_FOUND",
         req("POST", SBX + "/exec-sync", who="mallory", json={"script": EVIL})),
    Case("auth-other-tenant-same-sub-export", 404, "SANDBOX_NOT_FOUND",
         req("GET", SBX + "/export?basePath=/", who="tenant")),
    Case("auth-other-tenant-same-sub-tree", 404, "SANDBOX_NOT_FOUND",
         req("GET", SBX + "/tree", who="tenant")),
    Case("auth-other-sub-file-get", 404, "SANDBOX_NOT_FOUND",
         req("GET", FILES + "/home/user/a.txt", who="mallory")),
    Case("auth-other-sub-patch", 404, "SANDBOX_NOT_FOUND",
         req("PATCH", FILES + "/home/user/a.txt", who="mallory",
             json={"oldString": "hello", "newString": "pwned"})),
    Case("auth-other-sub-file-delete", 404, "SANDBOX_NOT_FOUND",
         req("DELETE", FILES + "/home/user/a.txt", who="mallory")),
    Case("auth-other-sub-mkdir", 404, "SANDBOX_NOT_FOUND",
         req("POST", SBX + "/mkdir", who="mallory", json={"path": "/home/user/pwned"})),
    Case("auth-other-sub-writefiles", 404, "SANDBOX_NOT_FOUND",
         req("POST", SBX + "/writeFiles", who="mallory",
             json={"files": {"/home/user/pwned": "x"}})),
    Case("auth-other-sub-exec-stream", 404, "SANDBOX_NOT_FOUND",
         req("POST", SBX + "/exec", who="mallory", json={"script": EVIL})),
    Case("auth-other-sub-batch", 404, "SANDBOX_NOT_FOUND",
         req("POST", SBX + "/exec-sync-batch", who="mallory",
             json={"scripts": [{"id": "a", "script": EVIL}]})),
    Case("auth-other-sub-ingest", 404, "SANDBOX_NOT_FOUND",
         req("POST", SBX + "/ingest", who="mallory", content=tar_bytes([GOOD]),
             headers={"Content-Type": "application/gzip"})),
    Case("auth-other-tenant-same-sub-ingest-files", 404, "SANDBOX_NOT_FOUND",
         req("POST", SBX + "/ingest-files", who="tenant", json={"files": {"pwned": "eA=="}})),
    Case("auth-bootstrap-wrong-secret", 403, "FORBIDDEN",
         req("POST", "/v1/auth/bootstrap", who="anon", json={"sub": "x"},
             headers={"X-Auth-Secret": SECRET + "x"})),
    Case("auth-bootstrap-no-secret", 403, "FORBIDDEN",
         req("POST", "/v1/auth/bootstrap", who="anon", json={"sub": "x"})),
    Case("auth-bootstrap-bad-tenant", 400, INV,
         req("POST", "/v1/auth/bootstrap", who="anon", json={"sub": "x", "tenant": "a/b"},
             headers={"X-Auth-Secret": SECRET}), "tenant"),
    Case("auth-bootstrap-bad-expiresIn", 400, INV,
         req("POST", "/v1/auth/bootstrap", who="anon", json={"sub": "x", "expiresIn": "-1d"},
             headers={"X-Auth-Secret": SECRET}), "expiresIn"),
    Case("auth-bootstrap-expiresIn-never", 400, INV,
         req("POST", "/v1/auth/bootstrap", who="anon", json={"sub": "x", "expiresIn": "never"},
             headers={"X-Auth-Secret": SECRET}), "at most 1y"),
    Case("auth-bootstrap-expiresIn-over-max", 400, INV,
         req("POST", "/v1/auth/bootstrap", who="anon", json={"sub": "x", "expiresIn": "366d"},
             headers={"X-Auth-Secret": SECRET}), "TOKEN_MAX_EXPIRES"),
    Case("auth-admin-expiresIn-over-max", 400, INV,
         jpost("/v1/auth/admin", {"sub": "root", "expiresIn": "2y"},
               headers={"X-Admin-Secret": ADMIN_SECRET}), "TOKEN_MAX_EXPIRES"),
    Case("auth-status-no-admin-secret", 403, "FORBIDDEN",
         req("GET", "/v1/status", who="anon"), "X-Admin-Secret"),
    Case("auth-status-wrong-admin-secret", 403, "FORBIDDEN",
         req("GET", "/v1/status", who="anon", headers={"X-Admin-Secret": ADMIN_SECRET + "x"})),
    Case("auth-status-bearer-is-not-enough", 403, "FORBIDDEN", req("GET", "/v1/status")),
    Case("auth-status-auth-secret-is-not-enough", 403, "FORBIDDEN",
         req("GET", "/v1/status", who="anon", headers={"X-Admin-Secret": SECRET})),
    Case("auth-admin-wrong-secret", 403, "FORBIDDEN",
         jpost("/v1/auth/admin", {"sub": "root"}, headers={"X-Admin-Secret": "guess"})),
    Case("auth-admin-no-bearer", 401, "AUTH_REQUIRED",
         req("POST", "/v1/auth/admin", who="anon", json={"sub": "root"},
             headers={"X-Admin-Secret": ADMIN_SECRET})),

    # -- sandboxes --
    Case("sbx-create-not-json", 400, INV, jraw("POST", "/v1/sandboxes", "{name: 1"), "JSON"),
    Case("sbx-create-array", 400, INV, jraw("POST", "/v1/sandboxes", "[1, 2]"), "object"),
    Case("sbx-create-duplicate-key", 400, INV,
         jraw("POST", "/v1/sandboxes", '{"name": "a", "name": "b"}'), "duplicate"),
    Case("sbx-create-lone-surrogate", 400, INV,
         jraw("POST", "/v1/sandboxes", '{"name": "\\ud800"}')),
    Case("sbx-name-number", 400, INV, jpost("/v1/sandboxes", {"name": 5}), "name"),
    Case("sbx-name-too-long", 400, INV, jpost("/v1/sandboxes", {"name": "n" * 256}), "name"),
    Case("sbx-name-nul", 400, INV, jpost("/v1/sandboxes", {"name": "a\u0000b"}), "\\u0000"),
    Case("sbx-env-not-object", 400, INV, jpost("/v1/sandboxes", {"env": "A=1"}), "env"),
    Case("sbx-env-key-digit", 400, INV, jpost("/v1/sandboxes", {"env": {"1A": "x"}}), "1A"),
    Case("sbx-env-key-dash", 400, INV, jpost("/v1/sandboxes", {"env": {"A-B": "x"}}), "A-B"),
    Case("sbx-env-key-empty", 400, INV, jpost("/v1/sandboxes", {"env": {"": "x"}}), "env"),
    Case("sbx-env-key-equals", 400, INV, jpost("/v1/sandboxes", {"env": {"A=B": "x"}}), "A=B"),
    Case("sbx-env-value-number", 400, INV,
         jpost("/v1/sandboxes", {"env": {"A": 1}}), "value of 'A'"),
    Case("sbx-env-value-nul", 400, INV,
         jpost("/v1/sandboxes", {"env": {"A": "x\u0000y"}}), "\\u0000"),
    Case("sbx-files-not-object", 400, INV, jpost("/v1/sandboxes", {"files": ["/a"]}), "files"),
    Case("sbx-files-relative", 400, INV,
         jpost("/v1/sandboxes", {"files": {"rel.txt": "x"}}), "absolute"),
    Case("sbx-files-value-number", 400, INV,
         jpost("/v1/sandboxes", {"files": {"/home/user/x": 1}}), "string"),
    Case("sbx-files-over-home", 400, "EISDIR",
         jpost("/v1/sandboxes", {"files": {"/home/user/ok": "x", "/home/user": "x"}})),
    Case("sbx-files-nul-path", 400, INV,
         jpost("/v1/sandboxes", {"files": {"/home/user/a\u0000b": "x"}}), "NUL byte"),
    Case("sbx-python-string", 400, INV, jpost("/v1/sandboxes", {"python": "yes"}), "python"),
    Case("sbx-network-number", 400, INV, jpost("/v1/sandboxes", {"network": 1}), "network"),
    Case("sbx-javascript-string", 400, INV,
         jpost("/v1/sandboxes", {"javascript": "true"}), "javascript"),
    Case("sbx-get-not-uuid", 404, "SANDBOX_NOT_FOUND", req("GET", "/v1/sandboxes/not-a-uuid")),
    Case("sbx-get-unknown-uuid", 404, "SANDBOX_NOT_FOUND",
         req("GET", f"/v1/sandboxes/{uuid.UUID(int=7)}")),
    Case("sbx-delete-traversal-id", 404, "SANDBOX_NOT_FOUND",
         req("DELETE", "/v1/sandboxes/%2e%2e")),

    # -- files: paths --
    Case("file-get-dotdot-escape", 404, "ENOENT",
         req("GET", FILES + "/home/user/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd")),
    Case("file-get-encoded-slashes", 404, "ENOENT",
         req("GET", FILES + "/%2F%2E%2E%2F%2E%2E%2Fetc%2Fshadow")),
    Case("file-get-double-slash", 404, "ENOENT", req("GET", FILES + "//etc/passwd")),
    Case("file-get-symlink-abs-out", 404, "ENOENT", req("GET", FILES + "/home/user/hostpw")),
    Case("file-get-symlink-rel-out", 404, "ENOENT", req("GET", FILES + "/home/user/uppw")),
    Case("file-get-nul", 400, INV, req("GET", FILES + "/home/user/a.txt%00.png"), "NUL"),
    Case("file-put-nul", 400, INV,
         req("PUT", FILES + "/home/user/x%00y", content=b"pwned"), "NUL"),
    Case("file-put-overlong-path", 400, "ENAMETOOLONG",
         req("PUT", FILES + "/home/user/" + OVERLONG, content=b"pwned"), "too long"),
    Case("file-put-overlong-name", 400, "ENAMETOOLONG",
         req("PUT", FILES + "/home/user/" + LONG, content=b"pwned"), "too long"),
    Case("file-get-directory", 400, "EISDIR", req("GET", FILES + "/home/user/dir")),
    Case("file-put-over-directory", 400, "EISDIR",
         req("PUT", FILES + "/home/user/dir", content=b"pwned")),
    Case("file-put-root", 400, "EISDIR", req("PUT", FILES + "/", content=b"pwned")),
    Case("file-put-under-file", 400, "ENOTDIR",
         req("PUT", FILES + "/home/user/a.txt/x", content=b"pwned")),
    Case("file-put-under-symlinked-file", 400, "ENOTDIR",
         req("PUT", FILES + "/home/user/toa/x", content=b"pwned")),
    Case("file-put-through-symlink-to-etc", 400, "ENOTDIR",
         req("PUT", FILES + "/home/user/hostetc/passwd", content=b"pwned")),
    Case("file-put-symlink-loop", 400, "ELOOP",
         req("PUT", FILES + "/home/user/loop", content=b"pwned")),
    Case("file-put-through-symlink-loop", 400, "ELOOP",
         req("PUT", FILES + "/home/user/loop/x", content=b"pwned")),
    Case("file-delete-root", 400, "EINVAL", req("DELETE", FILES + "/")),
    Case("file-delete-nonempty", 409, "ENOTEMPTY", req("DELETE", FILES + "/home/user/dir"),
         "recursive"),
    Case("file-delete-recursive-garbage", 400, INV,
         req("DELETE", FILES + "/home/user/dir?recursive=yes"), "recursive"),
    Case("file-delete-missing", 404, "ENOENT", req("DELETE", FILES + "/home/user/nope")),
    Case("file-delete-nul", 400, INV, req("DELETE", FILES + "/home/user/a%00"), "NUL"),

    # -- files: Range --
    Case("range-past-end", 416, "RANGE_NOT_SATISFIABLE",
         req("GET", FILES + "/home/user/a.txt", headers={"Range": "bytes=100-200"})),
    Case("range-suffix-empty-file", 416, "RANGE_NOT_SATISFIABLE",
         req("GET", FILES + "/home/user/empty", headers={"Range": "bytes=-5"})),

    # -- mkdir --
    Case("mkdir-over-file", 409, "EEXIST", jpost(SBX + "/mkdir", {"path": "/home/user/a.txt"})),
    Case("mkdir-over-dir", 409, "EEXIST", jpost(SBX + "/mkdir", {"path": "/home/user/dir"})),
    Case("mkdir-under-file", 400, "ENOTDIR",
         jpost(SBX + "/mkdir", {"path": "/home/user/a.txt/sub", "recursive": True})),
    Case("mkdir-missing-parent", 404, "ENOENT",
         jpost(SBX + "/mkdir", {"path": "/home/user/no/such"})),
    Case("mkdir-relative", 400, INV, jpost(SBX + "/mkdir", {"path": "home/x"}), "absolute"),
    Case("mkdir-no-path", 400, INV, jpost(SBX + "/mkdir", {"recursive": True}), "path"),
    Case("mkdir-path-number", 400, INV, jpost(SBX + "/mkdir", {"path": 7}), "path"),
    Case("mkdir-recursive-string", 400, INV,
         jpost(SBX + "/mkdir", {"path": "/home/user/n", "recursive": "yes"}), "recursive"),
    Case("mkdir-nul", 400, INV, jpost(SBX + "/mkdir", {"path": "/home/user/a\u0000b"}), "\\u0000"),
    Case("mkdir-overlong", 400, "ENAMETOOLONG",
         jpost(SBX + "/mkdir", {"path": "/" + OVERLONG, "recursive": True}), "too long"),

    # -- PATCH --
    Case("patch-not-json", 400, INV, jraw("PATCH", FILES + "/home/user/a.txt", "old->new")),
    Case("patch-empty-old", 400, INV,
         req("PATCH", FILES + "/home/user/a.txt", json={"oldString": "", "newString": "x"}),
         "oldString"),
    Case("patch-equal", 400, INV,
         req("PATCH", FILES + "/home/user/a.txt", json={"oldString": "hello",
                                                         "newString": "hello"}), "equal"),
    Case("patch-no-new", 400, INV,
         req("PATCH", FILES + "/home/user/a.txt", json={"oldString": "hello"}), "newString"),
    Case("patch-old-number", 400, INV,
         req("PATCH", FILES + "/home/user/a.txt", json={"oldString": 1, "newString": "x"}),
         "oldString"),
    Case("patch-replaceall-string", 400, INV,
         req("PATCH", FILES + "/home/user/a.txt",
             json={"oldString": "hello", "newString": "x", "replaceAll": "yes"}), "replaceAll"),
    Case("patch-directory", 400, "EISDIR",
         req("PATCH", FILES + "/home/user/dir", json={"oldString": "a", "newString": "b"})),
    Case("patch-binary", 400, "EDIT_BINARY",
         req("PATCH", FILES + "/home/user/bin.dat", json={"oldString": "a", "newString": "b"})),
    Case("patch-missing", 404, "ENOENT",
         req("PATCH", FILES + "/home/user/nope", json={"oldString": "a", "newString": "b"})),
    Case("patch-no-match", 409, "EDIT_NO_MATCH",
         req("PATCH", FILES + "/home/user/a.txt", json={"oldString": "zzz", "newString": "b"})),
    Case("patch-not-unique", 409, "EDIT_NOT_UNIQUE",
         req("PATCH", FILES + "/home/user/dup.txt", json={"oldString": "aa", "newString": "b"}),
         "replaceAll"),

    # -- writeFiles --
    Case("wf-no-files", 400, INV, jpost(SBX + "/writeFiles", {"file": {}}), "files"),
    Case("wf-files-array", 400, INV, jpost(SBX + "/writeFiles", {"files": ["/a"]}), "files"),
    Case("wf-relative-key", 400, INV,
         jpost(SBX + "/writeFiles", {"files": {"/home/user/ok": "x", "rel": "x"}}), "rel"),
    Case("wf-nul-key", 400, INV,
         jpost(SBX + "/writeFiles", {"files": {"/home/user/a\u0000": "x"}}), "NUL byte"),
    Case("wf-value-number", 400, INV,
         jpost(SBX + "/writeFiles", {"files": {"/home/user/ok": "x", "/home/user/n": 5}}),
         "/home/user/n"),
    Case("wf-value-surrogate", 400, INV,
         jraw("POST", SBX + "/writeFiles", '{"files": {"/home/user/s": "\\udc00"}}')),
    Case("wf-over-directory", 400, "EISDIR",
         jpost(SBX + "/writeFiles", {"files": {"/home/user/ok": "x", "/home/user/dir": "x"}})),
    Case("wf-under-file", 400, "ENOTDIR",
         jpost(SBX + "/writeFiles", {"files": {"/home/user/ok": "x", "/home/user/a.txt/x": "x"}})),
    Case("wf-too-many", 413, "PAYLOAD_TOO_LARGE",
         jpost(SBX + "/writeFiles", {"files": {f"/home/user/m/{i}": "x" for i in range(1001)}}),
         "1000"),

    # -- tree --
    Case("tree-depth-zero", 400, INV, req("GET", SBX + "/tree?depth=0"), "depth"),
    Case("tree-depth-negative", 400, INV, req("GET", SBX + "/tree?depth=-1"), "depth"),
    Case("tree-depth-word", 400, INV, req("GET", SBX + "/tree?depth=all"), "depth"),
    Case("tree-prefix-nul", 400, INV, req("GET", SBX + "/tree?prefix=/home%00"), "NUL"),

    # -- exec-sync (JSON) --
    Case("exec-not-json", 400, INV, jraw("POST", SBX + "/exec-sync", "{script: rm}"), "JSON"),
    Case("exec-array-body", 400, INV, jraw("POST", SBX + "/exec-sync", '["ls"]'), "object"),
    Case("exec-no-script", 400, INV, jpost(SBX + "/exec-sync", {"cmd": EVIL}), "script"),
    Case("exec-script-number", 400, INV, jpost(SBX + "/exec-sync", {"script": 5}), "script"),
    Case("exec-script-array", 400, INV, jpost(SBX + "/exec-sync", {"script": [EVIL]}), "script"),
    Case("exec-script-nul", 400, INV,
         jpost(SBX + "/exec-sync", {"script": EVIL + "\u0000"}), "\\u0000"),
    Case("exec-timeout-zero", 400, INV, exec_sync(timeoutMs=0), "timeoutMs"),
    Case("exec-timeout-negative", 400, INV, exec_sync(timeoutMs=-5), "timeoutMs"),
    Case("exec-timeout-over-max", 400, INV, exec_sync(timeoutMs=300001), "timeoutMs"),
    Case("exec-timeout-huge", 400, INV,
         jraw("POST", SBX + "/exec-sync", '{"script": "%s", "timeoutMs": 1e19}' % EVIL),
         "timeoutMs"),
    Case("exec-timeout-string", 400, INV, exec_sync(timeoutMs="1000"), "timeoutMs"),
    Case("exec-timeout-fraction", 400, INV, exec_sync(timeoutMs=1.5), "timeoutMs"),
    Case("exec-env-not-object", 400, INV, exec_sync(env=["A=1"]), "env"),
    Case("exec-env-bad-key", 400, INV, exec_sync(env={"BAD KEY": "1"}), "BAD KEY"),
    Case("exec-env-value-object", 400, INV, exec_sync(env={"A": {"b": 1}}), "value of 'A'"),
    Case("exec-cwd-relative", 400, INV, exec_sync(cwd="tmp"), "cwd"),
    Case("exec-cwd-number", 400, INV, exec_sync(cwd=1), "cwd"),
    Case("exec-cwd-nul", 400, INV, exec_sync(cwd="/tmp\u0000"), "\\u0000"),
    Case("exec-cwd-overlong", 400, "ENAMETOOLONG", exec_sync(cwd="/" + OVERLONG), "cwd"),
    Case("exec-stdin-number", 400, INV, exec_sync(stdin=5), "stdin"),
    Case("exec-stdin-object", 400, INV, exec_sync(stdin={"a": 1}), "stdin"),
    Case("exec-readonly-string", 400, INV, exec_sync(readOnly="false"), "readOnly"),
    Case("exec-debug-number", 400, INV, exec_sync(debug=1), "debug"),
    # -- exec-sync (text) --
    Case("exec-content-type-html", 415, "UNSUPPORTED_MEDIA_TYPE",
         jraw("POST", SBX + "/exec-sync", EVIL, "text/html"), "Content-Type"),
    Case("exec-content-type-form", 415, "UNSUPPORTED_MEDIA_TYPE",
         jraw("POST", SBX + "/exec-sync", "script=" + EVIL, "application/x-www-form-urlencoded"),
         "Content-Type"),
    Case("exec-text-timeout-zero", 400, INV,
         jraw("POST", SBX + "/exec-sync?timeoutMs=0", EVIL, "text/plain"), "timeoutMs"),
    Case("exec-text-timeout-word", 400, INV,
         jraw("POST", SBX + "/exec-sync?timeoutMs=soon", EVIL, "text/x-shellscript"), "timeoutMs"),
    Case("exec-text-nul", 400, INV,
         jraw("POST", SBX + "/exec-sync", EVIL.encode() + b"\0", "text/plain"), "NUL"),
    # -- exec (SSE): errors before the stream --
    Case("sse-no-script", 400, INV, jpost(SBX + "/exec", {"timeoutMs": 1000}), "script"),
    Case("sse-timeout-huge", 400, INV,
         jpost(SBX + "/exec", {"script": EVIL, "timeoutMs": 10 ** 9}), "timeoutMs"),
    Case("sse-content-type", 415, "UNSUPPORTED_MEDIA_TYPE",
         jraw("POST", SBX + "/exec", EVIL, "application/xml"), "Content-Type"),
    Case("sse-env-bad-key", 400, INV,
         jpost(SBX + "/exec", {"script": EVIL, "env": {"9": "x"}}), "'9'"),
    # -- exec-sync-batch --
    Case("batch-zero-scripts", 400, INV,
         jpost(SBX + "/exec-sync-batch", {"scripts": []}), "1 to 50"),
    Case("batch-51-scripts", 400, INV,
         jpost(SBX + "/exec-sync-batch",
               {"scripts": [{"id": str(i), "script": EVIL} for i in range(51)]}), "1 to 50"),
    Case("batch-scripts-object", 400, INV,
         jpost(SBX + "/exec-sync-batch", {"scripts": {"id": "a", "script": EVIL}}), "scripts"),
    Case("batch-no-scripts", 400, INV,
         jpost(SBX + "/exec-sync-batch", {"script": EVIL}), "scripts"),
    Case("batch-script-number", 400, INV,
         jpost(SBX + "/exec-sync-batch", {"scripts": [{"id": "a", "script": EVIL},
                                                      {"id": "b", "script": 5}]}), "scripts[1]"),
    Case("batch-item-string", 400, INV,
         jpost(SBX + "/exec-sync-batch", {"scripts": [EVIL]}), "scripts[0]"),
    Case("batch-id-missing", 400, INV,
         jpost(SBX + "/exec-sync-batch", {"scripts": [{"script": EVIL}]}), "scripts[0]"),
    Case("batch-script-nul", 400, INV,
         jpost(SBX + "/exec-sync-batch", {"scripts": [{"id": "a", "script": "x\u0000"}]}),
         "\\u0000"),
    Case("batch-timeout-negative", 400, INV, batch(timeoutMs=-1), "timeoutMs"),
    Case("batch-per-script-timeout-zero", 400, INV,
         batch(perScriptTimeoutMs=0), "perScriptTimeoutMs"),
    Case("batch-readonly-string", 400, INV, batch(readOnly="no"), "readOnly"),
    Case("batch-stoponerror-number", 400, INV, batch(stopOnError=1), "stopOnError"),
    Case("batch-not-json", 400, INV, jraw("POST", SBX + "/exec-sync-batch", "scripts: [rm]"),
         "JSON"),
    # a script that floods the batch's status channel: stopped at once, nothing kept
    Case("batch-fd3-flood", 413, "PAYLOAD_TOO_LARGE",
         jpost(SBX + "/exec-sync-batch", {"scripts": [{"id": "a", "script": EVIL},
                                                      {"id": "b", "script": FD3_FLOOD}],
                                          "timeoutMs": 10000}), "fd 3"),
    Case("batch-fd3-records", 413, "PAYLOAD_TOO_LARGE",
         jpost(SBX + "/exec-sync-batch", {"scripts": [{"id": "a", "script": EVIL},
                                                      {"id": "b", "script": FD3_RECORDS}],
                                          "timeoutMs": 10000, "perScriptTimeoutMs": 5000}),
         "fd 3"),

    # -- ingest --
    Case("ingest-garbage", 400, INV, ingest(b"this is not an archive at all\n" * 20,
                                            "application/octet-stream")),
    Case("ingest-empty", 400, INV, ingest(b"", "application/x-tar")),
    Case("ingest-truncated-gzip", 400, INV,
         ingest(tar_bytes([GOOD, ("b.txt", tarfile.REGTYPE, NOISE)])[:3000])),
    Case("ingest-zip-slip-tar", 400, INV,
         ingest(tar_bytes([GOOD, ("../../../../etc/evil", tarfile.REGTYPE, b"x")])), ".."),
    Case("ingest-zip-slip-zip", 400, INV,
         ingest(zip_bytes([("ok.txt", b"fine"), ("../evil.txt", b"x")]), "application/zip"),
         ".."),
    Case("ingest-absolute-tar", 400, INV,
         ingest(tar_bytes([GOOD, ("/etc/evil", tarfile.REGTYPE, b"x")])), "/etc/evil"),
    Case("ingest-absolute-zip", 400, INV,
         ingest(zip_bytes([("/etc/evil", b"x")]), "application/zip"), "/etc/evil"),
    Case("ingest-char-device", 400, INV,
         ingest(tar_bytes([GOOD, ("null", tarfile.CHRTYPE, None)])), "null"),
    Case("ingest-block-device", 400, INV,
         ingest(tar_bytes([GOOD, ("disk", tarfile.BLKTYPE, None)])), "disk"),
    Case("ingest-fifo", 400, INV, ingest(tar_bytes([GOOD, ("pipe", tarfile.FIFOTYPE, None)])),
         "pipe"),
    Case("ingest-hardlink-out", 400, INV,
         ingest(tar_bytes([GOOD, ("h", tarfile.LNKTYPE, "../../../etc/passwd")])), "hardlink"),
    Case("ingest-write-through-symlink", 400, INV,
         ingest(tar_bytes([("l", tarfile.SYMTYPE, "/etc"),
                           ("l/evil", tarfile.REGTYPE, b"x")])), "l/evil"),
    Case("ingest-file-over-directory", 400, "EISDIR",
         ingest(tar_bytes([GOOD, ("dir", tarfile.REGTYPE, b"x")]), query="?basePath=/home/user")),
    Case("ingest-basepath-relative", 400, INV,
         ingest(tar_bytes([GOOD]), query="?basePath=home/user"), "basePath"),
    Case("ingest-basepath-nul", 400, INV,
         ingest(tar_bytes([GOOD]), query="?basePath=/home/user%00x"), "basePath"),
    Case("ingest-basepath-file", 400, "ENOTDIR",
         ingest(tar_bytes([GOOD]), query="?basePath=/home/user/a.txt")),
    Case("ingest-path-bytes-over-cap", 413, "PAYLOAD_TOO_LARGE", ingest_built(long_paths_tgz),
         "MAX_INGEST_PATH_BYTES"),
    Case("ingest-content-type", 415, "UNSUPPORTED_MEDIA_TYPE",
         ingest(tar_bytes([GOOD]), "text/plain"), "application/x-tar"),
    Case("ingest-multipart-no-archive", 400, INV,
         req("POST", SBX + "/ingest", files={"notarchive": ("a.tgz", tar_bytes([GOOD]))}),
         "archive"),
    # -- ingest-files --
    Case("if-bad-base64", 400, INV, ingest_files({"ok": "Zm9v", "bad.txt": "!!!!"}), "bad.txt"),
    Case("if-bad-padding", 400, INV, ingest_files({"p.txt": "Zm9"}),
         "p.txt"),
    Case("if-urlsafe-base64", 400, INV, ingest_files({"u.txt": "-_-_"}),
         "u.txt"),
    Case("if-value-number", 400, INV, ingest_files({"n.txt": 1}),
         "n.txt"),
    Case("if-key-absolute", 400, INV, ingest_files({"/etc/x": "eA=="}),
         "/etc/x"),
    Case("if-key-dotdot", 400, INV, ingest_files({"../../etc/x": "eA=="}),
         "../../etc/x"),
    Case("if-key-empty-segment", 400, INV, ingest_files({"a//b": "eA=="}),
         "a//b"),
    Case("if-basepath-relative", 400, INV,
         jpost(SBX + "/ingest-files", {"basePath": "home", "files": {"a": "eA=="}}), "basePath"),
    Case("if-no-files", 400, INV, jpost(SBX + "/ingest-files", {"basePath": "/home/user"}),
         "files"),
    Case("if-over-directory", 400, "EISDIR", ingest_files({"ok": "eA==", "dir": "eA=="})),

    # -- export --
    Case("export-missing-basepath", 404, "ENOENT",
         req("GET", SBX + "/export?basePath=/home/user/nope")),
    Case("export-relative-basepath", 400, INV, req("GET", SBX + "/export?basePath=home"),
         "basePath"),
    Case("export-bad-format", 400, INV, req("GET", SBX + "/export?basePath=/&format=zip"),
         "format"),

    # -- HTTP level --
    Case("http-unknown-route", 404, "NOT_FOUND", req("GET", "/v1/nope")),
    Case("http-unknown-sandbox-route", 404, "NOT_FOUND", req("POST", SBX + "/format-disk",
                                                            json={})),
    Case("http-unknown-unversioned", 404, "NOT_FOUND", req("GET", "/admin", who="anon")),
    Case("http-method-put-sandboxes", 405, "METHOD_NOT_ALLOWED",
         req("PUT", "/v1/sandboxes", json={})),
    Case("http-method-get-exec", 405, "METHOD_NOT_ALLOWED", req("GET", SBX + "/exec-sync")),
    Case("http-method-post-file", 405, "METHOD_NOT_ALLOWED",
         req("POST", FILES + "/home/user/a.txt", content=b"pwned")),
    Case("http-method-delete-healthz", 405, "METHOD_NOT_ALLOWED",
         req("DELETE", "/healthz", who="anon")),
    Case("http-json-body-over-cap", 413, "PAYLOAD_TOO_LARGE",
         raw_length("POST", "/v1/sandboxes", 300 * 1024 * 1024), "MAX_REQUEST_BODY_BYTES"),
    Case("http-exec-body-over-cap", 413, "PAYLOAD_TOO_LARGE",
         raw_length("POST", SBX + "/exec-sync", 300 * 1024 * 1024), "MAX_REQUEST_BODY_BYTES"),
    Case("http-body-on-bodyless-route", 413, "PAYLOAD_TOO_LARGE",
         req("DELETE", FILES + "/home/user/a.txt", content=b"x" * (128 * 1024)), "no body"),
    Case("http-auth-body-over-cap", 413, "PAYLOAD_TOO_LARGE",
         raw_length("POST", "/v1/auth/bootstrap", 9000), "8192"),
    Case("http-admin-body-over-cap", 413, "PAYLOAD_TOO_LARGE",
         raw_length("POST", "/v1/auth/admin", 1 << 24), "8192"),
    Case("http-auth-chunked-over-cap", 413, "PAYLOAD_TOO_LARGE",
         raw_bytes(lambda ctx: b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\n"
                   b"X-Auth-Secret: " + SECRET.encode() + b"\r\nTransfer-Encoding: chunked\r\n"
                   b"Connection: close\r\n\r\n" +
                   chunked(b'{"sub":"' + b"s" * 9000 + b'"}')), "8192"),
    Case("http-json-parse-memory", 413, "PAYLOAD_TOO_LARGE",
         jraw("POST", SBX + "/writeFiles",
              '{"files": {"/home/user/a.txt": "pwned"}, "x": [' + ",".join(["{}"] * 300000) +
              "]}"), "16 x the body size"),
    # -- HTTP framing: a request a proxy and the server could split differently --
    Case("http-cl-and-te", 400, INV,
         framed(b"Host: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(PWN),
                chunked(PWN)), "Transfer-Encoding"),
    Case("http-te-and-cl", 400, INV,
         framed(b"Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                chunked(PWN)), "Content-Length"),
    Case("http-two-content-lengths", 400, INV,
         framed(b"Host: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n" % len(PWN), PWN),
         "Content-Length"),
    Case("http-te-trailing-space", 501, "NOT_IMPLEMENTED",
         framed(b"Host: x\r\nTransfer-Encoding: chunked \r\n", chunked(PWN)),
         "Transfer-Encoding"),
    Case("http-te-identity-chunked", 501, "NOT_IMPLEMENTED",
         framed(b"Host: x\r\nTransfer-Encoding: identity, chunked\r\n", chunked(PWN)),
         "Transfer-Encoding"),
    Case("http-te-xchunked", 501, "NOT_IMPLEMENTED",
         framed(b"Host: x\r\nTransfer-Encoding: xchunked\r\n", chunked(PWN)),
         "Transfer-Encoding"),
    Case("http-te-twice", 400, INV,
         framed(b"Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                chunked(PWN)), "Transfer-Encoding"),
    Case("http-te-in-http10", 400, INV,
         framed(b"Host: x\r\nTransfer-Encoding: chunked\r\n", chunked(PWN), b"HTTP/1.0"),
         "HTTP/1.0"),
    Case("http-space-before-colon", 400, INV,
         framed(b"Host: x\r\nTransfer-Encoding : chunked\r\n", chunked(PWN)), "spaces"),
    Case("http-no-host", 400, INV,
         framed(b"Content-Length: %d\r\n" % len(PWN), PWN), "Host"),
    Case("http-two-hosts", 400, INV,
         framed(b"Host: x\r\nHost: y\r\nContent-Length: %d\r\n" % len(PWN), PWN), "Host"),
]


# ---- fixtures and checks ----

class Ctx:
    pass


@pytest.fixture(scope="module")
def ctx(server, api):
    """One target sandbox shared by every row: each row must leave it exactly as it was."""
    c = Ctx()
    c.server, c.api = server, api
    r = api.post("/v1/sandboxes", json={"name": "bad-input-target", "env": {"KEEP": "1"}})
    assert r.status_code == 201, r.text
    c.sid = r.json()["id"]
    files = {"/home/user/a.txt": "hello\n", "/home/user/dir/inner.txt": "x",
             "/home/user/dup.txt": "aa aa\n", "/home/user/empty": ""}
    assert api.post(f"/v1/sandboxes/{c.sid}/writeFiles", json={"files": files}).status_code == 204
    assert api.put(f"/v1/sandboxes/{c.sid}/files/home/user/bin.dat",
                   content=b"a\x00\xff\xfeb").status_code == 204
    r = api.post(f"/v1/sandboxes/{c.sid}/exec-sync", json={"script": (
        "cd /home/user && ln -s /etc/passwd hostpw && ln -s ../../../../../etc/passwd uppw"
        " && ln -s /etc hostetc && ln -s loop loop && ln -s /home/user/a.txt toa && cd dir")})
    assert r.status_code == 200 and r.json()["exitCode"] == 0, r.text
    with server.client(sub="mallory") as mallory, \
            server.client(sub="tester", tenant="other") as tenant, \
            httpx.Client(base_url=server.url, timeout=60) as anon:
        c.mallory, c.tenant, c.anon = mallory, tenant, anon
        yield c
    api.delete(f"/v1/sandboxes/{c.sid}")


def snapshot(c):
    rec = c.api.get(f"/v1/sandboxes/{c.sid}")
    assert rec.status_code == 200, rec.text
    rec = rec.json()
    rec.pop("lastUsedAt", None)  # reads may touch it; everything else must stay
    tree = c.api.get(f"/v1/sandboxes/{c.sid}/tree", params={"prefix": "/"})
    assert tree.status_code == 200, tree.text
    exp = c.api.get(f"/v1/sandboxes/{c.sid}/export", params={"basePath": "/"})
    assert exp.status_code == 200
    content = hashlib.sha256(gzip.decompress(exp.content)).hexdigest()
    ids = sorted(s["id"] for s in c.api.get("/v1/sandboxes").json()["sandboxes"])
    return {"record": rec, "tree": tree.json(), "content": content, "sandboxes": ids}


def cwd_of(c):
    r = c.api.post(f"/v1/sandboxes/{c.sid}/exec-sync", json={"script": "pwd", "readOnly": True})
    assert r.status_code == 200, r.text
    return r.json()["stdout"]


SQL_WORDS = re.compile(r"\b(SELECT|INSERT INTO|DELETE FROM|UPDATE \w+ SET|sqlite3?_)\b|SQLITE",
                       re.I)


def check_message(c, resp, case):
    text = resp.text
    body = resp.json()
    msg = body["error"]
    assert msg.strip(), "empty message"
    for secret in (SECRET, ADMIN_SECRET, c.server.data_dir, c.server.data_dir.rsplit("/", 1)[0]):
        assert secret not in text, f"leaks {secret!r}: {text}"
    assert not SQL_WORDS.search(text), f"SQL in message: {text}"
    assert "/tmp/pytest" not in text and "/work/" not in text, f"host path in message: {text}"
    if case.hint:
        said = " ".join([msg] + list(body.get("details") or []))
        assert case.hint.lower() in said.lower(), f"message does not name {case.hint!r}: {said}"
    if "details" in body:
        assert isinstance(body["details"], list)
        assert all(isinstance(d, str) and d for d in body["details"])


# Rows the server does not pass yet; strict, so a fix turns them into failures to remove here.
KNOWN = {}


@pytest.mark.parametrize("case", [
    pytest.param(k, marks=pytest.mark.xfail(strict=True, reason=KNOWN[k.id])) if k.id in KNOWN
    else k for k in CASES], ids=[k.id for k in CASES])
def test_bad_input(ctx, case):
    is_exec = "exec" in case.id or case.id.startswith(("sse-", "batch-"))
    before = snapshot(ctx)
    cwd = cwd_of(ctx) if is_exec else None
    resp = case.send(ctx)
    assert_error(resp, case.status, case.code)
    check_message(ctx, resp, case)
    if case.status in (401, 403):
        assert resp.json()["retryable"] is False
    if case.status == 405:  # the methods the route does take
        assert resp.headers["allow"]
    if case.status == 416:  # the size to retry against
        assert re.fullmatch(r"bytes \*/\d+", resp.headers["content-range"])
    assert snapshot(ctx) == before, "the rejected request changed the sandbox"
    if is_exec:
        assert cwd_of(ctx) == cwd, "the rejected exec moved the stored cwd"


def test_snapshot_sees_every_kind_of_change(ctx):
    """The 'nothing changed' check can fail: new content, a new empty dir, a new sandbox."""
    base = f"/v1/sandboxes/{ctx.sid}"
    before = snapshot(ctx)
    changes = [
        (lambda: ctx.api.put(base + "/files/home/user/a.txt", content=b"hellO\n"),
         lambda: ctx.api.put(base + "/files/home/user/a.txt", content=b"hello\n")),
        (lambda: ctx.api.post(base + "/mkdir", json={"path": "/home/user/newdir"}),
         lambda: ctx.api.delete(base + "/files/home/user/newdir")),
    ]
    for change, undo in changes:
        assert change().status_code in (200, 204)
        assert snapshot(ctx) != before
        assert undo().status_code == 204
    sid = ctx.api.post("/v1/sandboxes", json={}).json()["id"]
    try:
        assert snapshot(ctx)["sandboxes"] != before["sandboxes"]
    finally:
        ctx.api.delete(f"/v1/sandboxes/{sid}")


def test_ids_unique():
    assert len({k.id for k in CASES}) == len(CASES)


def test_range_garbage_is_ignored(ctx):
    """A malformed Range header is ignored (RFC 9110 §14.2): the whole file, 200."""
    for value in ("bytes=abc", "bytes=5-2", "items=0-1", "bytes=0-1,3-4", "bytes=--1"):
        r = ctx.api.get(f"/v1/sandboxes/{ctx.sid}/files/home/user/a.txt", headers={"Range": value})
        assert r.status_code == 200 and r.content == b"hello\n", (value, r.status_code)


def counts():
    return len(CASES), sorted(Counter(k.status for k in CASES).items())


if __name__ == "__main__":
    n, by = counts()
    print(f"{n} cases: " + ", ".join(f"{s} ×{c}" for s, c in by))

