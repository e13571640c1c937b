"""The scripts in python/examples/ run against the real server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sqlfs_testlib import PYTHON_DIR, Server

pytestmark = pytest.mark.server

EXAMPLES = sorted(p for p in (PYTHON_DIR / "examples").glob("*.py") if not p.name.startswith("_"))


PARAMS = [
    pytest.param(p, id=p.stem, marks=[pytest.mark.ingest_export] if "ingest" in p.stem else [])
    for p in EXAMPLES
]


@pytest.mark.parametrize("script", PARAMS)
def test_example_runs(script, server: Server, tmp_path) -> None:
    env = dict(os.environ, SQLFS_URL=server.url, AUTH_SECRET=server.secret)
    env.pop("PYTHONPATH", None)
    res = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip()
