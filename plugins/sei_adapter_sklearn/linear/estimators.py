"""Fold estimators: dispatch, plain linear classifiers and regressors, one-vs-rest, searches, pipelines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import is_classifier, is_regressor
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from .model import _AFFINE_ONLY, LinearModel, NotLinearError
from .steps import _describe, _is_passthrough, _require_fitted
from .transformers import _label, _pull_back

__all__: list[str] = []


# --- dispatch -------------------------------------------------------------------------------


def _fold_any(est: Any, path: tuple[str, ...]) -> LinearModel:
    """Fold one estimator; `path` holds the pipeline step names leading to it, for messages."""
    _require_fitted(est, path)
    if isinstance(est, Pipeline):
        return _fold_pipeline(est, path)
    if isinstance(est, OneVsRestClassifier):
        return _fold_ovr(est, path)
    if hasattr(est, "cv_results_"):  # GridSearchCV and friends
        return _fold_search(est, path)
    return _fold_estimator(est, path)


# --- final estimators ---------------------------------------------------------------------


def _fold_estimator(est: Any, path: tuple[str, ...]) -> LinearModel:
    """A plain estimator whose prediction is `X @ coef_.T + intercept_`."""
    desc = _describe(est, path)
    if is_classifier(est):
        _refuse_multilabel(est, desc)
    coef = _coef(est)
    if coef is None:
        raise NotLinearError(f"{desc} is not linear; {_AFFINE_ONLY}")
    if is_classifier(est):
        return _classifier(est, coef, desc)
    if is_regressor(est):
        return _regressor(est, coef, desc)
    raise NotLinearError(f"{desc} is neither a classifier nor a regressor; {_AFFINE_ONLY}")


def _coef(est: Any) -> np.ndarray | None:
    try:
        coef = est.coef_
    except AttributeError:  # e.g. SVC with a non-linear kernel raises on access
        return None
    return np.asarray(coef.toarray() if sparse.issparse(coef) else coef, dtype=np.float64)


def _intercept(est: Any, n_outputs: int, desc: str) -> np.ndarray:
    """`intercept_` as (n_outputs,), 0.0 where the estimator has none (fit_intercept=False)."""
    intercept = np.ravel(np.asarray(getattr(est, "intercept_", 0.0), dtype=np.float64))
    if intercept.size == 1:
        return np.full(n_outputs, intercept[0])
    if intercept.size != n_outputs:
        raise NotLinearError(f"{desc} has {intercept.size} intercepts for {n_outputs} outputs")
    return intercept


def _refuse_multilabel(est: Any, desc: str) -> None:
    classes = getattr(est, "classes_", None)
    binarizer = getattr(est, "label_binarizer_", None) or getattr(est, "_label_binarizer", None)
    multilabel = str(getattr(binarizer, "y_type_", "")).startswith("multilabel")
    multioutput = classes is not None and (isinstance(classes, list) or np.ndim(classes) != 1)
    if multilabel or multioutput:
        raise NotLinearError(f"{desc} is a multi-label or multi-output classifier; SEI serves one label per row")


def _classifier(est: Any, coef: np.ndarray, desc: str) -> LinearModel:
    coef = np.atleast_2d(coef)
    classes = list(est.classes_)
    rows = coef.shape[0]
    if rows == 1 and len(classes) == 2:
        decision = "sign"
    elif rows == len(classes) >= 2:
        decision = "argmax"
    else:
        raise NotLinearError(
            f"{desc} has {rows} score rows for {len(classes)} classes, which is not one-vs-rest; {_AFFINE_ONLY}"
        )
    return LinearModel(
        coef=coef,
        intercept=_intercept(est, rows, desc),
        kind="classifier",
        classes=classes,
        decision=decision,
        proba=_proba_rule(est, decision),
        estimator=type(est).__name__,
    )


def _proba_rule(est: Any, decision: str) -> str | None:
    """How `predict_proba` follows from the scores, for the estimators SEI knows it for."""
    if isinstance(est, (LogisticRegression, LinearDiscriminantAnalysis)):
        return "sigmoid" if decision == "sign" else "softmax"
    if isinstance(est, SGDClassifier) and est.loss == "log_loss":
        return "sigmoid" if decision == "sign" else "ovr-normalized"
    if isinstance(est, SGDClassifier) and est.loss == "modified_huber":
        return "modified-huber"
    return None


def _regressor(est: Any, coef: np.ndarray, desc: str) -> LinearModel:
    multi = coef.ndim == 2
    coef = np.atleast_2d(coef)
    return LinearModel(
        coef=coef,
        intercept=_intercept(est, coef.shape[0], desc),
        kind="regressor",
        classes=None,
        decision="multioutput" if multi else "identity",
        proba=None,
        estimator=type(est).__name__,
    )


# --- meta-estimators ------------------------------------------------------------------------


def _fold_ovr(ovr: OneVsRestClassifier, path: tuple[str, ...]) -> LinearModel:
    """Stack the binary estimators of a one-vs-rest classifier, one score per class."""
    desc = _describe(ovr, path)
    _refuse_multilabel(ovr, desc)
    try:
        parts = [_fold_any(inner, ()) for inner in ovr.estimators_]
    except NotLinearError as exc:
        raise NotLinearError(f"{desc} cannot be folded: {exc}") from exc
    if any(p.kind != "classifier" or p.decision != "sign" for p in parts):
        raise NotLinearError(f"{desc} must wrap binary linear classifiers; {_AFFINE_ONLY}")
    single = len(parts) == 1
    sigmoid = all(p.proba == "sigmoid" for p in parts)
    return LinearModel(
        coef=np.vstack([p.coef for p in parts]),
        intercept=np.concatenate([p.intercept for p in parts]),
        kind="classifier",
        classes=list(ovr.classes_),
        decision="sign" if single else "argmax",
        proba=("sigmoid" if single else "ovr-normalized") if sigmoid else None,
        estimator=f"{type(ovr).__name__}({parts[0].estimator})",
    )


def _fold_search(search: Any, path: tuple[str, ...]) -> LinearModel:
    """A fitted search (GridSearchCV, ...) predicts with its refitted best estimator."""
    best = getattr(search, "best_estimator_", None)
    if best is None:
        raise NotLinearError(f"{_describe(search, path)} was fitted with refit=False and cannot predict")
    model = _fold_any(best, path)
    return replace(model, estimator=f"{type(search).__name__}({model.estimator})")


# --- pipelines ------------------------------------------------------------------------------


def _fold_pipeline(pipe: Pipeline, path: tuple[str, ...]) -> LinearModel:
    """Fold the final estimator, then pull its weights back through each transformer."""
    *transformers, (last_name, last) = pipe.steps
    if _is_passthrough(last):
        raise NotLinearError(f"{_describe(pipe, path)} has no final estimator; {_AFFINE_ONLY}")
    model = _fold_any(last, (*path, last_name))
    coef, intercept = model.coef, model.intercept
    for name, step in reversed(transformers):
        coef, intercept = _pull_back(step, (*path, name), coef, intercept)
    labels = [_label(step) for _, step in pipe.steps[:-1] if not _is_passthrough(step)]
    return replace(
        model,
        coef=coef,
        intercept=intercept,
        estimator=f"Pipeline({', '.join([*labels, model.estimator])})",
    )
