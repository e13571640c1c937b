"""The SSE parser on its own: split frames, line endings, httpx 0.23 line handling."""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, List

import httpx
import pytest

import sqlfs
from sqlfs._sse import SSEFrame, SSEParser, iter_frames, iter_frames_from_lines


def frame(event: str, obj: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


STREAM = (
    b": keep-alive\n\n"
    + frame("stdout", {"t": 1, "data": "h\u00e9llo \u2603 \U0001f600\n"})
    + frame("stderr", {"t": 2.5, "data": "warn\n"})
    + b": keep-alive\n"
    + frame("stdout", {"t": 3, "data": ""})
    + frame("exit", {"t": 4, "exitCode": 0, "durationMs": 4, "timedOut": False})
)

EXPECTED = [
    SSEFrame("stdout", json.dumps({"t": 1, "data": "h\u00e9llo \u2603 \U0001f600\n"}, ensure_ascii=False)),
    SSEFrame("stderr", json.dumps({"t": 2.5, "data": "warn\n"})),
    SSEFrame("stdout", json.dumps({"t": 3, "data": ""})),
    SSEFrame("exit", json.dumps({"t": 4, "exitCode": 0, "durationMs": 4, "timedOut": False})),
]


def parse_chunks(chunks: List[bytes]) -> List[SSEFrame]:
    return list(iter_frames(chunks))


def test_whole_stream() -> None:
    assert parse_chunks([STREAM]) == EXPECTED


def test_every_single_split_point() -> None:
    for i in range(len(STREAM) + 1):
        assert parse_chunks([STREAM[:i], STREAM[i:]]) == EXPECTED, i


def test_byte_by_byte() -> None:
    assert parse_chunks([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_random_splits() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
        parts = [STREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(STREAM)])]
        assert parse_chunks(parts) == EXPECTED


@pytest.mark.parametrize("eol", [b"\r\n", b"\r"])
def test_other_line_endings_at_every_split(eol: bytes) -> None:
    data = STREAM.replace(b"\n", eol)
    for i in range(len(data) + 1):
        assert parse_chunks([data[:i], data[i:]]) == EXPECTED, (eol, i)


def test_multiline_data_id_and_unknown_fields() -> None:
    raw = b"id: 7\nretry: 100\nfoo: bar\ndata: a\ndata:b\ndata\n\n"
    assert parse_chunks([raw]) == [SSEFrame("message", "a\nb\n", "7")]


def test_frame_without_blank_line_at_eof_is_dropped() -> None:
    assert parse_chunks([frame("exit", {"exitCode": 0})[:-1]]) == []


def test_event_without_data_is_not_dispatched() -> None:
    assert parse_chunks([b"event: stdout\n\n" + frame("exit", {"exitCode": 1})]) == [
        SSEFrame("exit", json.dumps({"exitCode": 1}))
    ]


@pytest.mark.parametrize("keepends", [True, False])
def test_pre_split_lines_with_and_without_terminators(keepends: bool) -> None:
    lines = STREAM.decode().splitlines(keepends)
    assert list(iter_frames_from_lines(lines)) == EXPECTED


def test_httpx_iter_lines_of_installed_version() -> None:
    """httpx < 0.27 keeps terminators in iter_lines(), later versions strip them: both parse."""

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(STREAM), 7):
            yield STREAM[i : i + 7]

    resp = httpx.Response(200, content=chunks())
    lines = list(resp.iter_lines())
    assert list(iter_frames_from_lines(lines)) == EXPECTED
    resp2 = httpx.Response(200, content=chunks())
    assert list(iter_frames(resp2.iter_bytes())) == EXPECTED


def test_stream_events_from_frames() -> None:
    events = [sqlfs.StreamEvent.from_frame(f.event, f.data) for f in EXPECTED]
    assert [e.type for e in events] == ["stdout", "stderr", "stdout", "exit"]
    assert events[0].data == "h\u00e9llo \u2603 \U0001f600\n" and events[0].t == 1.0
    assert events[1].data == "warn\n"
    assert events[3].exit_code == 0 and events[3].duration_ms == 4 and not events[3].timed_out
    err = sqlfs.StreamEvent.from_frame("error", json.dumps({"code": "EREADONLY_VIOLATION", "error": "x", "retryable": False}))
    assert err.type == "error" and err.code == "EREADONLY_VIOLATION" and err.data == "x"
    to = sqlfs.StreamEvent.from_frame("exit", json.dumps({"exitCode": -1, "timedOut": True, "error": "timeout", "durationMs": 9}))
    assert to.exit_code == -1 and to.timed_out and to.error == "timeout"


def test_parser_large_chunk_is_linear() -> None:
    big = b"".join(frame("stdout", {"t": i, "data": "x" * 100}) for i in range(20000))
    t0 = time.monotonic()
    frames = SSEParser().feed(big)
    assert len(frames) == 20000
    assert time.monotonic() - t0 < 5


class _SlowSSE(BaseHTTPRequestHandler):
    """Sends an SSE body a few bytes at a time with pauses, as a slow network would."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(b: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
            self.wfile.flush()

        first = frame("stdout", {"t": 1, "data": "first\n"})
        for i in range(0, len(first), 3):
            send(first[i : i + 3])
        time.sleep(1.0)
        rest = frame("stdout", {"t": 1000, "data": "second\n"}) + frame(
            "exit", {"t": 1001, "exitCode": 3, "durationMs": 1001, "timedOut": False}
        )
        send(rest[:5])
        send(rest[5:])
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # the client may close as soon as it has the exit event


@pytest.fixture
def slow_sse_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SlowSSE)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_client_stream_yields_events_as_they_arrive(slow_sse_url: str) -> None:
    """The SDK's stream path over a real socket (byte-split chunks): the first event is handed
    to the caller before the later ones are even sent."""
    with sqlfs.Client(base_url=slow_sse_url, token="t") as c:
        sb = c.sandboxes.attach("00000000-0000-4000-8000-000000000000")
        t0 = time.monotonic()
        seen = []
        for ev in sb.exec_stream("echo"):
            seen.append((ev.type, ev.data, time.monotonic() - t0))
    assert [s[:2] for s in seen] == [("stdout", "first\n"), ("stdout", "second\n"), ("exit", "")]
    assert seen[1][2] - seen[0][2] > 0.7


def test_async_client_stream_yields_events_as_they_arrive(slow_sse_url: str) -> None:
    import asyncio

    async def run() -> list:
        async with sqlfs.AsyncClient(base_url=slow_sse_url, token="t") as c:
            sb = c.sandboxes.attach("00000000-0000-4000-8000-000000000000")
            t0 = time.monotonic()
            out = []
            async for ev in sb.exec_stream("echo"):
                out.append((ev.type, ev.exit_code, time.monotonic() - t0))
            return out

    seen = asyncio.run(run())
    assert [s[0] for s in seen] == ["stdout", "stdout", "exit"]
    assert seen[2][1] == 3
    assert seen[1][2] - seen[0][2] > 0.7
