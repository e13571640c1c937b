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

DOCS = ["README.md", "SECURITY.md", "docs/API.md", "docs/JAIL.md", "docs/DEPLOYMENT.md",
        "python/README.md"]


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def server_codes():
    """Wire codes of the server's error table (src/util/err.c), errno codes included."""
    return set(re.findall(r'\{"([A-Z_]+)", \d{3},', read("src/util/err.c")))


def test_every_error_code_the_docs_name_is_one_the_server_sends():
    codes = server_codes()
    assert {"EXEC_UNAVAILABLE", "EXEC_FAILED", "EQUOTA", "ENOENT"} <= codes
    api = read("docs/API.md")
    start = api.index("| status | codes |")
    table = api[start:api.index("\n\n", start)]
    for row in table.splitlines()[2:]:
        cell = row.split("|")[2]
        # the codes are the leading upper-case words of the cell (before any explanation)
        named = re.findall(r"(?:^|, |; )([A-Z][A-Z_]{3,})\b", cell.strip())
        assert named, row
        assert set(named) <= codes, (row, set(named) - codes)
    # everywhere else: a status followed by a code ("503 EXEC_UNAVAILABLE", "413 `EQUOTA`"),
    # or a JSON "code" value
    for doc in DOCS:
        text = read(doc)
        named = re.findall(r"\b[45]\d\d`? `?([A-Z][A-Z_]{3,})\b", text)
        named += re.findall(r'"code" ?: ?"([A-Z_]+)"', text)
        for code in named:
            assert code in codes, f"{doc} names {code}, which the server never sends"


def test_numbered_sections_are_not_referenced():
    """docs/API.md has no numbered sections: a reference must name a section."""
    for rel in DOCS + ["src", "tests", "python"]:
        out = subprocess.run(["grep", "-rn", "API.md " + chr(0xA7), os.path.join(ROOT, rel)],
                             capture_output=True, text=True)
        assert out.stdout == "", out.stdout


def test_server_sdk_and_openapi_document_are_one_version():
    out = subprocess.run([BINARY, "version"], capture_output=True, text=True)
    server = out.stdout.split()[-1]
    # the SDK writes its version once, in sqlfs/_version.py; pyproject.toml reads it from there
    sdk = re.search(r'^__version__ = "([^"]+)"', read("python/sqlfs/_version.py"), re.M).group(1)
    assert 'attr = "sqlfs._version.__version__"' in read("python/pyproject.toml")
    assert server == sdk, (server, sdk)
    # the OpenAPI document (docs/openapi.json, served at /openapi.json) is of this version
    assert json.loads(read("docs/openapi.json"))["info"]["version"] == server


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


def test_the_settings_the_deployment_guide_names_are_the_servers():
    """Every setting docs/DEPLOYMENT.md names (`UPPER_CASE` in backticks, error codes aside) is
    one `sqlfs serve --help` lists."""
    helptext = subprocess.run([BINARY, "serve", "--help"], capture_output=True,
                              text=True).stdout
    codes = server_codes()
    named = set(re.findall(r"`([A-Z][A-Z0-9_]{3,})`", read("docs/DEPLOYMENT.md"))) - codes
    assert "DATABASE_POOL_SIZE" in named
    unknown = sorted(n for n in named if not re.search(r"\b" + n + r"\b", helptext))
    assert not unknown, f"docs/DEPLOYMENT.md names settings the server does not have: {unknown}"


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
