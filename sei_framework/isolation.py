"""Run native code on untrusted input in another process, so an abort cannot take the caller down.

Some homomorphic-encryption libraries call std::terminate on malformed ciphertexts or keys, and a
memory corruption there may leave the other process doing anything. So every channel carries data
only (sei_framework.framing: a JSON header and raw blobs, bounded; never a pickle): whatever the
other process writes, the caller gets a value or an error, and nothing it sent runs. A crash, a
hang, or bytes that are not one frame become an InvalidRequest with a fixed message; what the
library said (its stderr) goes to the log only, never into the answer.

Each answer is {"ok": value} or {"refused": {"code": ..., "message": ...}} (a SeiError raised on
purpose in the other process, whose message was written for the caller). Three mechanisms:

- `call_isolated` forks: cheap, and the child shares the caller's memory (cached keys). A forked
  child holds only the forking thread, so it must not need a lock another thread may hold: use it
  where no other thread of the process runs the native library the child calls (the service's
  workers, whose native calls on client bytes all happen in these children).
- `run_script_isolated` starts a fresh interpreter for one request: slower to start, safe in any
  process, so the one to use in a client, which may be called from many threads at once. The
  script answers with `serve_isolated(handle, once=True)`.
- `IsolatedProcess` keeps a fresh interpreter running a script that loops in `serve_isolated`:
  for state that is expensive to rebuild per request (expanded evaluation keys).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from .errors import InvalidRequest, SeiError
from .framing import MAX_FRAME_BYTES, MAX_HEADER_BYTES, FrameError, decode_frame, encode_frame, read_frame, read_stream

__all__ = ["IsolatedProcess", "ProcessLost", "call_isolated", "run_script_isolated", "serve_isolated"]

T = TypeVar("T")
log = logging.getLogger(__name__)

# Under azmlinfsrv's 300 s gunicorn worker timeout: a hung child is killed and reported as an
# error before gunicorn would kill the worker (and the keys it has cached) instead.
DEFAULT_TIMEOUT_S = 240.0
_STDERR_KEPT = 1 << 16
_MESSAGE_CHARS = 500


class ProcessLost(InvalidRequest):
    """The other process crashed, hung, or broke the framing; it has been stopped."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message, code="timeout" if timed_out else "rejected_input")
        self.timed_out = timed_out


def _reply(answer: Callable[[], Any]) -> bytes:
    """The framed answer of `answer()`: its value, or the refusal it raised on purpose."""
    try:
        return encode_frame({"ok": answer()})
    except FrameError:
        raise  # the answer is not data: a bug of the caller, reported as a failure of the process
    except SeiError as exc:
        return encode_frame({"refused": {"code": exc.code, "message": exc.message}})


def _printable(text: str, limit: int) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:limit]


def _answer(data: bytes, what: str, max_bytes: int) -> Any:
    """The value of a framed answer; a refusal raises InvalidRequest, anything else ProcessLost."""
    try:
        answer = decode_frame(data, max_bytes=max_bytes)
    except FrameError as exc:
        log.warning("%s: the isolated process did not answer with a frame (%s)", what, exc.message)
        raise ProcessLost(f"{what} failed: the isolated process answered with something other than a frame") from None
    return _unwrap(answer, what)


def _unwrap(answer: Any, what: str) -> Any:
    """The value of {"ok": value}; {"refused": {code, message}} raises InvalidRequest, anything else ProcessLost."""
    if isinstance(answer, dict) and set(answer) == {"ok"}:
        return answer["ok"]
    refused = answer.get("refused") if isinstance(answer, dict) and set(answer) == {"refused"} else None
    if isinstance(refused, dict) and isinstance(refused.get("code"), str) and isinstance(refused.get("message"), str):
        code = refused["code"] if refused["code"].isidentifier() else "rejected_input"
        raise InvalidRequest(_printable(refused["message"], _MESSAGE_CHARS), code=code[:64])
    log.warning("%s: the isolated process answered with a frame that is not an answer", what)
    raise ProcessLost(f"{what} failed: the isolated process answered with something other than an answer")


