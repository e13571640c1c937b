"""py-exec (docs/JAIL.md, issue 22): `py-exec ARGS` behaves for its caller exactly like
`python3 ARGS`, whether a pre-initialised interpreter (the warm "zygote") serves it or python3
runs cold; a warm child lives in the calling exec's jail and carries nothing of the server nor of
an earlier call.

Most tests run `python3 ARGS` and `py-exec ARGS` one after the other in the same exec (`both`)
and compare what the caller sees: stdout, stderr and the exit status. They hold whether py-exec
is warm or cold. Where a warm run differs by design (the preloaded modules, getppid() 0, a
session of its own, the zygote's hash secret), the compared programs do not look at it.

Tests that need the warm interpreter take the `warm` fixture: it skips while the server has no
warm py-exec (GET /readyz without "pyExec") and otherwise waits for it to be ready. The
confinement tests run either way; once the server has the feature they also check that the
child they looked at was a warm one (`"json" in sys.modules` before the program imports
anything, which a cold `-c` never shows).
"""
import json
import os
import re
import secrets
import shlex
import socket
import time

import httpx
import pytest

from conftest import ADMIN_SECRET, SECRET, status

HOME = "/home/user"
SEP = "@@pyx-sep@@"
JAIL_HOST_UID = "100000"  # the jail's uid 1000 on the host (/proc/self/uid_map in a jail)

# What a program sees of its own start, printed without importing anything.
INFO = ("import sys\n"
        "print(repr([__name__, globals().get('__file__'), getattr(__spec__, 'name', None),\n"
        "    sys.argv, sys.orig_argv[1:], sys.executable, sys.flags, sys.path, sys.warnoptions,\n"
        "    sys.dont_write_bytecode, sys.stdin.isatty(), sys.stdout.write_through,\n"
        "    sys.stdout.line_buffering, type(sys.stdout.buffer).__name__, sys.stdout.encoding,\n"
        "    sys.stdout.errors, sys.getfilesystemencoding(), sys.prefix, sys.base_prefix,\n"
        "    sys.exec_prefix]))\n")

# Proof of a warm child: the zygote's preloaded modules, seen before the program imports any.
WARM_PROOF = "import sys; print('warm' if 'json' in sys.modules else 'cold')"

# Scans the process's environment and every readable mapping of its memory for strings given
# as two hex halves (argv: name A B ...), so that the program itself never holds one whole.
SCAN = r'''
import sys
warm = "json" in sys.modules
import os, json
args = sys.argv[1:]
needles = {args[i]: (bytes.fromhex(args[i + 1]), bytes.fromhex(args[i + 2]))
           for i in range(0, len(args), 3)}
CHUNK = 1 << 20
OVER = max(len(a) + len(b) for a, b in needles.values())

def hits(data, a, b):
    i = data.find(a)
    while i >= 0:
        if data[i + len(a):i + len(a) + len(b)] == b:
            return True
        i = data.find(a, i + 1)
    return False

with open("/proc/self/environ", "rb") as f:
    environ = f.read()
found = {n: [hits(environ, a, b), False] for n, (a, b) in needles.items()}
regions = scanned = 0
with open("/proc/self/maps") as maps:
    lines = maps.read().splitlines()
with open("/proc/self/mem", "rb", buffering=0) as mem:
    for line in lines:
        fields = line.split()
        if fields[1][0] != "r" or fields[-1] == "[vsyscall]":
            continue
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        regions += 1
        pos, tail = lo, b""
        while pos < hi:
            try:
                mem.seek(pos)
                chunk = mem.read(min(CHUNK, hi - pos))
            except OSError:
                break
            if not chunk:
                break
            data = tail + chunk
            for n, (a, b) in needles.items():
                if not found[n][1] and hits(data, a, b):
                    found[n][1] = True
            scanned += len(chunk)
            tail = data[-OVER:]
            pos += len(chunk)
print(json.dumps({"found": found, "regions": regions, "scanned": scanned,
                  "warm": warm}))
'''

# A hostile client of the py-exec socket, run by cold python3 in the jail: argv[1] is a host
# path that a request which escaped the jail would create.
RAW_CLIENT = r'''
import array, json, os, socket, sys, time
pwn = sys.argv[1]
code = f"open({pwn!r}, 'w').write('escaped')"
socks = {}  # name: socket type (a listener's accepted connections show its name too)
for line in open("/proc/net/unix").read().splitlines()[1:]:
    f = line.split()
    if len(f) >= 8 and f[7].startswith("@sqlfs"):
        socks[f[7]] = int(f[4], 16)
argv0 = b"py-exec\0-c\0" + code.encode() + b"\0"
cases = {
    "empty": b"",
    "garbage": os.urandom(4096),
    "argv": argv0,
    "json": json.dumps({"argv": ["python3", "-c", code], "cwd": "/", "env": {}}).encode(),
    "truncated": b"\x10\x00\x00\x00py",
    "lengths": b"\xff\xff\xff\xff" * 64,
    "huge": b"\x00" * (16 << 20),
    "fds": argv0,
}
results = {}
for name, kind in socks.items():
    for case, payload in cases.items():
        t0 = time.monotonic()
        s = socket.socket(socket.AF_UNIX, kind)
        s.settimeout(3)
        try:
            s.connect("\0" + name[1:])
            if case == "fds":
                fds = [os.open(p, os.O_RDONLY) for p in
                       ("/", "/proc/self/ns/user", "/proc/self/ns/mnt", "/proc/self/ns/pid")]
                s.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       array.array("i", fds))])
            elif payload:
                s.sendall(payload)
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            reply = b""
            while len(reply) < (1 << 20):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
            outcome = f"reply {len(reply)}"
        except OSError as e:
            outcome = type(e).__name__
        finally:
            s.close()
        results[f"{name} {case}"] = [outcome, round(time.monotonic() - t0, 2), kind]
    # many idle connections held open while a py-exec runs
    held = []
    for _ in range(100):
        s = socket.socket(socket.AF_UNIX, kind)
        try:
            s.connect("\0" + name[1:])
        except OSError:
            s.close()
            break
        held.append(s)
    results[f"{name} held"] = [len(held), 0, kind]
    import subprocess
    r = subprocess.run(["py-exec", "-c", "print(6 * 7)"], capture_output=True, text=True,
                       timeout=30)
    results[f"{name} py-exec while held"] = [r.stdout, r.returncode, kind]
    for s in held:
        s.close()
print(json.dumps({"sockets": sorted(socks), "results": results}))
'''


def run(api, sid, script, **kw):
    kw.setdefault("cwd", HOME)  # a test's `cd` must not move the next test's start
    return api.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": script, **kw})


