"""A service worker's side of the engines (engine.py) that run Concrete circuits.

Each worker process has two engines, started when first needed:
- `trusted` runs keys that have already run once without crashing it; it keeps them expanded;
- `probation` runs a key set's first request. Hostile keys that crash the runtime crash only it:
  the keys are refused from then on, and the trusted engine and everyone's keys in it are untouched.
A crashed engine is restarted on the next call; a handle whose keys it held sends them again.
"""

from __future__ import annotations

import logging
import os
import selectors
import subprocess
import sys
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

from sei_framework import InvalidRequest

from .engine import FRAME, write_frame

__all__ = ["EngineCrashed", "EngineProcess", "KeyHandle", "engines", "admit", "run"]

log = logging.getLogger(__name__)
ENGINE_SCRIPT = Path(__file__).with_name("engine.py")
START_TIMEOUT_S = 120.0


class EngineCrashed(Exception):
    """The engine died, hung or broke the protocol; it is gone and will be restarted."""

    def __init__(self, why: str, *, timed_out: bool = False) -> None:
        super().__init__(why)
        self.timed_out = timed_out


class EngineProcess:
    """One engine: a fresh interpreter running engine.py, owned by the process that started it."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.generation = 0
        self._proc: subprocess.Popen | None = None
        self._owner = 0
        self._lock = threading.Lock()
        self._forgotten: list[str] = []

    def _alive(self) -> bool:
        return self._proc is not None and self._owner == os.getpid() and self._proc.poll() is None

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-P", str(ENGINE_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._owner = os.getpid()
        self.generation += 1
        self._forgotten.clear()
        self._exchange(("ping",), START_TIMEOUT_S)
        log.info("concrete engine %s started (pid %d)", self.role, self._proc.pid)

    def _stop(self, why: str) -> None:
        if self._proc is not None and self._owner == os.getpid():
            self._proc.kill()
            status = self._proc.wait()
            log.warning("concrete engine %s (pid %d) stopped: %s (status %s)", self.role, self._proc.pid, why, status)
        self._proc = None

    def _read_exactly(self, fd: int, size: int, deadline: float) -> bytes:
        chunks, remaining = [], size
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while remaining:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise EngineCrashed("no answer in time", timed_out=True)
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    raise EngineCrashed("it ended")
                chunks.append(chunk)
                remaining -= len(chunk)
        return b"".join(chunks)

    def _exchange(self, message: tuple, timeout: float) -> Any:
        import pickle

        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        try:
            write_frame(self._proc.stdin, message)
            fd = self._proc.stdout.fileno()
            (size,) = FRAME.unpack(self._read_exactly(fd, FRAME.size, deadline))
            status, value = pickle.loads(self._read_exactly(fd, size, deadline))
        except (BrokenPipeError, OSError, EngineCrashed) as exc:
            self._stop(str(exc) or type(exc).__name__)
            raise EngineCrashed(str(exc) or type(exc).__name__, timed_out=getattr(exc, "timed_out", False)) from None
        if status == "error":
            raise InvalidRequest(value, code="rejected_input")
        return value

    def forget(self, token: str, generation: int) -> None:
        """Called when a handle is collected: its keys leave the engine with the next call."""
        if generation == self.generation:
            self._forgotten.append(token)

    def drop(self, handle: KeyHandle, timeout: float) -> None:
        """Free the handle's keys in this engine now (a proven key set leaving probation)."""
        with self._lock:
            if handle.loaded.pop(self.role, None) == self.generation and self._alive():
                self._exchange(("forget", [handle.token]), timeout)

    def _call(self, timeout: float) -> None:
        """Under the lock: a live engine, told of forgotten keys."""
        if not self._alive():
            self._proc = None
            self._start()
        if self._forgotten:
            tokens, self._forgotten = self._forgotten, []
            self._exchange(("forget", tokens), timeout)

    def _load(self, handle: KeyHandle, timeout: float) -> None:
        if handle.loaded.get(self.role) == self.generation:
            return
        try:
            self._exchange(("keys", handle.token, handle.blob), timeout)
        except InvalidRequest as exc:
            raise InvalidRequest(exc.message, code="invalid_keys") from None
        handle.loaded[self.role] = self.generation
        weakref.finalize(handle, self.forget, handle.token, self.generation)

    def load(self, handle: KeyHandle, timeout: float) -> None:
        """Deserialise the handle's keys here (InvalidRequest if they cannot be read)."""
        with self._lock:
            self._call(timeout)
            self._load(handle, timeout)

    def run(self, handle: KeyHandle, server: str, ciphertexts: list[bytes], timeout: float) -> list[bytes]:
        """Results of the circuit in `server` on each ciphertext, with the handle's keys."""
        with self._lock:
            self._call(timeout)
            self._load(handle, timeout)
            return self._exchange(("run", server, handle.token, ciphertexts), timeout)

    @property
    def pid(self) -> int | None:
        """The engine's process id while it runs in this process's care."""
        return self._proc.pid if self._proc is not None and self._alive() else None

    def stop(self) -> None:
        with self._lock:
            self._stop("asked to stop")


class KeyHandle:
    """One client's evaluation keys as a worker holds them: the bytes (to give an engine that
    restarted), and whether they have run once without crashing an engine."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.token = uuid.uuid4().hex
        self.loaded: dict[str, int] = {}
        self.proven = False
        self.crashed = False


_ENGINES: dict[str, EngineProcess] = {}
_ENGINES_LOCK = threading.Lock()


def engines() -> dict[str, EngineProcess]:
    """This process's engines (a forked worker gets its own)."""
    with _ENGINES_LOCK:
        if not _ENGINES:
            _ENGINES.update({role: EngineProcess(role) for role in ("trusted", "probation")})
        return _ENGINES


def admit(blob: bytes, timeout: float) -> KeyHandle:
    """A handle for keys the probation engine could read (InvalidRequest otherwise)."""
    handle = KeyHandle(blob)
    try:
        engines()["probation"].load(handle, timeout)
    except EngineCrashed:
        raise InvalidRequest("the evaluation keys crashed the circuit runtime as it read them", code="invalid_keys") from None
    return handle


def run(handle: KeyHandle, server: str, ciphertexts: list[bytes], timeout: float) -> list[bytes]:
    """Run on the engine the handle's trust calls for; a crash is an error for this request only."""
    if handle.crashed:
        raise InvalidRequest(
            "these evaluation keys crashed the circuit runtime before; publish keys made for this model",
            code="rejected_input",
        )
    engine = engines()["trusted" if handle.proven else "probation"]
    try:
        results = engine.run(handle, server, ciphertexts, timeout)
    except EngineCrashed as exc:
        if exc.timed_out:  # a busy machine or a long request, not a verdict on the keys
            raise InvalidRequest(f"the circuit did not finish within {timeout:g} s", code="timeout") from None
        if not handle.proven:
            handle.crashed = True
            raise InvalidRequest(
                "the evaluation keys crashed the circuit runtime: they were not made for this model",
                code="rejected_input",
            ) from None
        raise InvalidRequest(f"the circuit runtime failed on this request ({exc})", code="rejected_input") from None
    if not handle.proven:
        handle.proven = True  # from now on in the trusted engine
        engine.drop(handle, timeout)
    return results
