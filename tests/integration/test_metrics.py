"""GET /metrics (docs/API.md "Metrics") read with the real Prometheus parser, and X-Request-Id
(docs/API.md "Request ids"), on real servers."""
import json
import os
import re
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, assert_error, engine, make_server, raw_http

TOKEN = "scrape-token-0123456789abcdef"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_BUCKETS = ["0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
                "10", "30", "+Inf"]
PHASES = ["lock", "queue", "prepare", "spawn", "run", "commit"]
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def msrv(tmp_path_factory):
    """A server with METRICS_TOKEN, logging every request (to check the log lines)."""
    s = make_server(str(tmp_path_factory.mktemp("metrics")),
                    {"METRICS_TOKEN": TOKEN, "AUTH_RATE_LIMIT_MAX": "100000",
                     "SQLFS_QUIET": "0"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def mapi(msrv):
    with msrv.client() as c:
        yield c


def scrape(srv, token=TOKEN):
    """The samples of GET /metrics as {(sample name, ((label, value), ...)): value}, after
    checking that every family has its HELP and TYPE."""
    r = httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE
    out = {}
    for fam in text_string_to_metric_families(r.text):
        assert fam.name.startswith("sqlfs_"), fam.name
        assert fam.type in ("counter", "gauge", "histogram"), (fam.name, fam.type)
        assert fam.documentation, fam.name
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    # each family's HELP and TYPE come once, before its samples
    for name in set(re.findall(r"^# TYPE (\S+)", r.text, re.M)):
        assert r.text.count(f"# TYPE {name} ") == 1 and r.text.count(f"# HELP {name} ") == 1
    return out


def val(samples, name, **labels):
    """A sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def scrape_until(srv, ready, timeout=10):
    """scrape() until ready(samples) holds (or the time is up): a request is counted once it
    has completed, which the server may finish a moment after the client read its answer."""
    deadline = time.time() + timeout
    while True:
        m = scrape(srv)
        if ready(m) or time.time() > deadline:
            return m
        time.sleep(0.02)


def route_patterns():
    """Every route pattern of the table in src/api/routes.c."""
    text = open(os.path.join(ROOT, "src", "api", "routes.c")).read()
    sbx = re.search(r'#define SBX "([^"]+)"', text).group(1)
    pats = set()
    for macro, rest, plain in re.findall(r'\{"[A-Z]+", (?:(SBX)(?: "([^"]*)")?|"([^"]*)")', text):
        pats.add(sbx + rest if macro else plain)
    assert "/v1/sandboxes/:id/exec-sync" in pats and "/metrics" in pats, pats
    return pats


# ---- the route and its token ----

def test_without_metrics_token_there_is_no_such_route(fresh_server):
    s = fresh_server({"METRICS_TOKEN": ""})
    assert assert_error(httpx.get(s.url + "/nope"), 404, "NOT_FOUND")["error"] \
        == "no such route: GET /nope"
    for method in ("GET", "POST", "DELETE"):
        r = httpx.request(method, s.url + "/metrics",
                          headers={"Authorization": f"Bearer {TOKEN}"})
        body = assert_error(r, 404, "NOT_FOUND")  # not 405: the path is unknown
        assert body["error"] == f"no such route: {method} /metrics"
        assert "allow" not in r.headers


def test_a_short_or_spaced_metrics_token_stops_the_server(tmp_path):
    for bad in ("short-token", "has a space in it 0123456789"):
        s = make_server(str(tmp_path), {"METRICS_TOKEN": bad})
        with pytest.raises(RuntimeError):
            s.start(timeout=10)
        assert "METRICS_TOKEN" in s.log_tail() and bad not in s.log_tail()


def test_the_token_is_required(msrv, mapi):
    url = msrv.url + "/metrics"
    assert_error(httpx.get(url), 401, "AUTH_REQUIRED")
    assert_error(httpx.get(url, headers={"Authorization": f"Basic {TOKEN}"}), 401,
                 "AUTH_REQUIRED")
    assert_error(httpx.get(url, headers={"Authorization": "Bearer " + TOKEN[:-1]}), 401,
                 "AUTH_INVALID")
    assert_error(httpx.get(url, headers={"Authorization": "Bearer " + TOKEN + "x"}), 401,
                 "AUTH_INVALID")
    # an API token is not the metrics token
    assert_error(httpx.get(url, headers={"Authorization": mapi.headers["Authorization"]}), 401,
                 "AUTH_INVALID")
    r = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPE
    assert r.headers["cache-control"] == "no-store"
    r = httpx.head(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.content == b""
    assert_error(httpx.post(url, headers={"Authorization": f"Bearer {TOKEN}"}), 405,
                 "METHOD_NOT_ALLOWED")


def test_wrong_tokens_count_as_failed_auth_attempts(fresh_server):
    s = fresh_server({"METRICS_TOKEN": TOKEN, "AUTH_RATE_LIMIT_MAX": "2",
                      "AUTH_RATE_LIMIT_WINDOW_MS": "1500"})
    url = s.url + "/metrics"
    for _ in range(2):
        assert_error(httpx.get(url, headers={"Authorization": "Bearer wrong"}), 401)
    # past the limit even the right token waits for the window's end
    r = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert_error(r, 429, "RATE_LIMITED")
    assert int(r.headers["retry-after"]) >= 1
    time.sleep(1.7)
    m = scrape(s)
    assert val(m, "sqlfs_rate_limited_total", limit="auth_failures") == 1
    assert val(m, "sqlfs_rate_limited_total", limit="auth_tokens") == 0
    assert val(m, "sqlfs_errors_total", code="RATE_LIMITED") == 1
    assert val(m, "sqlfs_errors_total", code="AUTH_INVALID") == 2


# ---- what the metrics say ----

def test_requests_and_errors_are_counted(msrv, mapi):
    before = scrape(msrv)
    for _ in range(3):
        assert mapi.get("/v1/sandboxes").status_code == 200
    assert_error(mapi.get(f"/v1/sandboxes/{uuid.uuid4()}"), 404, "SANDBOX_NOT_FOUND")
    assert_error(mapi.get("/v1/no/such/route"), 404, "NOT_FOUND")
    assert_error(mapi.request("PROPFIND", "/v1/sandboxes"), 405, "METHOD_NOT_ALLOWED")
    req = "sqlfs_http_requests_total"
    after = scrape_until(msrv, lambda m: val(m, req, route="other", method="other", status="405")
                         > val(before, req, route="other", method="other", status="405"))

    def delta(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    assert delta(req, route="/v1/sandboxes", method="GET", status="200") == 3
    assert delta("sqlfs_http_request_duration_seconds_count", route="/v1/sandboxes",
                 method="GET") == 3
    assert delta(req, route="/v1/sandboxes/:id", method="GET", status="404") == 1
    assert delta(req, route="other", method="GET", status="404") == 1
    assert delta(req, route="other", method="other", status="405") == 1
    assert delta("sqlfs_errors_total", code="SANDBOX_NOT_FOUND") == 1
    assert delta("sqlfs_errors_total", code="NOT_FOUND") == 1
    assert delta("sqlfs_errors_total", code="METHOD_NOT_ALLOWED") == 1
    # the scrapes count themselves once completed
    assert delta(req, route="/metrics", method="GET", status="200") >= 1


def test_a_replayed_error_answer_counts_again(msrv, mapi):
    sid = mapi.post("/v1/sandboxes", json={}).json()["id"]
    url = f"/v1/sandboxes/{sid}/exec-sync"
    body = {"script": "true", "cwd": "/no/such/dir"}
    before = scrape(msrv)
    first = mapi.post(url, json=body, headers={"Idempotency-Key": "metrics-replay"})
    again = mapi.post(url, json=body, headers={"Idempotency-Key": "metrics-replay"})
    assert_error(first, 400, "INVALID_INPUT")
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    after = scrape_until(msrv, lambda m: val(m, "sqlfs_errors_total", code="INVALID_INPUT")
                         >= val(before, "sqlfs_errors_total", code="INVALID_INPUT") + 2)
    assert (val(after, "sqlfs_errors_total", code="INVALID_INPUT")
            - val(before, "sqlfs_errors_total", code="INVALID_INPUT")) == 2


def sse_exit(resp):
    """Reads an SSE exec stream to its end; the exit event's data."""
    text = resp.read().decode()
    frames = [f for f in text.split("\n\n") if f.startswith("event: exit")]
    assert frames, text
    return json.loads(frames[-1].split("data:", 1)[1])


def test_exec_phases_are_counted(msrv, mapi):
    sid = mapi.post("/v1/sandboxes", json={}).json()["id"]
    before = scrape(msrv)
    r = mapi.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "echo hi > f"})
    assert r.status_code == 200 and r.json()["exitCode"] == 0
    assert "spawn;dur=" in r.headers["server-timing"]
    with mapi.stream("POST", f"/v1/sandboxes/{sid}/exec", json={"script": "echo streamed"},
                     timeout=60) as s:
        assert s.status_code == 200
        assert sse_exit(s)["exitCode"] == 0
    r = mapi.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "sleep 5", "timeoutMs": 300})
    assert_error(r, 408, "EXEC_TIMEOUT")
    after = scrape_until(msrv, lambda m: val(m, "sqlfs_errors_total", code="EXEC_TIMEOUT")
                         > val(before, "sqlfs_errors_total", code="EXEC_TIMEOUT"))
    for phase in PHASES:
        n = (val(after, "sqlfs_exec_phase_seconds_count", phase=phase)
             - val(before, "sqlfs_exec_phase_seconds_count", phase=phase))
        assert n == 3, (phase, n)
        assert (val(after, "sqlfs_exec_phase_seconds_sum", phase=phase)
                > val(before, "sqlfs_exec_phase_seconds_sum", phase=phase))
    # the 300 ms run is in the run phase's buckets above 0.25 s, not below
    run_fast = (val(after, "sqlfs_exec_phase_seconds_bucket", phase="run", le="0.25")
                - val(before, "sqlfs_exec_phase_seconds_bucket", phase="run", le="0.25"))
    run_all = (val(after, "sqlfs_exec_phase_seconds_bucket", phase="run", le="+Inf")
               - val(before, "sqlfs_exec_phase_seconds_bucket", phase="run", le="+Inf"))
    assert run_all == 3 and run_fast == 2
    assert (val(after, "sqlfs_errors_total", code="EXEC_TIMEOUT")
            - val(before, "sqlfs_errors_total", code="EXEC_TIMEOUT")) == 1
    assert (val(after, "sqlfs_http_requests_total", route="/v1/sandboxes/:id/exec-sync",
                method="POST", status="408")
            - val(before, "sqlfs_http_requests_total", route="/v1/sandboxes/:id/exec-sync",
                  method="POST", status="408")) == 1


