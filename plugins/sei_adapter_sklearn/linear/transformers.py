"""Pull a head's weights back through affine transformers: scalers, PCA, truncated SVD, nested pipelines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.decomposition import PCA, IncrementalPCA, TruncatedSVD
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

from .model import _AFFINE_ONLY, NotLinearError
from .steps import _describe, _is_passthrough, _require_fitted

__all__: list[str] = []

# Pulls a head (coef, intercept) back through one transformer: (W, c) -> (W', c').
_PullBack = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


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
