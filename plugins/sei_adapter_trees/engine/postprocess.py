"""Client-side post-processing: tree sums -> raw scores -> probabilities or values -> labels.

``raw = tree_sums / n_trees (forests) + base_score``, then the library's own link: identity (forest
probabilities, regression), sigmoid (binary boosting, one-vs-all), softmax (multi-class boosting), exponential
(Poisson/Gamma/Tweedie), log(1 + exp). Labels are the original classes (any type, strings included):
``argmax`` over the class scores, ties to the first; a one-output binary model predicts its second class when
the raw score is > 0 (scikit-learn's HistGradientBoosting rule; a raw score of exactly 0 is a tie).
"""

from __future__ import annotations

import numpy as np

from .ir import Ensemble


def raw_scores(ensemble: Ensemble, sums: np.ndarray) -> np.ndarray:
    """float64[n_rows, n_outputs]: the margin each library computes before its link function."""
    sums = np.asarray(sums, dtype=np.float64)
    if sums.ndim != 2 or sums.shape[1] != ensemble.n_outputs:
        raise ValueError(f"tree sums must be [n_rows, {ensemble.n_outputs}], got shape {sums.shape}")
    if ensemble.average:
        sums = sums / ensemble.n_trees
    return sums + ensemble.base_score


def _link(ensemble: Ensemble, raw: np.ndarray) -> np.ndarray:
    name = ensemble.postprocess
    if name == "identity":
        return raw
    if name == "sigmoid":
        alpha = ensemble.postprocess_params.get("sigmoid_alpha", 1.0)
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-alpha * raw))
    if name == "softmax":
        shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    if name == "exponential":
        return np.exp(raw)
    if name == "logarithm_one_plus_exp":
        return np.logaddexp(0.0, raw)
    raise ValueError(f"unknown post-processor {name!r}")


def scores(ensemble: Ensemble, raw: np.ndarray) -> np.ndarray:
    """Regression: float64[n_rows] values. Classification: float64[n_rows, n_classes] class scores (probabilities
    for every served link but a forest's, whose averaged leaf fractions are its probabilities already)."""
    out = _link(ensemble, raw)
    if ensemble.task == "regression":
        return out[:, 0]
    if ensemble.n_outputs == 1:
        return np.column_stack([1.0 - out[:, 0], out[:, 0]])
    return out


def labels(ensemble: Ensemble, raw: np.ndarray) -> np.ndarray:
    """The predicted labels, as the library's ``predict`` returns them (classes of their own type)."""
    if ensemble.task == "regression" or ensemble.classes is None:
        raise ValueError("a regressor has no labels: use scores()")
    if ensemble.n_outputs == 1:
        index = (raw[:, 0] > 0).astype(np.int64)
    else:
        index = np.argmax(_link(ensemble, raw), axis=1)
    return np.asarray(ensemble.classes, dtype=_label_dtype(ensemble.classes))[index]


def _label_dtype(classes: tuple[object, ...]) -> type:
    """Keep numbers numeric and strings strings, as the library's classes_ array is (object for a mix)."""
    kinds = {type(c) for c in classes}
    if kinds <= {int, bool}:
        return np.int64 if kinds != {bool} else np.bool_
    if kinds <= {int, float}:
        return np.float64
    if kinds == {str}:
        return np.str_
    return object


def predict(ensemble: Ensemble, sums: np.ndarray) -> np.ndarray:
    """Tree sums -> what the library's ``predict`` returns (labels for a classifier, values for a regressor)."""
    raw = raw_scores(ensemble, sums)
    return labels(ensemble, raw) if ensemble.task == "classification" else scores(ensemble, raw)