def test_histograms_are_cumulative(msrv, mapi):
    mapi.get("/v1/sandboxes")
    m = scrape(msrv)
    series = {}
    for (name, labels), v in m.items():
        if name.endswith("_bucket"):
            key = (name[:-7], tuple(kv for kv in labels if kv[0] != "le"))
            series.setdefault(key, {})[dict(labels)["le"]] = v
    assert any(k[0] == "sqlfs_http_request_duration_seconds" for k in series)
    assert {dict(k[1]).get("phase") for k in series if k[0] == "sqlfs_exec_phase_seconds"} \
        == set(PHASES)
    for (base, labels), buckets in series.items():
        if base == "sqlfs_http_request_duration_seconds":
            assert list(buckets) == HTTP_BUCKETS
        les = sorted(buckets, key=lambda le: float("inf") if le == "+Inf" else float(le))
        assert les[-1] == "+Inf"
        counts = [buckets[le] for le in les]
        assert counts == sorted(counts), (base, labels, buckets)
        assert buckets["+Inf"] == m[(base + "_count", labels)], (base, labels)
        assert m[(base + "_sum", labels)] >= 0


def test_gauges_and_fixed_counters_are_there(msrv, mapi):
    m = scrape(msrv)
    assert val(m, "sqlfs_execs_running") == 0 and ("sqlfs_execs_running", ()) in m
    assert val(m, "sqlfs_execs_queued") == 0 and ("sqlfs_execs_queued", ()) in m
    # (its value, which may be up to 5 s old: test_the_sandbox_count)
    assert m[("sqlfs_sandboxes", ())] >= 0
    if engine() == "sqlite":
        assert m[("sqlfs_store_memory_bytes", ())] > 100000
    else:
        assert ("sqlfs_store_memory_bytes", ()) not in m
    assert m[("sqlfs_egress_connections_open", ())] == 0
    for result in ("allowed", "denied"):
        assert ("sqlfs_egress_connections_total", (("result", result),)) in m
    for limit in ("auth_failures", "auth_tokens"):
        assert ("sqlfs_rate_limited_total", (("limit", limit),)) in m
    # every error code of the server has its counter, from zero
    codes = {dict(k[1])["code"] for k in m if k[0] == "sqlfs_errors_total"}
    assert {"SANDBOX_NOT_FOUND", "EQUOTA", "EXEC_TIMEOUT", "ENOENT", "RATE_LIMITED"} <= codes


