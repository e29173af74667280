"""Load a tree model file into the IR: scikit-learn pickles/joblib/.skops through an exact allow-list, XGBoost
JSON/UBJSON and LightGBM text files through their own loaders (data formats, never a pickle).

Pipelines are served when every step before the trees is a scaler (monotone per feature): the scalers fold into
the thresholds exactly (``engine.fold``). Anything else is refused, naming what and why.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Any

from sei_framework import DATA_TYPES, ModelFileError, load_pickle, load_skops

from .engine import frontends
from .engine.ir import Ensemble
from .engine.treelite_import import UnsupportedModel

__all__ = ["MODEL_SUFFIXES", "UnsupportedModel", "allowed_types", "ensemble_from_model", "load_ensemble", "load_tree_model"]

ensemble_from_model = frontends.from_model

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIX = ".skops"
XGBOOST_SUFFIXES = (".json", ".ubj")
LIGHTGBM_SUFFIX = ".txt"
MODEL_SUFFIXES = (*PICKLE_SUFFIXES, SKOPS_SUFFIX, *XGBOOST_SUFFIXES, LIGHTGBM_SUFFIX)

# The exact classes a pickled tree model may hold, {module: names}; a name the installed library lacks is skipped.
SERVED_CLASSES: dict[str, tuple[str, ...]] = {
    "sklearn.tree": ("DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor"),
    "sklearn.tree._tree": ("Tree",),
    "sklearn.ensemble": (
        "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
        "GradientBoostingClassifier", "GradientBoostingRegressor", "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    ),
    "sklearn.ensemble._hist_gradient_boosting.predictor": ("TreePredictor",),
    "sklearn.ensemble._hist_gradient_boosting.binning": ("_BinMapper",),
    "sklearn.dummy": ("DummyClassifier", "DummyRegressor"),  # GradientBoosting's init estimator
    "sklearn._loss.loss": (
        "HalfSquaredError", "AbsoluteError", "PinballLoss", "HuberLoss", "HalfPoissonLoss", "HalfGammaLoss",
        "HalfTweedieLoss", "HalfTweedieLossIdentity", "HalfBinomialLoss", "HalfMultinomialLoss", "ExponentialLoss",
    ),
    "sklearn._loss.link": ("IdentityLink", "LogLink", "LogitLink", "MultinomialLogit", "HalfLogitLink", "Interval"),
    "sklearn._loss._loss": (
        "CyHalfSquaredError", "CyAbsoluteError", "CyPinballLoss", "CyHuberLoss", "CyHalfPoissonLoss",
        "CyHalfGammaLoss", "CyHalfTweedieLoss", "CyHalfTweedieLossIdentity", "CyHalfBinomialLoss",
        "CyHalfMultinomialLoss", "CyExponentialLoss", "__pyx_unpickle_CyHalfMultinomialLoss",
    ),
    "sklearn.utils._param_validation": ("Interval",),
    "sklearn.preprocessing": ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler", "LabelEncoder"),
    "sklearn.pipeline": ("Pipeline",),
    "xgboost.sklearn": ("XGBClassifier", "XGBRegressor"),
    "xgboost.core": ("Booster",),  # its state is XGBoost's own model bytes
    "lightgbm.sklearn": ("LGBMClassifier", "LGBMRegressor"),
    "lightgbm.basic": ("Booster",),  # its state is LightGBM's own model text
    "collections": ("OrderedDict", "defaultdict"),
    # HistGradientBoosting keeps a numpy Generator (feature subsampling); these rebuild one from its state
    "numpy.random._pickle": ("__generator_ctor", "__bit_generator_ctor", "__randomstate_ctor"),
    "numpy.random._pcg64": ("PCG64",),
    "numpy.random._mt19937": ("MT19937",),
    "numpy.random.bit_generator": ("SeedSequence", "__pyx_unpickle_SeedSequence"),
}  # fmt: skip



@cache
def allowed_types() -> frozenset[str]:
    """Every ``module.name`` a tree model file may hold: the served classes the installed libraries define
    (under the module that defines them), plus ``DATA_TYPES``."""
    names = set(DATA_TYPES)
    for module_name, attributes in SERVED_CLASSES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # XGBoost or LightGBM not installed: their classes cannot be in a loadable file anyway
        for attribute in attributes:
            found = getattr(module, attribute, None)
            if isinstance(found, type):
                names.add(f"{found.__module__}.{found.__qualname__}")
            elif callable(found):
                names.add(f"{module_name}.{attribute}")
    return frozenset(names)


def load_ensemble(path: Path | str, *, trusted_types: list[str] | None = None) -> Ensemble:
    """The IR of the tree model stored at ``path`` (the loader chosen by extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_file() and suffix in XGBOOST_SUFFIXES:
        return frontends.from_xgboost(path)
    if path.is_file() and suffix == LIGHTGBM_SUFFIX:
        return frontends.from_lightgbm(path)
    return frontends.from_model(load_tree_model(path, trusted_types=trusted_types))


def load_tree_model(path: Path | str, *, trusted_types: list[str] | None = None) -> Any:
    """The model object in a pickle/joblib/.skops file, loading only the exact classes of ``allowed_types()``
    (plus ``trusted_types``); a file naming anything else is refused, naming it, before that name is imported.
    (XGBoost JSON/UBJSON and LightGBM text files are read by ``frontends.from_xgboost``/``from_lightgbm``.)"""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist or is not a regular file")
    suffix = path.suffix.lower()
    if suffix not in (*PICKLE_SUFFIXES, SKOPS_SUFFIX):
        raise ModelFileError(f"model file {path} has unknown extension {suffix or '(none)'!r}; "
                             f"expected one of {', '.join(MODEL_SUFFIXES)}")
    allowed = allowed_types() | set(trusted_types or [])
    try:
        return load_skops(path, allowed) if suffix == SKOPS_SUFFIX else load_pickle(path, allowed)
    except ModelFileError as exc:
        if not exc.refused:
            raise
        raise ModelFileError(f"{exc}; list a type in the adapter's trusted_types only if you trust whoever made "
                             "the file", refused=exc.refused) from None
