"""Side-by-side exec cost of two server binaries (e.g. before/after a change), interleaved.

    /usr/bin/python3 bench/compare_exec.py OLD_BINARY NEW_BINARY [--clients 16] [--n 300]
        [--rounds 2] [--script true]
    /usr/bin/python3 bench/compare_exec.py OLD_BINARY NEW_BINARY --write-pair [--pause-ms 50]
        [--interleaved] [--n 200] [--rounds 3]
    /usr/bin/python3 bench/compare_exec.py OLD_BINARY NEW_BINARY --same-window [--batches 20]
        [--n 40] [--pause-ms 0] [--rounds 3]

--write-pair: one sandbox, N execs of `true` then N of `echo hello > w.txt` (as the suite's
exec scenario), each series p50, and the write's extra over the no-op; with --pause-ms a pause
after every response (an agent reading each answer). With --interleaved the two scripts
alternate (each followed by the pause) from a Python client, so that both see the same machine:
medians of the client's wall time and of the server's Server-Timing phase sum.

--same-window: both servers run at once and take turns, --batches times per round (the order
flipping every batch), each turn N pairs of `true` then the one-file write from a Python client:
the two binaries see the same minutes of a shared machine's load. Per binary the medians of
the client's wall time, the write's extra, and new/old ratios; one JSON line per round.

For each round and binary: a fresh server, one sandbox per client, N `exec-sync` requests of the
script through bench/httpbench (make bench-tools), then execs/s, p50/p99 latency and the CPU time
per exec of the server and its reaped children (jail setup, init, bash) — the last figure is the
one least moved by other load on a shared machine. Prints one JSON line per run.
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from suite import Api, alternate_pair  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--script", default="true")
    ap.add_argument("--write-pair", action="store_true")
    ap.add_argument("--pause-ms", type=int, default=0)
    ap.add_argument("--interleaved", action="store_true")
    ap.add_argument("--same-window", action="store_true")
    ap.add_argument("--batches", type=int, default=20)
    a = ap.parse_args()
    if a.same_window:
        same_window(a)
    else:
        interleaved(a, write_pair if a.write_pair else throughput)


def interleaved(a, measure):
    """Per round, a fresh server of each binary in turn; measure(a, server, api) gives the
    figures printed as one JSON line."""
    for rnd in range(a.rounds):
        for name, binary in (("old", a.old), ("new", a.new)):
            s = lib.Server(binary=os.path.abspath(binary)).start()
            try:
                fig = measure(a, s, Api(s))
                print(json.dumps({"round": rnd, "binary": name, **fig,
                                  "loadavg": round(os.getloadavg()[0], 1)}), flush=True)
            finally:
                s.cleanup()


def same_window(a):
    for rnd in range(a.rounds):
        up = {}
        try:
            for name, binary in (("old", a.old), ("new", a.new)):
                s = lib.Server(binary=os.path.abspath(binary)).start()
                api = Api(s)
                up[name] = (s, api, api.create())
                alternate_pair(api, up[name][2], 20, 0)  # warm up
            runs = {name: {"true": [], "write": []} for name in up}
            for b in range(a.batches):
                for name in (("old", "new") if b % 2 == 0 else ("new", "old")):
                    _, api, sid = up[name]
                    for case, rs in alternate_pair(api, sid, a.n, a.pause_ms).items():
                        runs[name][case] += [r["client"] for r in rs]
        finally:
            for s, _, _ in up.values():
                s.cleanup()
        fig = {}
        for name, rs in runs.items():
            t, w = statistics.median(rs["true"]), statistics.median(rs["write"])
            fig[name] = {"true_ms": round(t, 3), "write_ms": round(w, 3),
                         "write_extra_ms": round(w - t, 3), "n": len(rs["true"])}
        print(json.dumps({"round": rnd, "pause_ms": a.pause_ms, **fig,
                          "true_ratio": round(fig["new"]["true_ms"] / fig["old"]["true_ms"], 3),
                          "write_ratio": round(fig["new"]["write_ms"] / fig["old"]["write_ms"], 3),
                          "loadavg": round(os.getloadavg()[0], 1)}), flush=True)


def throughput(a, s, api):
    ids = [api.create() for _ in range(a.clients)]
    for sid in ids:
        api.exec(sid, a.script)
    cpu0 = s.cpu_seconds()
    r = lib.httpbench(s, api.tok, "/v1/sandboxes/{id}/exec-sync", "POST",
                      body=api.exec_body(a.script), n=a.n, concurrency=a.clients,
                      ids=ids, expect=200, timeout=120)
    cpu = (s.cpu_seconds() - cpu0) * 1000 / a.n
    return {"rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "errors": r["errors"], "cpu_ms_per_exec": round(cpu, 2)}


def write_pair(a, s, api):
    sid = api.create()
    api.exec(sid, "echo hello > w.txt")
    if a.interleaved:
        return write_pair_interleaved(a, api, sid)
    p50 = {}
    for case, script in (("true", "true"), ("write", "echo hello > w.txt")):
        r = lib.httpbench(s, api.tok, "/v1/sandboxes/{id}/exec-sync", "POST",
                          body=api.exec_body(script), n=a.n, ids=[sid], expect=200,
                          pause_ms=a.pause_ms, timeout=300)
        p50[case] = r["p50_ms"]
    return {"pause_ms": a.pause_ms, "true_p50_ms": p50["true"], "write_p50_ms": p50["write"],
            "write_extra_ms": round(p50["write"] - p50["true"], 3)}


def write_pair_interleaved(a, api, sid):
    runs = alternate_pair(api, sid, a.n, a.pause_ms)
    med = {case: {"client": statistics.median(r["client"] for r in rs),
                  "server": statistics.median(sum(v for k, v in r.items() if k != "client")
                                              for r in rs)} for case, rs in runs.items()}
    return {"pause_ms": a.pause_ms, "interleaved": True,
            "true_client_ms": round(med["true"]["client"], 3),
            "write_client_ms": round(med["write"]["client"], 3),
            "write_extra_client_ms": round(med["write"]["client"] - med["true"]["client"], 3),
            "write_extra_server_ms": round(med["write"]["server"] - med["true"]["server"], 3)}


if __name__ == "__main__":
    main()
