"""POST /mcp, the MCP endpoint (docs/API.md "MCP"): the official MCP TypeScript SDK client drives
every tool through it (tests/mcp/client.mjs), and the protocol's edges are checked with plain
HTTP: auth, JSON-RPC errors, the transport's headers, and a foreign sandbox that looks like a
missing one."""
import json
import os
import shutil
import subprocess

import httpx
import pytest

from conftest import ROOT

MCP_DIR = os.path.join(ROOT, "tests", "mcp")
TOOLS = sorted(["sandbox_create", "sandbox_list", "sandbox_delete", "exec", "read_file",
                "write_file", "edit_file", "list_tree", "commits", "diff", "restore", "fork"])


def rpc(server, token, body, headers=None):
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
         "Accept": "application/json, text/event-stream"}
    h.update(headers or {})
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return httpx.post(server.url + "/mcp", content=data, headers=h, timeout=60)


def call(server, token, name, args, id=1):
    r = rpc(server, token, {"jsonrpc": "2.0", "id": id, "method": "tools/call",
                            "params": {"name": name, "arguments": args}})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()["result"]


def test_sdk_client_drives_every_tool(server):
    if not os.path.exists(os.path.join(MCP_DIR, "node_modules", "@modelcontextprotocol")):
        if not shutil.which("npm"):
            pytest.skip("npm is missing: the MCP SDK client cannot be installed")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=MCP_DIR, check=True)
    p = subprocess.run(["node", "client.mjs", server.url, server.token("mcp-sdk")], cwd=MCP_DIR,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr + p.stdout
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["serverInfo"]["name"] == "sqlfs"
    assert "tools" in out["capabilities"]
    assert out["tools"] == TOOLS
    assert out["allHaveSchemas"]
    assert out["created"] == {"isError": False, "name": "mcp"}
    assert out["exec"]["isError"] is False and out["exec"]["exitCode"] == 3
    assert out["exec"]["stdout"] == "hi\n" and '"exitCode":3' in out["exec"]["text"]
    assert out["write"] == {"path": "/home/user/a.txt", "size": 8}
    assert out["read"] == {"text": "one\ntwo\n", "content": "one\ntwo\n"}
    assert out["edit"]["replacements"] == 1
    assert out["readAfterEdit"] == "one\nthree\n"
    assert "/home/user/a.txt" in out["tree"]
    assert out["versions"] == sorted(out["versions"], reverse=True) and len(out["versions"]) == 3
    assert out["diff"] == [["/home/user/a.txt", "modified"]]
    assert out["restore"]["version"] == out["versions"][0] + 1
    assert out["readAfterRestore"] == "one\ntwo\n"
    assert out["fork"] == {"name": "copy", "differs": True}
    assert out["listed"] == 2
    assert out["missing"]["isError"] is True and "ENOENT" in out["missing"]["text"]
    assert out["deleted"]["deleted"] is True
    assert out["gone"]["isError"] is True and "SANDBOX_NOT_FOUND" in out["gone"]["text"]
    assert out["ping"] == {}


def test_auth_is_the_api_bearer_token(server):
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert rpc(server, "not-a-token", body).status_code == 401
    r = httpx.post(server.url + "/mcp", json=body)
    assert r.status_code == 401
    assert rpc(server, server.token(), body).json() == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_get_and_delete_are_405(server):
    for method in ("GET", "DELETE"):
        r = httpx.request(method, server.url + "/mcp",
                          headers={"Authorization": f"Bearer {server.token()}"})
        assert r.status_code == 405
        assert "POST" in r.headers["allow"]


def test_foreign_sandbox_is_a_missing_one(server):
    mine = call(server, server.token("mcp-owner"), "sandbox_create", {})
    sid = mine["structuredContent"]["id"]
    other = server.token("mcp-stranger")
    foreign = call(server, other, "exec", {"sandboxId": sid, "script": "true"})
    none = "00000000-0000-4000-8000-000000000000"
    missing = call(server, other, "exec", {"sandboxId": none, "script": "true"})
    assert foreign["isError"] is True and missing["isError"] is True
    # the same answer, the id aside
    same = missing["content"][0]["text"].replace(none, sid)
    assert foreign["content"][0]["text"] == same
    assert json.loads(same)["code"] == "SANDBOX_NOT_FOUND"
    assert call(server, other, "read_file", {"sandboxId": sid, "path": "/"})["content"][0]["text"] \
        == same
    assert call(server, server.token("mcp-owner"), "sandbox_delete",
                {"sandboxId": sid})["structuredContent"]["deleted"] is True


def test_jsonrpc_errors(server):
    t = server.token()
    r = rpc(server, t, "{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    assert r.json()["id"] is None
    r = rpc(server, t, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert r.json()["error"]["code"] == -32600
    r = rpc(server, t, {"jsonrpc": "1.0", "id": 1, "method": "ping"})
    assert r.json()["error"]["code"] == -32600
    r = rpc(server, t, {"jsonrpc": "2.0", "id": 7, "method": "resources/list"})
    assert r.status_code == 200
    assert r.json()["id"] == 7 and r.json()["error"]["code"] == -32601
    r = rpc(server, t, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {}})
    assert r.json()["error"]["code"] == -32602
    r = rpc(server, t, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": "no_such_tool", "arguments": {}}})
    assert r.json()["error"]["code"] == -32602
    r = rpc(server, t, {"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {}})
    assert r.json()["error"]["code"] == -32602
    # bad arguments are a tool error the model can read and fix
    res = call(server, t, "exec", {"script": "true"})
    assert res["isError"] is True and "sandboxId" in res["content"][0]["text"]
    res = call(server, t, "exec", {"sandboxId": 5, "script": "true"})
    assert res["isError"] is True and "INVALID_INPUT" in res["content"][0]["text"]
    res = call(server, t, "sandbox_list", {"bogus": 1})
    assert res["isError"] is True and "bogus" in res["content"][0]["text"]


def test_initialize_and_transport_headers(server):
    t = server.token()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    r = rpc(server, t, init)
    res = r.json()["result"]
    assert res["protocolVersion"] == "2025-06-18"
    assert res["serverInfo"]["name"] == "sqlfs" and res["serverInfo"]["version"]
    assert res["capabilities"]["tools"] == {"listChanged": False}
    assert "mcp-session-id" not in r.headers
    init["params"]["protocolVersion"] = "1999-01-01"
    assert rpc(server, t, init).json()["result"]["protocolVersion"] == "2025-11-25"
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    r = rpc(server, t, note, {"MCP-Protocol-Version": "2025-06-18"})
    assert r.status_code == 202 and r.content == b""
    r = rpc(server, t, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"MCP-Protocol-Version": "1900-01-01"})
    assert r.status_code == 400
    r = rpc(server, t, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = rpc(server, t, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"Origin": server.url})
    assert r.status_code == 200


def test_exec_timeout_is_a_result(server):
    t = server.token()
    sid = call(server, t, "sandbox_create", {})["structuredContent"]["id"]
    res = call(server, t, "exec", {"sandboxId": sid, "script": "echo a; sleep 5",
                                   "timeoutMs": 300})
    assert "isError" not in res
    assert res["structuredContent"]["timedOut"] is True
    assert res["structuredContent"]["stdout"] == "a\n"
    call(server, t, "sandbox_delete", {"sandboxId": sid})


def test_binary_output_is_a_result_and_answers_are_bounded(server):
    t = server.token()
    sid = call(server, t, "sandbox_create", {})["structuredContent"]["id"]
    # NUL bytes in the output: the exec ran and committed, and says so
    res = call(server, t, "exec", {"sandboxId": sid,
                                   "script": "printf 'a\\0b'; echo x > f.txt"})
    assert "isError" not in res, res
    assert res["structuredContent"]["stdout"] == "a\x00b"
    assert res["structuredContent"]["exitCode"] == 0
    # each stream is cut at 1 MiB for a tool, flagged
    res = call(server, t, "exec", {"sandboxId": sid,
                                   "script": "head -c 3000000 /dev/zero | tr '\\0' 'a';"
                                             " head -c 2000000 /dev/zero >&2"})
    sc = res["structuredContent"]
    assert len(sc["stdout"]) == 1 << 20 and sc["stdoutTruncated"] is True
    assert len(sc["stderr"]) == 1 << 20 and sc["stderrTruncated"] is True
    # and so is a file's text
    call(server, t, "exec", {"sandboxId": sid,
                             "script": "head -c 3000000 /dev/zero | tr '\\0' 'b' > big.txt"})
    res = call(server, t, "read_file", {"sandboxId": sid, "path": "/home/user/big.txt"})
    sc = res["structuredContent"]
    assert len(sc["content"]) == 1 << 20 and sc["truncated"] is True and sc["size"] == 3000000
    call(server, t, "sandbox_delete", {"sandboxId": sid})
