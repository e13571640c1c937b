"""The sources keep the dependency direction of HACKING.md "Layers" (scripts/check-layers.sh).

The check runs on the tree as it is (it must pass), and on copies with one offence planted each
(it must name it and fail), so that a check that stopped seeing anything would not pass unseen.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "check-layers.sh")


def check(src):
    return subprocess.run(["bash", SCRIPT, src], capture_output=True, text=True, timeout=60)


def test_the_sources_keep_the_layers():
    r = check(os.path.join(ROOT, "src"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""


def plant(tmp_path, rel, line):
    """A copy of src/ with `line` added at the top of src/<rel>."""
    src = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "src"), src)
    f = src / rel
    f.write_text(line + "\n" + f.read_text())
    return str(src)


@pytest.mark.parametrize(
    "rel, line, named",
    [
        # the jail below exec: no exec header in it
        ("jail/sysprobe.c", '#include "exec/runner.h"', 'jail/sysprobe.c:1: includes "exec/runner.h"'),
        # the workspace depends on the store only
        ("workspace/checkout.c", '#include "jail/ids.h"', 'workspace/checkout.c:1: includes "jail/ids.h"'),
        ("workspace/diff.c", '#include "sandbox/sandbox.h"', 'workspace/diff.c:1: includes "sandbox/sandbox.h"'),
        # the composition root's header stays above the layers
        ("sandbox/sandbox.h", '#include "app.h"', 'sandbox/sandbox.h:1: includes "app.h"'),
        ("exec/engine.h", '#include "config.h"', 'exec/engine.h:1: includes "config.h"'),
        # nothing below api/ reaches up into it
        ("exec/engine.c", '#include "api/http.h"', 'exec/engine.c:1: includes "api/http.h"'),
        # the one commit path: routes change sandboxes through the sandbox layer
        ("api/sandboxes.c", "static int x(void) { return store_sandbox_delete(0, 0, 0, 0); }",
         "api/sandboxes.c:1: changes a sandbox in the store directly"),
        ("exec/health.c", "static int y(void) { return store_commit(0, 0, 0, 0, 0); }",
         "exec/health.c:1: changes a sandbox in the store directly"),
    ],
)
def test_an_offence_is_named_and_fails_the_check(tmp_path, rel, line, named):
    r = check(plant(tmp_path, rel, line))
    assert r.returncode == 1, r.stdout + r.stderr
    assert named in r.stdout, r.stdout
    assert len(r.stdout.splitlines()) == 1, r.stdout  # nothing else in the tree is reported


def test_a_folder_the_layers_do_not_know_fails_the_check(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "src"), src)
    (src / "history").mkdir()
    (src / "history" / "log.c").write_text('#include "util/err.h"\n')
    r = check(str(src))
    assert r.returncode == 1
    assert "history/log.c: src/history/ is not a known layer" in r.stdout
