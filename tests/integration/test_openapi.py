"""GET /openapi.json and docs/openapi.json, the OpenAPI 3.1 document of the API, agree with the
server.

- The server sends the document it was built with, without credentials, at its own version.
- The document has every route of the route table (src/api/routes.c) and nothing else; every
  operation answers a 2xx, a 401 when it needs a bearer token (the JWT or METRICS_TOKEN), a 404
  where the route exists only on some servers, takes an Idempotency-Key exactly where the table
  says so, and every $ref resolves.
- An OpenAPI 3.1 validator from npm accepts it (tests/openapi/validate.mjs).
- Every operation is called on a real server (one with METRICS_TOKEN, so that it has every
  route) and its answer checked against what the document says of that status: the status must
  be one the operation lists, a header it names (X-Request-Id on every answer) must be there
  when required and match its schema, and a JSON body must match its schema (JSON Schema
  2020-12, as OpenAPI 3.1 has it) with no member the schema does not name.
"""
import collections
import copy
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import uuid

import httpx
import pytest
from jsonschema import Draft202012Validator

from conftest import ADMIN_SECRET, BINARY, ROOT, SECRET, make_server

DOC_PATH = os.path.join(ROOT, "docs", "openapi.json")
NPM_DIR = os.path.join(ROOT, "tests", "openapi")
METHODS = {"get", "put", "post", "patch", "delete"}

with open(DOC_PATH, encoding="utf-8") as f:
    DOC = json.load(f)


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


Route = collections.namedtuple("Route", "method pattern auth idempotent available")


def route_table():
    """A Route of every entry of src/api/routes.c's table: its method, pattern, whether it
    needs a bearer token, whether it takes an Idempotency-Key, and the name of the function
    saying whether the route exists on this server (None: it always does)."""
    src = read("src/api/routes.c")
    macros = dict(re.findall(r'#define (\w+) "([^"]*)"', src))
    table = src[src.index("http_routes[] = {"):]
    table = table[:table.index("\n};")]
    routes = []
    for entry in re.findall(r"\{(\"[A-Z]+\".*?)\}", table, re.S):
        fields = [f.strip() for f in entry.split(",")]
        assert len(fields) == 11, entry
        pattern = "".join(macros[tok] if tok in macros else tok.strip('"')
                          for tok in re.findall(r'"[^"]*"|\w+', fields[1]))
        routes.append(Route(fields[0].strip('"'), pattern, fields[3] == "true",
                            fields[9] == "true", None if fields[10] == "NULL" else fields[10]))
    assert len(routes) > 30
    return routes


def template_of(pattern):
    """The route pattern in OpenAPI form with every parameter as {}: ":id" and the "*"
    capture are one path parameter each."""
    return pattern.replace(":id", "{}").replace("*", "{}")


def operations():
    """(METHOD, path, operation) of the document."""
    for path, item in DOC["paths"].items():
        for method, o in item.items():
            if method in METHODS:
                yield method.upper(), path, o


