"""Reproduction: a read-only exec-sync-batch of 8 `true` scripts hangs (see docs/BENCHMARKS.md).
Run: /usr/bin/python3 bench/repro_ro_batch.py 20"""
import sys, time
import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib, httpx
s=lib.Server().start()
try:
    tok=s.token(); h={"Authorization":"Bearer "+tok}
    sid=httpx.post(s.url+"/v1/sandboxes",json={},headers=h).json()["id"]
    for i in range(int(sys.argv[1])):
        t=time.time()
        try:
            r=httpx.post(f"{s.url}/v1/sandboxes/{sid}/exec-sync-batch",headers=h,timeout=10,
                json={"readOnly":True,"scripts":[{"id":str(k),"script":"true"} for k in range(8)]})
            print(i, r.status_code, round(time.time()-t,3), flush=True)
        except httpx.ReadTimeout:
            print(i, "HUNG > 10 s", flush=True); break
finally:
    s.cleanup(); print("wedged on SIGTERM:", s.wedged)
