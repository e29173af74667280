"""Output rounding of the scikit-learn adapters, and the error budget it leaves the proofs.

A CKKS decryption is the score plus noise that depends on the secret key; published at full precision
with the response ciphertexts it lets anyone solve for the key (Li and Micciancio, 2021). So the client
rounds every decoded score to a grid g no finer than the proven error bound e (the smallest power of
two >= e). A rounded score is within e + g/2 of the float model, so the build proves e against the
tolerance less that half-step (`error_budget`): the delivered error, rounding included, stays within
the stated tolerance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sei_framework import InvalidRequest

__all__ = ["UNPROVEN_GRID", "delivered_error", "error_budget", "grid_step", "output_grid", "round_scores"]

UNPROVEN_GRID = 2.0 ** -10
"""The output grid of a model without a proven error bound (the caller opted in): ~ the default tolerance."""


def grid_step(error_bound: float) -> float:
    """The smallest power of two >= `error_bound` (> 0, finite), exactly."""
    mantissa, exponent = math.frexp(error_bound)  # error_bound = mantissa * 2**exponent, 0.5 <= mantissa < 1
    return math.ldexp(1.0, exponent - 1 if mantissa == 0.5 else exponent)


def delivered_error(error_bound: float) -> float:
    """The most a rounded score can differ from the float model: the error bound plus half the grid."""
    return error_bound + grid_step(error_bound) / 2


def error_budget(tolerance: float) -> float:
    """The largest error bound whose delivered error (`delivered_error`, rounding included) is within
    `tolerance`: what a build proves its error bound against (between tolerance / 2 and 2/3 of it)."""
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")
    k = math.ceil(math.log2(tolerance)) - 1  # 2**k < tolerance <= 2**(k + 1): the grid is 2**k at most
    budget = min(math.ldexp(1.0, k), tolerance - math.ldexp(1.0, k - 1))
    while delivered_error(budget) > tolerance:  # float rounding, or a k one off: step down to a proven budget
        budget = math.nextafter(budget, 0.0)
    return budget


def output_grid(accuracy: Any) -> float:
    """The step decoded scores are rounded to: `grid_step` of the described proven error bound (a model
    without one, only when the caller opted in: UNPROVEN_GRID)."""
    if accuracy is None:
        return UNPROVEN_GRID
    try:
        bound = float(accuracy["error_bound"])
    except (KeyError, TypeError, ValueError):
        raise InvalidRequest("the service's accuracy description cannot be read", code="invalid_response") from None
    if not (math.isfinite(bound) and bound > 0):
        raise InvalidRequest("the service's accuracy description cannot be read", code="invalid_response")
    return grid_step(bound)


def round_scores(scores: np.ndarray, grid: float) -> np.ndarray:
    """Scores rounded to multiples of `grid` (a power of two: exact in float64); within grid / 2 of the input."""
    return np.round(np.asarray(scores, dtype=np.float64) / grid) * grid
