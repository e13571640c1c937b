"""The quick starts of README.md and python/README.md, run literally as a new user would.

The repository is copied to a temporary directory (with its build, so nothing is rebuilt), the
server is started there by `make run` exactly as the README says (relative ./data, a secret
generated into ./data/auth_secret, no AUTH_SECRET in the environment), and then:
  - README.md's curl walk-through is extracted and run by bash in that directory;
  - python/README.md's quick start is extracted and run by python3 with the SDK from the copy.
Only the port is changed (and the SDK example's "<AUTH_SECRET>" placeholder filled in), so an
edit of either README that breaks its quick start fails here.
"""
import os
import re
import shutil
import signal
import subprocess
import time

import httpx
import pytest

from conftest import ROOT, free_port

SKIP_DIRS = {".git", "build", "data", "node_modules", "__pycache__", ".venv"}
BLOCK_RE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("SQLFS_BINARY")),
    reason="runs the repository's own `make run` build, not an alternative binary")


def copy_repo(dst):
    def ignore(_, names):
        return [n for n in names if n in SKIP_DIRS or n.endswith(".log")]
    shutil.copytree(ROOT, dst, ignore=ignore, symlinks=True)
    # the build as it is (timestamps kept, so make finds it up to date); not the sanitizer,
    # fuzz and test builds, which `make run` does not use
    build = os.path.join(ROOT, "build")
    shutil.copytree(build, os.path.join(dst, "build"), symlinks=True,
                    ignore=lambda d, names: [n for n in names if d == build and
                                             n in ("asan", "fuzz", "tests", "bench")])


@pytest.fixture(scope="module")
def new_user(tmp_path_factory):
    """A copy of the repository serving `make run` on a free port; yields (dir, url)."""
    if not os.path.exists(os.path.join(ROOT, "build", "sqlfs")):
        pytest.fail("build/sqlfs is missing: run `make` first")
    repo = str(tmp_path_factory.mktemp("newuser") / "sqlfs")
    copy_repo(repo)
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("AUTH_SECRET", "ADMIN_SECRET", "SQLFS_DATA", "MAKEFLAGS", "MAKELEVEL",
                        "MFLAGS")}
    log = open(os.path.join(repo, "..", "make-run.log"), "wb")
    proc = subprocess.Popen(["make", "run", f"ARGS=--listen 127.0.0.1:{port}"], cwd=repo, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail("make run exited: " + open(log.name).read()[-3000:])
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail("make run did not become ready: " + open(log.name).read()[-3000:])
            time.sleep(0.1)
        yield repo, url, port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def block_after(text, heading, lang, must_contain):
    """The first `lang` code block after `heading` that contains `must_contain`."""
    start = text.index(heading)
    for m in BLOCK_RE.finditer(text, start):
        if m.group(1) == lang and must_contain in m.group(2):
            return m.group(2)
    raise AssertionError(f"no {lang} block with {must_contain!r} after {heading!r}")


def test_readme_quick_start_with_curl(new_user):
    repo, url, port = new_user
    readme = open(os.path.join(repo, "README.md")).read()
    # the README tells the user to run exactly this, and the server to listen where it says
    assert "make run" in readme and "127.0.0.1:8080" in readme
    script = block_after(readme, "## Quick start", "bash", "URL=http://127.0.0.1:8080")
    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    r = subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == "", r.stderr
    assert r.stdout.split("\n") == [
        "hello",                       # GET of the file just written
        "hello", "hello.txt", "w.txt",  # the exec: cat, then ls
        "3 exec cat hello.txt; echo world > w.txt; ls",  # the commits, newest first
        "2 files put /home/user/hello.txt",
        "1 create sandbox created",
        '{"version":4,"restoredFrom":2}',  # the exec undone
        "/home/user/hello.txt",        # the tree: w.txt is gone
        "",
    ], r.stdout
    # and the offline token command the README mentions works from the same directory
    tok = subprocess.run(["./build/sqlfs", "token", "--sub", "me"], cwd=repo,
                         capture_output=True, text=True, timeout=30)
    assert tok.returncode == 0 and tok.stdout.count(".") == 2, tok.stdout + tok.stderr
    assert httpx.get(url + "/v1/sandboxes", headers={
        "Authorization": "Bearer " + tok.stdout.strip()}).status_code == 200


def test_python_readme_quick_start(new_user):
    repo, url, port = new_user
    readme = open(os.path.join(repo, "python", "README.md")).read()
    code = block_after(readme, "## Quick start", "python", "from sqlfs import Client")
    assert 'base_url="http://127.0.0.1:8080"' in code and '"<AUTH_SECRET>"' in code
    secret = open(os.path.join(repo, "data", "auth_secret")).read().strip()
    code = code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    code = code.replace('"<AUTH_SECRET>"', repr(secret))
    env = dict(os.environ, PYTHONPATH=os.path.join(repo, "python"))
    r = subprocess.run(["/usr/bin/python3", "-c", code], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "hello", r.stdout    # result.stdout, "hello\n..."
    assert "True" in lines and "0" in lines, r.stdout  # ok, exit_code
