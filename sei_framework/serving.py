"""The runtime behind score.py: load a build, hold its models, dispatch each request."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from .base import KeyTransport, ModelAdapter
from .build import Build, model_dir_from_environment
from .errors import InvalidRequest, SeiError, UnknownKey
from .fingerprint import FINGERPRINT_FIELD, check_fingerprint, description_fingerprint
from .keys import check_key_id, key_id_for
from .plugins import SeiPlugins, get_plugin_manager
from .state import OPAQUE_FACTOR, KeyCache, ServiceState, measure_keys, open_state

__all__ = [
    "ScoringService",
    "error_body",
    "key_size",
    "load_models",
    "model_description",
]

log = logging.getLogger(__name__)
MB = 1024 * 1024


def key_size(adapter: ModelAdapter, keys: Any, raw_size: int) -> int:
    """Bytes an adapter's converted keys hold: its own `key_size(keys)` when it has one (optional,
    so third-party adapters keep working), else measured generically (see state.measure_keys), native
    objects it cannot see charged at the adapter's `key_expansion` per raw key byte."""
    own = getattr(adapter, "key_size", None)
    if callable(own):
        size = own(keys)
        if isinstance(size, int) and size >= 0:
            return size
    expansion = getattr(adapter, "key_expansion", None)
    if not isinstance(expansion, (int, float)) or not expansion >= 0:
        expansion = OPAQUE_FACTOR
    return measure_keys(keys, raw_size, expansion)


def load_models(build: Build, model_dir: str | os.PathLike[str] | None = None, plugins: SeiPlugins | None = None) -> dict[str, ModelAdapter]:
    """Every model of `build`, initialised by its adapter (model files from `model_dir`, default the
    build's own); the plugins the build names are loaded strictly (a broken one is fatal)."""
    models_root = Path(model_dir) if model_dir is not None else build.models_dir
    if plugins is None:
        plugins = get_plugin_manager(only=build.manifest["plugins"], strict=True)
    registry = plugins.model_adapters()
    adapters = {}
    for spec in build.manifest["models"]:
        adapter_cls = registry.get(spec["adapter"])
        options = adapter_cls.Options.model_validate(spec["options"])
        adapters[spec["name"]] = adapter_cls(models_root / spec["name"], spec["metadata"], options)
    return adapters


def model_description(adapter: ModelAdapter) -> dict[str, Any]:
    """One model as `describe` shows it, before the service adds its limits: what a client encrypts for."""
    return {"adapter": adapter.name, **adapter.describe()}


def error_body(error: SeiError) -> dict[str, Any]:
    """The JSON body of an error answer; the one place errors become responses."""
    return {"error": {"code": error.code, "message": error.message}}


