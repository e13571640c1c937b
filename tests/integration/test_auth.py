"""Auth (docs/API.md "Auth"): bootstrap, admin, bearer verification, rate limits."""
import base64
import concurrent.futures
import hashlib
import hmac
import json
import os
import subprocess
import time

import httpx

from conftest import ADMIN_SECRET, BINARY, SECRET, assert_error, free_port


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header, claims, key=SECRET.encode()):
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(claims).encode())
    sig = hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(sig)}"


def get_list(server, token):
    return httpx.get(server.url + "/v1/sandboxes", headers={"Authorization": "Bearer " + token})


def test_bootstrap_returns_201_with_token(server):
    r = httpx.post(server.url + "/v1/auth/bootstrap", json={"sub": "agent-001", "tenant": "t1",
                                                            "expiresIn": "24h"},
                   headers={"X-Auth-Secret": SECRET})
    assert r.status_code == 201
    body = r.json()
    assert body["sub"] == "agent-001" and body["tenant"] == "t1"
    assert body["expiresAt"].endswith("Z")
    assert get_list(server, body["token"]).status_code == 200


def test_bootstrap_never_expires(server):
    r = httpx.post(server.url + "/v1/auth/bootstrap", json={"sub": "x", "expiresIn": "never"},
                   headers={"X-Auth-Secret": SECRET})
    assert r.status_code == 201 and r.json()["expiresAt"] is None
    assert r.json()["tenant"] == "default"


def test_bootstrap_wrong_or_missing_secret(server):
    assert_error(httpx.post(server.url + "/v1/auth/bootstrap", json={"sub": "a"},
                            headers={"X-Auth-Secret": "nope"}), 403, "FORBIDDEN")
    assert_error(httpx.post(server.url + "/v1/auth/bootstrap", json={"sub": "a"}), 403,
                 "FORBIDDEN")


def test_bootstrap_bad_input(server):
    h = {"X-Auth-Secret": SECRET}
    for body in [{}, {"sub": ""}, {"sub": 5}, {"sub": "a" * 257}, {"sub": "a", "tenant": "b c"},
                 {"sub": "a", "expiresIn": "soon"}]:
        assert_error(httpx.post(server.url + "/v1/auth/bootstrap", json=body, headers=h), 400,
                     "INVALID_INPUT")
    r = httpx.post(server.url + "/v1/auth/bootstrap", content=b"{not json", headers=h)
    assert_error(r, 400, "INVALID_INPUT")


def test_missing_and_malformed_bearer(server):
    assert_error(httpx.get(server.url + "/v1/sandboxes"), 401, "AUTH_REQUIRED")
    assert_error(httpx.get(server.url + "/v1/sandboxes", headers={"Authorization": "Basic x"}),
                 401, "AUTH_REQUIRED")
    assert_error(get_list(server, "not.a.jwt"), 401, "AUTH_INVALID")


def test_forged_expired_and_alg_none(server):
    now = int(time.time())
    good = forge({"alg": "HS256", "typ": "JWT"}, {"sub": "f", "iat": now})
    assert get_list(server, good).status_code == 200
    assert_error(get_list(server, forge({"alg": "HS256"}, {"sub": "f"}, b"other-key")), 401,
                 "AUTH_INVALID")
    assert_error(get_list(server, forge({"alg": "HS256"}, {"sub": "f", "exp": now - 10})), 401,
                 "AUTH_INVALID")
    none = b64url(b'{"alg":"none"}') + "." + b64url(b'{"sub":"f"}') + "."
    assert_error(get_list(server, none), 401, "AUTH_INVALID")
    assert_error(get_list(server, forge({"alg": "HS512"}, {"sub": "f"})), 401, "AUTH_INVALID")
    assert_error(get_list(server, forge({"alg": "HS256"}, {"tenant": "x"})), 401, "AUTH_INVALID")


