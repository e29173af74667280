"""The runtime behind score.py: load a build, hold its models, dispatch each request."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import KeyTransport, ModelAdapter
from .build import Build
from .errors import InvalidRequest, SeiError, UnknownKey
from .keys import check_key_id, key_id_for
from .plugins import get_plugin_manager

__all__ = ["KeyCache", "QuotaExceeded", "RequestQuota", "ScoringService", "error_body"]

log = logging.getLogger(__name__)
MB = 1024 * 1024


@dataclass
class _CachedKeys:
    raw: bytes
    converted: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.raw) * (1 + len(self.converted))


class KeyCache:
    """Public keys by key id, least recently used first out, bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _CachedKeys] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_id: str) -> _CachedKeys | None:
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is not None:
                self._entries.move_to_end(key_id)
            return entry

    def put(self, key_id: str, raw: bytes) -> _CachedKeys:
        with self._lock:
            entry = self._entries[key_id] = _CachedKeys(raw)
            self._entries.move_to_end(key_id)
            self._evict()
            return entry

    def converted(self, key_id: str, entry: _CachedKeys, model: str, convert: Callable[[bytes], Any]) -> Any:
        """The keys as `model`'s adapter uses them, converted once per key id and model."""
        if model not in entry.converted:
            value = convert(entry.raw)
            with self._lock:
                entry.converted[model] = value
                self._evict(keep=key_id)
        return entry.converted[model]

    def _evict(self, keep: str | None = None) -> None:
        while self.total_bytes > self.max_bytes and len(self._entries) > 1:
            oldest = next(k for k in self._entries if k != keep)
            del self._entries[oldest]

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


class QuotaExceeded(InvalidRequest):
    """A key id made more predict requests than the quota allows in the current window."""

    code = "quota_exceeded"
    status = 429


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
                retry = max(0.0, start + self.window_s - now)
                raise QuotaExceeded(
                    f"key id {key_id} made {count} predict requests in this {self.window_s:g} s window, "
                    f"the most this service allows; retry in {retry:.0f} s"
                )
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


def error_body(error: SeiError) -> dict[str, Any]:
    """The JSON body of an error answer; the one place errors become responses."""
    return {"error": {"code": error.code, "message": error.message}}


