"""Test helpers: the real sqlfs server (build/sqlfs) on a free port with a temporary data dir.

The server process is tests/harness/sqlfs_harness.py's (shared with tests/integration and
bench/); this module gives it SDK clients and a pool of session-wide servers.

Server-backed tests are skipped, with the reason printed, only when the binary has not been
built. A binary that exists but does not start makes them fail with the tail of its log.
Environment: SQLFS_BINARY overrides the binary's path.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import httpx
import pytest

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
REPO = PYTHON_DIR.parent
for _p in (PYTHON_DIR, REPO / "tests" / "harness"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import sqlfs  # noqa: E402
import sqlfs_harness  # noqa: E402
from sqlfs_harness import free_port  # noqa: E402,F401

BINARY = Path(sqlfs_harness.BINARY)


def _seed_readme() -> Path:
    """The published README, kept beside the repo as ../shared/seed/... (for a git worktree:
    beside the main checkout). SQLFS_SEED_README overrides."""
    rel = Path("shared") / "seed" / "sql-fs-sdk-README.md"
    if os.environ.get("SQLFS_SEED_README"):
        return Path(os.environ["SQLFS_SEED_README"])
    candidates = [REPO.parent / rel]
    try:
        common = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        if common:
            candidates.append(Path(common).parent.parent / rel)
    except (OSError, subprocess.SubprocessError):
        pass
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


SEED_README = _seed_readme()

# Limits of the default server: the failed-auth limit (AUTH_RATE_LIMIT_MAX) is raised so that the
# tests that send a wrong secret on purpose cannot lock the rest of the suite out. Every Client
# mints its own token; successful mints have their own limit (600 a minute by default).
DEFAULT_ENV = {"AUTH_RATE_LIMIT_MAX": "100000"}


class Server(sqlfs_harness.Server):
    """A server of its own AUTH_SECRET (random) whose clients are SDK clients."""

    def client(self, sub: Optional[str] = None, **kw: Any) -> sqlfs.Client:  # type: ignore[override]
        return sqlfs.Client(
            base_url=self.url, auth_secret=self.secret, sub=sub or new_sub(), **kw
        )


def new_sub() -> str:
    return "pytest-" + uuid.uuid4().hex[:12]


def start_server(base: Path, env_over: Dict[str, str]) -> Server:
    if not BINARY.exists():
        pytest.skip(f"server binary {BINARY} is not built (run `make` at the repo root)")
    data = base / "data"
    data.mkdir(parents=True)
    server = Server(
        data, {**DEFAULT_ENV, **env_over},
        secret="test-secret-" + secrets.token_hex(16),  # the server wants at least 32 bytes
        admin_secret=None, log_path=base / "server.log",
    )
    try:
        return server.start()
    except sqlfs_harness.ServerError as e:
        pytest.fail(str(e))


class ServerPool:
    """Session-wide servers, one per distinct set of environment overrides."""

    def __init__(self, tmp_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_factory
        self._servers: Dict[Tuple[Tuple[str, str], ...], Server] = {}
        self._lock = threading.Lock()

    def get(self, **env: str) -> Server:
        key = tuple(sorted(env.items()))
        with self._lock:
            srv = self._servers.get(key)
            if srv is None or srv.proc is None or srv.proc.poll() is not None:
                srv = start_server(self._tmp.mktemp("sqlfs"), dict(env))
                self._servers[key] = srv
            return srv

    def stop_all(self) -> None:
        for srv in self._servers.values():
            srv.stop()


# ---------------------------------------------------------------------------------------------
# Fault-injection proxy (stdlib only): forwards to the real server unless a fault is queued.

Fault = Dict[str, Any]


class FaultProxy:
    """An HTTP proxy in front of ``upstream``.

    ``add(match, kind, times, **kw)`` queues ``times`` faults for requests whose ``METHOD path``
    contains ``match``: ``kind="status"`` answers ``status``/``body``/``headers`` itself;
    ``kind="drop"`` closes the connection without an answer. Other requests are forwarded.
    ``hits(match)`` counts the requests seen (faulted or forwarded).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: List[Fault] = []
        self.seen: List[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                line = f"{self.command} {self.path} "  # trailing space: "…/exec " matches only that route
                with proxy.lock:
                    proxy.seen.append(line)
                    fault = None
                    for f in proxy.faults:
                        if f["match"] in line and f["times"] > 0:
                            f["times"] -= 1
                            fault = f
                            break
                if fault is not None and fault["kind"] == "drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if fault is not None:
                    payload = fault.get("body", b"")
                    self.send_response(fault["status"])
                    for k, v in fault.get("headers", {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {
                    k: v for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection", "transfer-encoding")
                }
                try:
                    resp = httpx.request(
                        self.command, proxy.upstream + self.path, content=body,
                        headers=headers, timeout=120,
                    )
                except httpx.HTTPError:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, match: str, kind: str = "status", times: int = 1, **kw: Any) -> None:
        with self.lock:
            self.faults.append(dict(match=match, kind=kind, times=times, **kw))

    def hits(self, match: str) -> int:
        with self.lock:
            return sum(1 for s in self.seen if match in s)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def json_error(status: int, code: str, retryable: bool = False, **extra: Any) -> Dict[str, Any]:
    import json

    body = {"error": code.lower(), "code": code, "retryable": retryable}
    body.update(extra)
    return {"status": status, "body": json.dumps(body).encode(), "headers": {"Content-Type": "application/json"}}


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False