def _library_said(stderr: bytes) -> str:
    """The child's last words for the service log: a C++ what() or the last line, printable, short."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    what = [line.split("what():", 1)[1].strip() for line in lines if "what():" in line]
    said = what[-1] if what else lines[-1] if lines else "nothing"
    return _printable(said, 200)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _failed(what: str, returncode: int, stderr: bytes) -> ProcessLost:
    """The error for a process that ended with `returncode` (negative: killed by that signal)."""
    ending = _ending(returncode)
    log.warning("%s: the isolated process ended (%s); it said: %s", what, ending, _library_said(stderr))
    crashed = f" and crashed ({ending})" if returncode < 0 else ""
    return ProcessLost(f"{what} failed: the native library rejected the input{crashed}")


def _timed_out(what: str, timeout: float) -> ProcessLost:
    log.warning("%s: the isolated process was killed after %g s", what, timeout)
    return ProcessLost(f"{what} did not finish within {timeout:g} s", timed_out=True)


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


def _child(fn: Callable[[], object], out: int, err: int) -> None:
    faulthandler.disable()  # a native abort is expected here; the parent reports it
    os.dup2(err, 2)
    try:
        payload = _reply(fn)
    except BaseException as exc:  # report and leave without running the parent's cleanup
        os.write(err, f"{type(exc).__name__}: {exc}\n".encode(errors="replace"))
        os._exit(1)
    view = memoryview(payload)
    while view:
        view = view[os.write(out, view) :]
    os._exit(0)


def call_isolated(fn: Callable[[], T], *, what: str, timeout: float = DEFAULT_TIMEOUT_S, max_bytes: int = MAX_FRAME_BYTES) -> T:
    """Return `fn()` (data: see sei_framework.framing) computed in a forked child.

    A crash, a timeout or an answer that is not a frame raises InvalidRequest (ProcessLost)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(out_r)
        os.close(err_r)
        _child(fn, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    try:
        out, err = _pump(lambda: os.kill(pid, signal.SIGKILL), b"", (None, out_r, err_r), timeout, _limit(max_bytes))
    except TimeoutError:
        raise _timed_out(what, timeout) from None
    except FrameError:
        raise _too_much(what) from None
    finally:
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise _failed(what, os.waitstatus_to_exitcode(status), err)
    return _answer(out, what, max_bytes)


def _limit(max_bytes: int) -> int:
    """The most bytes one frame with `max_bytes` of blobs takes."""
    return 4 + MAX_HEADER_BYTES + max_bytes


def _too_much(what: str) -> ProcessLost:
    log.warning("%s: the isolated process wrote more than a frame may hold", what)
    return ProcessLost(f"{what} failed: the isolated process answered with something other than a frame")


def _interpreter(script: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-P", os.fspath(script)]  # -P: the script's folder does not shadow imports


def run_script_isolated(
    script: str | os.PathLike[str], request: Any, *, what: str, timeout: float = DEFAULT_TIMEOUT_S, max_bytes: int = MAX_FRAME_BYTES
) -> Any:
    """The answer of the Python file `script`, run by a fresh interpreter on the framed `request`.

    The script answers with `serve_isolated(handle, once=True)`. A crash, a non-zero exit, a timeout
    or an answer that is not a frame raises InvalidRequest (ProcessLost: rejected_input or timeout)."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = subprocess.Popen(_interpreter(script), stdin=in_r, stdout=out_w, stderr=err_w)
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    try:
        out, err = _pump(proc.kill, encode_frame(request), (in_w, out_r, err_r), timeout, _limit(max_bytes))
    except TimeoutError:
        raise _timed_out(what, timeout) from None
    except FrameError:
        raise _too_much(what) from None
    finally:
        proc.wait()
    if proc.returncode != 0:
        raise _failed(what, proc.returncode, err)
    return _answer(out, what, max_bytes)


def serve_isolated(handle: Callable[[Any], Any], *, once: bool = False, max_bytes: int = MAX_FRAME_BYTES) -> None:
    """The other side of a channel: answer each framed request on stdin with a frame on stdout.

    A SeiError that `handle` raises is a refusal for the caller; any other error ends the process
    (the caller reports it). Whatever else writes to sys.stdout goes to stderr, off the channel."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    while True:
        try:
            request = read_stream(stdin, max_bytes=max_bytes)
        except EOFError:
            if once:
                raise FrameError("no request came") from None
            return
        stdout.write(_reply(partial(handle, request)))
        stdout.flush()
        if once:
            return


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


def _ending(returncode: int) -> str:
    return f"killed by {_signal_name(-returncode)}" if returncode < 0 else f"exit status {returncode}"
