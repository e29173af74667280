"""Library front ends: a scikit-learn, XGBoost or LightGBM model (object or model file) -> IR, through Treelite.

Each front end knows what Treelite does not record: the precision its library compares features in, and the
original class labels. scikit-learn trees cast features to float32 and go left when ``x <= t``; XGBoost compares
float32 features with ``x < t``; LightGBM and HistGradientBoosting compare float64 with ``x <= t``; NaN follows the
node's default direction (Treelite records it, LightGBM's "NaN counts as 0.0" included).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .fold import fold
from .ir import Dtype, Ensemble, Task
from .treelite_import import UnsupportedModel, from_treelite

# Preprocessing a pipeline may hold before its trees: each maps a feature by a non-decreasing function.
MONOTONE_STEPS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler")

SKLEARN_FLOAT32 = (
    "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
    "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
    "GradientBoostingClassifier", "GradientBoostingRegressor",
)
# LightGBM reads every |x| <= kZeroThreshold (1e-35 as a float) as 0.0 before comparing.
LIGHTGBM_ZERO = float(np.float32(1e-35))
SKLEARN_FLOAT64 = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


def _treelite() -> Any:
    try:
        import treelite
        import treelite.sklearn  # noqa: F401  (a submodule the package does not import)
    except ImportError as exc:  # pragma: no cover - the trees extra is a dependency of the adapter
        raise UnsupportedModel("tree models need Treelite: install the `trees` extra of sei-framework") from exc
    return treelite


def _classes(model: Any) -> tuple[Any, ...] | None:
    classes = getattr(model, "classes_", None)
    if classes is None:
        return None
    return tuple(c.item() if isinstance(c, np.generic) else c for c in np.asarray(classes, dtype=object))


def _wrapper_task(model: Any) -> Task | None:
    """What a scikit-learn wrapper says it is (a regressor whose link looks like a classifier's stays a
    regressor: LightGBM's cross-entropy objectives); None for a Booster or a model file."""
    kind = getattr(model, "_estimator_type", None)
    if kind is None and hasattr(model, "__sklearn_tags__"):
        kind = getattr(model.__sklearn_tags__(), "estimator_type", None)
    return "regression" if kind == "regressor" else "classification" if kind == "classifier" else None


def from_sklearn(model: Any) -> Ensemble:
    """A fitted scikit-learn tree model (one of SKLEARN_FLOAT32 / SKLEARN_FLOAT64) -> IR."""
    name = type(model).__name__
    if name not in SKLEARN_FLOAT32 + SKLEARN_FLOAT64:
        raise UnsupportedModel(f"{name} is not a served tree model (served: {', '.join(SKLEARN_FLOAT32 + SKLEARN_FLOAT64)})")
    if getattr(model, "n_outputs_", 1) != 1:
        raise UnsupportedModel(f"{name} with {model.n_outputs_} outputs: multi-output models are not served")
    if name.startswith("GradientBoostingClassifier") and model.loss == "exponential":
        raise UnsupportedModel("GradientBoostingClassifier(loss='exponential'): its probabilities are not a sigmoid "
                               "of the raw score Treelite records; not served")
    if name.startswith("HistGradientBoosting") and getattr(model, "is_categorical_", None) is not None:
        if np.asarray(model.is_categorical_).any():
            raise UnsupportedModel(f"{name} with categorical features: categorical splits are not served")
    dtype: Dtype = "float64" if name in SKLEARN_FLOAT64 else "float32"
    tl = _treelite()
    target = _as_forest(model) if "Tree" in name and "Trees" not in name else model
    try:
        imported = tl.sklearn.import_model(target)
    except (tl.TreeliteError, NotImplementedError) as exc:
        raise UnsupportedModel(f"Treelite cannot import this {name}: {exc}") from exc
    return from_treelite(imported, dtype=dtype, classes=_classes(model))


def _as_forest(tree: Any) -> Any:
    """A single decision tree as the one-tree forest it is (Treelite imports forests, not lone trees): a forest
    of one tree averages over one tree, so its outputs are the tree's own."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    classifier = hasattr(tree, "classes_")
    forest: Any = RandomForestClassifier(n_estimators=1) if classifier else RandomForestRegressor(n_estimators=1)
    forest.estimators_ = [tree]
    forest.n_features_in_ = tree.n_features_in_
    forest.n_outputs_ = tree.n_outputs_
    if classifier:
        forest.n_classes_ = tree.n_classes_
        forest.classes_ = tree.classes_
    return forest


def from_xgboost(model: Any) -> Ensemble:
    """An XGBoost model -> IR: an ``xgboost.Booster``, a scikit-learn wrapper (``XGBClassifier``...), or the path
    of a JSON or UBJSON model file (read by Treelite; no pickle)."""
    tl = _treelite()
    classes = None
    try:
        if isinstance(model, (str, Path)):
            imported = tl.frontend.load_xgboost_model(str(model), format_choice="inspect")
        else:
            booster = model.get_booster() if hasattr(model, "get_booster") else model
            classes = _classes(model)
            _check_xgboost(booster)
            imported = tl.frontend.from_xgboost(booster)
    except (tl.TreeliteError, ValueError) as exc:
        raise UnsupportedModel(f"Treelite cannot import this XGBoost model: {exc}") from exc
    return from_treelite(imported, dtype="float32", classes=classes, task=_wrapper_task(model))


def _check_xgboost(booster: Any) -> None:
    """Refuse, by name, what Treelite would reject with an internal message: linear boosters, categorical data."""
    config = json.loads(booster.save_config())
    name = config.get("learner", {}).get("gradient_booster", {}).get("name")
    if name == "gblinear":
        raise UnsupportedModel("XGBoost booster 'gblinear' is a linear model, not trees: not served")
    if "c" in (booster.feature_types or []):
        raise UnsupportedModel("XGBoost model with categorical features: categorical splits are not served")


def from_lightgbm(model: Any) -> Ensemble:
    """A LightGBM model -> IR: a ``lightgbm.Booster``, a scikit-learn wrapper (``LGBMClassifier``...), or the path
    of a text model file (LightGBM's own loader; no pickle)."""
    import lightgbm

    classes = None
    if isinstance(model, (str, Path)):
        try:
            booster = lightgbm.Booster(model_file=str(model))
        except lightgbm.basic.LightGBMError as exc:
            raise UnsupportedModel(f"LightGBM cannot read this model file: {exc}") from exc
    else:
        booster = model.booster_ if hasattr(model, "booster_") else model
        classes = _classes(model)
    dump = booster.dump_model()
    _check_lightgbm(dump)
    tl = _treelite()
    try:
        imported = tl.frontend.from_lightgbm(booster)
    except (tl.TreeliteError, ValueError) as exc:
        raise UnsupportedModel(f"Treelite cannot import this LightGBM model: {exc}") from exc
    ens = from_treelite(imported, dtype="float64", classes=classes, zero_band=LIGHTGBM_ZERO, task=_wrapper_task(model))
    if "sigmoid_alpha" in ens.postprocess_params:  # Treelite keeps it as a float32; LightGBM's objective, exactly
        for token in str(dump.get("objective", "")).split():
            if token.startswith("sigmoid:"):
                ens = replace(ens, postprocess_params={**ens.postprocess_params, "sigmoid_alpha": float(token[8:])})
    return ens


def _check_lightgbm(dump: dict[str, Any]) -> None:
    """Refuse what a threshold bit cannot express: zero-as-missing (a band around 0.0 takes the default
    direction), categorical splits, linear trees."""
    for info in dump.get("tree_info", []):
        stack = [info.get("tree_structure", {})]
        while stack:
            node = stack.pop()
            if "split_feature" not in node:
                if "leaf_coeff" in node or "leaf_features" in node:
                    raise UnsupportedModel("LightGBM linear trees (linear_tree=true) are not served")
                continue
            if node.get("decision_type") == "==":
                raise UnsupportedModel(f"LightGBM categorical split on feature {node['split_feature']}: not served")
            if node.get("missing_type") == "Zero":
                raise UnsupportedModel(
                    f"LightGBM zero_as_missing split on feature {node['split_feature']}: zeros take the default "
                    "direction, which one threshold bit cannot express; retrain with zero_as_missing=false"
                )
            stack.extend((node["left_child"], node["right_child"]))


def from_model(model: Any) -> Ensemble:
    """The IR of a fitted model object: a scikit-learn tree model, an XGBoost or LightGBM model (Booster or
    scikit-learn wrapper), or a scikit-learn Pipeline of scalers ending in one of these (folded, ``fold``)."""
    name = type(model).__name__
    if name == "Pipeline":
        return _pipeline(model)
    module = type(model).__module__.split(".")[0]
    if module == "xgboost":
        return from_xgboost(model)
    if module == "lightgbm":
        return from_lightgbm(model)
    if module == "sklearn":
        return from_sklearn(model)
    raise UnsupportedModel(f"{type(model).__module__}.{name} is not a served tree model")


def _pipeline(pipe: Any) -> Ensemble:
    *pre, (_, last) = list(pipe.steps)
    transforms = []
    for step_name, step in pre:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        kind = type(step).__name__
        if kind not in MONOTONE_STEPS or type(step).__module__.split(".")[0] != "sklearn":
            raise UnsupportedModel(f"pipeline step {step_name!r} ({kind}) is not monotone per feature, so it cannot "
                                   f"fold into the thresholds; served steps: {', '.join(MONOTONE_STEPS)}")
        scale = getattr(step, "scale_", None)
        if scale is not None and (np.asarray(scale) <= 0).any():
            raise UnsupportedModel(f"pipeline step {step_name!r} ({kind}) has a non-positive scale: not monotone")
        transforms.append(step)
    ensemble = from_model(last)

    def transform(rows: np.ndarray) -> np.ndarray:
        for step in transforms:
            rows = step.transform(rows)
        return np.asarray(rows, dtype=np.float64)

    return fold(ensemble, transform) if transforms else ensemble
