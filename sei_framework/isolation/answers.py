"""What comes back from an isolated process: an answer, a refusal, or ProcessLost."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from ..errors import InvalidRequest, SeiError
from ..framing import MAX_HEADER_BYTES, FrameError, decode_frame, encode_frame

log = logging.getLogger("sei_framework.isolation")

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


def _limit(max_bytes: int) -> int:
    """The most bytes one frame with `max_bytes` of blobs takes."""
    return 4 + MAX_HEADER_BYTES + max_bytes


def _too_much(what: str) -> ProcessLost:
    log.warning("%s: the isolated process wrote more than a frame may hold", what)
    return ProcessLost(f"{what} failed: the isolated process answered with something other than a frame")


def _ending(returncode: int) -> str:
    return f"killed by {_signal_name(-returncode)}" if returncode < 0 else f"exit status {returncode}"
