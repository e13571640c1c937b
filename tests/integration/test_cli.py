"""The command-line client (`sqlfs sandbox`, `exec`, `cp`, `shell`, `log`, `undo`) against the
real server: the built binary run with SQLFS_URL and SQLFS_TOKEN."""
import json
import os
import select
import subprocess
import time

import pytest

from conftest import BINARY


@pytest.fixture(scope="module")
def env(server):
    return dict(os.environ, SQLFS_URL=server.url, SQLFS_TOKEN=server.token("cli-user"))


def cli(env, *args, stdin=None, check=True):
    p = subprocess.run([BINARY, *args], env=env, input=stdin, capture_output=True, timeout=120)
    if check:
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture
def sid(env):
    out = cli(env, "sandbox", "create", "--name", "cli-t").stdout.decode().strip()
    yield out
    cli(env, "sandbox", "rm", out, check=False)


def test_create_ls_rm_round_trip(env):
    rec = json.loads(cli(env, "sandbox", "create", "--name", "round", "--json").stdout)
    assert rec["name"] == "round" and rec["version"] == 1
    listed = json.loads(cli(env, "sandbox", "ls", "--json").stdout)
    assert rec["id"] in [s["id"] for s in listed]
    table = cli(env, "sandbox", "ls").stdout.decode()
    assert table.startswith("ID") and rec["id"] in table and "round" in table
    assert cli(env, "sandbox", "rm", rec["id"]).stdout == b""
    listed = json.loads(cli(env, "sandbox", "ls", "--json").stdout)
    assert rec["id"] not in [s["id"] for s in listed]
    plain = cli(env, "sandbox", "create").stdout.decode().strip()
    assert len(plain) > 8 and "\n" not in plain
    cli(env, "sandbox", "rm", plain)


def test_exec_streams_live(env, sid):
    p = subprocess.Popen([BINARY, "exec", sid, "--", "echo first; sleep 1; echo second"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        fd = p.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], 30)
        assert ready, "no output"
        first = os.read(fd, 4096)
        assert first == b"first\n"
        assert p.poll() is None, "the first line came only at the end"
        rest = p.stdout.read()
        assert rest == b"second\n"
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_exec_exit_code_and_stderr(env, sid):
    p = cli(env, "exec", sid, "--", "echo out; echo err >&2; exit 7", check=False)
    assert p.returncode == 7
    assert p.stdout == b"out\n" and p.stderr == b"err\n"
    p = cli(env, "exec", sid, "--", "kill -TERM $$", check=False)
    assert p.returncode == 128 + 15, p.stderr
    p = cli(env, "exec", sid, "-", stdin=b"cd /tmp\necho from-stdin $PWD\n")
    assert p.stdout == b"from-stdin /tmp\n"
    p = cli(env, "exec", sid, "--env", "A=b c", "--cwd", "/home", "--", 'echo "$A" $PWD')
    assert p.stdout == b"b c /home\n"
    ans = json.loads(cli(env, "exec", sid, "--json", "--", "echo j").stdout)
    assert ans["stdout"] == "j\n" and ans["exitCode"] == 0


def test_cp_file_both_ways(env, sid, tmp_path):
    data = bytes(range(256)) * 1000 + b"\0\r\n"
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    cli(env, "cp", str(src), f"{sid}:/home/user/dir/blob.bin")
    out = tmp_path / "back.bin"
    cli(env, "cp", f"{sid}:/home/user/dir/blob.bin", str(out))
    assert out.read_bytes() == data
    into = tmp_path / "into"
    into.mkdir()
    cli(env, "cp", f"{sid}:/home/user/dir/blob.bin", str(into))
    assert (into / "blob.bin").read_bytes() == data
    p = cli(env, "exec", sid, "--", "sha256sum < /home/user/dir/blob.bin")
    import hashlib
    assert p.stdout.decode().split()[0] == hashlib.sha256(data).hexdigest()
    p = cli(env, "cp", f"{sid}:/home/user/missing", str(tmp_path / "m"), check=False)
    assert p.returncode == 1 and p.stderr.startswith(b"sqlfs: ")
    assert not (tmp_path / "m").exists()


