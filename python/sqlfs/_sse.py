"""Incremental Server-Sent Events parser.

The parser works on raw bytes so that it does not depend on how an HTTP library splits lines
(httpx < 0.27 keeps line terminators in ``iter_lines()``, later versions strip them). Frames may
arrive split at any byte boundary, including inside a multi-byte UTF-8 character or between the
``\\r`` and ``\\n`` of a CRLF. Lines end with LF, CRLF or CR as the SSE specification allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional

__all__ = ["SSEFrame", "SSEParser", "iter_frames", "iter_frames_from_lines"]

_EOL = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class SSEFrame:
    event: str
    data: str
    id: Optional[str] = None


class SSEParser:
    """Feed bytes with :meth:`feed`; it returns the frames completed so far."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip_lf = False  # the previous chunk ended with CR: drop a leading LF
        self._event = ""
        self._data: List[str] = []
        self._has_data = False
        self._id: Optional[str] = None
        self._last_id: Optional[str] = None

    def feed(self, chunk: bytes) -> List[SSEFrame]:
        frames: List[SSEFrame] = []
        if not chunk:
            return frames
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        # What is left in the buffer from earlier chunks holds no line terminator (all lines up
        # to the last terminator were consumed), so the chunk alone tells whether a CR occurs.
        scan = len(self._buf)
        self._buf += chunk
        if b"\r" in chunk:
            self._feed_any_eol(frames)
        else:
            self._feed_lf(frames, scan)
        return frames

    def _feed_lf(self, frames: List[SSEFrame], scan: int) -> None:
        """Lines end with LF only (what sqlfs sends): bytes.find is memchr, and a data line is
        sliced and decoded once, without the regex and the copies of the general path. Output
        streams are mostly data lines of up to tens of KiB, so this is where the time goes."""
        buf = self._buf
        find = buf.find
        startswith = buf.startswith
        pos = 0
        while True:
            nl = find(b"\n", scan)
            if nl < 0:
                break
            if startswith(b"data: ", pos, nl):
                self._data.append(buf[pos + 6 : nl].decode("utf-8", "replace"))
                self._has_data = True
            else:
                frame = self._line(buf[pos:nl].decode("utf-8", "replace"))
                if frame is not None:
                    frames.append(frame)
            pos = scan = nl + 1
        del buf[:pos]

    def _feed_any_eol(self, frames: List[SSEFrame]) -> None:
        buf = self._buf
        pos = 0
        for m in _EOL.finditer(buf):
            line = bytes(buf[pos : m.start()])
            pos = m.end()
            if m.group() == b"\r" and pos == len(buf):
                self._skip_lf = True  # a CRLF may be split across chunks
            frame = self._line(line.decode("utf-8", "replace"))
            if frame is not None:
                frames.append(frame)
        del buf[:pos]

    def feed_line(self, line: str) -> Optional[SSEFrame]:
        """Feed one already split line (with or without its terminator)."""
        if line.endswith("\r\n"):
            line = line[:-2]
        elif line.endswith("\n") or line.endswith("\r"):
            line = line[:-1]
        return self._line(line)

    def close(self) -> List[SSEFrame]:
        """End of stream. A trailing frame without its blank line is discarded (per spec)."""
        self._buf.clear()
        self._data = []
        self._has_data = False
        self._event = ""
        return []

    def _line(self, line: str) -> Optional[SSEFrame]:
        if line == "":
            if not self._has_data:
                self._event = ""
                return None
            frame = SSEFrame(
                event=self._event or "message", data="\n".join(self._data), id=self._last_id
            )
            self._event = ""
            self._data = []
            self._has_data = False
            return frame
        if line.startswith(":"):
            return None  # comment (keep-alive)
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        # "retry" and unknown fields are ignored
        return None


def iter_frames(chunks: Iterable[bytes]) -> Iterator[SSEFrame]:
    parser = SSEParser()
    for chunk in chunks:
        for frame in parser.feed(chunk):
            yield frame
    parser.close()


def iter_frames_from_lines(lines: Iterable[str]) -> Iterator[SSEFrame]:
    """Frames from pre-split lines, whether or not they keep their terminators."""
    parser = SSEParser()
    for line in lines:
        frame = parser.feed_line(line)
        if frame is not None:
            yield frame
