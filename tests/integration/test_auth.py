"""Auth (API.md §2): bootstrap, admin, bearer verification, rate limits."""
import base64
import hashlib
import hmac
import json
import time

import httpx

from conftest import ADMIN_SECRET, SECRET, assert_error


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


def test_rate_limit_with_retry_after(fresh_server):
    s = fresh_server({"AUTH_RATE_LIMIT_MAX": "3", "AUTH_RATE_LIMIT_WINDOW_MS": "60000"})
    codes = []
    for _ in range(5):
        r = httpx.post(s.url + "/v1/auth/bootstrap", json={"sub": "a"},
                       headers={"X-Auth-Secret": SECRET})
        codes.append(r.status_code)
    assert codes[:3] == [201, 201, 201]
    assert codes[3] == 429
    body = assert_error(r, 429, "RATE_LIMITED")
    assert body["retryable"] is True
    assert 1 <= int(r.headers["retry-after"]) <= 60
