"""Auth (docs/API.md "Auth"): bootstrap, admin, bearer verification, rate limits."""
import base64
import concurrent.futures
import datetime
import hashlib
import hmac
import json
import os
import subprocess
import time

import httpx

from conftest import ADMIN_SECRET, BINARY, SECRET, assert_error, free_port, status


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


def claims_of(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_token_lifetime_default_and_maximum(server):
    """Default 30d; at most TOKEN_MAX_EXPIRES (365d), so "never" is refused by default."""
    h = {"X-Auth-Secret": SECRET}
    r = httpx.post(server.url + "/v1/auth/bootstrap", json={"sub": "x"}, headers=h)
    assert r.status_code == 201
    c = claims_of(r.json()["token"])
    assert c["exp"] - c["iat"] == 30 * 86400
    r = httpx.post(server.url + "/v1/auth/bootstrap", json={"sub": "x", "expiresIn": "1y"},
                   headers=h)
    assert r.status_code == 201
    c = claims_of(r.json()["token"])
    assert c["exp"] - c["iat"] == 365 * 86400
    for too_long in ("never", "366d", "2y"):
        r = httpx.post(server.url + "/v1/auth/bootstrap",
                       json={"sub": "x", "expiresIn": too_long}, headers=h)
        body = assert_error(r, 400, "INVALID_INPUT")
        assert "at most 1y" in body["error"] and "TOKEN_MAX_EXPIRES" in body["error"], body


def test_token_lifetime_settings(fresh_server):
    s = fresh_server({"TOKEN_DEFAULT_EXPIRES": "2h", "TOKEN_MAX_EXPIRES": "1d"})
    r = bootstrap(s)
    assert r.status_code == 201
    c = claims_of(r.json()["token"])
    assert c["exp"] - c["iat"] == 7200
    expires_at = datetime.datetime.fromisoformat(r.json()["expiresAt"].replace("Z", "+00:00"))
    assert abs(expires_at.timestamp() - (c["iat"] + 7200)) < 1
    tok = r.json()["token"]
    r = admin(s, tok)  # the admin route follows the same settings
    assert r.status_code == 201
    c = claims_of(r.json()["token"])
    assert c["exp"] - c["iat"] == 7200 and c["jti"]
    assert_error(bootstrap(s, body={"sub": "a", "expiresIn": "25h"}), 400, "INVALID_INPUT")
    assert_error(admin(s, tok, body={"sub": "a", "expiresIn": "2d"}), 400, "INVALID_INPUT")
    assert bootstrap(s, body={"sub": "a", "expiresIn": "24h"}).status_code == 201
    st = status(s)["auth"]
    assert st["tokenDefaultExpires"] == "2h" and st["tokenMaxExpires"] == "1d"
    # never, only when the operator allows it
    s2 = fresh_server({"TOKEN_MAX_EXPIRES": "never"})
    r = bootstrap(s2, body={"sub": "x", "expiresIn": "never"})
    assert r.status_code == 201 and r.json()["expiresAt"] is None, r.text
    assert "exp" not in claims_of(r.json()["token"])
    assert r.json()["tenant"] == "default"
    c = claims_of(bootstrap(s2).json()["token"])
    assert c["exp"] - c["iat"] == 30 * 86400


def start_refused(tmp_path, env, args=(), data=None):
    """Runs `sqlfs serve` that must refuse to start: (returncode, stderr)."""
    data = data or tmp_path / "refused"
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_SECRET", "TOKEN"))}
    p = subprocess.run([BINARY, "serve", "--listen", f"127.0.0.1:{free_port()}", "--data",
                        str(data)] + list(args), env={**full, **env},
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr


def test_short_secrets_refused_at_start(tmp_path):
    short = "0123456789abcdef0123456789abcde"  # 31 bytes
    for env in ({"AUTH_SECRET": short},
                {"AUTH_SECRET": SECRET, "AUTH_SECRET_PREVIOUS": short}):
        rc, err = start_refused(tmp_path, env)
        name = "AUTH_SECRET_PREVIOUS" if "AUTH_SECRET_PREVIOUS" in env else "AUTH_SECRET"
        assert rc == 2, err
        assert err == f"sqlfs: configuration: {name} is 31 bytes: a signing secret must be at " \
                      "least 32 bytes (make one with: openssl rand -hex 32)\n", err
        assert short not in err
        assert not (tmp_path / "refused").exists()  # nothing was touched
    # the data dir's file, when an operator wrote a short one
    data = tmp_path / "d"
    data.mkdir(mode=0o700)
    (data / "auth_secret").write_text("short-secret\n")
    os.chmod(data / "auth_secret", 0o600)
    rc, err = start_refused(tmp_path, {}, data=data)
    assert rc == 1 and "auth_secret in the data directory is 12 bytes" in err, err
    assert "openssl rand -hex 32" in err and "short-secret" not in err
    assert (data / "auth_secret").read_text() == "short-secret\n"  # not replaced
    # the same secret as current and previous is a mistake
    rc, err = start_refused(tmp_path, {"AUTH_SECRET": SECRET, "AUTH_SECRET_PREVIOUS": SECRET})
    assert rc == 1 and "AUTH_SECRET_PREVIOUS is the current secret" in err, err
    # token settings that cannot work
    for env, args, want in [({"TOKEN_DEFAULT_EXPIRES": "400d"}, [], "longer than"),
                            ({"TOKEN_MAX_EXPIRES": "soon"}, [], "TOKEN_MAX_EXPIRES: expected"),
                            ({}, ["--tokens-not-before", str(int(time.time()) + 3600)],
                             "in the future")]:
        rc, err = start_refused(tmp_path, {"AUTH_SECRET": SECRET, **env}, args)
        assert rc == 2 and want in err, err


def test_cli_token_refuses_a_short_secret(tmp_path):
    env = {**os.environ, "AUTH_SECRET": "0123456789abcdef0123456789abcde"}
    p = subprocess.run([BINARY, "token", "--sub", "a"], env=env, capture_output=True, text=True)
    assert p.returncode == 1 and p.stdout == "", p
    assert "AUTH_SECRET is 31 bytes" in p.stderr
    env["AUTH_SECRET"] = SECRET
    p = subprocess.run([BINARY, "token", "--sub", "a"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_key_rotation_accepts_the_previous_secret_until_it_is_removed(fresh_server):
    old, new = SECRET, "rotated-secret-0123456789abcdef-0123456789"
    s = fresh_server({"AUTH_SECRET": old})
    old_tok = s.token("rot")
    # rotate: the new secret signs, the old one is still accepted
    s.env.update({"AUTH_SECRET": new, "AUTH_SECRET_PREVIOUS": old})
    s.restart()
    assert get_list(s, old_tok).status_code == 200
    assert get_list(s, old_tok).status_code == 200
    assert_error(bootstrap(s, secret=old), 403, "FORBIDDEN")  # only the current one mints
    r = bootstrap(s, secret=new, body={"sub": "rot"})
    assert r.status_code == 201
    new_tok = r.json()["token"]
    h, p, sig = new_tok.split(".")
    assert sig == b64url(hmac.new(new.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
    assert get_list(s, new_tok).status_code == 200
    # a token signed with neither secret
    third = forge({"alg": "HS256"}, {"sub": "rot", "iat": int(time.time())}, b"x" * 40)
    assert_error(get_list(s, third), 401, "AUTH_INVALID")
    # an expired token stays expired under the previous secret
    expired = forge({"alg": "HS256"}, {"sub": "rot", "exp": int(time.time()) - 5}, old.encode())
    assert_error(get_list(s, expired), 401, "AUTH_INVALID")
    st = status(s)["auth"]
    assert st["previousSecret"] is True and st["previousSecretUses"] == 2, st
    # the end of the grace period: the previous secret removed
    s.env.pop("AUTH_SECRET_PREVIOUS")
    s.restart()
    assert_error(get_list(s, old_tok), 401, "AUTH_INVALID")
    assert get_list(s, new_tok).status_code == 200
    s.stop()
    log = open(s.log_path).read()
    assert log.count("tokens signed with AUTH_SECRET_PREVIOUS are accepted until it is "
                     "removed") == 1, log[-3000:]
    used = [ln for ln in log.splitlines() if "accepted a token signed with AUTH_SECRET_PREVIOUS"
            in ln]
    assert len(used) == 1 and '"sub":"rot"' in used[0], log[-3000:]
    assert old not in log and new not in log


def test_tokens_not_before_revokes_every_earlier_token(fresh_server):
    s = fresh_server()
    before = s.token("nb")
    no_iat = forge({"alg": "HS256"}, {"sub": "nb"})
    assert get_list(s, no_iat).status_code == 200
    time.sleep(1.1)  # iat has a resolution of one second
    cutoff = int(time.time())
    s.args += ["--tokens-not-before", str(cutoff)]
    s.restart()
    for tok in (before, no_iat):
        body = assert_error(get_list(s, tok), 401, "AUTH_INVALID")
        assert "revoked" in body["error"] and "TOKENS_NOT_BEFORE" in body["error"], body
    after = s.token("nb")  # a new token works
    assert claims_of(after)["iat"] >= cutoff
    assert get_list(s, after).status_code == 200
    assert status(s)["auth"]["tokensNotBefore"] == time.strftime(
        "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(cutoff))


def test_status_wrong_admin_secret_counts_as_an_auth_failure(fresh_server):
    """GET /v1/status is no oracle for guessing ADMIN_SECRET: a wrong one is a failed auth
    attempt like on the admin route, and past the limit even the right one gets 429."""
    s = fresh_server({**DEFAULT_LIMITS, "AUTH_RATE_LIMIT_MAX": "2"})
    ok = {"X-Admin-Secret": ADMIN_SECRET}
    for _ in range(3):  # successes do not count
        assert httpx.get(s.url + "/v1/status", headers=ok).status_code == 200
    for _ in range(2):
        assert_error(httpx.get(s.url + "/v1/status", headers={"X-Admin-Secret": "guess"}), 403,
                     "FORBIDDEN")
    assert_limited(httpx.get(s.url + "/v1/status", headers=ok))
    assert_limited(bootstrap(s))
    assert httpx.get(s.url + "/readyz").status_code == 200  # readiness is not limited


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
