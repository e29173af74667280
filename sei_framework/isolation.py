"""Run native code on untrusted input in another process, so an abort cannot take the caller down.

Some homomorphic-encryption libraries call std::terminate on malformed ciphertexts or keys.
The caller turns a crash, an error or a hang of the other process into an InvalidRequest with a
fixed message; what the library said (its stderr) goes to the log only, never into the answer.

- `call_isolated` forks: cheap, and the child shares the caller's memory (cached keys). A forked
  child holds only the forking thread, so it must not need a lock another thread may hold: use it
  where no other thread of the process runs the native library the child calls (the service's
  workers, whose native calls on client bytes all happen in these children).
- `run_script_isolated` starts a fresh interpreter: slower to start, safe in any process, so the
  one to use in a client, which may be called from many threads at once.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import pickle
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import InvalidRequest, SeiError

__all__ = ["call_isolated", "run_script_isolated"]

T = TypeVar("T")
log = logging.getLogger(__name__)
_OK, _REFUSED = "ok", "refused"


def _child(fn: Callable[[], object], out: int, err: int) -> None:
    faulthandler.disable()  # a native abort is expected here; the parent reports it
    os.dup2(err, 2)
    try:
        payload = pickle.dumps((_OK, fn()), protocol=pickle.HIGHEST_PROTOCOL)
    except SeiError as exc:  # our own refusal: its message was written for the caller
        payload = pickle.dumps((_REFUSED, exc.code, exc.message), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # report and leave without running the parent's cleanup
        os.write(err, f"{type(exc).__name__}: {exc}\n".encode(errors="replace"))
        os._exit(1)
    view = memoryview(payload)
    while view:
        view = view[os.write(out, view) :]
    os._exit(0)


def _library_said(stderr: bytes) -> str:
    """The child's last words for the service log: a C++ what() or the last line, printable, short."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    what = [line.split("what():", 1)[1].strip() for line in lines if "what():" in line]
    said = what[-1] if what else lines[-1] if lines else "nothing"
    return "".join(ch if ch.isprintable() else "?" for ch in said)[:200]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _ending(status: int) -> str:
    """How the child ended: killed by a signal (a crash), or exited with an error status."""
    if not os.WIFSIGNALED(status):
        return f"exit status {os.waitstatus_to_exitcode(status)}"
    return f"killed by {_signal_name(os.WTERMSIG(status))}"


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
        log.warning("%s: the isolated child was killed after %g s", what, timeout)
        raise InvalidRequest(f"{what} did not finish within {timeout:g} s", code="timeout")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        answer = pickle.loads(b"".join(chunks[out_r]))
        if answer[0] == _REFUSED:
            raise InvalidRequest(answer[2], code=answer[1])
        return answer[1]
    ending = _ending(status)
    log.warning("%s: the isolated child ended (%s); it said: %s", what, ending, _library_said(b"".join(chunks[err_r])))
    crashed = f" and crashed ({ending})" if os.WIFSIGNALED(status) else ""
    raise InvalidRequest(f"{what} failed: the native library rejected the input{crashed}", code="rejected_input")


def run_script_isolated(script: str | os.PathLike[str], stdin: bytes, *, what: str, timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
    """Return the stdout of the Python file `script` run by a fresh interpreter on `stdin`.

    A crash, a non-zero exit or a timeout raises InvalidRequest (code rejected_input or timeout)."""
    command = [sys.executable, "-P", os.fspath(script)]  # -P: the script's folder does not shadow imports
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        log.warning("%s: the isolated interpreter was killed after %g s", what, timeout)
        raise InvalidRequest(f"{what} did not finish within {timeout:g} s", code="timeout") from None
    if done.returncode == 0:
        return done.stdout
    ending = f"killed by {_signal_name(-done.returncode)}" if done.returncode < 0 else f"exit status {done.returncode}"
    log.warning("%s: the isolated interpreter ended (%s); it said: %s", what, ending, _library_said(done.stderr))
    crashed = f" and crashed ({ending})" if done.returncode < 0 else ""
    raise InvalidRequest(f"{what} failed: the native library rejected the input{crashed}", code="rejected_input")