class ScoringService:
    """Several models behind one `run()`: parse, check limits, fetch keys, dispatch, answer."""

    def __init__(self, build: Build, adapters: dict[str, ModelAdapter], transport: KeyTransport) -> None:
        self.build = build
        self.adapters = adapters
        self.transport = transport
        limits = build.manifest["limits"]
        self.max_request_bytes = int(limits["max_request_mb"] * MB)
        self.max_rows = int(limits["max_rows_per_request"])
        self.max_key_bytes = int(limits["max_public_key_mb"] * MB)
        self.keys = KeyCache(int(limits["key_cache_mb"] * MB))
        self.quota = RequestQuota(limits.get("max_requests_per_key"), float(limits.get("quota_window_s", 3600)))

    @classmethod
    def from_build(cls, build_dir: str | Path, model_dir: str | Path | None = None) -> ScoringService:
        """Load the plugins the build names (failures are fatal) and initialise every model."""
        build = Build.open(build_dir)
        models_root = Path(model_dir) if model_dir is not None else build.models_dir
        plugins = get_plugin_manager(only=build.manifest["plugins"], strict=True)
        adapter_registry, transports = plugins.model_adapters(), plugins.key_transports()
        adapters = {}
        for spec in build.manifest["models"]:
            adapter_cls = adapter_registry.get(spec["adapter"])
            options = adapter_cls.Options.model_validate(spec["options"])
            adapters[spec["name"]] = adapter_cls(models_root / spec["name"], spec["metadata"], options)
        transport_spec = build.manifest["key_transport"]
        transport_cls = transports.get(transport_spec["name"])
        transport = transport_cls(transport_cls.Options.model_validate(transport_spec["options"]))
        log.info("SEI service %s ready with models: %s", build.name, ", ".join(adapters))
        return cls(build, adapters, transport)

    @classmethod
    def from_environment(cls, script_dir: str | Path) -> ScoringService:
        """As score.py's init(): the build beside score.py, model files under AZUREML_MODEL_DIR."""
        model_dir = None
        azureml_dir = os.environ.get("AZUREML_MODEL_DIR")
        if azureml_dir:
            found = sorted(Path(azureml_dir).glob("**/models"))
            model_dir = found[0] if found else None
        return cls.from_build(script_dir, model_dir)

    def handle(self, raw: str | bytes) -> tuple[dict[str, Any], int]:
        """Answer one raw request body with (JSON body, HTTP status); never raises."""
        try:
            return self._dispatch(self._parse(raw)), 200
        except SeiError as exc:
            log.info("request refused: %s (%s)", exc.code, exc.message)
            return error_body(exc), exc.status
        except Exception:
            log.exception("internal error while scoring")
            return {"error": {"code": "internal_error", "message": "internal error; see the service log"}}, 500

    def _parse(self, raw: str | bytes) -> dict[str, Any]:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        if len(raw) > self.max_request_bytes:
            raise InvalidRequest(
                f"request is {len(raw)} bytes; this service accepts at most {self.max_request_bytes}",
                code="request_too_large",
            )
        try:
            request = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidRequest("request body is not valid JSON", code="invalid_json") from None
        if not isinstance(request, dict):
            raise InvalidRequest("request body must be a JSON object")
        return request

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op", "predict")
        if op == "describe":
            return self.describe()
        if op != "predict":
            raise InvalidRequest(f"unknown op {op!r}; use 'predict' or 'describe'", code="unknown_op")
        return self.predict(request)

    def describe(self) -> dict[str, Any]:
        """Models, their adapters and encryption parameters, and the key transport."""
        return {
            "service": self.build.name,
            "sei_version": self.build.manifest["sei_version"],
            "models": {
                name: {"adapter": adapter.name, **adapter.describe()} for name, adapter in self.adapters.items()
            },
            "key_transport": {"name": self.transport.name, "options": self.transport.client_options()},
            "limits": {
                "max_rows_per_request": self.max_rows,
                "max_request_bytes": self.max_request_bytes,
                "max_requests_per_key": self.quota.max_requests,
                "quota_window_s": self.quota.window_s,
            },
        }

    def predict(self, request: dict[str, Any]) -> Any:
        """Score one request; a request without `model` (the tutorial's) gets the bare result back."""
        bare = "model" not in request and len(self.adapters) == 1
        name = next(iter(self.adapters)) if bare else request.get("model")
        adapter = self.adapters.get(name) if isinstance(name, str) else None
        if adapter is None:
            raise InvalidRequest(
                f"unknown model {name!r}; this service has: {', '.join(sorted(self.adapters))}",
                code="unknown_model",
            )
        key_id = check_key_id(request.get("key_id"))
        if "data" not in request:
            raise InvalidRequest("request has no 'data' field", code="missing_data")
        data = request["data"]
        rows = adapter.count_rows(data)
        if rows > self.max_rows:
            raise InvalidRequest(
                f"request has {rows} rows; this service accepts at most {self.max_rows}", code="too_many_rows"
            )
        self.quota.check(key_id)  # a spent key costs no key fetch or conversion
        cache_key = self._cache_key(key_id, request)
        entry = self._public_keys(key_id, cache_key, request)
        keys = self.keys.converted(cache_key, entry, name, adapter.load_public_keys)
        self.quota.charge(key_id)
        result = adapter.predict(data, keys)
        return result if bare else {"model": name, "key_id": key_id, "result": result}

    def _cache_key(self, key_id: str, request: dict[str, Any]) -> str:
        """Content-addressed keys are cached by key id; others apart, by where they came from."""
        source = self.transport.unverified_source(key_id, request)
        return key_id if source is None else f"{key_id}@{hashlib.sha256(source.encode()).hexdigest()[:16]}"

    def _public_keys(self, key_id: str, cache_key: str, request: dict[str, Any]):
        entry = self.keys.get(cache_key)
        if entry is not None:
            return entry
        raw = self.transport.fetch(key_id, request)
        if raw is None:
            raise UnknownKey(
                f"no public keys for key id {key_id}; publish them through the "
                f"{self.transport.name!r} key transport and retry"
            )
        if len(raw) > self.max_key_bytes:
            raise InvalidRequest(
                f"public keys are {len(raw)} bytes; this service accepts at most {self.max_key_bytes}",
                code="keys_too_large",
            )
        if cache_key == key_id and key_id_for(raw) != key_id:
            raise InvalidRequest("public keys do not match their key id", code="key_mismatch")
        return self.keys.put(cache_key, raw)
