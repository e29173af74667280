"""Run native code on untrusted input in a forked child, so an abort cannot take the worker down.

Some homomorphic-encryption libraries call std::terminate on malformed ciphertexts or keys.
A fork is cheap (copy-on-write: cached keys are shared), and the parent turns a crash, an
error or a hang of the child into an InvalidRequest that says what went wrong.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import selectors
import signal
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import InvalidRequest

__all__ = ["call_isolated"]

T = TypeVar("T")


def _child(fn: Callable[[], object], out: int, err: int) -> None:
    faulthandler.disable()  # a native abort is expected here; the parent reports it
    os.dup2(err, 2)
    try:
        payload = pickle.dumps(fn(), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # report and leave without running the parent's cleanup
        os.write(err, f"{type(exc).__name__}: {exc}\n".encode(errors="replace"))
        os._exit(1)
    view = memoryview(payload)
    while view:
        view = view[os.write(out, view) :]
    os._exit(0)


def _reason(stderr: bytes, status: int) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    what = [line.split("what():", 1)[1].strip() for line in lines if "what():" in line]
    if what:
        return what[-1]
    if lines:
        return lines[-1][:300]
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


# Under azmlinfsrv's 300 s gunicorn worker timeout: a hung child is killed and reported as an
# error before gunicorn would kill the worker (and the keys it has cached) instead.
DEFAULT_TIMEOUT_S = 240.0


def call_isolated(fn: Callable[[], T], *, what: str, timeout: float = DEFAULT_TIMEOUT_S) -> T:
    """Return `fn()` computed in a forked child; a crash or timeout raises InvalidRequest."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(out_r)
        os.close(err_r)
        _child(fn, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    deadline = time.monotonic() + timeout
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for fd in chunks:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            for key, _ in selector.select(remaining):
                data = os.read(key.fd, 1 << 20)
                if data:
                    chunks[key.fd].append(data)
                else:
                    selector.unregister(key.fd)
    os.close(out_r)
    os.close(err_r)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        raise InvalidRequest(f"{what} did not finish within {timeout:g} s", code="timeout")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return pickle.loads(b"".join(chunks[out_r]))
    reason = _reason(b"".join(chunks[err_r]), status)
    raise InvalidRequest(f"{what} failed: {reason}", code="rejected_input")