def test_the_sandbox_count(fresh_server):
    s = fresh_server({"METRICS_TOKEN": TOKEN})
    with s.client() as c:
        ids = [c.post("/v1/sandboxes", json={}).json()["id"] for _ in range(3)]
        assert val(scrape(s), "sqlfs_sandboxes") == 3
        assert c.delete(f"/v1/sandboxes/{ids[0]}").status_code == 204
    # read from the store at most every 5 s
    time.sleep(5.2)
    assert val(scrape(s), "sqlfs_sandboxes") == 2


def test_labels_never_hold_a_path(msrv, mapi):
    ids = [mapi.post("/v1/sandboxes", json={}).json()["id"] for _ in range(2)]
    for sid in ids:
        assert mapi.put(f"/v1/sandboxes/{sid}/files/home/user/secret-name.txt",
                        content=b"x").status_code == 204
        assert mapi.get(f"/v1/sandboxes/{sid}/files/home/user/secret-name.txt").status_code \
            == 200
        assert mapi.get(f"/v1/sandboxes/{sid}/tree").status_code == 200
        mapi.get(f"/v1/sandboxes/{sid}/files/no/such/{sid}")
    mapi.get(f"/v1/{ids[0]}/nowhere")
    m = scrape(msrv)
    patterns = route_patterns()
    methods = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    for (name, labels) in m:
        for k, v in labels:
            assert not any(sid in v for sid in ids), (name, labels)
            assert "secret-name" not in v and "/home" not in v, (name, labels)
            if k == "route":
                assert v in patterns or v == "other", (name, v)
            if k == "method":
                assert v in methods, (name, v)
    assert val(m, "sqlfs_http_requests_total", route="/v1/sandboxes/:id/files/*", method="GET",
               status="200") >= 2


