"""Foundation benchmarks: sandbox create latency, list/get at 10,000 sandboxes, big-file
PUT/GET throughput and server RSS. Run: make bench-foundation (or python3 bench/foundation.py
[--quick])."""
import os
import sys
import tempfile

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import RssSampler, Server, curl_transfer, httpbench, save  # noqa: E402

QUICK = "--quick" in sys.argv


def make_file(size):
    f = tempfile.NamedTemporaryFile(delete=False, suffix=".bin")
    block = os.urandom(1 << 20)
    left = size
    while left > 0:
        f.write(block[:min(left, len(block))])
        left -= len(block)
    f.close()
    return f.name


def main():
    results = {}
    s = Server().start()
    try:
        tok = s.token()
        n = 200 if QUICK else 1000
        create = httpbench(s, tok, "/v1/sandboxes", "POST", body="{}", n=n, expect=201)
        results["create"] = create
        print(f"create x{n}: p50 {create['p50_ms']:.2f} ms  p99 {create['p99_ms']:.2f} ms "
              f"(target p50 <= 2, p99 <= 10)")

        # 10,000 sandboxes spread over 100 owners; the measured owner has 10 of its own
        total = 1000 if QUICK else 10000
        owners = 100
        for i in range(owners):
            t = s.token(f"owner-{i}")
            httpbench(s, t, "/v1/sandboxes", "POST", body="{}", n=total // owners, concurrency=2,
                      expect=201)
        mine = s.token("measured")
        ids = [httpx.post(s.url + "/v1/sandboxes", headers={"Authorization": "Bearer " + mine},
                          json={}).json()["id"] for _ in range(10)]
        lst = httpbench(s, mine, "/v1/sandboxes", n=500 if not QUICK else 100)
        get = httpbench(s, mine, "/v1/sandboxes/{id}", n=500 if not QUICK else 100, ids=ids)
        results["scale"] = {"sandboxes": total + n + 10, "list": lst, "get": get}
        print(f"at {total + n + 10} sandboxes: list p50 {lst['p50_ms']:.2f} ms, "
              f"get p50 {get['p50_ms']:.2f} ms (target < 10)")

        # big files: throughput and server RSS
        sid = ids[0]
        for size_mib in ([64] if QUICK else [256, 1024]):
            path = make_file(size_mib << 20)
            try:
                with RssSampler(s) as put_rss:
                    t_put, b = curl_transfer(s.url, mine, "PUT",
                                             f"/v1/sandboxes/{sid}/files/home/user/big.bin", path)
                with RssSampler(s) as get_rss:
                    t_get, b2 = curl_transfer(s.url, mine, "GET",
                                              f"/v1/sandboxes/{sid}/files/home/user/big.bin")
            finally:
                os.unlink(path)
            assert b == b2 == size_mib << 20, (b, b2)
            key = f"file_{size_mib}mib"
            results[key] = {"put_mb_s": round(b / t_put / 1e6, 1),
                            "get_mb_s": round(b2 / t_get / 1e6, 1),
                            "put_peak_rss_mib": round(put_rss.peak_mib, 1),
                            "get_peak_rss_mib": round(get_rss.peak_mib, 1)}
            r = results[key]
            print(f"{size_mib} MiB: PUT {r['put_mb_s']} MB/s (RSS {r['put_peak_rss_mib']} MiB), "
                  f"GET {r['get_mb_s']} MB/s (RSS {r['get_peak_rss_mib']} MiB)")
    finally:
        s.cleanup()
    save("foundation" + ("-quick" if QUICK else ""), results)


if __name__ == "__main__":
    main()
