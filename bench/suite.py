"""The comparison benchmark suite: sqlfs against bubblewrap (raw), just-bash and native.

Run: make bench (full) or make bench-quick; or /usr/bin/python3 bench/suite.py [--quick]
[--only a,b]. Each scenario writes into bench/results/suite[-quick].json; bench/report.py turns
that file into docs/BENCHMARKS.md and docs/img/*.png.
"""
import http.client
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (CACHE, RESULTS, ROOT, RssSampler, Server, curl_transfer, httpbench,  # noqa: E402
                 summarize, tarball_files, tree_tarball)

QUICK = "--quick" in sys.argv
ONLY = None
if "--only" in sys.argv:
    ONLY = set(sys.argv[sys.argv.index("--only") + 1].split(","))
NAME = "suite-quick" if QUICK else "suite"
if "--name" in sys.argv:  # where the results go: bench/results/<name>.json
    NAME = sys.argv[sys.argv.index("--name") + 1]
BENCH = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 120  # seconds per request; a request that hangs is reported, not waited on
SPAWNBENCH = os.path.join(ROOT, "build", "bench", "spawnbench")
BWRAP = ["bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
         "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc",
         "--dev", "/dev"]
PATTERNS = ["def __init__", "import os", "TODO|FIXME", "raise [A-Z][a-z]+Error", "return None",
            "lambda [a-z]+:", "yield from", "class [A-Z][A-Za-z]+\\("]


def q(n_full, n_quick):
    return n_quick if QUICK else n_full


def ms_since(t0):
    return (time.perf_counter() - t0) * 1000.0


def stats(values):
    s = summarize(values)
    s["runs_ms"] = [round(v, 3) for v in values] if len(values) <= 20 else None
    return s


def ratio(a, b):
    return round(a / b, 2) if b else None


# ---------------------------------------------------------------- local references

