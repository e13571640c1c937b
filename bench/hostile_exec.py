#!/usr/bin/env python3
"""Hostile scripts and clients against the exec routes: what one request may cost the server.

Each scenario runs against a fresh server (`--binary`, default build/sqlfs) and prints one
markdown table row: what it did, the answer, how long, the server's memory growth.

  fd3-bytes    a batch script floods fd 3 (the status channel) with 64 KiB writes, timeoutMs 30000
  fd3-records  the same with "\\0E\\0" records the server must look at one by one
  fd3-gone     the records flood, and the client leaves after 1 s: when is the exec slot free?
  escape-50    50 scripts, each 10 MB of stdout and of stderr in a byte JSON escapes to 6
               (\\u0001), MAX_EXEC_OUTPUT_BYTES=4 MiB: reply size, server peak growth
  unread-10    ten clients send an exec-sync (6 MB + 6 MB of \\u0001 output) and never read the
               reply (MAX_EXEC_OUTPUT_BYTES=4 MiB, REPLY_MEMORY_BYTES=16 MiB): statuses, RSS growth

Usage: /usr/bin/python3 bench/hostile_exec.py [--binary PATH] [scenario ...]
docs/BENCHMARKS.md "Hostile clients" has the figures; tests/integration/test_exec_bounds.py the
checks.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import conftest  # noqa: E402
from test_exec_bounds import FD3_FLOOD, FD3_RECORDS, exec_state, raw_post  # noqa: E402
from test_exec_bounds import status_mib as mem_mib  # noqa: E402

MIB = 1 << 20


def server(env=None):
    return conftest.make_server(tempfile.mkdtemp(prefix="sqlfs-hostile-"), env).start()


def fd3(kind):
    def run():
        s = server()
        try:
            with s.client(timeout=400) as c:
                sid = c.post("/v1/sandboxes", json={}).json()["id"]
                hwm = mem_mib(s, "VmHWM")
                t0 = time.time()
                r = c.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={"scripts": [
                    {"id": "w", "script": "echo kept > w.txt"},
                    {"id": "flood", "script": FD3_FLOOD if kind == "bytes" else FD3_RECORDS}],
                    "timeoutMs": 30000})
                took = time.time() - t0
                kept = c.get(f"/v1/sandboxes/{sid}/files/home/user/w.txt").status_code == 200
                return (f"{r.status_code} {r.json().get('code', '')}".strip(),
                        f"{took:.2f} s", f"{mem_mib(s, 'VmHWM') - hwm:+.1f} MiB peak",
                        f"earlier script's file {'kept' if kept else 'not kept'}")
        finally:
            s.stop()
    return run


def fd3_gone():
    s = server()
    try:
        with s.client() as c:
            sid = c.post("/v1/sandboxes", json={}).json()["id"]
        sock = raw_post(s, s.token(), f"/v1/sandboxes/{sid}/exec-sync-batch",
                        {"scripts": [{"id": "f", "script": FD3_RECORDS}], "timeoutMs": 120000})
        time.sleep(1)
        sock.close()
        t0 = time.time()
        while exec_state(s)["running"] and time.time() - t0 < 150:
            time.sleep(0.05)
        free = time.time() - t0
        return ("client gone after 1 s", f"slot free {free:.2f} s later", "", "")
    finally:
        s.stop()


def escape_50():
    s = server({"MAX_EXEC_OUTPUT_BYTES": str(4 * MIB)})
    try:
        with s.client(timeout=600) as c:
            sid = c.post("/v1/sandboxes", json={}).json()["id"]
            script = ("head -c 10000000 /dev/zero | tr '\\0' '\\1';"
                      " head -c 10000000 /dev/zero | tr '\\0' '\\2' >&2")
            hwm = mem_mib(s, "VmHWM")
            t0 = time.time()
            r = c.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={
                "scripts": [{"id": str(i), "script": script} for i in range(50)],
                "timeoutMs": 300000})
            took = time.time() - t0
            return (str(r.status_code), f"{took:.1f} s",
                    f"{mem_mib(s, 'VmHWM') - hwm:+.0f} MiB peak",
                    f"reply {len(r.content) / MIB:.0f} MiB")
    finally:
        s.stop()


def unread_10():
    s = server({"MAX_EXEC_OUTPUT_BYTES": str(4 * MIB), "REPLY_MEMORY_BYTES": str(16 * MIB)})
    socks = []
    try:
        token = s.token()
        with s.client() as c:
            sids = [c.post("/v1/sandboxes", json={}).json()["id"] for _ in range(10)]
        rss = mem_mib(s, "VmRSS")
        script = ("head -c 6000000 /dev/zero | tr '\\0' '\\1';"
                  " head -c 6000000 /dev/zero | tr '\\0' '\\2' >&2")
        statuses = []
        t0 = time.time()
        for sid in sids:
            sock = raw_post(s, token, f"/v1/sandboxes/{sid}/exec-sync", {"script": script},
                            rcvbuf=4096)
            socks.append(sock)
            sock.settimeout(120)
            statuses.append(sock.recv(12).decode()[9:])
        time.sleep(1)
        grown = mem_mib(s, "VmRSS") - rss
        counts = ", ".join(f"{k} ×{statuses.count(k)}" for k in sorted(set(statuses)))
        return (counts, f"{time.time() - t0:.1f} s", f"{grown:+.0f} MiB RSS held", "")
    finally:
        for sock in socks:
            sock.close()
        s.stop()


SCENARIOS = {"fd3-bytes": fd3("bytes"), "fd3-records": fd3("records"), "fd3-gone": fd3_gone,
             "escape-50": escape_50, "unread-10": unread_10}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=conftest.BINARY)
    ap.add_argument("scenario", nargs="*", choices=[[]] + list(SCENARIOS), default=[])
    a = ap.parse_args()
    conftest.BINARY = os.path.abspath(a.binary)
    print("| scenario | answer | time | memory | note |\n|---|---|---|---|---|")
    for name in a.scenario or SCENARIOS:
        row = SCENARIOS[name]()
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
