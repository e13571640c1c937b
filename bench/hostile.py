#!/usr/bin/env python3
"""Hostile clients (make bench-hostile): a table of attack classes against a real sqlfs server.

Each class runs against its own fresh server on loopback, bounded in connections and time, and
reports two things against the bounds documented in SECURITY.md ("HTTP"):
  - the server's peak RSS growth during the attack (VmHWM of /proc/<pid>/status, reset to the
    current RSS with clear_refs before the attack; sampled VmRSS when that reset is not allowed);
  - the class's own figure (e.g. /healthz p99 of another client) and its bound.
Prints one row per class, writes bench/results/hostile.json, exits 1 when a figure is over its
bound. `--only NAME` runs one class; `--markdown` prints the docs/BENCHMARKS.md section from the
saved results (bench/report.py includes it); SQLFS_BINARY=path measures another build (saved
with `--save hostile-before`, it is the "before the fixes" column).

To add a class: write `def attack_x(srv) -> Figure` and append an Attack to ATTACKS.
"""
import argparse
import json
import os
import resource
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import SECRET, RssSampler, Server, percentile, save  # noqa: E402

sys.path.insert(0, os.path.join(lib.ROOT, "tests", "integration"))
from conftest import proc_status_kib as status_kib  # noqa: E402
from conftest import read_all  # noqa: E402

lib.BINARY = os.environ.get("SQLFS_BINARY") or lib.BINARY  # e.g. to measure another build

MIB = 1 << 20
ATTACKER_IP = "127.0.0.2"  # the attacker's own loopback address; probes come from 127.0.0.1


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
    rss_bound_mib: float  # documented bound on the server's peak RSS growth
    run: object           # function(srv) -> Figure
    env: dict = field(default_factory=dict)  # server settings of this class


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


def read_response(sock, timeout=30):
    """Reads until the server closes; returns the status line (b"" when none came)."""
    return read_all(sock, timeout).split(b"\r\n", 1)[0]


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
            b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
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


ATTACKS = [
    Attack("bootstrap-body", "16 unauthenticated 16-64 MiB bodies to POST /v1/auth/bootstrap",
           8, attack_bootstrap_body),
    Attack("json-parse", "8 MiB of [0,0,...] to an authenticated JSON route, 4 at once",
           4 * ((2 + 16) * 8 + 2) + 16, attack_json_parse),
    Attack("slowloris", "2,100 half-sent requests from one address for 10 s", 32,
           attack_slowloris),
]


def run(attack):
    srv = Server(attack.env).start()
    try:
        time.sleep(0.5)
        with PeakRss(srv) as peak:
            srv.base_kib = peak.base
            fig = attack.run(srv)
        alive = srv.proc.poll() is None
        return {"name": attack.name, "what": attack.what, "figure": asdict(fig),
                "rss_growth_mib": round(peak.growth / 1024, 1),
                "rss_bound_mib": attack.rss_bound_mib,
                "rss_from": "VmHWM" if peak.hwm else "VmRSS sampled every 10 ms",
                "server_alive": alive,
                "ok": alive and fig.value <= fig.bound and
                peak.growth / 1024 <= attack.rss_bound_mib}
    finally:
        srv.cleanup()


def load(name):
    path = os.path.join(lib.RESULTS, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def markdown_section():
    """The "Hostile clients" section of docs/BENCHMARKS.md from bench/results/hostile.json, with
    the figures of a build before the fixes (hostile-before.json) beside them when present."""
    now = load("hostile")
    if not now:
        return "Not measured yet: `make bench-hostile`."
    before = {c["name"]: c for c in (load("hostile-before") or {}).get("classes", [])}
    lines = [f"`make bench-hostile` (`bench/hostile.py`), run {now['date']} on the machine above "
             f"(1-min load average {now.get('loadavg_1min', 0):.2f} at the start); "
             "each class against a fresh server with default settings, on loopback, the attacker "
             f"from {ATTACKER_IP}. Peak RSS growth is VmHWM over the RSS before the attack "
             "(/proc/PID/status); a bound in parentheses is the documented one (SECURITY.md). "
             "Machine-readable: `bench/results/hostile.json`"
             + ("; the last column is the same command against the build before these bounds "
                "existed (`bench/results/hostile-before.json`)." if before else "."), "",
             "| class | attack | peak RSS growth (bound) | figure | value (bound) |"
             + (" before the fixes: peak RSS growth; value |" if before else ""),
             "|---|---|---|---|---|" + ("---|" if before else "")]
    for c in now["classes"]:
        fig = c["figure"]
        row = (f"| {c['name']} | {c['what']} | {c['rss_growth_mib']:.1f} MiB "
               f"({c['rss_bound_mib']:.0f}) | {fig['what']} | {fig['value']:.2f} {fig['unit']} "
               f"({fig['bound']:g}) |")
        if before:
            b = before.get(c["name"])
            bf = b and b["figure"]
            row += (f" {b['rss_growth_mib']:.0f} MiB; {bf['value']:.2f} {bf['unit']} |"
                    if b else " |")
        lines.append(row)
    lines.append("")
    for c in now["classes"]:
        notes = "; ".join(f"{k}: {v}" for k, v in c["figure"]["notes"].items())
        lines.append(f"- {c['name']}: {notes}.")
        b = before.get(c["name"])
        if b:
            notes = "; ".join(f"{k}: {v}" for k, v in b["figure"]["notes"].items())
            lines.append(f"  Before the fixes: {notes}.")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="run one class: " + ", ".join(a.name for a in ATTACKS))
    ap.add_argument("--save", default="hostile", help="results name (bench/results/NAME.json)")
    ap.add_argument("--markdown", action="store_true",
                    help="print the docs/BENCHMARKS.md section from the saved results; no run")
    args = ap.parse_args()
    if args.markdown:
        print(markdown_section())
        return 0
    attacks = [a for a in ATTACKS if not args.only or a.name == args.only]
    if not attacks:
        ap.error(f"no class {args.only!r}")
    load_at_start = os.getloadavg()[0]
    rows = [run(a) for a in attacks]
    print(f"\n{'class':<16} {'peak RSS growth':>18} {'figure':>24}  ok")
    for r in rows:
        f = r["figure"]
        print(f"{r['name']:<16} {r['rss_growth_mib']:>7.1f} / {r['rss_bound_mib']:>5.0f} MiB "
              f"{f['value']:>10.2f} / {f['bound']:>6.2f} {f['unit']:<3}  "
              f"{'ok' if r['ok'] else 'OVER'}")
    for r in rows:
        print(f"\n{r['name']}: {r['what']}\n  figure: {r['figure']['what']}")
        for k, v in r["figure"]["notes"].items():
            print(f"  {k}: {v}")
    # a partial run (--only) replaces its classes in the saved results and keeps the others
    kept = {c["name"]: c for c in (load(args.save) or {}).get("classes", [])}
    kept.update({r["name"]: r for r in rows})
    save(args.save, {"date": time.strftime("%Y-%m-%d"),
                     "binary": os.path.relpath(lib.BINARY, lib.ROOT),
                     "loadavg_1min": load_at_start,
                     "classes": [kept[a.name] for a in ATTACKS if a.name in kept]})
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
