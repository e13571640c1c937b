"""First run: what a new user does in the first minutes, against the real binary.

- `make run` serves with a relative `--data ./data`: every exec route must work with it.
- A second server on the same data dir (running `make run` twice) exits at once, names the
  directory and the pid holding it, and leaves the first server's execs alone.
"""
import os
import subprocess
import time

import httpx

from conftest import BINARY, SECRET, Server, free_port


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
        assert os.path.isfile(tmp_path / "rel" / "sqlfs.db")
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
