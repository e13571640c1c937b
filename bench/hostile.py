#!/usr/bin/env python3
"""Hostile clients and scripts (make bench-hostile): a table of attack classes against a real
sqlfs server.

Each class runs against its own fresh server on loopback, bounded in connections and time, and
reports three things against the bounds documented in SECURITY.md ("Input limits") and
docs/API.md ("Output and memory"):
  - the server's peak RSS growth during the attack (VmHWM of /proc/<pid>/status, reset to the
    current RSS with clear_refs before the attack; sampled VmRSS when that reset is not allowed);
  - the data dir's disk growth: its peak during the attack (the disk blocks under <data>/uppers,
    where execs write, plus the pages in use in both database files, sampled every 5 ms) and
    what is left 1 s after it; nothing an attack sends is kept, so what is left is bounded by
    1 MiB for every class;
  - the class's own figure (e.g. /healthz p99 of another client) and its bound.
Prints one row per class, writes bench/results/hostile.json, exits 1 when a figure is over its
bound. `--only NAME[,NAME]` runs some classes; `--markdown` prints the docs/BENCHMARKS.md
section from the saved results (bench/report.py includes it) and `--docs` writes it into
docs/BENCHMARKS.md in place, and the figures into SECURITY.md's "Hostile clients, figures" row;
SQLFS_BINARY=path measures another build (saved with `--save hostile-before`, it is the "before
the fixes" column).

To add a class: write `def attack_x(srv) -> Figure` and append an Attack to ATTACKS.
"""
import argparse
import io
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import ADMIN_SECRET, SECRET, RssSampler, Server, percentile, save  # noqa: E402
from sqlfs_harness import PeakSampler, read_all  # noqa: E402
from sqlfs_harness import proc_status_kib as status_kib  # noqa: E402

sys.path.insert(0, os.path.join(lib.ROOT, "tests", "integration"))
from test_archive import long_path_archive  # noqa: E402
from test_exec_bounds import ERR_FLOOD, FD3_FLOOD, FD3_RECORDS, OUT_FLOOD, raw_post  # noqa: E402
from test_quota import QUOTA, dir_bytes, store_used  # noqa: E402

MIB = 1 << 20
ATTACKER_IP = "127.0.0.2"  # the attacker's own loopback address; probes come from 127.0.0.1
DISK_LEFT_BOUND_MIB = 1  # what an attack may leave on disk: nothing it sent is kept
# The exec-route classes' output settings (docs/API.md "Output and memory").
OUTPUT_CAP = 4 * MIB
REPLY_BUDGET = 16 * MIB
# A request's output holds at most 2 x MAX_EXEC_OUTPUT_BYTES + ~100 KiB; the rest of an exec
# request (its thread, its JSON, the store's page cache) takes up to this much more
# (tests/integration/test_exec_bounds.py `within`).
EXEC_SLACK_MIB = 8
OUTPUT_RSS_BOUND = 2 * OUTPUT_CAP / MIB + 0.1 + EXEC_SLACK_MIB
# A write streamed into the store: the writer connection's page cache (16 + 4 MiB,
# src/store/store_sqlite.c) and the ingest's two 4 MiB queues.
STORE_WRITE_RSS_BOUND = 16 + 4 + 2 * 4


@dataclass
class Figure:
    what: str          # what the figure measures
    value: float       # the measurement
    bound: float       # documented bound; ok while value <= bound
    unit: str
    notes: dict = field(default_factory=dict)  # counts and details printed after the table


@dataclass
class Attack:
    name: str
    what: str
    rss_bound_mib: object  # documented bound on the server's peak RSS growth (None: none)
    run: object            # function(srv) -> Figure
    env: dict = field(default_factory=dict)  # server settings of this class
    disk_bound_mib: object = None  # documented bound on the peak disk growth (None: none)


# ---- measurement ----

class PeakRss(RssSampler):
    """Peak RSS growth of the server over a with-block, in KiB (.growth): VmHWM, reset to the
    current RSS at the start (clear_refs 5), or the sampled VmRSS when that is not allowed."""

    def __enter__(self):
        pid = self.server.proc.pid
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            self.hwm = True
        except OSError:
            self.hwm = False
        self.base = status_kib(pid, "VmRSS")
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        peak = self.peak
        if self.hwm:
            peak = max(peak, status_kib(self.server.proc.pid, "VmHWM"))
        self.growth = peak - self.base


def disk_used(srv):
    """Bytes of the data dir that attacks can grow: the disk blocks under <data>/uppers (exec
    uppers) and the pages in use in both database files."""
    return dir_bytes(os.path.join(srv.data_dir, "uppers")) + store_used(srv.data_dir)


def exec_counts(srv):
    """(running, queued) execs: GET /v1/status, or /readyz on a build from before it."""
    r = httpx.get(srv.url + "/v1/status", headers={"X-Admin-Secret": ADMIN_SECRET})
    e = r.json()["exec"] if r.status_code == 200 else \
        httpx.get(srv.url + "/readyz").json()["checks"]["exec"]
    return e["running"], e["queued"]


