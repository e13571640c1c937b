"""Hostile scripts and clients against the exec routes: what a request may cost the server.

- A batch's status channel (fd 3) has a budget; a script that floods it gets 413 at once and
  the batch keeps nothing. A batch whose scripts write as fast as they can still ends at its
  deadline, and when its client leaves its exec slot is freed within a second.
- Exec output takes at most MAX_EXEC_OUTPUT_BYTES per stream per request in server memory,
  however much JSON escaping grows it; replies that clients do not read hold at most
  REPLY_MEMORY_BYTES, and past it exec-sync and batches get 503 EBUSY.

docs/API.md "Output and memory", SECURITY.md "Input limits".
"""
import json
import os
import socket
import time

import pytest

import conftest
from conftest import assert_error, make_server

MIB = 1 << 20
# The script: fd 3 made blocking, 64 KiB writes without a NUL, forever.
FD3_FLOOD = ("perl -e 'use Fcntl; open($o,\">&=3\"); fcntl($o,F_SETFL,fcntl($o,F_GETFL,0)"
             "&~O_NONBLOCK); $b=\"x\"x65536; syswrite($o,$b) while 1'")
# Records the server must look at one by one ("\0E\0": an end marker without a script).
FD3_RECORDS = ("perl -e 'use Fcntl; open($o,\">&=3\"); fcntl($o,F_SETFL,fcntl($o,F_GETFL,0)"
               "&~O_NONBLOCK); $b=\"\\0E\\0\"x21845; syswrite($o,$b) while 1'")
OUT_FLOOD = "perl -e '$b=\"x\"x65536; syswrite(STDOUT,$b) while 1'"
ERR_FLOOD = "perl -e '$b=\"x\"x65536; syswrite(STDERR,$b) while 1'"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = make_server(str(tmp_path_factory.mktemp("bounds"))).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def cl(srv):
    with srv.client(timeout=120) as c:
        yield c


@pytest.fixture
def sid(cl):
    r = cl.post("/v1/sandboxes", json={})
    assert r.status_code == 201, r.text
    yield r.json()["id"]
    cl.delete(f"/v1/sandboxes/{r.json()['id']}")


def asan_quarantine_mib():
    """None for a plain server; for one built with AddressSanitizer, the freed memory it keeps
    aside (ASAN_OPTIONS quarantine_size_mb, 256 by default)."""
    with open(conftest.BINARY, "rb") as f:
        if b"__asan_init" not in f.read():
            return None
    for opt in os.environ.get("ASAN_OPTIONS", "").split(":"):
        if opt.startswith("quarantine_size_mb="):
            return int(opt.split("=")[1])
    return 256


def within(grown, bound, slack=8):
    """The memory figure against a bound in MiB. An ASan server keeps what it frees in its
    quarantine and grows a buffer by copying it, so it measures up to about twice what it holds
    plus the quarantine."""
    q = asan_quarantine_mib()
    return grown < (bound + slack if q is None else 2 * bound + q + slack)


def status_mib(server, field):
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(field)


def exec_state(server):
    """The exec engine's counters (GET /v1/status): running, queued, replyMemoryBytes."""
    return conftest.status(server)["exec"]


def wait_idle(server, seconds):
    """Seconds until no exec runs or waits; fails after `seconds`."""
    t0 = time.time()
    while time.time() - t0 < seconds:
        st = exec_state(server)
        if st["running"] == 0 and st["queued"] == 0:
            return time.time() - t0
        time.sleep(0.05)
    raise AssertionError(f"an exec still holds its slot {seconds} s later: {exec_state(server)}")


