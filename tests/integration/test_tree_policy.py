"""What a sandbox tree may hold, whatever way a change comes in (exec, file API, ingest).

- Mode bits: setuid and setgid are dropped everywhere; the sticky bit stays only on directories
  (/tmp is 1777). Nothing an export carries can grant privileges when unpacked by root.
- Reserved paths (/usr, /etc, /proc, /dev, /sys, /bin, /lib*, /sbin, /opt/sqlfs; /opt only as a
  directory) belong to the exec runtime: the file API and ingest refuse them with 400 naming the
  path, an exec's changes there are not committed, and a tree that already holds such entries
  still runs execs.
"""
import io
import os
import sqlite3
import tarfile
import time

import pytest

from conftest import assert_error, engine, pg_query


def run(api, sid, script, **kw):
    r = api.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": script, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def tree_modes(api, sid, prefix="/home/user"):
    r = api.get(f"/v1/sandboxes/{sid}/tree", params={"prefix": prefix})
    assert r.status_code == 200, r.text
    return {e["path"]: e["mode"] for e in r.json()}


def tar_of(entries):
    """entries: (name, mode, data or None for a directory)."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w") as t:
        for name, mode, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.mtime = int(time.time())
            if data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return bio.getvalue()


# ---- mode bits ----

def test_exec_cannot_commit_setuid_setgid_or_sticky_files(api, sandbox):
    out = run(api, sandbox, "touch f g; mkdir d s; chmod 4755 f; chmod 2755 d; chmod 1644 g;"
                            " chmod 1777 s; chmod 6755 g 2>/dev/null; stat -c '%n %a' f d g s")
    assert "f 4755" in out["stdout"]  # what the script itself saw, before its commit
    modes = tree_modes(api, sandbox)
    assert modes["/home/user/f"] == 0o755
    assert modes["/home/user/d"] == 0o755
    assert modes["/home/user/g"] == 0o755
    assert modes["/home/user/s"] == 0o1777  # sticky stays on a directory
    # the next exec sees exactly what is stored (the checkout followed the commit)
    out = run(api, sandbox, "stat -c '%n %a' f d g s")
    assert out["stdout"].split("\n")[:4] == ["f 755", "d 755", "g 755", "s 1777"]
    assert run(api, sandbox, "stat -c %a /tmp")["stdout"] == "1777\n"


def test_export_never_carries_setuid_setgid(api, sandbox):
    run(api, sandbox, "mkdir -p x/d && echo hi > x/f && chmod 6755 x/f && chmod 3775 x/d")
    r = api.get(f"/v1/sandboxes/{sandbox}/export", params={"basePath": "/home/user/x"})
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.content)) as t:
        modes = {m.name.lstrip("./"): m.mode for m in t.getmembers()}
    assert modes["f"] == 0o755, modes
    assert modes["d"] == 0o1775, modes
    assert not any(m & 0o6000 for m in modes.values()), modes


def test_ingest_drops_setuid_setgid_and_file_sticky(api, sandbox):
    body = tar_of([("a", 0o6755, b"x"), ("b", 0o1644, b"y"), ("c", 0o3777, None)])
    r = api.post(f"/v1/sandboxes/{sandbox}/ingest", params={"basePath": "/home/user/in"},
                 content=body, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 200, r.text
    modes = tree_modes(api, sandbox, "/home/user/in")
    assert modes == {"/home/user/in/a": 0o755, "/home/user/in/b": 0o644,
                     "/home/user/in/c": 0o1777}, modes


# ---- reserved paths: the file API and ingest ----

RESERVED_FILES = ["/usr/local/bin/tool", "/etc/passwd", "/proc/x", "/dev/null2", "/sys/x",
                  "/bin/sh2", "/lib/x.so", "/lib64/x", "/sbin/x", "/opt/sqlfs/bin/py-exec",
                  "/opt", "/usr", "/etc"]


@pytest.mark.parametrize("path", RESERVED_FILES)
def test_put_to_a_reserved_path_is_refused_before_the_upload(api, sandbox, path):
    r = api.put(f"/v1/sandboxes/{sandbox}/files{path}", content=b"data")
    body = assert_error(r, 400, "INVALID_INPUT")
    assert "reserved" in body["error"] or "only be a directory" in body["error"], body
    root = "/" + path.split("/")[1] if not path.startswith("/opt") else "/opt"
    assert root in body["error"], body


def test_every_way_in_refuses_reserved_paths_and_changes_nothing(api, sandbox):
    before = api.get(f"/v1/sandboxes/{sandbox}").json()["version"]
    cases = [
        api.post(f"/v1/sandboxes/{sandbox}/mkdir", json={"path": "/etc/new", "recursive": True}),
        api.post(f"/v1/sandboxes/{sandbox}/writeFiles",
                 json={"files": {"/home/user/ok": "x", "/usr/bin/evil": "x"}}),
        api.post(f"/v1/sandboxes/{sandbox}/ingest-files",
                 json={"basePath": "/", "files": {"home/user/ok": "eA==", "bin/evil": "eA=="}}),
        api.post(f"/v1/sandboxes/{sandbox}/ingest-files",
                 json={"basePath": "/proc", "files": {"x": "eA=="}}),
        api.post(f"/v1/sandboxes/{sandbox}/ingest", params={"basePath": "/"},
                 content=tar_of([("home/user/ok", 0o644, b"x"), ("usr/lib/evil", 0o644, b"x")]),
                 headers={"Content-Type": "application/x-tar"}),
        api.post(f"/v1/sandboxes/{sandbox}/ingest", params={"basePath": "/dev"},
                 content=tar_of([("x", 0o644, b"x")]),
                 headers={"Content-Type": "application/x-tar"}),
        api.post(f"/v1/sandboxes/{sandbox}/ingest", params={"basePath": "/"},
                 content=tar_of([("opt", 0o644, b"not a directory")]),
                 headers={"Content-Type": "application/x-tar"}),
    ]
    for r in cases:
        body = assert_error(r, 400)
        text = body["error"] + " ".join(body.get("details", []))
        assert "reserved" in text or "only be a directory" in text, body
    assert api.get(f"/v1/sandboxes/{sandbox}").json()["version"] == before
    assert api.get(f"/v1/sandboxes/{sandbox}/files/home/user/ok").status_code == 404
    r = api.post("/v1/sandboxes", json={"files": {"/etc/motd": "hi"}})
    assert_error(r, 400, "INVALID_INPUT")


def test_writes_through_symlinks_never_reach_a_reserved_path(api, sandbox):
    run(api, sandbox, "ln -s /etc/hosts link; ln -s /usr/share dirlink")
    # the store has no /etc or /usr: these resolve to missing parents and the write lands on
    # the link's own path or fails, but never below a reserved path
    api.put(f"/v1/sandboxes/{sandbox}/files/home/user/link", content=b"x")
    api.post(f"/v1/sandboxes/{sandbox}/writeFiles", json={"files": {"/home/user/dirlink/n": "x"}})
    tree = {e["path"] for e in api.get(f"/v1/sandboxes/{sandbox}/tree",
                                       params={"prefix": "/"}).json()}
    assert not any(p.startswith(("/etc", "/usr")) for p in tree), tree


def test_opt_may_hold_directories_and_files_below_it(api, sandbox):
    assert api.put(f"/v1/sandboxes/{sandbox}/files/opt/app/run.sh",
                   content=b"echo app").status_code == 204
    out = run(api, sandbox, "bash /opt/app/run.sh; ls /opt/sqlfs/bin")
    assert out["stdout"].startswith("app\n") and "py-exec" in out["stdout"], out


def test_reading_and_deleting_reserved_paths_is_never_refused(api, sandbox):
    r = api.get(f"/v1/sandboxes/{sandbox}/files/etc/passwd")
    assert_error(r, 404, "ENOENT")
    r = api.delete(f"/v1/sandboxes/{sandbox}/files/usr?recursive=true")
    assert_error(r, 404, "ENOENT")
    assert api.get(f"/v1/sandboxes/{sandbox}/tree", params={"prefix": "/usr"}).json() == []


# ---- reserved paths: execs ----

def test_exec_changes_at_reserved_paths_are_not_committed(api, sandbox):
    # / is root's: the script cannot remove the runtime's /bin link at all
    out = run(api, sandbox,
              "rm /bin 2>&1 | grep -c 'Permission denied'; mkdir /sys/x 2>&1 | grep -c denied;"
              " mkdir /opt/sqlfs/bin/x 2>&1 | grep -c Read-only;"
              " echo data > /home/user/kept; readlink /bin")
    assert out["stdout"] == "1\n1\n1\nusr/bin\n", out
    tree = {e["path"] for e in api.get(f"/v1/sandboxes/{sandbox}/tree",
                                       params={"prefix": "/"}).json()}
    assert "/home/user/kept" in tree
    assert not any(p.startswith(("/bin", "/sys", "/opt")) for p in tree), tree
    out = run(api, sandbox, "readlink /bin; /bin/echo ok")
    assert out["stdout"] == "usr/bin\nok\n", out


def test_read_only_exec_that_only_touched_reserved_paths_is_no_violation(api, sandbox):
    # / is root's: removing /sbin is refused, and the attempt breaks no read-only promise
    r = api.post(f"/v1/sandboxes/{sandbox}/exec-sync",
                 json={"script": "rm /sbin 2>&1 | grep -c denied; echo gone", "readOnly": True})
    assert r.status_code == 200, r.text
    assert r.json()["stdout"] == "1\ngone\n"


def test_a_tree_that_already_holds_reserved_entries_still_runs_execs(fresh_server):
    srv = fresh_server({"AUTH_RATE_LIMIT_MAX": "1000"})
    with srv.client() as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        assert run(c, sid, "echo warm")["stdout"] == "warm\n"
    srv.stop()
    # entries written before such paths were refused: a file at /usr, a directory at /bin,
    # /etc as a symlink, /opt as a file, /proc/x
    now = time.time_ns()
    rows = [("/usr", 1, 0o644, None), ("/bin", 2, 0o755, None), ("/bin/x", 1, 0o644, None),
            ("/etc", 3, 0o777, "/home/user"), ("/opt", 1, 0o644, None),
            ("/proc", 2, 0o755, None), ("/proc/x", 1, 0o644, None)]
    if engine() == "postgres":
        def lit(v):
            return "NULL" if v is None else f"convert_to('{v}', 'UTF8')"
        values = ", ".join(
            f"((SELECT sid FROM sandboxes WHERE id = '{sid}'), {lit(path)}, {kind}, {mode}, "
            f"{len(target) if target else 0}, {now}, NULL, {lit(target)})"
            for path, kind, mode, target in rows)
        pg_query(srv.database_url,
                 "INSERT INTO files (sid, path, kind, mode, size, mtime_ns, content, target) "
                 f"VALUES {values}; "
                 f"UPDATE sandboxes SET version = version + 1 WHERE id = '{sid}'")
    else:
        db = sqlite3.connect(os.path.join(srv.data_dir, "sqlfs.db"))
        (rowid,) = db.execute("SELECT sid FROM sandboxes WHERE id = ?", (sid,)).fetchone()
        for path, kind, mode, target in rows:
            db.execute("INSERT INTO files (sid, path, kind, mode, size, mtime_ns, content, "
                       "target) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                       (rowid, path, kind, mode, len(target) if target else 0, now, target))
        db.execute("UPDATE sandboxes SET version = version + 1 WHERE sid = ?", (rowid,))
        db.commit()
        db.close()
    srv.start()
    with srv.client() as c:
        out = run(c, sid, "ls /usr/bin/bash && readlink /bin && grep -c user /etc/passwd"
                          " && ls /opt/sqlfs/bin | grep -c exec && echo x > f && cat f")
        assert out["exitCode"] == 0, out
        assert out["stdout"] == "/usr/bin/bash\nusr/bin\n1\n2\nx\n", out
        # the entries stay readable, listed and deletable through the API
        tree = {e["path"] for e in c.get(f"/v1/sandboxes/{sid}/tree",
                                         params={"prefix": "/"}).json()}
        assert {"/usr", "/bin/x", "/etc", "/opt"} <= tree, tree
        # a write that resolves into one of them through a symlink is refused at its commit
        run(c, sid, "ln -s /proc/x /home/user/to-proc")
        r = c.put(f"/v1/sandboxes/{sid}/files/home/user/to-proc", content=b"z")
        body = assert_error(r, 400, "INVALID_INPUT")
        assert "/proc/x" in body["error"], body
        assert c.delete(f"/v1/sandboxes/{sid}/files/bin?recursive=true").status_code == 204
        assert c.delete(f"/v1/sandboxes/{sid}/files/usr").status_code == 204
        assert run(c, sid, "cat f")["stdout"] == "x\n"
