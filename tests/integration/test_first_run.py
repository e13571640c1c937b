"""First run: what a new user does in the first minutes, against the real binary.

- `make run` serves with a relative `--data ./data`: every exec route must work with it.
- A second server on the same data dir (running `make run` twice) exits at once, names the
  directory and the pid holding it, and leaves the first server's execs alone.
"""
import errno
import os
import shutil
import stat
import subprocess
import tempfile
import time

import httpx
import pytest

from conftest import BINARY, SECRET, Server, engine, free_port, status

# The SQLite database and its journals in the data directory (none on PostgreSQL).
SQLITE_FILES = (("sqlfs.db", "sqlfs.db-wal", "sqlfs.db-shm", "sqlfs.db.chunks",
                 "sqlfs.db.chunks-wal", "sqlfs.db.chunks-shm") if engine() == "sqlite" else ())


def exec_sync(c, sid, script, **kw):
    return c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": script, **kw})


def test_relative_data_dir_runs_every_exec_route(tmp_path):
    srv = Server("./rel", {"AUTH_RATE_LIMIT_MAX": "1000"}, cwd=str(tmp_path)).start()
    try:
        with srv.client() as c:
            sid = c.post("/v1/sandboxes", json={}).json()["id"]
            r = exec_sync(c, sid, "echo hi > f; cat f")
            assert r.status_code == 200, r.text
            assert r.json()["stdout"] == "hi\n"
            r = exec_sync(c, sid, "cat f", readOnly=True)
            assert r.status_code == 200 and r.json()["stdout"] == "hi\n", r.text
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync-batch",
                       json={"scripts": [{"id": "a", "script": "x=1"},
                                         {"id": "b", "script": "echo $x"}]})
            assert r.status_code == 200, r.text
            assert r.json()["results"][1]["stdout"] == "1\n"
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync-batch",
                       json={"readOnly": True, "scripts": [{"id": "a", "script": "cat f"}]})
            assert r.status_code == 200 and r.json()["results"][0]["stdout"] == "hi\n", r.text
            with c.stream("POST", f"/v1/sandboxes/{sid}/exec", json={"script": "echo s"}) as r:
                assert r.status_code == 200
                body = r.read().decode()
            assert "event: exit" in body and '"data":"s\\n"' in body, body
        # everything the server keeps lives under the relative dir it was given
        assert os.path.isfile(tmp_path / "rel" / ("sqlfs.db" if engine() == "sqlite"
                                                   else "sqlfs.lock"))
    finally:
        srv.stop()


def test_second_server_on_the_same_data_dir_exits_and_changes_nothing(tmp_path):
    data = str(tmp_path / "data")
    first = Server(data, {"AUTH_RATE_LIMIT_MAX": "1000"}).start()
    try:
        with first.client() as c:
            sid = c.post("/v1/sandboxes", json={}).json()["id"]
            assert exec_sync(c, sid, "echo before").json()["stdout"] == "before\n"
            env = dict(os.environ, AUTH_SECRET=SECRET)
            t0 = time.monotonic()
            # the same directory, spelled differently: still one data dir
            second = subprocess.run(
                [BINARY, "serve", "--listen", f"127.0.0.1:{free_port()}", "--data", data + "/."],
                env=env, capture_output=True, text=True, timeout=30)
            assert time.monotonic() - t0 < 5
            assert second.returncode != 0
            want = f"sqlfs: data dir {os.path.realpath(data)} is in use by another sqlfs " \
                   f"(pid {first.proc.pid})"
            assert want in second.stderr, second.stderr
            # a second server that fails to bind the first one's port is refused the same way
            second = subprocess.run(
                [BINARY, "serve", "--listen", f"127.0.0.1:{first.port}", "--data", data],
                env=env, capture_output=True, text=True, timeout=30)
            assert second.returncode != 0 and "in use by another sqlfs" in second.stderr
            # the first server's execs, cgroups and checkouts were left alone
            for i in range(3):
                r = exec_sync(c, sid, f"echo after{i}")
                assert r.status_code == 200, r.text
                assert r.json()["stdout"] == f"after{i}\n"
            assert httpx.get(first.url + "/readyz").status_code == 200
    finally:
        first.stop()
    # once the first one is gone, the directory is free again
    again = Server(data, {"AUTH_RATE_LIMIT_MAX": "1000"}).start()
    again.stop()