def test_admin_route(server):
    tok = server.token("admin-caller")
    h = {"Authorization": "Bearer " + tok}
    r = httpx.post(server.url + "/v1/auth/admin", json={"sub": "minted", "tenant": "t9"},
                   headers={**h, "X-Admin-Secret": ADMIN_SECRET})
    assert r.status_code == 201, r.text
    minted = r.json()["token"]
    payload = json.loads(base64.urlsafe_b64decode(minted.split(".")[1] + "=="))
    assert payload["sub"] == "minted" and payload["tenant"] == "t9" and payload["jti"]
    assert_error(httpx.post(server.url + "/v1/auth/admin", json={"sub": "m"},
                            headers={**h, "X-Admin-Secret": "wrong"}), 403, "FORBIDDEN")
    assert_error(httpx.post(server.url + "/v1/auth/admin", json={"sub": "m"},
                            headers={"X-Admin-Secret": ADMIN_SECRET}), 401, "AUTH_REQUIRED")


def test_admin_not_configured(fresh_server):
    s = fresh_server({"ADMIN_SECRET": ""})
    tok = s.token()
    r = httpx.post(s.url + "/v1/auth/admin", json={"sub": "m"},
                   headers={"Authorization": "Bearer " + tok, "X-Admin-Secret": "x"})
    assert_error(r, 500, "ADMIN_NOT_CONFIGURED")


# The default limits, whatever the environment running the tests says.
DEFAULT_LIMITS = {"AUTH_RATE_LIMIT_MAX": "", "AUTH_RATE_LIMIT_WINDOW_MS": "",
                  "AUTH_SUCCESS_RATE_LIMIT_MAX": "", "AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS": ""}


def bootstrap(s, secret=SECRET, body=None, content=None):
    headers = {"X-Auth-Secret": secret} if secret is not None else {}
    if content is not None:
        return httpx.post(s.url + "/v1/auth/bootstrap", content=content,
                          headers={**headers, "Content-Type": "application/json"})
    return httpx.post(s.url + "/v1/auth/bootstrap", json=body or {"sub": "a"}, headers=headers)


def admin(s, token, secret=ADMIN_SECRET, body=None):
    return httpx.post(s.url + "/v1/auth/admin", json=body or {"sub": "m"},
                      headers={"Authorization": "Bearer " + token, "X-Admin-Secret": secret})


def assert_limited(r, window_s=60):
    body = assert_error(r, 429, "RATE_LIMITED")
    assert body["retryable"] is True
    assert 1 <= int(r.headers["retry-after"]) <= window_s
    return body


def test_successful_bootstraps_do_not_use_up_the_failure_limit(fresh_server):
    s = fresh_server(DEFAULT_LIMITS)
    codes = [bootstrap(s, body={"sub": f"dev-{i}"}).status_code for i in range(20)]
    assert codes == [201] * 20
    tok = s.token()
    assert [admin(s, tok).status_code for _ in range(10)] == [201] * 10


def test_failed_bootstraps_lock_out_the_address(fresh_server):
    s = fresh_server(DEFAULT_LIMITS)
    tok = s.token()
    # 5 failures (wrong or missing secret); the successes between them do not reset the count
    for secret in ["nope", None, "nope", ""]:
        assert_error(bootstrap(s, secret=secret), 403, "FORBIDDEN")
        assert bootstrap(s).status_code == 201
    assert_error(bootstrap(s, secret="nope"), 403, "FORBIDDEN")
    body = assert_limited(bootstrap(s, secret="nope"))
    assert "failed" in body["error"]
    # now the right secret is refused too, on both routes, without a token being minted
    assert_limited(bootstrap(s))
    assert_limited(admin(s, tok))
    # other routes are not affected
    assert get_list(s, tok).status_code == 200


def test_concurrent_failures_stay_within_the_limit(fresh_server):
    """Attempts are counted before they are checked, so a burst gets no extra guesses."""
    s = fresh_server(DEFAULT_LIMITS)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: bootstrap(s, secret="nope").status_code, range(40)))
    assert sorted(codes) == [403] * 5 + [429] * 35
    assert_limited(bootstrap(s))


def test_malformed_bodies_count_as_failures(fresh_server):
    s = fresh_server({**DEFAULT_LIMITS, "AUTH_RATE_LIMIT_MAX": "6"})
    for content in [b"{not json", b"[1, 2]", b'{"sub": 5}', b"{}", b'{"sub": "a", "tenant": "b c"}',
                    b'{"sub": "a", "expiresIn": "soon"}']:
        assert_error(bootstrap(s, content=content), 400, "INVALID_INPUT")
    assert_limited(bootstrap(s))


