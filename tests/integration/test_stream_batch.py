"""SSE exec streaming and exec batches (docs/API.md "Exec")."""
import json
import socket
import threading
import time

import httpx
import pytest

from conftest import assert_error


def sse_events(resp):
    """The SDK-style parser: blank-line separated frames, `event:` and `data:` lines."""
    buf = b""
    for chunk in resp.iter_raw():
        buf += chunk
        while b"\n\n" in buf:
            frame, buf = buf.split(b"\n\n", 1)
            event, data = None, []
            for line in frame.split(b"\n"):
                if line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    data.append(line[5:].strip())
                elif line.startswith(b":"):
                    event = event or "comment"
            if event and event != "comment":
                yield event, json.loads(b"\n".join(data)), time.time()


def stream(api, sid, script, **kw):
    return api.stream("POST", f"/v1/sandboxes/{sid}/exec", json={"script": script, **kw},
                      timeout=120)


def test_chunks_arrive_live(api, sandbox):
    with stream(api, sandbox, "echo one; sleep 2; echo two >&2") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))
    kinds = [e[0] for e in events]
    assert kinds[-1] == "exit"
    first = next(e for e in events if e[0] == "stdout")
    assert first[1]["data"] == "one\n" and isinstance(first[1]["t"], int)
    assert events[-1][2] - first[2] > 1.5  # "one" arrived long before the exit frame
    assert any(e[0] == "stderr" and e[1]["data"] == "two\n" for e in events)
    ex = events[-1][1]
    assert ex["exitCode"] == 0 and ex["timedOut"] is False and ex["durationMs"] >= 2000


def test_request_sent_at_the_exit_event_sees_the_write(api, sandbox, server):
    """The exit event goes out before the checkout follows the commit; the stream (and the
    sandbox's lock) ends only after. A request sent the moment the exit event arrives, before
    the stream is read to its end, must see the write."""
    with server.client() as other:
        for i in range(15):
            with stream(api, sandbox, f"echo {i} > s.txt") as r:
                for kind, data, _ in sse_events(r):
                    if kind == "exit":
                        assert data["exitCode"] == 0, data
                        break
                # the stream may still be open: the other connection waits for its lock
                got = other.post(f"/v1/sandboxes/{sandbox}/exec-sync",
                                 json={"script": "cat s.txt", "readOnly": True})
            assert got.status_code == 200 and got.json()["stdout"] == f"{i}\n", got.text


def test_utf8_never_split(api, sandbox):
    # "é" is written one byte at a time with a pause between the bytes
    script = "printf '\\xc3'; sleep 0.3; printf '\\xa9'; sleep 0.3; printf ' done'"
    with stream(api, sandbox, script) as r:
        text = "".join(e[1]["data"] for e in sse_events(r) if e[0] == "stdout")
    assert text == "é done"


def test_ten_mb_streams(api, sandbox, server):
    total = 0
    with stream(api, sandbox, "head -c 10000000 /dev/zero | tr '\\0' a") as r:
        for ev, data, _ in sse_events(r):
            if ev == "stdout":
                total += len(data["data"])
    assert total == 10000000
    with open(f"/proc/{server.proc.pid}/status") as f:
        rss = [int(l.split()[1]) for l in f if l.startswith("VmRSS")][0]
    assert rss < 200 * 1024


def test_timeout_and_error_frames(api, sandbox):
    with stream(api, sandbox, "echo hi; sleep 10", timeoutMs=500) as r:
        events = list(sse_events(r))
    ex = events[-1]
    assert ex[0] == "exit" and ex[1]["exitCode"] == -1 and ex[1]["error"] == "timeout"
    with stream(api, sandbox, "echo x > ro.txt", readOnly=True) as r:
        events = list(sse_events(r))
    assert [e[0] for e in events[-2:]] == ["error", "exit"]
    assert events[-2][1]["code"] == "EREADONLY_VIOLATION" and events[-1][1]["exitCode"] == -1


def test_validation_before_stream(api, sandbox):
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/exec", json={}), 400)
    assert_error(api.post("/v1/sandboxes/00000000-0000-4000-8000-000000000000/exec",
                          json={"script": "true"}), 404)
    # found only once the jail is being set up, still answered before the stream starts
    body = assert_error(api.post(f"/v1/sandboxes/{sandbox}/exec",
                                 json={"script": "true", "cwd": "/home/user/missing"}),
                        400, "INVALID_INPUT")
    assert "/home/user/missing" in body["error"], body