# ---- server faults are the server's: 5xx, logged, counted, /readyz ----

def cgroup_dirs(data_dir):
    """The exec cgroup bases of the server on data_dir (named after its jail dir's FNV-1a)."""
    h = 1469598103934665603
    for c in os.path.join(os.path.realpath(data_dir), "jail").encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    name = "sqlfs-%016x" % h
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if name in dirs:
            found.append(os.path.join(root, name))
        if root.count("/") > 6:
            dirs[:] = []
    return found


def remove_exec_cgroups(data_dir):
    """What a second server on the same data dir used to do: remove the pooled exec cgroups
    (the idle ones: the warm Python's zygote keeps one of them, in use)."""
    removed = 0
    for base in cgroup_dirs(data_dir):
        for d in os.listdir(base):
            if d.startswith("x") and os.path.isdir(os.path.join(base, d)):
                try:
                    os.rmdir(os.path.join(base, d))
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        raise
                    continue
                removed += 1
    return removed


def test_exec_setup_failure_is_a_server_error_and_readyz_says_so(fresh_server):
    srv = fresh_server({"AUTH_RATE_LIMIT_MAX": "1000"})
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        assert exec_sync(c, sid, "true").status_code == 200
        assert status(srv)["exec"]["faults"]["count"] == 0
        routes = [
            lambda: exec_sync(c, sid, "echo a"),
            lambda: c.post(f"/v1/sandboxes/{sid}/exec-sync-batch",
                           json={"scripts": [{"id": "a", "script": "echo a"}]}),
            lambda: c.post(f"/v1/sandboxes/{sid}/exec", json={"script": "echo a"}),
            lambda: exec_sync(c, sid, "echo a", readOnly=True),
        ]
        for call in routes:
            if remove_exec_cgroups(srv.data_dir) == 0:
                pytest.skip("this host gives the server no exec cgroups to remove")
            r = call()
            assert r.status_code == 500, r.text  # was 404 ENOENT: blamed on the client
            body = r.json()
            assert body["code"] == "EXEC_FAILED" and body["retryable"] is False, body
            assert "server" in body["error"] and "/" + "sys" not in body["error"], body
            ready = httpx.get(srv.url + "/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["exec"].startswith("spawn:"), ready.text
            faults = status(srv)["exec"]["faults"]
            assert faults["failing"].startswith("spawn:"), faults
            # the broken cgroup is not reused: the next exec works and readiness comes back
            r = exec_sync(c, sid, "echo back")
            assert r.status_code == 200 and r.json()["stdout"] == "back\n", r.text
            assert httpx.get(srv.url + "/readyz").status_code == 200
        assert status(srv)["exec"]["faults"]["count"] == 4
    srv.stop()
    log = open(srv.log_path).read()
    assert log.count("exec set-up failed on the server's side") == 4, log[-3000:]


PIDS = "/sys/fs/cgroup/pids"


def test_a_shortage_is_a_retryable_503_with_retry_after(fresh_server, tmp_path):
    """The server's own pids cgroup at its limit: the jail's clone gets EAGAIN."""
    if not os.path.isfile(os.path.join(PIDS, "pids.max")) and \
            not os.path.isfile(os.path.join(PIDS, "cgroup.procs")):
        pytest.skip("no cgroup v1 pids hierarchy on this host")
    cg = os.path.join(PIDS, "sqlfs-test-" + os.path.basename(str(tmp_path)))
    os.mkdir(cg)

    def enter():
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write("0")
    try:
        srv = fresh_server({"AUTH_RATE_LIMIT_MAX": "1000"}, preexec_fn=enter)
        with srv.client() as c:
            sid = c.post("/v1/sandboxes", json={}).json()["id"]
            assert exec_sync(c, sid, "true").status_code == 200
            used = int(open(os.path.join(cg, "pids.current")).read())
            with open(os.path.join(cg, "pids.max"), "w") as f:
                f.write(str(used))
            r = exec_sync(c, sid, "echo hi")
            with open(os.path.join(cg, "pids.max"), "w") as f:
                f.write("max")
            assert r.status_code == 503, r.text
            assert r.headers.get("retry-after") == "1"
            body = r.json()
            assert body["code"] == "EXEC_UNAVAILABLE" and body["retryable"] is True, body
            r = exec_sync(c, sid, "echo hi")
            assert r.status_code == 200 and r.json()["stdout"] == "hi\n"
            faults = status(srv)["exec"]["faults"]
            assert faults["transient"] >= 1, faults
        srv.stop()
    finally:
        for root, dirs, _ in sorted(os.walk(cg), key=lambda t: -len(t[0])):
            try:
                os.rmdir(root)
            except OSError:
                pass


def test_without_root_the_server_says_so_once_and_serves_files(tmp_path):
    """As a new user might start it: as an ordinary user. Files work; execs say why not."""
    top = tempfile.mkdtemp(prefix="sqlfs-nonroot-", dir="/tmp")
    os.chmod(top, 0o755)
    data = os.path.join(top, "data")
    os.mkdir(data)
    os.chown(data, 65534, 65534)

    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    srv = Server(data, {"AUTH_RATE_LIMIT_MAX": "1000"}, preexec_fn=drop)
    srv.log_path = str(tmp_path / "server.log")
    try:
        srv.start()
        ready = httpx.get(srv.url + "/readyz")
        assert ready.status_code == 503
        assert "without root" in ready.json()["checks"]["exec"], ready.text
        err = status(srv)["exec"]["error"]
        assert "needs root" in err and "CAP_SYS_ADMIN" in err, err
        with srv.client() as c:
            sid = c.post("/v1/sandboxes", json={}).json()["id"]
            assert c.put(f"/v1/sandboxes/{sid}/files/home/user/a", content=b"x").status_code == 204
            assert c.get(f"/v1/sandboxes/{sid}/files/home/user/a").content == b"x"
            r = exec_sync(c, sid, "true")
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["code"] == "EXEC_UNAVAILABLE" and "without root" in body["error"], body
    finally:
        if srv.proc:
            srv.stop()
        shutil.rmtree(top, ignore_errors=True)
    log = open(srv.log_path).read()
    lines = [ln for ln in log.splitlines() if "needs root" in ln]
    assert len(lines) == 1, log
    assert "sandbox runtime check failed" not in log, log


# ---- files on disk: private whatever the umask ----

# Copies of the rootfs's public files, generated stubs and the /dev template, which the sandbox
# user reads through read-only bind mounts (/etc, /usr/lib/locale, /opt/sqlfs/bin, runtime stubs,
# /dev): world-readable on purpose; no data of the server or of any sandbox.
PUBLIC = ("jail/etc", "jail/bin", "jail/stub", "jail/locale", "jail/dev")


def sandbox_tree(rel):
    """The layers of a sandbox's root: a checkout's tree, an exec's upper (also once moved to a
    checkouts/.trash-* directory for removal) and the skeleton below them. They carry the modes
    its scripts see (/tmp 1777, /root 0700, files as stored), and are reached only through the
    0700 directories above them."""
    parts = rel.split("/")
    return (len(parts) >= 3 and parts[0] in ("checkouts", "uppers")
            and parts[2] in ("tree", "upper")) or \
        (len(parts) >= 2 and parts[:2] == ["jail", "skel"])


def private_violations(data_dir):
    bad = []
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, data_dir)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or sandbox_tree(rel):
                continue
            if any(rel == p or rel.startswith(p + "/") for p in PUBLIC):
                # readable by the jail's user, and writable by no one but the server
                if st.st_mode & 0o022 or not st.st_mode & 0o004 or \
                        (stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o001):
                    bad.append(f"{stat.filemode(st.st_mode)} {rel} (public)")
            elif st.st_mode & 0o077:
                bad.append(f"{stat.filemode(st.st_mode)} {rel}")
    return bad


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_files_on_disk_are_private_whatever_the_umask(fresh_server, umask):
    """Under umask 000 the database and its journals were 0644; under 077 the jail's tree was
    unreadable to the sandbox user, so no exec could run, and a script's umask was the
    server's."""
    srv = fresh_server({"AUTH_RATE_LIMIT_MAX": "1000", "AUTH_SECRET": ""},
                       preexec_fn=lambda: os.umask(umask))
    secret = open(os.path.join(srv.data_dir, "auth_secret")).read().strip()
    r = httpx.post(srv.url + "/v1/auth/bootstrap", json={"sub": "modes"},
                   headers={"X-Auth-Secret": secret})
    assert r.status_code == 201, r.text
    with httpx.Client(base_url=srv.url, timeout=60,
                      headers={"Authorization": "Bearer " + r.json()["token"]}) as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        assert c.put(f"/v1/sandboxes/{sid}/files/home/user/a.txt", content=b"a").status_code == 204
        r = exec_sync(c, sid, "echo b > b; mkdir -p d/e; cat a.txt")
        assert r.status_code == 200 and r.json()["stdout"] == "a", r.text
        # an API write with new parents once the sandbox has a checkout
        assert c.put(f"/v1/sandboxes/{sid}/files/home/user/n/m/f", content=b"f").status_code == 204
        assert private_violations(srv.data_dir) == []
        assert os.stat(srv.data_dir).st_mode & 0o777 == 0o700
        for name in ("sqlfs.lock", "auth_secret") + SQLITE_FILES:
            assert os.stat(os.path.join(srv.data_dir, name)).st_mode & 0o777 == 0o600, name
        r = exec_sync(c, sid, "umask; stat -c '%a %n' / /home/user b d/e n/m n/m/f /etc/passwd")
        assert r.status_code == 200, r.text
        # the script's umask and the modes it sees do not depend on the server's umask
        assert r.json()["stdout"].splitlines() == [
            "0022", "755 /", "755 /home/user", "644 b", "755 d/e", "755 n/m", "644 n/m/f",
            "644 /etc/passwd"], r.text


