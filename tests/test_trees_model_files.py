"""Tree model files -> IR: allow-listed pickles/joblib/.skops, XGBoost JSON/UBJSON, LightGBM text; scaler
pipelines folded into the thresholds exactly; string labels; and every refusal, each naming what and why."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

pytest.importorskip("treelite")
lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")

from sklearn import ensemble, tree  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_iris  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler  # noqa: E402

from sei_adapter_trees.engine import bits, frontends, postprocess, reference  # noqa: E402
from sei_adapter_trees.engine.ir import Ensemble  # noqa: E402
from sei_adapter_trees.model_files import UnsupportedModel, ensemble_from_model, load_ensemble  # noqa: E402
from sei_framework import ModelFileError  # noqa: E402

X, Y = load_breast_cancer(return_X_y=True)
XI, YI = load_iris(return_X_y=True)
NAMES = np.array(["benign", "malignant"])[Y]
IRIS_NAMES = np.array(["setosa", "versicolor", "virginica"])[YI]


def _categorical_frame() -> Any:
    import pandas as pd

    frame = pd.DataFrame(X[:, :3], columns=["a", "b", "c"])
    frame["c"] = pd.Categorical(Y * 2 + np.arange(len(Y)) % 2)
    return frame


def predict(ens: Ensemble, rows: np.ndarray) -> np.ndarray:
    return postprocess.predict(ens, reference.tree_sums(ens, bits.split_bits(rows, ens.n_features, ens.splits)))


def edge_rows(ens: Ensemble, base: np.ndarray) -> np.ndarray:
    """Rows at every threshold and its float64 neighbours (after a fold, thresholds are on raw values)."""
    out = [base]
    for s in ens.splits:
        for v in (s.threshold, np.nextafter(s.threshold, -np.inf), np.nextafter(s.threshold, np.inf)):
            if np.isfinite(v):
                rows = base.copy()
                rows[:, s.feature] = v
                out.append(rows)
    return np.concatenate(out)


def assert_predicts_like(model: Any, ens: Ensemble, rows: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = model.predict(rows)
    got = predict(ens, rows)
    assert got.dtype == expected.dtype
    assert (got == expected).all(), f"{int((got != expected).sum())} of {len(rows)} differ"


@pytest.mark.parametrize("suffix", [".joblib", ".pkl", ".skops"])
@pytest.mark.parametrize("factory", [
    lambda: ensemble.RandomForestClassifier(8, max_depth=4, random_state=0),
    lambda: ensemble.HistGradientBoostingClassifier(max_iter=8, random_state=0),
    lambda: ensemble.GradientBoostingClassifier(n_estimators=8, random_state=0),
    lambda: tree.DecisionTreeClassifier(max_depth=4, random_state=0),
], ids=["rf", "hgb", "gb", "dt"])
def test_sklearn_files_load_through_the_allow_list_with_string_labels(tmp_path: Path, suffix: str, factory: Any) -> None:
    model = factory().fit(XI, IRIS_NAMES)
    path = tmp_path / f"model{suffix}"
    if suffix == ".skops":
        import skops.io as sio

        sio.dump(model, path)
    elif suffix == ".joblib":
        joblib.dump(model, path)
    else:
        path.write_bytes(pickle.dumps(model))
    ens = load_ensemble(path)
    assert ens.classes == ("setosa", "versicolor", "virginica")
    assert_predicts_like(model, ens, XI)


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_xgboost_model_files(tmp_path: Path, suffix: str) -> None:
    model = xgb.XGBClassifier(n_estimators=8, max_depth=3, random_state=0).fit(XI, YI)
    path = tmp_path / f"model{suffix}"
    model.save_model(path)
    ens = load_ensemble(path)
    assert ens.classes == (0, 1, 2)
    assert_predicts_like(model, ens, edge_rows(ens, XI[:3]))


def test_lightgbm_text_model_file_and_pickled_wrappers(tmp_path: Path) -> None:
    model = lgb.LGBMClassifier(n_estimators=8, num_leaves=8, random_state=0, verbose=-1).fit(X, NAMES)
    path = tmp_path / "model.txt"
    model.booster_.save_model(path)
    from_text = load_ensemble(path)  # a text file has no labels: LightGBM's booster predicts 0/1
    assert from_text.classes == (0, 1)
    joblib.dump(model, tmp_path / "lgbm.joblib")
    pickled = load_ensemble(tmp_path / "lgbm.joblib")
    assert pickled.classes == ("benign", "malignant")
    assert_predicts_like(model, pickled, edge_rows(pickled, X[:2]))
    xgb_model = xgb.XGBRegressor(n_estimators=4, max_depth=3).fit(X, Y)
    joblib.dump(xgb_model, tmp_path / "xgb.joblib")
    assert load_ensemble(tmp_path / "xgb.joblib").task == "regression"


@pytest.mark.parametrize("scaler", [StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler])
@pytest.mark.parametrize("head", ["dt", "hgb"])
def test_scaler_pipelines_fold_into_thresholds_exactly(scaler: Any, head: str) -> None:
    """The folded thresholds are on raw values; rows at every folded threshold and its neighbours route as the
    pipeline (scaler, then the trees' own float32/float64 comparison) does."""
    last = tree.DecisionTreeClassifier(max_depth=5, random_state=0) if head == "dt" else \
        ensemble.HistGradientBoostingClassifier(max_iter=6, random_state=0)
    pipe = make_pipeline(scaler(), StandardScaler(), last).fit(X, NAMES)
    ens = ensemble_from_model(pipe)
    assert {s.dtype for s in ens.splits} == {"float64"}
    assert_predicts_like(pipe, ens, edge_rows(ens, X[:3]))


def test_the_fold_is_needed_thresholds_differ_from_the_trees_own() -> None:
    pipe = make_pipeline(StandardScaler(), tree.DecisionTreeClassifier(max_depth=3, random_state=0)).fit(X, Y)
    unfolded = frontends.from_sklearn(pipe[-1])
    folded = ensemble_from_model(pipe)
    assert {s.threshold for s in folded.splits}.isdisjoint({s.threshold for s in unfolded.splits})
    assert (predict(unfolded, X) != pipe.predict(X)).any()


@pytest.mark.parametrize("model, match", [
    (lambda: ensemble.RandomForestRegressor(3, max_depth=2).fit(X, np.column_stack([Y, Y])), "multi-output"),
    (lambda: ensemble.GradientBoostingClassifier(n_estimators=2, loss="exponential").fit(X, Y), "exponential"),
    (lambda: ensemble.HistGradientBoostingClassifier(max_iter=2, categorical_features=[0]).fit(
        np.column_stack([np.arange(len(X)) % 3, X[:, 1:]]), Y), "categorical"),
    (lambda: lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(
        np.column_stack([Y * 4 + np.arange(len(X)) % 4, X[:, 1:]]), Y, categorical_feature=[0]), "categorical"),
    (lambda: lgb.LGBMClassifier(n_estimators=3, verbose=-1, zero_as_missing=True).fit(
        np.where(X > np.median(X, axis=0), X, 0.0), Y), "zero_as_missing"),
    (lambda: lgb.LGBMRegressor(n_estimators=2, verbose=-1, linear_tree=True).fit(X, Y), "linear trees"),
    (lambda: xgb.XGBRegressor(n_estimators=2, multi_strategy="multi_output_tree", tree_method="hist").fit(
        X, np.column_stack([Y, Y])), "multi-output|target"),
    (lambda: LogisticRegression(max_iter=200).fit(X, Y), "not a served tree model"),
    (lambda: make_pipeline(PCA(3), tree.DecisionTreeClassifier()).fit(X, Y), "not monotone"),
    (lambda: xgb.XGBClassifier(n_estimators=2, objective="binary:hinge").fit(X, Y), "post-processor"),
    (lambda: xgb.XGBClassifier(n_estimators=2, objective="binary:logitraw").fit(X, Y), "logitraw"),
    (lambda: xgb.XGBClassifier(n_estimators=2, booster="gblinear").fit(X, Y), "gblinear"),
    (lambda: xgb.XGBClassifier(n_estimators=2, enable_categorical=True, tree_method="hist").fit(_categorical_frame(), Y),
     "categorical"),
    (lambda: ensemble.GradientBoostingRegressor(n_estimators=2, init=tree.DecisionTreeRegressor()).fit(X, Y), "init"),
    (lambda: ensemble.IsolationForest(n_estimators=2).fit(X), "IsolationForest is not a served"),
], ids=["multi-output", "gb-exponential", "hgb-categorical", "lgbm-categorical", "lgbm-zero-as-missing",
        "lgbm-linear-tree", "xgb-multi-output", "not-a-tree", "pca-pipeline", "xgb-hinge", "xgb-logitraw", "xgb-gblinear",
        "xgb-categorical", "gb-custom-init", "isolation-forest"])
def test_refusals_name_what_and_why(model: Any, match: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = model()
    with pytest.raises(UnsupportedModel, match=match):
        ensemble_from_model(fitted)


def test_a_pickle_naming_another_class_is_refused_before_import(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged: irrelevant, only its class matters
        joblib.dump(LogisticRegression(max_iter=5).fit(X[:, :2], Y), path)
    with pytest.raises(ModelFileError, match="LogisticRegression") as info:
        load_ensemble(path)
    assert info.value.refused
    with pytest.raises(ModelFileError, match="unknown extension"):
        (tmp_path / "model.bin").write_bytes(b"x")
        load_ensemble(tmp_path / "model.bin")
    (tmp_path / "bad.txt").write_text("not a model")
    with pytest.raises(UnsupportedModel, match="LightGBM"):
        load_ensemble(tmp_path / "bad.txt")
