"""sb.exec, sb.exec_batch and sb.exec_stream against the real server."""

from __future__ import annotations

import time

import pytest

import sqlfs

pytestmark = pytest.mark.server


def test_exec_result_fields(sb: sqlfs.Sandbox) -> None:
    r = sb.exec("echo out; echo err >&2")
    assert isinstance(r, sqlfs.ExecResult)
    assert (r.stdout, r.stderr, r.error, r.exit_code, r.ok) == ("out\n", "err\n", "err\n", 0, True)
    assert r.exit_signal is None and r.timed_out is False
    assert isinstance(r.duration_ms, int) and r.duration_ms >= 0
    assert r.stdout_truncated is False


def test_nonzero_exit_is_a_result_and_commits(sb: sqlfs.Sandbox) -> None:
    r = sb.exec("echo a > /home/user/f; exit 3")
    assert r.exit_code == 3 and not r.ok
    assert sb.fs.read_text("/home/user/f") == "a\n"


def test_cwd_env_debug_stdin(sb: sqlfs.Sandbox) -> None:
    assert sb.exec("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sb.exec('printf %s "$A-$B"', env={"A": "x", "B": "y"}).stdout == "x-y"
    dbg = sb.exec("echo traced", debug=True)
    assert "+ echo traced" in dbg.stderr and dbg.stdout == "traced\n"
    assert sb.exec("tr a-z A-Z", stdin="shout\n").stdout == "SHOUT\n"


def test_cwd_persists_between_execs(sb: sqlfs.Sandbox) -> None:
    sb.exec("mkdir -p /home/user/w && cd /home/user/w")
    assert sb.exec("pwd").stdout == "/home/user/w\n"
    sb.exec("cd /", read_only=True)
    assert sb.exec("pwd").stdout == "/home/user/w\n"


def test_exit_signal(sb: sqlfs.Sandbox) -> None:
    r = sb.exec("kill -KILL $$")
    assert r.exit_signal == "SIGKILL" and r.exit_code == 137 and not r.ok


def test_timeout_raises_exec_timeout_error(sb: sqlfs.Sandbox) -> None:
    t0 = time.monotonic()
    with pytest.raises(sqlfs.ExecTimeoutError) as ei:
        sb.exec("echo partial; echo done-before > /home/user/before; sleep 30", timeout_ms=700)
    e = ei.value
    assert time.monotonic() - t0 < 15
    assert e.status == 408 and e.code == "EXEC_TIMEOUT"
    assert e.duration_ms is not None and e.duration_ms >= 600
    assert "partial" in e.stdout
    assert sb.fs.read_text("/home/user/before") == "done-before\n"


def test_read_only_exec(sb: sqlfs.Sandbox) -> None:
    sb.fs.write("/home/user/r.txt", "data")
    assert sb.exec("cat /home/user/r.txt", read_only=True).stdout == "data"
    with pytest.raises(sqlfs.ReadOnlyViolationError) as ei:
        sb.exec("echo x > /home/user/w.txt", read_only=True)
    assert ei.value.status == 422 and ei.value.code == "EREADONLY_VIOLATION"
    with pytest.raises(sqlfs.NotFoundError):
        sb.fs.read("/home/user/w.txt")


@pytest.mark.exec_batch
def test_batch_write_mode_shares_shell_state(sb: sqlfs.Sandbox) -> None:
    res = sb.exec_batch([
        {"id": "a", "script": "cd /tmp; X=42; f() { echo fn; }"},
        {"id": "b", "script": "pwd; echo $X; f; exit 4"},
        {"id": "c", "script": "echo after > /home/user/batch.txt"},
    ])
    assert [r.id for r in res] == ["a", "b", "c"]
    assert all(isinstance(r, sqlfs.BatchExecResult) for r in res)
    assert res[1].stdout == "/tmp\n42\nfn\n" and res[1].exit_code == 4 and not res[1].ok, res
    assert res[2].ok and res[2].error is None
    assert sb.fs.read_text("/home/user/batch.txt") == "after\n"


@pytest.mark.exec_batch
def test_batch_plain_strings_and_read_only(sb: sqlfs.Sandbox) -> None:
    sb.fs.write_files({f"/home/user/r{i}.txt": str(i) for i in range(4)})
    res = sb.exec_batch([f"cat /home/user/r{i}.txt" for i in range(4)], read_only=True)
    assert [(r.id, r.stdout) for r in res] == [(str(i), str(i)) for i in range(4)]
    with pytest.raises(sqlfs.ReadOnlyViolationError):
        sb.exec_batch(["true", "touch /home/user/nope"], read_only=True)
    with pytest.raises(sqlfs.NotFoundError):
        sb.fs.read("/home/user/nope")


@pytest.mark.exec_batch
def test_batch_stop_on_error_and_timeout(sb: sqlfs.Sandbox) -> None:
    res = sb.exec_batch(["echo 1", "false", "echo 3"], stop_on_error=True)
    assert res[0].ok and res[1].exit_code == 1 and res[2].error == "skipped"
    res = sb.exec_batch(["sleep 20", "echo never"], timeout_ms=800)
    assert res[0].exit_code == -1 and res[0].error == "timeout" and res[0].timed_out
    assert res[1].error == "timeout"


@pytest.mark.exec_batch
def test_batch_per_script_timeout_goes_on(sb: sqlfs.Sandbox) -> None:
    t0 = time.monotonic()
    res = sb.exec_batch([{"id": "set", "script": "X=kept"},
                         {"id": "slow", "script": "X=lost; sleep 20"},
                         {"id": "fast", "script": "echo fast $X"}],
                        timeout_ms=15000, per_script_timeout_ms=1000)
    assert time.monotonic() - t0 < 10
    assert res[1].exit_code == -1 and res[1].timed_out and 950 <= res[1].duration_ms < 5000
    assert res[2].ok and res[2].stdout == "fast kept\n", res


@pytest.mark.exec_stream
def test_stream_events_arrive_before_exit(sb: sqlfs.Sandbox) -> None:
    t0 = time.monotonic()
    events = []
    for ev in sb.exec_stream("echo first; echo e1 >&2; sleep 2; echo second"):
        events.append((ev, time.monotonic() - t0))
    types = [e.type for e, _ in events]
    assert types[-1] == "exit" and types.count("exit") == 1
    out = "".join(e.data for e, _ in events if e.type == "stdout")
    err = "".join(e.data for e, _ in events if e.type == "stderr")
    assert out == "first\nsecond\n" and err == "e1\n", [(e.raw, round(t, 2)) for e, t in events]
    first_at = next(t for e, t in events if e.type == "stdout" and "first" in e.data)
    exit_ev, exit_at = events[-1]
    assert exit_at - first_at > 1.5, "stdout was batched until the end"
    assert exit_ev.exit_code == 0 and exit_ev.duration_ms is not None and exit_ev.duration_ms >= 2000
    assert all(e.t is not None for e, _ in events)


@pytest.mark.exec_stream
def test_stream_exit_code_timeout_and_error_event(sb: sqlfs.Sandbox) -> None:
    last = list(sb.exec_stream("exit 5"))[-1]
    assert last.type == "exit" and last.exit_code == 5
    evs = list(sb.exec_stream("echo x; sleep 30", timeout_ms=600))
    assert evs[-1].type == "exit" and evs[-1].exit_code == -1 and evs[-1].timed_out
    evs = list(sb.exec_stream("touch /home/user/ro", read_only=True))
    assert [e.type for e in evs][-2:] == ["error", "exit"]
    assert evs[-2].code == "EREADONLY_VIOLATION" and evs[-1].exit_code == -1


@pytest.mark.exec_stream
def test_stream_errors_before_start_raise(client: sqlfs.Client, sb: sqlfs.Sandbox) -> None:
    with pytest.raises(sqlfs.NotFoundError):
        list(client.sandboxes.attach("00000000-0000-4000-8000-000000000000").exec_stream("true"))
    with pytest.raises(sqlfs.ValidationError):
        list(sb.exec_stream("true", timeout_ms=0))


@pytest.mark.exec_stream
def test_stream_leaving_early_kills_script(sb: sqlfs.Sandbox) -> None:
    for ev in sb.exec_stream("echo go; sleep 3; echo late > /home/user/late"):
        if ev.type == "stdout":
            break
    time.sleep(4)
    assert sb.exec("test -e /home/user/late").exit_code == 1


def test_python_runtime_flag(py_sb: sqlfs.Sandbox, sb: sqlfs.Sandbox) -> None:
    assert py_sb.exec("py-exec -c 'print(1 + 1)'").stdout == "2\n"
    assert py_sb.exec("python3 -c 'print(3)'").stdout == "3\n"
    off = sb.exec("python3 -c 'print(1)'")
    assert off.exit_code == 127 and "python" in off.stderr
