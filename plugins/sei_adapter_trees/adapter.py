"""Model adapter `trees-seal`: tree ensembles (scikit-learn, XGBoost, LightGBM) on batched SEAL ciphertexts.

The client encrypts one bit per split for up to `slots` rows per ciphertext; the service walks each tree
with ciphertext products and sums leaf values; the client decrypts one ciphertext per output and applies
the library's post-processing. The method, its cost and what it reveals: docs/trees.md.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, ClassVar

from sei_framework import InvalidRequest, ModelAdapter, RequestSize, base64_size, decode_base64

from . import backend
from .artefacts import load_ensemble, readout, split_to_json
from .client import TreesClient, scheme_for
from .options import TreesOptions
from .pool import PooledServer
from .request import batch_sizes, parse_request

__all__ = ["TreesAdapter"]


def _key_memory(key_bytes: int, workers: int) -> int:
    """What one key set holds in the service: converted here, and as received in each worker process."""
    return int(key_bytes * backend.KEY_EXPANSION) if workers == 1 else key_bytes * (1 + workers)


class TreesAdapter(ModelAdapter):
    """Scores tree ensembles on encrypted split bits; every ciphertext is checked before SEAL reads it."""

    name: ClassVar[str] = "trees-seal"
    Options = TreesOptions
    requirements = ("seal-python==4.4.0",)
    key_expansion: ClassVar[float] = backend.KEY_EXPANSION

    @classmethod
    def prepare(cls, source: Path, options: TreesOptions, dest: Path) -> dict[str, Any]:  # type: ignore[override]  # the core validates `options` with cls.Options before it calls prepare
        """Import, plan, refuse or verify (building.prepare_trees); the artefacts are JSON and npz."""
        from .building import prepare_trees  # Treelite and the model's library: build time only

        return prepare_trees(source, options, dest)

    @classmethod
    def request_size(cls, metadata: dict[str, Any]) -> RequestSize:
        """A request costs one message per batch of `slots` rows (base64 and the JSON quotes included)."""
        plan = backend.plan_from_json(metadata["plan"])
        return RequestSize(
            batch_bytes=base64_size(plan.request_bytes) + 4,
            batch_rows=plan.slots,
            public_key_bytes=base64_size(plan.key_bytes) + 32,
            key_bytes=plan.key_bytes,
            key_memory_bytes=_key_memory(plan.key_bytes, metadata.get("workers", 1)),
        )

    def __init__(self, model_dir: Path, metadata: dict[str, Any], options: TreesOptions) -> None:
        super().__init__(model_dir, metadata, options)
        self.ensemble = load_ensemble(model_dir)
        self.plan = backend.plan_from_json(metadata["plan"])
        self.server = backend.Server(self.ensemble, self.plan)

    def describe(self) -> dict[str, Any]:
        """What the client needs and learns: the splits (never tree structure or leaf values), the
        post-processing, the parameters, the proven error bound, what a request costs, and the model's
        feature names when it has them (a client then chooses columns by name)."""
        return {
            **({"feature_names": self.metadata["feature_names"]} if self.metadata.get("feature_names") else {}),
            "n_features": self.ensemble.n_features,
            "n_outputs": self.ensemble.n_outputs,
            "estimator": self.metadata["estimator"],
            "mode": self.metadata["mode"],
            **({"grid": self.metadata["grid"]} if "grid" in self.metadata else {}),
            "splits": [split_to_json(s) for s in self.ensemble.splits],
            "readout": readout(self.ensemble),
            "encryption": {
                "library": "seal-python 4.4.0 (Microsoft SEAL 4)",
                "scheme": self.plan.scheme_name,
                "params": self.plan.to_json(),
                "security_bits": 128,
            },
            "accuracy": self.metadata["accuracy"],
            "request": {
                "rows_per_batch": self.plan.slots,
                "bytes_per_batch": self.plan.request_bytes,
                "response_bytes_per_batch": self.plan.response_bytes,
                "key_bytes": self.plan.key_bytes,
            },
            "key_scheme": scheme_for(self.plan),
        }

    def load_public_keys(self, data: bytes) -> Any:
        try:
            return self.server.load_keys(data, self.metadata.get("workers", 1))
        except backend.EngineInputError as exc:
            raise InvalidRequest(f"relinearization keys: {exc}", code="invalid_keys") from None

    def key_size(self, keys: Any) -> int | None:
        """A pooled key set counts in each worker process too; an in-process one is measured generically."""
        if isinstance(keys, PooledServer):
            return _key_memory(keys.key_bytes, self.metadata.get("workers", 1))
        return None

    def count_rows(self, data: Any) -> int:
        return parse_request(data, n_features=self.ensemble.n_features, slots=self.plan.slots).n_rows

    def predict(self, data: Any, keys: Any) -> Any:
        request = parse_request(data, n_features=self.ensemble.n_features, slots=self.plan.slots)
        sizes = batch_sizes(request.n_rows, self.plan.slots)
        messages = [decode_base64(text, f"batch {i}") for i, text in enumerate(request.batches)]
        for i, (message, size) in enumerate(zip(messages, sizes, strict=True)):
            try:
                self.server.check(message, size)  # every batch's header, plan, rows and size before any work
            except backend.EngineInputError as exc:
                raise InvalidRequest(f"batch {i}: {exc}", code="invalid_ciphertext") from None
        results: list[str] = []
        for i, message in enumerate(messages):
            try:
                response = self.server.evaluate(keys, message)
            except backend.EngineInputError as exc:
                raise InvalidRequest(f"batch {i}: {exc}", code="invalid_ciphertext") from None
            results.append(base64.b64encode(response).decode("ascii"))
        return results

    @classmethod
    def client(cls, description: dict[str, Any]) -> TreesClient:
        return TreesClient(description)
