"""Batching rows into requests and reading the scores back into predictions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..base import AdapterClient, Prediction
from ..columns import feature_names
from ..errors import InvalidRequest
from ..rows import Rows, table_rows

__all__ = ["check_rows", "described_row_limit", "request_rows", "score_in_batches"]


def check_rows(name: str, adapter: AdapterClient, X: Any, described: dict[str, Any]) -> Rows:
    """X (array, DataFrame or `Rows`) as the model's columns (sei_framework.rows: by name where the model
    and X both name them, else by position; NaN only where the adapter routes it), checked by the adapter and
    against the described feature count."""
    adapter.check_input(X)  # an adapter's own look at the input as given
    rows = table_rows(X, feature_names(described), allow_nan=adapter.allows_nan)
    n_features = described.get("n_features")
    if n_features is not None and rows.values.shape[1] != n_features:
        raise InvalidRequest(
            f"model {name!r} takes {n_features} features; the input has {rows.values.shape[1]}", code="wrong_features"
        )
    return rows


def described_row_limit(model: dict[str, Any], service: dict[str, Any] | None, default: int) -> int:
    """The most rows one request to a model may carry, as a describe answer says: the model's own
    `limits`, else the service's, else `default` (the adapter client's)."""
    limits = model.get("limits") or (service or {}).get("limits") or {}
    return int(limits.get("max_rows_per_request", default))


def request_rows(limit: int, adapter: AdapterClient, batch_size: int | None) -> int:
    """Rows per request: the caller's `batch_size` (else the adapter client's), never above `limit`."""
    return max(1, min(batch_size or adapter.max_rows_per_request, limit))


def score_in_batches(
    adapter: AdapterClient,
    rows: np.ndarray,
    size: int,
    score: Callable[[np.ndarray], np.ndarray],
    progress: Callable[[int], object] | None = None,
) -> Prediction:
    """Score `rows` `size` at a time with `score`, calling `progress(n)` after each; interpret them all."""
    scores = []
    for start in range(0, len(rows), size):
        batch = rows[start : start + size]
        scores.append(score(batch))
        if progress is not None:
            progress(len(batch))
    return adapter.interpret(np.vstack(scores))
