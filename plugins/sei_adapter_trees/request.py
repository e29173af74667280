"""A `trees-seal` request's `data`, checked before anything reads it: counts first, then each batch's bytes.

`{"n_features": F, "n_rows": R, "batches": [...]}`: one base64 message per batch of up to `slots` rows, in
row order; each holds one ciphertext per split, in the order of describe()'s `splits`. The response's
`result` is one base64 message per batch, holding one ciphertext per output.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from sei_framework import InvalidRequest, validation_problems

__all__ = ["TreesRequest", "batch_sizes", "parse_request"]


class TreesRequest(BaseModel):
    """The request's fields as sent (strict: no coercion, nothing extra)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    n_features: StrictInt = Field(ge=1, le=2**31)
    n_rows: StrictInt = Field(ge=1, le=2**31)
    batches: list[StrictStr] = Field(min_length=1)


def batch_sizes(n_rows: int, slots: int) -> list[int]:
    """The rows of each batch that carries `n_rows` rows (a batch of fewer rows costs as much)."""
    return [min(slots, n_rows - start) for start in range(0, n_rows, slots)]


def parse_request(data: Any, *, n_features: int, slots: int) -> TreesRequest:
    """The checked request; InvalidRequest (`invalid_data`, `wrong_features`) naming what is wrong, never the values."""
    if not isinstance(data, dict):
        raise InvalidRequest("data must be an object with 'n_features', 'n_rows' and 'batches'", code="invalid_data")
    try:
        request = TreesRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest("; ".join(validation_problems(exc, "data", limit=5)), code="invalid_data") from None
    if request.n_features != n_features:
        raise InvalidRequest(
            f"model takes {n_features} features; the request says {request.n_features}", code="wrong_features"
        )
    expected = math.ceil(request.n_rows / slots)
    if len(request.batches) != expected:
        raise InvalidRequest(
            f"{request.n_rows} rows travel in {expected} batch(es) of up to {slots} rows; the request has "
            f"{len(request.batches)}",
            code="invalid_data",
        )
    return request
