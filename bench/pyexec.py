"""py-exec benchmark: the wall time of POST /v1/sandboxes/{id}/exec (read to its `exit` event) for
a warm `py-exec` against an empty exec (`true`), cold `python3` and `node`, side by side in one
run on one server (SQLite unless SQLFS_TEST_DATABASE says otherwise) and one sandbox with
`python` and `javascript` on. The variants take turns: each round runs every variant's block of
execs, in the opposite order every other round, so that all of them see the same minutes of a
shared machine. Per variant p50/p90 over all rounds; the extra of each over `true` both from those
p50s and as the median of the per-round p50 differences.

Memory: the zygote's RSS (GET /v1/status `exec.pyExec.rssBytes`, when the server reports it) and
what one call costs, read by a trivial program at its end from /proc/self/smaps_rollup in the jail
(Rss, Pss, and Private = Private_Clean + Private_Dirty, the pages not shared with anything), for a
warm py-exec child and for a cold python3. A py-exec run whose parent pid is 0 ran warm (its
parent, the zygote, is outside the jail's pid namespace).

Figures printed and written to bench/results/pyexec.json (pyexec-quick.json with --quick). Any
exec that fails (not 200, an error event, a non-zero exit) ends the run with status 1.

    make bench-pyexec                  # or: /usr/bin/python3 bench/pyexec.py [--quick]
"""
import argparse
import ast
import os
import statistics
import sys
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Server, percentile, save  # noqa: E402
from suite import Api  # noqa: E402

IMPORTS = "import json, re, os, pathlib"
VARIANTS = [  # (name, script); "true" is the baseline every extra is measured from
    ("true", "true"),
    ("py-exec pass", "py-exec -c pass"),
    ("py-exec import", f"py-exec -c '{IMPORTS}'"),
    ("python3 pass", "python3 -c pass"),
    ("python3 import", f"python3 -c '{IMPORTS}'"),
    ("js-exec 0", "js-exec -c 0"),
    ("node 0", "node -e 0"),
]
# The extras reported against the target (a warm call costs at most this over an empty exec).
TARGET_MS = 5.0
WARM = ("py-exec pass", "py-exec import")
# A trivial program's own memory at its end, with its parent pid (0: forked by the zygote).
PROBE = ("import os; m = {l.split()[0][:-1]: int(l.split()[1]) for l in "
         "open(\"/proc/self/smaps_rollup\") if l.endswith(\" kB\\n\")}; "
         "m[\"ppid\"] = os.getppid(); print(m)")
MEM_RUNS = 5
READY_WAIT_S = 60  # for the zygote to start before the first round


class ExecFailed(RuntimeError):
    pass


def run(api, sid, script):
    """One exec: (wall ms, its events); raises ExecFailed when it did not succeed."""
    t0 = time.perf_counter()
    try:
        res = api.exec_stream(sid, script)
    except (RuntimeError, OSError) as e:
        raise ExecFailed(str(e)) from e
    ms = (time.perf_counter() - t0) * 1000
    ex = res["exit"]
    if res["error"] or ex.get("exitCode") != 0 or ex.get("timedOut") or ex.get("exitSignal"):
        raise ExecFailed(f"{script!r}: exit {ex}, error {res['error']}, "
                         f"stderr {res['stderr'][-500:]!r}")
    return ms, res


def py_exec_state(server):
    """GET /readyz's pyExec object, or None when the server does not report one."""
    try:
        return httpx.get(server.url + "/readyz", timeout=10).json().get("pyExec")
    except (httpx.HTTPError, ValueError):
        return None


def wait_ready(server):
    deadline = time.monotonic() + READY_WAIT_S
    while True:
        st = py_exec_state(server)
        if not st or st.get("state") != "starting" or time.monotonic() > deadline:
            return st
        time.sleep(0.1)


def memory(api, sid, cmd):
    """The probe's smaps_rollup figures (kB), median of MEM_RUNS runs of `cmd -c PROBE`, and
    whether every run's parent pid was 0."""
    runs = []
    for _ in range(MEM_RUNS):
        _, res = run(api, sid, f"{cmd} -c '{PROBE}'")
        runs.append(ast.literal_eval(res["stdout"].strip()))
    med = {k: statistics.median(r.get(k, 0) for r in runs)
           for k in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean",
                     "Shared_Dirty")}
    med["Private"] = statistics.median(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
                                       for r in runs)
    return {"kB": med, "runs": runs, "ppid_zero": all(r["ppid"] == 0 for r in runs)}


def stats(values):
    return {"n": len(values), "p50_ms": round(percentile(values, 0.5), 2),
            "p90_ms": round(percentile(values, 0.9), 2),
            "mean_ms": round(statistics.mean(values), 2), "min_ms": round(min(values), 2)}


def measure(a):
    server = Server().start()
    try:
        api = Api(server)
        st, j = api.req("POST", "/v1/sandboxes", {"python": True, "javascript": True})
        if st != 201:
            raise ExecFailed(f"POST /v1/sandboxes: {st} {j}")
        sid = j["id"]
        ready = wait_ready(server)
        fallback = set()  # variants whose py-exec said it ran cold (a `py-exec: ` line)
        for name, script in VARIANTS:  # warm-up, not counted: checkout, page cache, zygote
            for _ in range(3):
                run(api, sid, script)
        times = {name: [] for name, _ in VARIANTS}
        per_round = []
        t_start = time.monotonic()
        for rnd in range(a.rounds):
            order = VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]
            p50s = {}
            for name, script in order:
                block = []
                for _ in range(a.n):
                    ms, res = run(api, sid, script)
                    block.append(ms)
                    if script.startswith("py-exec") and "py-exec: " in res["stderr"]:
                        fallback.add(name)
                times[name] += block
                p50s[name] = percentile(block, 0.5)
            per_round.append({k: round(v, 2) for k, v in p50s.items()})
            print(f"round {rnd + 1}/{a.rounds}: " + ", ".join(
                f"{n} {p50s[n]:.1f}" for n, _ in VARIANTS) + " ms (p50)", flush=True)
        timing_s = time.monotonic() - t_start
        mem = {"py-exec": memory(api, sid, "py-exec"), "python3": memory(api, sid, "python3")}
        status = server.status()["exec"].get("pyExec")
        ready_after = py_exec_state(server)
    finally:
        server.cleanup()
    return times, per_round, mem, status, ready, ready_after, fallback, timing_s