def resolve(node, doc=DOC):
    """Follows a $ref of the document (a JSON pointer into it)."""
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        assert node["$ref"].startswith("#/"), node["$ref"]
        for part in node["$ref"][2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def test_the_server_sends_the_document_at_its_version(server):
    r = httpx.get(server.url + "/openapi.json")  # no credentials
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    with open(DOC_PATH, "rb") as f:
        assert r.content == f.read()  # the document the binary was built with
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    version = subprocess.run([BINARY, "version"], capture_output=True, text=True).stdout.split()
    assert doc["info"]["version"] == version[-1]
    assert httpx.head(server.url + "/openapi.json").status_code == 200


def test_every_route_is_documented_and_nothing_else():
    table = {(m, template_of(p)) for m, p, *_ in route_table()}
    documented = {(m, re.sub(r"\{[^}]+\}", "{}", p)) for m, p, _ in operations()}
    assert table - documented == set(), "routes the document lacks"
    assert documented - table == set(), "operations the server does not have"
    # the sandbox id is {id} wherever it appears
    for _, path, _ in operations():
        if path.startswith("/v1/sandboxes/{"):
            assert path.startswith("/v1/sandboxes/{id}"), path


def effective_security(o):
    return o.get("security", DOC.get("security", []))


def test_every_operation_says_what_it_answers():
    routes = {(r.method, template_of(r.pattern)): r for r in route_table()}
    ids = set()
    for method, path, o in operations():
        where = f"{method} {path}"
        route = routes[(method, re.sub(r"\{[^}]+\}", "{}", path))]
        assert o.get("operationId") and o["operationId"] not in ids, where
        ids.add(o["operationId"])
        assert o.get("summary"), where
        statuses = set(o["responses"])
        assert any(s.startswith("2") for s in statuses), where
        assert all(re.fullmatch(r"[1-5]\d\d", s) for s in statuses), where
        security = effective_security(o)
        bearer = any("bearerAuth" in req for req in security)
        assert bearer == route.auth, where
        # a bearer token of any scheme (the JWT, METRICS_TOKEN) is refused with 401
        if any(DOC["components"]["securitySchemes"][name]["type"] == "http"
               for req in security for name in req):
            assert "401" in statuses, where
        # a route that exists only on some servers says what the others answer
        if "{id}" in path or route.available:
            assert "404" in statuses, where
        # every error answer is the error body (a readiness body aside), or on /mcp a
        # JSON-RPC error response
        bodies = [{"$ref": "#/components/schemas/Error"}]
        if path == "/mcp":
            bodies.append({"$ref": "#/components/schemas/McpErrorResponse"})
        for status in statuses - {"408"}:
            if status[0] in "45":
                content = resolve(o["responses"][status])["content"]["application/json"]
                schema = content["schema"]
                refs = [schema] + schema.get("oneOf", [])
                assert any(b in refs for b in bodies), (where, status)
        params = [resolve(p) for p in DOC["paths"][path].get("parameters", [])]
        params += [resolve(p) for p in o.get("parameters", [])]
        names = {(p["in"], p["name"]) for p in params}
        assert len(names) == len(params), where
        assert {n for i, n in names if i == "path"} == set(re.findall(r"\{([^}]+)\}", path)), \
            where
        assert (("header", "Idempotency-Key") in names) == route.idempotent, where


def test_every_ref_resolves():
    def walk(node, where):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                try:
                    assert resolve(node) is not None
                except (KeyError, AssertionError):
                    pytest.fail(f"{where}: $ref {node['$ref']} does not resolve")
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(DOC, "#")


def test_the_error_codes_are_the_servers():
    codes = set(re.findall(r'\{"([A-Z_]+)", \d{3},', read("src/util/err.c")))
    assert set(DOC["components"]["schemas"]["Error"]["properties"]["code"]["enum"]) == codes


def test_every_schema_is_json_schema_2020_12():
    for name, schema in DOC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)


