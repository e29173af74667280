"""Helpers shared by estimator and transformer folding: naming, fitted checks, passthrough steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .model import NotLinearError

__all__: list[str] = []


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
