"""Model adapter `sklearn-eiserver`: scikit-learn linear models served by EIServer (encrypted-inference 0.9).

The build proves an error bound for inputs within the feature bounds (eiserver_accuracy.py) or
refuses the model; the client refuses rows outside the bounds and decrypted scores outside the range.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, ValidationError

from sei_framework import InvalidRequest, KeyringError, PluginError, call_isolated, validation_problems

from .bounds import (
    BoundsOptions, accuracy_entry, check_described_rows, check_scores, input_bounds, output_grid, proven_accuracy,
    refusal, round_scores, score_limit, widest_bounds,
)
from .common import COMMON_REQUIREMENTS, LinearAdapter, LinearClient, prepare_linear
from .rounding import error_budget
from .eiserver_accuracy import RANGE_LIMIT, EIServerAccuracyError, prove

__all__ = ["EIServerAdapter", "EIServerClient"]

ENCRYPTION = {
    "library": "encrypted-inference 0.9 (Microsoft SEAL 3.5)",
    "scheme": "CKKS",
    "poly_modulus_degree": 8192,
    "coeff_modulus_bits": [60, 40, 40, 60],
    "scale_bits": 40,
}


class EIServerOptions(BoundsOptions):
    """tolerance, feature_bounds, calibration_data, calibration_margin: see bounds.BoundsOptions."""

    convert_keys_once: bool = True
    """False serves through plain `EIServer.predict`, as the tutorial does (for comparisons)."""


class EIServerData(BaseModel):
    """A request's `data`: the model's feature count and each row's base64 ciphertexts."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    n_features: StrictInt = Field(ge=1, le=2**31)
    rows: list[list[StrictStr]] = Field(min_length=1)


_TUTORIAL_ROW = TypeAdapter(list[StrictStr])  # the tutorial's request: one row's ciphertexts, bare


def _invalid_data(exc: ValidationError) -> InvalidRequest:
    """Each bad field by its path and what it should be; never the value sent."""
    return InvalidRequest("; ".join(validation_problems(exc, "data", limit=5)), code="invalid_data")


def parse_data(data: Any, n_features: int) -> EIServerData:
    """Check a request's untrusted `data` once, before anything reads it; the tutorial's bare list is one row."""
    try:
        if isinstance(data, list):
            return EIServerData(n_features=n_features, rows=[_TUTORIAL_ROW.validate_python(data)])
        if not isinstance(data, dict):
            raise InvalidRequest(
                "data must be an object with 'n_features' and 'rows' (or the tutorial's list of base64 ciphertexts)",
                code="invalid_data",
            )
        return EIServerData.model_validate(data)
    except ValidationError as exc:
        raise _invalid_data(exc) from None


