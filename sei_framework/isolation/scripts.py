"""Fresh interpreters: `run_script_isolated` for one request, `serve_isolated` on the script's side."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from ..framing import MAX_FRAME_BYTES, FrameError, encode_frame, read_stream
from .answers import DEFAULT_TIMEOUT_S, _answer, _failed, _limit, _reply, _timed_out, _too_much
from .pump import _pump

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
