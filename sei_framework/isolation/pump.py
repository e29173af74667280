"""Feed a child process its request and collect its answer, within a deadline and a size limit."""

from __future__ import annotations

import os
import selectors
import time
from collections.abc import Callable

from ..framing import FrameError
from .answers import _STDERR_KEPT

def _pump(kill: Callable[[], None], send: bytes, fds: tuple[int | None, int, int], timeout: float, limit: int) -> tuple[bytes, bytes]:
    """Write `send` to fds[0], read fds[1] (at most `limit` bytes) and fds[2] (its tail) until both
    end, then close all three; past the deadline or the limit, `kill()` and raise TimeoutError or
    FrameError."""
    stdin, stdout, stderr = fds
    out: list[bytes] = []
    err = bytearray()
    size, view = 0, memoryview(send)
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as selector:
            if stdin is not None:
                os.set_blocking(stdin, False)
                selector.register(stdin, selectors.EVENT_WRITE)
            for fd in (stdout, stderr):
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    kill()
                    raise TimeoutError
                for key, _ in selector.select(remaining):
                    if key.fd == stdin:
                        try:
                            view = view[os.write(stdin, view[: 1 << 16]) :]
                        except BrokenPipeError:  # it stopped reading: its exit status says why
                            view = view[:0]
                        if not view:
                            selector.unregister(stdin)
                        continue
                    data = os.read(key.fd, 1 << 20)
                    if not data:
                        selector.unregister(key.fd)
                    elif key.fd == stdout:
                        out.append(data)
                        size += len(data)
                        if size > limit:
                            kill()
                            raise FrameError(f"more than {limit} bytes")
                    else:
                        err = (err + data)[-_STDERR_KEPT:]
    finally:
        for opened in (stdout, stderr) if stdin is None else (stdin, stdout, stderr):
            os.close(opened)
    return b"".join(out), bytes(err)