def wait_for(cond, seconds, step=0.02):
    """Seconds until cond() held (polled every `step`), or None after `seconds`."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > seconds:
            return None
        time.sleep(step)
    return time.monotonic() - t0


def answer(r):
    """An answer as the notes show it: "413 EQUOTA"."""
    try:
        code = r.json().get("code", "")
    except ValueError:
        code = ""
    return f"{r.status_code} {code}".strip()


def timed(fn):
    """(result of fn(), milliseconds it took)."""
    t = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1000


def new_sandbox(c):
    r = c.post("/v1/sandboxes", json={})
    r.raise_for_status()
    return r.json()["id"]


def read_response(sock, timeout=30):
    """Reads until the server closes; returns the status line (b"" when none came)."""
    return read_all(sock, timeout).split(b"\r\n", 1)[0]


def raw_answer(data):
    """An answer read off a socket as the notes show it: "413 EQUOTA", or "closed"."""
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode()[9:12]
    code = re.search(rb'"code":"([A-Z_]+)"', body)
    return f"{status} {code.group(1).decode()}" if code else status or "closed"


def send_body(port, head, body, chunked=False):
    """One request with a body; the server may answer and close before the body is sent.
    Returns (status line, bytes of body the server took before closing)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head)
        try:
            for i in range(0, len(body), 256 * 1024):
                piece = body[i:i + 256 * 1024]
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n" if chunked else piece)
                sent += len(piece)
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        return read_response(s), sent


def zeros_body(nbytes, first):
    n = (nbytes - len(first) - 2) // 2
    return first + b",".join([b"0"] * n) + b"]}"


