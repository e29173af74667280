"""The tree engine's model side against each library's own predict: Treelite import -> IR, split bits as the
library compares, the reference indicator walk, client post-processing. Labels must equal predict 100 %, on
held-out rows, on rows placed at every threshold and its float32/float64 neighbours, and on NaN; scores must
match predict_proba/predict to the library's own precision."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("treelite")
lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")

from sklearn import ensemble, tree  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from sei_adapter_trees.engine import bits, frontends, postprocess, reference  # noqa: E402
from sei_adapter_trees.engine.ir import Ensemble  # noqa: E402

RNG = np.random.default_rng(0)


def _data(name: str, nan: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    loader = {"binary": load_breast_cancer, "multiclass": load_iris, "regression": load_diabetes}[name]
    X, y = loader(return_X_y=True)
    X = X.copy()
    if nan:  # missing values in training, so the libraries learn a default direction per node
        X[np.random.default_rng(1).random(X.shape) < 0.1] = np.nan
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    return X_train, X_test, y_train, y_test


SK = frontends.from_sklearn
XGB = frontends.from_xgboost
LGB = frontends.from_lightgbm
CLASSIFIERS: dict[str, tuple[Callable[[], Any], Callable[[Any], Ensemble]]] = {
    "DecisionTree": (lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0), SK),
    "RandomForest": (lambda: ensemble.RandomForestClassifier(12, max_depth=4, random_state=0), SK),
    "ExtraTrees": (lambda: ensemble.ExtraTreesClassifier(12, max_depth=4, random_state=0), SK),
    "GradientBoosting": (lambda: ensemble.GradientBoostingClassifier(n_estimators=12, max_depth=3, random_state=0), SK),
    "HistGradientBoosting": (lambda: ensemble.HistGradientBoostingClassifier(max_iter=12, max_depth=4, random_state=0), SK),
    "XGBoost": (lambda: xgb.XGBClassifier(n_estimators=12, max_depth=4, random_state=0), XGB),
    "LightGBM": (lambda: lgb.LGBMClassifier(n_estimators=12, num_leaves=12, random_state=0, verbose=-1), LGB),
}
REGRESSORS: dict[str, tuple[Callable[[], Any], Callable[[Any], Ensemble]]] = {
    "DecisionTree": (lambda: tree.DecisionTreeRegressor(max_depth=5, random_state=0), SK),
    "RandomForest": (lambda: ensemble.RandomForestRegressor(12, max_depth=4, random_state=0), SK),
    "ExtraTrees": (lambda: ensemble.ExtraTreesRegressor(12, max_depth=4, random_state=0), SK),
    "GradientBoosting": (lambda: ensemble.GradientBoostingRegressor(n_estimators=12, max_depth=3, random_state=0), SK),
    "HistGradientBoosting": (lambda: ensemble.HistGradientBoostingRegressor(max_iter=12, max_depth=4, random_state=0), SK),
    "XGBoost": (lambda: xgb.XGBRegressor(n_estimators=12, max_depth=4, random_state=0), XGB),
    "LightGBM": (lambda: lgb.LGBMRegressor(n_estimators=12, num_leaves=12, random_state=0, verbose=-1), LGB),
}
# Libraries whose missing-value routing the issue names, plus scikit-learn's own trees (which learn it too).
NAN_MODELS = ("XGBoost", "LightGBM", "HistGradientBoosting", "DecisionTree", "RandomForest")


def threshold_rows(ens: Ensemble, base: np.ndarray) -> np.ndarray:
    """For every split: each base row with that feature set to the threshold, its float64 neighbours and the
    float32 neighbours of its float32 rounding (the values a float32 comparison can tell apart); and every used
    feature at +-0.0 and around LightGBM's zero band (+-1e-35f, which LightGBM reads as 0.0)."""
    out = []
    z = frontends.LIGHTGBM_ZERO
    band = [0.0, -0.0, z, -z, np.nextafter(z, 1), np.nextafter(-z, -1), np.nextafter(z, 0), np.nextafter(-z, 0)]
    for f in sorted({s.feature for s in ens.splits}):
        for v in band:
            rows = base.copy()
            rows[:, f] = v
            out.append(rows)
    for s in ens.splits:
        t = s.threshold
        with np.errstate(over="ignore"):
            values = {t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)}
        if abs(t) <= float(np.finfo(np.float32).max):
            t32 = np.float32(t)
            values |= {float(t32), float(np.nextafter(t32, np.float32(-np.inf))),
                       float(np.nextafter(t32, np.float32(np.inf)))}
        for v in values:
            if np.isfinite(v) and abs(v) <= float(np.finfo(np.float32).max):
                rows = base.copy()
                rows[:, s.feature] = v
                out.append(rows)
    return np.concatenate(out)


