"""Network egress by policy against the real server, through the sync and the async client:
``create(network=)`` in its three forms, ``sb.set_network()`` (PATCH of a sandbox), the proxy
environment an exec gets, a refusal by the proxy, and ``sb.egress()``."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Dict, List

import pytest

import sqlfs
from sqlfs_testlib import Server, new_sub

pytestmark = [pytest.mark.server, pytest.mark.egress]

PROXY = "http://127.0.0.1:3"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")
POLICY: Dict[str, List[str]] = {
    "allow": ["pypi.org", "*.pythonhosted.org", "github.com:443", "203.0.113.0/24"],
    "deny": ["upload.pypi.org"],
}
BAD_RULE = "bad host!"


def proxy_env(sb: sqlfs.Sandbox) -> Dict[str, str]:
    """The proxy variables an exec of ``sb`` sees (absent ones left out)."""
    lines = sb.exec("env").stdout.splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    return {k: v for k, v in env.items() if k in PROXY_VARS + ("NO_PROXY",)}


def assert_off(rec: sqlfs.SandboxRecord) -> None:
    assert rec.network is False and rec.network_policy is None and rec.raw["network"] is False


def test_network_is_off_by_default(sb: sqlfs.Sandbox) -> None:
    assert sb.record is not None
    assert_off(sb.record)
    assert proxy_env(sb) == {}


def test_create_with_a_policy(client: sqlfs.Client) -> None:
    sb = client.sandboxes.create(name="net", network=POLICY)
    try:
        rec = sb.record
        assert rec is not None and rec.network is True and rec.network_policy == POLICY
        assert rec.raw["network"] == POLICY
        got = client.sandboxes.get(sb.id)
        assert got.network is True and got.network_policy == POLICY
        listed = [r for r in client.sandboxes.list() if r.id == sb.id]
        assert len(listed) == 1 and listed[0].network_policy == POLICY
        env = proxy_env(sb)
        assert {n: env.get(n) for n in PROXY_VARS} == {n: PROXY for n in PROXY_VARS}
        assert env.get("NO_PROXY") == "localhost,127.0.0.1"
    finally:
        sb.delete()


def test_create_with_true_and_with_a_list(client: sqlfs.Client) -> None:
    on = client.sandboxes.create(network=True)
    short = client.sandboxes.create(network=["pypi.org"])
    try:
        assert on.record is not None and on.record.network is True and on.record.network_policy is None
        assert on.record.raw["network"] is True
        assert proxy_env(on).get("HTTPS_PROXY") == PROXY
        assert short.record is not None and short.record.network is True
        assert short.record.network_policy == {"allow": ["pypi.org"], "deny": []}
    finally:
        on.delete()
        short.delete()


def test_set_network_round_trip(sb: sqlfs.Sandbox, client: sqlfs.Client) -> None:
    rec = sb.set_network(POLICY)
    assert isinstance(rec, sqlfs.SandboxInfo) and sb.record is rec
    assert rec.id == sb.id and rec.name == "pytest"
    assert rec.network is True and rec.network_policy == POLICY
    assert client.sandboxes.get(sb.id).network_policy == POLICY
    assert proxy_env(sb).get("HTTP_PROXY") == PROXY  # the next exec has it

    rec = sb.set_network(True)
    assert rec.network is True and rec.network_policy is None and rec.raw["network"] is True
    assert client.sandboxes.get(sb.id).raw["network"] is True

    rec = sb.set_network(False)
    assert_off(rec)
    assert_off(client.sandboxes.get(sb.id))
    assert proxy_env(sb) == {}

    rec = sb.set_network({"allow": [], "deny": []})
    assert rec.network is True and rec.network_policy == {"allow": [], "deny": []}


def test_set_network_on_an_attached_handle(client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    same = client.sandboxes.attach(sb.id)
    assert same.record is None
    rec = same.set_network(["github.com:443"])
    assert same.record is rec and rec.network_policy == {"allow": ["github.com:443"], "deny": []}
    assert sb.info().network_policy == rec.network_policy


def test_invalid_rule_is_refused_naming_it(client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.ValidationError) as ei:
        client.sandboxes.create(name="bad", network={"allow": ["pypi.org", BAD_RULE], "deny": []})
    assert ei.value.status == 400 and BAD_RULE in str(ei.value)
    assert "bad" not in [r.name for r in client.sandboxes.list()]

    sb.set_network(["pypi.org"])
    with pytest.raises(sqlfs.ValidationError) as ei:
        sb.set_network({"allow": [], "deny": [BAD_RULE]})
    assert ei.value.status == 400 and BAD_RULE in str(ei.value)
    # nothing changed
    assert sb.info().network_policy == {"allow": ["pypi.org"], "deny": []}


def test_patch_takes_only_network(client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    for body in ({"name": "renamed"}, {"network": False, "name": "renamed"}):
        with pytest.raises(sqlfs.ValidationError):
            client.request("PATCH", f"/v1/sandboxes/{sb.id}", json=body)
    info = sb.info()
    assert info.name == "pytest"
    assert_off(info)


def test_egress_on_a_fresh_sandbox_is_empty(sb: sqlfs.Sandbox) -> None:
    assert sb.egress() == []
    sb.set_network(True)
    assert sb.egress(limit=1) == []
    for bad in (0, 1001):
        with pytest.raises(sqlfs.ValidationError):
            sb.egress(limit=bad)


def test_foreign_or_missing_sandbox_is_not_found(server: Server, sb: sqlfs.Sandbox) -> None:
    with server.client() as other:
        theirs = other.sandboxes.attach(sb.id)
        with pytest.raises(sqlfs.NotFoundError):
            theirs.set_network(True)
        with pytest.raises(sqlfs.NotFoundError):
            theirs.egress()
        ghost = other.sandboxes.attach(str(uuid.uuid4()))
        with pytest.raises(sqlfs.NotFoundError):
            ghost.set_network(False)
        with pytest.raises(sqlfs.NotFoundError):
            ghost.egress()
    assert_off(sb.info())  # the other owner changed nothing


def test_refused_request_gets_a_403_and_is_logged(client: sqlfs.Client) -> None:
    sb = client.sandboxes.create(name="deny-all", network={"allow": [], "deny": []})
    try:
        r = sb.exec("curl -s -x $HTTPS_PROXY http://example.test/")
        assert "sqlfs egress:" in r.stdout and "example.test" in r.stdout, r
        assert "is not allowed by this sandbox's network policy" in r.stdout
        status = sb.exec("curl -s -o /dev/null -w '%{http_code}' -x $HTTPS_PROXY http://example.test/")
        assert status.stdout == "403"
        log = sb.egress()
        assert len(log) == 2 and all(isinstance(e, sqlfs.EgressRecord) for e in log)
        first = log[-1]  # newest first
        assert first.allowed is False and first.host == "example.test" and first.port == 80
        assert first.exec_id in (None, r.exec_id)
        assert first.at and isinstance(first.rule, str) and first.raw["host"] == "example.test"
        assert log[0].exec_id in (None, status.exec_id)
        assert [e.host for e in sb.egress(limit=1)] == ["example.test"]
    finally:
        sb.delete()


def run(fn: Any, server: Server) -> Any:
    async def main() -> Any:
        async with sqlfs.AsyncClient(base_url=server.url, auth_secret=server.secret, sub=new_sub()) as fs:
            return await fn(fs)

    return asyncio.run(main())


def test_async_set_network_and_egress(server: Server) -> None:
    async def body(fs: sqlfs.AsyncClient) -> None:
        sb = await fs.sandboxes.create(name="async-net", network=["pypi.org"])
        try:
            assert sb.record is not None and sb.record.network_policy == {"allow": ["pypi.org"], "deny": []}
            rec = await sb.set_network(POLICY)
            assert isinstance(rec, sqlfs.SandboxInfo) and sb.record is rec and rec.network_policy == POLICY
            rec = await sb.set_network(True)
            assert rec.network is True and rec.network_policy is None
            rec = await sb.set_network(False)
            assert_off(rec)
            assert_off(await fs.sandboxes.get(sb.id))
            with pytest.raises(sqlfs.ValidationError) as ei:
                await sb.set_network([BAD_RULE])
            assert BAD_RULE in str(ei.value)
            assert await sb.egress() == []
            await sb.set_network({"allow": [], "deny": []})
            r = await sb.exec("curl -s -x $HTTPS_PROXY http://example.test/")
            assert "sqlfs egress:" in r.stdout
            (e,) = await sb.egress(limit=10)
            assert e.allowed is False and e.host == "example.test"
            with pytest.raises(sqlfs.NotFoundError):
                await fs.sandboxes.attach(str(uuid.uuid4())).egress()
        finally:
            await sb.delete()

    run(body, server)
