"""`call_isolated`: compute a function in a forked child, answered as a frame of data."""

from __future__ import annotations

import faulthandler
import os
import signal
from collections.abc import Callable
from typing import TypeVar

from ..framing import MAX_FRAME_BYTES, FrameError
from .answers import DEFAULT_TIMEOUT_S, _answer, _failed, _limit, _reply, _timed_out, _too_much
from .pump import _pump

T = TypeVar("T")

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
