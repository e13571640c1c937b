"""The public surface: every name the READMEs import or document comes from ``sqlfs``, the modules
behind it are private, the version is written once, and ``Client`` and ``AsyncClient`` agree."""

from __future__ import annotations

import ast
import builtins
import asyncio
import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Callable, List, Tuple

import httpx
import pytest

import sqlfs
from sqlfs_testlib import PYTHON_DIR, SEED_README

SDK_README = PYTHON_DIR / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def readme_imports(path: Path) -> List[Tuple[str, str]]:
    """(module, name) of every import of sqlfs in the README's Python blocks; name "" for
    ``import module``."""
    found = []
    for block in PYTHON_BLOCK.findall(path.read_text(encoding="utf-8")):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlfs":
                found += [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(a.name, "") for a in node.names if a.name.split(".")[0] == "sqlfs"]
    return found


@pytest.mark.parametrize("readme", [SDK_README, SEED_README], ids=["python-README", "published-README"])
def test_every_name_a_readme_imports_is_importable(readme: Path) -> None:
    if not readme.exists():
        pytest.skip(f"README not found at {readme}")
    imports = readme_imports(readme)
    assert ("sqlfs", "Client") in imports
    for module, name in imports:
        mod = importlib.import_module(module)
        if name:
            assert hasattr(mod, name), f"{readme.name}: from {module} import {name}"
            assert name in sqlfs.__all__ or module != "sqlfs", name


def test_every_class_the_sdk_readme_names_is_public() -> None:
    text = SDK_README.read_text(encoding="utf-8")
    assert ("sqlfs", "AsyncClient") in readme_imports(SDK_README)
    suffixes = ("Client", "Error", "Result", "Record", "Info", "Stat", "Entry", "Event", "Sandbox")
    named = {n for n in re.findall(r"`([A-Z][A-Za-z]+)`", text)
             if n.endswith(suffixes) and not hasattr(builtins, n)}
    assert {"SQLFSError", "ExecTimeoutError", "ReadResult", "StreamEvent", "Sandbox"} <= named
    for name in sorted(named):
        assert name in sqlfs.__all__ and getattr(sqlfs, name), name
    for name in sqlfs.__all__:
        assert getattr(sqlfs, name) is not None, name


def test_implementation_modules_are_private() -> None:
    modules = [m.name for m in pkgutil.iter_modules(sqlfs.__path__)]
    assert "_client" in modules and "_exceptions" in modules and "_models" in modules
    assert [m for m in modules if not m.startswith("_")] == []


def test_the_version_is_written_once() -> None:
    pkg = PYTHON_DIR / "sqlfs"
    written = [p.name for p in pkg.glob("*.py") if re.search(r"[\"']\d+\.\d+\.\d+[\"']", p.read_text())]
    assert written == ["_version.py"]
    assert re.search(r'^__version__ = "(\d+\.\d+\.\d+)"$', (pkg / "_version.py").read_text(), re.M)
    project = (PYTHON_DIR / "pyproject.toml").read_text()
    assert not re.search(r'^version\s*=\s*"', project, re.M)
    assert 'dynamic = ["version"]' in project
    assert 'version = { attr = "sqlfs._version.__version__" }' in project


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


class FakeServer:
    """Answers bootstrap with a token and exec-sync with 500 ``fail`` times, then 200."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.requests: List[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/auth/bootstrap":
            return httpx.Response(201, json={"token": "minted.jwt.token"})
        if self.fail > 0:
            self.fail -= 1
            return httpx.Response(500, json={"error": "boom", "code": "INTERNAL_ERROR"})
        return httpx.Response(200, json={"stdout": "ok\n", "stderr": "", "exitCode": 0, "durationMs": 1})

    def paths(self) -> List[str]:
        return [r.url.path for r in self.requests]


def sync_client(fake: FakeServer, **kw) -> sqlfs.Client:
    http = httpx.Client(transport=mock(fake))
    return sqlfs.Client(base_url="http://sqlfs.test", http_client=http, **kw)


def async_client(fake: FakeServer, **kw) -> sqlfs.AsyncClient:
    http = httpx.AsyncClient(transport=mock(fake))
    return sqlfs.AsyncClient(base_url="http://sqlfs.test", http_client=http, **kw)


def test_token_and_get_token_agree_on_both_clients() -> None:
    fake = FakeServer()
    with sync_client(fake, auth_secret="s", sub="me") as c:
        assert c.token == "minted.jwt.token" and c.get_token() == c.token
    assert fake.paths() == ["/v1/auth/bootstrap"]

    async def main() -> Tuple[str, str]:
        async with async_client(fake, auth_secret="s", sub="me") as a:
            return await a.token, await a.get_token()

    assert asyncio.run(main()) == ("minted.jwt.token", "minted.jwt.token")
    assert fake.paths() == ["/v1/auth/bootstrap"] * 2
    body = json.loads(fake.requests[-1].content)
    assert body == {"sub": "me"} and fake.requests[-1].headers["x-auth-secret"] == "s"


def test_user_agent_carries_the_package_version() -> None:
    fake = FakeServer()
    with sync_client(fake, token="t") as c:
        c.sandboxes.attach("sb1").exec("true")

    async def main() -> None:
        async with async_client(fake, token="t") as a:
            await a.sandboxes.attach("sb1").exec("true")

    asyncio.run(main())
    agents = {r.headers["user-agent"] for r in fake.requests}
    assert agents == {f"sql-fs-sdk-python/{sqlfs.__version__}"}


@pytest.mark.parametrize("retry_exec", [False, True])
def test_sandboxes_send_through_their_clients_settings(retry_exec: bool) -> None:
    """A sandbox handle follows the client's retry_exec: a plain 500 to a write exec is retried
    only when the client opted in."""
    for make in ("sync", "async"):
        fake = FakeServer(fail=1)
        if make == "sync":
            with sync_client(fake, token="t", retry_exec=retry_exec, max_retries=1) as c:
                sb = c.sandboxes.attach("sb1")
                run = lambda: sb.exec("echo ok")  # noqa: E731
                if retry_exec:
                    assert run().stdout == "ok\n"
                else:
                    with pytest.raises(sqlfs.ServerError):
                        run()
        else:

            async def main() -> None:
                async with async_client(fake, token="t", retry_exec=retry_exec, max_retries=1) as a:
                    sb = a.sandboxes.attach("sb1")
                    if retry_exec:
                        assert (await sb.exec("echo ok")).stdout == "ok\n"
                    else:
                        with pytest.raises(sqlfs.ServerError):
                            await sb.exec("echo ok")

            asyncio.run(main())
        hits = fake.paths().count("/v1/sandboxes/sb1/exec-sync")
        assert hits == (2 if retry_exec else 1), (make, hits)
