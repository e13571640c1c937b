"""The package installs with pip without network access, from Debian's setuptools and httpx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sqlfs_testlib import PYTHON_DIR

PY = sys.executable


def copy_source(tmp: Path) -> Path:
    # Building writes build/ and *.egg-info next to pyproject.toml: build from a copy.
    src = tmp / "src"
    shutil.copytree(
        PYTHON_DIR, src,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"),
    )
    return src


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def check_import(python: str, extra_path: str = "") -> str:
    code = (
        "import sys\n"
        f"{'sys.path.insert(0, %r)' % extra_path if extra_path else ''}\n"
        "import sqlfs, httpx, pathlib, importlib.metadata\n"
        "p = pathlib.Path(sqlfs.__file__).parent\n"
        "assert (p / 'py.typed').exists(), 'py.typed missing'\n"
        "meta = importlib.metadata.version('sql-fs-sdk')\n"
        "assert meta == sqlfs.__version__, (meta, sqlfs.__version__)\n"
        "print(p, sqlfs.__version__)\n"
    )
    res = run([python, "-I", "-c", code], cwd="/")
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_pip_install_offline_into_venv(tmp_path: Path) -> None:
    src = copy_source(tmp_path)
    venv = tmp_path / "venv"
    res = run([PY, "-m", "venv", "--system-site-packages", str(venv)])
    if res.returncode != 0:
        pytest.skip(f"venv unavailable: {res.stderr.strip()[:200]}")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-build-isolation", "--no-index", str(src)]
    res = run(pip)
    assert res.returncode == 0, res.stdout + res.stderr
    out = check_import(str(venv / "bin" / "python"))
    assert str(venv) in out


def test_pip_install_offline_target(tmp_path: Path) -> None:
    src = copy_source(tmp_path)
    target = tmp_path / "target"
    res = run([PY, "-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-deps",
               "--target", str(target), str(src)])
    assert res.returncode == 0, res.stdout + res.stderr
    out = check_import(PY, str(target))
    assert str(target) in out
