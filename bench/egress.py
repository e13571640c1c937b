"""Egress benchmark: a 100 MB download through sqlfs's egress proxy from inside a sandbox
against the same download on the host without jail or proxy, side by side in one run
(alternating, median of each), and the cost of a new proxied connection (a small request
through the proxy in the jail against the same request from the host). The host is a local
HTTP server that sends the file with sendfile, reached by a name pinned with EGRESS_RESOLVE.
Figures printed and written to bench/results/egress.json.

    make bench-egress
"""
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Server, save  # noqa: E402

from egress_upstreams import Upstreams  # noqa: E402

BLOB = 100 * 1000 * 1000
ROUNDS = 15
SMALL = 60
EXTRA_ENV = dict(e.split("=", 1) for e in os.environ.get("BENCH_EGRESS_ENV", "").split() if e)


def curl_host(url, n=1):
    """time_total (s) of n requests by curl on the host, no proxy."""
    fmt = "%{time_total}\\n"
    out = subprocess.run(["curl", "-s", "--noproxy", "*", "-w", fmt] +
                         ["-o", "/dev/null", url] * n,
                         capture_output=True, text=True, check=True).stdout
    return [float(x) for x in out.split()]


def curl_jail(api, sid, url, n=1):
    """time_total (s) of n requests by curl in the sandbox, through its proxy."""
    urls = " ".join([f"-o /dev/null {url}"] * n)
    r = api.post(f"/v1/sandboxes/{sid}/exec-sync",
                 json={"script": f"curl -s -w '%{{time_total}}\\n' {urls}",
                       "timeoutMs": 120000}, timeout=180)
    r.raise_for_status()
    res = r.json()
    assert res["exitCode"] == 0, res
    return [float(x) for x in res["stdout"].split()]


def main():
    up = Upstreams(blob_bytes=BLOB).start()
    server = Server({"EGRESS_RESOLVE": up.resolve_setting(), **EXTRA_ENV}).start()
    try:
        with server.client() as api:
            r = api.post("/v1/sandboxes", json={"network": {"allow": ["pkgs.test"]}})
            r.raise_for_status()
            sid = r.json()["id"]
            jail_url = f"http://pkgs.test:{up.http_port}"
            host_url = f"http://127.0.0.1:{up.http_port}"
            curl_jail(api, sid, jail_url + "/hello")  # warm: namespace, checkout
            direct, proxied = [], []
            for _ in range(ROUNDS):
                direct += curl_host(host_url + "/blob")
                proxied += curl_jail(api, sid, jail_url + "/blob")
            small_direct, small_proxied = [], []
            for _ in range(3):
                small_direct += curl_host(host_url + "/hello", SMALL)
                small_proxied += curl_jail(api, sid, jail_url + "/hello", SMALL)
            st = server.status()["egress"]
    finally:
        server.cleanup()
        up.stop()
    mb = BLOB / 1e6
    d, p = statistics.median(direct), statistics.median(proxied)
    sd, sp = statistics.median(small_direct), statistics.median(small_proxied)
    result = {
        "download_mb": mb,
        "rounds": ROUNDS,
        "direct_s": direct,
        "proxied_s": proxied,
        "direct_mb_s": round(mb / d, 1),
        "proxied_mb_s": round(mb / p, 1),
        "throughput_ratio": round(d / p, 3),
        "small_request_direct_ms": round(sd * 1000, 3),
        "small_request_proxied_ms": round(sp * 1000, 3),
        "per_connection_overhead_ms": round((sp - sd) * 1000, 3),
        "small_requests": len(small_direct),
        "proxy": st,
    }
    save("egress", result)
    print(f"100 MB download: host without jail {result['direct_mb_s']} MB/s, "
          f"in the jail through the proxy {result['proxied_mb_s']} MB/s: "
          f"ratio {result['throughput_ratio']} (target >= 0.80)")
    print(f"new connection, small request: host {result['small_request_direct_ms']} ms, "
          f"through the proxy {result['small_request_proxied_ms']} ms: overhead "
          f"{result['per_connection_overhead_ms']} ms (median of {len(small_direct)})")


if __name__ == "__main__":
    main()
