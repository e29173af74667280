"""Service state that outlives a request: converted keys, published keys and quota counts.

One small interface, `ServiceState`, with two backends: `memory` (one process; today's default)
and `redis` (shared by every worker and replica). Converted keys are native objects, so they
always stay in the worker's own bounded `KeyCache`; the shared backend adds the raw public keys
(published once to any replica, found by all) and the quota counts (atomic across workers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..errors import QuotaExceeded, SeiError, StateUnavailable
from .keycache import OPAQUE_FACTOR, PROBATION_SHARE, KeyCache, measure_keys

__all__ = [
    "BACKENDS",
    "OPAQUE_FACTOR",
    "PROBATION_SHARE",
    "KeyCache",
    "QuotaExceeded",
    "ServiceState",
    "StateUnavailable",
    "measure_keys",
    "open_state",
    "state_requirements",
]

BACKENDS = ("memory", "redis")


def quota_message(key_id: str, count: int, window_s: float, retry_s: float) -> str:
    return (
        f"key id {key_id} made {count} predict requests in this {window_s:g} s window, "
        f"the most this service allows; retry in {retry_s:.0f} s"
    )


class ServiceState(ABC):
    """What `ScoringService` keeps between requests; it calls only these methods."""

    backend: ClassVar[str]

    def __init__(self, keys: KeyCache, max_requests: int | None, window_s: float) -> None:
        self.keys = keys
        """Converted keys of this worker process (native objects: never shared)."""
        self.max_requests = max_requests
        self.window_s = window_s

    @abstractmethod
    def check_quota(self, key_id: str) -> None:
        """Raise QuotaExceeded when `key_id`'s window is spent, without counting a request."""

    @abstractmethod
    def charge_quota(self, key_id: str) -> None:
        """Count one request for `key_id` atomically, or raise QuotaExceeded: the one gate."""

    def shared_public_keys(self, cache_key: str) -> bytes | None:
        """Raw public keys another worker or replica checked and stored, or None."""
        return None

    def share_public_keys(self, cache_key: str, raw: bytes) -> None:  # noqa: B027 - optional: one process shares nothing
        """Offer checked, successfully converted public keys to every other worker and replica."""

    def describe(self) -> dict[str, Any]:
        """For the service's `describe` answer: never a URL or a secret."""
        return {"backend": self.backend}

    def close(self) -> None:  # noqa: B027 - optional: nothing to release by default
        """Release connections (tests; a worker's exit does it too)."""


def state_requirements(state: dict[str, Any] | None) -> tuple[str, ...]:
    """pip requirements a service needs for its state backend."""
    return ("redis>=5",) if state and state.get("backend") == "redis" else ()


def open_state(
    state: dict[str, Any] | None, limits: dict[str, Any], service: str, *, models: int = 1
) -> ServiceState:
    """The state backend a build's manifest names (`memory` when it names none); `models`: how
    many models share the keys (with several, the memory backend keeps raw keys too)."""
    state = dict(state or {})
    keys = KeyCache(int(limits["key_cache_mb"] * 1024 * 1024))
    max_requests = limits.get("max_requests_per_key")
    window_s = float(limits.get("quota_window_s", 3600))
    backend = state.pop("backend", "memory")
    if backend == "memory":
        from .memory import MemoryState

        return MemoryState(keys, max_requests, window_s, keep_raw=models > 1)
    if backend == "redis":
        from .redis_store import RedisState

        return RedisState(keys, max_requests, window_s, namespace=state.get("namespace") or service, **{
            k: state[k] for k in ("url_env", "prefix", "public_key_ttl_s", "timeout_s") if k in state
        })
    raise SeiError(f"unknown state backend {backend!r}; available: {', '.join(BACKENDS)}", code="invalid_config")
