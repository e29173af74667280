"""The feature names a tree model was trained with, for clients that choose columns by name.

scikit-learn keeps `feature_names_in_` (the estimator's or the Pipeline's) when it was fitted on a
DataFrame; XGBoost keeps `Booster.feature_names` (in a JSON/UBJSON file: the learner's `feature_names`);
LightGBM keeps `Booster.feature_name()`, but invents ``Column_0..`` when the data had none: generated names
are no names. A model without names takes its columns by position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sei_framework import PluginError

__all__ = ["file_feature_names", "model_feature_names", "tree_feature_names"]


def _usable(names: Any) -> list[str] | None:
    """Names as a list of strings; None for no names or LightGBM's generated ``Column_i``."""
    if names is None:
        return None
    listed = [str(name) for name in names]
    if not listed or listed == [f"Column_{i}" for i in range(len(listed))]:
        return None
    return listed


def model_feature_names(model: Any) -> list[str] | None:
    """The names a fitted model object carries: `feature_names_in_` (scikit-learn, a Pipeline, the XGBoost
    and LightGBM wrappers), else its booster's (XGBoost `feature_names`, LightGBM `feature_name()`)."""
    names = _usable(getattr(model, "feature_names_in_", None))
    if names is not None:
        return names
    if type(model).__name__ == "Pipeline":
        return model_feature_names(model.steps[-1][1])  # the scalers fitted on arrays, the trees on a frame
    booster = model.get_booster() if hasattr(model, "get_booster") else getattr(model, "booster_", model)
    if hasattr(booster, "feature_name") and callable(booster.feature_name):
        return _usable(booster.feature_name())
    return _usable(getattr(booster, "feature_names", None))


def file_feature_names(path: Path) -> list[str] | None:
    """The names a LightGBM text file (LightGBM's loader) or an XGBoost JSON/UBJSON file stores."""
    if path.suffix.lower() == ".txt":
        import lightgbm

        return _usable(lightgbm.Booster(model_file=str(path)).feature_name())
    if path.suffix.lower() == ".json":  # XGBoost's JSON: read as data, XGBoost itself not needed
        learner = json.loads(path.read_text(encoding="utf-8")).get("learner")
        return _usable(learner.get("feature_names") or None) if isinstance(learner, dict) else None
    try:  # UBJSON: XGBoost's own reader (without XGBoost installed, the file is served by position)
        import xgboost
    except ImportError:
        return None
    return _usable(xgboost.Booster(model_file=str(path)).feature_names)


def tree_feature_names(source: Path, model: Any, n_features: int) -> list[str] | None:
    """The feature names of the model built from `source` (`model`: its object, None for a library file);
    refused when they are not `n_features` distinct names."""
    names = model_feature_names(model) if model is not None else file_feature_names(source)
    if names is not None and (len(names) != n_features or len(set(names)) != len(names)):
        raise PluginError(f"the model names {len(names)} features ({len(set(names))} distinct); it takes {n_features}")
    return names
