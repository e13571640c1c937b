"""Hostile HTTP clients (SECURITY.md "HTTP"): request smuggling, bodies sent to exhaust memory,
connections held open to starve other clients. Each test speaks raw HTTP where a client library
would normalise what is being tested, and reads the server's memory from /proc.
"""
import json
import socket
import threading
import time

import httpx

from conftest import SECRET, assert_error, read_all
from conftest import proc_status_kib as mem_kib

MIB = 1 << 20
AUTH_BODY_MAX = 8 * 1024
PARSE_FACTOR, PARSE_SLACK = 16, 2 * MIB


# ---- helpers ----

def reset_peak(pid):
    """Resets the process's VmHWM to its current RSS (Linux: clear_refs 5) and returns it."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    return mem_kib(pid, "VmHWM")


def sanitized(pid):
    """True for the ASan build: its allocator keeps freed memory and its own metadata, so
    resident-memory bounds do not apply to it (the statuses still do)."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def responses(data):
    """Splits the bytes of a connection into (status, headers, body) responses; bodies are
    delimited by Content-Length (every response of the server has one)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"truncated response: {data[:200]!r}"
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (l.decode().partition(":") for l in lines[1:])}
        n = int(headers.get("content-length", 0))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def exchange(port, request, timeout=15):
    """Sends raw bytes, half-closes nothing, and returns every response the server gave before
    it closed the connection (the request must not say Connection: close: the server must close
    by itself)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        data = read_all(s, timeout)
    return responses(data)


def json_error(resp, status, code):
    st, headers, body = resp
    assert st == status, (st, body)
    assert headers["content-type"].startswith("application/json")
    assert headers.get("connection", "").lower() == "close", headers
    b = json.loads(body)
    assert b["code"] == code and b["error"], b
    return b


SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


# ---- finding 5: framing ----

