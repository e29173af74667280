"""Input bounds shared by the scikit-learn adapters: the options, the worst-case score, the client's checks.

A build proves its accuracy for inputs inside per-feature bounds (`feature_bounds`, or the range of
`calibration_data`; a build with neither is refused); the client refuses rows outside them before encrypting, and
decoded scores outside the proven score bound (plus the tolerance) after decrypting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import Field, FiniteFloat, field_validator

from sei_framework import ConfigPath, InvalidRequest, PluginError, read_calibration

from .common import SklearnOptions
from .rounding import delivered_error, output_grid, round_scores

__all__ = [
    "NO_BOUNDS", "WIDEN_STEPS", "BoundsOptions", "accuracy_entry", "check_described_rows", "check_rows",
    "check_scores", "compact_bounds", "describe_bounds", "expand_bounds", "input_bounds",
    "output_grid", "proven_accuracy", "refusal", "round_scores", "score_limit", "widest_bounds",
]

Bound = tuple[FiniteFloat, FiniteFloat]


class BoundsOptions(SklearnOptions):
    """The options of an adapter that states its accuracy for inputs within bounds."""

    tolerance: FiniteFloat = Field(1e-3, gt=0)
    """Largest absolute error of a returned score, the client's output rounding included, that the build must
    prove for in-bound inputs, or refuse the model."""
    feature_bounds: Bound | list[Bound] | None = None
    """[lo, hi] for every feature, or one [lo, hi] per feature; the client refuses rows outside.
    One of this and calibration_data is required: the build refuses a model with neither."""
    calibration_data: ConfigPath | None = None
    """A .npy, .csv or .parquet file of representative rows (the training rows), relative to the config
    file, read like `sei predict` input (columns by the model's feature names where it has them): the
    bounds are their per-feature range widened on each side by the widest share of it, from
    calibration_margin to calibration_max_margin, for which the build proves the tolerance."""
    calibration_header: bool | None = None
    """Whether a CSV calibration_data's first line names the columns (default: it must, and a first
    line holding a number is refused until this says which it is)."""
    calibration_margin: FiniteFloat = Field(0.1, ge=0)
    """The least share of each feature's calibration range added on each side (the build refuses the
    model if the tolerance cannot be proven for it)."""
    calibration_max_margin: FiniteFloat = Field(1.0, ge=0)
    """The most: the build proves the widest margin up to this that the tolerance allows (`widest_bounds`)."""

    @field_validator("feature_bounds")
    @classmethod
    def _ordered(cls, value: Any) -> Any:
        pairs = [value] if isinstance(value, tuple) else value or []
        if any(lo > hi for lo, hi in pairs):
            raise ValueError("each [lo, hi] needs lo <= hi")
        if isinstance(value, list) and not value:
            raise ValueError("give [lo, hi] or at least one pair per feature")
        return value


NO_BOUNDS = (
    "neither feature_bounds nor calibration_data is set: the build proves the model's accuracy for inputs within "
    "known bounds, so give one of them: feature_bounds: [lo, hi] for every feature (e.g. [0, 1] for pixels / 255) "
    "or one [lo, hi] per feature, or calibration_data: a .npy or .csv file of representative rows (the training "
    "rows), whose range the bounds are taken from"
)
"""The build's refusal when a model states no bounds (no range is assumed: raw units would not fit it)."""


def _calibration(options: Any, n_features: int, names: list[str] | None) -> np.ndarray:
    """calibration_data's rows (sei_framework.read_calibration: by `names` where the model has them), all finite."""
    header = getattr(options, "calibration_header", None)
    return read_calibration(Path(options.calibration_data), n_features=n_features, names=names, header=header).values