def test_disconnect_kills_and_commits(server, api, sandbox):
    tok = api.headers["authorization"]
    body = json.dumps({"script": "echo early > early.txt; echo go; sleep 60; echo late > l"})
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"POST /v1/sandboxes/{sandbox}/exec HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: {tok}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
    got = b""
    while b"go" not in got:
        got += sock.recv(4096)
    sock.close()
    t0 = time.time()
    # the sandbox lock is free again once the script is gone
    r = api.post(f"/v1/sandboxes/{sandbox}/exec-sync", json={"script": "cat early.txt; ls"})
    assert time.time() - t0 < 3
    assert r.json()["stdout"] == "early\nearly.txt\n"


def batch(api, sid, scripts, **kw):
    return api.post(f"/v1/sandboxes/{sid}/exec-sync-batch",
                    json={"scripts": [{"id": f"s{i}", "script": s}
                                      for i, s in enumerate(scripts)], **kw}, timeout=120)


def test_request_after_a_write_batch_sees_it_at_once(api, sandbox, server):
    """A write batch replies before its checkout follows the commit; the sandbox stays locked
    until that is done, so a request sent on another connection as the reply arrives sees the
    batch's writes."""
    with server.client() as other:
        for i in range(10):
            r = batch(api, sandbox, [f"echo {i} > b.txt", "echo more >> b.txt"])
            assert r.status_code == 200, r.text
            got = other.post(f"/v1/sandboxes/{sandbox}/exec-sync",
                             json={"script": "cat b.txt", "readOnly": True})
            assert got.status_code == 200 and got.json()["stdout"] == f"{i}\nmore\n", got.text


def test_batch_shares_shell_state(api, sandbox):
    r = batch(api, sandbox, ["X=41; f(){ echo fn-$1; }; export E=exp; mkdir -p w && cd w",
                             "echo $((X+1)); f a; bash -c 'echo $E'; pwd",
                             "echo out; echo err >&2; touch made"])
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["id"] for x in res] == ["s0", "s1", "s2"]
    assert res[1]["stdout"] == "42\nfn-a\nexp\n/home/user/w\n"
    assert res[2]["stdout"] == "out\n" and res[2]["stderr"] == "err\n"
    assert all(x["exitCode"] == 0 and "error" not in x for x in res)
    # one commit at the end, cwd stored
    assert api.get(f"/v1/sandboxes/{sandbox}").json()["cwd"] == "/home/user/w"
    assert api.get(f"/v1/sandboxes/{sandbox}/files/home/user/w/made").status_code == 200


def test_batch_exit_ends_only_that_script(api, sandbox):
    r = batch(api, sandbox, ["V=kept; g(){ echo g; }; cd /tmp; echo before; exit 3; echo never",
                             "echo $V; g; pwd", "false"])
    res = r.json()["results"]
    assert res[0]["exitCode"] == 3 and res[0]["stdout"] == "before\n"
    assert res[1]["stdout"] == "kept\ng\n/tmp\n" and res[1]["exitCode"] == 0
    assert res[2]["exitCode"] == 1


def test_batch_timeouts_and_stop_on_error(api, sandbox):
    r = batch(api, sandbox, ["echo a", "sleep 10", "echo c"], perScriptTimeoutMs=500)
    res = r.json()["results"]
    assert res[0]["stdout"] == "a\n" and res[1]["exitCode"] == -1
    assert res[1]["error"] == "timeout" and res[2]["stdout"] == "c\n" and "error" not in res[2]
    r = batch(api, sandbox, ["echo a", "sleep 10", "echo c"], perScriptTimeoutMs=500,
              stopOnError=True)
    res = r.json()["results"]
    assert res[1]["error"] == "timeout" and res[2]["error"] == "skipped"
    r = batch(api, sandbox, ["sleep 0.2", "sleep 10"], timeoutMs=1000)
    assert r.json()["results"][1]["error"] == "timeout"
    r = batch(api, sandbox, ["true", "false", "echo no"], stopOnError=True)
    res = r.json()["results"]
    assert res[1]["exitCode"] == 1 and res[2]["error"] == "skipped" and res[2]["stdout"] == ""


