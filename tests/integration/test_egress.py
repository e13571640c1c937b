"""Network egress by policy: real bash, curl, Python's urllib and pip in the real jail, through
the server's egress proxy, to HTTP and HTTPS hosts on this machine reached by names the server
pins (EGRESS_RESOLVE). What is allowed works unchanged; what is not is refused with the
documented message, and every connection the proxy was asked for is in the egress log."""
import ctypes
import json
import os
import random
import socket
import sys
import threading
import time

import pytest

from conftest import assert_error, make_server

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "harness"))
from egress_upstreams import Upstreams  # noqa: E402

REFUSED = "is not allowed by this sandbox's network policy"


@pytest.fixture(scope="module")
def upstreams():
    u = Upstreams().start()
    yield u
    u.stop()


@pytest.fixture(scope="module")
def egress_server(tmp_path_factory, upstreams):
    s = make_server(str(tmp_path_factory.mktemp("egress")), {
        "AUTH_RATE_LIMIT_MAX": "100000",
        "EGRESS_RESOLVE": upstreams.resolve_setting(),
    }).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def eapi(egress_server):
    with egress_server.client() as c:
        yield c


def create(api, network, **extra):
    r = api.post("/v1/sandboxes", json={"network": network, "python": True, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def run(api, sid, script, env=None, timeout_ms=60000):
    body = {"script": script, "timeoutMs": timeout_ms}
    if env:
        body["env"] = env
    r = api.post(f"/v1/sandboxes/{sid}/exec-sync", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def egress(api, sid, limit=None):
    r = api.get(f"/v1/sandboxes/{sid}/egress" + (f"?limit={limit}" if limit else ""))
    assert r.status_code == 200, r.text
    return r.json()["egress"]


def test_allowed_host_curl_and_urllib(eapi, upstreams):
    sb = create(eapi, {"allow": ["pkgs.test"]})
    assert sb["network"] == {"allow": ["pkgs.test"], "deny": []}
    url = f"http://pkgs.test:{upstreams.http_port}/hello"
    res = run(eapi, sb["id"], f"curl -sS {url}")
    assert res["exitCode"] == 0, res
    assert res["stdout"] == "hello from upstream\n"
    res = run(eapi, sb["id"],
              f"python3 -c \"import urllib.request as u; print(u.urlopen('{url}').read().decode(),"
              f" end='')\"")
    assert res["exitCode"] == 0, res
    assert res["stdout"] == "hello from upstream\n"
    log = egress(eapi, sb["id"])
    assert len(log) == 2
    for rec in log:
        assert rec["allowed"] is True
        assert rec["host"] == "pkgs.test" and rec["port"] == upstreams.http_port
        assert rec["address"] == "127.0.0.1"
        assert rec["rule"] == "allow pkgs.test"
        assert rec["bytesDown"] > len("hello from upstream\n")
        assert rec["bytesUp"] > 0
        assert rec["error"] is None
    assert log[0]["execId"] == res["execId"]


def test_plain_http_is_sent_in_origin_form_without_proxy_headers(eapi, upstreams):
    sb = create(eapi, {"allow": ["pkgs.test"]})
    res = run(eapi, sb["id"],
              f"curl -sS -H 'Proxy-Authorization: Basic c2VjcmV0' -d 'a=1' "
              f"'http://pkgs.test:{upstreams.http_port}/echo?q=1'")
    assert res["exitCode"] == 0, res
    seen = json.loads(res["stdout"])
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo?q=1"
    assert seen["body"] == "a=1"
    assert "proxy-authorization" not in seen["headers"]
    assert seen["headers"]["connection"] == "close"
    assert seen["headers"]["host"] == f"pkgs.test:{upstreams.http_port}"
    # the host a request goes to is the one its URL names, and so is the Host it carries
    res = run(eapi, sb["id"], f"curl -sS -H 'Host: evil.test' 'http://pkgs.test:{upstreams.http_port}/echo'")
    assert json.loads(res["stdout"])["headers"]["host"] == f"pkgs.test:{upstreams.http_port}"


def test_https_passes_through_connect(eapi, upstreams):
    sb = create(eapi, {"allow": ["secure.test"]}, files={"/home/user/ca.pem": upstreams.ca_pem})
    url = f"https://secure.test:{upstreams.https_port}/hello"
    res = run(eapi, sb["id"], f"curl -sS --cacert /home/user/ca.pem {url}")
    assert res["exitCode"] == 0, res
    assert res["stdout"] == "hello from upstream\n"
    res = run(eapi, sb["id"],
              f"python3 -c \"import urllib.request as u; print(u.urlopen('{url}').read().decode(),"
              f" end='')\"", env={"SSL_CERT_FILE": "/home/user/ca.pem"})
    assert res["exitCode"] == 0, res
    assert res["stdout"] == "hello from upstream\n"
    # the certificate is checked by the client: the proxy does not touch TLS
    res = run(eapi, sb["id"], f"curl -sS {url}")
    assert res["exitCode"] == 60, res


def test_refusals_say_why_and_are_logged(eapi, upstreams):
    sb = create(eapi, {"allow": ["pkgs.test"]})
    sid = sb["id"]
    port = upstreams.http_port
    res = run(eapi, sid, f"curl -s -w '\\n%{{http_code}}' http://other.test:{port}/hello")
    assert res["stdout"].endswith("\n403"), res
    assert f"sqlfs egress: other.test {REFUSED}" in res["stdout"]
    # HTTPS to a host not listed: the CONNECT is refused
    res = run(eapi, sid, f"curl -sS https://other.test:{upstreams.https_port}/hello")
    assert res["exitCode"] == 56, res
    assert "403" in res["stderr"]
    # the host's loopback, link-local metadata and IPv6 loopback, through the proxy
    for target in (f"http://127.0.0.1:{port}/hello", "http://169.254.169.254/latest/meta-data/",
                   f"http://[::1]:{port}/hello"):
        res = run(eapi, sid, f"curl -s --noproxy '' -x $HTTP_PROXY {target}")
        assert REFUSED in res["stdout"], (target, res)
    log = egress(eapi, sid)
    assert [r["allowed"] for r in log] == [False] * 5
    hosts = [r["host"] for r in reversed(log)]
    assert hosts == ["other.test", "other.test", "127.0.0.1", "169.254.169.254", "::1"]
    assert all(r["rule"].startswith("deny") for r in log)
    assert all(r["bytesDown"] == 0 for r in log)


def test_special_addresses_refused_even_when_everything_is_allowed(eapi, upstreams):
    sb = create(eapi, {"allow": ["*"]})
    sid = sb["id"]
    port = upstreams.http_port
    for target, kind in ((f"http://127.0.0.1:{port}/hello", "loopback"),
                         ("http://169.254.169.254/latest/meta-data/", "link-local"),
                         ("http://10.0.0.1/", "private"),
                         (f"http://[::ffff:127.0.0.1]:{port}/hello", "loopback")):
        res = run(eapi, sid, f"curl -s --noproxy '' -x $HTTP_PROXY {target}")
        assert REFUSED in res["stdout"] and kind in res["stdout"], (target, res)
    # a name the operator pinned is the operator's decision, even to a loopback address
    res = run(eapi, sid, f"curl -sS http://pkgs.test:{port}/hello")
    assert res["stdout"] == "hello from upstream\n", res


def test_direct_connections_fail_fast(eapi, upstreams):
    sb = create(eapi, {"allow": ["*"]})
    t0 = time.monotonic()
    res = run(eapi, sb["id"],
              f"curl -sS --noproxy '*' --max-time 20 http://127.0.0.1:{upstreams.http_port}/hello;"
              f" echo rc=$?;"
              f" curl -sS --noproxy '*' --max-time 20 http://203.0.113.10/; echo rc=$?;"
              f" curl -sS --noproxy '*' --max-time 20 http://pkgs.test:{upstreams.http_port}/;"
              f" echo rc=$?;"
              f" python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 443), 20)'"
              f" 2>&1 | tail -1")
    elapsed = time.monotonic() - t0
    out = res["stdout"]
    # its own loopback has nothing on that port; nothing else has a route; no DNS
    assert "rc=7" in out.split("\n")[0]
    assert out.count("rc=7") == 2 and "rc=6" in out, res
    assert "Network is unreachable" in out, res
    assert elapsed < 10, elapsed


def test_another_sandboxs_namespace_is_unreachable(eapi, upstreams):
    a = create(eapi, {"allow": ["*"]})
    b = create(eapi, {"allow": ["*"]})
    started = threading.Event()
    result = {}

    def serve_in_b():
        started.set()
        result["b"] = run(eapi, b["id"],
                          "python3 -c 'import socket,time\n"
                          "s=socket.socket(); s.bind((\"127.0.0.1\", 8765)); s.listen()\n"
                          "print(\"listening\", flush=True); time.sleep(4)'")

    t = threading.Thread(target=serve_in_b)
    t.start()
    started.wait()
    time.sleep(1.5)
    res = run(eapi, a["id"],
              "curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:8765/; echo rc=$?;"
              " curl -s --noproxy '' -x $HTTP_PROXY --max-time 5 http://127.0.0.1:8765/")
    t.join()
    assert result["b"]["stdout"] == "listening\n"
    assert "rc=7" in res["stdout"], res
    assert REFUSED in res["stdout"], res


def test_network_false_keeps_loopback_only(eapi, upstreams):
    sb = create(eapi, False)
    assert sb["network"] is False
    res = run(eapi, sb["id"],
              "env | grep -ci proxy; "
              f"curl -sS -x http://127.0.0.1:3 --max-time 10 http://pkgs.test:{upstreams.http_port}"
              "/hello; echo rc=$?")
    assert res["stdout"].startswith("0\n"), res
    assert "rc=7" in res["stdout"], res
    assert egress(eapi, sb["id"]) == []


def test_network_true_uses_egress_allow(tmp_path, upstreams):
    s = make_server(str(tmp_path), {"EGRESS_RESOLVE": upstreams.resolve_setting(),
                                    "EGRESS_ALLOW": "pkgs.test"}).start()
    try:
        with s.client() as api:
            sb = create(api, True)
            assert sb["network"] is True
            res = run(api, sb["id"],
                      f"curl -s http://pkgs.test:{upstreams.http_port}/hello;"
                      f"curl -s http://other.test:{upstreams.http_port}/hello")
            assert res["stdout"].startswith("hello from upstream\n"), res
            assert REFUSED in res["stdout"], res
    finally:
        s.stop()


def test_ceiling_narrows_every_sandbox(tmp_path, upstreams):
    s = make_server(str(tmp_path), {"EGRESS_RESOLVE": upstreams.resolve_setting(),
                                    "EGRESS_ALLOW_MAX": "pkgs.test"}).start()
    try:
        with s.client() as api:
            sb = create(api, {"allow": ["*"]})
            res = run(api, sb["id"],
                      f"curl -s http://pkgs.test:{upstreams.http_port}/hello;"
                      f"curl -s http://other.test:{upstreams.http_port}/hello")
            assert res["stdout"].startswith("hello from upstream\n"), res
            assert "EGRESS_ALLOW_MAX" in res["stdout"], res
    finally:
        s.stop()


def test_bad_settings_stop_the_server_with_a_message(tmp_path):
    for env, needle in (({"EGRESS_ALLOW": "pypi.org,bad host"}, "EGRESS_ALLOW"),
                        ({"EGRESS_ALLOW_MAX": "10.0.0.0/40"}, "EGRESS_ALLOW_MAX"),
                        ({"EGRESS_RESOLVE": "pkgs.test"}, "EGRESS_RESOLVE")):
        s = make_server(str(tmp_path), env)
        with pytest.raises(Exception):
            s.start(timeout=10)
        assert needle in s.log_tail(), s.log_tail()
        s.stop()


def test_patch_changes_the_policy_for_the_next_exec(eapi, egress_server, upstreams):
    sb = create(eapi, False)
    sid = sb["id"]
    url = f"http://pkgs.test:{upstreams.http_port}/hello"
    assert run(eapi, sid, f"curl -s --max-time 5 {url}")["exitCode"] != 0
    r = eapi.patch(f"/v1/sandboxes/{sid}", json={"network": {"allow": ["PKGS.test"]}})
    assert r.status_code == 200, r.text
    assert r.json()["network"] == {"allow": ["pkgs.test"], "deny": []}
    version = r.json()["version"]
    assert run(eapi, sid, f"curl -s {url}")["stdout"] == "hello from upstream\n"
    r = eapi.patch(f"/v1/sandboxes/{sid}", json={"network": {"allow": ["*"],
                                                             "deny": ["pkgs.test"]}})
    assert r.status_code == 200
    assert REFUSED in run(eapi, sid, f"curl -s {url}")["stdout"]
    # bad input changes nothing
    r = eapi.patch(f"/v1/sandboxes/{sid}", json={"network": {"allow": ["ok.test", "bad host"]}})
    body = assert_error(r, 400)
    assert "network.allow[1]" in body["error"] and "bad host" in body["error"]
    r = eapi.patch(f"/v1/sandboxes/{sid}", json={"network": "yes"})
    assert_error(r, 400)
    r = eapi.patch(f"/v1/sandboxes/{sid}", json={"name": "x"})
    assert "network" in assert_error(r, 400)["error"]
    r = eapi.patch(f"/v1/sandboxes/{sid}", json={})
    assert_error(r, 400)
    got = eapi.get(f"/v1/sandboxes/{sid}").json()
    assert got["network"] == {"allow": ["*"], "deny": ["pkgs.test"]}
    assert got["version"] == version  # neither a PATCH nor those execs made a commit
    r = eapi.patch(f"/v1/sandboxes/{sid}", json={"network": False})
    assert r.json()["network"] is False
    assert run(eapi, sid, f"curl -s --max-time 5 {url}")["exitCode"] != 0
    # another owner's sandbox looks missing
    with egress_server.client(sub="intruder") as other:
        assert_error(other.patch(f"/v1/sandboxes/{sid}", json={"network": True}), 404)
        assert_error(other.get(f"/v1/sandboxes/{sid}/egress"), 404)
    assert eapi.get(f"/v1/sandboxes/{sid}").json()["network"] is False


def test_create_refuses_bad_policies(eapi):
    for network, needle in (({"allow": ["a b"]}, "network.allow[0]"),
                            ({"deny": ["10.0.0.0/33"]}, "network.deny[0]"),
                            ({"allow": "pypi.org"}, "array"),
                            ({"allowed": []}, "unknown member"),
                            ({"allow": ["x.test"] * 257}, "256"),
                            (3, "network must be")):
        r = eapi.post("/v1/sandboxes", json={"network": network})
        body = assert_error(r, 400)
        assert needle in body["error"], (network, body)


def test_pip_install_from_a_local_index(eapi, upstreams):
    index = f"http://pkgs.test:{upstreams.http_port}/simple"
    env = {"PIP_TRUSTED_HOST": "pkgs.test", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    sb = create(eapi, {"allow": ["pkgs.test"]})
    res = run(eapi, sb["id"], f"pip install --index-url {index} tiny-pkg", env=env,
              timeout_ms=120000)
    assert res["exitCode"] == 0, res
    res = run(eapi, sb["id"], "python3 -c 'import tiny_pkg; print(tiny_pkg.VALUE)'")
    assert res["stdout"] == "42\n", res
    # without the rule the index is out of reach
    sb2 = create(eapi, {"allow": []})
    res = run(eapi, sb2["id"], f"pip install --retries 0 --timeout 5 --index-url {index} tiny-pkg",
              env=env, timeout_ms=120000)
    assert res["exitCode"] != 0, res
    assert "import tiny_pkg" not in res["stdout"]
    log = egress(eapi, sb2["id"])
    assert log and all(not r["allowed"] and r["host"] == "pkgs.test" for r in log)


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory, upstreams):
    """A server with small egress limits."""
    s = make_server(str(tmp_path_factory.mktemp("tight")), {
        "EGRESS_RESOLVE": upstreams.resolve_setting() + ",hold.test:127.0.0.1",
        "EGRESS_CONNECTIONS_PER_EXEC": "3",
        "EGRESS_OPEN_PER_EXEC": "2",
        "EGRESS_BYTES_PER_EXEC": "300000",
        "EGRESS_IDLE_TIMEOUT_MS": "700",
        "EGRESS_CONNECT_TIMEOUT_MS": "1500",
        "EGRESS_LOG_MAX": "4",
    }).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tapi(tight_server):
    with tight_server.client() as c:
        yield c


def test_connections_per_exec_are_bounded(tapi, upstreams):
    sb = create(tapi, {"allow": ["pkgs.test"]})
    url = f"http://pkgs.test:{upstreams.http_port}/hello"
    res = run(tapi, sb["id"], f"for i in 1 2 3 4 5; do curl -s {url}; done")
    out = res["stdout"]
    assert out.count("hello from upstream") == 3, res
    assert out.count("EGRESS_CONNECTIONS_PER_EXEC") == 2, res
    # the next exec starts afresh
    res = run(tapi, sb["id"], f"curl -s {url}")
    assert res["stdout"] == "hello from upstream\n"
    # the log keeps EGRESS_LOG_MAX records, the newest; the refusal for the limit is recorded once
    log = egress(tapi, sb["id"])
    assert len(log) == 4
    assert log[0]["execId"] == res["execId"] and log[0]["allowed"]
    assert any("EGRESS_CONNECTIONS_PER_EXEC" in r["rule"] for r in log), log


def test_open_connections_per_exec_are_bounded(tapi, upstreams):
    sb = create(tapi, {"allow": ["pkgs.test"]})
    slow = f"http://pkgs.test:{upstreams.http_port}/slow?s=0.5"
    res = run(tapi, sb["id"],
              f"curl -s {slow} >/tmp/a & curl -s {slow} >/tmp/b & sleep 0.2;"
              f" curl -s {slow}; wait; cat /tmp/a /tmp/b")
    assert "EGRESS_OPEN_PER_EXEC" in res["stdout"], res
    assert res["stdout"].count("first") == 2, res


def test_bytes_per_exec_are_bounded(tapi, upstreams):
    sb = create(tapi, {"allow": ["pkgs.test"]})
    res = run(tapi, sb["id"],
              f"curl -s -o /tmp/big http://pkgs.test:{upstreams.http_port}/bytes?n=5000000;"
              f" echo rc=$?; stat -c %s /tmp/big")
    lines = res["stdout"].split()
    assert lines[0] != "rc=0", res
    assert int(lines[1]) < 1000000, res
    log = egress(tapi, sb["id"])
    assert "EGRESS_BYTES_PER_EXEC" in (log[0]["error"] or ""), log


def test_idle_upstream_is_cut_and_holds_no_thread(tapi, upstreams):
    sb = create(tapi, {"allow": ["pkgs.test"]})
    t0 = time.monotonic()
    res = run(tapi, sb["id"],
              f"curl -s http://pkgs.test:{upstreams.http_port}/slow?s=5; echo rc=$?")
    elapsed = time.monotonic() - t0
    assert res["stdout"].startswith("first\n"), res
    assert "rc=0" not in res["stdout"], res
    assert elapsed < 4, elapsed
    log = egress(tapi, sb["id"])
    assert "idle timeout" in log[0]["error"], log


def test_unreachable_host_times_out(tapi):
    # a host whose accept queue is full: its connect never completes
    import socket
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(0)
    port = held.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        sb = create(tapi, {"allow": ["hold.test"]})
        t0 = time.monotonic()
        res = run(tapi, sb["id"], f"curl -s -w '\\n%{{http_code}}' http://hold.test:{port}/")
        elapsed = time.monotonic() - t0
    finally:
        for f in fillers:
            f.close()
        held.close()
    assert res["stdout"].endswith("\n504"), res
    assert "sqlfs egress: cannot reach hold.test" in res["stdout"], res
    assert elapsed < 6, elapsed


def test_connections_end_with_their_exec(tapi, upstreams, tight_server):
    sb = create(tapi, {"allow": ["pkgs.test"]})
    # the exec times out while its download is held open by a slow host
    r = tapi.post(f"/v1/sandboxes/{sb['id']}/exec-sync", json={
        "script": f"curl -s --max-time 30 http://pkgs.test:{upstreams.http_port}/slow?s=0.6 &"
                  f" curl -s --max-time 30 http://pkgs.test:{upstreams.http_port}/slow?s=0.6 &"
                  " sleep 30",
        "timeoutMs": 400})
    assert r.status_code == 408, r.text
    log = egress(tapi, sb["id"])
    assert len(log) == 2
    assert all(rec["error"] == "closed: the exec ended" for rec in log), log
    st = tight_server.status()
    assert st["egress"]["open"] == 0, st


def own_resolv_conf(path):
    """A preexec_fn: the server runs in a mount namespace of its own in which
    /etc/resolv.conf is `path` (the host's stays as it is)."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, ms_bind, ms_rec, ms_private = 0x20000, 0x1000, 0x4000, 0x40000

    def enter():
        if (libc.unshare(clone_newns) != 0 or
                libc.mount(None, b"/", None, ms_rec | ms_private, None) != 0 or
                libc.mount(path.encode(), b"/etc/resolv.conf", None, ms_bind, None) != 0):
            os._exit(97)
    return enter


def test_slow_names_of_one_sandbox_do_not_starve_another(tmp_path, upstreams):
    # a name server that never answers: each name holds a resolver thread for its timeout
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = f"127.53.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    silent.bind((addr, 53))
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {addr}\noptions timeout:3 attempts:1\n")
    s = make_server(str(tmp_path), {"EGRESS_RESOLVE": upstreams.resolve_setting(),
                                    "EGRESS_CONNECT_TIMEOUT_MS": "1500"},
                    preexec_fn=own_resolv_conf(str(conf))).start()
    try:
        with s.client() as api:
            sb = create(api, {"allow": ["*"]})
            other = create(api, {"allow": ["*"]})
            attack = {}

            def flood():
                attack["res"] = run(api, sb["id"],
                                    "for i in $(seq 40); do curl -s -o /dev/null"
                                    " -w '%{http_code}\\n' http://n$i.silent.test/ & done; wait")

            t = threading.Thread(target=flood)
            t.start()
            time.sleep(0.5)
            # while one sandbox's names wait for a silent name server, another's resolve at once
            t0 = time.monotonic()
            res = run(api, other["id"],
                      "curl -s --noproxy '' -w '\\n%{http_code}' http://localhost/")
            assert time.monotonic() - t0 < 3
            assert res["stdout"].endswith("\n403") and "loopback" in res["stdout"], res
            t.join()
            codes = attack["res"]["stdout"].split()
            # at most 16 names of a sandbox wait; the rest are refused at once
            assert len(codes) == 40 and set(codes) <= {"502", "504"}, attack["res"]
            assert codes.count("502") >= 40 - 16 - 1, codes
            # the exec is over: the names nobody waits for are not resolved; only the one a
            # resolver thread already had holds on, for one timeout at most
            deadline = time.monotonic() + 5
            while s.status()["egress"]["open"] > 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert s.status()["egress"]["open"] == 0, s.status()
    finally:
        s.stop()
        silent.close()