def time_local(argv, n, cwd=None):
    """Latencies (ms) of n sequential runs of argv, timed in C (spawnbench)."""
    cmd = [SPAWNBENCH, str(n)] + (["-C", cwd] if cwd else []) + ["--"] + argv
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def spawn_rate(argv, workers, total):
    """Runs/s of argv with `workers` concurrent spawnbench loops (total runs in all): what this
    machine can start in parallel without any server (the ceiling of the exec throughput)."""
    each = max(1, total // workers)
    t0 = time.monotonic()
    procs = [subprocess.Popen([SPAWNBENCH, str(each), "--"] + argv, stdout=subprocess.DEVNULL)
             for _ in range(workers)]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError("spawnbench failed: " + " ".join(argv))
    return round(each * workers / (time.monotonic() - t0), 1)


def bwrap_argv(script, home=None):
    argv = list(BWRAP)
    if home:
        argv += ["--bind", home, "/home/user", "--chdir", "/home/user"]
    return argv + ["bash", "-c", script]


def justbash(cases, corpus=None):
    job = {"corpus": corpus, "corpusBase": "/home/user/corpus", "cases": cases}
    r = subprocess.run(["node", os.path.join(BENCH, "justbash.mjs")], input=json.dumps(job),
                       capture_output=True, text=True, cwd=BENCH, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError("just-bash driver failed: " + r.stderr[-2000:])
    return json.loads(r.stdout)


# ---------------------------------------------------------------- sqlfs client helpers

class Api:
    """A keep-alive JSON client. http.client sends a small request's headers and body in one
    write, so timings are free of the Nagle/delayed-ACK stall a split write would add."""

    def __init__(self, server, sub="bench"):
        self.s = server
        self.tok = server.token(sub)
        self.c = httpx.Client(base_url=server.url, timeout=600,
                              headers={"Authorization": "Bearer " + self.tok})
        self.h = None

    def _conn(self):
        if self.h is None:
            self.h = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=TIMEOUT)
            self.h.connect()
            self.h.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.h

    def req(self, method, path, body=None, want_headers=False):
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Authorization": "Bearer " + self.tok}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        h = self._conn()
        h.request(method, path, body=data, headers=hdrs)
        r = h.getresponse()
        raw = r.read()
        if want_headers:
            return r.status, (json.loads(raw) if raw else None), r.headers
        return r.status, (json.loads(raw) if raw else None)

    def exec_stream(self, sid, script, **kw):
        """One POST /exec read to its end on the keep-alive connection: its events as
        {"exit": the exit event, "error": the error event or None, "stdout": ..., "stderr": ...}
        (raises on a status other than 200 or a stream without `exit`)."""
        h = self._conn()
        h.request("POST", f"/v1/sandboxes/{sid}/exec", body=json.dumps(dict(script=script, **kw)),
                  headers={"Authorization": "Bearer " + self.tok,
                           "Content-Type": "application/json"})
        r = h.getresponse()
        raw = r.read().decode()
        if r.status != 200:
            raise RuntimeError(f"POST /exec {script!r}: {r.status} {raw[:500]}")
        out = {"exit": None, "error": None, "stdout": "", "stderr": ""}
        for frame in raw.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in frame.split("\n") if ": " in line
                          and not line.startswith(":"))
            ev, data = fields.get("event"), fields.get("data")
            if ev in ("stdout", "stderr"):
                out[ev] += json.loads(data)["data"]
            elif ev in ("exit", "error"):
                out[ev] = json.loads(data)
        if out["exit"] is None:
            raise RuntimeError(f"POST /exec {script!r}: no exit event in {raw[-500:]!r}")
        return out

    def exec_phases(self, sid, script):
        """One exec-sync; its Server-Timing header as {phase: ms}."""
        st, j, hdrs = self.req("POST", f"/v1/sandboxes/{sid}/exec-sync", {"script": script},
                               want_headers=True)
        assert st == 200, j
        return {name: float(ms) for name, ms in
                (e.strip().split(";dur=") for e in hdrs["Server-Timing"].split(","))}

    def create(self):
        st, j = self.req("POST", "/v1/sandboxes", {})
        assert st == 201, j
        return j["id"]

    def delete(self, sid):
        st, j = self.req("DELETE", f"/v1/sandboxes/{sid}")
        assert st == 204, j

    def exec(self, sid, script, **kw):
        st, j = self.req("POST", f"/v1/sandboxes/{sid}/exec-sync", dict(script=script, **kw))
        assert st == 200, j
        return j

    def batch(self, sid, scripts, read_only=False):
        body = {"scripts": [{"id": str(i), "script": s} for i, s in enumerate(scripts)],
                "readOnly": read_only, "timeoutMs": 300000}
        st, j = self.req("POST", f"/v1/sandboxes/{sid}/exec-sync-batch", body)
        assert st == 200, j
        return j["results"]

    def ingest(self, sid, tar_path, base, ctype="application/gzip"):
        with open(tar_path, "rb") as f:
            r = self.c.post(f"/v1/sandboxes/{sid}/ingest", params={"basePath": base},
                            content=f, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text
        return r.json()

    def exec_body(self, script, **kw):
        return json.dumps(dict(script=script, **kw))


# ---------------------------------------------------------------- fixtures

def corpus_dir():
    """~1000 .py files of the machine's Python library, copied into a stable directory."""
    d = os.path.join(CACHE, "corpus")
    if os.path.isdir(d):
        return d
    tmp = d + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    n = 0
    tops = ("/usr/lib/python3.11", "/usr/lib/python3/dist-packages")
    walk = [(top, root, files) for top in tops for root, _, files in sorted(os.walk(top))]
    for top, root, files in walk:
        for fn in sorted(files):
            if not fn.endswith(".py") or n >= 1000:
                continue
            src = os.path.join(root, fn)
            rel = os.path.join(os.path.basename(top), os.path.relpath(src, top))
            try:
                with open(src, encoding="utf-8") as f:
                    text = f.read()
            except (UnicodeDecodeError, OSError):
                continue
            os.makedirs(os.path.join(tmp, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "w", encoding="utf-8") as f:
                f.write(text)
            n += 1
    os.rename(tmp, d)
    return d


def tar_of_dir(d, out, compress=True):
    if not os.path.exists(out):
        subprocess.run(["tar", "-C", d, "-c" + ("z" if compress else "") + "f", out + ".tmp",
                        "."], check=True)
        os.rename(out + ".tmp", out)
    return out


def small_files_tar(count, size, name):
    out = os.path.join(CACHE, name)
    if os.path.exists(out):
        return out
    with tarfile.open(out + ".tmp", "w") as t:
        for i in range(count):
            data = os.urandom(size // 2).hex().encode()[:size]
            ti = tarfile.TarInfo(f"d{i // 100:03d}/f{i:05d}.txt")
            ti.size = len(data)
            ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    os.rename(out + ".tmp", out)
    return out


# ---------------------------------------------------------------- scenarios

def sc_lifecycle(res):
    n = q(1000, 100)
    s = Server().start()
    try:
        api = Api(s)
        create, first, delete = [], [], []
        for _ in range(n):
            t0 = time.perf_counter()
            sid = api.create()
            create.append(ms_since(t0))
            t0 = time.perf_counter()
            api.exec(sid, "true")
            first.append(ms_since(t0))
            t0 = time.perf_counter()
            api.delete(sid)
            delete.append(ms_since(t0))
        hb = httpbench(s, api.tok, "/v1/sandboxes", "POST", body="{}", n=n, expect=201)
    finally:
        s.cleanup()
    bw = time_local(bwrap_argv("true"), n)
    jb = justbash([{"name": "fresh", "script": "true", "n": n, "fresh": True}])
    res["lifecycle"] = {
        "n": n, "create": stats(create), "create_httpbench": hb, "first_exec": stats(first),
        "delete": stats(delete), "bwrap_first_exec": stats(bw),
        "justbash_new_and_exec": stats(jb["fresh"]),
        "ratio_first_exec_vs_bwrap": ratio(summarize(first)["p50_ms"], summarize(bw)["p50_ms"]),
    }


EXEC_CASES = [("true", "true"), ("echo", "echo hi"), ("write", "echo hello > w.txt"),
              ("read", "cat r.txt")]


PACE_MS = 50


def sc_exec(res):
    n = q(500, 50)
    s = Server().start()
    out = {"n": n}
    try:
        api = Api(s)
        sid = api.create()
        api.exec(sid, "echo hello > r.txt")
        ids = [sid]
        for name, script in EXEC_CASES:
            httpbench(s, api.tok, "/v1/sandboxes/{id}/exec-sync", "POST",
                      body=api.exec_body(script), n=10, ids=ids, expect=200)
            r = httpbench(s, api.tok, "/v1/sandboxes/{id}/exec-sync", "POST",
                          body=api.exec_body(script), n=n, ids=ids, expect=200)
            out[name] = {"sqlfs": r}
        # The same pair with a pause after every response, as an agent thinking between
        # commands: what one write costs when the server is not also catching up on the last.
        paced = {"pause_ms": PACE_MS, "n": q(200, 30)}
        for name in ("true", "write"):
            script = dict(EXEC_CASES)[name]
            paced[name] = httpbench(s, api.tok, "/v1/sandboxes/{id}/exec-sync", "POST",
                                    body=api.exec_body(script), n=paced["n"], ids=ids,
                                    expect=200, pause_ms=PACE_MS)
        paced["write_commit_extra_ms"] = round(paced["write"]["p50_ms"]
                                               - paced["true"]["p50_ms"], 3)
        out["paced"] = paced
        out["phases"] = phase_split(api, sid, q(100, 20))
    finally:
        s.cleanup()
    home = tempfile.mkdtemp(prefix="bench-bwrap-home-")
    try:
        with open(os.path.join(home, "r.txt"), "w") as f:
            f.write("hello\n")
        for name, script in EXEC_CASES:
            out[name]["bwrap"] = stats(time_local(bwrap_argv(script, home), n))
            out[name]["native"] = stats(time_local(["bash", "-c", script], n, cwd=home))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    jb = justbash([{"name": name, "script": script, "n": n} for name, script in EXEC_CASES])
    for name, _ in EXEC_CASES:
        out[name]["justbash"] = stats(jb[name])
        o = out[name]
        o["ratio_vs_bwrap"] = ratio(o["sqlfs"]["p50_ms"], o["bwrap"]["p50_ms"])
        o["ratio_vs_justbash"] = ratio(o["sqlfs"]["p50_ms"], o["justbash"]["p50_ms"])
    out["write_commit_extra_ms"] = round(out["write"]["sqlfs"]["p50_ms"]
                                         - out["true"]["sqlfs"]["p50_ms"], 3)
    res["exec"] = out


def phase_split(api, sid, n):
    """Where the latency of `true` and of the one-file write goes: the median of each phase of
    the server's Server-Timing header, and of the client's own wall time, over n execs of each
    (sent from Python, so "back to back" leaves a little more time between execs than httpbench
    does). Back to back, each script is a series of its own (a write follows a write); paced,
    the two alternate, each followed by the pause, so that both see the same machine."""
    runs = {}
    for name in ("true", "write"):  # back to back: a series per script
        script = dict(EXEC_CASES)[name]
        runs[f"{name}_back_to_back"] = [timed_phases(api, sid, script) for _ in range(n)]
    paced = alternate_pair(api, sid, n, PACE_MS)
    runs.update({f"{name}_paced": v for name, v in paced.items()})
    return {key: {ph: round(statistics.median(r[ph] for r in rs), 3) for ph in rs[0]}
            for key, rs in runs.items()}


def alternate_pair(api, sid, n, pause_ms):
    """n rounds of `true` then the one-file write, each followed by the pause: every exec's
    timed_phases, per script."""
    runs = {"true": [], "write": []}
    for _ in range(n):
        for name in runs:
            runs[name].append(timed_phases(api, sid, dict(EXEC_CASES)[name]))
            time.sleep(pause_ms / 1000)
    return runs


def timed_phases(api, sid, script):
    """One exec's Server-Timing phases, plus "client": its wall time as this client saw it."""
    t0 = time.perf_counter()
    ph = api.exec_phases(sid, script)
    ph["client"] = (time.perf_counter() - t0) * 1000
    return ph


def grep_script(p):
    return f"grep -rE '{p}' corpus | wc -l"


def sc_grep(res):
    runs = q(7, 3)
    corpus = corpus_dir()
    tgz = tar_of_dir(corpus, os.path.join(CACHE, "corpus.tar.gz"))
    alt = "|".join(PATTERNS)
    nfiles = sum(len(f) for _, _, f in os.walk(corpus))
    nbytes = sum(os.path.getsize(os.path.join(r, x)) for r, _, fs in os.walk(corpus) for x in fs)
    out = {"files": nfiles, "bytes": nbytes, "patterns": PATTERNS, "runs": runs}
    s = Server().start()
    try:
        api = Api(s)
        sid = api.create()
        api.ingest(sid, tgz, "/home/user/corpus")
        api.exec(sid, "true")  # warm the checkout
        seq, par, one = [], [], []
        counts = None
        for _ in range(runs):
            t0 = time.perf_counter()
            r = api.batch(sid, [grep_script(p) for p in PATTERNS])
            seq.append(ms_since(t0))
            counts = [x["stdout"].strip() for x in r]
            t0 = time.perf_counter()
            a = api.exec(sid, grep_script(alt), readOnly=True)
            one.append(ms_since(t0))
        out["match_counts"] = counts
        out["alternation_count"] = a["stdout"].strip()
        # last: the read-only parallel batch (it can wedge the server, see BENCHMARKS.md)
        api.h.timeout = q(30, 10)
        api.h.close()
        api.h = None
        try:
            for _ in range(runs):
                t0 = time.perf_counter()
                r2 = api.batch(sid, [grep_script(p) for p in PATTERNS], read_only=True)
                par.append(ms_since(t0))
                assert [x["stdout"].strip() for x in r2] == counts, (r2, counts)
        except (OSError, http.client.HTTPException) as e:
            out["ro_parallel_error"] = (f"read-only batch did not answer within {q(30, 10)} s "
                                        f"({type(e).__name__}) after {len(par)} good runs")
    finally:
        s.cleanup()
    parent = os.path.dirname(corpus)
    nat_seq = time_local(["bash", "-c", "; ".join(grep_script(p) for p in PATTERNS)], runs,
                         cwd=parent)
    nat_par = time_local(["bash", "-c", " & ".join(grep_script(p) for p in PATTERNS) + "; wait"],
                         runs, cwd=parent)
    nat_one = time_local(["bash", "-c", grep_script(alt)], runs, cwd=parent)
    nat_count = subprocess.run(["bash", "-c", grep_script(alt)], cwd=parent, capture_output=True,
                               text=True).stdout.strip()
    jruns = q(3, 1)
    jb = justbash([{"name": "seq", "script": "; ".join(grep_script(p) for p in PATTERNS),
                    "n": jruns},
                   {"name": "one", "script": grep_script(alt), "n": jruns}],
                  corpus=corpus)
    out["sqlfs"] = {"seq_batch": stats(seq), "ro_parallel_batch": stats(par) if par else None,
                    "alternation": stats(one)}
    out["native"] = {"seq_batch": stats(nat_seq), "ro_parallel_batch": stats(nat_par),
                     "alternation": stats(nat_one), "alternation_count": nat_count}
    out["justbash"] = {"seq_batch": stats(jb["seq"]), "alternation": stats(jb["one"]),
                       "alternation_count": jb["one.stdout"].strip()}
    S, N, J = out["sqlfs"], out["native"], out["justbash"]
    out["ratios"] = {
        "seq_vs_native": ratio(S["seq_batch"]["p50_ms"], N["seq_batch"]["p50_ms"]),
        "ro_parallel_vs_native_parallel": ratio(S["ro_parallel_batch"]["p50_ms"],
                                                N["ro_parallel_batch"]["p50_ms"]) if par else None,
        "alternation_vs_native": ratio(S["alternation"]["p50_ms"], N["alternation"]["p50_ms"]),
        "justbash_alternation_over_sqlfs": ratio(J["alternation"]["p50_ms"],
                                                 S["alternation"]["p50_ms"]),
        "justbash_seq_over_sqlfs": ratio(J["seq_batch"]["p50_ms"], S["seq_batch"]["p50_ms"]),
        "ro_parallel_over_seq": ratio(S["ro_parallel_batch"]["p50_ms"], S["seq_batch"]["p50_ms"])
        if par else None,
    }
    res["grep"] = out


def sc_sse(res):
    size = q(100_000_000, 100_000_000)
    runs = q(3, 1)
    s = Server(env={"MAX_EXEC_OUTPUT_BYTES": str(1 << 30)}).start()
    out = {"bytes": size}
    try:
        api = Api(s)
        sid = api.create()
        script = f"yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c {size}"
        body = api.exec_body(script, timeoutMs=300000)
        walls, payloads, peaks = [], [], []
        for _ in range(runs):
            got = 0
            with RssSampler(s) as rss:
                t0 = time.perf_counter()
                with api.c.stream("POST", f"/v1/sandboxes/{sid}/exec", content=body,
                                  headers={"Content-Type": "application/json"}) as r:
                    assert r.status_code == 200, r.read()
                    buf = b""
                    exit_seen = False
                    for chunk in r.iter_raw():  # as received: a chunk size adds a copy
                        buf += chunk
                        frames = buf.split(b"\n\n")
                        buf = frames.pop()
                        for fr in frames:
                            if fr.startswith(b"event: stdout"):
                                line = fr.split(b"\ndata: ", 1)[1]
                                got += len(json.loads(line)["data"])
                            elif fr.startswith(b"event: exit"):
                                exit_seen = True
                    assert exit_seen
                walls.append(time.perf_counter() - t0)
            payloads.append(got)
            peaks.append(rss.peak_mib)
        best = sorted(walls)[len(walls) // 2]
        out.update({"wall_s": [round(w, 3) for w in walls], "payload_bytes": payloads,
                    "mb_s_median": round(size / best / 1e6, 1),
                    "peak_rss_mib": round(max(peaks), 1)})
        # the same stream read by curl (C) into /dev/null: tells the client's share apart
        cw = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(["curl", "-s", "-N", "-o", "/dev/null", "-H",
                            "Authorization: Bearer " + api.tok, "-H",
                            "Content-Type: application/json", "--data-binary", body,
                            f"{s.url}/v1/sandboxes/{sid}/exec"], check=True)
            cw.append(time.perf_counter() - t0)
        out["curl_wall_s"] = [round(w, 3) for w in cw]
        out["curl_mb_s_median"] = round(size / sorted(cw)[len(cw) // 2] / 1e6, 1)
        # native reference: the same pipeline into a pipe
        t0 = time.perf_counter()
        subprocess.run(["bash", "-c", script + " | cat > /dev/null"], check=True)
        out["native_mb_s"] = round(size / (time.perf_counter() - t0) / 1e6, 1)
    finally:
        s.cleanup()
    res["sse"] = out


def sc_concurrency(res):
    """A fresh server per (mode, clients) so that one wedged run (see BENCHMARKS.md) does not
    spoil the next."""
    out = {"distinct": {}, "one_ro": {}, "errors": 0, "hung_runs": []}
    # The machine's own ceiling, in the same run: `bash -c true` started by 16 parallel loops
    # with no server and no sandbox (dynamic and static bash), and bubblewrap's.
    n_native = q(800, 200)
    out["native_16"] = {
        "bash": spawn_rate(["/usr/bin/bash", "-c", "true"], 16, n_native),
        "bash_static": spawn_rate(["/usr/bin/bash-static", "-c", "true"], 16, n_native)
        if os.access("/usr/bin/bash-static", os.X_OK) else None,
        "bwrap": spawn_rate(bwrap_argv("true"), 16, n_native // 2),
    }
    for mode in ("distinct", "one_ro"):
        for c in (1, 4, 16, 64):
            n = max(q(300, 100), c * q(10, 4))
            s = Server().start()
            try:
                api = Api(s)
                ids = [api.create() for _ in range(c if mode == "distinct" else 1)]
                for sid in ids:
                    api.exec(sid, "true")
                cpu0 = s.cpu_seconds()
                r = httpbench(s, api.tok, "/v1/sandboxes/{id}/exec-sync", "POST",
                              body=api.exec_body("true", readOnly=(mode == "one_ro")), n=n,
                              concurrency=c, ids=ids, expect=200, timeout=q(30, 15))
                # CPU per exec (server + jails + bash): the figure least moved by other load
                r["cpu_ms_per_exec"] = round((s.cpu_seconds() - cpu0) * 1000 / n, 2)
                out[mode][str(c)] = r
                out["errors"] += r["errors"]
                if r.get("hung"):
                    out["hung_runs"].append(f"{mode} x{c}")
                out["rss_mib_after"] = round(s.rss_kib() / 1024, 1)
            finally:
                s.cleanup()
    d = out["distinct"]
    out["ratio_64_over_1"] = ratio(d["64"]["rps"], d["1"]["rps"])
    out["ratio_64_over_1_one_ro"] = ratio(out["one_ro"]["64"]["rps"], out["one_ro"]["1"]["rps"])
    res["concurrency"] = out


def du_bytes(path):
    total = 0
    for r, _, fs in os.walk(path):
        for f in fs:
            try:
                total += os.lstat(os.path.join(r, f)).st_blocks * 512
            except OSError:
                pass
    return total


def wal_bytes(data):
    return sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)
               if f.endswith("-wal"))


def wait_wal_truncated(data, timeout=15):
    """An idle server checkpoints a WAL larger than 4 MiB in full and truncates it (2 s after
    the last commit): waits for that. A smaller WAL stays; db_bytes leaves WALs out."""
    deadline = time.time() + timeout
    while wal_bytes(data) > 4 << 20 and time.time() < deadline:
        time.sleep(0.2)
    return wal_bytes(data)


def wait_idle(server, timeout=15):
    """An idle server (2 s without a commit) also gives its SQLite page caches back and returns
    the freed heap to the kernel: waits past that point, until the store's memory is steady."""
    time.sleep(2.5)
    deadline = time.time() + timeout
    last = store_memory(server)
    while time.time() < deadline:
        time.sleep(0.5)
        now = store_memory(server)
        if abs(now - last) < 64 << 10:
            return
        last = now


def store_memory(server):
    return server.status().get("memory", {}).get("storeBytes", 0)


def db_bytes(data):
    total = 0
    for r, _, fs in os.walk(data):
        if "checkouts" in r.split(os.sep):
            continue
        for f in fs:
            if (".db" in f or f.endswith(".sqlite")) and not f.endswith(("-wal", "-shm")):
                total += os.path.getsize(os.path.join(r, f))
    return total


def sc_scale(res):
    total = q(10000, 1000)
    s = Server().start()
    try:
        api = Api(s)
        # warm the allocator and statement caches, then take the baseline
        warm = [api.create() for _ in range(50)]
        for sid in warm:
            api.delete(sid)
        api.c.post(f"/v1/sandboxes/{api.create()}/exec-sync", json={"script": "true"})
        wait_wal_truncated(s.data_dir)
        wait_idle(s)
        rss0, db0, mem0 = s.rss_kib(), db_bytes(s.data_dir), store_memory(s)
        t0 = time.perf_counter()
        owners = 10
        for i in range(owners):
            t = s.token(f"owner-{i}")
            r = httpbench(s, t, "/v1/sandboxes", "POST", body="{}", n=total // owners,
                          concurrency=2, expect=201)
            assert r["errors"] == 0, r
        fill_s = time.perf_counter() - t0
        subprocess.run(["sync"])
        wal_peak = wal_bytes(s.data_dir)
        wal_idle = wait_wal_truncated(s.data_dir)
        wait_idle(s)
        rss1, db1, mem1 = s.rss_kib(), db_bytes(s.data_dir), store_memory(s)
        create = httpbench(s, api.tok, "/v1/sandboxes", "POST", body="{}", n=q(300, 100),
                           expect=201)
        lst = httpbench(s, s.token("owner-0"), "/v1/sandboxes", n=q(100, 30))
        get_ids = [api.create()]
        get = httpbench(s, api.tok, "/v1/sandboxes/{id}", n=q(300, 100), ids=get_ids)
        res["scale"] = {
            "idle_sandboxes": total, "fill_s": round(fill_s, 2),
            "rss_kib_before": rss0, "rss_kib_after": rss1,
            "rss_bytes_per_idle_sandbox": round((rss1 - rss0) * 1024 / total, 1),
            # the store's page caches (bounded: 16 MiB for the writer, 2 MiB per reader) grow
            # with the database; what else the server keeps per sandbox is the rest
            "store_memory_before": mem0, "store_memory_after": mem1,
            "rss_bytes_per_idle_sandbox_besides_store_cache":
                round(((rss1 - rss0) * 1024 - (mem1 - mem0)) / total, 1),
            "wal_bytes_after_burst": wal_peak, "wal_bytes_idle": wal_idle,
            "db_bytes_before": db0, "db_bytes_after": db1,
            "db_bytes_per_idle_sandbox": round((db1 - db0) / total, 1),
            "create_at_scale": create, "list_own_1000_at_scale": lst, "get_at_scale": get,
            "list_sandboxes_returned": total // owners,
        }
    finally:
        s.cleanup()


def sc_data(res):
    out = {}
    s = Server().start()
    try:
        api = Api(s)
        sid = api.create()
        size_mib = q(256, 64)
        path = os.path.join(CACHE, f"rand-{size_mib}mib.bin")
        if not os.path.exists(path):
            with open(path + ".tmp", "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(size_mib):
                    f.write(block)
            os.rename(path + ".tmp", path)
        with RssSampler(s) as pr:
            t_put, b = curl_transfer(s.url, api.tok, "PUT",
                                     f"/v1/sandboxes/{sid}/files/home/user/big.bin", path)
        with RssSampler(s) as gr:
            t_get, b2 = curl_transfer(s.url, api.tok, "GET",
                                      f"/v1/sandboxes/{sid}/files/home/user/big.bin")
        assert b == b2 == size_mib << 20
        out["file"] = {"mib": size_mib, "put_mb_s": round(b / t_put / 1e6, 1),
                       "get_mb_s": round(b2 / t_get / 1e6, 1),
                       "put_peak_rss_mib": round(pr.peak_mib, 1),
                       "get_peak_rss_mib": round(gr.peak_mib, 1)}
        api.c.delete(f"/v1/sandboxes/{sid}/files/home/user/big.bin")

        mb = q(500, 50)
        tgz = tree_tarball(mb)
        nfiles, raw = tarball_files(tgz)
        sid2 = api.create()
        with RssSampler(s) as ir:
            t0 = time.perf_counter()
            info = api.ingest(sid2, tgz, "/home/user/tree")
            t_in = time.perf_counter() - t0
        with RssSampler(s) as er:
            t_ex, exb = curl_transfer(s.url, api.tok, "GET",
                                      f"/v1/sandboxes/{sid2}/export?basePath=/home/user/tree")
        out["tree"] = {"target_mb": mb, "files": nfiles, "raw_bytes": raw,
                       "tgz_bytes": os.path.getsize(tgz), "ingest_s": round(t_in, 2),
                       "ingest_mb_s": round(raw / t_in / 1e6, 1),
                       "ingest_file_count": info.get("fileCount"),
                       "ingest_peak_rss_mib": round(ir.peak_mib, 1),
                       "export_s": round(t_ex, 2), "export_tgz_bytes": int(exb),
                       "export_mb_s": round(raw / t_ex / 1e6, 1),
                       "export_peak_rss_mib": round(er.peak_mib, 1)}
        api.delete(sid2)

        small = small_files_tar(10000, 1024, "small-10k-1k.tar")
        runs = []
        for _ in range(q(3, 1)):
            sid3 = api.create()
            t0 = time.perf_counter()
            info = api.ingest(sid3, small, "/home/user/small", ctype="application/x-tar")
            runs.append(time.perf_counter() - t0)
            assert info["fileCount"] >= 10000, info
            api.delete(sid3)
        out["small_files"] = {"files": 10000, "file_bytes": 1024,
                              "ingest_s": [round(x, 3) for x in runs],
                              "ingest_s_median": round(sorted(runs)[len(runs) // 2], 3)}
        out["rss_mib_after"] = round(s.rss_kib() / 1024, 1)
    finally:
        s.cleanup()
    res["data"] = out


def sc_cold(res):
    tar = small_files_tar(10000, 10240, "cold-10k-10k.tar")
    data = tempfile.mkdtemp(prefix="sqlfs-bench-cold-")
    s = Server(data_dir=os.path.join(data, "d")).start()
    out = {"files": 10000, "bytes": 10000 * 10240}
    try:
        api = Api(s)
        sid = api.create()
        api.ingest(sid, tar, "/home/user/tree", ctype="application/x-tar")
        api.exec(sid, "true")
        warm_before = []
        for _ in range(20):
            t0 = time.perf_counter()
            api.exec(sid, "true")
            warm_before.append(ms_since(t0))
        firsts, seconds = [], []
        for _ in range(q(3, 1)):
            s.stop()
            shutil.rmtree(os.path.join(s.data_dir, "checkouts"), ignore_errors=True)
            s.start()
            api = Api(s)
            t0 = time.perf_counter()
            r = api.exec(sid, "ls tree | wc -l")
            firsts.append(ms_since(t0))
            assert r["stdout"].strip() == "100", r
            later = []
            for _ in range(20):
                t0 = time.perf_counter()
                api.exec(sid, "true")
                later.append(ms_since(t0))
            seconds.append(summarize(later)["p50_ms"])
        out.update({"warm_before": stats(warm_before), "cold_first_exec": stats(firsts),
                    "warm_after_p50_ms": seconds})
    finally:
        s.cleanup()
        shutil.rmtree(data, ignore_errors=True)
    res["cold"] = out


SCENARIOS = [("lifecycle", sc_lifecycle), ("exec", sc_exec), ("grep", sc_grep), ("sse", sc_sse),
             ("concurrency", sc_concurrency), ("scale", sc_scale), ("data", sc_data),
             ("cold", sc_cold)]


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = f.readline().split()[1]
    jbv = json.load(open(os.path.join(BENCH, "node_modules", "just-bash", "package.json")))
    bwv = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "mem_gib": round(int(mem) / 1048576, 1), "node": subprocess.run(
                ["node", "--version"], capture_output=True, text=True).stdout.strip(),
            "just_bash": jbv.get("version"), "bwrap": bwv,
            "python": platform.python_version()}


def main():
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(RESULTS, NAME + ".json")
    res = {}
    if ONLY and os.path.exists(path):
        res = json.load(open(path))
    res["machine"] = machine()
    res["quick"] = QUICK
    res.setdefault("loadavg", {})
    res.setdefault("seconds", {})
    res.setdefault("errors", {})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if ONLY:
        res.setdefault("reruns", []).append({"at": now, "only": sorted(ONLY)})
    else:
        res["started"] = now
    t_all = time.perf_counter()
    for name, fn in SCENARIOS:
        if ONLY and name not in ONLY:
            continue
        print(f"== {name}", flush=True)
        res["loadavg"][name] = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            fn(res)
            res["errors"].pop(name, None)
        except Exception as e:  # keep the other scenarios' figures
            traceback.print_exc()
            res["errors"][name] = f"{type(e).__name__}: {e}"[:2000]
        res["seconds"][name] = round(time.perf_counter() - t0, 1)
        print(f"   {name}: {res['seconds'][name]} s", flush=True)
        os.makedirs(RESULTS, exist_ok=True)
        with open(path, "w") as f:
            json.dump(res, f, indent=2, sort_keys=True)
    elapsed = round(time.perf_counter() - t_all, 1)
    if not ONLY:
        res["total_s"] = elapsed
    with open(path, "w") as f:
        json.dump(res, f, indent=2, sort_keys=True)
    print(f"total {elapsed} s -> {path}")


if __name__ == "__main__":
    main()
