"""Load scikit-learn model files (joblib, pickle, skops) through one allow-list, with clear errors and
version warnings."""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from sklearn.exceptions import InconsistentVersionWarning

from sei_framework import DATA_TYPES, ModelFileError, load_pickle, load_skops

__all__ = ["MODEL_SUFFIXES", "ModelFileError", "allowed_types", "load_model", "load_model_file"]

logger = logging.getLogger("sei_adapter_sklearn")

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIX = ".skops"
MODEL_SUFFIXES = (*PICKLE_SUFFIXES, SKOPS_SUFFIX)

# The exact classes the linear fold serves and what they hold once fitted: {module: names}. A name
# missing from the installed scikit-learn is skipped (classes come and go between releases).
SERVED_CLASSES: dict[str, tuple[str, ...]] = {
    "sklearn.linear_model": (
        "LogisticRegression", "LogisticRegressionCV", "RidgeClassifier", "RidgeClassifierCV", "SGDClassifier",
        "Perceptron", "PassiveAggressiveClassifier", "LinearRegression", "Ridge", "RidgeCV", "Lasso", "LassoCV",
        "ElasticNet", "ElasticNetCV", "MultiTaskLasso", "MultiTaskLassoCV", "MultiTaskElasticNet",
        "MultiTaskElasticNetCV", "Lars", "LarsCV", "LassoLars", "LassoLarsCV", "LassoLarsIC",
        "OrthogonalMatchingPursuit", "OrthogonalMatchingPursuitCV", "BayesianRidge", "ARDRegression",
        "HuberRegressor", "SGDRegressor", "PassiveAggressiveRegressor", "TheilSenRegressor", "QuantileRegressor",
    ),
    "sklearn.svm": ("LinearSVC", "LinearSVR", "SVC"),
    "sklearn.discriminant_analysis": ("LinearDiscriminantAnalysis",),
    "sklearn.multiclass": ("OneVsRestClassifier",),
    "sklearn.pipeline": ("Pipeline",),
    "sklearn.model_selection": (
        "GridSearchCV", "RandomizedSearchCV", "KFold", "StratifiedKFold", "GroupKFold", "ShuffleSplit",
        "StratifiedShuffleSplit", "RepeatedKFold", "RepeatedStratifiedKFold", "TimeSeriesSplit", "PredefinedSplit",
        "LeaveOneOut",
    ),
    "sklearn.preprocessing": ("StandardScaler", "RobustScaler", "MinMaxScaler", "MaxAbsScaler", "LabelBinarizer"),
    "sklearn.decomposition": ("PCA", "IncrementalPCA", "TruncatedSVD"),
    # held by fitted estimators: losses (SGD, logistic regression) and a search's scorer
    "sklearn._loss._loss": ("CyHalfBinomialLoss", "CyHalfMultinomialLoss", "CyHalfSquaredError"),
    "sklearn.linear_model._sgd_fast": (
        "Hinge", "SquaredHinge", "ModifiedHuber", "Log", "SquaredLoss", "Huber", "EpsilonInsensitive",
        "SquaredEpsilonInsensitive",
    ),
    "sklearn.metrics._scorer": ("_PassthroughScorer", "_Scorer", "_MultimetricScorer"),
}  # fmt: skip

_reported: set[tuple[str, str]] = set()  # (file, version) mismatches already logged by this process


@cache
def allowed_types() -> frozenset[str]:
    """Every `module.name` a model file may hold: the served classes where the installed scikit-learn
    defines them, the metric functions of its named scorers (a search's `scorer_`), and `DATA_TYPES`."""
    names = set(DATA_TYPES)
    for module_name, attributes in SERVED_CLASSES.items():
        module = importlib.import_module(module_name)
        for attribute in attributes:
            found = getattr(module, attribute, None)
            if isinstance(found, type):
                names.add(f"{found.__module__}.{found.__qualname__}")
    from sklearn.metrics import get_scorer, get_scorer_names

    for scoring in get_scorer_names():
        function = getattr(get_scorer(scoring), "_score_func", None)
        if function is not None:
            names.add(f"{function.__module__}.{function.__qualname__}")
    return frozenset(names)


def load_model(path: Path | str, *, trusted_types: list[str] | None = None) -> object:
    """Load the model stored at `path`, choosing the loader from the file extension.

    Pickles (.joblib/.pkl/.pickle) and .skops files alike load only the exact classes in
    `allowed_types()` plus `trusted_types`: a file naming anything else is refused, naming it, before
    that name is imported.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"model file {path} is not a regular file")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelFileError(
            f"model file {path} has unknown extension {suffix or '(none)'!r}; expected one of {', '.join(MODEL_SUFFIXES)}"
        )
    return load_model_file(path, "skops" if suffix == SKOPS_SUFFIX else "pickle", trusted_types or [])


def load_model_file(path: Path, kind: str, trusted_types: Iterable[str]) -> object:
    """Load a pickle/joblib (`kind` "pickle") or skops file through the allow-list; refusals name the
    types and how to trust one."""
    allowed = allowed_types() | set(trusted_types)
    try:
        if kind == "skops":
            return _load_logging_versions(path, lambda: load_skops(path, allowed))
        return _load_logging_versions(path, lambda: load_pickle(path, allowed))
    except ModelFileError as exc:
        if not exc.refused:
            raise
        raise ModelFileError(
            f"{exc}; list a type in the adapter's trusted_types only if you trust whoever made the file",
            refused=exc.refused,
        ) from None


def _load_logging_versions(path: Path, load: Callable[[], Any]) -> Any:
    """Run `load`, turning scikit-learn version-mismatch warnings into one log line per file and process."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        model = load()
    mismatches = [w.message for w in caught if isinstance(w.message, InconsistentVersionWarning)]
    for other in caught:
        if not isinstance(other.message, InconsistentVersionWarning):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    first = mismatches[0] if mismatches else None
    if first is not None and (str(path), first.original_sklearn_version) not in _reported:
        _reported.add((str(path), first.original_sklearn_version))
        logger.warning(
            "model file %s was saved by scikit-learn %s and is loaded by %s; check its predictions",
            path,
            first.original_sklearn_version,
            first.current_sklearn_version,
        )
    return model