def test_an_openapi_validator_accepts_the_document():
    """@seriousme/openapi-schema-validator (the OpenAPI 3.1 schema, $refs) and Ajv in strict
    mode (each schema as JSON Schema 2020-12), installed from tests/openapi/package-lock.json."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        pytest.skip("node and npm are needed to run the OpenAPI validator (tests/openapi)")
    stamp = os.path.join(NPM_DIR, "node_modules", ".package-lock.json")
    lock = os.path.join(NPM_DIR, "package-lock.json")
    if not os.path.exists(stamp) or os.path.getmtime(stamp) < os.path.getmtime(lock):
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NPM_DIR,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([node, os.path.join(NPM_DIR, "validate.mjs"), DOC_PATH],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid OpenAPI 3.1" in r.stdout


def test_the_validator_refuses_a_broken_document(tmp_path):
    """The check above can fail: a misspelt schema keyword and a dangling $ref are named."""
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(NPM_DIR, "node_modules")):
        pytest.skip("the OpenAPI validator is not installed (tests/openapi)")
    bad = copy.deepcopy(DOC)
    bad["components"]["schemas"]["Commit"]["requried"] = ["version"]
    bad["components"]["schemas"]["Tree"]["items"] = {"$ref": "#/components/schemas/Nope"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    r = subprocess.run([node, os.path.join(NPM_DIR, "validate.mjs"), str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Nope" in r.stderr and "requried" in r.stderr, r.stderr


# ---- real answers against the document -----------------------------------------------------

def strict_document():
    """The document with every object schema closed (unevaluatedProperties: false), so that an
    answer with a member its schema does not name fails. A schema that another extends with
    allOf stays open where it is extended; its other uses get a closed alias."""
    doc = copy.deepcopy(DOC)
    schemas = doc["components"]["schemas"]
    extended = {s["$ref"].rsplit("/", 1)[1] for v in schemas.values()
                for s in v.get("allOf", [])}

    def close(node, top):
        if isinstance(node, list):
            return [close(v, False) for v in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k == "allOf":
                out[k] = v  # refs of extended schemas stay as they are
            elif k == "$ref" and v.rsplit("/", 1)[1] in extended:
                out[k] = v + "__closed"
            else:
                out[k] = close(v, False)
        if "properties" in out and not (top and top in extended):
            out["unevaluatedProperties"] = False
        return out

    for name in list(schemas):
        schemas[name] = close(schemas[name], name)
    for name in extended:
        schemas[name + "__closed"] = {"$ref": "#/components/schemas/" + name,
                                      "unevaluatedProperties": False}
    doc["paths"] = close(doc["paths"], None)
    for part in ("responses", "headers"):
        doc["components"][part] = close(doc["components"][part], None)
    return doc


STRICT = strict_document()
ROOT_SCHEMA = {k: v for k, v in STRICT.items() if k == "components"}


def validate(instance, schema, where):
    """Validates against a schema of the (closed) document, its $refs resolved in it."""
    errors = sorted(Draft202012Validator(dict(ROOT_SCHEMA, **schema)).iter_errors(instance),
                    key=lambda e: list(e.path))
    assert not errors, f"{where}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])


class Checker:
    """Checks answers against the operations of the document, and remembers which operations
    it has seen answer."""

    def __init__(self):
        self.seen = set()

    def __call__(self, resp, method, path):
        where = f"{method} {path} → {resp.status_code}"
        o = STRICT["paths"][path][method.lower()]
        assert str(resp.status_code) in o["responses"], \
            f"{where}, which the document does not list: {resp.text[:300]}"
        self.seen.add((method, path))
        spec = resolve(o["responses"][str(resp.status_code)], STRICT)
        for name, h in spec.get("headers", {}).items():
            h = resolve(h, STRICT)
            value = resp.headers.get(name)
            if value is None:
                assert not h.get("required"), f"{where}: no {name} header"
                continue
            if "x-json-schema" in h:
                validate(json.loads(value), h["x-json-schema"], f"{where} header {name}")
            elif h["schema"].get("type") == "integer":
                validate(int(value), h["schema"], f"{where} header {name}")
            else:
                validate(value, h["schema"], f"{where} header {name}")
        content = spec.get("content")
        if not content:
            assert resp.content == b"", where
            return None
        # the media type as sent (a key with parameters), else without its parameters
        full = resp.headers.get("content-type", "")
        ctype = full.split(";")[0].strip()
        media = content.get(full) or content.get(ctype) or content.get("*/*")
        assert media, f"{where}: Content-Type {full} is not one of {list(content)}"
        if ctype == "application/json":
            body = resp.json()
            validate(body, media["schema"], where)
            return body
        if ctype == "text/event-stream":
            return self.events(resp.text, media, where)
        return resp.content

    @staticmethod
    def events(text, media, where):
        """Validates each Server-Sent Event against the schema of its event name."""
        events = []
        for block in text.split("\n\n"):
            lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
            if not lines:
                continue
            name = next(ln[7:] for ln in lines if ln.startswith("event: "))
            data = json.loads("".join(ln[6:] for ln in lines if ln.startswith("data: ")))
            assert name in media["x-sse-events"], f"{where}: event {name}"
            validate(data, media["x-sse-events"][name], f"{where} event {name}")
            events.append((name, data))
        assert events[0][0] == "start" and events[-1][0] == "exit", events
        return events


def tar_bytes(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


METRICS_TOKEN = "openapi-scrape-token-0123456789"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@pytest.fixture(scope="module")
def mserver(tmp_path_factory):
    """A server with METRICS_TOKEN, so that it has every route of the table."""
    s = make_server(str(tmp_path_factory.mktemp("openapi")),
                    {"AUTH_RATE_LIMIT_MAX": "100000", "METRICS_TOKEN": METRICS_TOKEN}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def mapi(mserver):
    with mserver.client() as c:
        yield c


def test_every_operation_answers_as_documented(mserver, mapi, server):
    check = Checker()
    api = mapi
    url = mserver.url
    P = "/v1/sandboxes/{id}"

    # health, the document, metrics, auth
    r = httpx.get(url + "/healthz", headers={"X-Request-Id": "oas-1"})
    check(r, "GET", "/healthz")
    assert r.headers["x-request-id"] == "oas-1"  # the client's own id comes back
    check(httpx.get(url + "/readyz"), "GET", "/readyz")
    check(httpx.get(url + "/openapi.json"), "GET", "/openapi.json")
    check(httpx.get(url + "/v1/status", headers={"X-Admin-Secret": ADMIN_SECRET}),
          "GET", "/v1/status")
    check(httpx.get(url + "/v1/status"), "GET", "/v1/status")  # 403
    r = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and r.headers["content-type"] == METRICS_TYPE, r.text
    assert METRICS_TYPE in DOC["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert b"# TYPE sqlfs_execs_running gauge" in check(r, "GET", "/metrics")
    r = httpx.get(url + "/metrics")
    assert check(r, "GET", "/metrics")["code"] == "AUTH_REQUIRED"  # 401
    r = httpx.get(url + "/metrics", headers={"Authorization": api.headers["Authorization"]})
    assert check(r, "GET", "/metrics")["code"] == "AUTH_INVALID"  # 401: not the metrics token
    if not server.env.get("METRICS_TOKEN"):
        r = httpx.get(server.url + "/metrics")
        assert check(r, "GET", "/metrics")["code"] == "NOT_FOUND"  # 404: no such route there
    check(httpx.post(url + "/v1/auth/bootstrap", json={"sub": "oas", "expiresIn": "1h"},
                     headers={"X-Auth-Secret": SECRET}), "POST", "/v1/auth/bootstrap")
    check(httpx.post(url + "/v1/auth/bootstrap", json={"sub": ""},
                     headers={"X-Auth-Secret": SECRET}), "POST", "/v1/auth/bootstrap")  # 400
    check(api.post("/v1/auth/admin", json={"sub": "oas-admin"},
                   headers={"X-Admin-Secret": ADMIN_SECRET}), "POST", "/v1/auth/admin")
    check(httpx.get(url + "/v1/sandboxes"), "GET", "/v1/sandboxes")  # 401

    # MCP
    def mcp(body, **headers):
        data = body if isinstance(body, str) else json.dumps(body)
        return api.post("/mcp", content=data, headers=dict(
            {"Content-Type": "application/json"}, **headers))

    r = mcp({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "oas", "version": "1"}}})
    assert check(r, "POST", "/mcp")["result"]["protocolVersion"] == "2025-06-18"
    r = mcp({"jsonrpc": "2.0", "id": "list", "method": "tools/list"},
            **{"MCP-Protocol-Version": "2025-06-18"})
    assert len(check(r, "POST", "/mcp")["result"]["tools"]) == 12
    r = mcp({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "sandbox_list", "arguments": {}}})
    assert "structuredContent" in check(r, "POST", "/mcp")["result"]
    r = mcp({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "read_file", "arguments": {}}})
    assert check(r, "POST", "/mcp")["result"]["isError"] is True  # bad arguments
    assert check(mcp({"jsonrpc": "2.0", "id": 4, "method": "ping"}),
                 "POST", "/mcp")["result"] == {}
    r = mcp({"jsonrpc": "2.0", "id": 5, "method": "nope"})
    assert check(r, "POST", "/mcp")["error"]["code"] == -32601  # 200
    r = mcp({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert r.status_code == 202 and check(r, "POST", "/mcp") is None
    r = mcp("{not json")
    assert r.status_code == 400 and check(r, "POST", "/mcp")["error"]["code"] == -32700
    r = mcp({"jsonrpc": "2.0", "id": 6, "method": "ping"}, **{"MCP-Protocol-Version": "1999"})
    assert r.status_code == 400 and check(r, "POST", "/mcp")["error"]["code"] == -32600
    r = mcp({"jsonrpc": "2.0", "id": 7, "method": "ping"}, Origin="http://elsewhere.example")
    assert r.status_code == 403 and check(r, "POST", "/mcp")["id"] is None
    r = httpx.post(url + "/mcp", json={"jsonrpc": "2.0", "id": 8, "method": "ping"})
    assert check(r, "POST", "/mcp")["code"] == "AUTH_REQUIRED"  # 401

    # sandboxes
    sbx = check(api.post("/v1/sandboxes", json={
        "name": "oas", "env": {"A": "1"}, "files": {"/home/user/seed.txt": "seed\n"},
        "network": {"allow": ["pypi.org:443"]}}), "POST", "/v1/sandboxes")
    sid = sbx["id"]
    s = f"/v1/sandboxes/{sid}"
    check(api.get("/v1/sandboxes"), "GET", "/v1/sandboxes")
    check(api.get(s), "GET", P)
    check(api.get(f"/v1/sandboxes/{uuid.uuid4()}"), "GET", P)  # 404
    assert check(api.patch(s, json={"network": True}), "PATCH", P)["network"] is True
    check(api.patch(s, json={"name": "x"}), "PATCH", P)  # 400

    # files
    F = P + "/files/{path}"
    check(api.put(s + "/files/home/user/a.txt", content=b"hello world\n",
                  headers={"Idempotency-Key": "oas-put-1"}), "PUT", F)
    r = api.get(s + "/files/home/user/a.txt")
    assert check(r, "GET", F) == b"hello world\n" and "x-fs-stat" in r.headers
    check(api.get(s + "/files/home/user/a.txt", headers={"Range": "bytes=0-4"}), "GET", F)
    check(api.get(s + "/files/home/user/a.txt", headers={"Range": "bytes=100-"}), "GET", F)
    check(api.get(s + "/files/home/user/missing"), "GET", F)  # 404 ENOENT
    check(api.get(s + "/files/home/user"), "GET", F)  # 400 EISDIR
    check(api.patch(s + "/files/home/user/a.txt",
                    json={"oldString": "world", "newString": "there"}), "PATCH", F)
    check(api.patch(s + "/files/home/user/a.txt",
                    json={"oldString": "absent", "newString": "x"}), "PATCH", F)  # 409
    check(api.post(s + "/mkdir", json={"path": "/home/user/d/e", "recursive": True}),
          "POST", P + "/mkdir")
    check(api.post(s + "/mkdir", json={"path": "/home/user/d"}), "POST", P + "/mkdir")  # 409
    check(api.post(s + "/writeFiles", json={"files": {"/home/user/d/w.txt": "w\n"}}),
          "POST", P + "/writeFiles")
    check(api.post(s + "/writeFiles", json={"files": {"relative": "w\n"}}),
          "POST", P + "/writeFiles")  # 400
    check(api.get(s + "/tree", params={"prefix": "/home/user"}), "GET", P + "/tree")
    check(api.get(s + "/tree", params={"depth": "0"}), "GET", P + "/tree")  # 400
    check(api.delete(s + "/files/home/user/d"), "DELETE", F)  # 409 ENOTEMPTY
    check(api.delete(s + "/files/home/user/d", params={"recursive": "true"}), "DELETE", F)

    # exec
    ex = check(api.post(s + "/exec-sync", json={"script": "echo out; echo err >&2; "
                                                          "echo x > /home/user/e.txt"},
                        headers={"Idempotency-Key": "oas-exec-1"}), "POST", P + "/exec-sync")
    check(api.post(s + "/exec-sync", json={"script": "sleep 5", "timeoutMs": 300}),
          "POST", P + "/exec-sync")  # 408
    check(api.post(s + "/exec-sync", content=b"echo text", headers={
        "Content-Type": "text/plain"}), "POST", P + "/exec-sync")
    check(api.post(s + "/exec-sync", content=b"\x89PNG", headers={
        "Content-Type": "image/png"}), "POST", P + "/exec-sync")  # 415
    check(api.post(s + "/exec-sync", json={"script": "true", "readOnly": True,
                                           "timeoutMs": 0}), "POST", P + "/exec-sync")  # 400
    check(api.post(s + "/exec-sync", json={"script": "touch /home/user/ro",
                                           "readOnly": True}), "POST", P + "/exec-sync")  # 422
    check(api.post(s + "/exec", json={"script": "echo a; echo b >&2; exit 3"}),
          "POST", P + "/exec")
    check(api.post(s + "/exec", json={"script": "touch /home/user/ro", "readOnly": True}),
          "POST", P + "/exec")  # an error event, then exit
    check(api.post(s + "/exec", json={"cwd": "/nowhere", "script": "true"}),
          "POST", P + "/exec")  # 400 before the stream
    check(api.post(s + "/exec-sync-batch", json={"scripts": [
        {"id": "a", "script": "echo a"}, {"id": "b", "script": "exit 4"},
        {"id": "c", "script": "echo c"}], "stopOnError": True}), "POST", P + "/exec-sync-batch")
    check(api.post(s + "/exec-sync-batch", json={"scripts": []}),
          "POST", P + "/exec-sync-batch")  # 400
    check(api.get(s + "/execs", params={"limit": 2}), "GET", P + "/execs")
    check(api.get(s + "/execs", params={"before": "0" * 32}), "GET", P + "/execs")  # 404
    check(api.get(s + f"/execs/{ex['execId']}"), "GET", P + "/execs/{execId}")
    check(api.get(s + "/execs/" + "f" * 32), "GET", P + "/execs/{execId}")  # 404
    check(api.get(s + "/egress"), "GET", P + "/egress")
    check(api.get(s + "/egress", params={"limit": 0}), "GET", P + "/egress")  # 400

    # archives
    check(api.post(s + "/ingest", params={"basePath": "/home/user/proj"},
                   content=tar_bytes({"src/m.py": b"print(1)\n"}),
                   headers={"Content-Type": "application/x-tar"}), "POST", P + "/ingest")
    check(api.post(s + "/ingest", content=b"x", headers={"Content-Type": "image/png"}),
          "POST", P + "/ingest")  # 415
    check(api.post(s + "/ingest-files", json={"basePath": "/home/user/b64",
                                              "files": {"x.bin": "AAEC"}}),
          "POST", P + "/ingest-files")
    check(api.post(s + "/ingest-files", json={"files": {"x.bin": "not base64!"}}),
          "POST", P + "/ingest-files")  # 400
    tgz = check(api.get(s + "/export", params={"basePath": "/home/user/proj"}),
                "GET", P + "/export")
    assert tarfile.open(fileobj=io.BytesIO(gzip.decompress(tgz))).getnames()
    check(api.get(s + "/export", params={"basePath": "/nope"}), "GET", P + "/export")  # 404

    # history
    commits = check(api.get(s + "/commits", params={"limit": 3}), "GET", P + "/commits")
    head = commits["commits"][0]["version"]
    check(api.get(s + "/commits", params={"limit": 0}), "GET", P + "/commits")  # 400
    check(api.get(s + f"/commits/{head}"), "GET", P + "/commits/{version}")
    check(api.get(s + "/commits/99999"), "GET", P + "/commits/{version}")  # 404
    check(api.get(s + "/diff", params={"from": 1, "to": head}), "GET", P + "/diff")
    assert b"+++ b/home/user/a.txt" in check(api.get(s + "/diff", params={
        "from": 1, "to": head, "path": "/home/user/a.txt", "format": "unified"}),
        "GET", P + "/diff")
    check(api.get(s + "/diff", params={"from": 1}), "GET", P + "/diff")  # 400
    check(api.post(s + "/snapshots", json={"name": "first", "version": 1}),
          "POST", P + "/snapshots")
    check(api.post(s + "/snapshots", json={"name": "first"}), "POST", P + "/snapshots")  # 409
    check(api.get(s + "/snapshots"), "GET", P + "/snapshots")
    check(api.post(s + "/restore", json={"snapshot": "first"}), "POST", P + "/restore")
    check(api.post(s + "/restore", json={}), "POST", P + "/restore")  # 400
    fork = check(api.post(s + "/fork", json={"version": head, "name": "oas-fork"}),
                 "POST", P + "/fork")
    check(api.post(s + "/fork", json={"version": 99999}), "POST", P + "/fork")  # 404
    check(api.delete(s + "/snapshots/first"), "DELETE", P + "/snapshots/{name}")
    check(api.delete(s + "/snapshots/first"), "DELETE", P + "/snapshots/{name}")  # 404

    check(api.delete(f"/v1/sandboxes/{fork['id']}"), "DELETE", P)
    check(api.delete(s), "DELETE", P)
    check(api.delete(s), "DELETE", P)  # 404

    every = {(m, p) for m, p, _ in operations()}
    assert every - check.seen == set(), "operations no answer was checked for"
