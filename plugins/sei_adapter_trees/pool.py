"""Both cores for one batch in the service: the engine's worker processes, one pool per client key set.

The engine's `WorkerPool` starts fresh interpreters (no fork) that each evaluate a share of the trees and
exchange only bytes. A pool serves one request at a time (a lock: its pipes carry one exchange), and its
processes end when the key cache drops the key set (a finalizer), or with the service.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["PooledServer"]


class PooledServer:
    """An engine server for one key set whose evaluations run on `workers` processes."""

    def __init__(self, plan: Any, relin_keys: bytes, workers: int) -> None:
        from .engine.workers import WorkerPool

        self._pool = WorkerPool(plan, relin_keys, workers)
        self._lock = threading.Lock()
        self.key_bytes = len(relin_keys)
        """The key set's bytes as received (the adapter's `key_size` counts them once per process)."""
        weakref.finalize(self, WorkerPool.close, self._pool)

    def evaluate(self, request: bytes) -> bytes:
        with self._lock:
            return bytes(self._pool.evaluate(request))