def run_parallel(n, fn):
    out = [None] * n
    ts = [threading.Thread(target=lambda i=i: out.__setitem__(i, fn(i))) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


# ---- attack classes ----

BOOTSTRAP_HEAD = (b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\nX-Auth-Secret: " +
                  SECRET.encode() + b"\r\nContent-Type: application/json\r\n")


def attack_bootstrap_body(srv):
    """Unauthenticated: bodies of [0,0,...] to POST /v1/auth/bootstrap with the right secret,
    16 at once, announced by Content-Length (16 and 64 MiB) and chunked (16 MiB)."""
    b16, b64 = zeros_body(16 * MIB, b'{"sub":"x","a":['), zeros_body(64 * MIB, b'{"sub":"x","a":[')
    cl = lambda b: BOOTSTRAP_HEAD + b"Content-Length: %d\r\n\r\n" % len(b)  # noqa: E731
    te = BOOTSTRAP_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    jobs = ([(cl(b16), b16, False)] * 6 + [(cl(b64), b64, False)] * 2 + [(te, b16, True)] * 8)
    t = time.time()
    res = run_parallel(len(jobs), lambda i: send_body(srv.port, *jobs[i]))
    statuses = {}
    for (line, _), (_, _, chunked) in zip(res, jobs):
        key = ("chunked " if chunked else "CL ") + (line.decode().split(" ", 1)[1] if line
                                                      else "closed")
        statuses[key] = statuses.get(key, 0) + 1
    time.sleep(0.5)
    kept = (status_kib(srv.proc.pid, "VmRSS") - srv.base_kib) / 1024
    return Figure("RSS kept 0.5 s after the attack", kept, 4, "MiB",
                  {"requests": len(jobs), "answers": statuses,
                   "seconds": round(time.time() - t, 1)})


def attack_json_parse(srv):
    """Authenticated: 8 MiB of [0,0,...] (20 x its size once parsed) to POST /v1/sandboxes,
    4 at once, twice."""
    tok = srv.token("hostile").encode()
    body = zeros_body(8 * MIB, b'{"name":"x","a":[')
    head = (b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok +
            b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    statuses = {}
    for _ in range(2):
        for line, _ in run_parallel(4, lambda i: send_body(srv.port, head, body)):
            k = line.decode()
            statuses[k] = statuses.get(k, 0) + 1
    time.sleep(0.5)
    kept = (status_kib(srv.proc.pid, "VmRSS") - srv.base_kib) / 1024
    # per request: the body buffer (< 2 x body) + the parse (16 x body + 2 MiB)
    return Figure("RSS kept 0.5 s after the last request", kept, 16, "MiB",
                  {"answers": statuses, "per-request bound":
                   f"{(2 + 16) * 8 + 2} MiB (body buffer + parse)"})


def attack_slowloris(srv):
    """From one address: 2,100 connections sending half a request (headers or a body) and a
    byte now and then, for 10 s, re-opening up to 200 a second of those the server closes;
    another client measures GET /healthz meanwhile, a new connection each time."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    half = [b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
            b"POST /v1/auth/bootstrap HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"]
    more = [b"X-a: b\r\n", b"0"]
    counts = {"opened": 0, "closed by the server": 0}

    class Conn:
        def __init__(self, i):
            self.kind = i % 2
            self.started = False
            self.sock = socket.socket()
            self.sock.setblocking(False)
            self.sock.bind((ATTACKER_IP, 0))
            try:
                self.sock.connect(("127.0.0.1", srv.port))
            except BlockingIOError:
                pass
            counts["opened"] += 1

        def dribble(self):
            """False once the server closed the connection."""
            if self.sock.fileno() < 0:
                return False
            try:
                self.sock.send(more[self.kind] if self.started else half[self.kind])
                self.started = True
            except BlockingIOError:
                pass
            except OSError:
                self.sock.close()
                counts["closed by the server"] += 1
                return False
            return True

    stop = threading.Event()
    lat, threads = [], [0]

    def probe():
        while not stop.is_set():
            threads[0] = max(threads[0], len(os.listdir(f"/proc/{srv.proc.pid}/task")))
            t = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    ok = read_response(s, 5).startswith(b"HTTP/1.1 200")
            except OSError:
                ok = False
            # a failed probe counts as its 5 s timeout
            lat.append((time.perf_counter() - t) * 1000 if ok else 5000.0)
            time.sleep(0.05)

    base_threads = len(os.listdir(f"/proc/{srv.proc.pid}/task"))
    conns = [Conn(i) for i in range(2100)]
    prober = threading.Thread(target=probe)
    prober.start()
    t_end = time.time() + 10
    while time.time() < t_end:
        reopened = 0
        for i, c in enumerate(conns):
            if not c.dribble() and reopened < 200:
                conns[i] = Conn(i)
                reopened += 1
        time.sleep(1)
    stop.set()
    prober.join()
    for c in conns:
        c.sock.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    failed = sum(1 for x in lat if x == 5000.0)
    good = [x for x in lat if x != 5000.0]
    p99 = percentile(lat, 0.99) if lat else 5000.0
    return Figure("GET /healthz p99 of another client", p99, 100, "ms",
                  dict(counts, **{"probes": len(lat), "probe failures": failed,
                                  "p50 ms": round(percentile(good, 0.5), 2) if good else None,
                                  "server threads (one per connection), peak over baseline":
                                  threads[0] - base_threads}))


# ---- exec routes: the batch's status channel, clients that leave, output ----

BATCH_TIMEOUT_MS = 10000


WAIT_S = 60  # the longest a class waits for an answer (a build without the bounds may not end)


def attack_fd3(flood):
    """A batch whose second script floods fd 3 (the status channel), timeoutMs 10 s."""
    def run(srv):
        notes = {"timeoutMs": BATCH_TIMEOUT_MS}
        with srv.client(timeout=WAIT_S) as c:
            sid = new_sandbox(c)
            try:
                r, ms = timed(lambda: c.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={
                    "scripts": [{"id": "w", "script": "echo kept > w.txt"},
                                {"id": "flood", "script": flood}],
                    "timeoutMs": BATCH_TIMEOUT_MS}))
            except httpx.TimeoutException:
                r, ms = None, WAIT_S * 1000
                notes["answer"] = f"none in {WAIT_S} s"
            if r is not None:
                kept = c.get(f"/v1/sandboxes/{sid}/files/home/user/w.txt").status_code == 200
                notes.update({"answer": answer(r),
                              "earlier script's file": "kept" if kept else "not kept"})
        # the budget is 64 KiB + 8,320 bytes per script; past it the batch is killed at once
        return Figure("seconds to the answer", ms / 1000, 1, "s", notes)
    return run


def attack_client_gone(script):
    """A batch of one flooding script whose client closes its connection after 1 s."""
    def run(srv):
        with srv.client() as c:
            sid = new_sandbox(c)
        sock = raw_post(srv, srv.token(), f"/v1/sandboxes/{sid}/exec-sync-batch",
                        {"scripts": [{"id": "f", "script": script}],
                         "timeoutMs": 2 * BATCH_TIMEOUT_MS})
        time.sleep(1)
        sock.settimeout(0.01)
        try:
            early = sock.recv(12).decode()[9:] or "closed"
        except OSError:
            early = "none"
        sock.close()
        free = wait_for(lambda: exec_counts(srv) == (0, 0), WAIT_S)
        return Figure("seconds from the client leaving to its exec slot free",
                      WAIT_S if free is None else free, 1, "s",
                      {"answer before the client left": early,
                       "timeoutMs": 2 * BATCH_TIMEOUT_MS})
    return run


def attack_escape_50(srv):
    """50 scripts, each 10 MB of stdout and 10 MB of stderr in a byte JSON escapes to 6
    (\\u0001)."""
    script = ("head -c 10000000 /dev/zero | tr '\\0' '\\1';"
              " head -c 10000000 /dev/zero | tr '\\0' '\\2' >&2")
    with srv.client(timeout=600) as c:
        sid = new_sandbox(c)
        r, ms = timed(lambda: c.post(f"/v1/sandboxes/{sid}/exec-sync-batch", json={
            "scripts": [{"id": str(i), "script": script} for i in range(50)],
            "timeoutMs": 300000}))
    # the kept output (2 x the cap) escaped 6-fold, and the JSON around it
    return Figure("reply size", len(r.content) / MIB, 6 * 2 * OUTPUT_CAP / MIB + 1 / 16, "MiB",
                  {"answer": answer(r), "seconds": round(ms / 1000, 1)})


def attack_unread_10(srv):
    """Ten exec-syncs (6 MB + 6 MB of \\u0001 output) whose replies are never read."""
    script = ("head -c 6000000 /dev/zero | tr '\\0' '\\1';"
              " head -c 6000000 /dev/zero | tr '\\0' '\\2' >&2")
    token = srv.token()
    with srv.client() as c:
        sids = [new_sandbox(c) for _ in range(10)]
    rss = status_kib(srv.proc.pid, "VmRSS")
    socks, statuses = [], []
    try:
        for sid in sids:
            sock = raw_post(srv, token, f"/v1/sandboxes/{sid}/exec-sync", {"script": script},
                            rcvbuf=4096)
            socks.append(sock)
            sock.settimeout(120)
            statuses.append(sock.recv(12).decode()[9:] or "closed")
        wait_for(lambda: exec_counts(srv) == (0, 0), 30)
        time.sleep(1)
        held = (status_kib(srv.proc.pid, "VmRSS") - rss) / 1024
    finally:
        for sock in socks:
            sock.close()
    counts = {k: statuses.count(k) for k in sorted(set(statuses))}
    # REPLY_MEMORY_BYTES and the ten connections' own state (test_exec_bounds: slack 16 MiB)
    return Figure("RSS held while the replies are unread", held, REPLY_BUDGET / MIB + 16, "MiB",
                  {"answers": counts})


# ---- the quota while a write runs ----

QUOTA_ENV = {"SANDBOX_QUOTA_BYTES": str(QUOTA)}
QUOTA_WATCH_MS = 20  # the watch's check interval (src/exec/engine_internal.h)
# Content stored for a PUT or an ingest stops at the quota: the 1 MiB chunk that crosses it
# (STORE_CHUNK_SIZE) and the pages that index the content may pass it.
STORED_BOUND_MIB = QUOTA / MIB + 2
QUOTA_RUNS = 5  # the exec classes' overshoot varies with where the watch's checks fall
FIGURE_BOUND = "the figure's"  # a disk peak bound that is the figure's own bound


def quota_figure(srv, what, answers, bound_mib, errors=(), **notes):
    """The sandbox's peak disk (its upper, or the content stored for its write) against its
    bound: the sampled peak, or the quota plus the largest overshoot the server counted when it
    stopped an exec (a fast writer can fill and pass the quota between two samples)."""
    overs = [int(m.group(1)) for m in (re.search(r"wrote (\d+) bytes more", e) for e in errors)
             if m]
    peak = max([srv.disk.peak] + [QUOTA + o for o in overs])
    notes = dict({"answers": {a: answers.count(a) for a in sorted(set(answers))}}, **notes)
    if overs:
        notes["over the quota when stopped (the server's count), per run"] = \
            ", ".join(f"{o / MIB:.1f}" for o in overs) + " MiB"
    return Figure(what, peak / MIB, bound_mib, "MiB", notes)


def error_text(r):
    try:
        return r.json().get("error", "")
    except ValueError:
        return ""


def quota_exec_runs(srv, route, body):
    """The writer's speed in a sandbox, then QUOTA_RUNS requests to an exec route of it:
    (answers, error texts, slowest s, bytes the writer writes in one check interval)."""
    with srv.client() as c:
        sid = new_sandbox(c)
        # the slack SECURITY.md documents, "what a script writes in one check interval": the
        # same dd, 100 MiB within the quota, timed inside the jail (median of three)
        probe = ("s=$(date +%s%N); dd if=/dev/zero of=probe bs=1M count=100 status=none; "
                 "e=$(date +%s%N); rm probe; echo $((e - s))")
        ns = sorted(int(c.post(f"/v1/sandboxes/{sid}/exec-sync", json={"script": probe}
                               ).json()["stdout"]) for _ in range(3))
        runs = [timed(lambda: c.post(f"/v1/sandboxes/{sid}/{route}", json=body))
                for _ in range(QUOTA_RUNS)]
    return ([answer(r) for r, _ in runs], [error_text(r) for r, _ in runs],
            round(max(ms for _, ms in runs) / 1000, 2), 100 * MIB * QUOTA_WATCH_MS * 1e6 / ns[1])


def quota_exec_figure(srv, what, route, body):
    answers, errors, slowest, slack = quota_exec_runs(srv, route, body)
    return quota_figure(srv, what, answers, (QUOTA + slack) / MIB, errors, **{
        "slowest answer": f"{slowest} s",
        "the writer's speed": f"{slack * 1000 / QUOTA_WATCH_MS / (1 << 30):.1f} GiB/s, so "
                              f"{slack / MIB:.0f} MiB in one {QUOTA_WATCH_MS} ms check interval "
                              "(the slack)"})


# Ten 100 MiB files: a writer as fast as this one fills 100 MiB in one check interval, so
# three would pass the quota by no more than the slack even with no watch at all.
QUOTA_FILES = 10


def attack_quota_exec(srv):
    """Five execs, each writing 10 x 100 MiB with a 200 MiB quota."""
    script = (f"echo kept > before.txt; for i in $(seq {QUOTA_FILES}); do "
              "dd if=/dev/zero of=big$i bs=1M count=100 status=none; done; echo done")
    return quota_exec_figure(srv, "peak disk of the exec's upper", "exec-sync",
                             {"script": script, "timeoutMs": 120000})


def attack_quota_batch(srv):
    """Five batches of ten scripts each writing 100 MiB with a 200 MiB quota."""
    return quota_exec_figure(srv, "peak disk of the batch's upper", "exec-sync-batch", {
        "timeoutMs": 120000, "scripts": [
            {"id": str(i), "script": f"dd if=/dev/zero of=big{i} bs=1M count=100 status=none"}
            for i in range(QUOTA_FILES)]})


PUT_BYTES = 250 * MIB


def put_head(srv, sid, framing):
    return (f"PUT /v1/sandboxes/{sid}/files/home/user/f HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {srv.token()}\r\nConnection: close\r\n{framing}\r\n\r\n"
            ).encode()


def attack_quota_put_length(srv):
    """A 250 MiB PUT announced by Content-Length with a 200 MiB quota: the headers, 2 s for an
    answer, then the body if none came."""
    with srv.client() as c:
        sid = new_sandbox(c)
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        t = time.perf_counter()
        sock.sendall(put_head(srv, sid, f"Content-Length: {PUT_BYTES}"))
        sock.settimeout(2)
        try:
            early = sock.recv(65536)
        except OSError:
            early = b""
        before_body = bool(early)
        if not early:
            try:
                for _ in range(PUT_BYTES // MIB):
                    sock.sendall(os.urandom(MIB))
            except OSError:
                pass
        got = raw_answer(early or read_all(sock, 60))
        ms = (time.perf_counter() - t) * 1000
    return quota_figure(srv, "peak disk of the PUT's stored content", [got], STORED_BOUND_MIB,
                        **{"answered before the body": "yes" if before_body else "no",
                           "seconds": round(ms / 1000, 2)})


def attack_quota_put_chunked(srv):
    """A chunked 250 MiB PUT (distinct content, nothing to deduplicate) with a 200 MiB quota."""
    with srv.client() as c:
        sid = new_sandbox(c)
    t = time.perf_counter()
    line, sent = send_body(srv.port, put_head(srv, sid, "Transfer-Encoding: chunked"),
                           os.urandom(PUT_BYTES), chunked=True)
    return quota_figure(srv, "peak disk of the PUT's stored content",
                        [line.decode()[9:] or "closed"], STORED_BOUND_MIB,
                        **{"body sent before the server stopped reading": f"{sent / MIB:.0f} MiB",
                           "seconds": round(time.perf_counter() - t, 2)})


def attack_quota_ingest(srv):
    """A 300 MiB tar of three 100 MiB files (distinct content) with a 200 MiB quota."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in ("a", "b", "c"):
            ti = tarfile.TarInfo(name)
            ti.size = 100 * MIB
            tf.addfile(ti, io.BytesIO(os.urandom(ti.size)))
    with srv.client() as c:
        sid = new_sandbox(c)
        r, ms = timed(lambda: c.post(f"/v1/sandboxes/{sid}/ingest",
                                     params={"basePath": "/home/user/in"},
                                     content=buf.getvalue(),
                                     headers={"Content-Type": "application/x-tar"}))
    return quota_figure(srv, "peak disk of the ingest's stored content", [answer(r)],
                        STORED_BOUND_MIB, seconds=round(ms / 1000, 2))


# ---- ingest metadata ----

def attack_ingest_paths(srv):
    """The finding's archive: 20,000 empty files under ~3.5 KB paths, 0.6 MB of tar.gz."""
    data = long_path_archive()
    with srv.client() as c:
        sid = new_sandbox(c)
        r, ms = timed(lambda: c.post(f"/v1/sandboxes/{sid}/ingest",
                                     params={"basePath": "/home/user/project"}, content=data,
                                     headers={"Content-Type": "application/gzip"}))
        tree = c.get(f"/v1/sandboxes/{sid}/tree", params={"prefix": "/home/user"}).json()
    return Figure("entries written", len(tree), 0, "",
                  {"answer": answer(r), "archive": f"{len(data) / MIB:.2f} MiB of tar.gz",
                   "seconds": round(ms / 1000, 2)})


# ---- another owner's sandbox, exec slots ----

def start_exec(c, sid, script, read_only=False):
    out = {}
    th = threading.Thread(target=lambda: out.__setitem__("r", c.post(
        f"/v1/sandboxes/{sid}/exec-sync", json={"script": script, "readOnly": read_only})))
    th.start()
    return th, out


def attack_stranger(srv):
    """While the owner's `sleep 3` exec holds its sandbox's lock, a stranger (another sub)
    sends GET, GET of a file, GET tree and DELETE on it; the same to a random id first."""
    def requests(sid):
        base = f"/v1/sandboxes/{sid}"
        return [("GET", base), ("GET", base + "/files/home/user/a.txt"), ("GET", base + "/tree"),
                ("DELETE", base)]
    with srv.client("owner") as alice, srv.client("stranger") as bob:
        sid = new_sandbox(alice)
        alice.put(f"/v1/sandboxes/{sid}/files/home/user/a.txt", content=b"hello\n")
        missing = [timed(lambda m=m, p=p: bob.request(m, p))[1]
                   for m, p in requests(uuid.uuid4())]
        th, out = start_exec(alice, sid, "sleep 3")
        wait_for(lambda: exec_counts(srv)[0] == 1, 10)
        busy = {f"{m} {p.split(sid)[1] or '/'}": timed(lambda m=m, p=p: bob.request(m, p))
                for m, p in requests(sid)}
        th.join()
    return Figure("the stranger's slowest answer", max(ms for _, ms in busy.values()), 50, "ms",
                  dict({k: f"{answer(r)} in {ms:.1f} ms" for k, (r, ms) in busy.items()},
                       **{"a random id's slowest": f"{max(missing):.1f} ms",
                          "owner's exec": answer(out["r"])}))


def attack_stranger_delete(srv):
    """While the owner's read-only `sleep 3` exec runs, a stranger's DELETE of the sandbox (a
    writer, if it queued on the lock) and then the owner's GET of a file."""
    with srv.client("owner") as alice, srv.client("stranger") as bob:
        sid = new_sandbox(alice)
        alice.put(f"/v1/sandboxes/{sid}/files/home/user/a.txt", content=b"hello\n")
        th, out = start_exec(alice, sid, "sleep 3", read_only=True)
        wait_for(lambda: exec_counts(srv)[0] == 1, 10)
        deleted = {}
        deleter = threading.Thread(target=lambda: deleted.__setitem__(
            "r", timed(lambda: bob.delete(f"/v1/sandboxes/{sid}"))))
        deleter.start()
        time.sleep(0.1)
        r, ms = timed(lambda: alice.get(f"/v1/sandboxes/{sid}/files/home/user/a.txt"))
        deleter.join()
        th.join()
    dr, dms = deleted["r"]
    return Figure("the owner's GET during the stranger's DELETE", ms, 50, "ms",
                  {"owner's GET": answer(r), "stranger's DELETE": f"{answer(dr)} in "
                   f"{dms:.1f} ms", "owner's exec": answer(out["r"])})


def attack_exec_slots(srv):
    """EXEC_CONCURRENCY=2: one owner starts three `sleep 2` execs on three sandboxes, then
    another owner runs `true`."""
    with srv.client("greedy") as alice, srv.client("other") as bob:
        a_ids = [new_sandbox(alice) for _ in range(3)]
        b_id = new_sandbox(bob)
        runs = [start_exec(alice, sid, "sleep 2") for sid in a_ids]
        wait_for(lambda: sum(exec_counts(srv)) == 3, 10)
        held = exec_counts(srv)
        r, ms = timed(lambda: bob.post(f"/v1/sandboxes/{b_id}/exec-sync",
                                       json={"script": "true"}))
        for th, _ in runs:
            th.join()
    return Figure("the other owner's exec-sync of `true`", ms / 1000, 1, "s",
                  {"greedy owner's execs running, queued": held, "answer": answer(r),
                   "greedy owner's answers": [answer(out["r"]) for _, out in runs]})


ATTACKS = [
    Attack("bootstrap-body", "16 unauthenticated 16-64 MiB bodies to POST /v1/auth/bootstrap",
           8, attack_bootstrap_body),
    Attack("json-parse", "8 MiB of [0,0,...] to an authenticated JSON route, 4 at once",
           4 * ((2 + 16) * 8 + 2) + 16, attack_json_parse),
    Attack("slowloris", "2,100 half-sent requests from one address for 10 s", 32,
           attack_slowloris),
    Attack("fd3-bytes", "a batch script floods fd 3 with 64 KiB writes", OUTPUT_RSS_BOUND,
           attack_fd3(FD3_FLOOD), {"MAX_EXEC_OUTPUT_BYTES": str(OUTPUT_CAP)}),
    Attack("fd3-records", "a batch script floods fd 3 with \\0E\\0 records",
           OUTPUT_RSS_BOUND, attack_fd3(FD3_RECORDS), {"MAX_EXEC_OUTPUT_BYTES": str(OUTPUT_CAP)}),
    Attack("fd3-gone", "the fd 3 records flood, its client gone after 1 s", OUTPUT_RSS_BOUND,
           attack_client_gone(FD3_RECORDS), {"MAX_EXEC_OUTPUT_BYTES": str(OUTPUT_CAP)}),
    Attack("flood-gone", "a batch script floods stdout and stderr, its client gone after 1 s",
           OUTPUT_RSS_BOUND, attack_client_gone(OUT_FLOOD + " & " + ERR_FLOOD),
           {"MAX_EXEC_OUTPUT_BYTES": str(OUTPUT_CAP)}),
    Attack("escape-50", "50 batch scripts x 20 MB of output that escapes 6-fold",
           OUTPUT_RSS_BOUND, attack_escape_50, {"MAX_EXEC_OUTPUT_BYTES": str(OUTPUT_CAP)}),
    # the replies' budget, and the one request being answered at the time
    Attack("unread-10", "ten exec-syncs of 12 MB of such output, replies never read",
           REPLY_BUDGET / MIB + OUTPUT_RSS_BOUND, attack_unread_10,
           {"MAX_EXEC_OUTPUT_BYTES": str(OUTPUT_CAP), "REPLY_MEMORY_BYTES": str(REPLY_BUDGET)}),
    Attack("quota-exec", "5 execs writing 10 x 100 MiB each", EXEC_SLACK_MIB, attack_quota_exec,
           QUOTA_ENV, FIGURE_BOUND),
    Attack("quota-batch", "5 batches of 10 scripts writing 100 MiB each", EXEC_SLACK_MIB,
           attack_quota_batch, QUOTA_ENV, FIGURE_BOUND),
    Attack("quota-put-length", "a 250 MiB PUT with Content-Length", STORE_WRITE_RSS_BOUND,
           attack_quota_put_length, QUOTA_ENV, STORED_BOUND_MIB),
    Attack("quota-put-chunked", "a chunked 250 MiB PUT", STORE_WRITE_RSS_BOUND,
           attack_quota_put_chunked, QUOTA_ENV, STORED_BOUND_MIB),
    Attack("quota-ingest", "a tar of 3 x 100 MiB files", STORE_WRITE_RSS_BOUND,
           attack_quota_ingest, QUOTA_ENV, STORED_BOUND_MIB),
    # MAX_INGEST_PATH_BYTES (32 MiB), the ingest's two 4 MiB queues, its per-entry bookkeeping
    # (tests/integration/test_archive.py test_ingest_path_bytes_bound_memory)
    Attack("ingest-paths", "20,000 entries with 3.5 KB paths in a 0.6 MB tar.gz", 48,
           attack_ingest_paths),
    Attack("stranger", "another sub's GET/DELETE on a sandbox whose owner's exec holds it",
           None, attack_stranger),
    Attack("stranger-delete", "the owner's read during a stranger's DELETE", None,
           attack_stranger_delete),
    Attack("exec-slots", "one owner's long execs against another owner's exec", None,
           attack_exec_slots, {"EXEC_CONCURRENCY": "2"}),
]


def run(attack):
    srv = Server(attack.env).start()
    try:
        time.sleep(0.5)
        base = disk_used(srv)
        srv.disk = PeakSampler(lambda: disk_used(srv) - base)
        error = None
        with PeakRss(srv) as peak, srv.disk:
            srv.base_kib = peak.base
            try:
                fig = asdict(attack.run(srv))
            except (httpx.HTTPError, OSError, ValueError, KeyError) as e:
                # e.g. a build without a route the class uses; the row says so
                fig, error = None, f"{type(e).__name__}: {e}"
        time.sleep(1)  # an exec's upper is removed after its reply
        left = disk_used(srv) - base
        disk_bound = attack.disk_bound_mib
        if disk_bound == FIGURE_BOUND:
            disk_bound = fig and round(fig["bound"], 1)
        alive = srv.proc.poll() is None
        rss = peak.growth / 1024
        return {"name": attack.name, "what": attack.what, "env": attack.env, "figure": fig,
                "error": error, "rss_growth_mib": round(rss, 1),
                "rss_bound_mib": attack.rss_bound_mib,
                "rss_from": "VmHWM" if peak.hwm else "VmRSS sampled every 10 ms",
                "disk_peak_mib": round(srv.disk.peak / MIB, 1),
                "disk_peak_bound_mib": disk_bound,
                "disk_left_mib": round(left / MIB, 2), "disk_left_bound_mib": DISK_LEFT_BOUND_MIB,
                "server_alive": alive,
                "ok": alive and fig is not None and fig["value"] <= fig["bound"] and
                within(rss, attack.rss_bound_mib) and
                within(srv.disk.peak / MIB, disk_bound) and
                left / MIB <= DISK_LEFT_BOUND_MIB}
    finally:
        srv.cleanup()


def within(value, bound):
    return bound is None or value <= bound


def load(name):
    path = os.path.join(lib.RESULTS, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def bound(b, fmt="{:g}"):
    return "—" if b is None else fmt.format(b)


def settings(env):
    return ", ".join(f"`{k}`={int(v) // MIB} MiB" if k.endswith("BYTES") else f"`{k}`={v}"
                     for k, v in env.items())


def markdown_section():
    """The "Hostile clients" section of docs/BENCHMARKS.md from bench/results/hostile.json, with
    the figures of a build before the fixes (hostile-before.json) beside them when present."""
    now = load("hostile")
    if not now:
        return "Not measured yet: `make bench-hostile`."
    prev = load("hostile-before") or {}
    before = {c["name"]: c for c in prev.get("classes", [])}
    lines = [f"`make bench-hostile` (`bench/hostile.py`), run {now['date']} on the machine above "
             f"(1-min load average {now.get('loadavg_1min', 0):.2f} at the start); "
             "each class against a fresh server with default settings but those it names, on "
             f"loopback, the attacker from {ATTACKER_IP}. Peak RSS growth is VmHWM over the RSS "
             "before the attack (/proc/PID/status). Disk growth is the data dir's: the disk "
             "blocks under `<data>/uppers` (exec uppers) plus the pages in use in both database "
             "files, sampled every 5 ms during the attack (peak) and 1 s after it (left). A "
             "number in parentheses is the bound documented in SECURITY.md and docs/API.md "
             "(— where none is documented); a class is ok when every figure is within its bound. "
             "The exec classes' RSS bound is the output bound (2 × `MAX_EXEC_OUTPUT_BYTES` + "
             f"100 KiB) plus {EXEC_SLACK_MIB} MiB for the rest of an exec request; a write "
             "streamed into the store may grow the writer's page cache (16 + 4 MiB) and the "
             "ingest's two 4 MiB queues. Machine-readable: `bench/results/hostile.json`"
             + ("; the last column is the same command against the build of commit "
                f"{prev.get('commit')}, before these bounds existed (run {prev.get('date')}, "
                "`bench/results/hostile-before.json`)." if before else "."), "",
             "| class | attack (settings) | peak RSS growth, MiB (bound) | disk growth, MiB: "
             "peak (bound); left (bound) | figure | value (bound) | ok |"
             + (" before the fixes: RSS; disk peak; left; value |" if before else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if before else "")]
    for c in now["classes"]:
        fig = c["figure"] or {"what": "—"}
        env = settings(c.get("env") or {})
        row = (f"| {c['name']} | {c['what']}{f' ({env})' if env else ''} | "
               f"{c['rss_growth_mib']:.1f} ({bound(c['rss_bound_mib'], '{:.0f}')}) | "
               f"{c['disk_peak_mib']:.1f} ({bound(c['disk_peak_bound_mib'], '{:.0f}')}); "
               f"{c['disk_left_mib']:.1f} ({c['disk_left_bound_mib']:g}) | {fig['what']} | "
               f"{value(c)} ({bound(fig.get('bound'), '{:.4g}')}) | "
               f"{'ok' if c['ok'] else '**over**'} |")
        if before:
            b = before.get(c["name"])
            row += (f" {b['rss_growth_mib']:.0f}; {b['disk_peak_mib']:.0f}; "
                    f"{b['disk_left_mib']:.0f}; {value(b)} |" if b else " not run |")
        lines.append(row)
    lines.append("")
    for c in now["classes"]:
        lines.append(f"- {c['name']}: {notes_text(c)}.")
        b = before.get(c["name"])
        if b:
            lines.append(f"  Before the fixes: {notes_text(b)}.")
    return "\n".join(lines) + "\n"


def value(c):
    f = c["figure"]
    return "failed" if f is None else f"{f['value']:.2f} {f['unit']}".strip()


def notes_text(c):
    text = (f"failed: {c['error']}" if c["figure"] is None else
            "; ".join(f"{k}: {v}" for k, v in c["figure"]["notes"].items()))
    return text if c["server_alive"] else text + "; the server died"


SECURITY_ROW = "| Hostile clients, figures | `make bench-hostile` (`bench/hostile.py`) |"


def security_row():
    """SECURITY.md's "Hostile clients, figures" row: each class's figures and bounds."""
    now = load("hostile")
    parts = []
    for c in now["classes"]:
        f = c["figure"] or {"what": "figure"}
        parts.append(
            f"**{c['name']}** ({c['what']}"
            + (f"; {settings(c['env'])}" if c.get("env") else "")
            + f"): RSS +{c['rss_growth_mib']:.1f} MiB "
            f"({bound(c['rss_bound_mib'], '{:.0f}')}), disk peak {c['disk_peak_mib']:.1f} MiB "
            f"({bound(c['disk_peak_bound_mib'], '{:.0f}')}), left {c['disk_left_mib']:.1f} MiB "
            f"({c['disk_left_bound_mib']:g}), {f['what']} {value(c)} "
            f"({bound(f.get('bound'), '{:.4g}')})")
    return (f"{SECURITY_ROW} each attack class against a fresh server: the server's peak RSS "
            "growth, the data dir's disk growth (peak during the attack, left after it) and the "
            "class's own figure, each against its documented bound (in parentheses; — where "
            f"none is documented). Measured {now['date']}: " + "; ".join(parts) +
            ". The same classes against the build before the bounds, and each class's answers: "
            "[docs/BENCHMARKS.md](docs/BENCHMARKS.md#hostile-clients) |")


def write_docs():
    """Replaces the "Hostile clients" section of docs/BENCHMARKS.md with markdown_section(),
    as bench/report.py would render it, and SECURITY.md's "Hostile clients, figures" row."""
    path = os.path.join(lib.ROOT, "docs", "BENCHMARKS.md")
    with open(path) as f:
        text = f.read()
    head = "## Hostile clients\n\n"
    start = text.index(head) + len(head)
    end = text.index("\n## ", start) + 1
    with open(path, "w") as f:
        f.write(text[:start] + markdown_section() + "\n" + text[end:])
    path = os.path.join(lib.ROOT, "SECURITY.md")
    with open(path) as f:
        lines = f.read().split("\n")
    lines = [security_row() if x.startswith(SECURITY_ROW) else x for x in lines]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("wrote docs/BENCHMARKS.md and SECURITY.md")


def commit():
    """The commit the measured binary was built from, when it sits in a git work tree."""
    r = subprocess.run(["git", "-C", os.path.dirname(lib.BINARY), "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    return r.stdout.strip() or None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="run some classes (comma-separated): "
                    + ", ".join(a.name for a in ATTACKS))
    ap.add_argument("--save", default="hostile", help="results name (bench/results/NAME.json)")
    ap.add_argument("--markdown", action="store_true",
                    help="print the docs/BENCHMARKS.md section from the saved results; no run")
    ap.add_argument("--docs", action="store_true",
                    help="write that section into docs/BENCHMARKS.md, and the figures into "
                    "SECURITY.md's Verification table; no run")
    args = ap.parse_args()
    if args.markdown or args.docs:
        if args.docs:
            write_docs()
        else:
            print(markdown_section())
        return 0
    names = args.only.split(",") if args.only else [a.name for a in ATTACKS]
    unknown = set(names) - {a.name for a in ATTACKS}
    if unknown:
        ap.error(f"no class {', '.join(sorted(unknown))}")
    attacks = [a for a in ATTACKS if a.name in names]
    load_at_start = os.getloadavg()[0]
    rows = []
    for a in attacks:
        t = time.monotonic()
        rows.append(run(a))
        print(f"{a.name}: {time.monotonic() - t:.1f} s", flush=True)
    print(f"\n{'class':<18} {'peak RSS growth':>17} {'disk peak; left':>22} {'figure':>26}  ok")
    for r in rows:
        f = r["figure"] or {"bound": float("nan")}
        rb, db = bound(r["rss_bound_mib"], "{:.0f}"), bound(r["disk_peak_bound_mib"], "{:.0f}")
        print(f"{r['name']:<18} {r['rss_growth_mib']:>6.1f} / {rb:>4} "
              f"MiB {r['disk_peak_mib']:>6.1f} / {db:>3}; "
              f"{r['disk_left_mib']:>5.1f} / {r['disk_left_bound_mib']} "
              f"{value(r):>14} / {f['bound']:>6.2f}  {'ok' if r['ok'] else 'OVER'}")
    for r in rows:
        print(f"\n{r['name']}: {r['what']}\n  figure: {(r['figure'] or {}).get('what')}")
        print("  " + notes_text(r).replace("; ", "\n  "))
    # a partial run (--only) replaces its classes in the saved results and keeps the others
    kept = {c["name"]: c for c in (load(args.save) or {}).get("classes", [])}
    kept.update({r["name"]: r for r in rows})
    save(args.save, {"date": time.strftime("%Y-%m-%d"),
                     "binary": (os.path.relpath(lib.BINARY, lib.ROOT)
                                if lib.BINARY.startswith(lib.ROOT + "/") else lib.BINARY),
                     "commit": commit(),
                     "loadavg_1min": load_at_start,
                     "classes": [kept[a.name] for a in ATTACKS if a.name in kept]})
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
