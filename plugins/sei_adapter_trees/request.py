"""A `trees-seal` request's `data`, checked before anything reads it: counts first, then each ciphertext.

`{"n_features": F, "n_rows": R, "ciphertexts": [...]}`: for each batch of up to `slots` rows (in order),
one base64 ciphertext per split, in the order of describe()'s `splits`. The response's `result` is, for
each batch, one ciphertext per output.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from sei_framework import InvalidRequest, validation_problems

__all__ = ["TreesRequest", "parse_request"]


class TreesRequest(BaseModel):
    """The request's fields as sent (strict: no coercion, nothing extra)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    n_features: StrictInt = Field(ge=1, le=2**31)
    n_rows: StrictInt = Field(ge=1, le=2**31)
    ciphertexts: list[StrictStr] = Field(min_length=1)


def batches(n_rows: int, slots: int) -> int:
    """Ciphertext batches that carry `n_rows` rows (a batch of fewer rows costs as much)."""
    return math.ceil(n_rows / slots)


def parse_request(data: Any, *, n_features: int, n_splits: int, slots: int) -> TreesRequest:
    """The checked request; InvalidRequest (`invalid_data`, `wrong_features`) naming what is wrong, never the values."""
    if not isinstance(data, dict):
        raise InvalidRequest("data must be an object with 'n_features', 'n_rows' and 'ciphertexts'", code="invalid_data")
    try:
        request = TreesRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest("; ".join(validation_problems(exc, "data", limit=5)), code="invalid_data") from None
    if request.n_features != n_features:
        raise InvalidRequest(
            f"model takes {n_features} features; the request says {request.n_features}", code="wrong_features"
        )
    expected = batches(request.n_rows, slots) * n_splits
    if len(request.ciphertexts) != expected:
        raise InvalidRequest(
            f"{request.n_rows} rows take {expected} ciphertexts ({n_splits} splits per batch of up to {slots} rows); "
            f"the request has {len(request.ciphertexts)}",
            code="invalid_data",
        )
    return request