def test_failure_lockout_ends_with_its_window(fresh_server):
    s = fresh_server({**DEFAULT_LIMITS, "AUTH_RATE_LIMIT_MAX": "2",
                      "AUTH_RATE_LIMIT_WINDOW_MS": "1500"})
    t0 = time.monotonic()
    for _ in range(2):
        assert_error(bootstrap(s, secret="nope"), 403, "FORBIDDEN")
    r = bootstrap(s)
    assert_limited(r, window_s=2)
    time.sleep(max(0.0, 1.6 - (time.monotonic() - t0)))
    assert bootstrap(s).status_code == 201


def test_admin_failures_count_and_bad_bearer_does_not(fresh_server):
    s = fresh_server({**DEFAULT_LIMITS, "AUTH_RATE_LIMIT_MAX": "2"})
    tok = s.token()
    # a bad bearer token is refused (401) before the route: not an auth-route failure
    for _ in range(4):
        assert_error(admin(s, "not.a.jwt"), 401, "AUTH_INVALID")
    assert admin(s, tok).status_code == 201
    # a wrong X-Admin-Secret and a bad body on the admin route do count, for both routes
    assert_error(admin(s, tok, secret="wrong"), 403, "FORBIDDEN")
    assert_error(admin(s, tok, body={"sub": ""}), 400, "INVALID_INPUT")
    assert_limited(admin(s, tok))
    assert_limited(bootstrap(s))


def test_success_limit(fresh_server):
    s = fresh_server({**DEFAULT_LIMITS, "AUTH_SUCCESS_RATE_LIMIT_MAX": "3"})
    codes = [bootstrap(s).status_code for _ in range(3)]
    assert codes == [201, 201, 201]
    r = bootstrap(s)
    body = assert_limited(r)
    assert "token" not in body and "minted" in body["error"]
    # being over the success limit is not a failure: the failure budget is untouched
    for _ in range(6):
        assert_limited(bootstrap(s))
    for _ in range(5):
        assert_error(bootstrap(s, secret="nope"), 403, "FORBIDDEN")


def test_success_limit_covers_admin_mints(fresh_server):
    s = fresh_server({**DEFAULT_LIMITS, "AUTH_SUCCESS_RATE_LIMIT_MAX": "3"})
    tok = s.token()
    assert admin(s, tok).status_code == 201
    assert bootstrap(s).status_code == 201
    assert_limited(admin(s, tok))


def test_limits_disabled_with_zero(fresh_server):
    s = fresh_server({"AUTH_RATE_LIMIT_MAX": "0", "AUTH_SUCCESS_RATE_LIMIT_MAX": "0"})
    for _ in range(8):
        assert_error(bootstrap(s, secret="nope"), 403, "FORBIDDEN")
    assert [bootstrap(s).status_code for _ in range(8)] == [201] * 8


def test_bad_limit_settings_refused_at_start(tmp_path):
    cases = [({"AUTH_SUCCESS_RATE_LIMIT_MAX": "lots"}, [], "AUTH_SUCCESS_RATE_LIMIT_MAX: "),
             ({"AUTH_SUCCESS_RATE_LIMIT_MAX": "-1"}, [], "AUTH_SUCCESS_RATE_LIMIT_MAX: "),
             ({"AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS": "0"}, [],
              "AUTH_SUCCESS_RATE_LIMIT_WINDOW_MS: "),
             ({"AUTH_RATE_LIMIT_MAX": "5x"}, [], "AUTH_RATE_LIMIT_MAX: "),
             ({}, ["--auth-success-rate-limit-max", "1.5"], "--auth-success-rate-limit-max: "),
             ({}, ["--auth-success-rate-limit-window-ms=0"],
              "--auth-success-rate-limit-window-ms: ")]
    for i, (env, args, want) in enumerate(cases):
        data = tmp_path / f"d{i}"
        p = subprocess.run([BINARY, "serve", "--listen", f"127.0.0.1:{free_port()}", "--data",
                            str(data)] + args, env={**os.environ, "AUTH_SECRET": SECRET, **env},
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (env, args, p.stderr)
        assert want in p.stderr and "expected an integer" in p.stderr, p.stderr
        assert not data.exists()
