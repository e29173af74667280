"""Fold a fitted linear scikit-learn model (or an all-affine pipeline) into one weight matrix.

Homomorphic encryption can only evaluate the affine part of a model, so everything the
server computes is `X @ coef.T + intercept`; the client turns those scores into labels or
probabilities in plaintext with `LinearModel.predict` / `LinearModel.predict_proba`.
"""

from __future__ import annotations

from typing import Any

from .model import FORMAT, LinearModel, NotLinearError
from .verify import _verify

__all__ = ["FORMAT", "LinearModel", "NotLinearError", "fold"]


def fold(estimator: Any) -> LinearModel:
    """Fold a fitted linear estimator or all-affine pipeline into one `LinearModel`.

    The result is checked against the estimator on probe inputs, so a model that only looks
    linear (e.g. a GLM with a log link, a one-vs-one SVC) is refused instead of served wrong.
    """
    from .estimators import _fold_any  # scikit-learn: a build needs it, a client reading scores does not

    model = _fold_any(estimator, ())
    _verify(model, estimator)
    return model
