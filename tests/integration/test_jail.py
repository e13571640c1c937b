"""Adversarial tests of the jail: what a script must not be able to do (issue: exec engine)."""
import os
import time

import httpx
import pytest

from conftest import SECRET, assert_error, status


def ok(api, sid, script, **kw):
    r = api.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": script, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def test_cannot_see_server_data_or_secret(api, sandbox, server):
    res = ok(api, sandbox, f"ls {server.data_dir} 2>&1; cat /proc/1/environ | tr '\\0' '\\n'; "
                           "env; cat /etc/shadow 2>&1; ls /sys 2>&1")
    out = res["stdout"] + res["stderr"]
    assert SECRET not in out and "AUTH_SECRET" not in out
    assert "sqlfs.db" not in out and "auth_secret" not in out
    res = ok(api, sandbox, "grep -rs AUTH_SECRET /proc/*/environ /etc 2>/dev/null | head -3; "
                           "ls /home")
    assert SECRET not in res["stdout"] and res["stdout"] == "user\n"


def test_init_is_a_tiny_separate_program(api, sandbox, server):
    """pid 1 of the jail is sqlfs's own init, not a copy of the server: a few pages of memory,
    the script's environment, and closed to the script (non-dumpable)."""
    res = ok(api, sandbox, "tr '\\0' '\\n' < /proc/1/cmdline | head -3 | tr '\\n' ' '; echo; "
                           "awk '/^VmRSS/ {print $2}' /proc/1/status; "
                           "head -c 16 /proc/1/mem >/dev/null 2>&1 && echo R1; "
                           "readlink /proc/1/exe >/dev/null 2>&1 && echo R2; "
                           "tr '\\0' '\\n' < /proc/1/environ 2>/dev/null | grep -c . ; true")
    lines = res["stdout"].splitlines()
    shell = status(server)["exec"]["shell"]
    assert lines[0] == f"sqlfs-init {shell} bash ", res
    assert int(lines[1]) < 1024, res  # KiB: a copy of the server would hold many MiB
    # /proc/1/mem, /proc/1/exe and /proc/1/environ are closed to the script
    assert lines[2:] == ["0"], res


def test_other_sandboxes_invisible(api, sandbox):
    other = api.post("/v1/sandboxes").json()["id"]
    ok(api, other, "echo secret-of-other > mine.txt; sleep 0")
    res = ok(api, sandbox, "find / -xdev -name mine.txt 2>/dev/null; ls /proc | grep -c '^[0-9]'")
    assert "mine.txt" not in res["stdout"]
    # only the jail's own few processes are visible
    assert int(res["stdout"].split()[-1]) < 10


def test_cannot_write_system_dirs(api, sandbox):
    res = ok(api, sandbox, "touch /usr/x 2>&1; touch /etc/x 2>&1; { echo > /usr/bin/bash; } "
                           "2>&1; id -u")
    assert res["stdout"].count("Read-only file system") + \
        res["stdout"].count("Permission denied") >= 3
    assert res["stdout"].strip().endswith("1000")


def test_root_belongs_to_nobody(api, sandbox):
    """/ is host root's (nobody in the jail), 0755: the script cannot create, delete or rename
    top-level entries, while a top-level file of the tree stays its own to change in place."""
    assert api.put(f"/v1/sandboxes/{sandbox}/files/top.txt", content=b"one\n").status_code == 204
    res = ok(api, sandbox, "export LC_ALL=C; stat -c '%U:%G %a' /; touch /x 2>&1; "
                           "mkdir /d 2>&1; "
                           "rm /top.txt 2>&1; mv /top.txt /home/user/ 2>&1; rm /bin 2>&1; "
                           "echo two >> /top.txt && cat /top.txt; ls -d /x /d 2>&1 | wc -l")
    assert res["stdout"].splitlines() == [
        "nobody:nogroup 755",
        "touch: cannot touch '/x': Permission denied",
        "mkdir: cannot create directory '/d': Permission denied",
        "rm: cannot remove '/top.txt': Permission denied",
        "mv: cannot move '/top.txt' to '/home/user/top.txt': Permission denied",
        "rm: cannot remove '/bin': Permission denied",
        "one", "two", "2"], res
    r = api.get(f"/v1/sandboxes/{sandbox}/files/top.txt")
    assert r.status_code == 200 and r.content == b"one\ntwo\n", r.text
    tree = {e["path"] for e in api.get(f"/v1/sandboxes/{sandbox}/tree",
                                       params={"prefix": "/"}).json()}
    assert "/x" not in tree and "/d" not in tree and "/home/user/top.txt" not in tree


