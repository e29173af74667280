"""`IsolatedProcess`: a long-lived fresh interpreter that answers framed requests one at a time."""

from __future__ import annotations

import os
import selectors
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..framing import MAX_FRAME_BYTES, FrameError, encode_frame, read_frame
from .answers import ProcessLost, _ending, _unwrap, log
from .scripts import _interpreter

class IsolatedProcess:
    """A long-lived fresh interpreter running `script` (which loops in `serve_isolated`), owned by
    the process that started it; a call that crashes, hangs or breaks the framing stops it, and the
    next call starts a new one. Callers serialise their calls (one request in flight)."""

    def __init__(self, script: str | os.PathLike[str], *, what: str, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.script, self.what, self.max_bytes = Path(script), what, max_bytes
        self.generation = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = 0
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self._proc is not None and self._owner == os.getpid() and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while it runs in this process's care."""
        return self._proc.pid if self._proc is not None and self.alive() else None

    def start(self) -> bool:
        """Start the process unless it runs; True if it was started now (a new generation)."""
        if self.alive():
            return False
        self._proc = subprocess.Popen(_interpreter(self.script), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._owner = os.getpid()
        self.generation += 1
        return True

    def stop(self, why: str = "asked to stop") -> None:
        with self._lock:
            self._stop(why)

    def _stop(self, why: str) -> None:
        if self._proc is not None and self._owner == os.getpid():
            self._proc.kill()
            status = self._proc.wait()
            log.warning("%s (pid %d) stopped: %s (status %s)", self.what, self._proc.pid, why, status)
        self._proc = None

    def _read(self, fd: int, deadline: float) -> Callable[[int], bytes]:
        def read(size: int) -> bytes:
            chunks, remaining = [], size
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                while remaining:
                    left = deadline - time.monotonic()
                    if left <= 0 or not selector.select(left):
                        raise TimeoutError
                    chunk = os.read(fd, min(remaining, 1 << 20))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    remaining -= len(chunk)
            return b"".join(chunks)

        return read

    def call(self, request: Any, timeout: float) -> Any:
        """The answer to `request`: a refusal raises InvalidRequest; a crash, a hang or anything
        but a frame stops the process and raises ProcessLost."""
        with self._lock:
            self.start()
            proc = self._proc
            assert proc is not None and proc.stdin is not None and proc.stdout is not None
            deadline = time.monotonic() + timeout
            try:
                proc.stdin.write(encode_frame(request))
                proc.stdin.flush()
                answer = read_frame(self._read(proc.stdout.fileno(), deadline), max_bytes=self.max_bytes)
            except TimeoutError:
                self._stop(f"no answer within {timeout:g} s")
                raise ProcessLost(f"{self.what} did not answer within {timeout:g} s", timed_out=True) from None
            except (OSError, FrameError) as exc:  # BrokenPipeError: it died before reading
                try:
                    ended: int | None = proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    ended = None
                why = f"it ended ({_ending(ended)})" if ended is not None else f"it broke the framing ({exc})"
                self._stop(why)
                raise ProcessLost(f"{self.what} failed: {why}") from None
            try:
                return _unwrap(answer, self.what)
            except ProcessLost:
                self._stop("it answered with something other than an answer")
                raise
