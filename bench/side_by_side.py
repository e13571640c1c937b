"""`make bench-quick`'s scenarios for two server binaries, side by side in one run.

    /usr/bin/python3 bench/side_by_side.py OLD_BINARY NEW_BINARY [--only exec,grep,...]

Each scenario of bench/suite.py --quick runs four times in a row, in the order old, new, new,
old, so that a machine whose load drifts during the run weighs on both binaries alike. Results
go to bench/results/side-old-{1,2}.json and side-new-{1,2}.json; the table printed compares,
for every figure of sqlfs (not of the tools it is compared with), the mean of the old binary's
two runs with the new one's: new/old, so that for a latency > 1 is worse and for a rate or
throughput < 1 is worse.
"""
import json
import os
import subprocess
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(BENCH, "results")
SCENARIOS = ["lifecycle", "exec", "grep", "sse", "concurrency", "scale", "data", "cold"]
# figures of the tools sqlfs is compared with, and bookkeeping: not compared
SKIP = ("bwrap", "justbash", "native", "loadavg", "seconds", "machine", "errors", "runs", ".n",
        "bytes", "files", "count", "target_mb", "pause_ms", "reruns", "quick", "_returned")
FIGURES = ("p50_ms", "p99_ms", "_mb_s", "mb_s_median", "rps", "cpu_ms_per_exec", "peak_rss_mib",
           "extra_ms", "rss_bytes_per_idle_sandbox", "db_bytes_per_idle_sandbox", "ingest_s")


def flatten(o, prefix=""):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(o, (int, float)) and not isinstance(o, bool):
        yield prefix, float(o)


def wanted(key):
    return any(key.endswith(f) or f in key.rsplit(".", 1)[-1] for f in FIGURES) and \
        not any(s in key for s in SKIP)


def run(binary, name, scenario):
    env = dict(os.environ, SQLFS_BINARY=os.path.abspath(binary))
    r = subprocess.run([sys.executable, os.path.join(BENCH, "suite.py"), "--quick", "--only",
                        scenario, "--name", name], env=env)
    if r.returncode != 0:
        raise SystemExit(f"suite.py failed for {binary} ({scenario})")


def load(name):
    with open(os.path.join(RESULTS, name + ".json")) as f:
        return dict(flatten(json.load(f)))


def main():
    args = sys.argv[1:]
    only = SCENARIOS
    if "--only" in args:
        i = args.index("--only")
        only = args[i + 1].split(",")
        del args[i:i + 2]
    if len(args) != 2:
        raise SystemExit(__doc__)
    old, new = args
    for n in ("side-old-1", "side-old-2", "side-new-1", "side-new-2"):
        path = os.path.join(RESULTS, n + ".json")
        if os.path.exists(path):
            os.unlink(path)
    for sc in only:
        run(old, "side-old-1", sc)
        run(new, "side-new-1", sc)
        run(new, "side-new-2", sc)
        run(old, "side-old-2", sc)
    o1, o2, n1, n2 = (load(n) for n in ("side-old-1", "side-old-2", "side-new-1", "side-new-2"))
    print(f"{'figure':58} {'old':>10} {'new':>10} {'new/old':>8}")
    for key in sorted(o1):
        if not wanted(key) or key not in o2 or key not in n1 or key not in n2:
            continue
        a, b = (o1[key] + o2[key]) / 2, (n1[key] + n2[key]) / 2
        ratio = b / a if a else float("nan")
        print(f"{key:58} {a:10.3f} {b:10.3f} {ratio:8.3f}")


if __name__ == "__main__":
    main()