def main():
    ap = argparse.ArgumentParser(description="warm py-exec against true, cold python3 and node")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 10 execs per variant")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--n", type=int, help="execs per variant per round")
    a = ap.parse_args()
    a.rounds = a.rounds or (2 if a.quick else 5)
    a.n = a.n or (10 if a.quick else 30)
    try:
        times, per_round, mem, status, ready, ready_after, fallback, timing_s = measure(a)
    except ExecFailed as e:
        print(f"bench-pyexec: an exec failed: {e}", file=sys.stderr)
        sys.exit(1)

    res = {name: stats(v) for name, v in times.items()}
    base = res["true"]["p50_ms"]
    extra = {}
    for name, _ in VARIANTS[1:]:
        rounds = [r[name] - r["true"] for r in per_round]
        extra[name] = {"p50_minus_true_ms": round(res[name]["p50_ms"] - base, 2),
                       "per_round_median_ms": round(statistics.median(rounds), 2),
                       "per_round_ms": [round(x, 2) for x in rounds]}
    warm = mem["py-exec"]["ppid_zero"]
    rss = (status or {}).get("rssBytes")
    result = {
        "rounds": a.rounds, "execs_per_round": a.n, "quick": a.quick,
        "endpoint": "POST /v1/sandboxes/{id}/exec (SSE, read to the exit event)",
        "scripts": dict(VARIANTS),
        "latency": res,
        "extra_over_true": extra,
        "target_ms": TARGET_MS,
        "target_met": {n: extra[n]["p50_minus_true_ms"] <= TARGET_MS for n in WARM},
        "per_round_p50_ms": per_round,
        "samples_ms": {n: [round(x, 2) for x in v] for n, v in times.items()},
        "py_exec_warm": warm,
        "py_exec_cold_fallback_line": sorted(fallback),
        "readyz_py_exec": {"before": ready, "after": ready_after},
        "status_py_exec": status,
        "zygote_rss_bytes": rss,
        "memory_per_call_kB": {k: v["kB"] for k, v in mem.items()},
        "memory_runs": {k: v["runs"] for k, v in mem.items()},
        "timed_section_s": round(timing_s, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    save("pyexec-quick" if a.quick else "pyexec", result)
    report(result, a)


def report(r, a):
    lat, extra = r["latency"], r["extra_over_true"]
    print(f"\nPOST /exec wall time, {a.rounds} rounds x {a.n} execs per variant, interleaved "
          f"(ms; extra = p50 - p50(true); per-round = median of the rounds' p50 differences)")
    print(f"{'variant':<16} {'script':<42} {'p50':>7} {'p90':>7} {'extra':>7} {'per-round':>9}")
    for name, script in VARIANTS:
        e = extra.get(name)
        print(f"{name:<16} {script:<42} {lat[name]['p50_ms']:>7.1f} {lat[name]['p90_ms']:>7.1f} "
              + (f"{e['p50_minus_true_ms']:>7.1f} {e['per_round_median_ms']:>9.1f}" if e else
                 f"{'-':>7} {'-':>9}"))
    how = "warm (forked by the zygote)" if r["py_exec_warm"] else "cold (python3)"
    print(f"\npy-exec ran {how}"
          + (f"; said it ran cold in: {', '.join(r['py_exec_cold_fallback_line'])}"
             if r["py_exec_cold_fallback_line"] else ""))
    for n in WARM:
        print(f"  {n}: {extra[n]['p50_minus_true_ms']:.1f} ms over true (target <= "
              f"{TARGET_MS:g} ms: {'met' if r['target_met'][n] else 'not met'})")
    print(f"  cold for comparison: python3 pass +{extra['python3 pass']['p50_minus_true_ms']:.1f}"
          f", python3 import +{extra['python3 import']['p50_minus_true_ms']:.1f}"
          f", node +{extra['node 0']['p50_minus_true_ms']:.1f}"
          f", js-exec +{extra['js-exec 0']['p50_minus_true_ms']:.1f} ms")
    rss = r["zygote_rss_bytes"]
    print("\nzygote RSS: " + (f"{rss / 2**20:.1f} MiB" if rss is not None else
                              "not reported (no exec.pyExec.rssBytes in GET /v1/status)"))
    print(f"one call's memory at its end (smaps_rollup, median of {MEM_RUNS}; kB):")
    print(f"{'':<10} {'Rss':>8} {'Pss':>8} {'Private':>8}")
    for k, m in r["memory_per_call_kB"].items():
        print(f"{k:<10} {m['Rss']:>8.0f} {m['Pss']:>8.0f} {m['Private']:>8.0f}")
    print(f"\ntimed section {r['timed_section_s']} s, loadavg {r['loadavg']}; "
          f"bench/results/{'pyexec-quick' if a.quick else 'pyexec'}.json")


if __name__ == "__main__":
    main()