def test_cp_tree_both_ways(env, sid, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub" / "deep").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.bin").write_bytes(b"\0\1\2")
    (tree / "sub" / "deep" / "c").write_text("c\n")
    os.chmod(tree / "sub" / "deep" / "c", 0o755)
    os.symlink("sub/b.bin", tree / "link")
    cli(env, "cp", "-r", str(tree) + "/", f"{sid}:/home/user/proj")
    p = cli(env, "exec", sid, "--", "cd /home/user/proj && cat a.txt deep 2>/dev/null; "
            "readlink link; test -x sub/deep/c && echo exec")
    assert p.stdout == b"alpha\nsub/b.bin\nexec\n"
    back = tmp_path / "back"
    cli(env, "cp", "-r", f"{sid}:/home/user/proj", str(back))
    assert (back / "a.txt").read_text() == "alpha\n"
    assert (back / "sub" / "b.bin").read_bytes() == b"\0\1\2"
    assert (back / "sub" / "deep" / "c").read_text() == "c\n"
    assert os.access(back / "sub" / "deep" / "c", os.X_OK)
    assert os.readlink(back / "link") == "sub/b.bin"


def test_cp_tree_refuses_escapes(env, sid, tmp_path):
    """A symlink already in the target directory never carries an entry outside it: it is
    replaced, not followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t"
    target.mkdir()
    os.symlink(str(outside), target / "out")
    cli(env, "exec", sid, "--", "mkdir -p /home/user/evil/out && "
        "echo x > /home/user/evil/out/f")
    cli(env, "cp", "-r", f"{sid}:/home/user/evil", str(target))
    assert not (outside / "f").exists()
    assert not os.path.islink(target / "out") and (target / "out" / "f").read_text() == "x\n"


def test_shell_keeps_cwd(env, sid):
    p = cli(env, "shell", sid, stdin=b"cd /tmp\npwd\n\nfalse\necho after\nexit\necho never\n")
    assert p.stdout == b"/tmp\nafter\n"
    assert b"[exit 1]" in p.stderr
    assert b"sqlfs:" not in p.stderr  # no prompt when stdin is not a terminal


def test_log_and_undo(env, sid):
    cli(env, "exec", sid, "--", "echo hi > /home/user/made.txt")
    lines = cli(env, "log", sid).stdout.decode().splitlines()
    assert lines[0].split("\t")[0] == "2" and lines[0].split("\t")[2] == "exec"
    assert lines[-1].split("\t")[2] == "create"
    commits = json.loads(cli(env, "log", sid, "--json").stdout)["commits"]
    assert [c["version"] for c in commits] == [2, 1]
    assert cli(env, "undo", sid).stdout == b"3\n"
    p = cli(env, "exec", sid, "--", "test -e /home/user/made.txt", check=False)
    assert p.returncode == 1
    assert json.loads(cli(env, "log", sid, "--json").stdout)["commits"][0]["kind"] == "restore"


def test_errors(env, server):
    p = cli(env, "exec", "nosuchsandbox", "--", "true", check=False)
    assert p.returncode == 1 and b"sqlfs: " in p.stderr and b"404" in p.stderr
    p = cli(env, "sandbox", "rm", "nosuchsandbox", check=False)
    assert p.returncode == 1 and b"HTTP 404" in p.stderr
    bad = dict(env, SQLFS_TOKEN="not-a-token")
    p = cli(bad, "sandbox", "ls", check=False)
    assert p.returncode == 1 and b"HTTP 401" in p.stderr
    p = cli(env, "sandbox", "ls", "--bogus", check=False)
    assert p.returncode == 2 and b"unknown option --bogus" in p.stderr
    p = cli(env, "cp", "a", "b", check=False)
    assert p.returncode == 2
    p = cli(dict(env, SQLFS_TOKEN=""), "sandbox", "ls", check=False)
    assert p.returncode == 2 and b"SQLFS_TOKEN" in p.stderr
    p = cli(env, "sandbox", "ls", "--url", "http://127.0.0.1:1", check=False)
    assert p.returncode == 1 and b"http://127.0.0.1:1" in p.stderr
    assert b"sandbox create" in cli(env, "--help").stdout


def test_shell_prompt_on_a_terminal(env, sid):
    """On a terminal the prompt shows the sandbox's cwd, which the last line left."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([BINARY, "shell", sid], env=env, stdin=slave, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    os.close(slave)
    os.write(master, b"cd /tmp\n")
    os.write(master, b"exit\n")
    try:
        out, err = p.communicate(timeout=60)
    finally:
        os.close(master)
    assert p.returncode == 0
    assert err.startswith(b"sqlfs:/home/user$ ") and b"sqlfs:/tmp$ " in err