class ScoringService:
    """Several models behind one `run()`: parse, check limits, fetch keys, dispatch, answer."""

    def __init__(
        self,
        build: Build,
        adapters: dict[str, ModelAdapter],
        transport: KeyTransport,
        state: ServiceState | None = None,
    ) -> None:
        self.build = build
        self.adapters = adapters
        self.transport = transport
        limits = build.manifest["limits"]
        self.max_request_bytes = int(limits["max_request_mb"] * MB)
        self.max_rows = build.max_rows
        """The config's rows per request; each model's own (`model_rows`) is what the service enforces."""
        self.model_rows = build.model_rows()
        self.max_key_bytes = int(limits["max_public_key_mb"] * MB)
        if state is None:
            state = open_state(build.manifest.get("state"), limits, build.name, models=len(adapters))
        self.state = state
        self._fingerprints: dict[str, str] = {}

    @property
    def keys(self) -> KeyCache:
        """This worker's converted keys."""
        return self.state.keys

    @classmethod
    def from_build(cls, build_dir: str | Path, model_dir: str | Path | None = None) -> ScoringService:
        """Load the plugins the build names (failures are fatal) and initialise every model."""
        build = Build.open(build_dir)
        plugins = get_plugin_manager(only=build.manifest["plugins"], strict=True)
        adapters = load_models(build, model_dir, plugins)
        transport_spec = build.manifest["key_transport"]
        transport_cls = plugins.key_transports().get(transport_spec["name"])
        transport = transport_cls(transport_cls.Options.model_validate(transport_spec["options"]))
        log.info("SEI service %s ready with models: %s", build.name, ", ".join(adapters))
        return cls(build, adapters, transport)

    @classmethod
    def from_environment(cls, script_dir: str | Path) -> ScoringService:
        """As score.py's init(): the build beside score.py, model files under AZUREML_MODEL_DIR."""
        return cls.from_build(script_dir, model_dir_from_environment())

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
                name: {
                    **model_description(adapter),
                    "limits": {"max_rows_per_request": self.model_rows.get(name, self.max_rows)},
                }
                for name, adapter in self.adapters.items()
            },
            "key_transport": {"name": self.transport.name, "options": self.transport.client_options()},
            "limits": {
                "max_rows_per_request": self.max_rows,
                "max_request_bytes": self.max_request_bytes,
                "max_requests_per_key": self.state.max_requests,
                "quota_window_s": self.state.window_s,
            },
            "state": self.state.describe(),
        }

    def fingerprint(self, name: str) -> str:
        """The fingerprint of model `name`'s description (fingerprint.py), computed once."""
        if name not in self._fingerprints:
            self._fingerprints[name] = description_fingerprint(model_description(self.adapters[name]))
        return self._fingerprints[name]

    def predict(self, request: dict[str, Any]) -> Any:
        """Score one request; a request without `model` (the tutorial's) gets the bare result back. A request
        made for another version of the model (its `description_sha256`) is refused (`description_changed`)."""
        bare = "model" not in request and len(self.adapters) == 1
        name = next(iter(self.adapters)) if bare else request.get("model")
        adapter = self.adapters.get(name) if isinstance(name, str) else None
        if adapter is None or not isinstance(name, str):
            raise InvalidRequest(
                f"unknown model {name!r}; this service has: {', '.join(sorted(self.adapters))}",
                code="unknown_model",
            )
        check_fingerprint(request.get(FINGERPRINT_FIELD), self.fingerprint(name), name)
        key_id = check_key_id(request.get("key_id"))
        if "data" not in request:
            raise InvalidRequest("request has no 'data' field", code="missing_data")
        data = request["data"]
        rows = adapter.count_rows(data)
        limit = self.model_rows.get(name, self.max_rows)
        if rows > limit:
            raise InvalidRequest(
                f"request has {rows} rows; this service accepts at most {limit} for model {name!r}",
                code="too_many_rows",
            )
        self.state.check_quota(key_id)  # a spent key costs no key fetch or conversion
        slot = (self._cache_key(key_id, request), name)
        keys = self._converted_keys(key_id, slot, adapter, request)
        self.state.charge_quota(key_id)  # the atomic gate: exactly the quota passes, across workers
        result = adapter.predict(data, keys)
        self.state.keys.used(slot)  # the second successful use protects the keys from a flood of new ones
        return result if bare else {"model": name, "key_id": key_id, "result": result}

    def _cache_key(self, key_id: str, request: dict[str, Any]) -> str:
        """Content-addressed keys are cached by key id; others apart, by where they came from."""
        source = self.transport.unverified_source(key_id, request)
        return key_id if source is None else f"{key_id}@{hashlib.sha256(source.encode()).hexdigest()[:16]}"

    def _converted_keys(self, key_id: str, slot: tuple[str, str], adapter: ModelAdapter, request: dict[str, Any]) -> Any:
        """Keys as `adapter` uses them: from this worker's cache, else fetched (shared state first,
        then the key transport), checked, converted, and only then cached and shared."""
        keys = self.state.keys.get(slot)
        if keys is not None:
            return keys
        cache_key = slot[0]
        raw = self.state.shared_public_keys(cache_key)
        shared = raw is not None
        if raw is None:
            raw = self.transport.fetch_at_most(key_id, request, self.max_key_bytes)
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
        keys = adapter.load_public_keys(raw)  # the adapter's checks: nothing is kept if they fail
        if not shared:
            self.state.share_public_keys(cache_key, raw)
        self.state.keys.put(slot, keys, len(raw), key_size(adapter, keys, len(raw)))
        return keys
