"""Both cores for one batch in the service: the engine's worker processes, one pool per client key set.

The engine's `WorkerPool` starts fresh interpreters (no fork) that each evaluate a share of the trees and
exchange only bytes. A pool serves one request at a time (a lock: its pipes carry one exchange), and its
processes end when the key cache drops the key set (a finalizer), or with the service.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from sei_framework import ProcessLost

__all__ = ["PooledServer"]

log = logging.getLogger(__name__)


class PooledServer:
    """An engine server for one key set whose evaluations run on `workers` processes. A worker that dies or
    breaks the exchange fails that request (ProcessLost) and the pool is started afresh for the next one."""

    def __init__(self, plan: Any, relin_keys: bytes, workers: int, timeout_s: float = 240.0) -> None:
        self._args = (plan, relin_keys, workers, timeout_s)
        self._lock = threading.Lock()
        self.key_bytes = len(relin_keys)
        """The key set's bytes as received (the adapter's `key_size` counts them once per process)."""
        self._start()

    def _start(self) -> None:
        from .engine.workers import WorkerPool

        self._pool = WorkerPool(*self._args)
        self._finalizer = weakref.finalize(self, WorkerPool.close, self._pool)

    def evaluate(self, request: bytes) -> bytes:
        from .engine.wire import TreesInputError

        with self._lock:
            try:
                return bytes(self._pool.evaluate(request))
            except TreesInputError:
                raise
            except (OSError, EOFError, ValueError, RuntimeError) as exc:  # a worker died, hung, or answered garbage
                hung = isinstance(exc, TimeoutError)
                log.warning("a trees-seal worker process %s (%s): starting the pool again",
                            "did not answer in time" if hung else "failed", type(exc).__name__)
                self._finalizer.detach()
                self._pool.kill()
                self._start()
                if hung:
                    raise ProcessLost(f"trees-seal evaluation timed out after {self._pool.timeout_s:g} s: a worker "
                                      "process hung and was stopped; retry the request", timed_out=True) from None
                raise ProcessLost("trees-seal evaluation failed: a worker process stopped; retry the request") from None
            except Exception:  # unexpected (a bug, or memory): the pool killed its workers; fresh ones for the next
                log.warning("trees-seal evaluation failed unexpectedly: starting the pool again")
                self._finalizer.detach()
                self._pool.kill()
                self._start()
                raise