def test_loose_data_dir_and_database_files_are_made_private(fresh_server):
    """A data dir made by hand (mkdir under umask 022) and database files of an older version
    (0644): made 0700 / 0600 at start, and the directory's change is logged."""
    srv = fresh_server({"AUTH_RATE_LIMIT_MAX": "1000"})
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        assert c.put(f"/v1/sandboxes/{sid}/files/home/user/a", content=b"x").status_code == 204
    srv.stop()
    os.chmod(srv.data_dir, 0o755)
    sqlite = engine() == "sqlite"
    for name in ("sqlfs.lock",) + (("sqlfs.db", "sqlfs.db.chunks") if sqlite else ()):
        os.chmod(os.path.join(srv.data_dir, name), 0o644)
    # journals left behind by a crash
    for name in ("sqlfs.db-wal", "sqlfs.db.chunks-shm") if sqlite else ():
        with open(os.path.join(srv.data_dir, name), "ab"):
            pass
        os.chmod(os.path.join(srv.data_dir, name), 0o644)
    srv.start()
    assert os.stat(srv.data_dir).st_mode & 0o777 == 0o700
    for name in ("sqlfs.lock",) + (("sqlfs.db", "sqlfs.db.chunks", "sqlfs.db-wal",
                                    "sqlfs.db.chunks-shm") if sqlite else ()):
        assert os.stat(os.path.join(srv.data_dir, name)).st_mode & 0o777 == 0o600, name
    with srv.client() as c:
        assert c.get(f"/v1/sandboxes/{sid}/files/home/user/a").content == b"x"
    srv.stop()
    log = open(srv.log_path).read()
    assert "was accessible to group or others (mode 0755): made it 0700" in log, log[-2000:]
