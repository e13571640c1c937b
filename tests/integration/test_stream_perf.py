"""SSE exec streaming under bulk output (docs/API.md "Exec"): exact text for every kind of byte, output
still live after a bulk phase, and server memory bounded when the client reads slowly."""
import re
import statistics
import time

from test_stream_batch import sse_events, stream

PATTERN = b'\x00\x01\n"\\\xc3\xa9\xe2\x82\xac\xff\x80\xf0\x9f\x98\x80 tab\t end\r\n\x7f/'


def printf_arg(data):
    return "".join(f"\\x{b:02x}" for b in data)


def test_every_kind_of_byte_across_chunks(api, sandbox):
    # ~300 KB: past the runner's bulk threshold, so reads split characters and escapes anywhere
    n = 12000
    script = f"for i in $(seq {n}); do printf '{printf_arg(PATTERN)}'; done"
    with stream(api, sandbox, script) as r:
        events = list(sse_events(r))
    text = "".join(e[1]["data"] for e in events if e[0] == "stdout")
    # isolated invalid bytes: Python's replacement agrees with the server's (one U+FFFD each)
    assert text == (PATTERN * n).decode("utf-8", "replace")
    assert events[-1][0] == "exit" and events[-1][1]["exitCode"] == 0


def test_output_stays_live_after_bulk_output(api, sandbox):
    # the script stamps each line with the wall clock; the client compares with its arrival
    script = ("head -c 20000000 /dev/zero | tr '\\0' a; "
              "for i in 1 2 3 4 5 6; do sleep 0.2; echo \"mark $(date +%s%N)\"; done")
    delays = []
    with stream(api, sandbox, script) as r:
        for ev, data, _ in sse_events(r):
            if ev == "stdout":
                for m in re.finditer(r"mark (\d+)", data["data"]):
                    delays.append((time.time_ns() - int(m.group(1))) / 1e6)
    assert len(delays) == 6
    assert statistics.median(delays) < 50, delays
    assert max(delays) < 500, delays


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return [int(l.split()[1]) for l in f if l.startswith("VmRSS")][0]


def test_slow_client_bounded_memory(api, sandbox, server):
    size = 24_000_000
    script = f"head -c {size} /dev/zero | tr '\\0' b"
    with stream(api, sandbox, "head -c 3000000 /dev/zero") as r:  # warm up threads and arenas
        list(sse_events(r))
    base = rss_kib(server.proc.pid)
    peak = base
    got = 0
    with stream(api, sandbox, script) as r:
        buf = b""
        for chunk in r.iter_raw(256 * 1024):
            time.sleep(0.005)  # far slower than the script: the server must hold it back
            peak = max(peak, rss_kib(server.proc.pid))
            buf += chunk
            frames = buf.split(b"\n\n")
            buf = frames.pop()
            for fr in frames:
                if fr.startswith(b"event: stdout\ndata: "):
                    got += fr.count(b"b")
    assert got == size
    # queue, spare frames and an enlarged pipe are each about 1 MiB; the stream is 24 MB
    assert peak - base < 12 * 1024, (base, peak)
