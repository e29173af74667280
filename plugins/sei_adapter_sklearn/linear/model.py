"""The folded model: `LinearModel` (an affine map plus its decision rule), `FORMAT`, `NotLinearError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit, softmax

__all__ = ["FORMAT", "LinearModel", "NotLinearError"]

FORMAT = "sei.linear-model/1"
_AFFINE_ONLY = "SEI can only serve affine models"
_DECISIONS = {"classifier": ("sign", "argmax"), "regressor": ("identity", "multioutput")}
_PROBA_FOR = {"sign": ("sigmoid", "modified-huber"), "argmax": ("softmax", "ovr-normalized", "modified-huber")}


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
        if self.proba == "softmax":
            return softmax(s, axis=1)
        # one-vs-rest: each score's own probability; SGDClassifier's modified Huber loss clips linearly
        ovr = (np.clip(s, -1.0, 1.0) + 1.0) / 2.0 if self.proba == "modified-huber" else expit(s)
        if self.decision == "sign":
            return np.column_stack([1.0 - ovr[:, 0], ovr[:, 0]])
        return _ovr_normalize(ovr)

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


def _ovr_normalize(p: np.ndarray) -> np.ndarray:
    """One-vs-rest probabilities normalised per row (uniform where all underflow to zero)."""
    total = p.sum(axis=1, keepdims=True)
    return np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[1]), where=total > 0)


def _plain(value: Any) -> Any:
    """A numpy scalar as the plain Python value, so classes serialise to JSON."""
    return value.item() if isinstance(value, np.generic) else value
