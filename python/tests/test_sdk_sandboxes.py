"""client.sandboxes.* and auth against the real server."""

from __future__ import annotations

import time
import uuid

import pytest

import sqlfs
from sqlfs_testlib import Server, new_sub

pytestmark = pytest.mark.server


def test_create_returns_sandbox_with_record(client: sqlfs.Client) -> None:
    sb = client.sandboxes.create(
        name="rec", env={"GREETING": "hi"}, files={"/home/user/a.txt": "A\n"}, python=True
    )
    try:
        assert isinstance(sb, sqlfs.Sandbox)
        rec = sb.record
        assert isinstance(rec, sqlfs.SandboxRecord)
        assert rec.id == sb.id and uuid.UUID(sb.id).version == 4 and sb.id == sb.id.lower()
        assert rec.name == "rec" == sb.name
        assert rec.python is True and rec.javascript is False and rec.network is False
        assert rec.created_at and rec.created_at.endswith("Z")
        assert rec.owner
        assert rec.raw["id"] == sb.id
        assert sb.fs.read_text("/home/user/a.txt") == "A\n"
        assert sb.exec('printf %s "$GREETING"').stdout == "hi"
    finally:
        sb.delete()


def test_create_defaults(client: sqlfs.Client) -> None:
    sb = client.sandboxes.create()
    try:
        assert sb.record is not None and sb.record.name is None
        assert not sb.record.python and not sb.record.javascript and not sb.record.network
        r = sb.exec("pwd; test -d /tmp && stat -c %a /tmp")
        assert r.stdout.split() == ["/home/user", "1777"]
    finally:
        sb.delete()


def test_list_only_mine_newest_first(server: Server) -> None:
    with server.client() as a, server.client() as other:
        s1 = a.sandboxes.create(name="one")
        time.sleep(0.05)  # distinct createdAt (millisecond resolution)
        s2 = a.sandboxes.create(name="two")
        theirs = other.sandboxes.create(name="theirs")
        try:
            recs = a.sandboxes.list()
            assert all(isinstance(r, sqlfs.SandboxRecord) for r in recs)
            ids = [r.id for r in recs]
            assert ids == [s2.id, s1.id]
            assert theirs.id not in ids
            assert [r.id for r in other.sandboxes.list()] == [theirs.id]
        finally:
            s1.delete()
            s2.delete()
            theirs.delete()


def test_get_returns_info_and_last_used(client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    info = client.sandboxes.get(sb.id)
    assert isinstance(info, sqlfs.SandboxInfo)
    assert info.id == sb.id and info.name == "pytest"
    sb.exec("true")
    after = sb.info()
    assert after.last_used_at is not None
    assert sb.record is after


def test_attach_makes_no_request_and_works(client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    ghost = client.sandboxes.attach(str(uuid.uuid4()))
    assert ghost.record is None
    with pytest.raises(sqlfs.NotFoundError) as ei:
        ghost.exec("true")
    assert ei.value.status == 404
    same = client.sandboxes.attach(sb.id)
    same.fs.write("/home/user/x", "1")
    assert sb.fs.read_text("/home/user/x") == "1"


def test_delete(client: sqlfs.Client) -> None:
    sb = client.sandboxes.create()
    client.sandboxes.delete(sb.id)
    with pytest.raises(sqlfs.NotFoundError) as ei:
        client.sandboxes.get(sb.id)
    assert ei.value.code == "SANDBOX_NOT_FOUND"
    sb2 = client.sandboxes.create()
    sb2.delete()
    with pytest.raises(sqlfs.NotFoundError):
        sb2.delete()


def test_foreign_sandbox_looks_missing(server: Server) -> None:
    with server.client() as owner, server.client() as intruder:
        sb = owner.sandboxes.create()
        try:
            for action in (
                lambda: intruder.sandboxes.get(sb.id),
                lambda: intruder.sandboxes.attach(sb.id).fs.read("/home/user"),
                lambda: intruder.sandboxes.attach(sb.id).exec("true"),
                lambda: intruder.sandboxes.delete(sb.id),
            ):
                with pytest.raises(sqlfs.NotFoundError):
                    action()
            assert owner.sandboxes.get(sb.id).id == sb.id
        finally:
            sb.delete()


def test_tenant_separates_owners(server: Server) -> None:
    sub = new_sub()
    with server.client(sub=sub, tenant="t1") as t1, server.client(sub=sub, tenant="t2") as t2:
        sb = t1.sandboxes.create()
        try:
            assert sb.id in [r.id for r in t1.sandboxes.list()]
            assert sb.id not in [r.id for r in t2.sandboxes.list()]
        finally:
            sb.delete()


def _lifetime(token: str) -> int:
    """exp - iat of a JWT (its payload read without checking the signature)."""
    import base64
    import json

    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["exp"]) - int(claims["iat"])


def test_token_argument_and_expires_in(server: Server) -> None:
    # expires_in is sent only when given: without it the server's default (30d) applies
    with server.client() as default:
        default.sandboxes.list()
        assert _lifetime(default.token) == 30 * 86400
    with server.client(expires_in="2h") as minting:
        token = minting.token
        sb = minting.sandboxes.create()
        assert _lifetime(token) == 7200
    try:
        with sqlfs.Client(base_url=server.url, token=token) as c:
            assert sb.id in [r.id for r in c.sandboxes.list()]
    finally:
        with sqlfs.Client(base_url=server.url, token=token) as c:
            c.sandboxes.delete(sb.id)


def test_caller_owned_http_client_is_not_closed(server: Server) -> None:
    import httpx

    with httpx.Client() as http:
        with server.client(http_client=http) as c:
            c.sandboxes.list()
        assert not http.is_closed
        with server.client(http_client=http) as c:
            assert isinstance(c.sandboxes.list(), list)
