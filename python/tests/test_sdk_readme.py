"""Every code block of the published sql-fs-sdk README runs unchanged against the server.

Only the base URL, the auth secret and the ``sub`` are substituted. Blocks that use a name they
do not define (``sb`` in "Streaming exec") get a fresh sandbox created with ``python=True``
(the README's ``py-exec`` examples need one) and the client as ``fs``.
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import List, Tuple

import pytest

import sqlfs
from sqlfs_testlib import PYTHON_DIR, SEED_README, Server, new_sub

BLOCK_RE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks() -> List[Tuple[str, str]]:
    if not SEED_README.exists():
        return []
    return [(m.group(1), m.group(2)) for m in BLOCK_RE.finditer(SEED_README.read_text())]


def block_params():
    found = blocks()
    if not found:
        return [pytest.param("", "", id="readme-missing", marks=pytest.mark.skip(
            reason=f"published README not found at {SEED_README}"))]
    out = []
    for i, (lang, code) in enumerate(found):
        first = code.strip().splitlines()[0][:40] if code.strip() else ""
        marks = []
        if lang != "python":
            marks.append(pytest.mark.skip(
                reason=f"{lang or 'plain'} block ({first!r}) installs from the package index or the "
                "upstream repo layout; the offline install is covered by test_sdk_install.py"))
        out.append(pytest.param(lang, code, id=f"block{i}-{lang}", marks=marks))
    return out


def test_readme_has_the_expected_blocks() -> None:
    if not SEED_README.exists():
        pytest.skip(f"published README not found at {SEED_README}")
    langs = [lang for lang, _ in blocks()]
    assert langs.count("python") >= 3


def earlier_imports(code: str) -> str:
    lines = []
    for lang, block in blocks():
        if block == code:
            break
        if lang == "python":
            lines += [ln for ln in block.splitlines() if re.match(r"(from \S+ )?import ", ln)]
    return "\n".join(lines) + "\n"


def substitute(code: str, server: Server, sub: str) -> str:
    code = code.replace('base_url="https://api.example.com"', f'base_url="{server.url}"')
    code = code.replace('base_url="http://127.0.0.1:8080"', f'base_url="{server.url}"')
    code = code.replace('base_url="..."', f'base_url="{server.url}"')
    code = code.replace('"<AUTH_SECRET>"', repr(server.secret))
    code = code.replace('"agent-001"', repr(sub))
    return code


@pytest.mark.server
@pytest.mark.parametrize("lang,code", block_params())
def test_readme_block_runs(lang: str, code: str, server: Server) -> None:
    sub = new_sub()
    src = substitute(code, server, sub)
    assert server.url in src or "base_url" not in code
    with server.client(sub=sub) as fs:
        sb = fs.sandboxes.create(name="readme", python=True)
        ns = {"__name__": "__readme__", "fs": fs, "sb": sb}
        # The README is read top to bottom: names imported by earlier blocks are known.
        exec(earlier_imports(code), ns)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(src, "<sql-fs-sdk README>", "exec"), ns)
        finally:
            with contextlib.suppress(sqlfs.SQLFSError):
                sb.delete()
            extra = ns.get("fs")
            if isinstance(extra, sqlfs.Client) and extra is not fs:
                extra.close()
        printed = out.getvalue()
        if "echo hello" in code:
            assert "hello\n" in printed and "True" in printed
            # the last `result` of the quick start is the py-exec run of script.py
            assert ns["result"].stdout == "0\n1\n2\n3\n4\n", ns["result"]
            assert ns["text"] == "print('hi')\n"
            assert any(e.path == "/home/user/main.py" for e in ns["entries"])
            # the quick start deletes its sandbox at the end
            left = [r.id for r in fs.sandboxes.list()]
            assert sb.id not in left
        if "exec_stream" in code:
            assert "1\n2\n3\n" in printed and "exit=0" in printed


OWN_README = PYTHON_DIR / "README.md"


# A block that calls a history method needs the history routes (marker ``history``); one that
# reads the exec journal or sends an idempotency key needs those (marker ``journal``); one that
# sets a network policy or reads the egress log needs those (marker ``egress``).
HISTORY_RE = re.compile(r"\.(commits?|diff|restore|undo|fork|snapshots?|delete_snapshot)\(|version=")
JOURNAL_RE = re.compile(r"\.(execs|exec_record)\(|idempotency_key=|\.exec_id\b")
EGRESS_RE = re.compile(r"\.(set_network|egress)\(|network=|\.network_policy\b")


def own_marks(code: str) -> list:
    marks = []
    if HISTORY_RE.search(code):
        marks.append(pytest.mark.history)
    if JOURNAL_RE.search(code):
        marks.append(pytest.mark.journal)
    if EGRESS_RE.search(code):
        marks.append(pytest.mark.egress)
    return marks


def own_python_blocks():
    found = [(m.group(1), m.group(2)) for m in BLOCK_RE.finditer(OWN_README.read_text())]
    return [
        pytest.param(code, id=f"own{i}", marks=own_marks(code))
        for i, (lang, code) in enumerate(found)
        if lang == "python"
    ]


@pytest.mark.server
@pytest.mark.parametrize("code", own_python_blocks())
def test_own_readme_python_blocks_run(code: str, server: Server) -> None:
    """The python/README.md examples run too (same substitutions)."""
    sub = new_sub()
    with server.client(sub=sub) as fs:
        sb = fs.sandboxes.create(name="readme", python=True)
        ns = {"__name__": "__readme__", "fs": fs, "sb": sb, "Client": sqlfs.Client}
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(substitute(code, server, sub), "<python/README.md>", "exec"), ns)
        finally:
            with contextlib.suppress(sqlfs.SQLFSError):
                sb.delete()
