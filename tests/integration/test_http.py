"""HTTP conventions (docs/API.md "Errors", §7): health, unknown routes, methods, bodies, limits."""
import socket
import time

import httpx

from conftest import ADMIN_SECRET, SECRET, assert_error, engine, status


def test_healthz_and_readyz(server):
    r = httpx.get(server.url + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    # readiness for anyone: each check "ok" or why not, and no counter
    r = httpx.get(server.url + "/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pyExec"]["state"] in ("starting", "ready"), body
    del body["pyExec"]
    assert body == {"status": "ok", "checks": {"store": "ok", "exec": "ok"}}


def test_status_has_the_counters_behind_the_admin_secret(server, api, sandbox):
    assert api.post(f"/v1/sandboxes/{sandbox}/exec-sync", json={"script": "true"}).status_code \
        == 200
    for headers in ({}, {"X-Admin-Secret": "wrong"}, {"X-Admin-Secret": SECRET},
                    {"Authorization": api.headers["Authorization"]}):
        assert_error(httpx.get(server.url + "/v1/status", headers=headers), 403, "FORBIDDEN")
    st = status(server)
    assert st["status"] == "ok" and st["checks"] == {"store": "ok", "exec": "ok"}
    ex = st["exec"]
    assert ex["ok"] is True
    for k in ("running", "queued", "idleUppers", "networkNamespaces"):
        assert isinstance(ex[k], int) and ex[k] >= 0, (k, ex)
    assert ex["warmSandboxes"] == 64 and ex["faults"]["count"] == 0
    assert set(ex["limits"]) >= {"memory", "pids", "cpu", "cgroup"}
    assert ex["shell"].startswith("/usr/bin/bash")
    # SQLite's memory (its caches and schema): a real, positive byte count; PostgreSQL's is the
    # database server's, not this process's
    if engine() == "sqlite":
        assert isinstance(st["memory"]["storeBytes"], int) and st["memory"]["storeBytes"] > 100000
    else:
        assert st["memory"]["storeBytes"] == -1
    assert st["auth"] == {"tokenDefaultExpires": "30d", "tokenMaxExpires": "1y",
                          "tokensNotBefore": None, "previousSecret": False,
                          "previousSecretUses": 0}
    # HEAD like GET; other methods are refused
    assert httpx.head(server.url + "/v1/status",
                      headers={"X-Admin-Secret": ADMIN_SECRET}).status_code == 200
    assert_error(httpx.post(server.url + "/v1/status", headers={"X-Admin-Secret": ADMIN_SECRET}),
                 405)


def test_status_without_admin_secret_configured(fresh_server):
    s = fresh_server({"ADMIN_SECRET": ""})
    assert_error(httpx.get(s.url + "/v1/status", headers={"X-Admin-Secret": "x"}), 500,
                 "ADMIN_NOT_CONFIGURED")
    assert httpx.get(s.url + "/readyz").status_code == 200


def test_unknown_route_404_json(api):
    assert_error(api.get("/v1/nope"), 404, "NOT_FOUND")
    assert_error(api.get("/nope"), 404)


def test_wrong_method_405(api):
    r = api.put("/v1/sandboxes")
    assert_error(r, 405)
    assert "GET" in r.headers["allow"] and "POST" in r.headers["allow"]
    assert_error(api.post("/healthz"), 405)


def test_malformed_and_wrongly_typed_json(api):
    assert_error(api.post("/v1/sandboxes", content=b"{bad"), 400, "INVALID_INPUT")
    assert_error(api.post("/v1/sandboxes", content=b"[1,2]"), 400, "INVALID_INPUT")
    assert_error(api.post("/v1/sandboxes", json={"name": 5}), 400, "INVALID_INPUT")
    assert_error(api.post("/v1/sandboxes", json={"python": "yes"}), 400, "INVALID_INPUT")
    assert_error(api.post("/v1/sandboxes", json={"env": {"1BAD": "x"}}), 400, "INVALID_INPUT")
    assert_error(api.post("/v1/sandboxes", json={"env": {"A": 1}}), 400, "INVALID_INPUT")
    assert_error(api.post("/v1/sandboxes", json={"name": "x" * 256}), 400, "INVALID_INPUT")


def test_deeply_nested_json(api):
    deep = b"[" * 100000 + b"]" * 100000
    assert_error(api.post("/v1/sandboxes", content=b'{"name":' + deep + b"}"), 400,
                 "INVALID_INPUT")


def test_oversized_json_body_rejected_before_reading(fresh_server):
    s = fresh_server({"MAX_REQUEST_BODY_BYTES": "1024"})
    with s.client() as c:
        r = c.post("/v1/sandboxes", content=b'{"name":"' + b"x" * 5000 + b'"}',
                   headers={"Content-Type": "application/json"})
        assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    # a client announcing a huge body gets 413 at once, without sending it
    tok = s.token()
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                 tok.encode() + b"\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 10000000000\r\n\r\n")
    sock.settimeout(5)
    data = sock.recv(4096)
    sock.close()
    assert b" 413 " in data.split(b"\r\n")[0]


