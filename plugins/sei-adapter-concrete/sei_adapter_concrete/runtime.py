"""A service worker's side of the engines (engine.py) that run Concrete circuits.

Each worker process has two engines, started when first needed:
- `trusted` runs keys that have already run once without crashing it; it keeps them expanded;
- `probation` runs a key set's first request. Hostile keys that crash the runtime crash only it:
  the keys are refused from then on, and the trusted engine and everyone's keys in it are untouched.
A crashed engine is restarted on the next call; a handle whose keys it held sends them again.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from pathlib import Path
from typing import Any

from sei_framework import InvalidRequest, IsolatedProcess, ProcessLost

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
    """One engine: a fresh interpreter running engine.py (sei_framework's IsolatedProcess: frames
    of data both ways), owned by the process that started it."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.process = IsolatedProcess(ENGINE_SCRIPT, what=f"concrete engine {role}")
        self._lock = threading.Lock()
        self._forgotten: list[str] = []

    @property
    def generation(self) -> int:
        return self.process.generation

    def _alive(self) -> bool:
        return self.process.alive()

    def _exchange(self, request: dict[str, Any], timeout: float) -> Any:
        """The engine's answer; a refusal is an InvalidRequest, a lost engine an EngineCrashed."""
        try:
            return self.process.call(request, timeout)
        except ProcessLost as exc:
            raise EngineCrashed(exc.message, timed_out=exc.timed_out) from None

    def forget(self, token: str, generation: int) -> None:
        """Called when a handle is collected: its keys leave the engine with the next call."""
        if generation == self.generation:
            self._forgotten.append(token)

    def drop(self, handle: KeyHandle, timeout: float) -> None:
        """Free the handle's keys in this engine now (a proven key set leaving probation)."""
        with self._lock:
            if handle.loaded.pop(self.role, None) == self.generation and self._alive():
                self._exchange({"op": "forget", "tokens": [handle.token]}, timeout)

    def _call(self, timeout: float) -> None:
        """Under the lock: a live engine, told of forgotten keys."""
        if self.process.start():
            self._forgotten.clear()
            pid = self._exchange({"op": "ping"}, START_TIMEOUT_S)
            log.info("concrete engine %s started (pid %s)", self.role, pid)
        if self._forgotten:
            tokens, self._forgotten = self._forgotten, []
            self._exchange({"op": "forget", "tokens": tokens}, timeout)

    def _load(self, handle: KeyHandle, timeout: float) -> None:
        if handle.loaded.get(self.role) == self.generation:
            return
        try:
            self._exchange({"op": "keys", "token": handle.token, "blob": handle.blob}, timeout)
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
            results = self._exchange({"op": "run", "server": server, "token": handle.token, "ciphertexts": ciphertexts}, timeout)
        if not isinstance(results, list) or len(results) != len(ciphertexts) or not all(isinstance(r, bytes) for r in results):
            raise InvalidRequest("the circuit runtime answered with something other than one result per ciphertext", code="rejected_input")
        return results

    @property
    def pid(self) -> int | None:
        """The engine's process id while it runs in this process's care."""
        return self.process.pid

    def stop(self) -> None:
        with self._lock:
            self.process.stop()


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