def ok(api, sid, script, **kw):
    r = run(api, sid, script, **kw)
    assert r.status_code == 200, r.text
    return r.json()


class Outcome:
    """What the caller saw of one interpreter run: out, err, rc."""

    def __init__(self, out, err, rc):
        self.out, self.err, self.rc = out, err, rc

    def __eq__(self, other):
        return (self.out, self.err, self.rc) == (other.out, other.err, other.rc)

    def __repr__(self):
        return f"Outcome(rc={self.rc}, out={self.out!r}, err={self.err!r})"


def both(api, sid, cmd, stdin=None, pre="", **kw):
    """Runs the shell fragment cmd twice in one exec, with $PY = python3 and then py-exec
    (stdin, when given, piped to it); returns the two Outcomes. bash's job report of a run
    killed by a signal names its pid, which is replaced by PID."""
    feed = f"printf %s {shlex.quote(stdin)} | " if stdin is not None else ""
    script = (f"{pre}\npyx_body() {{\n{cmd}\n}}\n"
              + "".join(f"PY={py}; {feed}pyx_body; printf '\\n{SEP} %d\\n' $?; "
                        f"printf '\\n{SEP}\\n' >&2\n" for py in ("python3", "py-exec")))
    res = ok(api, sid, script, **kw)
    outs = res["stdout"].split(f"\n{SEP} ")
    errs = [re.sub(r"(line \d+: +)\d+ ", r"\1PID ", e)
            for e in res["stderr"].split(f"\n{SEP}\n")]
    assert len(outs) == 3 and len(errs) == 3 and errs[2] == "", res
    rc_cold, out_warm = outs[1].split("\n", 1)
    return (Outcome(outs[0], errs[0], int(rc_cold)),
            Outcome(out_warm, errs[1], int(outs[2].strip())))


def same(api, sid, cmd, **kw):
    """The py-exec run of cmd as the python3 one; returns it."""
    cold, warm = both(api, sid, cmd, **kw)
    assert warm == cold
    return warm


@pytest.fixture(scope="module")
def pysb(api):
    """A python sandbox with the programs the tests run: pyx/info.py and pyx_info.py (INFO),
    pyx/boom.py (raises), pyx/scan.py, pyx/raw.py."""
    r = api.post("/v1/sandboxes", json={"name": "pyexec", "python": True})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    files = {"pyx/info.py": INFO, "pyx_info.py": INFO, "pyx/scan.py": SCAN,
             "pyx/raw.py": RAW_CLIENT,
             "pyx/boom.py": "def f():\n    raise ValueError('boom')\n\nprint('before')\nf()\n"}
    script = "mkdir -p pyx\n" + "".join(
        f"cat > {path} <<'PYX_EOF'\n{text}PYX_EOF\n" for path, text in files.items())
    ok(api, sid, script)
    yield sid
    api.delete(f"/v1/sandboxes/{sid}")


def readyz(server):
    r = httpx.get(server.url + "/readyz", timeout=5)
    assert r.status_code in (200, 503), r.text
    return r.json()


@pytest.fixture(scope="module")
def has_warm(server):
    """Whether this server has warm py-exec at all (its /readyz reports pyExec)."""
    return "pyExec" in readyz(server)


@pytest.fixture
def warm(server, has_warm):
    """Skips while the server has no warm py-exec; else waits (10 s at most from now) until
    /readyz says it is ready."""
    if not has_warm:
        pytest.skip("the server has no warm py-exec yet (/readyz without pyExec)")
    deadline = time.monotonic() + 10
    while True:
        state = readyz(server)["pyExec"]
        if state["state"] == "ready" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert state == {"state": "ready"}, state


def assert_warm_when_built(has_warm, proof):
    """proof is WARM_PROOF's output in a py-exec child: warm once the server has the
    feature."""
    if has_warm:
        assert proof == "warm", "py-exec ran cold on a server with a warm interpreter"



def zygote_ready(s, seconds=15):
    """/v1/status exec.pyExec once the zygote of server s is ready."""
    deadline = time.monotonic() + seconds
    while (st := status(s)["exec"]["pyExec"])["state"] != "ready":
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    return st

def jail_pids(api, sid):
    """The processes an exec's bash sees besides itself and the jail's init, found with
    builtins only (a command of its own would be one of them)."""
    res = ok(api, sid, 'for d in /proc/[0-9]*; do p=${d#/proc/}; '
                       '[ "$p" = 1 ] || [ "$p" = $$ ] && continue; '
                       'read -r c < "$d/comm" && echo "$p $c"; done; true')
    return res["stdout"].splitlines()


