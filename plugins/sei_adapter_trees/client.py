"""The client half of `trees-seal`: split bits encrypted per batch, decrypted sums checked and post-processed.

The client learns the splits (feature, threshold, comparison, NaN side) and the post-processing from
describe(); the keys are its own SEAL secret key and the relinearization keys the service computes with.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from sei_framework import AdapterClient, InvalidRequest, Prediction, decode_base64

from . import backend
from .artefacts import labels_from_json, split_from_json
from .request import batches

__all__ = ["TreesClient", "scheme_for"]

MAX_DESCRIBED = 1 << 20
"""The most features, outputs or splits a client believes a service describes."""


def scheme_for(plan: backend.Plan) -> str:
    """Keys serve every model with the same encryption parameters: the scheme names their fingerprint."""
    return "trees-" + plan.fingerprint()


def _unreadable(exc: Exception) -> InvalidRequest:
    return InvalidRequest(
        f"the service's description of the model cannot be read: {type(exc).__name__}: {exc}", code="invalid_response"
    )


class TreesClient(AdapterClient):
    """Encrypts rows as split bits, decrypts summed leaf values, reads them as the library's `predict` would."""

    def __init__(self, description: dict[str, Any]) -> None:
        super().__init__(description)
        try:
            self.n_features = description["n_features"]
            self.n_outputs = description["n_outputs"]
            if not all(type(n) is int and 1 <= n <= MAX_DESCRIBED for n in (self.n_features, self.n_outputs)):
                raise ValueError(f"n_features and n_outputs must be whole numbers from 1 to {MAX_DESCRIBED}")
            splits = description["splits"]
            if not isinstance(splits, list) or not 1 <= len(splits) <= MAX_DESCRIBED:
                raise ValueError("splits must be a non-empty list")
            self.splits = tuple(split_from_json(s) for s in splits)
            if any(s.feature >= self.n_features for s in self.splits):
                raise ValueError("a split names a feature the model does not take")
            self.readout = description["readout"]
            self.classes = labels_from_json(self.readout["classes"])
            self.plan = backend.plan_from_json(description["encryption"]["params"])
            self.accuracy = description["accuracy"]
            self.bound = float(self.accuracy["error_bound"])
            self.score_limit = float(self.accuracy["max_abs_sum"]) + self.bound
            if self.readout["n_outputs"] != self.n_outputs:
                raise ValueError("the readout's n_outputs is not the model's")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _unreadable(exc) from None
        self.key_scheme = scheme_for(self.plan)
        self.max_rows_per_request = self.plan.slots  # one full batch: fewer rows cost as much
        self._keys: backend.ClientKeys | None = None

    def generate_keys(self) -> tuple[bytes, bytes]:
        keys = backend.ClientKeys.generate(self.plan)
        return keys.secret_bytes(), keys.public_bytes()

    def use_keys(self, secret: bytes, public: bytes) -> None:
        """Refuse a pair whose relinearization keys are not the secret key's (or made for other parameters)."""
        self._keys = backend.ClientKeys.from_pair(self.plan, secret, public)

    def check_rows(self, rows: np.ndarray) -> None:
        """Rows the splits cannot route are refused: wrong feature count, infinities, non-numbers."""
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise InvalidRequest(
                f"the model takes rows of {self.n_features} features; got shape {rows.shape}", code="wrong_features"
            )
        if rows.dtype.kind not in "biuf":
            raise InvalidRequest(f"rows must be numbers, not {rows.dtype}", code="invalid_input")
        infinite = np.isinf(rows)
        if infinite.any():
            row, column = (int(i) for i in np.argwhere(infinite)[0])
            raise InvalidRequest(
                f"row {row}, feature {column} is infinite: only finite values and NaN (a missing value, routed as "
                "the model's library routes it) can be encrypted",
                code="invalid_input",
            )

    def encrypt(self, rows: np.ndarray) -> Any:
        self.check_rows(rows)
        keys = self.keyed(self._keys)
        bits = backend.split_bits(rows, self.splits)  # (n_rows, n_splits): 1 = the row goes right
        texts: list[str] = []
        for start in range(0, len(rows), self.plan.slots):
            texts.extend(base64.b64encode(b).decode("ascii") for b in keys.encrypt(bits[start : start + self.plan.slots]))
        return {"n_features": self.n_features, "n_rows": len(rows), "ciphertexts": texts}

    def decrypt(self, result: Any, n_rows: int) -> np.ndarray:
        """Raw scores (the library's decision values before post-processing) of shape (n_rows, n_outputs)."""
        expected = batches(n_rows, self.plan.slots) * self.n_outputs
        if not isinstance(result, list) or len(result) != expected:
            got = f"{len(result)}" if isinstance(result, list) else "no list"
            raise InvalidRequest(f"expected {expected} result ciphertexts, got {got}", code="invalid_response")
        keys = self.keyed(self._keys)
        parts = []
        for b, start in enumerate(range(0, n_rows, self.plan.slots)):
            size = min(self.plan.slots, n_rows - start)
            blobs = [decode_base64(t, "result", code="invalid_response") for t in result[b * self.n_outputs : (b + 1) * self.n_outputs]]
            try:
                parts.append(keys.decrypt(blobs, size))  # (size, n_outputs); the response's level is checked
            except backend.EngineInputError as exc:
                raise InvalidRequest(f"the service's result cannot be decrypted: {exc}", code="invalid_response") from None
        sums = np.vstack(parts)
        if not np.isfinite(sums).all() or np.abs(sums).max() > self.score_limit:
            raise InvalidRequest(
                f"a decrypted sum lies beyond what the model's leaves can add up to ({self.score_limit:g}): the result "
                "was not computed from this model and these keys",
                code="score_out_of_range",
            )
        return backend.raw_scores(self.readout, sums)

    def interpret(self, scores: np.ndarray) -> Prediction:
        predictions, probabilities = backend.interpret(self.readout, self.classes, scores, self.bound)
        return Prediction(scores, predictions, probabilities)