def test_the_token_is_never_logged(msrv):
    scrape(msrv)
    log = open(msrv.log_path).read()
    assert '"path":"/metrics"' in log
    assert TOKEN not in log


# ---- X-Request-Id ----

def test_a_valid_request_id_is_echoed(server, api):
    for rid in ("trace-1.A_b-2", "x", "a" * 128, str(uuid.uuid4())):
        r = api.get("/v1/sandboxes", headers={"X-Request-Id": rid})
        assert r.status_code == 200 and r.headers["x-request-id"] == rid
    r = httpx.get(server.url + "/healthz", headers={"X-Request-Id": "health.check"})
    assert r.headers["x-request-id"] == "health.check"


def test_a_missing_request_id_is_made_unique(server, api):
    ids = [httpx.get(server.url + "/healthz").headers["x-request-id"] for _ in range(2)]
    ids.append(api.get("/v1/sandboxes").headers["x-request-id"])
    for rid in ids:
        assert HEX_ID.match(rid), rid
    assert len(set(ids)) == 3


def test_an_invalid_request_id_is_replaced(server):
    for bad in ("has space", "a" * 129, "a" * 200, 'quote"d', "semi;colon", "", "tab\there"):
        r = httpx.get(server.url + "/healthz", headers={"X-Request-Id": bad})
        assert r.status_code == 200
        assert HEX_ID.match(r.headers["x-request-id"]), (bad, r.headers["x-request-id"])


def test_error_answers_carry_the_request_id(server, api):
    r = httpx.get(server.url + "/v1/sandboxes", headers={"X-Request-Id": "no-token"})
    assert_error(r, 401, "AUTH_REQUIRED")
    assert r.headers["x-request-id"] == "no-token"
    for r in (api.get("/nope"), api.put("/v1/sandboxes"),
              api.get(f"/v1/sandboxes/{uuid.uuid4()}")):
        assert r.status_code >= 400 and HEX_ID.match(r.headers["x-request-id"])
    # refused for its framing, before any route is looked at
    reply = raw_http(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                                  b"Content-Length: 2\r\nX-Request-Id: framed\r\n"
                                  b"Connection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b"\r\nX-Request-Id: framed\r\n" in reply


def test_the_log_line_has_the_request_id(msrv, mapi):
    mapi.get("/v1/sandboxes", headers={"X-Request-Id": "find-me-in-the-log"})
    generated = mapi.get("/v1/sandboxes?x=1").headers["x-request-id"]
    deadline = time.time() + 5
    while True:
        lines = [json.loads(ln) for ln in open(msrv.log_path) if ln.startswith("{")]
        mine = [ln for ln in lines if ln.get("requestId") in ("find-me-in-the-log", generated)]
        if len(mine) == 2 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert len(mine) == 2, mine
    assert all(ln["msg"] == "request" and ln["path"].startswith("/v1/sandboxes") for ln in mine)
