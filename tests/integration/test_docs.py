"""The documents agree with the server and with each other.

Checked mechanically where a claim can be: error codes, versions, section references, the
licence, the files a README tells users to create, what the server prints at start and in its
log. (The quick starts themselves run in test_quickstart.py.)
"""
import json
import os
import re
import subprocess

from conftest import BINARY, ROOT, Server

DOCS = ["README.md", "SECURITY.md", "docs/API.md", "docs/JAIL.md", "python/README.md"]


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def server_codes():
    """Wire codes of the server's error table (src/util/err.c), errno codes included."""
    return set(re.findall(r'\{"([A-Z_]+)", \d{3},', read("src/util/err.c")))


SETTING_SUFFIXES = ("_BYTES", "_MS", "_MAX", "_S", "_FILES", "_ENTRIES", "_PERCENT", "_SECRET",
                    "_PROXY", "_CONCURRENCY", "_QUEUE", "_WORKERS", "_SANDBOXES", "_IP",
                    "_CONNECTIONS", "_ROOTFS", "_DATA", "_QUIET", "_LISTEN", "_URL", "_TOKEN",
                    "_BINARY", "_README", "_LOG", "_UID", "_HOME", "_DUMPABLE", "_PIDFD",
                    "_FILTER", "_CLONE", "_NEWNET", "_FL", "_SECONDS", "_RLIMIT")
OTHER_PREFIXES = ("MAX_", "AUTH_", "EXEC_MEMORY", "EXEC_PIDS", "EXEC_CPU", "EXEC_FILE",
                  "EXEC_WARM", "SQLFS_", "CHECKOUT_", "LOCK_", "SANDBOX_", "CLONE_", "PR_",
                  "SECCOMP_", "RLIMIT_", "O_", "AT_", "MS_", "FS_", "MOUNT_", "JWT_", "SIG")


# errno names the docs use for what a script itself sees inside the jail, not wire codes
SCRIPT_ERRNOS = {"EROFS", "EACCES", "EPERM", "ENOSYS", "EDQUOT", "EXDEV", "EAGAIN", "EINTR",
                 "ESRCH", "EFAULT"}


def is_error_code(word):
    """Upper-case words of the docs that are not settings, flags or kernel names."""
    return not (word.endswith(SETTING_SUFFIXES) or word.startswith(OTHER_PREFIXES)
                or word in SCRIPT_ERRNOS)


def test_every_error_code_the_docs_name_is_one_the_server_sends():
    codes = server_codes()
    assert {"EXEC_UNAVAILABLE", "EXEC_FAILED", "EQUOTA", "ENOENT"} <= codes
    api = read("docs/API.md")
    start = api.index("| status | codes |")
    table = api[start:api.index("\n\n", start)]
    named = {w for w in re.findall(r"\b([A-Z][A-Z_]{3,})\b", table) if is_error_code(w)}
    assert named and named <= codes, named - codes
    for doc in DOCS:
        for code in re.findall(r"`(?:\d{3} )?([A-Z][A-Z_]+_[A-Z_]+|E[A-Z]{3,})`", read(doc)):
            if is_error_code(code):
                assert code in codes, f"{doc} names {code}, which the server never sends"


def test_numbered_sections_are_not_referenced():
    """docs/API.md has no numbered sections: a reference must name a section."""
    for rel in DOCS + ["src", "tests", "python"]:
        out = subprocess.run(["grep", "-rn", "API.md " + chr(0xA7), os.path.join(ROOT, rel)],
                             capture_output=True, text=True)
        assert out.stdout == "", out.stdout


def test_server_and_sdk_are_one_version():
    out = subprocess.run([BINARY, "version"], capture_output=True, text=True)
    server = out.stdout.split()[-1]
    sdk = re.search(r'^version = "([^"]+)"', read("python/pyproject.toml"), re.M).group(1)
    init = re.search(r'__version__ = "([^"]+)"', read("python/sqlfs/__init__.py")).group(1)
    assert server == sdk == init, (server, sdk, init)


def test_licence_file_matches_the_package_metadata():
    assert "MIT" in read("python/pyproject.toml")
    assert read("LICENSE").startswith("MIT License")


def test_what_the_readmes_tell_users_to_create_is_ignored_by_git():
    for path in [".venv/bin/python", "data/sqlfs.db", "build/sqlfs"]:
        r = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", path])
        assert r.returncode == 0, f"{path} is not git-ignored"


def test_readme_links_the_sdk_readme_and_py_exec_is_described_alike():
    assert "python/README.md" in read("README.md")
    sdk = read("python/README.md")
    assert "warm interpreter" not in sdk and "keeps the interpreter warm" not in sdk


def test_start_banner_and_log_lines(tmp_path):
    env = {"AUTH_SECRET": "", "SQLFS_QUIET": "0"}
    srv = Server(str(tmp_path / "data"), env).start()
    try:
        srv.env["AUTH_SECRET"] = open(tmp_path / "data" / "auth_secret").read().strip()
        import httpx
        assert httpx.get(srv.url + "/healthz").status_code == 200
    finally:
        srv.stop()
    log = open(srv.log_path).read()
    # the offline hint names the binary as it was started, so it can be pasted
    assert f"or offline: {BINARY} token --sub me --data {tmp_path / 'data'}" in log, log
    lines = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{")]
    durations = [ln for ln in log.splitlines() if '"durationMs"' in ln]
    assert durations
    for ln in durations:
        raw = re.search(r'"durationMs":([0-9.e+-]+)', ln).group(1)
        assert len(raw.split(".")[-1]) <= 3 if "." in raw else True, ln
    assert any(ln.get("msg") == "sqlfs serving" for ln in lines)