class EIServerAdapter(LinearAdapter):
    """Each output is one EIServer dot product on the client's CKKS ciphertexts (the tutorial's wire format)."""

    name: ClassVar[str] = "sklearn-eiserver"
    Options = EIServerOptions
    requirements = ("encrypted-inference==0.9", *COMMON_REQUIREMENTS)

    @classmethod
    def prepare(cls, source: Path, options: EIServerOptions, dest: Path) -> dict[str, Any]:  # type: ignore[override]  # the core validates `options` with cls.Options before it calls prepare
        """The error bound of EIServer's CKKS dot product for in-bound inputs, proven or refused."""
        model, metadata = prepare_linear(source, options, dest)
        names = metadata.get("feature_names")
        lo, hi, origin = input_bounds(model.n_features, options, names)
        budget = error_budget(options.tolerance)  # room for the client's output rounding (rounding.py)
        try:
            proof = prove(model.coef, model.intercept, lo, hi, options.tolerance, budget)
        except EIServerAccuracyError as exc:
            reason = refusal(model.estimator, cls.name, options.tolerance, lo, hi, origin, exc, "smaller weights")
            raise PluginError(reason) from None
        except ValueError as exc:
            raise PluginError(f"{model.estimator} cannot be served by sklearn-eiserver: {exc}") from None
        lo, hi, proof, margin = widest_bounds(
            model.n_features, options, lo, hi, proof,
            lambda lo, hi: prove(model.coef, model.intercept, lo, hi, options.tolerance, budget), (ValueError,), names,
        )
        accuracy = accuracy_entry(options.tolerance, proof.error_bound, proof.max_abs_score, lo, hi, origin, margin)
        return {**metadata, "accuracy": accuracy}

    def __init__(self, model_dir: Path, metadata: dict[str, Any], options: EIServerOptions) -> None:
        from encrypted.inference.eiserver import EIServer

        from .eiserver_native import EIServerKernel

        super().__init__(model_dir, metadata, options)
        self.kernel = EIServerKernel(self.model.coef, self.model.intercept)
        self.tutorial_server = None if options.convert_keys_once else EIServer(self.model.coef, self.model.intercept)
        self.accuracy = metadata.get("accuracy")  # None: built before the bound was proven

    def describe(self) -> dict[str, Any]:
        return {
            **self.model_description(),
            "encryption": ENCRYPTION,
            "key_scheme": EIServerClient.key_scheme,
            "ciphertexts_per_row": self.kernel.ciphertexts_per_row,
            **({"accuracy": self.accuracy} if self.accuracy else {}),
        }

    def load_public_keys(self, data: bytes) -> Any:
        keys = self.kernel.convert_keys(data)  # checks the keys either way
        return data if self.tutorial_server else keys

    def count_rows(self, data: Any) -> int:
        return len(parse_data(data, self.model.n_features).rows)

    def predict(self, data: Any, keys: Any) -> Any:
        """Rows in, one list of result ciphertexts per row out; the tutorial's bare list gets a bare list."""
        from .eiserver_native import decode_ciphertexts

        request = parse_data(data, self.model.n_features)
        if request.n_features != self.model.n_features:
            raise InvalidRequest(
                f"model takes {self.model.n_features} features; the request says {request.n_features}",
                code="wrong_features",
            )
        rows = request.rows
        ciphertexts = [decode_ciphertexts(row, self.kernel.ciphertexts_per_row) for row in rows]
        if self.tutorial_server:
            compute = lambda: [self.tutorial_server.predict(row, keys) for row in rows]  # noqa: E731
        else:
            compute = lambda: [self.kernel.dot_products(blob, keys) for blob in ciphertexts]  # noqa: E731
        results = call_isolated(compute, what="encrypted dot product (malformed ciphertext or public keys?)")
        return results[0] if isinstance(data, list) else results

    @classmethod
    def client(cls, description: dict[str, Any]) -> EIServerClient:
        return EIServerClient(description)


class EIServerClient(LinearClient):
    """EILinearRegressionClient: encrypts each row, decrypts one ciphertext per output."""

    key_scheme = "eiserver-ckks-8192"
    max_rows_per_request = 4

    def __init__(self, description: dict[str, Any]) -> None:
        super().__init__(description)
        self._client: Any = None  # an EILinearRegressionClient, once use_keys has a pair

    def generate_keys(self) -> tuple[bytes, bytes]:
        from encrypted.inference.eiclient import EILinearRegressionClient

        client = EILinearRegressionClient(verbose=False)  # verbose mode prints the secret key
        _, public = client.get_public_keys()
        return base64.b64decode(client.secret_key()), public

    def use_keys(self, secret: bytes, public: bytes) -> None:
        """Refuse a pair whose public keys (what the service computes with, and the key id) are not the secret's."""
        from encrypted.inference.eiclient import EILinearRegressionClient

        from .eiserver_native import check_key_pair
        from .eiserver_probe import SECRET_BYTES

        if len(secret) != SECRET_BYTES:
            raise KeyringError(f"an EIServer secret key is {SECRET_BYTES} bytes, not {len(secret)}")
        check_key_pair(secret, public)  # ~0.6 s: one dot product through the native library, in its own process
        self._client = EILinearRegressionClient(secret_key=base64.b64encode(secret).decode("ascii"), verbose=False)

    def encrypt(self, rows: np.ndarray) -> Any:
        """Rows outside the feature bounds the service proved its accuracy for are refused first."""
        accuracy = proven_accuracy(self.description, self.allow_unproven)
        check_described_rows(accuracy, rows, self.model.n_features)
        client = self.keyed(self._client)
        return {"n_features": int(rows.shape[1]), "rows": [client.encrypt(row) for row in rows]}

    def decrypt(self, result: Any, n_rows: int) -> np.ndarray:
        accuracy = proven_accuracy(self.description, self.allow_unproven)
        if not isinstance(result, list) or len(result) != n_rows:
            raise InvalidRequest(f"expected {n_rows} result rows from the service", code="invalid_response")
        client = self.keyed(self._client)
        scores = np.array([client.decrypt(row) for row in result], dtype=np.float64).reshape(n_rows, -1)
        check_scores(scores, score_limit(accuracy, RANGE_LIMIT))  # opted in to no accuracy: 2^57
        return round_scores(scores, output_grid(accuracy))  # nothing finer than the proof leaves the client
