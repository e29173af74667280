"""State backend `memory`: quota counts and keys of one process (a restart forgets them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ClassVar

from . import KeyCache, QuotaExceeded, ServiceState, quota_message

__all__ = ["MemoryState", "RequestQuota"]

RAW = ""
"""The model name of a cache slot that holds raw public keys (model names are never empty)."""


class RequestQuota:
    """Predict requests per key id in fixed windows; only keys seen in a live window are kept.

    Counts are per process: a service with N workers lets a key make up to N times the quota.
    """

    def __init__(self, max_requests: int | None, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_requests = max_requests
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # key id -> (window start, requests)
        self._lock = threading.Lock()
        self._next_sweep = clock() + window_s

    def check(self, key_id: str) -> None:
        """Raise QuotaExceeded when `key_id`'s window is spent, without counting a request."""
        self._count(key_id, charge=False)

    def charge(self, key_id: str) -> None:
        """Count one request for `key_id`, or raise QuotaExceeded when its window is spent."""
        self._count(key_id, charge=True)

    def _count(self, key_id: str, *, charge: bool) -> None:
        if self.max_requests is None:
            return
        now = self.clock()
        with self._lock:
            self._sweep(now)
            start, count = self._windows.get(key_id, (now, 0))
            if now - start >= self.window_s:
                start, count = now, 0
            if count >= self.max_requests:
                raise QuotaExceeded(quota_message(key_id, count, self.window_s, max(0.0, start + self.window_s - now)))
            if charge:
                self._windows[key_id] = (start, count + 1)

    def _sweep(self, now: float) -> None:
        """Drop windows that have ended, at most once per window length."""
        if now < self._next_sweep:
            return
        self._windows = {k: v for k, v in self._windows.items() if now - v[0] < self.window_s}
        self._next_sweep = now + self.window_s

    def __len__(self) -> int:
        return len(self._windows)


class MemoryState(ServiceState):
    """Everything in this worker process: right for one worker; N workers mean N quotas.

    With `keep_raw` (a service of several models), published raw keys also wait in the key cache,
    within its budget, so keys published once serve every model of their key scheme.
    """

    backend: ClassVar[str] = "memory"

    def __init__(self, keys: KeyCache, max_requests: int | None, window_s: float, *, keep_raw: bool = False) -> None:
        super().__init__(keys, max_requests, window_s)
        self.quota = RequestQuota(max_requests, window_s)
        self.keep_raw = keep_raw

    def shared_public_keys(self, cache_key: str) -> bytes | None:
        if not self.keep_raw:
            return None
        raw = self.keys.get((cache_key, RAW))
        if raw is not None:
            self.keys.used((cache_key, RAW))
        return raw

    def share_public_keys(self, cache_key: str, raw: bytes) -> None:
        if self.keep_raw:
            self.keys.put((cache_key, RAW), raw, len(raw))

    def check_quota(self, key_id: str) -> None:
        self.quota.check(key_id)

    def charge_quota(self, key_id: str) -> None:
        self.quota.charge(key_id)