def test_batch_per_script_timeout_goes_on_with_the_next(api, sandbox):
    """The SDK's contract: a script that hits perScriptTimeoutMs gets exitCode -1 and the batch
    continues with the next script."""
    t0 = time.time()
    r = api.post(f"/v1/sandboxes/{sandbox}/exec-sync-batch", timeout=60, json={
        "scripts": [{"id": "slow", "script": "sleep 5"}, {"id": "fast", "script": "echo fast"}],
        "timeoutMs": 10000, "perScriptTimeoutMs": 1000})
    elapsed = time.time() - t0
    assert r.status_code == 200, r.text
    slow, fast = r.json()["results"]
    assert slow["id"] == "slow" and slow["exitCode"] == -1 and slow["error"] == "timeout"
    assert 950 <= slow["durationMs"] < 2500, slow
    assert fast == {"id": "fast", "stdout": "fast\n", "stderr": "", "exitCode": 0,
                    "durationMs": fast["durationMs"], "stdoutTruncated": False,
                    "stderrTruncated": False}
    assert elapsed < 4.5


def test_batch_after_a_timeout_the_state_of_the_last_completed_script(api, sandbox):
    r = batch(api, sandbox, [
        "x=1; f(){ echo f-$x; }; shopt -s expand_aliases; alias hi='echo hi'; mkdir -p /tmp/w;"
        " cd /tmp/w",
        "x=2; f(){ echo changed; }; cd /; export Y=leaked; echo out-before; echo err-before >&2;"
        " sleep 10",
        "echo $x $PWD \"${Y-unset}\"; f; hi",
        "cd /home/user; x=3; exit 4",
        "cd /; x=4; sleep 10",
        "echo $x $PWD"], perScriptTimeoutMs=1000)
    res = r.json()["results"]
    assert res[1]["exitCode"] == -1 and res[1]["error"] == "timeout"
    # what the killed script wrote before the kill is its own
    assert res[1]["stdout"] == "out-before\n" and res[1]["stderr"] == "err-before\n"
    assert res[2]["stdout"] == "1 /tmp/w unset\nf-1\nhi\n" and res[2]["exitCode"] == 0
    assert res[3]["exitCode"] == 4
    assert res[4]["error"] == "timeout"
    assert res[5]["stdout"] == "3 /home/user\n"
    # the batch's cwd is the last completed script's
    assert api.get(f"/v1/sandboxes/{sandbox}").json()["cwd"] == "/home/user"


def test_batch_timed_out_script_leaves_nothing_running(api, sandbox):
    r = batch(api, sandbox, [
        "sleep 1000 & (sleep 1001 &) ; setsid sleep 1002 & nohup sleep 1003 >/dev/null 2>&1 &"
        " setsid bash -c 'while :; do echo t >> /tmp/ticks; sleep 0.05; done' >/dev/null 2>&1 &"
        " sleep 0.3; sleep 10",
        "a=$(wc -l < /tmp/ticks); sleep 0.5; b=$(wc -l < /tmp/ticks); [ $a -gt 0 ] && echo $((b - a));"
        " cat /proc/[0-9]*/comm"],
        perScriptTimeoutMs=1500)
    res = r.json()["results"]
    assert res[0]["error"] == "timeout", res
    out = res[1]["stdout"].split("\n")
    assert out[0] == "0", res[1]  # the daemon stopped ticking
    # left: the init, the batch shell and the subshell running this script (the glob is
    # expanded before `cat` starts)
    assert "sleep" not in out and len(out[1:-1]) == 3, res[1]


def test_batch_total_budget_still_ends_the_batch(api, sandbox):
    t0 = time.time()
    r = batch(api, sandbox, ["sleep 10", "sleep 10", "echo never"], timeoutMs=1500,
              perScriptTimeoutMs=1000)
    res = r.json()["results"]
    assert time.time() - t0 < 4
    assert res[0]["error"] == "timeout" and 950 <= res[0]["durationMs"] < 1400, res[0]
    assert res[1]["error"] == "timeout" and res[1]["exitCode"] == -1
    assert res[1]["durationMs"] < 1000, res[1]
    assert res[2]["error"] == "timeout" and res[2]["stdout"] == ""


