"""Model adapter `sklearn-packed`: linear models on coefficient-packed SEAL ciphertexts (seal-python).

All outputs of a row come back in one small ciphertext (mode `single`), or every feature of up
to 4096 rows travels in one ciphertext (mode `bulk`); the service needs only the client's public
key. The kernel and its measured figures: packed_kernel/ and docs/packed-backend.md.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from sei_framework import InvalidRequest, PluginError

from .common import LinearAdapter, LinearClient, SklearnOptions, prepare_linear
from .packed_kernel import ClientKeys, KernelInputError, Params, ServerModel, choose_params

__all__ = ["PackedAdapter", "PackedClient", "PackedOptions"]


class PackedOptions(SklearnOptions):
    mode: Literal["single", "bulk"] = "single"
    """`single`: one small request per row; `bulk`: up to 4096 rows per ciphertext batch."""
    max_abs_score: float = 512.0
    """Scores must stay below this in absolute value (more headroom costs precision)."""


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidRequest(f"{what} must be a base64 string", code="invalid_ciphertext")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{what} is not valid base64", code="invalid_ciphertext") from None


class PackedAdapter(LinearAdapter):
    """Scores = X @ W.T + b on packed ciphertexts, checked byte by byte before SEAL sees them."""

    name: ClassVar[str] = "sklearn-packed"
    Options = PackedOptions
    requirements = ("seal-python==4.4.0", "scikit-learn", "joblib")

    @classmethod
    def prepare(cls, source: Path, options: PackedOptions, dest: Path) -> dict[str, Any]:
        model, metadata = prepare_linear(source, options, dest)
        try:
            params = choose_params(model.n_features, model.n_outputs, options.mode, options.max_abs_score)
            ServerModel(model.coef, model.intercept, params)  # weights fit the scale
        except ValueError as exc:
            raise PluginError(f"{model.estimator} cannot be packed: {exc}") from None
        if not params.security_bits_ok():
            raise PluginError(f"parameters {params.to_json()} are below 128-bit security")
        return {**metadata, "params": params.to_json()}

    def __init__(self, model_dir: Path, metadata: dict[str, Any], options: PackedOptions) -> None:
        super().__init__(model_dir, metadata, options)
        self.params = Params.from_json(metadata["params"])
        self.server = ServerModel(self.model.coef, self.model.intercept, self.params)

    def describe(self) -> dict[str, Any]:
        return {
            **self.model_description(),
            "mode": self.params.mode,
            "encryption": {
                "library": "seal-python 4.4.0 (Microsoft SEAL 4)",
                "scheme": "RLWE, coefficient packing",
                "params": self.params.to_json(),
                "security_bits": 128,
            },
            "key_scheme": PackedClient.scheme_for(self.params),
        }

    def load_public_keys(self, data: bytes) -> Any:
        try:
            return self.server.load_public(data)
        except KernelInputError as exc:
            raise InvalidRequest(f"public key: {exc}", code="invalid_keys") from None

    def count_rows(self, data: Any) -> int:
        if not isinstance(data, dict):
            return 0
        rows = data.get("n_rows") if self.params.mode == "bulk" else len(data.get("ciphertexts") or [])
        return rows if isinstance(rows, int) else 0

    def predict(self, data: Any, keys: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("ciphertexts"), list) or not data["ciphertexts"]:
            raise InvalidRequest("data must be an object with a non-empty 'ciphertexts' list", code="invalid_data")
        if data.get("n_features") != self.model.n_features:
            raise InvalidRequest(
                f"model takes {self.model.n_features} features; the request says {data.get('n_features')!r}",
                code="wrong_features",
            )
        blobs = [_unb64(text, f"ciphertext {i}") for i, text in enumerate(data["ciphertexts"])]
        try:
            rows = sum(self.server.request_rows(blob) for blob in blobs)
        except KernelInputError as exc:
            raise InvalidRequest(f"ciphertext: {exc}", code="invalid_ciphertext") from None
        declared = self.count_rows(data)  # what the service checked against max_rows_per_request
        if rows != declared:
            raise InvalidRequest(f"the ciphertexts hold {rows} rows; the request says {declared}", code="invalid_data")
        evaluate = self.server.predict_batch if self.params.mode == "bulk" else self.server.predict_row
        results = []
        for i, blob in enumerate(blobs):
            try:
                results.append(_b64(evaluate(blob, keys)))
            except KernelInputError as exc:
                raise InvalidRequest(f"ciphertext {i}: {exc}", code="invalid_ciphertext") from None
        return results

    @classmethod
    def client(cls, description: dict[str, Any]) -> PackedClient:
        return PackedClient(description)


class PackedClient(LinearClient):
    """Generates the key pair, packs rows into ciphertexts, unpacks the scores."""

    key_scheme = "packed"

    def __init__(self, description: dict[str, Any]) -> None:
        super().__init__(description)
        self.params = Params.from_json(description["encryption"]["params"])
        self.key_scheme = self.scheme_for(self.params)
        self.batch_rows = self.params.poly_modulus_degree  # rows per bulk ciphertext batch
        self.max_rows_per_request = self.batch_rows if self.params.mode == "bulk" else 16
        self._keys: ClientKeys | None = None

    @staticmethod
    def scheme_for(params: Params) -> str:
        return "packed-" + params.fingerprint().hex()

    def generate_keys(self) -> tuple[bytes, bytes]:
        keys = ClientKeys.generate(self.params)
        return keys.secret_bytes(), keys.public_bytes()

    def use_keys(self, secret: bytes, public: bytes) -> None:
        self._keys = ClientKeys.from_secret_bytes(secret)

    def encrypt(self, rows: np.ndarray) -> Any:
        if self.params.mode == "bulk":
            blobs = self._keys.encrypt_batch(rows)
        else:
            blobs = [self._keys.encrypt_row(row) for row in rows]
        return {"n_features": int(rows.shape[1]), "n_rows": len(rows), "ciphertexts": [_b64(b) for b in blobs]}

    def decrypt(self, result: Any, n_rows: int) -> np.ndarray:
        if not isinstance(result, list):
            raise InvalidRequest("the service's result is not a list of ciphertexts", code="invalid_response")
        outputs = self.model.n_outputs
        if self.params.mode == "bulk":
            sizes = [min(self.batch_rows, n_rows - start) for start in range(0, n_rows, self.batch_rows)]
        else:
            sizes = [1] * n_rows
        if len(result) != len(sizes):
            raise InvalidRequest(f"expected {len(sizes)} result ciphertexts, got {len(result)}", code="invalid_response")
        parts = [
            self._keys.decrypt_scores(base64.b64decode(text), outputs, size) for text, size in zip(result, sizes)
        ]
        return np.vstack(parts).reshape(n_rows, outputs)