def input_bounds(n_features: int, options: Any, names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-feature (lo, hi) the build proves its accuracy for, and where they come from.

    `feature_bounds` as given; else the calibration rows' range widened by `calibration_margin` of
    it on each side (the least; `widest_bounds` widens further) (a constant feature by that share of
    max(|value|, 1)); with neither, a PluginError.
    `calibration_data` is absolute by now (a `ConfigPath`: relative to the config file). With both
    options, every calibration row must lie within feature_bounds.
    """
    rows = None
    if options.calibration_data is not None:
        rows = _calibration(options, n_features, names)
    if options.feature_bounds is not None:
        lo, hi = expand_bounds(options.feature_bounds, n_features, "feature_bounds", PluginError)
        if rows is not None and np.any((rows < lo) | (rows > hi)):
            raise PluginError("calibration_data has rows outside feature_bounds (the client would refuse them)")
        return lo, hi, "feature_bounds"
    if rows is not None:
        lo, hi = _widened(rows.min(axis=0), rows.max(axis=0), options.calibration_margin)
        return lo, hi, "calibration_data"
    raise PluginError(NO_BOUNDS)


def _widened(lo: np.ndarray, hi: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] widened by `margin` of the span on each side (a constant feature: of max(|value|, 1))."""
    span = hi - lo
    pad = margin * np.where(span > 0, span, np.maximum(np.abs(lo), 1.0))
    return lo - pad, hi + pad


WIDEN_STEPS = 8
"""Bisection steps between calibration_margin and calibration_max_margin (the margin found is within
(max - min) / 2^8 of the widest provable one)."""

P = TypeVar("P")


def widest_bounds(n_features: int, options: Any, lo: np.ndarray, hi: np.ndarray, proof: P,
                  prove: Callable[[np.ndarray, np.ndarray], P],
                  refused: tuple[type[Exception], ...],
                  names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, P, float | None]:
    """Bounds from calibration_data widened as far as the tolerance allows, with their proof, and the margin.

    `lo, hi` are `input_bounds` (calibration_margin) and `proof` their proof. Each wider margin up to
    calibration_max_margin is proven with `prove` (raising one of `refused` when it does not hold):
    the margin served is one that was proven, never an extrapolation. Other bound origins: unchanged.
    """
    if options.calibration_data is None or options.feature_bounds is not None:
        return lo, hi, proof, None
    rows = _calibration(options, n_features, names)
    low, high = rows.min(axis=0), rows.max(axis=0)
    good, bad = float(options.calibration_margin), float(options.calibration_max_margin)
    best = (lo, hi, proof)
    for step in range(WIDEN_STEPS + 1):
        if bad <= good:
            break
        margin = bad if step == 0 else (good + bad) / 2.0
        wide_lo, wide_hi = _widened(low, high, margin)
        try:
            best = (wide_lo, wide_hi, prove(wide_lo, wide_hi))
        except refused:
            bad = margin
            continue
        good = margin
        if step == 0:
            break
    return best[0], best[1], best[2], good


def compact_bounds(lo: np.ndarray, hi: np.ndarray) -> list:
    """[lo, hi] when every feature shares them, else [[lo_1, hi_1], ...] (the option's own forms)."""
    if np.all(lo == lo[0]) and np.all(hi == hi[0]):
        return [float(lo[0]), float(hi[0])]
    return [[float(a), float(b)] for a, b in zip(lo, hi, strict=True)]


def expand_bounds(form: Any, n_features: int, what: str, error: Callable[[str], Exception]) -> tuple[np.ndarray, np.ndarray]:
    """The arrays (lo, hi) of a compact form; `error` names `what` when it does not fit the model."""
    try:
        pairs = np.asarray(form, dtype=np.float64)
    except (TypeError, ValueError):
        raise error(f"{what} is not [lo, hi] or a list of [lo, hi] pairs") from None
    if pairs.shape == (2,):
        pairs = np.tile(pairs, (n_features, 1))
    if pairs.shape != (n_features, 2):
        raise error(f"{what} must be [lo, hi] or {n_features} [lo, hi] pairs (one per feature), got shape {pairs.shape}")
    lo, hi = pairs[:, 0].copy(), pairs[:, 1].copy()
    if not (np.all(np.isfinite(pairs)) and np.all(lo <= hi)):
        raise error(f"{what} must be finite with lo <= hi")
    return lo, hi


def check_rows(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, origin: str) -> None:
    """Refuse, before encryption, rows the build's guarantee does not cover (no values in the message)."""
    rows = np.asarray(rows, dtype=np.float64)
    bad = ~np.isfinite(rows) | (rows < lo) | (rows > hi)
    if np.any(bad):
        row, feature = (int(i) for i in np.argwhere(bad)[0])
        shown = f"[{lo[feature]:g}, {hi[feature]:g}]"
        raise InvalidRequest(
            f"row {row}, feature {feature}: outside the bounds {shown} the model was built for ({origin}); "
            f"{int(bad.any(axis=1).sum())} of {len(rows)} rows are. Scores outside them are not guaranteed, so "
            "they are refused: rebuild the model with feature_bounds or calibration_data covering these inputs",
            code="input_out_of_bounds",
        )


def check_scores(scores: np.ndarray, limit: float) -> None:
    """A decoded value beyond the proven bound is an error, never a score (it may have wrapped around)."""
    bad = ~np.isfinite(scores) | (np.abs(scores) > limit)
    if np.any(bad):
        row, output = (int(i) for i in np.argwhere(bad.reshape(len(scores), -1))[0])
        raise InvalidRequest(
            f"row {row}, output {output}: the decrypted score is outside +-{limit:.6g}, the bound the service "
            "proved for inputs within its feature bounds; the response is damaged or does not fit the model "
            "(no scores returned)",
            code="score_out_of_range",
        )


def proven_accuracy(description: dict[str, Any], allow_unproven: bool) -> Any:
    """The description's `accuracy`; None only when the caller opted in to a model without one.

    Without it nothing bounds the rows (none refused) nor the scores (a wrapped score reads as a
    prediction), so such a description (an older build, or a hand-made one) is refused by default.
    """
    accuracy = description.get("accuracy")
    if accuracy is None and not allow_unproven:
        raise InvalidRequest(
            "the model's description states no proven accuracy (built by an older SEI, or written by hand): its "
            "rows cannot be checked against feature bounds nor its scores against a proven range, so a wrapped "
            "score would read as a prediction; rebuild the model, or opt in with Client(..., allow_unproven=True)",
            code="unproven_model",
        )
    if accuracy is not None and not allow_unproven:
        _check_rounding(accuracy)
    return accuracy


def _check_rounding(accuracy: Any) -> None:
    """Refuse a description whose error bound, plus the output rounding's half-step, exceeds its tolerance
    (a build before the proofs left room for rounding): its rounded scores could miss the stated tolerance."""
    try:
        bound, tolerance = float(accuracy["error_bound"]), float(accuracy["tolerance"])
        ok = math.isfinite(bound) and bound > 0 and math.isfinite(tolerance)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidRequest("the service's accuracy description cannot be read", code="invalid_response")
    if delivered_error(bound) > tolerance:
        raise InvalidRequest(
            f"the model's proven error bound {bound:.3g} plus half the output rounding's grid "
            f"({output_grid(accuracy) / 2:.3g}) exceeds its tolerance {tolerance:g} (a build by an older SEI, whose "
            "proof left no room for the rounding): rounded scores could miss the tolerance; rebuild the model, or "
            "opt in with Client(..., allow_unproven=True)",
            code="unproven_model",
        )


def score_limit(accuracy: Any, fallback: float) -> float:
    """|decoded score| the client accepts: the proven bound plus the tolerance, or `fallback` (no accuracy:
    only when the caller opted in, `proven_accuracy`)."""
    if accuracy is None:
        return fallback
    try:
        limit = float(accuracy["max_abs_score"]) + float(accuracy["tolerance"])
    except (KeyError, TypeError, ValueError):
        raise InvalidRequest("the service's accuracy description cannot be read", code="invalid_response") from None
    if not (math.isfinite(limit) and limit > 0):
        raise InvalidRequest("the service's accuracy description cannot be read", code="invalid_response")
    return limit


def describe_bounds(lo: np.ndarray, hi: np.ndarray, origin: str) -> str:
    """'features in [lo, hi] (origin)' or 'per-feature bounds (origin)', for build messages."""
    shown = compact_bounds(lo, hi)
    where = f"features in {shown}" if len(shown) == 2 and not isinstance(shown[0], list) else "per-feature bounds"
    return f"{where} ({origin})"


def refusal(estimator: str, adapter: str, tolerance: float, lo: np.ndarray, hi: np.ndarray, origin: str,
            reason: object, weights_hint: str) -> str:
    """Why the build refuses a model it cannot serve within `tolerance`, and what to set instead."""
    return (
        f"{estimator} cannot be served by {adapter} within tolerance {tolerance:g} for "
        f"{describe_bounds(lo, hi, origin)}: {reason}; narrow the bounds, raise tolerance, or use {weights_hint}"
    )


def accuracy_entry(tolerance: float, error_bound: float, max_abs_score: float, lo: np.ndarray, hi: np.ndarray,
                   origin: str, margin: float | None = None) -> dict[str, Any]:
    """What describe() states as `accuracy`, and what the client checks rows and scores against;
    `calibration_margin`: the share of the calibration range the proven bounds add on each side."""
    return {
        "tolerance": tolerance,
        "error_bound": error_bound,
        "max_abs_score": max_abs_score,
        "feature_bounds": compact_bounds(lo, hi),
        "bounds_from": origin,
        **({"calibration_margin": margin} if margin is not None else {}),
    }


def check_described_rows(accuracy: Any, rows: np.ndarray, n_features: int) -> None:
    """Refuse rows outside the feature bounds of a described `accuracy` (None: the caller opted in to
    a model without one, `proven_accuracy`; nothing to check against)."""
    if accuracy is None:
        return

    def unreadable(message: str) -> InvalidRequest:
        return InvalidRequest(f"the service's accuracy description: {message}", code="invalid_response")
    if not isinstance(accuracy, dict):
        raise unreadable("not an object")
    lo, hi = expand_bounds(accuracy.get("feature_bounds"), n_features, "feature_bounds", unreadable)
    shape = np.shape(rows)
    if len(shape) != 2 or shape[1] != n_features:
        raise InvalidRequest(f"the model takes rows of {n_features} features, not shape {shape}", code="wrong_features")
    check_rows(rows, lo, hi, str(accuracy.get("bounds_from", "declared")))