def test_host_information_under_proc_is_masked(api, sandbox):
    """As container runtimes do: host files under /proc read empty, host directories are empty,
    kernel knobs are read-only mounts; the rest of /proc works."""
    res = ok(api, sandbox, "wc -c < /proc/cmdline; cat /proc/keys /proc/timer_list 2>&1 | wc -c; "
                           "awk '$5 ~ /^[/]proc[/](sys|irq|bus|fs)$/ {print $5, substr($6, 1, 3)}' "
                           "/proc/self/mountinfo | sort; ls /dev/core 2>&1 | grep -c 'No such'; "
                           "ps -o pid= -p $$ | tr -d ' '; grep -c MemTotal /proc/meminfo")
    lines = res["stdout"].splitlines()
    assert lines[:2] == ["0", "0"], res
    want = sorted(f"/proc/{d} ro," for d in ("sys", "irq", "bus", "fs")
                  if os.path.exists(f"/proc/{d}"))
    assert lines[2:2 + len(want)] == want, res
    assert lines[2 + len(want):] == ["1", "2", "1"], res


def test_no_network_but_loopback(api, sandbox):
    res = ok(api, sandbox, "ip -o link 2>/dev/null | wc -l; "
                           "(exec 3<>/dev/tcp/1.1.1.1/80) 2>&1 | head -1; "
                           "(exec 3<>/dev/tcp/127.0.0.1/9) 2>&1 | head -1")
    assert "Network is unreachable" in res["stdout"]


def test_network_namespace_is_the_sandboxes_own(api, server):
    """Each sandbox has its own network namespace with only lo, kept between its execs: the
    same one for every exec of a sandbox, never another sandbox's, never the host's. The script
    can change nothing in it, no listener outlives its exec, and a deleted sandbox's goes."""
    ids = [api.post("/v1/sandboxes", json={"python": True}).json()["id"] for _ in range(2)]
    try:
        script = "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
        a1, a2, b = (ok(api, sid, script)["stdout"].split() for sid in (ids[0], ids[0], ids[1]))
        assert a1 == a2 and a1[1:] == ["lo"], (a1, a2)
        assert b[0] != a1[0] and b[1:] == ["lo"], b
        assert a1[0] != os.readlink("/proc/self/ns/net")
        # nothing can be changed: the namespace belongs to the host's user namespace
        res = ok(api, ids[0], "ip link set lo down 2>&1; ip link add d0 type dummy 2>&1; "
                              "ip -o link show lo")
        assert res["stdout"].count("Operation not permitted") == 2, res["stdout"]
        assert "UP" in res["stdout"].splitlines()[-1], res["stdout"]
        # a listener started in one exec is gone in the next; loopback itself works
        listen = ("import socket,os,sys\n"
                  "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                  "s.bind(('127.0.0.1', 5555)); s.listen()\n"
                  "c=socket.create_connection(('127.0.0.1', 5555)); a,_=s.accept()\n"
                  "c.sendall(b'ping'); print(a.recv(4).decode()); sys.stdout.flush()\n")
        res = ok(api, ids[0], f"python3 -c \"{listen}\"; "
                              "(python3 -c \"import socket,time; s=socket.socket(); "
                              "s.bind(('127.0.0.1', 6666)); s.listen(); time.sleep(60)\" &) ; "
                              "sleep 0.3; echo started")
        assert res["stdout"] == "ping\nstarted\n", res
        res = ok(api, ids[0], "(exec 3<>/dev/tcp/127.0.0.1/6666) 2>&1 | head -1")
        assert "Connection refused" in res["stdout"], res
        # concurrent execs of one sandbox (read-only, in parallel) never share a namespace:
        # each binds the same port, and none can reach another's listener
        bind = ("python3 -c \"import socket,time; s=socket.socket(); "
                "s.bind(('127.0.0.1', 7777)); s.listen(); time.sleep(1.5); print('bound')\" & "
                "sleep 0.7; (exec 3<>/dev/tcp/127.0.0.1/7777 && echo reached) 2>/dev/null; "
                "readlink /proc/self/ns/net; wait")
        r = api.post(f"/v1/sandboxes/{ids[0]}/exec-sync-batch", timeout=60, json={
            "readOnly": True, "scripts": [{"id": f"p{i}", "script": bind} for i in range(3)]})
        assert r.status_code == 200, r.text
        outs = [x["stdout"].split() for x in r.json()["results"]]
        assert all(o[0] == "reached" and o[-1] == "bound" for o in outs), outs
        assert len({o[1] for o in outs}) == 3, outs  # three namespaces at once
        assert a1[0] in {o[1] for o in outs}  # one of them the sandbox's kept one
        kept = status(server)["exec"]["networkNamespaces"]
        assert kept >= 2
    finally:
        for sid in ids:
            api.delete(f"/v1/sandboxes/{sid}")
    assert status(server)["exec"]["networkNamespaces"] == kept - 2