def host_leftovers(server, pidns=None):
    """Host processes that are left of a jail: those of the jail's user that descend from the
    server (the zygote itself excepted) or live in the pid namespace pidns ("pid:[N]")."""
    ppid, uid, ns = {}, {}, {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/status") as f:
                st = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
            ppid[p], uid[p] = st["PPid"].strip(), st["Uid"].split()[0]
            ns[p] = os.readlink(f"/proc/{p}/ns/pid")
        except (OSError, KeyError):
            pass
    zygote = str(status(server)["exec"].get("pyExec", {}).get("pid", ""))

    def from_server(p):
        while p in ppid and p != "1":
            if p == str(server.proc.pid):
                return True
            p = ppid[p]
        return False

    return sorted(p for p in uid if p != zygote and (
        (uid[p] == JAIL_HOST_UID and from_server(p)) or (pidns and ns.get(p) == pidns)))


def wait_no_leftovers(server, pidns=None, seconds=2):
    deadline = time.monotonic() + seconds
    while (left := host_leftovers(server, pidns)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# ---- what the program sees of its start ----

@pytest.mark.parametrize("cmd,stdin", [
    ("$PY -c \"$(cat pyx/info.py)\" a -b --c", None),
    ("$PY pyx/info.py x 'y z'", None),
    ("$PY /home/user/pyx/info.py", None),
    ("$PY -m pyx_info a b", None),
    ("$PY - a b", INFO),
    ("$PY", INFO),
], ids=["-c", "script", "abs-script", "-m", "dash", "stdin"])
def test_argv_path_and_flags_as_cold(api, pysb, cmd, stdin):
    """sys.argv, orig_argv[1:], executable, flags, path (the script's directory, cwd for -m,
    '' for -c and stdin), __name__, __file__, __spec__ and the standard streams."""
    out = same(api, pysb, cmd, stdin=stdin)
    assert out.rc == 0 and out.err == "", out
    info = out.out
    assert "'__main__'" in info and "/usr/bin/python3" in info, info
    if cmd.endswith("info.py x 'y z'"):
        assert "['pyx/info.py', 'x', 'y z']" in info and "['/home/user/pyx'," in info
    if "-m" in cmd:
        assert "['/home/user/pyx_info.py', 'a', 'b']" in info and "['/home/user'," in info


def test_json_tool_on_stdin(api, pysb):
    out = same(api, pysb, "$PY -m json.tool", stdin='{"b": [1, 2], "a": "\u00e9"}')
    assert out.rc == 0 and out.out == '{\n    "b": [\n        1,\n        2\n    ],\n' \
        '    "a": "\\u00e9"\n}\n', out
    bad = same(api, pysb, "$PY -m json.tool", stdin="{nope")
    assert bad.rc == 1 and "Expecting property name" in bad.err, bad


def test_stdin_is_the_callers(api, pysb):
    """A stream larger than a pipe's buffer, read to its end; line by line with input(); a
    closed stdin."""
    out = same(api, pysb, "seq 1 200000 | $PY -c 'import sys, hashlib; d = sys.stdin.buffer.read();"
                          " print(len(d), hashlib.sha256(d).hexdigest())'")
    assert out.out.startswith("1288895 "), out
    out = same(api, pysb, "$PY -c 'print(input()[::-1]); print(input())'", stdin="abc\ndef\n")
    assert out.out == "cba\ndef\n"
    out = same(api, pysb, "$PY -c 'import sys; print(sys.stdin)' <&-")
    assert out.out == "None\n", out


@pytest.mark.parametrize("code,rc,err", [
    ("import sys; print('out'); sys.exit(3)", 3, ""),
    ("import sys; sys.exit('a message')", 1, "a message\n"),
    ("raise ValueError('boom')", 1, "ValueError: boom\n"),
    ("import os; print('lost', end=''); os._exit(7)", 7, ""),
    ("import os, signal; print('x', flush=True); os.kill(os.getpid(), signal.SIGKILL)", 137,
     "Killed"),
    ("import os, signal, time; os.kill(os.getpid(), signal.SIGINT); time.sleep(5)", 130,
     "KeyboardInterrupt\n"),
    ("import signal; signal.signal(signal.SIGINT, signal.SIG_DFL); import os; "
     "os.kill(os.getpid(), signal.SIGINT); import time; time.sleep(5)", 130, ""),
], ids=["exit3", "exit-msg", "exception", "os_exit", "sigkill", "keyboardinterrupt", "sigint"])
def test_exit_status_as_cold(api, pysb, code, rc, err):
    out = same(api, pysb, f"$PY -c {shlex.quote(code)}")
    assert out.rc == rc, out
    assert "Killed" in out.err if err == "Killed" else out.err.endswith(err), out


def test_traceback_of_a_script_and_broken_pipe(api, pysb):
    out = same(api, pysb, "$PY pyx/boom.py")
    assert out.rc == 1 and out.out == "before\n", out
    assert 'File "/home/user/pyx/boom.py", line 5, in <module>' in out.err, out
    out = same(api, pysb, "$PY -c 'for i in range(10**6): print(i)' | head -2; "
                          "echo ps=${PIPESTATUS[0]}")
    assert out.out == "0\n1\nps=1\n" and "BrokenPipeError" in out.err, out


def test_user_site_and_pythonpath(api, pysb):
    """A module under ~/.local's site-packages (created after the server started) and one on
    PYTHONPATH import in both; -s drops the user site, -E drops PYTHONPATH."""
    site = f"{HOME}/.local/lib/python3.11/site-packages"
    pre = (f"mkdir -p {site} pp && echo 'V = \"user\"' > {site}/pyx_usersite.py && "
           "echo 'V = \"pp\"' > pp/pyx_pp.py; export PYTHONPATH=/home/user/pp")
    code = "import sys, pyx_usersite, pyx_pp; print(pyx_usersite.V, pyx_pp.V, sys.path)"
    out = same(api, pysb, f"$PY -c '{code}'", pre=pre)
    assert out.out.startswith("user pp ['', '/home/user/pp', ") and site in out.out, out
    for flag, missing in (("-s", "pyx_usersite"), ("-E", "pyx_pp")):
        out = same(api, pysb, f"$PY {flag} -c '{code}'", pre=pre)
        assert out.rc == 1 and f"No module named '{missing}'" in out.err, out


def test_process_attributes_pass_through(api, pysb):
    """cwd, umask, environment, resource limits, ignored and blocked signals, ids, CPU
    affinity and priority are the caller's."""
    code = ("import os, resource, signal\n"
            "print(os.getcwd(), oct(os.umask(0o22)), os.getuid(), os.geteuid(), os.getgid(),\n"
            "      os.getgroups(), sorted(os.sched_getaffinity(0)),\n"
            "      os.getpriority(os.PRIO_PROCESS, 0))\n"
            "print(sorted((k, v) for k, v in os.environ.items() if k != '_'))\n"
            "print([(n, resource.getrlimit(getattr(resource, n))) for n in sorted(dir(resource))\n"
            "       if n.startswith('RLIMIT_')])\n"
            "print([(s.name, signal.getsignal(s)) for s in signal.Signals\n"
            "       if s not in (signal.SIGKILL, signal.SIGSTOP)])\n"
            "print(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n")
    pre = ("umask 027; export PYX_FOO='a b' PYX_EMPTY= PYX_UTF8=h\u00e9; trap '' USR1 HUP; "
           "ulimit -S -n 200; ulimit -S -c 0")
    cmd = (f"(cd /tmp && $PY -c {shlex.quote(code)}); "
           f"$PY -c {shlex.quote(code)} & wait $!")
    out = same(api, pysb, cmd, pre=pre)
    assert out.rc == 0 and out.err == "", out
    first = out.out.splitlines()[0]
    assert first.startswith("/tmp 0o27 1000 1000 1000 "), out
    assert "('PYX_FOO', 'a b')" in out.out and "('PYX_EMPTY', '')" in out.out
    assert "('RLIMIT_NOFILE', (200, " in out.out
    # SIGUSR1 ignored in both runs; SIGINT ignored in the background one only
    assert out.out.count("('SIGUSR1', <Handlers.SIG_IGN: 1>)") == 2, out
    assert out.out.count("('SIGINT', <Handlers.SIG_IGN: 1>)") == 1, out


@pytest.mark.parametrize("flags", ["-u", "-B", "-I", "-E", "-s", "-P", "-q", "-R",
                                   "-W error::DeprecationWarning", "-u -B -s", "-IB"])
def test_options_as_cold(api, pysb, flags):
    """Each option the warm path takes gives the flags, path, warning filters and streams of a
    cold run, for -c, a script and -m (with PYTHONPATH and a user site set)."""
    pre = "export PYTHONPATH=/home/user/pp"
    for form in ("-c \"$(cat pyx/info.py)\" a", "pyx/info.py a", "-m pyx_info a"):
        out = same(api, pysb, f"$PY {flags} {form}", pre=pre)
        if "-m" in form and ("I" in flags or "P" in flags):  # the cwd is not on sys.path
            assert out.rc == 1 and "No module named pyx_info" in out.err, out
        else:
            assert out.rc == 0 and out.err == "", out


def test_unbuffered_and_bytecode_options_act(api, pysb):
    """-u and PYTHONUNBUFFERED interleave stdout with stderr as written (without, each stream
    comes out whole at exit, stdout first); -B and PYTHONDONTWRITEBYTECODE write no
    __pycache__."""
    w = "import sys; sys.stdout.write('a'); sys.stderr.write('b'); sys.stdout.write('c\\n')"
    out = same(api, pysb, f"$PY -c \"{w}\" 2>&1; $PY -u -c \"{w}\" 2>&1; "
                          f"PYTHONUNBUFFERED=1 $PY -c \"{w}\" 2>&1")
    assert out.out == "ac\nb" "abc\n" "abc\n", out
    imp = ("import sys, os; sys.path.insert(0, 'bc'); import bmod; "
           "print(sorted(os.listdir('bc')))")
    out = same(api, pysb, f"rm -rf bc; mkdir bc; echo X=1 > bc/bmod.py; $PY -B -c \"{imp}\"; "
                          f"PYTHONDONTWRITEBYTECODE=1 $PY -c \"{imp}\"; $PY -c \"{imp}\"")
    assert out.out == "['bmod.py']\n['bmod.py']\n['__pycache__', 'bmod.py']\n", out


def test_files_written_land_in_the_sandbox(api, pysb):
    code = ("import os; os.makedirs('/home/user/pyxw', exist_ok=True);"
            " open('/home/user/pyxw/' + os.environ['N'], 'wb').write(bytes(range(256)) * 4);"
            " open('/tmp/pyxw-' + os.environ['N'], 'w').write('tmp')")
    out = same(api, pysb, f"N=$PY $PY -c {shlex.quote(code)}; stat -c '%a %U %s' pyxw/$PY")
    assert out.out == "644 user 1024\n", out
    for name in ("python3", "py-exec"):
        r = api.get(f"/v1/sandboxes/{pysb}/files/home/user/pyxw/{name}")
        assert r.status_code == 200 and r.content == bytes(range(256)) * 4, r.text
        assert json.loads(r.headers["x-fs-stat"])["mode"] == 0o644
        assert api.get(f"/v1/sandboxes/{pysb}/files/tmp/pyxw-{name}").content == b"tmp"


def test_fds_beyond_stdio_are_inherited(api, pysb):
    """Redirections, process substitution, the exec's own fd 3, closed fds: the program sees
    the same descriptors (same files, same flags) as a cold run."""
    out = same(api, pysb, "$PY -c 'import os; os.write(3, b\"x\")' 3>pyx-fd3; cat pyx-fd3; "
                          "echo; "
                          "$PY -c 'import sys; print(open(sys.argv[1]).read())' <(echo hi); "
                          "$PY -c 'import os; print(os.read(5, 10))' 5< <(printf abc); "
                          "$PY -c 'import os; os.fstat(7)' 7>&- 2>&1 | tail -1")
    assert out.out == "x\nhi\n\nb'abc'\nOSError: [Errno 9] Bad file descriptor\n", out
    listing = ("import os, fcntl\n"
               "for fd in sorted(map(int, os.listdir('/proc/self/fd'))):\n"
               "    p = f'/proc/self/fd/{fd}'\n"
               "    t = os.readlink(p) if os.path.exists(p) else None\n"
               "    if t and not t.startswith('/proc/'):\n"
               "        print(fd, t, fcntl.fcntl(fd, fcntl.F_GETFL), "
               "fcntl.fcntl(fd, fcntl.F_GETFD))\n")
    out = same(api, pysb, f"$PY -c {shlex.quote(listing)} 4>>pyx-fd4 6<pyx/info.py 9>&1 "
                          "</dev/null")
    assert [line.split()[0] for line in out.out.splitlines()] == ["0", "1", "2", "3", "4", "6",
                                                                  "9"], out


def test_signals_sent_to_py_exec_reach_the_program(api, pysb):
    term = ("import signal, time; signal.signal(signal.SIGTERM, lambda *a: (print('got'), "
            "exit(5))); print('ready', flush=True); time.sleep(10)")
    out = same(api, pysb, f"$PY -c {shlex.quote(term)} & sleep 1; kill -TERM $!; wait $!; "
                          "echo status=$?")
    assert out.out == "ready\ngot\nstatus=5\n", out
    out = same(api, pysb, "$PY -c 'import time; time.sleep(10)' & sleep 1; kill -USR1 $!; "
                          "wait $!; echo status=$?")
    assert out.out == "status=138\n", out


def test_output_beyond_the_cap_is_capped(fresh_server):
    """As any command's: MAX_EXEC_OUTPUT_BYTES of each stream kept, the rest dropped."""
    cap = 1 << 20
    s = fresh_server({"MAX_EXEC_OUTPUT_BYTES": str(cap)})
    with s.client() as c:
        sid = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        code = ("import sys; sys.stdout.write('x' * (3 << 20)); sys.stdout.flush();"
                " sys.stderr.write('y' * (3 << 20)); print('end')")
        res = {}
        for py in ("python3", "py-exec"):
            r = run(c, sid, f"{py} -c {shlex.quote(code)}; echo rc=$?")
            assert r.status_code == 200, r.text
            res[py] = r.json()
        for j in res.values():
            assert j["stdout"] == "x" * cap and j["stderr"] == "y" * cap, j["stdout"][-20:]
            assert j["stdoutTruncated"] and j["stderrTruncated"] and j["exitCode"] == 0
        assert httpx.get(s.url + "/healthz").status_code == 200


def test_exec_timeout_leaves_no_process(api, server, pysb):
    r = run(api, pysb, "readlink /proc/$$/ns/pid; py-exec -c 'import time; time.sleep(60)' & "
                       "py-exec -c 'import time; print(\"started\", flush=True); time.sleep(60)'",
            timeoutMs=2000)
    assert r.status_code == 408, r.text
    j = r.json()
    assert j["timedOut"] and j["stdout"].endswith("started\n"), j
    assert wait_no_leftovers(server, j["stdout"].split()[0]) == []
    assert jail_pids(api, pysb) == []


# ---- no state from one call to the next ----

MUTATE = ("import builtins, json, os, sys, re, random; json.dumps = None; builtins.leak = 1;"
          " sys.modules['json'].X = 1; os.environ['LEAK'] = '1'; re.compile = None;"
          " sys.path.append('/leak'); random.seed(1); sys.modules['pyx_leak'] = sys;"
          " sys.setrecursionlimit(150); import atexit; atexit.register(print, 'atexit-ran')")
CHECK = ("import builtins, json, os, sys, re; print(json.dumps([1]), hasattr(builtins, 'leak'),"
         " hasattr(json, 'X'), os.environ.get('LEAK'), re.compile('a').pattern,"
         " '/leak' in sys.path, 'pyx_leak' in sys.modules, sys.getrecursionlimit())")
CLEAN = "[1] False False None a False False 1000\n"


def test_no_state_across_calls(api, pysb):
    res = ok(api, pysb, f"py-exec -c {shlex.quote(MUTATE)}; py-exec -c {shlex.quote(CHECK)}")
    assert res["stdout"] == "atexit-ran\n" + CLEAN, res
    assert ok(api, pysb, f"py-exec -c {shlex.quote(CHECK)}")["stdout"] == CLEAN
    other = api.post("/v1/sandboxes", json={"python": True}).json()["id"]
    try:
        assert ok(api, other, f"py-exec -c {shlex.quote(CHECK)}")["stdout"] == CLEAN
    finally:
        api.delete(f"/v1/sandboxes/{other}")


def test_randomness_differs_between_calls(api, pysb):
    code = "import random, os, tempfile; print(random.random(), os.urandom(16).hex(), " \
           "random.getrandbits(64), tempfile.mktemp())"
    res = ok(api, pysb, f"py-exec -c '{code}'; py-exec -c '{code}'; "
                        f"py-exec -c '{code}' & py-exec -c '{code}'; wait")
    lines = [line.split() for line in res["stdout"].splitlines()]
    assert len(lines) == 4, res
    for col in range(4):
        assert len({line[col] for line in lines}) == 4, lines


# ---- warm or cold ----

def test_readyz_reports_the_warm_interpreter(api, server, pysb, warm):
    """/readyz pyExec ready; /v1/status exec.pyExec describes the zygote and counts warm
    children; a py-exec child holds the preloaded modules."""
    st = status(server)["exec"]["pyExec"]
    assert st["state"] == "ready" and "json" in st["preloaded"], st
    with open(f"/proc/{st['pid']}/status") as f:
        assert "VmRSS" in f.read()
    res = ok(api, pysb, f"python3 -c \"{WARM_PROOF}\"; py-exec -c \"{WARM_PROOF}\"")
    assert res["stdout"] == "cold\nwarm\n" and res["stderr"] == "", res
    after = status(server)["exec"]["pyExec"]
    assert after["spawned"] >= st["spawned"] + 1 and after["pid"] == st["pid"], after


def test_off_runs_cold_with_one_notice(fresh_server, has_warm):
    if not has_warm:
        pytest.skip("the server has no warm py-exec yet (/readyz without pyExec)")
    s = fresh_server({"PY_EXEC_WARM": "off"})
    assert readyz(s)["pyExec"]["state"] == "off"
    with s.client() as c:
        sid = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        res = ok(c, sid, f'py-exec -c "import sys; print(sys.argv); {WARM_PROOF}" a')
        assert res["stdout"] == "['-c', 'a']\ncold\n" and res["exitCode"] == 0, res
        lines = res["stderr"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("py-exec: ") and "cold" in lines[0], res
        res = ok(c, sid, "py-exec -c 'import sys; sys.exit(4)'")
        assert res["exitCode"] == 4 and res["stderr"].startswith("py-exec: "), res


def test_zygote_death_falls_back_and_recovers(fresh_server, has_warm):
    """With the zygote killed, py-exec still runs (cold with its one notice, or warm again
    once restarted); the server stays healthy, restarts it and serves warm again."""
    if not has_warm:
        pytest.skip("the server has no warm py-exec yet (/readyz without pyExec)")
    s = fresh_server()
    before = zygote_ready(s)
    os.kill(before["pid"], 9)
    with s.client() as c:
        sid = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        res = ok(c, sid, "py-exec -c 'import sys; print(sys.argv)' a")
        assert res["stdout"] == "['-c', 'a']\n" and res["exitCode"] == 0, res
        lines = res["stderr"].splitlines()
        assert lines == [] or (len(lines) == 1 and lines[0].startswith("py-exec: ")
                               and "cold" in lines[0]), res
        assert httpx.get(s.url + "/healthz", timeout=5).status_code == 200
        after = zygote_ready(s)
        assert after["pid"] != before["pid"] and after["restarts"] >= 1, after
        assert not os.path.exists(f"/proc/{before['pid']}"), "the dead zygote was not reaped"
        res = ok(c, sid, f'py-exec -c "{WARM_PROOF}"')
        assert res["stdout"] == "warm\n" and res["stderr"] == "", res


@pytest.mark.parametrize("cmd", [
    '$PY -O -c "print(__debug__); PROOF"',
    "PYTHONHASHSEED=0 $PY -c \"print(hash('abc'), {'b', 'a', 'c'}); PROOF\"",
    "LC_ALL=C $PY -c \"import sys, locale; print(sys.stdout.encoding, locale.getlocale()); "
    "PROOF\"",
    '$PY -X utf8=0 -c "import sys; print(sys.flags.utf8_mode); PROOF"',
    'PYTHONVERBOSE= PYTHONOPTIMIZE=1 $PY -c "print(__debug__); PROOF"',
    "[ -d /tmp/pyxv ] || python3 -m venv --without-pip /tmp/pyxv; PATH=/tmp/pyxv/bin:$PATH "
    '$PY -c "import sys; print(sys.prefix, sys.executable); PROOF"',
], ids=["-O", "hashseed", "locale-C", "-X", "PYTHONOPTIMIZE", "venv"])
def test_semantic_fallbacks_are_silent_and_cold(api, pysb, cmd):
    """What the warm interpreter cannot give runs cold: the cold run's output (which includes
    no preloaded module) and no notice."""
    out = same(api, pysb, cmd.replace("PROOF", WARM_PROOF))
    assert out.err == "" and out.rc == 0 and out.out.endswith("cold\n"), out
    if "-O" in cmd or "OPTIMIZE" in cmd:
        assert out.out.startswith("False\n")


def test_per_exec_concurrency_beyond_the_cap_runs_cold(api, pysb, has_warm):
    """More concurrent py-exec than PY_EXEC_PER_EXEC (16) all run; the extra ones cold,
    silently."""
    code = f"import time; time.sleep(1); {WARM_PROOF}"
    res = ok(api, pysb, f'for i in $(seq 20); do py-exec -c "{code}" & done; wait')
    lines = res["stdout"].splitlines()
    assert len(lines) == 20 and res["stderr"] == "", res
    if has_warm:
        assert 1 <= lines.count("warm") <= 16, lines


# ---- a hostile tenant ----

def test_warm_child_is_confined(api, pysb, has_warm):
    """The child has the caller's credentials, namespaces, cgroup, root and mounts, no
    privilege, and no memory shared writable with anything (such as the zygote)."""
    code = ("import os, sys\n"
            f"{WARM_PROOF}\n"
            "print('shared', [l for l in open('/proc/self/maps').read().splitlines()\n"
            "                 if l.split()[1][1] == 'w' and l.split()[1][3] == 's'])\n"
            "st = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n"
            "for k in ('Uid', 'Gid', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb',\n"
            "          'NoNewPrivs', 'Seccomp'):\n"
            "    print(k, st[k].split())\n"
            "for n in ('user', 'mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup'):\n"
            "    print(n, os.readlink('/proc/self/ns/' + n))\n"
            "for f in ('cgroup', 'uid_map', 'gid_map', 'mountinfo'):\n"
            "    print(f, repr(open('/proc/self/' + f).read()))\n"
            "print('root', os.readlink('/proc/self/root'), os.stat('/').st_ino,"
            " os.stat('/proc').st_dev)\n")
    script = ("for n in user mnt pid net ipc uts cgroup; do echo $n $(readlink /proc/$$/ns/$n);"
              " done; for f in cgroup uid_map gid_map mountinfo; do "
              "printf '%s ' $f; python3 -c 'import sys; print(repr(open(sys.argv[1]).read()))' "
              "/proc/$$/$f; done; echo root / $(stat -c %i /) $(stat -c %d /proc); echo @@=; "
              f"python3 -c {shlex.quote(code)}; echo @@=; py-exec -c {shlex.quote(code)}")
    res = ok(api, pysb, script)
    bash, cold, warm_ = res["stdout"].split("@@=\n")
    assert cold.splitlines()[0] == "cold"
    assert_warm_when_built(has_warm, warm_.splitlines()[0])
    assert warm_.splitlines()[1] == cold.splitlines()[1] == "shared []", res
    fields = dict(line.split(" ", 1) for line in warm_.splitlines()[2:11])
    assert fields == {"Uid": "['1000', '1000', '1000', '1000']",
                      "Gid": "['1000', '1000', '1000', '1000']",
                      **{k: "['0000000000000000']" for k in
                         ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
                      "NoNewPrivs": "['1']", "Seccomp": "['2']"}, warm_
    assert warm_.splitlines()[2:11] == cold.splitlines()[2:11]
    # namespaces, cgroup, id maps, mounts, root: those of the calling bash
    assert warm_.splitlines()[11:] == cold.splitlines()[11:] == bash.splitlines(), res
    assert "mountinfo" in bash and "root /" in bash


def test_proc_shows_only_the_jail(api, pysb, has_warm):
    """The child's /proc lists only the jail's processes: init, the bash, the py-exec caller and
    itself; no zygote, no host process."""
    code = ("import os, sys, json\n"
            "proof = 'json' in sys.modules\n"
            "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
            "comm = {}\n"
            "for p in pids:\n"
            "    try:\n"
            "        comm[p] = open(f'/proc/{p}/comm').read().strip()\n"
            "    except OSError as e:\n"
            "        comm[p] = type(e).__name__\n"
            "print(json.dumps({'warm': proof, 'pids': pids, 'self': os.getpid(), 'comm': comm}))\n")
    res = ok(api, pysb, f"echo $$; python3 -c {shlex.quote(code)} & echo $!; wait; "
                        f"py-exec -c {shlex.quote(code)} & echo $!; wait")
    lines = res["stdout"].splitlines()
    bash = int(lines[0])
    cold, warm_ = json.loads(lines[2]), json.loads(lines[4])
    assert set(cold["pids"]) == {1, bash, cold["self"]}, cold
    assert_warm_when_built(has_warm, "warm" if warm_["warm"] else "cold")
    assert set(warm_["pids"]) <= {1, bash, int(lines[3]), warm_["self"]}, warm_
    assert {1, bash, warm_["self"]} <= set(warm_["pids"]), warm_


def test_other_sandboxes_and_the_server_are_invisible(api, server, pysb):
    other = api.post("/v1/sandboxes", json={"python": True}).json()["id"]
    try:
        mark = "pyx-other-" + secrets.token_hex(4)
        ok(api, other, f"echo secret > {mark}.txt; py-exec -c 'import time; time.sleep(0)'")
        # /proc, /sys, /dev and the shared read-only /usr hold nothing of a sandbox
        code = ("import os, sys\n"
                "hits = []\n"
                "for d, ds, fs in os.walk('/'):\n"
                "    ds[:] = [x for x in ds if os.path.join(d, x) not in\n"
                "             ('/proc', '/sys', '/dev', '/usr')]\n"
                "    hits += [os.path.join(d, f) for f in fs + ds if sys.argv[1] in f]\n"
                "print(hits, os.path.exists(sys.argv[2]), os.path.exists(sys.argv[3]))\n")
        walk = (f"{shlex.quote(code)} {mark} {shlex.quote(server.data_dir)} "
                f"/proc/{server.proc.pid}/environ")
        out = same(api, pysb, f"$PY -c {walk}")
        assert out.out == "[] False False\n", out
    finally:
        api.delete(f"/v1/sandboxes/{other}")


def test_background_processes_do_not_survive_the_exec(api, server, pysb):
    """Children detached from py-exec (a new session, a double fork), and a py-exec left in the
    background, are gone when the exec returns: on the host and for the next exec."""
    detach = ("import os, subprocess, time\n"
              "subprocess.Popen(['sleep', '101.7'], start_new_session=True,\n"
              "                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        os.closerange(0, 64); time.sleep(101.7)\n"
              "    os._exit(0)\n"
              "print('detached')\n")
    res = ok(api, pysb, f"readlink /proc/$$/ns/pid; py-exec -c {shlex.quote(detach)}; "
                        "(py-exec -c 'import time; time.sleep(101.7)' >/dev/null 2>&1 &); "
                        "nohup py-exec -c 'import time; time.sleep(101.7)' >/dev/null 2>&1 & "
                        "disown; sleep 0.3; echo started")
    pidns, *rest = res["stdout"].split()
    assert rest == ["detached", "started"], res
    assert wait_no_leftovers(server, pidns) == []
    assert jail_pids(api, pysb) == []
    survivors = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if b"101.7" in f.read():
                    survivors.append(p)
        except OSError:
            pass
    assert survivors == []


def halves(s):
    b = s.encode()
    return [b[:len(b) // 2].hex(), b[len(b) // 2:].hex()]


def test_child_holds_nothing_of_the_server(api, pysb, has_warm):
    """Neither the environment nor any readable byte of a py-exec child's memory holds the
    server's secrets; a canary in the caller's environment is found, so the scan works."""
    canary = "pyx-canary-" + secrets.token_hex(8)
    argv = " ".join(["canary", *halves(canary), "secret", *halves(SECRET),
                     "admin", *halves(ADMIN_SECRET)])
    out = both(api, pysb, f"PYX_CANARY={canary} $PY pyx/scan.py {argv}")
    for o, kind in zip(out, ("cold", "warm")):
        assert o.rc == 0 and o.err == "", o
        found = json.loads(o.out)["found"]
        assert found["secret"] == found["admin"] == [False, False], (kind, found)
        assert found["canary"][1], (kind, found)  # in memory (/proc/self/environ: below)
        assert json.loads(o.out)["scanned"] > 1 << 20, o
    assert json.loads(out[0].out)["found"]["canary"] == [True, True]
    assert not json.loads(out[0].out)["warm"]
    assert_warm_when_built(has_warm, "warm" if json.loads(out[1].out)["warm"] else "cold")


def test_proc_self_environ_is_the_callers(api, pysb, has_warm):
    """/proc/self/environ (what `ps e`, psutil or a parent reading /proc/PID/environ see) holds
    the environment py-exec was given, as a cold run's does, not the zygote's."""
    code = ("import os, sys\n"
            f"{WARM_PROOF}\n"
            "env = open('/proc/self/environ', 'rb').read().split(b'\\0')\n"
            "print(sorted(e for e in env if e and not e.startswith(b'_=')))\n")
    out = both(api, pysb, f"PYX_ENV=1 $PY -c {shlex.quote(code)}")
    assert out[0].out.splitlines()[0] == "cold"
    assert_warm_when_built(has_warm, out[1].out.splitlines()[0])
    assert "b'PYX_ENV=1'" in out[0].out
    assert out[1].out.splitlines()[1:] == out[0].out.splitlines()[1:], out


def test_raw_clients_of_the_socket_change_nothing(api, server, pysb, warm):
    """A tenant speaking to the py-exec socket itself (garbage, truncated, oversized requests,
    descriptors of its own, a hundred idle connections) gets refused or a cold answer: nothing
    runs outside the jail, the zygote stays the same, the server stays healthy and the next
    py-exec is warm."""
    before = status(server)["exec"]["pyExec"]
    pwn = f"/tmp/sqlfs-pyx-escaped-{secrets.token_hex(6)}"
    res = ok(api, pysb, f"python3 pyx/raw.py {pwn}", timeoutMs=120000)
    assert res["exitCode"] == 0, res
    report = json.loads(res["stdout"])
    assert report["sockets"] and all(n.startswith("@sqlfs") for n in report["sockets"]), report
    for case, (outcome, seconds, kind) in report["results"].items():
        if case.endswith("py-exec while held"):
            assert (outcome, seconds) == ("42\n", 0), report
        elif not case.endswith("held") and kind != socket.SOCK_DGRAM:
            # answered or closed on, never left hanging (the client gives up after 3 s)
            assert outcome != "TimeoutError", (case, outcome, seconds)
    assert not os.path.exists(pwn), "a raw request ran code outside the jail"
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    after = status(server)["exec"]["pyExec"]
    assert after["state"] == "ready" and after["pid"] == before["pid"], after
    assert after["restarts"] == before["restarts"], after
    res = ok(api, pysb, f"py-exec -c \"{WARM_PROOF}\"")
    assert res["stdout"] == "warm\n" and res["stderr"] == "", res
    assert wait_no_leftovers(server) == []


# ---- bounds a raw client or a zygote restart must not lift ----

# A client of the py-exec socket that speaks the protocol (zygote_proto.h) itself, run by cold
# python3 in the jail. `connect()` returns a socket and the first reply; `request()` sends a
# whole request (working directory, fds 0-2, argv, the caller's environment) whose resource
# limits are the caller's with `rlim` ({RLIMIT_*: (soft, hard)}, -1 for RLIM_INFINITY) over
# them, and returns the replies up to EXIT, COLD or UNAVAILABLE as (kind, value).
PROTO = r'''
import array, os, resource, socket, struct
MAGIC, INF = 0x70797831, (1 << 64) - 1

def reply(s):
    msg, anc, _, _ = s.recvmsg(16, socket.CMSG_SPACE(4))
    for _, _, data in anc:
        for fd in array.array("i", data[:4]):
            os.close(fd)
    return struct.unpack("<IIiI", msg)[1:3] if len(msg) == 16 else ("short", len(msg))

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(20)
    s.connect("\0sqlfs/py-exec")
    return s, reply(s)

def request(s, argv, rlim=None):
    env = [k.encode() + b"=" + v.encode() for k, v in os.environ.items()]
    strings = b"".join(a + b"\0" for a in argv + env)
    lims = [resource.getrlimit(i) for i in range(16)]
    for k, v in (rlim or {}).items():
        lims[k] = v
    fds, targets = [os.open(".", os.O_PATH | os.O_DIRECTORY), 0, 1, 2], [-1, 0, 1, 2]
    head = struct.pack("<IIIIIIiIQQ", MAGIC, len(argv), len(env), len(strings), len(fds),
                       0o22, 0, 0, 0, 0)
    head += b"".join(struct.pack("<QQ", *(INF if x < 0 else x for x in l)) for l in lims)
    head += struct.pack(f"<{len(targets)}i", *targets)
    s.sendmsg([head])
    s.sendmsg([b"f"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    s.sendmsg([strings])
    out = []
    while not out or out[-1][0] not in (3, 4, 5, "short"):
        out.append(reply(s))
    return out
'''


def put_proto(api, sid):
    ok(api, sid, f"mkdir -p pyx; cat > pyx/proto.py <<'PYX_EOF'\n{PROTO}PYX_EOF\n")


def test_a_raw_request_cannot_raise_a_limit_of_the_exec(fresh_server, has_warm):
    """The limits a request names are the caller's claim: a warm child never gets a limit
    above the exec's own (here RLIMIT_FSIZE, EXEC_FILE_SIZE_BYTES), whatever a raw client asks
    for; it runs within the exec's limit or not at all (cold)."""
    if not has_warm:
        pytest.skip("the server has no warm py-exec yet (/readyz without pyExec)")
    s = fresh_server({"EXEC_FILE_SIZE_BYTES": str(1 << 20)})
    with s.client() as c:
        sid = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        put_proto(c, sid)
        code = ("import resource\n"
                "print(resource.getrlimit(resource.RLIMIT_FSIZE))\n")
        client = ("import sys, resource; sys.path.insert(0, 'pyx'); import proto\n"
                  "print(resource.getrlimit(resource.RLIMIT_FSIZE), flush=True)\n"
                  "s, hello = proto.connect()\n"
                  f"print(proto.request(s, [b'-c', {code.encode()!r}],\n"
                  "                    {resource.RLIMIT_FSIZE: (-1, -1)}), flush=True)\n")
        res = ok(c, sid, f"python3 -c {shlex.quote(client)}")
        lines = res["stdout"].splitlines()
        assert lines[0] == f"({1 << 20}, {1 << 20})", res
        if len(lines) == 3:  # the child ran: with the exec's limit at most
            soft, hard = (int(x) for x in lines[1].strip("()").split(","))
            assert 0 <= soft <= hard <= 1 << 20, res
        else:
            assert "(3, 0)" in lines[-1], res  # COLD


def test_warm_children_count_against_the_exec_pid_limit(fresh_server, has_warm):
    """An exec with no process left under EXEC_PIDS_MAX gets no warm child either: a child
    that joins the exec's cgroup must not take it past its pid limit (migration into a
    cgroup is not checked against pids.max, a fork in it is)."""
    if not has_warm:
        pytest.skip("the server has no warm py-exec yet (/readyz without pyExec)")
    s = fresh_server({"EXEC_PIDS_MAX": "24"})
    with s.client() as c:
        sid = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        put_proto(c, sid)
        fill = ("import os, sys, time; sys.path.insert(0, 'pyx'); import proto\n"
                "while True:\n"
                "    try:\n"
                "        pid = os.fork()\n"
                "    except OSError:\n"
                "        break\n"
                "    if pid == 0:\n"
                "        time.sleep(20); os._exit(0)\n"
                "full = len([p for p in os.listdir('/proc') if p.isdigit()])\n"
                "held = [proto.connect() for _ in range(3)]\n"
                "now = len([p for p in os.listdir('/proc') if p.isdigit()])\n"
                "print(full, now, [r for _, r in held], flush=True)\n"
                "os.killpg(0, 9)\n")
        res = ok(c, sid, f"python3 -c {shlex.quote(fill)}", timeoutMs=60000)
        full, now, replies = res["stdout"].split(" ", 2)
        assert int(now) <= int(full), res  # no process beyond the limit
        assert "(1, 0)" not in replies, res  # no HELLO: no child in the jail


def test_the_bounds_hold_across_a_zygote_restart(fresh_server, has_warm):
    """Warm children of a zygote that died still run (their monitors were its children): the
    server keeps counting them against PY_EXEC_MAX until they end, or they end with it."""
    if not has_warm:
        pytest.skip("the server has no warm py-exec yet (/readyz without pyExec)")
    import threading
    s = fresh_server({"PY_EXEC_MAX": "2", "PY_EXEC_PER_EXEC": "2"})


    hold = f'for i in 1 2; do py-exec -c "{WARM_PROOF}; import time; time.sleep(8)" & done; wait'
    with s.client() as c:
        a = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        b = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        pid = zygote_ready(s)["pid"]
        first = {}
        t = threading.Thread(target=lambda: first.update(ok(c, a, hold, timeoutMs=60000)))
        t.start()
        deadline = time.monotonic() + 10
        while status(s)["exec"]["pyExec"]["running"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(pid, 9)
        zygote_ready(s)
        second = ok(c, b, hold.replace("sleep(8)", "sleep(0)"), timeoutMs=60000)
        t.join()
    first_warm = first["stdout"].split().count("warm")
    if first_warm == 2 and first["exitCode"] == 0:  # they outlived their zygote
        assert second["stdout"].split().count("warm") == 0, (first, second)


def test_a_fresh_zygote_replaces_it_after_its_calls(fresh_server, has_warm):
    """After PY_EXEC_RECYCLE calls a fresh zygote (new pid, new str hash secret) serves the
    next ones; the calls in between run cold without a notice."""
    if not has_warm:
        pytest.skip("the server has no warm py-exec yet (/readyz without pyExec)")
    s = fresh_server({"PY_EXEC_RECYCLE": "3"})


    code = f"{WARM_PROOF}; print(hash('sqlfs'))"
    with s.client() as c:
        sid = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        first = zygote_ready(s)
        seen = []
        for _ in range(3):
            r = ok(c, sid, f"py-exec -c {shlex.quote(code)}")
            assert r["stderr"] == "", r
            seen.append(r["stdout"].split())
        assert [w for w, _ in seen] == ["warm"] * 3
        assert len({h for _, h in seen}) == 1  # one zygote, one hash secret
        second = zygote_ready(s)
        assert second["pid"] != first["pid"] and second["recycled"] == 1, second
        r = ok(c, sid, f"py-exec -c {shlex.quote(code)}")
        assert r["stderr"] == "" and r["stdout"].split()[0] == "warm", r
        assert r["stdout"].split()[1] != seen[0][1]  # a new hash secret


def test_a_connect_storm_is_refused_cheaply(fresh_server, has_warm):
    """An exec may start PY_EXEC_RATE warm children a second: a jail connecting in a loop gets
    the rest refused (cold, silently) and waits in connect() while its listener rests, so the
    broker and the zygote stay responsive for other sandboxes."""
    if not has_warm:
        pytest.skip("the server has no warm py-exec yet (/readyz without pyExec)")
    s = fresh_server({"PY_EXEC_RATE": "5"})
    storm = ("import socket, time\n"
             "end = time.monotonic() + 2; n = 0\n"
             "while time.monotonic() < end:\n"
             "    c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
             "    c.connect('\\0sqlfs/py-exec'); c.close(); n += 1\n"
             "print(n)\n")
    with s.client() as c:
        a = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        b = c.post("/v1/sandboxes", json={"python": True}).json()["id"]
        zygote_ready(s)
        before = status(s)["exec"]["pyExec"]
        r = ok(c, a, f"python3 -c {shlex.quote(storm)}")
        after = status(s)["exec"]["pyExec"]
        # at most the bucket (PY_EXEC_PER_EXEC) and 5 a second were handed to the zygote
        assert after["spawned"] - before["spawned"] <= 16 + 5 * 3, (before, after, r)
        assert after["pid"] == before["pid"]
        # the other sandbox still gets a warm child
        r = ok(c, b, f"py-exec -c {shlex.quote(WARM_PROOF)}")
        assert r["stdout"].strip() == "warm" and r["stderr"] == "", r
