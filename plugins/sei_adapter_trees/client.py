"""The client half of `trees-seal`: split bits encrypted per batch, decrypted sums checked and post-processed.

The client learns the splits (feature, threshold, comparison, NaN side) and the post-processing from
describe(); its keys are a SEAL secret key and the relinearization keys the service computes with.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from sei_framework import AdapterClient, InvalidRequest, Prediction, decode_base64

from . import backend
from .artefacts import labels_from_json, split_from_json
from .request import batch_sizes

__all__ = ["TreesClient", "scheme_for"]

MAX_DESCRIBED = 1 << 20
"""The most features, outputs or splits a client believes a service describes."""


def scheme_for(plan: backend.Plan) -> str:
    """Keys serve every model with the same encryption parameters: the scheme names their fingerprint."""
    return "trees-" + plan.key_fingerprint()


def _read(description: dict[str, Any]) -> tuple[Any, backend.Plan, dict[str, Any]]:
    """The client's view of the model (weightless trees), its plan and its accuracy; InvalidRequest if unreadable."""
    try:
        n_features, n_outputs = description["n_features"], description["n_outputs"]
        if not all(type(n) is int and 1 <= n <= MAX_DESCRIBED for n in (n_features, n_outputs)):
            raise ValueError(f"n_features and n_outputs must be whole numbers from 1 to {MAX_DESCRIBED}")
        splits = description["splits"]
        if not isinstance(splits, list) or not 1 <= len(splits) <= MAX_DESCRIBED:
            raise ValueError("splits must be a non-empty list")
        readout = description["readout"]
        if readout["n_outputs"] != n_outputs or type(readout["n_trees"]) is not int or not 1 <= readout["n_trees"] <= MAX_DESCRIBED:
            raise ValueError("the readout's n_outputs or n_trees does not fit the model")
        model = backend.readout_ensemble(
            n_features, tuple(split_from_json(s) for s in splits), readout, _classes(readout["classes"])
        )
        plan = backend.plan_from_json(description["encryption"]["params"])
        accuracy = description["accuracy"]
        for key in ("error_bound", "max_abs_sum"):
            if type(accuracy[key]) not in (int, float) or not 0 < accuracy[key] < 2.0**64:
                raise ValueError(f"accuracy.{key} must be a positive number")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidRequest(
            f"the service's description of the model cannot be read: {type(exc).__name__}: {exc}",
            code="invalid_response",
        ) from None
    return model, plan, accuracy


def _classes(data: Any) -> tuple[Any, ...] | None:
    labels = labels_from_json(data)
    return None if labels is None else tuple(labels.tolist())


class TreesClient(AdapterClient):
    """Encrypts rows as split bits, decrypts summed leaf values, reads them as the library's `predict` would."""

    allows_nan = True  # a missing value follows each split's default direction (refused on a thermometer grid)

    def __init__(self, description: dict[str, Any]) -> None:
        super().__init__(description)
        self.model, self.plan, accuracy = _read(description)
        self.bound = float(accuracy["error_bound"])  # on raw scores
        self.sum_limit = float(accuracy["max_abs_sum"]) + self.plan.error_bound
        self.classes = labels_from_json(description["readout"]["classes"])
        self.thermometer = description.get("mode") == "thermometer"
        self.key_scheme = scheme_for(self.plan)
        self.max_rows_per_request = self.plan.slots  # one full batch: fewer rows cost as much
        self._keys: Any = None

    def generate_keys(self) -> tuple[bytes, bytes]:
        keys = backend.new_keys(self.plan)
        return keys.secret_key(), keys.relin_keys()

    def use_keys(self, secret: bytes, public: bytes) -> None:
        """Refuse a pair whose relinearization keys are not the secret key's (or made for other parameters)."""
        self._keys = backend.keys_from_pair(self.plan, secret, public)

    def check_rows(self, rows: np.ndarray) -> np.ndarray:
        """The bits of rows the splits can route; wrong feature counts, infinities and non-numbers are refused."""
        n_features = self.model.n_features
        if rows.ndim != 2 or rows.shape[1] != n_features:
            raise InvalidRequest(
                f"the model takes rows of {n_features} features; got shape {rows.shape}", code="wrong_features"
            )
        if rows.dtype.kind not in "biuf":
            raise InvalidRequest(f"rows must be numbers, not {rows.dtype}", code="input_out_of_bounds")
        if self.thermometer and np.isnan(rows).any():
            row, column = (int(i) for i in np.argwhere(np.isnan(rows))[0])
            raise InvalidRequest(
                f"row {row}, feature {column} is NaN: a model served on a thermometer grid cannot route missing values",
                code="input_out_of_bounds",
            )
        try:
            return backend.split_bits(rows, n_features, self.model.splits)
        except backend.RowError as exc:  # NaN is routed as the library routes a missing value
            raise InvalidRequest(str(exc), code="input_out_of_bounds") from None

    def encrypt(self, rows: np.ndarray) -> Any:
        bits = self.check_rows(rows)
        messages = backend.encrypt_batches(self.keyed(self._keys), bits, self.plan.slots)
        return {"n_features": self.model.n_features, "n_rows": len(rows),
                "batches": [base64.b64encode(m).decode("ascii") for m in messages]}  # fmt: skip

    def decrypt(self, result: Any, n_rows: int) -> np.ndarray:
        """Raw scores (the library's margins before its link function) of shape (n_rows, n_outputs)."""
        sizes = batch_sizes(n_rows, self.plan.slots)
        if not isinstance(result, list) or len(result) != len(sizes):
            got = len(result) if isinstance(result, list) else "no list"
            raise InvalidRequest(f"expected {len(sizes)} result batches, got {got}", code="invalid_response")
        keys = self.keyed(self._keys)
        parts = []
        for text, size in zip(result, sizes, strict=True):
            message = decode_base64(text, "result batch", code="invalid_response")
            try:
                parts.append(backend.decrypt_batch(keys, message, size))  # its size, count and level checked
            except backend.EngineInputError as exc:
                raise InvalidRequest(f"the service's result cannot be decrypted: {exc}", code="invalid_response") from None
        sums = np.vstack(parts)
        if not np.isfinite(sums).all() or np.abs(sums).max() > self.sum_limit:
            raise InvalidRequest(
                f"a decrypted sum lies beyond what the model's leaves can add up to ({self.sum_limit:g}): the result "
                "was not computed from this model and these keys",
                code="score_out_of_range",
            )
        return backend.raw_scores(self.model, sums)

    def interpret(self, scores: np.ndarray) -> Prediction:
        predictions, probabilities = backend.interpret(self.model, scores, self.bound)
        return Prediction(scores, predictions, probabilities)