def test_content_length_and_chunked_refused_and_smuggled_request_unanswered(server):
    for head in (b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                 b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"):
        rs = exchange(server.port, b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\n" + head +
                      b"\r\n0\r\n\r\n" + SMUGGLED)
        assert len(rs) == 1, f"the smuggled request was answered: {rs}"
        body = json_error(rs[0], 400, "INVALID_INPUT")
        assert "Content-Length" in body["error"] and "Transfer-Encoding" in body["error"]


def test_duplicate_content_length_refused(server):
    for a, b in ((b"0", b"35"), (b"35", b"35")):
        rs = exchange(server.port, b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: " + a + b"\r\nContent-Length: " + b + b"\r\n\r\n" +
                      SMUGGLED)
        assert len(rs) == 1, rs
        assert "Content-Length" in json_error(rs[0], 400, "INVALID_INPUT")["error"]


def test_unsupported_transfer_encodings_answered_not_hung(server):
    """libmicrohttpd reads a body with any coding but exactly "chunked" until the connection
    closes: these hung until the idle timeout. Each is answered at once, and nothing after it
    is read as a request."""
    for te in (b"chunked ", b"identity, chunked", b"xchunked", b"gzip", b"chunked, chunked"):
        t = time.time()
        rs = exchange(server.port, b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: " + te + b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + SMUGGLED,
                      timeout=5)
        assert len(rs) == 1, (te, rs)
        body = json_error(rs[0], 501, "NOT_IMPLEMENTED")
        assert "Transfer-Encoding" in body["error"], body
        assert time.time() - t < 3, te
    # two Transfer-Encoding lines: libmicrohttpd reads only the first
    rs = exchange(server.port, b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n" +
                  SMUGGLED, timeout=5)
    assert len(rs) == 1 and rs[0][0] == 400, rs
    # Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1: faulty framing)
    rs = exchange(server.port, b"POST /v1/auth/bootstrap HTTP/1.0\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, timeout=5)
    assert len(rs) == 1 and rs[0][0] == 400, rs


def test_header_name_with_space_before_colon_refused(server):
    """"Transfer-Encoding : chunked" is no Transfer-Encoding to libmicrohttpd (the name keeps
    the space) but is one to some proxies: refused (RFC 9112 §5.1)."""
    rs = exchange(server.port, b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, timeout=5)
    assert len(rs) == 1, rs
    json_error(rs[0], 400, "INVALID_INPUT")


def test_host_header_required_once(server):
    rs = exchange(server.port, b"GET /healthz HTTP/1.1\r\n\r\n" + SMUGGLED, timeout=5)
    assert len(rs) == 1, rs
    assert "Host" in json_error(rs[0], 400, "INVALID_INPUT")["error"]
    rs = exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", timeout=5)
    assert len(rs) == 1 and rs[0][0] == 400, rs
    # HTTP/1.0 has no Host requirement
    rs = exchange(server.port, b"GET /healthz HTTP/1.0\r\n\r\n", timeout=5)
    assert [r[0] for r in rs] == [200]


def test_plain_chunked_and_keep_alive_still_work(server):
    """The checks refuse only ambiguous framing: a chunked body and pipelined requests on one
    kept-alive connection are served as before."""
    body = json.dumps({"sub": "chunky"}).encode()
    req = (b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\nX-Auth-Secret: " + SECRET.encode() +
           b"\r\nContent-Type: application/json\r\nTransfer-Encoding: Chunked\r\n\r\n" +
           b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n" +
           b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    rs = exchange(server.port, req)
    assert [r[0] for r in rs] == [201, 200], rs


# ---- finding 2: bodies and memory ----

def zeros_body(nbytes, first=b'{"sub":"x","a":['):
    n = (nbytes - len(first) - 2) // 2
    return first + b",".join([b"0"] * n) + b"]}"


def settled_server(fresh_server):
    """A fresh server that has answered once, and its peak RSS reset to now: (server, peak)."""
    srv = fresh_server()
    httpx.get(srv.url + "/healthz")
    return srv, reset_peak(srv.proc.pid)


def test_bootstrap_body_refused_at_its_content_length(fresh_server):
    srv, base = settled_server(fresh_server)
    pid = srv.proc.pid
    body = zeros_body(16 * MIB)
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\nX-Auth-Secret: " +
                  SECRET.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        try:
            s.sendall(body)
        except OSError:
            pass  # the server answered and closed before the body was sent
        rs = responses(read_all(s))
    body = json_error(rs[0], 413, "PAYLOAD_TOO_LARGE")
    assert str(AUTH_BODY_MAX) in " ".join(body["details"]), body
    growth = mem_kib(pid, "VmHWM") - base
    assert growth < 4 * 1024, f"peak RSS grew {growth} KiB for a body refused at its headers"
    # a legitimate body still gets its token
    assert srv.token("after")


def test_bootstrap_chunked_body_stops_at_the_cap(fresh_server):
    srv, base = settled_server(fresh_server)
    pid = srv.proc.pid
    body = zeros_body(64 * MIB)
    sent = 0
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        s.sendall(b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\nX-Auth-Secret: " +
                  SECRET.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for i in range(0, len(body), 64 * 1024):
                piece = body[i:i + 64 * 1024]
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # closed by the server
        read_all(s)
    # the server read the cap and at most 1 MiB more, then closed the connection (what was
    # sent beyond that sat in the sockets' buffers, a few MiB on loopback)
    assert sent < 12 * MIB, f"the server kept reading: {sent} bytes sent"
    growth = mem_kib(pid, "VmHWM") - base
    assert growth < 4 * 1024, f"peak RSS grew {growth} KiB"
    # just over the cap, the whole body is read and answered with 413
    body = zeros_body(AUTH_BODY_MAX + 100)
    rs = exchange(srv.port, b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\nX-Auth-Secret: " +
                  SECRET.encode() + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                  + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    assert [r[0] for r in rs] == [413], rs


def test_json_parse_memory_bounded(fresh_server):
    """8 MiB of [0,0,...] takes about 20 x its size once parsed: refused with 413 past
    16 x + 2 MiB, and the memory is given back afterwards."""
    srv = fresh_server()
    pid = srv.proc.pid
    with srv.client() as c:
        assert c.get("/v1/sandboxes").status_code == 200
        time.sleep(0.5)
        base_hwm, base_rss = reset_peak(pid), mem_kib(pid, "VmRSS")
        body = zeros_body(8 * MIB, b'{"name":"x","a":[')
        r = c.post("/v1/sandboxes", content=body, headers={"Content-Type": "application/json"})
        err = assert_error(r, 413, "PAYLOAD_TOO_LARGE")
        assert "16 x the body size" in " ".join(err["details"]), err
        assert c.get("/v1/sandboxes").json()["sandboxes"] == [], "the sandbox was created"
        if not sanitized(pid):
            bound = (2 * len(body) + PARSE_FACTOR * len(body) + PARSE_SLACK) // 1024 + 8 * 1024
            growth = mem_kib(pid, "VmHWM") - base_hwm
            assert growth < bound, f"peak RSS grew {growth} KiB, bound {bound} KiB"
            time.sleep(0.3)
            kept = mem_kib(pid, "VmRSS") - base_rss
            assert kept < 16 * 1024, f"{kept} KiB kept after the request"
        # other shapes of the same attack
        for item, n in ((b"{}", 1 << 19), (b'""', 1 << 19), (b"[]", 1 << 19)):
            body = b'{"a":[' + b",".join([item] * n) + b"]}"
            assert_error(c.post("/v1/sandboxes", content=body,
                                headers={"Content-Type": "application/json"}), 413,
                         "PAYLOAD_TOO_LARGE")


def test_legitimate_dense_bodies_parse(api, sandbox):
    """The densest bodies the routes take stay under the parse bound: 1,000 empty files in one
    writeFiles, 100,000 empty files in one ingest-files, 50 tiny batch scripts."""
    r = api.post(f"/v1/sandboxes/{sandbox}/writeFiles",
                 json={"files": {f"/home/user/w/{i}": "" for i in range(1000)}})
    assert r.status_code == 204, r.text
    r = api.post(f"/v1/sandboxes/{sandbox}/ingest-files",
                 content=json.dumps({"basePath": "/home/user/i",
                                     "files": {str(i): "" for i in range(100000)}},
                                    separators=(",", ":")).encode(),
                 headers={"Content-Type": "application/json"}, timeout=300)
    assert r.status_code == 200, r.text
    r = api.post(f"/v1/sandboxes/{sandbox}/exec-sync-batch",
                 json={"scripts": [{"id": str(i), "script": "true"} for i in range(50)],
                       "readOnly": True})
    assert r.status_code == 200, r.text


# ---- finding 6: connections ----

def connect_from(ip, port):
    s = socket.socket()
    s.bind((ip, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_server(s, timeout):
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_per_ip_connection_limit(fresh_server):
    """One address holds at most MAX_CONNECTIONS_PER_IP (64) connections; another address is
    served meanwhile."""
    srv = fresh_server()
    held = []
    try:
        for _ in range(64):
            s = connect_from("127.0.0.2", srv.port)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            held.append(s)
        time.sleep(0.3)
        assert not any(closed_by_server(s, 0.01) for s in held)
        extra = connect_from("127.0.0.2", srv.port)
        held.append(extra)
        assert closed_by_server(extra, 5), "a 65th connection from one address was kept"
        t = time.time()
        assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200
        assert time.time() - t < 2
    finally:
        for s in held:
            s.close()


def test_silent_client_closed_after_request_timeout(fresh_server):
    srv = fresh_server({"REQUEST_TIMEOUT_S": "2"})
    partial_headers = socket.create_connection(("127.0.0.1", srv.port))
    partial_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    partial_body = socket.create_connection(("127.0.0.1", srv.port))
    partial_body.sendall(b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 100\r\n\r\n{")
    idle = socket.create_connection(("127.0.0.1", srv.port))
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.settimeout(5)
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")
    t = time.time()
    for s in (partial_headers, partial_body, idle):
        assert closed_by_server(s, 10), "a silent connection stayed open"
        s.close()
    assert time.time() - t < 6


def test_long_silent_exec_and_stream_outlive_the_request_timeout(fresh_server):
    """REQUEST_TIMEOUT_S bounds how long the server waits for a client's bytes, not how long
    it takes to answer: a 40 s silent exec-sync and a 40 s silent SSE stream (which sends a
    keep-alive every 15 s) both complete with a 3 s request timeout."""
    srv = fresh_server({"REQUEST_TIMEOUT_S": "3"})
    results = {}
    with srv.client(timeout=120) as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        script = {"script": "sleep 40; echo done", "timeoutMs": 90000}

        def sync():
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync", json=dict(script, readOnly=True))
            results["sync"] = (r.status_code, r.json().get("stdout"))

        def stream():
            events = []
            with c.stream("POST", f"/v1/sandboxes/{sid}/exec",
                          json=dict(script, readOnly=True)) as r:
                results["stream-status"] = r.status_code
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        events.append(line[6:].strip())
                    elif line.startswith("data:") and events and events[-1] == "stdout":
                        events[-1] = "stdout:" + json.loads(line[5:])["data"]
            results["stream"] = events

        ts = [threading.Thread(target=f) for f in (sync, stream)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
    assert results.get("sync") == (200, "done\n"), results
    assert results.get("stream-status") == 200, results
    assert "stdout:done\n" in results["stream"] and results["stream"][-1] == "exit", results