def test_privileged_operations_fail(api, sandbox):
    res = ok(api, sandbox, "mount -t tmpfs x /tmp 2>&1 | head -1; echo rc=$?; "
                           "unshare -U true 2>&1 | head -1; "
                           "python3 -c 1 2>&1 | head -1; "
                           "cat /proc/self/status | grep -E 'CapEff|NoNewPrivs|Seccomp:'")
    out = res["stdout"]
    assert "CapEff:\t0000000000000000" in out
    assert "NoNewPrivs:\t1" in out
    assert "Seccomp:\t2" in out
    assert "unshare" in out and ("Operation not permitted" in out or "not permitted" in out)


def test_no_process_survives_exec(api, sandbox):
    ok(api, sandbox, "(sleep 101.5 &) ; nohup sleep 101.5 >/dev/null 2>&1 & disown; echo started")
    time.sleep(0.3)
    res = ok(api, sandbox, "ps -e -o comm= | grep -c sleep || true")
    assert res["stdout"].strip() == "0"
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == b"sleep\x00101.5\x00":
                    survivors.append(pid)
        except OSError:
            pass
    assert survivors == []


def test_background_writer_is_stopped_before_the_commit(api, sandbox):
    """A background job still writing when the script ends must be dead before the upper is
    diffed, or the stored file and the checkout would part."""
    # its output goes elsewhere: no pipe of the exec stays open to hold the answer back
    ok(api, sandbox, "(while :; do echo x >> bg.log; done) >/dev/null 2>&1 & sleep 0.3")
    url = f"/v1/sandboxes/{sandbox}/files/home/user/bg.log"
    first = api.get(url).content
    assert len(first) > 0
    time.sleep(0.3)
    assert api.get(url).content == first
    # the checkout the next exec runs on holds exactly what was committed
    assert ok(api, sandbox, "wc -c < bg.log")["stdout"].strip() == str(len(first))


def server_children(server):
    kids = []
    for tid in os.listdir(f"/proc/{server.proc.pid}/task"):
        with open(f"/proc/{server.proc.pid}/task/{tid}/children") as f:
            kids += f.read().split()
    return kids


def test_every_jail_is_reaped(fresh_server):
    """The server reaps every jail it started (no zombie, no process left as its child but the
    warm Python's zygote), also when their scripts leave background jobs behind."""
    s = fresh_server()
    with s.client() as c:
        ids = [c.post("/v1/sandboxes", json={}).json()["id"] for _ in range(4)]
        for _ in range(5):
            for sid in ids:
                r = c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "sleep 0.01 & true"})
                assert r.status_code == 200, r.text
        zygote = str(s.status()["exec"]["pyExec"].get("pid"))
        deadline = time.time() + 5
        while set(server_children(s)) - {zygote} and time.time() < deadline:
            time.sleep(0.05)
        assert set(server_children(s)) - {zygote} == set()


