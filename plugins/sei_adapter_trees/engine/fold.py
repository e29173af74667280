"""Fold monotone per-feature preprocessing into split thresholds, exactly.

A split on preprocessed data sends a row left when ``round(g(x)) <op> t``, with ``g`` the preprocessing of that
feature and ``round`` the model's comparison precision. When ``g`` is non-decreasing (a scaler with a positive
scale), the set of raw ``x`` that go left is ``x <= T`` for one float64 ``T``. ``T`` is found by bisection over
the ordered float64 values, evaluating ``g`` with the preprocessing's own code, so the folded split sends every
finite raw value exactly where the pipeline would (within the range the pipeline maps to finite values; a
value it overflows, which the library would refuse, is routed as the nearest value within that range).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .ir import Ensemble, Split, finite_split

_MAX = float(np.finfo(np.float64).max)


def _key(x: np.ndarray) -> np.ndarray:
    """int64 keys whose order is the order of the float64 values (+0.0 and -0.0 share a key)."""
    bits = np.asarray(x, dtype=np.float64).view(np.int64)
    return np.where(bits >= 0, bits, -(bits & np.int64(0x7FFFFFFFFFFFFFFF)))


def _unkey(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=np.int64)
    return np.where(k >= 0, k, (-k) | np.int64(-0x8000000000000000)).view(np.float64)


def fold(ensemble: Ensemble, transform: Callable[[np.ndarray], np.ndarray]) -> Ensemble:
    """The ensemble on raw rows, given ``transform``: float64[n, n_features] -> float64[n, n_features], a
    per-feature non-decreasing map (the pipeline's preprocessing). Every split becomes ``x <= T`` in float64
    with its NaN direction kept (the served scalers carry NaN through)."""
    splits = list(ensemble.splits)
    n = len(splits)
    features = np.array([s.feature for s in splits], dtype=np.int64)

    def left(x: np.ndarray) -> np.ndarray:
        rows = np.zeros((n, ensemble.n_features), dtype=np.float64)
        rows[np.arange(n), features] = x
        with np.errstate(all="ignore"):
            z = np.asarray(transform(rows), dtype=np.float64)[np.arange(n), features]
        out = np.empty(n, dtype=bool)
        for i, s in enumerate(splits):
            v = float(np.float32(z[i])) if s.dtype == "float32" else float(z[i])
            out[i] = v < s.threshold if s.op == "<" else v <= s.threshold
        return out

    limit = float(np.finfo(np.float32).max) if any(s.dtype == "float32" for s in splits) else _MAX
    bound = _finite_bound(transform, ensemble.n_features, limit)
    lo = _key(np.full(n, -bound))  # invariant: left(lo) true (or nothing goes left), left(hi) false
    hi = _key(np.full(n, bound))
    at_lo, at_hi = left(_unkey(lo)), left(_unkey(hi))
    active = at_lo & ~at_hi
    while True:
        open_ = active & (hi > lo + 1)
        if not open_.any():
            break
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # the midpoint without overflowing int64
        go = left(_unkey(mid))
        lo = np.where(open_ & go, mid, lo)
        hi = np.where(open_ & ~go, mid, hi)
    thresholds = np.where(at_hi, np.inf, np.where(at_lo, _unkey(lo), -np.inf))
    _check_monotone(left, lo, hi, active, bound)
    new = [finite_split(s.feature, float(t), "<=", "float64", s.nan_left) for s, t in zip(splits, thresholds, strict=True)]
    index: dict[Split, int] = {}
    remap = np.array([index.setdefault(s, len(index)) for s in new], dtype=np.int32)
    trees = tuple(type(t)(split=remap[t.split].astype(np.int32), left=t.left, right=t.right, leaf_values=t.leaf_values)
                  for t in ensemble.trees)
    return Ensemble(
        n_features=ensemble.n_features, splits=tuple(index), trees=trees, n_outputs=ensemble.n_outputs,
        base_score=ensemble.base_score, average=ensemble.average, postprocess=ensemble.postprocess,
        task=ensemble.task, classes=ensemble.classes, postprocess_params=dict(ensemble.postprocess_params),
    ).validate()


def _finite_bound(transform: Callable[[np.ndarray], np.ndarray], n_features: int, limit: float) -> float:
    """The largest ``B`` (float64's max, or a power of 16 below it) whose ``+-B`` the preprocessing maps within
    ``+-limit`` (float32's max when a split compares in float32): the search stays where the pipeline itself works
    (beyond it, the pipeline overflows and the library refuses the row)."""
    bound = _MAX
    while bound > 1.0:
        rows = np.array([[-bound] * n_features, [bound] * n_features], dtype=np.float64)
        try:
            with np.errstate(all="ignore"):
                if (np.abs(np.asarray(transform(rows), dtype=np.float64)) <= limit).all():
                    return bound
        except ValueError:
            pass
        bound = float(2.0 ** (int(np.log2(bound)) - 4))
    raise ValueError("the preprocessing maps every value beyond 1 to infinity; it cannot be folded")


def _check_monotone(
    left: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, active: np.ndarray, bound: float
) -> None:
    """A spot check that the map really is non-decreasing around each found threshold (a guard, not a proof:
    the caller admits only preprocessing known to be monotone)."""
    if not active.any():
        return
    below = left(_unkey(np.maximum(lo - 1000, _key(np.full(lo.shape, -bound)))))
    above = left(_unkey(np.minimum(hi + 1000, _key(np.full(hi.shape, bound)))))
    if (active & (~below | above)).any():
        raise ValueError("the preprocessing is not monotone around a split threshold; it cannot be folded")
