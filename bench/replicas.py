#!/usr/bin/env python3
"""Exec throughput with 1, 2 and 3 sqlfs replicas on one PostgreSQL database (make
bench-replicas).

One throw-away cluster (scripts/pg-test-cluster.sh), one database, three `sqlfs serve` processes
on it (same AUTH_SECRET, each its own data dir and port). A fixed number of clients (--clients,
default 12), each on a sandbox of its own, send exec-sync requests back to back: with N replicas
client k talks to replica k mod N (one build/bench/httpbench process per replica, all started
together). Two scripts: `true`, and a one-file write (`echo x > f`, a commit per exec). For each
round the three configurations take turns, so that a change in the machine's load touches them
alike; the table shows the median over rounds of the execs per second (all clients together:
requests / the slowest httpbench's wall time) and of the p50 latency (with several replicas,
their httpbench runs' p50s averaged, weighted by requests).

Every replica runs with EXEC_CONCURRENCY and EXEC_OWNER_CONCURRENCY equal to the number of
clients, so that one replica alone may run every client's exec at once too (the clients share
one owner): what changes between the configurations is the number of processes serving, not
the number of exec slots. The replicas not in a configuration stay up and idle.

Besides execs/s and latency, each row has the CPU time the replicas (with their jails) and the
database's processes spent per exec, the share of the machine's CPUs that was (both
together, over the run's wall time), and how busy the whole machine was (other work included:
on a shared machine, what is not ours is someone else's).

Run: make bench-replicas, or python3 bench/replicas.py [--clients 12] [--n 1200] [--rounds 5]
Writes bench/results/replicas.json and prints the table. `--markdown` prints the
docs/BENCHMARKS.md section ("Replicas, side by side") from the saved results, `--docs` writes it
into docs/BENCHMARKS.md in place (bench/report.py includes it too); neither runs anything.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import HTTPBENCH, RESULTS, ROOT, Server, save  # noqa: E402
from sqlfs_harness import PgCluster  # noqa: E402

SCRIPTS = {"true": "true", "write": "echo x > f"}
REPLICAS = (1, 2, 3)
SECTION = "## Replicas, side by side"


def host_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle, iowait
    return sum(v) - idle, sum(v)


def proc_cpu(pid, children=True):
    """CPU seconds of a process (and of its reaped children), user + system."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(cluster):
    """CPU seconds of the cluster's processes: the postmaster (with the backends it reaped) and
    its live children."""
    with open(os.path.join(cluster.dir, "data", "postmaster.pid")) as f:
        pm = int(f.readline())
    total = proc_cpu(pm)
    kids = subprocess.run(["pgrep", "-P", str(pm)], capture_output=True, text=True).stdout
    for k in kids.split():
        try:
            total += proc_cpu(int(k))
        except OSError:
            pass  # ended meanwhile: counted in the postmaster's children from now on
    return total


def run_httpbench(cluster, servers, token, ids, script, n):
    """Clients ids[k] on servers[k mod N], n requests in all; the combined figures, with the
    CPU the replicas and the database spent per exec and how busy the machine was."""
    nsrv = len(servers)
    procs, files = [], []
    body = json.dumps({"script": script})
    cpu0 = [s.cpu_seconds() for s in servers], postgres_cpu(cluster), host_cpu()
    try:
        for i, s in enumerate(servers):
            mine = ids[i::nsrv]
            f = tempfile.NamedTemporaryFile("w", delete=False, suffix=".ids")
            f.write("\n".join(mine) + "\n")
            f.close()
            files.append(f.name)
            per = n * len(mine) // len(ids)
            procs.append(subprocess.Popen(
                [HTTPBENCH, "--url", s.url, "--token", token, "--method", "POST",
                 "--path", "/v1/sandboxes/{id}/exec-sync", "--body", body,
                 "--content-type", "application/json", "--n", str(per),
                 "--concurrency", str(len(mine)), "--ids", f.name, "--expect", "200"],
                stdout=subprocess.PIPE, text=True))
        res = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    finally:
        for name in files:
            os.unlink(name)
    sqlfs_s = sum(s.cpu_seconds() for s in servers) - sum(cpu0[0])
    pg_s = postgres_cpu(cluster) - cpu0[1]
    busy, total_j = (a - b for a, b in zip(host_cpu(), cpu0[2]))
    total = sum(r["n"] for r in res)
    wall = max(r["wall_s"] for r in res)
    return {"n": total, "errors": sum(r["errors"] for r in res), "wall_s": round(wall, 3),
            "execs_s": round(total / wall, 1),
            # the replicas' p50s, weighted by how many requests each one answered
            "p50_ms": round(sum(r["p50_ms"] * r["n"] for r in res) / total, 2),
            "p99_ms": round(max(r["p99_ms"] for r in res), 2),
            "sqlfs_cpu_ms": round(1000 * sqlfs_s / total, 2),
            "pg_cpu_ms": round(1000 * pg_s / total, 2),
            "ours": round((sqlfs_s + pg_s) / (wall * os.cpu_count()), 3),
            "host_busy": round(busy / total_j, 3) if total_j else None}