def test_slow_body_then_disconnect_writes_nothing(server, api, sandbox):
    tok = api.headers["authorization"]
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"PUT /v1/sandboxes/{sandbox}/files/home/user/partial.bin HTTP/1.1\r\n"
                 f"Host: x\r\nAuthorization: {tok}\r\nContent-Length: 1000000\r\n\r\n".encode())
    for _ in range(5):
        sock.sendall(b"x" * 1000)
        time.sleep(0.05)
    sock.close()
    time.sleep(0.3)
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/files/home/user/partial.bin"), 404, "ENOENT")
    assert api.get("/healthz").status_code == 200


def test_request_log_lines(fresh_server):
    s = fresh_server({"SQLFS_QUIET": ""})
    with s.client() as c:
        tok = c.headers["authorization"].split()[1]
        sid = c.post("/v1/sandboxes").json()["id"]
        c.put(f"/v1/sandboxes/{sid}/files/x?token=qsecretvalue", content=b"secret-body")
    s.stop()
    import json as _json
    lines = [_json.loads(l) for l in open(s.log_path) if l.startswith("{")]
    reqs = [l for l in lines if l.get("msg") == "request"]
    put = [l for l in reqs if l["method"] == "PUT"]
    assert put and put[0]["status"] == 204 and isinstance(put[0]["durationMs"], (int, float))
    assert put[0]["path"] == f"/v1/sandboxes/{sid}/files/x"  # no query string
    raw = open(s.log_path).read()
    for secret in (tok, "secret-body", "test-auth-secret", "qsecretvalue"):
        assert secret not in raw


def test_readyz_degraded_without_runtime(tmp_path):
    """A missing rootfs is reported at start and by /readyz; files still work, exec is 503."""
    import os
    import subprocess
    from conftest import BINARY, free_port
    port = free_port()
    env = dict(os.environ, AUTH_SECRET=SECRET, ADMIN_SECRET=ADMIN_SECRET)
    p = subprocess.Popen([BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--data",
                          str(tmp_path / "d"), "--rootfs", str(tmp_path / "missing")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(url + "/healthz")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        r = httpx.get(url + "/readyz")
        assert r.status_code == 503 and r.json()["status"] == "degraded"
        # the reason, in words for anyone: no host path
        assert "rootfs" in r.json()["checks"]["exec"], r.text
        assert str(tmp_path) not in r.text
        st = httpx.get(url + "/v1/status", headers={"X-Admin-Secret": ADMIN_SECRET}).json()
        assert st["exec"]["ok"] is False and "rootfs" in st["exec"]["error"], st
        tok = httpx.post(url + "/v1/auth/bootstrap", json={"sub": "a"},
                         headers={"X-Auth-Secret": SECRET}).json()["token"]
        h = {"Authorization": "Bearer " + tok}
        sid = httpx.post(url + "/v1/sandboxes", headers=h).json()["id"]
        assert httpx.put(f"{url}/v1/sandboxes/{sid}/files/x", content=b"1",
                         headers=h).status_code == 204
        r = httpx.post(f"{url}/v1/sandboxes/{sid}/exec-sync", json={"script": "true"},
                       headers=h)
        assert_error(r, 503, "EXEC_UNAVAILABLE")
    finally:
        p.terminate()
        _, err = p.communicate(timeout=10)
    assert b"sandbox runtime check failed" in err


def test_server_raises_a_low_open_file_limit(fresh_server):
    """Started from a shell whose soft limit on open files is low (1024 is common; 256 here),
    the server raises it to the hard limit and serves more connections than the old limit
    allowed, all at once."""
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 8192))

    # 400 connections from one address: lift the per-address limit
    srv = fresh_server({"MAX_CONNECTIONS_PER_IP": "0"}, preexec_fn=low_limit)
    with open(f"/proc/{srv.proc.pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    assert line.split()[3:5] == ["8192", "8192"], line
    socks = []
    try:
        for _ in range(400):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in socks:
            assert s.recv(64).startswith(b"HTTP/1.1 200"), "a connection was not served"
    finally:
        for s in socks:
            s.close()


def test_jail_limits_fit_under_a_low_hard_limit(fresh_server):
    """A hard open-file limit below the jail's own (4096) caps the jail's instead of making
    every exec fail: a jail cannot raise a hard limit."""
    import resource

    def low_hard_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 2048))

    srv = fresh_server(preexec_fn=low_hard_limit)
    with srv.client("lowlimit") as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "ulimit -n; ulimit -Hn"})
        assert r.status_code == 200, r.text
        assert r.json()["stdout"] == "2048\n2048\n"