def test_batch_script_that_signals_its_shell(api, sandbox):
    r = batch(api, sandbox, ["x=kept; cd /tmp", "x=lost; kill -USR1 $$; sleep 5",
                             "echo $x $PWD"], perScriptTimeoutMs=3000)
    res = r.json()["results"]
    assert res[1]["exitCode"] == 137 and "error" not in res[1] and res[1]["durationMs"] < 2000
    assert res[2]["stdout"] == "kept /tmp\n" and res[2]["exitCode"] == 0
    # without a per-script timeout the signal is not trapped: it ends the shell and the batch
    r = batch(api, sandbox, ["kill -USR1 $$; sleep 5", "echo never"])
    res = r.json()["results"]
    assert res[1]["error"] == "aborted" and res[1]["stdout"] == ""


def test_batch_timed_out_script_commits_its_files(api, sandbox):
    r = batch(api, sandbox, ["echo early > early.txt; sleep 10; echo late > late.txt",
                             "cat early.txt; ls"], perScriptTimeoutMs=700)
    res = r.json()["results"]
    assert res[0]["error"] == "timeout"
    assert res[1]["stdout"] == "early\nearly.txt\n"
    got = api.get(f"/v1/sandboxes/{sandbox}/files/home/user/early.txt")
    assert got.status_code == 200 and got.content == b"early\n"
    assert api.get(f"/v1/sandboxes/{sandbox}/files/home/user/late.txt").status_code == 404


def test_batch_garbage_on_fd3(api, sandbox):
    """fd 3 carries the batch markers and is the script's too: bytes without a NUL (within the
    channel's budget) do not hide the next marker."""
    r = batch(api, sandbox, ["head -c 60000 /dev/zero | tr '\\0' x >&3; echo done",
                             "printf junk >&3; sleep 10", "echo next"],
              perScriptTimeoutMs=3000, timeoutMs=60000)
    res = r.json()["results"]
    assert res[0]["stdout"] == "done\n" and res[0]["exitCode"] == 0, res[0]
    assert res[1]["error"] == "timeout"
    assert res[2]["stdout"] == "next\n"


def test_batch_read_only_parallel(fresh_server):
    """Four read-only scripts run at once: BATCH_WORKERS=4, and the owner may hold four exec
    slots (EXEC_OWNER_CONCURRENCY; its default, half of EXEC_CONCURRENCY, depends on the CPUs)."""
    srv = fresh_server({"BATCH_WORKERS": "4", "EXEC_CONCURRENCY": "8",
                        "EXEC_OWNER_CONCURRENCY": "4"})
    with srv.client() as api:
        sandbox = api.post("/v1/sandboxes", json={}).json()["id"]
        t0 = time.time()
        r = batch(api, sandbox, ["sleep 1; echo 1", "sleep 1; echo 2", "sleep 1; echo 3",
                                 "sleep 1; echo 4"], readOnly=True)
        elapsed = time.time() - t0
        res = r.json()["results"]
        assert [x["stdout"] for x in res] == ["1\n", "2\n", "3\n", "4\n"]
        assert elapsed < 2.5
        r = batch(api, sandbox, ["true", "echo x > bad.txt"], readOnly=True)
        assert_error(r, 422, "EREADONLY_VIOLATION")
        assert_error(api.get(f"/v1/sandboxes/{sandbox}/files/home/user/bad.txt"), 404)


def test_batch_validation(api, sandbox):
    url = f"/v1/sandboxes/{sandbox}/exec-sync-batch"
    assert_error(api.post(url, json={"scripts": []}), 400)
    assert_error(api.post(url, json={"scripts": [{"id": "a", "script": "true"}] * 51}), 400)
    assert_error(api.post(url, json={"scripts": [{"id": 1, "script": "true"}]}), 400)
    assert_error(api.post(url, json={}), 400)
    r = api.post(url, json={"scripts": [{"id": "d", "script": "echo 1"},
                                        {"id": "d", "script": "echo 2"}]})
    assert [x["stdout"] for x in r.json()["results"]] == ["1\n", "2\n"]
