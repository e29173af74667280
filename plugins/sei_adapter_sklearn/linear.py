"""Fold a fitted linear scikit-learn model (or an all-affine pipeline) into one weight matrix.

Homomorphic encryption can only evaluate the affine part of a model, so everything the
server computes is `X @ coef.T + intercept`; the client turns those scores into labels or
probabilities in plaintext with `LinearModel.predict` / `LinearModel.predict_proba`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import expit, softmax
from sklearn.base import is_classifier, is_regressor
from sklearn.decomposition import PCA, IncrementalPCA, TruncatedSVD
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted

__all__ = ["FORMAT", "LinearModel", "NotLinearError", "fold"]

FORMAT = "sei.linear-model/1"
_AFFINE_ONLY = "SEI can only serve affine models"
_DECISIONS = {"classifier": ("sign", "argmax"), "regressor": ("identity", "multioutput")}
_PROBA_FOR = {"sign": ("sigmoid",), "argmax": ("softmax", "ovr-normalized")}
# Probe inputs are compared with the estimator within this fraction of the scores' scale.
_PROBE_RTOL = 1e-6

# Pulls a head (coef, intercept) back through one transformer: (W, c) -> (W', c').
_PullBack = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class NotLinearError(ValueError):
    """Raised naming the estimator (or pipeline step) that cannot be folded into one affine map."""


@dataclass(frozen=True, eq=False, repr=False)
class LinearModel:
    """An affine model `X @ coef.T + intercept` plus how its scores become predictions."""

    coef: np.ndarray
    intercept: np.ndarray
    kind: str
    classes: list[Any] | None
    decision: str
    proba: str | None
    estimator: str

    def __post_init__(self) -> None:
        coef = np.array(self.coef, dtype=np.float64, ndmin=2)
        intercept = np.array(self.intercept, dtype=np.float64, ndmin=1)
        for array in (coef, intercept):
            array.setflags(write=False)
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "intercept", intercept)
        if self.classes is not None:
            object.__setattr__(self, "classes", [_plain(c) for c in self.classes])
        self._validate()

    def _validate(self) -> None:
        """Refuse inconsistent fields early, so a bad dict never reaches a server."""
        if self.coef.ndim != 2 or self.intercept.shape != (self.n_outputs,):
            raise ValueError(f"coef {self.coef.shape} and intercept {self.intercept.shape} do not match")
        if self.decision not in _DECISIONS.get(self.kind, ()):
            raise ValueError(f"decision {self.decision!r} is not valid for kind {self.kind!r}")
        if (self.kind == "classifier") != (self.classes is not None):
            raise ValueError("classifiers need classes and regressors must not have them")
        if self.proba is not None and self.proba not in _PROBA_FOR.get(self.decision, ()):
            raise ValueError(f"proba {self.proba!r} is not valid with decision {self.decision!r}")
        n_classes = len(self.classes or ())
        fits = {
            "sign": self.n_outputs == 1 and n_classes == 2,
            "argmax": self.n_outputs == n_classes >= 2,
            "identity": self.n_outputs == 1,
            "multioutput": self.n_outputs >= 1,
        }
        if not fits[self.decision]:
            raise ValueError(f"{self.decision!r} with {n_classes} classes cannot have {self.n_outputs} outputs")

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.coef.shape[0])

    def scores(self, X: Any) -> np.ndarray:
        """Plaintext scores, shape (n, n_outputs): what the encrypted computation must reproduce."""
        X = np.array(X, dtype=np.float64, ndmin=2)
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features, the model expects {self.n_features}")
        return X @ self.coef.T + self.intercept

    def predict(self, scores: Any) -> np.ndarray:
        """What the estimator's `predict` returns, computed from scores (1-D input is one row)."""
        s = self._as_scores(scores)
        if self.decision == "identity":
            return s[:, 0]
        if self.decision == "multioutput":
            return s
        labels = np.asarray(self.classes)
        if self.decision == "sign":
            return labels[(s[:, 0] > 0).astype(int)]
        return labels[np.argmax(s, axis=1)]

    def predict_proba(self, scores: Any) -> np.ndarray | None:
        """What the estimator's `predict_proba` returns, or None where SEI does not reproduce it."""
        if self.proba is None:
            return None
        s = self._as_scores(scores)
        if self.proba == "sigmoid":
            positive = expit(s[:, 0])
            return np.column_stack([1.0 - positive, positive])
        if self.proba == "softmax":
            return softmax(s, axis=1)
        return _ovr_normalize(expit(s))

    def _as_scores(self, scores: Any) -> np.ndarray:
        """Scores as (n, n_outputs); 1-D is one row, or one score per row for single-output models."""
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim == 1:
            s = s.reshape(-1, 1) if self.n_outputs == 1 else s.reshape(1, -1)
        if s.ndim != 2 or s.shape[1] != self.n_outputs:
            raise ValueError(f"scores of shape {np.shape(scores)} do not fit {self.n_outputs} outputs")
        return s

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; `from_dict` restores an equal model."""
        return {
            "format": FORMAT,
            "estimator": self.estimator,
            "kind": self.kind,
            "decision": self.decision,
            "proba": self.proba,
            "classes": None if self.classes is None else list(self.classes),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearModel:
        """Rebuild a model from `to_dict` output, validating shapes and field values."""
        if d.get("format", FORMAT) != FORMAT:
            raise ValueError(f"unsupported linear model format {d.get('format')!r}; expected {FORMAT!r}")
        try:
            return cls(
                coef=np.array(d["coef"], dtype=np.float64),
                intercept=np.array(d["intercept"], dtype=np.float64),
                kind=d["kind"],
                classes=d.get("classes"),
                decision=d["decision"],
                proba=d.get("proba"),
                estimator=d.get("estimator", "unknown"),
            )
        except KeyError as exc:
            raise ValueError(f"linear model description lacks {exc.args[0]!r}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LinearModel):
            return NotImplemented
        same = (self.kind, self.classes, self.decision, self.proba, self.estimator)
        return same == (other.kind, other.classes, other.decision, other.proba, other.estimator) and (
            np.array_equal(self.coef, other.coef) and np.array_equal(self.intercept, other.intercept)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"LinearModel(estimator={self.estimator!r}, kind={self.kind!r}, decision={self.decision!r}, "
            f"proba={self.proba!r}, n_features={self.n_features}, n_outputs={self.n_outputs})"
        )


def fold(estimator: Any) -> LinearModel:
    """Fold a fitted linear estimator or all-affine pipeline into one `LinearModel`.

    The result is checked against the estimator on probe inputs, so a model that only looks
    linear (e.g. a GLM with a log link, a one-vs-one SVC) is refused instead of served wrong.
    """
    model = _fold_any(estimator, ())
    _verify(model, estimator)
    return model


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


def _describe(est: Any, path: Sequence[str]) -> str:
    name = type(est).__name__
    return f"pipeline step '{'__'.join(path)}' ({name})" if path else name


def _require_fitted(est: Any, path: tuple[str, ...]) -> None:
    try:
        check_is_fitted(est)
    except NotFittedError:
        raise NotLinearError(f"{_describe(est, path)} is not fitted; fit it before serving it") from None
    except TypeError:
        raise NotLinearError(f"{_describe(est, path)} is not a scikit-learn estimator") from None


def _is_passthrough(step: Any) -> bool:
    return step is None or (isinstance(step, str) and step == "passthrough")


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


def _label(step: Any) -> str:
    if isinstance(step, Pipeline):
        inner = [_label(s) for _, s in step.steps if not _is_passthrough(s)]
        return f"Pipeline({', '.join(inner)})"
    return type(step).__name__


def _pull_back(
    step: Any, path: tuple[str, ...], coef: np.ndarray, intercept: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weights on the step's output -> weights on its input (`coef @ A`, `coef @ b + intercept`)."""
    if _is_passthrough(step):
        return coef, intercept
    _require_fitted(step, path)
    if isinstance(step, Pipeline):
        for name, inner in reversed(step.steps):
            coef, intercept = _pull_back(inner, (*path, name), coef, intercept)
        return coef, intercept
    for kind, affine in _TRANSFORMERS:
        if isinstance(step, kind):
            return affine(step, _describe(step, path))(coef, intercept)
    raise NotLinearError(f"{_describe(step, path)} is not linear; {_AFFINE_ONLY}")


