"""The exec journal (GET execs, GET execs/{execId}) and Idempotency-Key replays through the API:
every exec kind names its execId in its answer, its header and its commit; the journal pages
newest first, keeps the start of each output, is pruned like history; a request retried with the
same Idempotency-Key gets the first answer without running again. Real server, real bash in the
jail; runs on both engines."""
import json
import signal
import threading
import time

import httpx
import pytest

from conftest import assert_error, engine


def exec_sync(api, sid, script, **kw):
    return api.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": script, **kw})


def execs(api, sid, query=""):
    r = api.get(f"/v1/sandboxes/{sid}/execs{query}")
    assert r.status_code == 200, r.text
    return r.json()


def commit_exec_ids(api, sid):
    r = api.get(f"/v1/sandboxes/{sid}/commits")
    assert r.status_code == 200, r.text
    return [c["execId"] for c in r.json()["commits"]]


def sse_events(resp):
    events, event = [], None
    for line in resp.iter_lines():
        line = line.rstrip("\r\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            events.append((event, json.loads(line[6:])))
    return events


# ---- the exec journal ----


def test_sync_exec_id_in_result_header_commit_and_journal(api, sandbox):
    r = exec_sync(api, sandbox, "echo hi; echo oops >&2; touch f")
    assert r.status_code == 200, r.text
    body = r.json()
    xid = body["execId"]
    assert len(xid) == 32 and r.headers["x-exec-id"] == xid
    assert commit_exec_ids(api, sandbox)[0] == xid
    page = execs(api, sandbox)
    assert page["next"] is None
    rec = page["execs"][0]
    assert rec["execId"] == xid and rec["kind"] == "sync"
    assert rec["script"] == "echo hi; echo oops >&2; touch f"
    assert rec["exitCode"] == 0 and rec["timedOut"] is False
    assert rec["stdoutBytes"] == 3 and rec["stderrBytes"] == 5
    v = api.get(f"/v1/sandboxes/{sandbox}").json()["version"]
    assert rec["version"] == v
    assert rec["startedAt"].endswith("Z") and rec["durationMs"] >= 0
    assert "stdout" not in rec
    one = api.get(f"/v1/sandboxes/{sandbox}/execs/{xid}")
    assert one.status_code == 200, one.text
    one = one.json()
    assert one["stdout"] == "hi\n" and one["stderr"] == "oops\n"
    assert one["stdoutEncoding"] == "utf-8"
    assert one["stdoutTruncated"] is False and one["stderrTruncated"] is False
    for k in rec:
        assert one[k] == rec[k]


def test_exec_without_changes_has_no_version(api, sandbox):
    xid = exec_sync(api, sandbox, "true").json()["execId"]
    rec = api.get(f"/v1/sandboxes/{sandbox}/execs/{xid}").json()
    assert rec["version"] is None and rec["exitCode"] == 0
    ro = exec_sync(api, sandbox, "exit 3", readOnly=True).json()
    rec = api.get(f"/v1/sandboxes/{sandbox}/execs/{ro['execId']}").json()
    assert rec["version"] is None and rec["exitCode"] == 3


def test_stream_exec_id_in_first_and_exit_events(api, sandbox):
    with api.stream("POST", f"/v1/sandboxes/{sandbox}/exec",
                    json={"script": "echo streamed; touch s"}) as r:
        assert r.status_code == 200
        xid = r.headers["x-exec-id"]
        events = sse_events(r)
    assert events[0] == ("start", {"t": events[0][1]["t"], "execId": xid})
    assert events[-1][0] == "exit" and events[-1][1]["execId"] == xid
    assert commit_exec_ids(api, sandbox)[0] == xid
    rec = api.get(f"/v1/sandboxes/{sandbox}/execs/{xid}").json()
    assert rec["kind"] == "stream" and rec["stdout"] == "streamed\n"
    assert rec["stdoutBytes"] == 9


def test_batch_has_one_exec_id(api, sandbox):
    r = api.post(f"/v1/sandboxes/{sandbox}/exec-sync-batch",
                 json={"scripts": [{"id": "a", "script": "echo one\necho more"},
                                   {"id": "b", "script": "echo two; touch b"}]})
    assert r.status_code == 200, r.text
    xid = r.json()["execId"]
    assert r.headers["x-exec-id"] == xid and len(r.json()["results"]) == 2
    assert commit_exec_ids(api, sandbox)[0] == xid
    rec = api.get(f"/v1/sandboxes/{sandbox}/execs/{xid}").json()
    assert rec["kind"] == "batch" and rec["script"] == "echo one\necho two; touch b"
    assert rec["stdout"] == "one\nmore\ntwo\n" and rec["exitCode"] == 0
    ro = api.post(f"/v1/sandboxes/{sandbox}/exec-sync-batch",
                  json={"readOnly": True, "scripts": [{"id": "a", "script": "exit 4"}]})
    assert ro.status_code == 200, ro.text
    rec = api.get(f"/v1/sandboxes/{sandbox}/execs/{ro.json()['execId']}").json()
    assert rec["kind"] == "batch" and rec["exitCode"] == 4 and rec["version"] is None


def test_list_newest_first_with_paging(api, sandbox):
    ids = [exec_sync(api, sandbox, f"echo {i}").json()["execId"] for i in range(5)]
    page = execs(api, sandbox)
    assert [e["execId"] for e in page["execs"]] == ids[::-1]
    first = execs(api, sandbox, "?limit=2")
    assert [e["execId"] for e in first["execs"]] == ids[:2:-1]
    assert first["next"] == ids[3]
    second = execs(api, sandbox, f"?limit=2&before={first['next']}")
    assert [e["execId"] for e in second["execs"]] == [ids[2], ids[1]]
    third = execs(api, sandbox, f"?limit=2&before={second['next']}")
    assert [e["execId"] for e in third["execs"]] == [ids[0]] and third["next"] is None
    for q in ("?limit=0", "?limit=1001", "?limit=x"):
        assert_error(api.get(f"/v1/sandboxes/{sandbox}/execs{q}"), 400, "INVALID_INPUT")
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/execs?before=nope"), 404, "EXEC_NOT_FOUND")


def test_output_kept_to_the_cap_and_binary_as_base64(fresh_server):
    srv = fresh_server({"EXEC_JOURNAL_OUTPUT_BYTES": "10"})
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        r = exec_sync(c, sid, "printf 'abcdefghijklmnop'; printf 'héllo wörld' >&2")
        assert r.status_code == 200, r.text
        assert r.json()["stdout"] == "abcdefghijklmnop"
        rec = c.get(f"/v1/sandboxes/{sid}/execs/{r.json()['execId']}").json()
        assert rec["stdout"] == "abcdefghij" and rec["stdoutTruncated"] is True
        assert rec["stdoutBytes"] == 16
        # a cut inside "ö" (bytes 9..10) drops the incomplete character
        assert rec["stderr"] == "héllo wö"
        assert rec["stderrTruncated"] is True and rec["stderrEncoding"] == "utf-8"
        r = exec_sync(c, sid, "printf '\\xff\\xfe\\x00a'")
        rec = c.get(f"/v1/sandboxes/{sid}/execs/{r.json()['execId']}").json()
        assert rec["stdoutEncoding"] == "base64" and rec["stdout"] == "//4AYQ=="
        assert rec["stdoutTruncated"] is False


def test_journal_pruned_like_history(fresh_server):
    srv = fresh_server({"HISTORY_MAX_COMMITS": "3"})
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        ids = [exec_sync(c, sid, f"echo {i}").json()["execId"] for i in range(5)]
        page = execs(c, sid)
        assert [e["execId"] for e in page["execs"]] == ids[:1:-1]
        assert_error(c.get(f"/v1/sandboxes/{sid}/execs/{ids[0]}"), 404, "EXEC_NOT_FOUND")


def test_journal_404s_and_owner_scope(server, api, sandbox):
    xid = exec_sync(api, sandbox, "true").json()["execId"]
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/execs/0123"), 404, "EXEC_NOT_FOUND")
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/execs/" + "a" * 100), 404, "EXEC_NOT_FOUND")
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(api.get(f"/v1/sandboxes/{missing}/execs"), 404, "SANDBOX_NOT_FOUND")
    assert_error(api.get(f"/v1/sandboxes/{missing}/execs/{xid}"), 404, "SANDBOX_NOT_FOUND")
    with server.client(sub="someone-else") as other:
        assert_error(other.get(f"/v1/sandboxes/{sandbox}/execs"), 404, "SANDBOX_NOT_FOUND")
        assert_error(other.get(f"/v1/sandboxes/{sandbox}/execs/{xid}"), 404,
                     "SANDBOX_NOT_FOUND")


def test_journal_deleted_with_the_sandbox(api):
    sid = api.post("/v1/sandboxes", json={}).json()["id"]
    exec_sync(api, sid, "true")
    assert api.delete(f"/v1/sandboxes/{sid}").status_code == 204
    assert_error(api.get(f"/v1/sandboxes/{sid}/execs"), 404, "SANDBOX_NOT_FOUND")


# ---- Idempotency-Key ----


def idem(key):
    return {"Idempotency-Key": key}


def file_text(api, sid, path):
    r = api.get(f"/v1/sandboxes/{sid}/files{path}")
    assert r.status_code == 200, r.text
    return r.text


def version_of(api, sid):
    return api.get(f"/v1/sandboxes/{sid}").json()["version"]


def test_exec_replay_runs_once(api, sandbox):
    body = {"script": "echo line >> log.txt; wc -l < log.txt"}
    first = api.post(f"/v1/sandboxes/{sandbox}/exec-sync", json=body, headers=idem("k-exec"))
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = api.post(f"/v1/sandboxes/{sandbox}/exec-sync", json=body, headers=idem("k-exec"))
    assert again.status_code == 200, again.text
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == "application/json"
    assert file_text(api, sandbox, "/home/user/log.txt") == "line\n"
    assert len(execs(api, sandbox)["execs"]) == 1
    # another key runs again
    other = api.post(f"/v1/sandboxes/{sandbox}/exec-sync", json=body, headers=idem("k-exec2"))
    assert other.json()["stdout"] == "2\n"


def test_exec_timeout_and_client_errors_replay(api, sandbox):
    r = api.post(f"/v1/sandboxes/{sandbox}/exec-sync", json={"script": "sleep 5", "timeoutMs": 200},
                 headers=idem("k-408"))
    assert r.status_code == 408
    again = api.post(f"/v1/sandboxes/{sandbox}/exec-sync",
                     json={"script": "sleep 5", "timeoutMs": 200}, headers=idem("k-408"))
    assert again.status_code == 408 and again.content == r.content
    bad = api.post(f"/v1/sandboxes/{sandbox}/exec-sync", json={"nope": 1}, headers=idem("k-400"))
    assert_error(bad, 400, "INVALID_INPUT")
    missing = api.post(f"/v1/sandboxes/{sandbox}/exec-sync", json={"script": "true", "cwd": "/no"},
                       headers=idem("k-cwd"))
    assert missing.status_code == 400
    again = api.post(f"/v1/sandboxes/{sandbox}/exec-sync",
                     json={"script": "true", "cwd": "/no"}, headers=idem("k-cwd"))
    assert again.status_code == 400 and again.content == missing.content
    assert again.headers["idempotent-replayed"] == "true"


def test_mismatch_is_422(api, sandbox):
    url = f"/v1/sandboxes/{sandbox}/exec-sync"
    assert api.post(url, json={"script": "true"}, headers=idem("k-mm")).status_code == 200
    assert_error(api.post(url, json={"script": "false"}, headers=idem("k-mm")), 422,
                 "IDEMPOTENCY_MISMATCH")
    assert_error(api.put(f"/v1/sandboxes/{sandbox}/files/home/user/x", content=b"x",
                         headers=idem("k-mm")), 422, "IDEMPOTENCY_MISMATCH")


def test_in_progress_is_409(api, sandbox):
    url = f"/v1/sandboxes/{sandbox}/exec-sync"
    body = {"script": "sleep 1.5; echo done >> slow.txt"}
    out = {}

    def first():
        out["r"] = api.post(url, json=body, headers=idem("k-slow"))

    t = threading.Thread(target=first)
    t.start()
    time.sleep(0.5)
    busy = api.post(url, json=body, headers=idem("k-slow"))
    b = assert_error(busy, 409, "IDEMPOTENCY_IN_PROGRESS")
    assert b["retryable"] is True
    t.join()
    assert out["r"].status_code == 200
    again = api.post(url, json=body, headers=idem("k-slow"))
    assert again.content == out["r"].content
    assert file_text(api, sandbox, "/home/user/slow.txt") == "done\n"


def test_put_replay_commits_once(api, sandbox):
    url = f"/v1/sandboxes/{sandbox}/files/home/user/p.txt"
    r = api.put(url, content=b"hello", headers=idem("k-put"))
    assert r.status_code == 204, r.text
    v = version_of(api, sandbox)
    again = api.put(url, content=b"hello", headers=idem("k-put"))
    assert again.status_code == 204 and again.headers["idempotent-replayed"] == "true"
    assert version_of(api, sandbox) == v
    assert_error(api.put(url, content=b"other", headers=idem("k-put")), 422,
                 "IDEMPOTENCY_MISMATCH")


def test_write_files_and_ingest_replay(api, sandbox):
    url = f"/v1/sandboxes/{sandbox}/writeFiles"
    body = {"files": {"/home/user/w.txt": "w"}}
    r = api.post(url, json=body, headers=idem("k-wf"))
    assert r.status_code in (200, 201, 204), r.text
    v = version_of(api, sandbox)
    again = api.post(url, json=body, headers=idem("k-wf"))
    assert again.status_code == r.status_code and again.content == r.content
    assert again.headers["idempotent-replayed"] == "true" and version_of(api, sandbox) == v
    files = {"files": {"a.txt": "YQ=="}, "basePath": "/home/user/ing"}
    r = api.post(f"/v1/sandboxes/{sandbox}/ingest-files", json=files, headers=idem("k-if"))
    assert r.status_code == 200, r.text
    v = version_of(api, sandbox)
    again = api.post(f"/v1/sandboxes/{sandbox}/ingest-files", json=files, headers=idem("k-if"))
    assert again.content == r.content and version_of(api, sandbox) == v
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("t.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    tar = buf.getvalue()
    iurl = f"/v1/sandboxes/{sandbox}/ingest?basePath=/home/user/tar"
    hdr = {"Content-Type": "application/x-tar", **idem("k-tar")}
    r = api.post(iurl, content=tar, headers=hdr)
    assert r.status_code == 200, r.text
    v = version_of(api, sandbox)
    again = api.post(iurl, content=tar, headers=hdr)
    assert again.content == r.content and again.headers["idempotent-replayed"] == "true"
    assert version_of(api, sandbox) == v
    # the query is part of the request
    assert_error(api.post(f"/v1/sandboxes/{sandbox}/ingest?basePath=/home/user/tar2",
                          content=tar, headers=hdr), 422, "IDEMPOTENCY_MISMATCH")


def test_batch_replay(api, sandbox):
    body = {"scripts": [{"id": "a", "script": "echo b >> b.txt"}]}
    url = f"/v1/sandboxes/{sandbox}/exec-sync-batch"
    r = api.post(url, json=body, headers=idem("k-batch"))
    assert r.status_code == 200, r.text
    again = api.post(url, json=body, headers=idem("k-batch"))
    assert again.content == r.content and again.headers["idempotent-replayed"] == "true"
    assert file_text(api, sandbox, "/home/user/b.txt") == "b\n"


def test_bad_keys_are_400(api, sandbox):
    url = f"/v1/sandboxes/{sandbox}/exec-sync"
    for key in ("", "a" * 256, "has space", "tab\there", "é"):
        try:
            r = api.post(url, json={"script": "true"}, headers={"Idempotency-Key": key})
        except (UnicodeEncodeError, httpx.LocalProtocolError):
            continue  # the client refuses to send it at all
        assert_error(r, 400, "INVALID_INPUT")
    assert api.post(url, json={"script": "true"},
                    headers={"Idempotency-Key": "a" * 255}).status_code == 200


def test_keys_are_per_sandbox_and_owner(server, api, sandbox):
    other_sid = api.post("/v1/sandboxes", json={}).json()["id"]
    body = {"script": "echo x >> k.txt"}
    for sid in (sandbox, other_sid):
        r = api.post(f"/v1/sandboxes/{sid}/exec-sync", json=body, headers=idem("k-shared"))
        assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    with server.client(sub="another-owner") as other:
        theirs = other.post("/v1/sandboxes", json={}).json()["id"]
        r = other.post(f"/v1/sandboxes/{theirs}/exec-sync", json=body, headers=idem("k-shared"))
        assert r.status_code == 200 and "idempotent-replayed" not in r.headers
        # someone else's sandbox is missing, key or not
        assert_error(other.post(f"/v1/sandboxes/{sandbox}/exec-sync", json=body,
                                headers=idem("k-shared")), 404, "SANDBOX_NOT_FOUND")
    api.delete(f"/v1/sandboxes/{other_sid}")


def test_too_large_answer_is_applied_but_not_kept(fresh_server):
    srv = fresh_server({"IDEMPOTENCY_MAX_BODY_BYTES": "200"})
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        url = f"/v1/sandboxes/{sid}/exec-sync"
        body = {"script": "echo run >> big.txt; head -c 1000 /dev/zero | tr '\\0' x"}
        r = c.post(url, json=body, headers=idem("k-big"))
        assert r.status_code == 200, r.text
        xid = r.json()["execId"]
        again = c.post(url, json=body, headers=idem("k-big"))
        b = assert_error(again, 409, "IDEMPOTENCY_ANSWER_UNAVAILABLE")
        assert "was applied" in b["error"] and xid in b["error"]
        assert b["retryable"] is False and "IDEMPOTENCY_MAX_BODY_BYTES=200" in b["details"]
        assert file_text(c, sid, "/home/user/big.txt") == "run\n"
        # a small answer on the same server is kept
        small = c.post(url, json={"script": "true"}, headers=idem("k-small"))
        assert c.post(url, json={"script": "true"}, headers=idem("k-small")).content == \
            small.content


@pytest.mark.skipif(engine() != "sqlite",
                    reason="SQLite only: on PostgreSQL another server may run the request")
def test_key_pending_when_the_server_died_is_free_after_restart(fresh_server):
    """A SQLite database has one server: a key its previous run left pending belonged to a
    request that died with it, so a retry after the restart runs instead of waiting 15
    minutes for the pending record to expire."""
    srv = fresh_server()
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
    url = f"/v1/sandboxes/{sid}/exec-sync"
    body = {"script": "sleep 3; echo ran >> once.txt"}
    out = {}

    def first():
        try:
            with srv.client() as c:
                out["r"] = c.post(url, json=body, headers=idem("k-died"))
        except httpx.HTTPError as e:
            out["r"] = e

    t = threading.Thread(target=first)
    t.start()
    time.sleep(1)
    with srv.client() as c:
        assert_error(c.post(url, json=body, headers=idem("k-died")), 409,
                     "IDEMPOTENCY_IN_PROGRESS")
    srv.stop(signal.SIGKILL)
    t.join()
    assert isinstance(out["r"], httpx.HTTPError)
    srv.start()
    with srv.client() as c:
        r = c.post(url, json=body, headers=idem("k-died"))
        assert r.status_code == 200, r.text
        assert file_text(c, sid, "/home/user/once.txt") == "ran\n"
        again = c.post(url, json=body, headers=idem("k-died"))
        assert again.headers["idempotent-replayed"] == "true"


def test_stored_answers_bounded_per_sandbox(fresh_server):
    """IDEMPOTENCY_MAX_STORED_BYTES bounds the answers one sandbox keeps: the oldest are
    dropped, and a dropped answer's key runs afresh, as an expired one does."""
    srv = fresh_server({"IDEMPOTENCY_MAX_STORED_BYTES": "700"})
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        url = f"/v1/sandboxes/{sid}/exec-sync"
        body = {"script": "echo run >> n.txt; head -c 100 /dev/zero | tr '\\0' x"}
        first = c.post(url, json=body, headers=idem("k-0"))
        assert first.status_code == 200 and len(first.content) > 200, first.text
        for i in range(1, 4):
            assert c.post(url, json=body, headers=idem(f"k-{i}")).status_code == 200
        newest = c.post(url, json=body, headers=idem("k-3"))
        assert newest.headers["idempotent-replayed"] == "true"
        again = c.post(url, json=body, headers=idem("k-0"))
        assert again.status_code == 200 and "idempotent-replayed" not in again.headers
        assert file_text(c, sid, "/home/user/n.txt") == "run\n" * 5
