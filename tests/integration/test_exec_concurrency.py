"""Many concurrent execs on many sandboxes all finish (regression: the jail child used glibc's
setgroups/setresuid wrappers, which wait for the parent's threads and hung under concurrency)."""
import concurrent.futures

import httpx


def test_concurrent_execs_finish(fresh_server):
    srv = fresh_server({"AUTH_RATE_LIMIT_MAX": "100000"})
    token = srv.token("conc")
    h = {"Authorization": "Bearer " + token}
    with httpx.Client(base_url=srv.url, headers=h, timeout=60) as c:
        sids = [c.post("/v1/sandboxes", json={"name": f"c{i}"}).json()["id"] for i in range(10)]

    def one(i):
        with httpx.Client(base_url=srv.url, headers=h, timeout=60) as c:
            r = c.post(f"/v1/sandboxes/{sids[i % 10]}/exec-sync",
                       json={"script": f"echo {i} > f{i}; cat f{i}"})
            return r.status_code, r.json().get("stdout")

    with concurrent.futures.ThreadPoolExecutor(40) as ex:
        got = list(ex.map(one, range(80)))
    assert got == [(200, f"{i}\n") for i in range(80)]