def _elementwise(scale: Any, offset: Any) -> _PullBack:
    """Pull back through x -> x * scale + offset (per feature)."""

    def pull(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shift = np.broadcast_to(np.asarray(offset, dtype=np.float64), coef.shape[1:])
        return coef * np.asarray(scale, dtype=np.float64), intercept + coef @ shift

    return pull


def _projection(matrix: np.ndarray, offset: np.ndarray) -> _PullBack:
    """Pull back through x -> x @ matrix.T + offset."""

    def pull(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return coef @ matrix, intercept + coef @ offset

    return pull


def _refuse_clip(step: Any, desc: str) -> None:
    if getattr(step, "clip", False):
        raise NotLinearError(f"{desc} clips its output (clip=True), which is not linear; {_AFFINE_ONLY}")


def _standard_scaler(step: StandardScaler, desc: str) -> _PullBack:
    mean = step.mean_ if step.with_mean else 0.0
    scale = step.scale_ if step.with_std else 1.0
    return _elementwise(1.0 / np.asarray(scale), -np.asarray(mean) / scale)


def _robust_scaler(step: RobustScaler, desc: str) -> _PullBack:
    center = step.center_ if step.with_centering else 0.0
    scale = step.scale_ if step.with_scaling else 1.0
    return _elementwise(1.0 / np.asarray(scale), -np.asarray(center) / scale)


def _min_max_scaler(step: MinMaxScaler, desc: str) -> _PullBack:
    _refuse_clip(step, desc)
    return _elementwise(step.scale_, step.min_)


def _max_abs_scaler(step: MaxAbsScaler, desc: str) -> _PullBack:
    _refuse_clip(step, desc)
    return _elementwise(1.0 / step.scale_, 0.0)


def _pca(step: PCA | IncrementalPCA, desc: str) -> _PullBack:
    components = np.asarray(step.components_, dtype=np.float64)
    if step.whiten:  # sklearn floors the scale at machine epsilon; so do we
        scale = np.sqrt(np.asarray(step.explained_variance_, dtype=np.float64))
        components = components / np.maximum(scale, np.finfo(scale.dtype).eps)[:, None]
    return _projection(components, -(components @ np.asarray(step.mean_, dtype=np.float64)))


def _truncated_svd(step: TruncatedSVD, desc: str) -> _PullBack:
    components = np.asarray(step.components_, dtype=np.float64)
    return _projection(components, np.zeros(components.shape[0]))


_TRANSFORMERS: tuple[tuple[type | tuple[type, ...], Callable[[Any, str], _PullBack]], ...] = (
    (StandardScaler, _standard_scaler),
    (RobustScaler, _robust_scaler),
    (MinMaxScaler, _min_max_scaler),
    (MaxAbsScaler, _max_abs_scaler),
    ((PCA, IncrementalPCA), _pca),
    (TruncatedSVD, _truncated_svd),
)


# --- verification ---------------------------------------------------------------------------


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
    if model.proba is not None:
        expected = _call(estimator, "predict_proba", X, model)
        _check_close(expected, model.predict_proba(scores), model, 1e-6, "predict_proba")


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


def _ovr_normalize(p: np.ndarray) -> np.ndarray:
    """One-vs-rest probabilities normalised per row (uniform where all underflow to zero)."""
    total = p.sum(axis=1, keepdims=True)
    return np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[1]), where=total > 0)


def _plain(value: Any) -> Any:
    """A numpy scalar as the plain Python value, so classes serialise to JSON."""
    return value.item() if isinstance(value, np.generic) else value
