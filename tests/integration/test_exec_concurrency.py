"""Many concurrent execs on many sandboxes all finish (regression: the jail child used glibc's
setgroups/setresuid wrappers, which wait for the parent's threads and hung under concurrency)."""
import concurrent.futures
import threading
import time

import httpx

from conftest import assert_error, status


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


def warm_counts(srv):
    ex = status(srv)["exec"]
    return ex["networkNamespaces"], ex["idleUppers"], ex["warmSandboxes"]


def test_warm_sandboxes_are_bounded_and_least_recently_used_go_first(fresh_server):
    """EXEC_WARM_SANDBOXES bounds the sandboxes that keep a network namespace and an unchanged
    upper between execs; the least recently used lose theirs first and still run as before
    (a dropped namespace's inode number may be reused, so only kept ones are compared)."""
    srv = fresh_server({"EXEC_WARM_SANDBOXES": "2"})
    h = {"Authorization": "Bearer " + srv.token("warm")}
    with httpx.Client(base_url=srv.url, headers=h, timeout=60) as c:
        sids = [c.post("/v1/sandboxes", json={}).json()["id"] for _ in range(4)]
        ns = {}
        for sid in sids:
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync",
                       json={"script": "readlink /proc/self/ns/net"})
            assert r.status_code == 200, r.text
            ns[sid] = r.json()["stdout"]
        assert warm_counts(srv) == (2, 2, 2)
        # the two most recent kept their namespace; the first lost it and gets a new one
        for sid in sids[2:]:
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync",
                       json={"script": "readlink /proc/self/ns/net"})
            assert r.json()["stdout"] == ns[sid]
        # the least recent one lost its namespace and upper: it still runs and keeps its files
        r = c.post(f"/v1/sandboxes/{sids[0]}/exec-sync", json={"script": "echo kept > f"})
        assert r.status_code == 200, r.text
        assert c.get(f"/v1/sandboxes/{sids[0]}/files/home/user/f").content == b"kept\n"
        assert warm_counts(srv)[0] == 2


def test_warm_sandboxes_default_keeps_each_recent_sandbox(fresh_server):
    srv = fresh_server()
    h = {"Authorization": "Bearer " + srv.token("warm")}
    with httpx.Client(base_url=srv.url, headers=h, timeout=60) as c:
        for _ in range(20):
            sid = c.post("/v1/sandboxes", json={}).json()["id"]
            assert c.post(f"/v1/sandboxes/{sid}/exec-sync",
                          json={"script": "true"}).status_code == 200
    assert warm_counts(srv) == (20, 20, 64)


def test_parallel_read_only_execs_keep_one_idle_upper(fresh_server):
    """Parallel read-only scripts of one sandbox each end with an unchanged upper; the sandbox
    keeps one of them, so it cannot push other sandboxes' warm uppers out."""
    srv = fresh_server()
    with srv.client("warm") as c:
        sid = c.post("/v1/sandboxes", json={}).json()["id"]
        r = c.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={
            "readOnly": True, "scripts": [{"id": f"s{i}", "script": "sleep 0.3"}
                                          for i in range(3)]})
        assert r.status_code == 200, r.text
        assert [x["exitCode"] for x in r.json()["results"]] == [0, 0, 0]
    assert warm_counts(srv)[1] == 1


