"""Model adapter `sklearn-packed`: linear models on coefficient-packed SEAL ciphertexts (seal-python).

All outputs of a row come back in one small ciphertext (mode `single`), or every feature of up
to 4096 rows travels in one ciphertext (mode `bulk`); the service needs only the client's public
key. The kernel and its measured figures: packed_kernel/ and docs/packed-backend.md.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, StrictInt, StrictStr, ValidationError

from sei_framework import InvalidRequest, PluginError, RequestSize, base64_size, decode_base64, validation_problems

from .bounds import (
    BoundsOptions, accuracy_entry, check_described_rows, check_scores, input_bounds, output_grid, proven_accuracy,
    refusal, round_scores, score_limit, widest_bounds,
)
from .common import COMMON_REQUIREMENTS, LinearAdapter, LinearClient, prepare_linear
from .rounding import error_budget
from .packed_kernel import (
    AccuracyError, ClientKeys, KernelInputError, Params, Plan, ServerModel, plan, public_key_size, request_size,
)

__all__ = ["PackedAdapter", "PackedClient", "PackedOptions"]


class PackedOptions(BoundsOptions):
    """tolerance, feature_bounds, calibration_data, calibration_margin: see bounds.BoundsOptions."""

    mode: Literal["single", "bulk"] = "single"
    """`single`: one small request per row; `bulk`: up to 4096 rows per ciphertext batch."""
    max_abs_score: FiniteFloat | None = Field(None, gt=0)
    """Declared score bound; must be >= the worst case the bounds give (default: that worst case)."""


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


class PackedAdapter(LinearAdapter):
    """Scores = X @ W.T + b on packed ciphertexts, checked byte by byte before SEAL sees them."""

    name: ClassVar[str] = "sklearn-packed"
    Options = PackedOptions
    requirements = ("seal-python==4.4.0", *COMMON_REQUIREMENTS)
    key_expansion: ClassVar[float] = 4.0
    """SEAL keeps both polynomials of a public key as 64-bit words: at most four times the packed 32-bit
    wire form (measured: 2.6x to 3.6x), and the key cache cannot see into SEAL's objects."""

    @classmethod
    def prepare(cls, source: Path, options: PackedOptions, dest: Path) -> dict[str, Any]:  # type: ignore[override]  # the core validates `options` with cls.Options before it calls prepare
        """Scales and headroom from the weights and the input bounds, proven or refused (docs/packed-backend.md)."""
        model, metadata = prepare_linear(source, options, dest)
        names = metadata.get("feature_names")
        lo, hi, origin = input_bounds(model.n_features, options, names)

        def prove(lo: np.ndarray, hi: np.ndarray) -> Plan:
            proof = plan(model.coef, model.intercept, lo, hi, options.mode, options.tolerance, options.max_abs_score,
                         max_error=error_budget(options.tolerance))  # room for the client's output rounding
            ServerModel(model.coef, model.intercept, proof.params)  # the same weights: bulk limbs exact
            if not proof.params.security_bits_ok():
                raise PluginError(f"parameters {proof.params.to_json()} are below 128-bit security")
            return proof

        try:
            proof = prove(lo, hi)
        except AccuracyError as exc:
            adapter = f"{cls.name} ({options.mode})"
            reason = refusal(model.estimator, adapter, options.tolerance, lo, hi, origin, exc, "fewer or smaller weights")
            raise PluginError(reason) from None
        except ValueError as exc:
            raise PluginError(f"{model.estimator} cannot be packed: {exc}") from None
        refused = (ValueError, PluginError)  # AccuracyError is a ValueError
        lo, hi, proof, margin = widest_bounds(model.n_features, options, lo, hi, proof, prove, refused, names)
        entry = (options.tolerance, proof.error_bound, proof.max_abs_score, lo, hi, origin, margin)
        accuracy = accuracy_entry(*entry)
        return {**metadata, "params": proof.params.to_json(), "accuracy": accuracy}

    @classmethod
    def request_size(cls, metadata: dict[str, Any]) -> RequestSize:
        """A bulk request costs a whole batch of poly_modulus_degree rows (4096), one ciphertext per
        feature; a single-mode request one ciphertext per row. Base64 and the JSON quotes included."""
        params = Params.from_json(metadata["params"])
        return RequestSize(
            batch_bytes=base64_size(request_size(params)) + 4,  # quotes and the ", " between list items
            batch_rows=params.poly_modulus_degree if params.mode == "bulk" else 1,
            public_key_bytes=base64_size(public_key_size(params)) + 32,
        )

    def __init__(self, model_dir: Path, metadata: dict[str, Any], options: PackedOptions) -> None:
        super().__init__(model_dir, metadata, options)
        self.params = Params.from_json(metadata["params"])
        self.server = ServerModel(self.model.coef, self.model.intercept, self.params)
        self.accuracy = metadata.get("accuracy")  # None: built before the bounds were proven

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
            **({"accuracy": self.accuracy} if self.accuracy else {}),
        }

    def load_public_keys(self, data: bytes) -> Any:
        try:
            return self.server.load_public(data)
        except KernelInputError as exc:
            raise InvalidRequest(f"public key: {exc}", code="invalid_keys") from None

    class Data(BaseModel):
        """A request's `data`: the feature count, the rows it holds (bulk) and base64 ciphertexts."""

        model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
        n_features: StrictInt = Field(ge=1, le=2**31)
        n_rows: StrictInt = Field(default=0, ge=1, le=2**31)  # may be absent (0) in single mode, never null
        ciphertexts: list[StrictStr] = Field(min_length=1)

    def parse_data(self, data: Any) -> PackedAdapter.Data:
        """Check a request's untrusted `data` once, before anything reads it; n_rows is the declared row count."""
        if not isinstance(data, dict):
            raise InvalidRequest(
                "data must be an object with 'n_features', 'n_rows' and 'ciphertexts'", code="invalid_data"
            )
        try:
            request = self.Data.model_validate(data)
        except ValidationError as exc:
            problems = validation_problems(exc, "data", limit=5)  # each bad field by its path, never the value sent
            raise InvalidRequest("; ".join(problems), code="invalid_data") from None
        if self.params.mode == "single" and request.n_rows not in (0, len(request.ciphertexts)):
            raise InvalidRequest(
                f"data.n_rows says {request.n_rows} rows but there are {len(request.ciphertexts)} ciphertexts "
                "(one per row)",
                code="invalid_data",
            )
        if self.params.mode == "bulk" and not request.n_rows:
            raise InvalidRequest("data.n_rows: Field required (the rows a bulk request holds)", code="invalid_data")
        return request.model_copy(update={"n_rows": request.n_rows or len(request.ciphertexts)})

    def count_rows(self, data: Any) -> int:
        return self.parse_data(data).n_rows

    def predict(self, data: Any, keys: Any) -> Any:
        request = self.parse_data(data)
        if request.n_features != self.model.n_features:
            raise InvalidRequest(
                f"model takes {self.model.n_features} features; the request says {request.n_features}",
                code="wrong_features",
            )
        blobs = [decode_base64(text, f"ciphertext {i}") for i, text in enumerate(request.ciphertexts)]
        try:
            rows = sum(self.server.request_rows(blob) for blob in blobs)
        except KernelInputError as exc:
            raise InvalidRequest(f"ciphertext: {exc}", code="invalid_ciphertext") from None
        declared = request.n_rows  # what the service checked against max_rows_per_request
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
        """Refuse a pair whose public key (what the service computes with, and the key id) is not the secret's."""
        keys = ClientKeys.from_secret_bytes(secret)
        if keys.params != self.params:
            raise KernelInputError("the secret key was made for other encryption parameters than this model's")
        keys.verify_public(public)  # KernelInputError (a ValueError) names what does not match
        self._keys = keys

    def encrypt(self, rows: np.ndarray) -> Any:
        self.check_inputs(rows)
        keys = self.keyed(self._keys)
        if self.params.mode == "bulk":
            blobs = keys.encrypt_batch(rows)
        else:
            blobs = [keys.encrypt_row(row) for row in rows]
        return {"n_features": int(rows.shape[1]), "n_rows": len(rows), "ciphertexts": [_b64(b) for b in blobs]}

    def decrypt(self, result: Any, n_rows: int) -> np.ndarray:
        accuracy = proven_accuracy(self.description, self.allow_unproven)
        if not isinstance(result, list):
            raise InvalidRequest("the service's result is not a list of ciphertexts", code="invalid_response")
        outputs = self.model.n_outputs
        if self.params.mode == "bulk":
            sizes = [min(self.batch_rows, n_rows - start) for start in range(0, n_rows, self.batch_rows)]
        else:
            sizes = [1] * n_rows
        if len(result) != len(sizes):
            raise InvalidRequest(f"expected {len(sizes)} result ciphertexts, got {len(result)}", code="invalid_response")
        try:
            keys = self.keyed(self._keys)
            parts = [keys.decrypt_scores(decode_base64(text, "result"), outputs, size) for text, size in zip(result, sizes, strict=True)]
        except (KernelInputError, InvalidRequest) as exc:
            raise InvalidRequest(f"the service's result cannot be decrypted: {exc}", code="invalid_response") from None
        scores = np.vstack(parts).reshape(n_rows, outputs)
        check_scores(scores, score_limit(accuracy, self.params.max_abs_score()))
        return round_scores(scores, output_grid(accuracy))  # nothing finer than the proof leaves the client

    def check_inputs(self, rows: np.ndarray) -> None:
        """Rows outside the feature bounds the service proved its accuracy for are refused (InvalidRequest)."""
        accuracy = proven_accuracy(self.description, self.allow_unproven)
        check_described_rows(accuracy, rows, self.model.n_features)