def nan_rows(n_features: int, base: np.ndarray) -> np.ndarray:
    """Each base row with one feature NaN (every feature in turn), plus rows NaN in a random half of features."""
    out = []
    for f in range(n_features):
        rows = base.copy()
        rows[:, f] = np.nan
        out.append(rows)
    half = np.repeat(base, 4, axis=0)
    half[RNG.random(half.shape) < 0.5] = np.nan
    return np.concatenate([*out, half])


def run(ens: Ensemble, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sums = reference.tree_sums(ens, bits.split_bits(X, ens.n_features, ens.splits))
    return postprocess.predict(ens, sums), postprocess.scores(ens, postprocess.raw_scores(ens, sums))


def tolerance(name: str, ens: Ensemble) -> float:
    """XGBoost accumulates in float32 (its own precision); the others in float64."""
    if name != "XGBoost":
        return 1e-9
    total = float(np.abs(ens.base_score).max()) + sum(float(np.abs(t.leaf_values).max()) for t in ens.trees)
    return 4 * float(np.finfo(np.float32).eps) * max(total, 1.0)


CASES = [(kind, name) for kind in ("binary", "multiclass") for name in CLASSIFIERS] + [("regression", n) for n in REGRESSORS]
CASES += [(kind + "-nan", name) for kind, name in CASES if name in NAN_MODELS]


@pytest.fixture(scope="module", params=CASES, ids=[f"{k}-{n}" for k, n in CASES])
def fitted(request: pytest.FixtureRequest) -> tuple[str, Any, Ensemble, np.ndarray]:
    kind, name = request.param
    nan = kind.endswith("-nan")
    task = kind.removesuffix("-nan")
    X_train, X_test, y_train, _ = _data(task, nan)
    factory, frontend = (REGRESSORS if task == "regression" else CLASSIFIERS)[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = factory().fit(X_train, y_train)
    ens = frontend(model)
    return name, model, ens, X_test


def _assert_same(name: str, model: Any, ens: Ensemble, X: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LightGBM and XGBoost warn about feature names
        expected = model.predict(X)
        labels, scores = run(ens, X)
        if ens.task == "classification":
            assert labels.dtype == np.asarray(expected).dtype
            mismatched = np.flatnonzero(labels != expected)
            assert mismatched.size == 0, f"{mismatched.size} of {len(X)} labels differ, e.g. row {X[mismatched[0]]}"
            np.testing.assert_allclose(scores, model.predict_proba(X), rtol=0, atol=tolerance(name, ens))
        else:
            np.testing.assert_allclose(scores, expected, rtol=0, atol=tolerance(name, ens))


def test_held_out_rows(fitted: tuple[str, Any, Ensemble, np.ndarray]) -> None:
    name, model, ens, X_test = fitted
    _assert_same(name, model, ens, X_test)


def test_rows_at_every_threshold_and_its_neighbours(fitted: tuple[str, Any, Ensemble, np.ndarray]) -> None:
    name, model, ens, X_test = fitted
    base = np.nan_to_num(X_test[:3], nan=0.5)
    rows = threshold_rows(ens, base)
    assert len(rows) >= 3 * 3 * len(ens.splits)
    _assert_same(name, model, ens, rows)


@pytest.mark.parametrize("name", NAN_MODELS)
def test_nan_takes_each_nodes_default_direction(name: str) -> None:
    """Trained with missing values (learned default directions) and without (LightGBM then reads NaN as 0.0;
    the others send it where their training put it)."""
    for nan in (True, False):
        X_train, X_test, y_train, _ = _data("binary", nan)
        factory, frontend = CLASSIFIERS[name]
        model = factory().fit(X_train, y_train)
        ens = frontend(model)
        rows = nan_rows(ens.n_features, np.nan_to_num(X_test[:4], nan=1.0))
        _assert_same(name, model, ens, rows)
        if nan:
            assert {s.nan_left for s in ens.splits} == {True, False}