def test_evicted_checkout_drops_its_idle_upper(fresh_server):
    """When a checkout is evicted to meet CHECKOUT_BUDGET_BYTES, the idle overlay over it goes
    too (it would keep the blocks of every file an exec read allocated), and the sandbox's next
    exec rebuilds its checkout and still sees its files."""
    srv = fresh_server({"CHECKOUT_BUDGET_BYTES": str(3 << 20)})
    with srv.client("evict") as c:
        sids = [c.post("/v1/sandboxes", json={}).json()["id"] for _ in range(2)]
        for sid in sids:
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync",
                       json={"script": "head -c 2000000 /dev/urandom > big; wc -c < big"})
            assert r.json()["stdout"] == "2000000\n", r.text
        # reading the file keeps the first sandbox's overlay idle over its checkout...
        r = c.post(f"/v1/sandboxes/{sids[0]}/exec-sync", json={"script": "wc -c < big"})
        assert r.json()["stdout"] == "2000000\n", r.text
        assert warm_counts(srv)[1] >= 1
        # ...until the second sandbox's checkout pushes it over the budget
        r = c.post(f"/v1/sandboxes/{sids[1]}/exec-sync", json={"script": "wc -c < big"})
        assert r.json()["stdout"] == "2000000\n", r.text
        assert warm_counts(srv)[1] == 1  # only the second sandbox's
        r = c.post(f"/v1/sandboxes/{sids[0]}/exec-sync", json={"script": "wc -c < big"})
        assert r.json()["stdout"] == "2000000\n", r.text


def exec_counts(srv):
    ex = status(srv)["exec"]
    return ex["running"], ex["queued"], ex["owners"]


def wait_counts(srv, running, queued):
    deadline = time.monotonic() + 10
    while exec_counts(srv)[:2] != (running, queued):
        assert time.monotonic() < deadline, exec_counts(srv)
        time.sleep(0.02)


def test_one_owner_cannot_hold_every_exec_slot(fresh_server):
    """EXEC_CONCURRENCY=2, EXEC_OWNER_CONCURRENCY=1, EXEC_OWNER_QUEUE=3: alice's four long execs
    on four sandboxes hold one slot and queue three; a fifth is refused (503 EBUSY naming
    EXEC_OWNER_QUEUE) at once. Bob's exec starts at once in the other slot, bob can still queue,
    and when bob's slot frees his queued exec takes it, ahead of alice's older ones (alice is at
    her cap)."""
    srv = fresh_server({"EXEC_CONCURRENCY": "2", "EXEC_OWNER_CONCURRENCY": "1",
                        "EXEC_OWNER_QUEUE": "3"})
    with srv.client() as alice, srv.client(sub="bob") as bob:
        a_ids = [alice.post("/v1/sandboxes", json={}).json()["id"] for _ in range(5)]
        b_ids = [bob.post("/v1/sandboxes", json={}).json()["id"] for _ in range(2)]
        t0 = time.monotonic()
        done = {}

        def run(name, client, sid, script):
            r = client.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": script})
            done[name] = (r, time.monotonic() - t0)

        threads = []

        def start(*args):
            th = threading.Thread(target=run, args=args)
            th.start()
            threads.append(th)

        for i in range(4):
            start(f"alice{i}", alice, a_ids[i], "sleep 2")
        wait_counts(srv, 1, 3)
        assert exec_counts(srv)[2] == 1
        t = time.monotonic()
        body = assert_error(alice.post(f"/v1/sandboxes/{a_ids[4]}/exec-sync",
                                       json={"script": "true"}), 503, "EBUSY")
        assert time.monotonic() - t < 0.5
        assert body["retryable"] is True and "EXEC_OWNER_QUEUE=3" in body["details"]
        start("bob1", bob, b_ids[0], "sleep 1")
        wait_counts(srv, 2, 3)
        start("bob2", bob, b_ids[1], "echo queued")
        wait_counts(srv, 2, 4)
        assert exec_counts(srv)[2] == 2
        for th in threads:
            th.join()
        for name, (r, _) in done.items():
            assert r.status_code == 200, (name, r.text)
        # bob1 ran at once: about its own second, not after alice's first exec (2 s)
        assert done["bob1"][1] < 1.8, done["bob1"][1]
        # bob2 waited for bob1 only: done before alice's first exec ended
        first_alice = min(done[f"alice{i}"][1] for i in range(4))
        assert done["bob2"][1] < first_alice, (done["bob2"][1], first_alice)
        assert done["bob2"][0].json()["stdout"] == "queued\n"
        assert exec_counts(srv) == (0, 0, 0)