def raw_post(server, token, path, body, rcvbuf=None):
    """Sends a request on a socket of its own and returns the socket, reading nothing."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.port))
    data = json.dumps(body).encode()
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                  ).encode() + data)
    return sock


# ---- the batch's status channel, its deadline, its client ----

@pytest.mark.parametrize("flood", [FD3_FLOOD, FD3_RECORDS], ids=["bytes", "records"])
def test_batch_status_channel_flood_is_stopped(srv, cl, sid, flood):
    """A script flooding fd 3 gets 413 at once (not at its timeoutMs, not never), the batch
    keeps nothing (the earlier script's file is not committed), the server's memory does not
    grow and the exec slot is free when the answer comes."""
    hwm = status_mib(srv, "VmHWM")
    t0 = time.time()
    r = cl.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={
        "scripts": [{"id": "w", "script": "echo kept > /home/user/w.txt"},
                    {"id": "flood", "script": flood}, {"id": "after", "script": "echo after"}],
        "timeoutMs": 30000})
    elapsed = time.time() - t0
    body = assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert "fd 3" in body["error"] and "scripts[1]" in body["error"], body
    assert elapsed < 5, elapsed
    assert exec_state(srv)["running"] == 0
    assert within(status_mib(srv, "VmHWM") - hwm, 8)
    assert cl.get(f"/v1/sandboxes/{sid}/files/home/user/w.txt").status_code == 404
    ok = cl.post(f"/v1/sandboxes/{sid}/exec-sync-batch",
                 json={"scripts": [{"id": "a", "script": "echo ok"}]})
    assert ok.status_code == 200 and ok.json()["results"][0]["stdout"] == "ok\n"


def test_batch_status_channel_small_writes_are_fine(cl, sid):
    """Within the budget (64 KiB plus some per script) a script may write to fd 3."""
    r = cl.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={"scripts": [
        {"id": "a", "script": "head -c 60000 /dev/zero | tr '\\0' x >&3; printf 'S\\0E1\\0' >&3;"
                              " echo a"},
        {"id": "b", "script": "echo b"}]})
    assert r.status_code == 200, r.text
    assert [x["stdout"] for x in r.json()["results"]] == ["a\n", "b\n"]


@pytest.mark.parametrize("flood", [OUT_FLOOD, ERR_FLOOD, OUT_FLOOD + " & " + ERR_FLOOD],
                         ids=["stdout", "stderr", "both"])
def test_batch_flood_ends_at_its_deadline(srv, cl, sid, flood):
    t0 = time.time()
    r = cl.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={
        "scripts": [{"id": "flood", "script": flood}, {"id": "next", "script": "echo next"}],
        "timeoutMs": 3000})
    elapsed = time.time() - t0
    assert r.status_code == 200, r.text
    flooded, nxt = r.json()["results"]
    assert flooded["error"] == "timeout" and flooded["exitCode"] == -1
    assert nxt["error"] == "timeout"
    assert 2.9 < elapsed < 4.5, elapsed
    assert exec_state(srv)["running"] == 0


@pytest.mark.parametrize("route,flood", [
    ("exec-sync-batch", FD3_RECORDS), ("exec-sync-batch", OUT_FLOOD),
    ("exec-sync-batch", OUT_FLOOD + " & " + ERR_FLOOD), ("exec-sync", OUT_FLOOD)],
    ids=["batch-fd3", "batch-stdout", "batch-both", "exec-sync-stdout"])
def test_client_gone_frees_the_slot_within_a_second(srv, sid, route, flood):
    body = ({"scripts": [{"id": "f", "script": flood}], "timeoutMs": 60000}
            if route == "exec-sync-batch" else {"script": flood, "timeoutMs": 60000})
    sock = raw_post(srv, srv.token(), f"/v1/sandboxes/{sid}/{route}", body)
    try:
        deadline = time.time() + 10
        while exec_state(srv)["running"] == 0 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # the script floods for a second
    finally:
        sock.close()
    assert wait_idle(srv, 10) < 1.0


# ---- exec output in server memory ----

def test_batch_output_memory_is_bounded(fresh_server):
    """50 scripts each writing 10 MB of a byte JSON escapes to 6 (\\u0001): the batch keeps
    MAX_EXEC_OUTPUT_BYTES of stdout and as much of stderr in all, and the server's peak memory
    grows by about that, not by the 6-fold escaped reply (the reply is escaped as it is sent)."""
    cap = 4 * MIB
    s = fresh_server({"MAX_EXEC_OUTPUT_BYTES": str(cap)})
    with s.client(timeout=300) as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        hwm = status_mib(s, "VmHWM")
        script = ("head -c 10000000 /dev/zero | tr '\\0' '\\1';"
                  " head -c 10000000 /dev/zero | tr '\\0' '\\2' >&2")
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={
            "scripts": [{"id": str(i), "script": script} for i in range(50)],
            "timeoutMs": 240000})
        assert r.status_code == 200, r.text[:300]
        grown = status_mib(s, "VmHWM") - hwm
        print(f"batch: peak grew {grown:.1f} MiB, reply {len(r.content)} bytes")
        # docs/API.md: a request's output holds at most 2 × MAX_EXEC_OUTPUT_BYTES + ~100 KiB
        assert within(grown, 2 * cap / MIB), f"peak grew {grown:.0f} MiB"
        res = r.json()["results"]
        assert len(res) == 50 and all(x["exitCode"] == 0 for x in res)
        assert sum(len(x["stdout"]) for x in res) == cap
        assert sum(len(x["stderr"]) for x in res) == cap
        assert set("".join(x["stdout"] for x in res)) == {"\x01"}
        assert all(x["stdoutTruncated"] and x["stderrTruncated"] for x in res)
        assert res[0]["stdout"] == "\x01" * cap  # the first script's output, in full
        assert len(r.content) < 6 * 2 * cap + 64 * 1024
        assert exec_state(s)["replyMemoryBytes"]["used"] == 0


def test_exec_sync_output_memory_is_bounded(fresh_server):
    cap = 8 * MIB
    s = fresh_server({"MAX_EXEC_OUTPUT_BYTES": str(cap)})
    with s.client(timeout=300) as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        hwm = status_mib(s, "VmHWM")
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync", json={
            "script": "head -c 20000000 /dev/zero | tr '\\0' '\\1';"
                      " head -c 20000000 /dev/zero | tr '\\0' '\\37' >&2"})
        assert r.status_code == 200
        grown = status_mib(s, "VmHWM") - hwm
        print(f"exec-sync: peak grew {grown:.1f} MiB, reply {len(r.content)} bytes")
        res = r.json()
        assert res["stdout"] == "\x01" * cap and res["stderr"] == "\x1f" * cap
        assert res["stdoutTruncated"] and res["stderrTruncated"]
        assert within(grown, 2 * cap / MIB), f"peak grew {grown:.0f} MiB"


def test_unread_replies_hold_at_most_the_budget(fresh_server):
    """Ten clients send exec-syncs and never read the replies: the server holds at most
    REPLY_MEMORY_BYTES of their output; once that is spent, the next exec-sync and batch get
    503 EBUSY (retryable) without running; when the clients go, the memory comes back."""
    cap, budget = 4 * MIB, 16 * MIB
    s = fresh_server({"MAX_EXEC_OUTPUT_BYTES": str(cap), "REPLY_MEMORY_BYTES": str(budget)})
    token = s.token()
    with s.client(timeout=120) as c:
        sids = [c.post("/v1/sandboxes", json={}).json()["id"] for _ in range(11)]
        rss = status_mib(s, "VmRSS")
        script = ("head -c 6000000 /dev/zero | tr '\\0' '\\1';"
                  " head -c 6000000 /dev/zero | tr '\\0' '\\2' >&2")
        socks, statuses = [], []
        try:
            for sid in sids[:10]:
                sock = raw_post(s, token, f"/v1/sandboxes/{sid}/exec-sync",
                                {"script": script}, rcvbuf=4096)
                socks.append(sock)
                sock.settimeout(60)
                statuses.append(sock.recv(12).decode())  # the status line only
            wait_idle(s, 30)
            time.sleep(0.5)
            grown = status_mib(s, "VmRSS") - rss
            print(f"unread replies: RSS grew {grown:.1f} MiB; {statuses}")
            assert within(grown, budget / MIB, slack=16), f"RSS grew {grown:.0f} MiB"
            assert statuses.count("HTTP/1.1 200") >= 1, statuses
            assert statuses.count("HTTP/1.1 503") >= 1, statuses
            held = exec_state(s)["replyMemoryBytes"]
            assert held == {"used": budget, "limit": budget}, held
            for route, body in (("exec-sync", {"script": "echo x > /home/user/x"}),
                                ("exec-sync-batch",
                                 {"scripts": [{"id": "a", "script": "echo x > /home/user/x"}]})):
                r = c.post(f"/v1/sandboxes/{sids[10]}/{route}", json=body)
                err = assert_error(r, 503, "EBUSY")
                assert err["retryable"] is True and r.headers["retry-after"] == "1"
                assert "REPLY_MEMORY_BYTES=%d" % budget in err["details"], err
            assert c.get(f"/v1/sandboxes/{sids[10]}/files/home/user/x").status_code == 404
        finally:
            for sock in socks:
                sock.close()
        deadline = time.time() + 10
        while exec_state(s)["replyMemoryBytes"]["used"] and time.time() < deadline:
            time.sleep(0.1)
        assert exec_state(s)["replyMemoryBytes"]["used"] == 0
        r = c.post(f"/v1/sandboxes/{sids[10]}/exec-sync", json={"script": script})
        assert r.status_code == 200
        assert r.json()["stdout"] == "\x01" * cap and r.json()["stdoutTruncated"] is True


def test_reply_escapes_like_json_whatever_the_slices(cl, sid):
    """The reply is escaped piece by piece as it is sent: characters that straddle the pieces,
    invalid bytes, control bytes, quotes and backslashes come out as one JSON encoder would
    write them, in exec-sync and in batches."""
    unit = "é€😀\"\\\n\t\x01\x7f".encode() + b"\xff" + b"abc"  # 19 bytes
    data = unit * 5000 + unit[:3]  # ends with the first byte of "€"
    assert cl.put(f"/v1/sandboxes/{sid}/files/home/user/d.bin", content=data).status_code == 204
    # what the server sends: each invalid byte as U+FFFD, the incomplete last character too
    # (the output was not cut at its cap: the program wrote it so)
    want = data.decode("utf-8", "replace")
    assert want.count("\ufffd") == 5001
    r = cl.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "cat d.bin; cat d.bin >&2"})
    assert r.status_code == 200
    assert r.json()["stdout"] == want and r.json()["stderr"] == want
    r = cl.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={"scripts": [
        {"id": "a", "script": "cat d.bin"}, {"id": "b", "script": "cat d.bin >&2"}]})
    a, b = r.json()["results"]
    assert a["stdout"] == want and b["stderr"] == want and a["stderr"] == b["stdout"] == ""