def test_fork_bomb_contained(fresh_server):
    s = fresh_server({"EXEC_PIDS_MAX": "64"})
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync",
                   json={"script": "b(){ b|b & }; b; sleep 1; echo done", "timeoutMs": 5000})
        assert r.status_code in (200, 408)
        assert httpx.get(s.url + "/healthz", timeout=2).status_code == 200
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "echo alive"})
        assert r.json()["stdout"] == "alive\n"


def test_memory_hog_contained(fresh_server):
    s = fresh_server({"EXEC_MEMORY_BYTES": str(64 << 20)})
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync",
                   json={"script": "head -c 400000000 /dev/zero | tail -c 1 >/dev/null; "
                                   "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}",
                         "timeoutMs": 20000})
        res = r.json()
        assert r.status_code == 200
        assert res["exitCode"] != 0 or "300000000" not in res["stdout"]
        assert httpx.get(s.url + "/healthz").status_code == 200
        assert c.post(f"/v1/sandboxes/{sid}/exec-sync",
                      json={"script": "echo ok"}).json()["stdout"] == "ok\n"


def test_huge_stdout_is_capped(api, sandbox):
    t0 = time.time()
    r = api.post(f"/v1/sandboxes/{sandbox}/exec-sync",
                 json={"script": "head -c 2000000000 /dev/zero", "timeoutMs": 60000})
    res = r.json()
    assert res["stdoutTruncated"] is True
    assert len(res["stdout"]) == 16 * 1024 * 1024
    assert time.time() - t0 < 30


def test_disk_filler_contained(fresh_server):
    s = fresh_server({"SANDBOX_QUOTA_BYTES": str(50 << 20)})
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync",
                   json={"script": "head -c 100000000 /dev/zero > fill; echo $?"})
        assert_error(r, 413, "EQUOTA")
        assert c.post(f"/v1/sandboxes/{sid}/exec-sync",
                      json={"script": "ls; echo ok"}).json()["stdout"] == "ok\n"


def test_symlink_escape_resolves_inside(api, sandbox):
    ok(api, sandbox, "ln -s / hostroot && ln -s /etc/hostname hn")
    # the file API resolves inside the sandbox: the sandbox has no /etc/hostname row
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/files/home/user/hn"), 404, "ENOENT")
    assert_error(api.get(f"/v1/sandboxes/{sandbox}/files/home/user/hostroot/etc/shadow"), 404)
    # writing through the link lands inside the sandbox tree
    assert api.put(f"/v1/sandboxes/{sandbox}/files/home/user/hostroot/tmp/via-link",
                   content=b"inside").status_code == 204
    assert api.get(f"/v1/sandboxes/{sandbox}/files/tmp/via-link").content == b"inside"
    assert not os.path.exists("/tmp/via-link")


def test_healthz_fast_with_execs_sleeping(api, server):
    import threading
    sids = [api.post("/v1/sandboxes").json()["id"] for _ in range(20)]
    threads = [threading.Thread(target=lambda s=s: api.post(
        f"/v1/sandboxes/{s}/exec-sync", json={"script": "sleep 2"})) for s in sids]
    [t.start() for t in threads]
    time.sleep(0.5)
    t0 = time.time()
    assert httpx.get(server.url + "/healthz").status_code == 200
    assert time.time() - t0 < 0.2
    [t.join() for t in threads]


def test_memory_limit_kill_during_setup_spares_the_server(fresh_server):
    """The jail's setup child shares the server's memory until it executes the init: an
    out-of-memory kill in the exec's cgroup then (a tiny EXEC_MEMORY_BYTES, a big environment
    copied by that execve) must not take the server down with it."""
    s = fresh_server({"EXEC_MEMORY_BYTES": "1048576", "AUTH_RATE_LIMIT_MAX": "1000"})
    with s.client() as c:
        sid = c.post("/v1/sandboxes").json()["id"]
        env = {f"BIG{i}": "x" * 120_000 for i in range(9)}
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "true", "env": env})
        assert r.status_code < 600
        assert s.proc.poll() is None, "the server died"
        assert httpx.get(s.url + "/healthz", timeout=5).status_code == 200
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": "echo ok"})
        assert r.status_code == 200 and s.proc.poll() is None
