"""Rows -> split bits, computed exactly as each library compares (the client's side of the protocol).

For split ``s`` and row ``x``: the feature is rounded to ``s.dtype`` (scikit-learn trees and XGBoost round to
float32; LightGBM and HistGradientBoosting keep float64), compared in float64 against ``s.threshold`` with
``s.op``; NaN takes ``s.nan_left``. The bit is 1 when the row goes RIGHT.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .ir import Split

_F32_MAX = float(np.finfo(np.float32).max)


class RowError(ValueError):
    """Rows the client cannot route (wrong shape or feature count, infinities); the message says which."""


def check_rows(X: object, n_features: int, splits: Sequence[Split]) -> np.ndarray:
    """``X`` as float64[n_rows, n_features], or RowError naming the first problem.

    NaN is allowed (it takes each split's default direction). Infinities are refused, and so is a finite value
    that a float32-comparing split would round to infinity (the library itself refuses such rows)."""
    try:
        rows = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RowError(f"rows must be numbers: {exc}") from exc
    if rows.ndim != 2:
        raise RowError(f"rows must be a 2-D array (rows x features), got {rows.ndim} dimension(s)")
    if rows.shape[1] != n_features:
        raise RowError(f"each row must have {n_features} features, got {rows.shape[1]}")
    bad = np.isinf(rows)
    f32_features = sorted({s.feature for s in splits if s.dtype == "float32"})
    if f32_features:
        with np.errstate(invalid="ignore"):
            bad[:, f32_features] |= np.abs(rows[:, f32_features]) > _F32_MAX
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise RowError(f"row {r}, feature {c}: {rows[r, c]!r} is infinite or too large for the model's float32 "
                       f"comparison ({int(bad.sum())} such value(s)); the model cannot route it")
    return rows


def split_bits(X: object, n_features: int, splits: Sequence[Split]) -> np.ndarray:
    """uint8[n_splits, n_rows]: bit ``[s, r]`` is 1 when row ``r`` goes right at split ``s``."""
    rows = check_rows(X, n_features, splits)
    out = np.empty((len(splits), rows.shape[0]), dtype=np.uint8)
    with np.errstate(over="ignore"):  # only float32 splits read it, and check_rows refused what they overflow
        f32 = rows.astype(np.float32).astype(np.float64) if any(s.dtype == "float32" for s in splits) else rows
    nan = np.isnan(rows)
    for i, s in enumerate(splits):
        x = (f32 if s.dtype == "float32" else rows)[:, s.feature]
        with np.errstate(invalid="ignore"):
            left = x < s.threshold if s.op == "<" else x <= s.threshold
        left = np.where(nan[:, s.feature], s.nan_left, left)
        out[i] = ~left
    return out