def markdown_section():
    """The "Replicas, side by side" section of docs/BENCHMARKS.md, from
    bench/results/replicas.json."""
    try:
        with open(os.path.join(RESULTS, "replicas.json")) as f:
            r = json.load(f)
    except OSError:
        return "Not measured yet: `make bench-replicas`.\n"
    p, med, nproc = r["params"], r["median"], r["nproc"]

    def cpu(m):
        return m["sqlfs_cpu_ms"] + m["pg_cpu_ms"]

    caps = {name: " / ".join(f"{nproc * 1000 / cpu(med[f'{n}/{name}']):.0f}" for n in REPLICAS)
            for name in SCRIPTS}
    lines = [
        f"`make bench-replicas` (`bench/replicas.py`, the server of commit {r.get('commit')}), "
        f"{r['started']}, 1-min load average "
        f"{r['loadavg_1min']:.2f} at the start: 1, 2 and 3 replicas on one PostgreSQL 15 "
        "database (a throw-away cluster from `scripts/pg-test-cluster.sh`: unix socket, fsync "
        f"off), all on this machine's {nproc} CPUs with the database and the load generator. "
        f"{p['clients']} clients, each on a sandbox of its own, send exec-sync back to back "
        "(httpbench; with N replicas client k talks to replica k mod N); every replica runs "
        f"with `EXEC_CONCURRENCY` and `EXEC_OWNER_CONCURRENCY` = {p['exec_concurrency']}, so "
        "one replica alone can run every client's exec at once too. Median of "
        f"{p['rounds']} rounds of {p['n']} execs per row, the configurations taking turns "
        "within each round. *CPU per exec* is the CPU time of the replicas (with their jails) "
        "and of the database's processes over the execs run; *CPUs used* is both together over "
        "the run's wall time and all the CPUs; *machine busy* counts every process on the "
        "machine, other people's work included; *capacity* is what the CPU per exec allows "
        f"with all {nproc} CPUs to the replicas and the database ({nproc} × 1000 ms / CPU per "
        "exec; the load generator's own CPU left out).", "",
        "| replicas | script | execs/s | p50 | CPU per exec: sqlfs + PostgreSQL | CPUs used "
        "| machine busy | capacity, execs/s |",
        "|---|---|---|---|---|---|---|---|"]
    for name, script in SCRIPTS.items():
        for n in REPLICAS:
            m = med[f"{n}/{name}"]
            lines.append(
                f"| {n} | `{script}` | {m['execs_s']:.0f} | {m['p50_ms']:.1f} ms | "
                f"{m['sqlfs_cpu_ms']:.2f} + {m['pg_cpu_ms']:.2f} ms | {100 * m['ours']:.0f} % "
                f"| {100 * m['host_busy']:.0f} % | {nproc * 1000 / cpu(m):.0f} |")
    errors = sum(m["errors"] for m in med.values())
    t1, w1 = med["1/true"], med["1/write"]
    lines += [
        "",
        f"Every exec answered 200 ({errors} errors). What an exec costs does not depend on "
        "the number of replicas: the CPU per exec, and so the capacity, is "
        f"{caps['true']} execs/s of `true` and {caps['write']} of the one-file write with "
        "1 / 2 / 3 replicas, as expected when the replicas, the database and the load "
        f"generator share the same {nproc} CPUs: more processes only divide them differently. "
        "The measured execs/s ("
        f"`true` × {med['3/true']['execs_s'] / t1['execs_s']:.2f}, the write × "
        f"{med['3/write']['execs_s'] / w1['execs_s']:.2f} from 1 to 3 replicas) follow the "
        "*CPUs used* column instead: how much of this shared machine the run got, never all "
        "of it (the machine was busy all the time; the load average was "
        f"{r['loadavg_1min']:.1f} at the start and {r.get('loadavg_1min_end', 0):.1f} at the "
        "end). Whether a single replica, on a machine of its own, would also stop short of "
        "the CPUs at this rate (its jails share the server's address space) these runs cannot "
        "tell; the per-round figures are in `bench/results/replicas.json`.",
        "",
        "What replicas buy is CPUs: on separate hosts each replica brings its own, and the "
        "shared database is what they then compete for. With one replica the database spent "
        f"{t1['pg_cpu_ms']:.2f} ms of CPU per `true` (no commit) and {w1['pg_cpu_ms']:.2f} ms "
        f"per one-file write (its commit), against {t1['sqlfs_cpu_ms']:.2f} and "
        f"{w1['sqlfs_cpu_ms']:.2f} ms in the replica: one database CPU keeps up with about "
        f"{1000 / w1['pg_cpu_ms']:.0f} writing execs a second, the work of about "
        f"{w1['sqlfs_cpu_ms'] / w1['pg_cpu_ms']:.0f} replica CPUs (fsync off: a durable "
        "database adds a WAL flush per commit, disk time rather than CPU).",
    ]
    return "\n".join(lines) + "\n"


