"""The feature names a concrete-ml model reports: the `feature_names_in_` scikit-learn (or XGBoost's
wrapper) kept from the DataFrame the model was fitted on, as the compiler's environment recorded them.

The calibration rows reach the compiler before its names are known, so they are read by position;
a calibration table whose column names are not the model's, in its order, is refused rather than
compiled on misplaced columns. A model without names (fitted on an array, or precompiled) takes its
columns by position.
"""

from __future__ import annotations

from typing import Any

from sei_framework import PluginError

__all__ = ["reported_names"]


def _shown(names: list[str]) -> str:
    return ", ".join(map(repr, names[:8])) + (f" ... ({len(names)} in all)" if len(names) > 8 else "")


def reported_names(report: dict[str, Any], calibration_columns: list[str] | None, name: str) -> list[str] | None:
    """The compiler's `feature_names` checked (n_features distinct strings) and matched against the
    calibration table's column names when it has them; None: the model takes columns by position."""
    names = report.get("feature_names")
    if names is None:
        return None
    n_features = report["n_features"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names) \
            or len(names) != n_features:  # fmt: skip
        raise PluginError(f"{name}: the compiler reported unreadable feature_names (not {n_features} distinct strings)")
    if calibration_columns is not None and calibration_columns != names:
        raise PluginError(
            f"{name}: calibration_data's columns ({_shown(calibration_columns)}) are not the model's features "
            f"in its order ({_shown(names)}); write the calibration table with the model's columns, in order"
        )
    return names
