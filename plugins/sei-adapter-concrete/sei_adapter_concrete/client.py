"""The client half of `concrete-ml`: TFHE keys, encryption and decryption with concrete-python only.

Everything it needs comes from the service's description: the circuit's client specs (checked
against the circuit id the key scheme is named after) and the quantisation parameters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

import numpy as np

from sei_framework import AdapterClient, InvalidRequest, Prediction

from . import numerics

__all__ = ["ConcreteClient"]

ACTIVATIONS, TASKS = ("none", "logistic"), ("classifier", "regressor")


def _unreadable(problem: str) -> InvalidRequest:
    return InvalidRequest(f"the service's description of the model cannot be read: {problem}", code="invalid_response")


class ConcreteClient(AdapterClient):
    """One ciphertext per row; one key pair per compiled circuit."""

    max_rows_per_request = 8

    def __init__(self, description: dict[str, Any]) -> None:
        super().__init__(description)
        try:
            self.specs = base64.b64decode(description["client_specs"], validate=True)
            circuit = description["circuit"]
            self.n_features = int(description["n_features"])
            self.n_outputs = int(description["n_outputs"])
            self.task, self.classes = description["task"], description["classes"]
            quantization = description["quantization"]
            self.input_quantizers = quantization["input_quantizers"]
            self.output_quantizer = quantization["output_quantizer"]
            self.activation, self.offset = quantization["activation"], float(quantization["offset"])
            self.has_probabilities = bool(description["has_probabilities"])
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise _unreadable(f"{type(exc).__name__}: {exc}") from None
        if hashlib.sha256(self.specs).hexdigest() != circuit or description.get("key_scheme") != f"concrete-{circuit[:32]}":
            raise _unreadable("its client specs are not those of the circuit it names")
        if self.activation not in ACTIVATIONS or self.task not in TASKS or len(self.input_quantizers) not in (1, self.n_features):
            raise _unreadable("its quantisation is not one this client reads")
        if self.task == "classifier" and (not isinstance(self.classes, list) or len(self.classes) < 2):
            raise _unreadable("a classifier without its classes")
        self.key_scheme = description["key_scheme"]
        self._client: Any = None  # a concrete fhe.Client, once use_keys has a pair

    def _fhe_client(self, keys: Any = None) -> Any:
        from concrete import fhe

        client = fhe.Client(fhe.ClientSpecs.deserialize(self.specs))
        if keys is not None:
            client.keys = keys
        return client

    def generate_keys(self) -> tuple[bytes, bytes]:
        """The whole key set (secret keys included) as the secret; its evaluation keys as the public keys."""
        client = self._fhe_client()
        client.keygen(force=True)
        return client.keys.serialize(), client.evaluation_keys.serialize()

    def use_keys(self, secret: bytes, public: bytes) -> None:
        """The evaluation keys inside the key set must be, byte for byte, the public keys sent."""
        from concrete import fhe

        try:
            keys = fhe.Keys.deserialize(secret)
            own = keys.evaluation.serialize()
        except Exception as exc:  # noqa: BLE001 - concrete raises RuntimeError on damaged bytes
            raise ValueError(f"the key set cannot be read ({type(exc).__name__})") from None
        if own != public:
            raise ValueError("the public keys were not made from this key set")
        self._client = self._fhe_client(keys)

    def encrypt(self, rows: np.ndarray) -> dict[str, Any]:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features or not np.isfinite(rows).all():
            raise InvalidRequest(f"rows must be finite, with {self.n_features} features each", code="wrong_features")
        self.check_range(rows)
        q_rows = numerics.quantize(rows, self.input_quantizers)
        client = self.keyed(self._client)
        ciphertexts = [client.encrypt(q_rows[i : i + 1]).serialize() for i in range(len(q_rows))]
        return {"n_features": self.n_features, "rows": [base64.b64encode(c).decode("ascii") for c in ciphertexts]}

    def check_range(self, rows: np.ndarray) -> None:
        """Refuse rows Concrete ML would clip into the quantised range the circuit was compiled for (the
        calibration rows' range): their answer would be another row's. No values in the message."""
        bad = numerics.clipped(rows, self.input_quantizers)
        if np.any(bad):
            row, feature = (int(i) for i in np.argwhere(bad)[0])
            raise InvalidRequest(
                f"row {row}, feature {feature}: outside the range the model was compiled for (its calibration "
                f"data); {int(bad.any(axis=1).sum())} of {len(rows)} rows are. Concrete ML would clip them into "
                "the range and answer for other inputs, so they are refused: rebuild the model with calibration "
                "data covering these inputs",
                code="input_out_of_bounds",
            )

    def decrypt(self, result: Any, n_rows: int) -> np.ndarray:
        from concrete import fhe

        if not isinstance(result, list) or len(result) != n_rows or not all(isinstance(r, str) for r in result):
            raise InvalidRequest(f"expected {n_rows} base64 results from the service", code="invalid_response")
        client = self.keyed(self._client)
        outputs = []
        for i, text in enumerate(result):
            try:
                value = np.asarray(client.decrypt(fhe.Value.deserialize(base64.b64decode(text, validate=True))))
            except Exception as exc:  # noqa: BLE001
                raise InvalidRequest(f"result {i} cannot be decrypted ({type(exc).__name__})", code="invalid_response") from None
            if value.size != self.n_outputs:
                raise InvalidRequest(f"result {i} holds {value.size} outputs, not {self.n_outputs}", code="invalid_response")
            outputs.append(value.reshape(self.n_outputs))
        return numerics.dequantize(np.asarray(outputs, dtype=np.float64), self.output_quantizer, self.offset)

    def interpret(self, scores: np.ndarray) -> Prediction:
        predicted = numerics.predictions(scores, self.task, self.activation, self.classes)
        proba = numerics.probabilities(scores, self.activation) if self.has_probabilities else None
        return Prediction(scores, predicted, proba)
