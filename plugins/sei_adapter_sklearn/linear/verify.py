"""Check a folded model against its estimator on probe rows before anyone serves it."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .model import _AFFINE_ONLY, LinearModel, NotLinearError

__all__: list[str] = []

# Probe inputs are compared with the estimator within this fraction of the scores' scale.
_PROBE_RTOL = 1e-6


def _verify(model: LinearModel, estimator: Any) -> None:
    """Compare the folded model with the estimator on random probe rows; refuse on mismatch."""
    X = np.random.default_rng(0).normal(scale=2.0, size=(8, model.n_features))
    scores = model.scores(X)
    tol = _PROBE_RTOL * (np.abs(X) @ np.abs(model.coef).T + np.abs(model.intercept)) + 1e-12
    if model.kind == "regressor":
        _check_close(_call(estimator, "predict", X, model), scores, model, tol, "predict")
        return
    if not hasattr(estimator, "decision_function"):
        raise NotLinearError(f"{model.estimator} has no decision_function to check its scores against")
    _check_close(_call(estimator, "decision_function", X, model), scores, model, tol, "decision_function")
    clear = _clear_margin(model, scores, tol)
    if not np.array_equal(np.asarray(_call(estimator, "predict", X, model))[clear], model.predict(scores)[clear]):
        raise NotLinearError(f"{model.estimator}: predict is not the {model.decision} of its scores")
    probabilities = model.predict_proba(scores)  # None where SEI does not reproduce predict_proba
    if probabilities is not None:
        expected = _call(estimator, "predict_proba", X, model)
        _check_close(expected, probabilities, model, 1e-6, "predict_proba")


def _call(estimator: Any, method: str, X: np.ndarray, model: LinearModel) -> Any:
    """Run one estimator method on probe rows; any failure means SEI cannot vouch for the fold."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "X does not have valid feature names"
        try:
            return getattr(estimator, method)(X)
        except Exception as exc:  # an estimator can fail in many ways; report it, do not serve it
            raise NotLinearError(
                f"{model.estimator}: {method} failed on probe inputs ({type(exc).__name__}: {exc})"
            ) from exc


def _check_close(expected: Any, got: np.ndarray, model: LinearModel, tol: Any, method: str) -> None:
    """Refuse unless `expected` has sklearn's shape for this decision and matches `got` (n, k)."""
    expected = np.asarray(expected, dtype=np.float64)
    ndim = 1 if model.decision in ("sign", "identity") and method != "predict_proba" else 2
    if expected.ndim != ndim or expected.reshape(len(got), -1).shape != got.shape:
        raise NotLinearError(f"{model.estimator}: {method} has shape {expected.shape}, not {got.shape}")
    if not np.all(np.abs(expected.reshape(got.shape) - got) <= tol):
        raise NotLinearError(
            f"{model.estimator}: {method} is not X @ coef_.T + intercept_ on probe inputs; {_AFFINE_ONLY}"
        )


def _clear_margin(model: LinearModel, scores: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """Rows whose predicted label cannot flip within the probe tolerance."""
    if model.decision == "sign":
        return np.abs(scores[:, 0]) > 2 * tol[:, 0]
    top = np.sort(scores, axis=1)
    return top[:, -1] - top[:, -2] > 2 * tol.max(axis=1)