def write_docs():
    """Replaces the section in docs/BENCHMARKS.md (or adds it before "## Jail changes")."""
    path = os.path.join(ROOT, "docs", "BENCHMARKS.md")
    with open(path) as f:
        text = f.read()
    body = f"{SECTION}\n\n{markdown_section()}\n"
    m = re.search(re.escape(SECTION) + r"\n.*?(?=^## )", text, re.S | re.M)
    if m:
        text = text[:m.start()] + body + text[m.end():]
    else:
        at = text.index("## Jail changes, side by side")
        text = text[:at] + body + text[at:]
    with open(path, "w") as f:
        f.write(text)
    print("wrote docs/BENCHMARKS.md")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--n", type=int, default=1200, help="requests per measurement")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--markdown", action="store_true",
                    help="print the docs/BENCHMARKS.md section from the saved results; no run")
    ap.add_argument("--docs", action="store_true",
                    help="write that section into docs/BENCHMARKS.md; no run")
    a = ap.parse_args()
    if a.markdown or a.docs:
        if a.docs:
            write_docs()
        else:
            print(markdown_section())
        return
    if not os.path.exists(HTTPBENCH):
        sys.exit(f"{HTTPBENCH} is missing: make bench-tools")

    load_at_start = os.getloadavg()[0]
    cluster = PgCluster().start()
    servers = []
    try:
        db = cluster.new_database()
        conc = str(a.clients)
        for _ in range(max(REPLICAS)):
            servers.append(Server({"EXEC_CONCURRENCY": conc, "EXEC_OWNER_CONCURRENCY": conc,
                                   "AUTH_SUCCESS_RATE_LIMIT_MAX": "0"},
                                  database_url=db).start())
        token = servers[0].token()
        with servers[0].client() as c:
            ids = [c.post("/v1/sandboxes", json={}).json()["id"] for _ in range(a.clients)]
        runs = {f"{nrep}/{name}": [] for nrep in REPLICAS for name in SCRIPTS}
        for rnd in range(a.rounds):
            for nrep in REPLICAS:
                # each sandbox's first exec on its replica builds or refreshes its checkout
                run_httpbench(cluster, servers[:nrep], token, ids, "true", a.clients)
                for name, script in SCRIPTS.items():
                    r = run_httpbench(cluster, servers[:nrep], token, ids, script, a.n)
                    runs[f"{nrep}/{name}"].append(r)
                    print(f"round {rnd + 1}: {nrep} replica(s), {name:5}: {r['execs_s']:7.1f} "
                          f"execs/s, p50 {r['p50_ms']} ms, CPU per exec {r['sqlfs_cpu_ms']} ms "
                          f"sqlfs + {r['pg_cpu_ms']} ms PostgreSQL, "
                          f"{100 * r['ours']:.0f} % of the CPUs, machine "
                          f"{100 * r['host_busy']:.0f} % busy, errors {r['errors']}", flush=True)
    finally:
        for s in servers:
            s.cleanup()
        cluster.stop()

    med = {}
    for key, rs in runs.items():
        med[key] = {k: round(statistics.median(r[k] for r in rs), 3)
                    for k in ("execs_s", "p50_ms", "sqlfs_cpu_ms", "pg_cpu_ms", "ours",
                              "host_busy")}
        med[key]["errors"] = sum(r["errors"] for r in rs)
    out = {"params": {"clients": a.clients, "n": a.n, "rounds": a.rounds,
                      "exec_concurrency": int(conc)},
           "started": time.strftime("%Y-%m-%d %H:%M", time.localtime()),
           "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip() or None,
           "loadavg_1min": round(load_at_start, 2),
           "loadavg_1min_end": round(os.getloadavg()[0], 2), "nproc": os.cpu_count(),
           "median": med, "runs": runs}
    save("replicas", out)
    print(f"\n{a.clients} clients, {a.n} execs per measurement, median of {a.rounds} rounds "
          f"(load average {load_at_start:.2f} at the start, {os.cpu_count()} CPUs)\n")
    print("| replicas | script | execs/s | p50 ms | CPU per exec, sqlfs + PostgreSQL | "
          "CPUs used by both | machine busy | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name in SCRIPTS:
        for nrep in REPLICAS:
            m = med[f"{nrep}/{name}"]
            print(f"| {nrep} | `{SCRIPTS[name]}` | {m['execs_s']:.0f} | {m['p50_ms']:.1f} | "
                  f"{m['sqlfs_cpu_ms']:.2f} + {m['pg_cpu_ms']:.2f} ms | "
                  f"{100 * m['ours']:.0f} % | {100 * m['host_busy']:.0f} % | {m['errors']} |")


if __name__ == "__main__":
    main()
