"""Hosts for sandboxes to reach through sqlfs's egress proxy, on this machine (tests have no
internet): a plain HTTP server and an HTTPS server (its certificate signed by a CA made here,
for names the servers pin with EGRESS_RESOLVE), both on 127.0.0.1. Used by
tests/integration/test_egress.py, python/tests and bench/egress.py.

Paths served (both servers):
  /hello              "hello from upstream\n"
  /bytes?n=N          N bytes (streamed, 1 MiB at a time)
  /blob               the bytes of Upstreams.blob (blob_bytes= at start), sent by the kernel
                      (sendfile), so that the host is not what a throughput figure measures
  /slow?s=S           headers and one line, then silence for S seconds, then a last line
  /echo               the request's method, path and headers as JSON (POST: and its body)
  /simple/            a PEP 503 simple index holding one package, tiny-pkg 0.1 (a wheel made
  /simple/tiny-pkg/   here: `import tiny_pkg; tiny_pkg.VALUE == 42`)
  /files/<wheel>
"""
import base64
import hashlib
import http.server
import io
import json
import os
import shutil
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import zipfile

WHEEL_NAME = "tiny_pkg-0.1-py3-none-any.whl"
CHUNK = 1 << 20


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel():
    """The bytes of tiny_pkg-0.1-py3-none-any.whl, a minimal valid wheel."""
    files = {
        "tiny_pkg/__init__.py": b"VALUE = 42\n",
        "tiny_pkg-0.1.dist-info/METADATA":
            b"Metadata-Version: 2.1\nName: tiny-pkg\nVersion: 0.1\nSummary: a test package\n",
        "tiny_pkg-0.1.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: sqlfs-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
    }
    record = [_record_line(p, d) for p, d in files.items()]
    record.append("tiny_pkg-0.1.dist-info/RECORD,,")
    files["tiny_pkg-0.1.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in files.items():
            z.writestr(p, d)
    return out.getvalue()


def make_ca_and_cert(workdir, names):
    """A CA and a server certificate for `names` (DNS names), with openssl. Returns
    (ca_pem_path, cert_path, key_path)."""
    ca_key = os.path.join(workdir, "ca.key")
    ca_pem = os.path.join(workdir, "ca.pem")
    key = os.path.join(workdir, "server.key")
    csr = os.path.join(workdir, "server.csr")
    crt = os.path.join(workdir, "server.crt")
    ext = os.path.join(workdir, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n")
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")

    def run(*args):
        subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_pem,
        "-days", "2", "-subj", "/CN=sqlfs test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", f"/CN={names[0]}")
    run("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return ca_pem, crt, key


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, as a real server's do
    wheel = b""
    blob_path = None

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        try:
            self._route(url.path, q)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, path, q):
        if path == "/hello":
            return self._send(200, b"hello from upstream\n")
        if path == "/echo":
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode(errors="replace") if n else ""
            return self._send(200, json.dumps({
                "method": self.command, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body}).encode(), "application/json")
        if path == "/bytes":
            n = int(q.get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = b"x" * CHUNK
            while n > 0:
                k = min(n, CHUNK)
                self.wfile.write(block[:k])
                n -= k
            return None
        if path == "/blob" and self.blob_path:
            size = os.path.getsize(self.blob_path)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.flush()
            with open(self.blob_path, "rb") as f:
                self.connection.sendfile(f)
            return None
        if path == "/slow":
            s = float(q.get("s", ["5"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "12")
            self.end_headers()
            self.wfile.write(b"first\n")
            self.wfile.flush()
            time.sleep(s)
            self.wfile.write(b"last.\n")
            return None
        if path in ("/simple", "/simple/"):
            return self._send(200, b'<html><body><a href="/simple/tiny-pkg/">tiny-pkg</a>'
                              b"</body></html>", "text/html")
        if path in ("/simple/tiny-pkg", "/simple/tiny-pkg/"):
            digest = hashlib.sha256(self.wheel).hexdigest()
            return self._send(200, (f'<html><body><a href="/files/{WHEEL_NAME}#sha256={digest}">'
                                    f"{WHEEL_NAME}</a></body></html>").encode(), "text/html")
        if path == f"/files/{WHEEL_NAME}":
            return self._send(200, self.wheel, "application/octet-stream")
        return self._send(404, b"not found\n")


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Upstreams:
    """Both servers, started in threads of this process. Attributes once started: http_port,
    https_port, ca_pem (the CA's PEM text), ca_path, names."""

    def __init__(self, names=("pkgs.test", "secure.test", "other.test"), blob_bytes=0):
        self.names = list(names)
        self._dir = tempfile.mkdtemp(prefix="sqlfs-upstreams-")
        self._servers = []
        self.blob_bytes = blob_bytes

    def start(self):
        blob = None
        if self.blob_bytes:
            blob = os.path.join(self._dir, "blob")
            with open(blob, "wb") as f:
                f.write(os.urandom(self.blob_bytes))
        handler = type("Handler", (_Handler,), {"wheel": build_wheel(), "blob_path": blob})
        plain = _Server(("127.0.0.1", 0), handler)
        self.ca_path, crt, key = make_ca_and_cert(self._dir, self.names)
        with open(self.ca_path) as f:
            self.ca_pem = f.read()
        secure = _Server(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        secure.socket = ctx.wrap_socket(secure.socket, server_side=True)
        for s in (plain, secure):
            threading.Thread(target=s.serve_forever, daemon=True).start()
            self._servers.append(s)
        self.http_port = plain.server_address[1]
        self.https_port = secure.server_address[1]
        return self

    def resolve_setting(self, addr="127.0.0.1"):
        """EGRESS_RESOLVE pinning every name to addr."""
        return ",".join(f"{n}:{addr}" for n in self.names)

    def stop(self):
        for s in self._servers:
            s.shutdown()
            s.server_close()
        self._servers = []
        shutil.rmtree(self._dir, ignore_errors=True)
