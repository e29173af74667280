"""Length-prefixed frames between the tree engine's processes: a JSON header and raw byte payloads, never a pickle.

A worker reads and writes its buffered stdin and stdout (`write`, `read_from`). The parent talks to each worker
through a `Pipe`: the pipes' file descriptors, non-blocking, against a deadline, so a worker that hangs (or stops
reading) fails the request with TimeoutError instead of holding the service.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = ["Pipe", "read_from", "write"]

_FRAME = struct.Struct("<II")  # JSON length, number of payloads
_PAYLOAD = struct.Struct("<Q")
MAX_JSON = 1 << 20
MAX_PAYLOADS = 4096
MAX_PAYLOAD = 1 << 34
PIPE_BYTES = 1 << 20  # Linux's default ceiling for an unprivileged pipe

Payload = bytes | list[memoryview]  # a payload given as pieces is sent piece by piece (no joined copy)
Frame = tuple[dict[str, Any], list[bytes]]


def _pieces(header: dict[str, Any], payloads: Sequence[Payload]) -> list[bytes | memoryview]:
    js = json.dumps(header).encode()
    out: list[bytes | memoryview] = [_FRAME.pack(len(js), len(payloads)) + js]
    for p in payloads:
        parts = p if isinstance(p, list) else [memoryview(p)]
        out.append(_PAYLOAD.pack(sum(len(x) for x in parts)))
        out.extend(parts)
    return out


def _read(take: Callable[[int], bytes]) -> Frame:
    n_js, n_p = _FRAME.unpack(take(_FRAME.size))
    if n_js > MAX_JSON or n_p > MAX_PAYLOADS:
        raise ValueError("oversized frame")
    header = json.loads(take(n_js))
    payloads = []
    for _ in range(n_p):
        (ln,) = _PAYLOAD.unpack(take(_PAYLOAD.size))
        if ln > MAX_PAYLOAD:
            raise ValueError("oversized payload")
        payloads.append(take(ln))
    return header, payloads


def write(out: IO[bytes], header: dict[str, Any], payloads: Sequence[Payload]) -> None:
    for piece in _pieces(header, payloads):
        out.write(piece)
    out.flush()


def read_from(inp: IO[bytes]) -> Frame:
    def take(n: int) -> bytes:
        buf = inp.read(n)
        if len(buf) != n:
            raise EOFError("pipe closed")
        return buf

    return _read(take)


class Pipe:
    """The parent's end of one worker process's stdin and stdout."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        assert proc.stdin is not None and proc.stdout is not None
        self._in, self._out = proc.stdin.fileno(), proc.stdout.fileno()
        os.set_blocking(self._in, False)
        for fd in (self._in, self._out):
            try:  # fewer wake-ups per megabyte; the default (64 KiB) still works
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            except (OSError, AttributeError):
                pass
        self._writable = selectors.DefaultSelector()  # poll/epoll: any descriptor number, unlike select()
        self._writable.register(self._in, selectors.EVENT_WRITE)
        self._readable = selectors.DefaultSelector()
        self._readable.register(self._out, selectors.EVENT_READ)

    def close(self) -> None:
        self._writable.close()
        self._readable.close()

    def _wait(self, writing: bool, deadline: float) -> None:
        left = deadline - time.monotonic()
        if not (self._writable if writing else self._readable).select(max(left, 0)):
            raise TimeoutError("a tree worker process did not answer in time")

    def send(self, header: dict[str, Any], payloads: Sequence[Payload], deadline: float) -> None:
        for piece in _pieces(header, payloads):
            view = memoryview(piece).cast("B")
            while view:
                self._wait(True, deadline)
                try:
                    view = view[os.write(self._in, view):]
                except BlockingIOError:
                    continue

    def recv(self, deadline: float) -> Frame:
        def take(n: int) -> bytes:
            out = bytearray()
            while len(out) < n:
                self._wait(False, deadline)
                chunk = os.read(self._out, min(n - len(out), 1 << 22))
                if not chunk:
                    raise EOFError("pipe closed")
                out += chunk
            return bytes(out)

        return _read(take)
