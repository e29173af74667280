"""The IR's invariants, the client's row checks and split bits, and the objectives beyond plain classification
and regression (each link function against its library's own predict)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

pytest.importorskip("treelite")
lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")

from sklearn import ensemble, tree  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris  # noqa: E402

from sei_adapter_trees.engine import bits, frontends, postprocess, reference  # noqa: E402
from sei_adapter_trees.engine.ir import Ensemble, IRError, Split, Tree, finite_split  # noqa: E402

X, Y = load_breast_cancer(return_X_y=True)
XR, YR = load_diabetes(return_X_y=True)
XI, YI = load_iris(return_X_y=True)
I32 = np.int32


def stump(**changes: Any) -> Ensemble:
    """One tree: x0 <= 0.5 ? (x1 < 2 ? leaf0 : leaf1) : leaf2."""
    t = Tree(split=np.array([0, 1], I32), left=np.array([1, ~0], I32), right=np.array([~2, ~1], I32),
             leaf_values=np.array([[1.0], [2.0], [3.0]]))
    fields: dict[str, Any] = dict(
        n_features=2, splits=(Split(0, 0.5, "<=", "float64", True), Split(1, 2.0, "<", "float32", False)),
        trees=(t,), n_outputs=1, base_score=np.zeros(1), average=False, postprocess="identity", task="regression",
        classes=None,
    )
    fields.update(changes)
    return Ensemble(**fields)


def test_a_valid_ensemble_walks_as_its_tree_says() -> None:
    ens = stump().validate()
    rows = np.array([[0.5, 1.0], [0.5, 2.0], [0.6, 0.0], [np.nan, 5.0], [0.0, np.nan]])
    b = bits.split_bits(rows, 2, ens.splits)
    assert b.tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 1, 1]]
    assert postprocess.predict(ens, reference.tree_sums(ens, b)).tolist() == [1.0, 2.0, 3.0, 2.0, 2.0]
    assert ens.max_depth() == 2 and ens.trees[0].leaf_depths().tolist() == [2, 2, 1]


@pytest.mark.parametrize("changes, match", [
    ({"splits": (Split(0, 0.5, "<=", "float64", True),) * 2}, "deduplicated"),
    ({"splits": (Split(0, 0.5, "<=", "float64", True), Split(2, 1.0, "<", "float32", True))}, "feature 2"),
    ({"splits": (Split(0, np.inf, "<=", "float64", True), Split(1, 1.0, "<", "float32", True))}, "non-finite"),
    ({"base_score": np.zeros(2)}, "base_score"),
    ({"postprocess": "hinge"}, "post-processor"),
    ({"classes": ("a", "b")}, "regressor has no classes"),
    ({"task": "classification", "classes": ("a",)}, "two classes"),
    ({"trees": ()}, "no trees"),
    ({"trees": (Tree(np.array([0, 1], I32), np.array([1, ~0], I32), np.array([~2, ~1], I32), np.ones((2, 1))),)},
     "leaves"),
    ({"trees": (Tree(np.array([0, 5], I32), np.array([1, ~0], I32), np.array([~2, ~1], I32), np.ones((3, 1))),)},
     "split index"),
    ({"trees": (Tree(np.array([0, 1], I32), np.array([1, ~0], I32), np.array([~2, 1], I32), np.ones((3, 1))),)},
     "rooted"),
    ({"trees": (Tree(np.array([0, 1, 1], I32), np.array([~0, 2, 1], I32), np.array([~1, ~2, ~3], I32),
                     np.ones((4, 1))),)}, "unreachable"),
    ({"trees": (Tree(np.array([0, 1], np.int64), np.array([1, ~0], I32), np.array([~2, ~1], I32), np.ones((3, 1))),)},
     "int32"),
    ({"trees": (Tree(np.array([0, 1], I32), np.array([1, ~0], I32), np.array([~2, ~1], I32),
                     np.array([[1.0], [np.inf], [0.0]])),)}, "not finite"),
])
def test_broken_invariants_are_named(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(IRError, match=match):
        stump(**changes).validate()


@pytest.mark.parametrize("op", ["<", "<="])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_infinite_thresholds_become_finite_comparisons_that_route_alike(op: Any, dtype: Any) -> None:
    values = np.array([[-1e300], [-3e38], [-1.0], [0.0], [1.0], [3e38], [1e300], [np.nan]])
    for t in (np.inf, -np.inf):
        split = finite_split(0, t, op, dtype, nan_left=False)
        assert np.isfinite(split.threshold)
        rows = values if dtype == "float64" else values[np.abs(np.nan_to_num(values[:, 0])) < 3.4e38]
        left = (rows[:, 0] < t) if op == "<" else (rows[:, 0] <= t)
        assert np.array_equal(bits.split_bits(rows, 1, [split])[0], np.where(np.isnan(rows[:, 0]), 1, ~left))


def test_rows_the_client_cannot_route_are_refused_naming_the_problem() -> None:
    ens = stump()
    with pytest.raises(bits.RowError, match="2 features, got 3"):
        bits.split_bits(np.zeros((1, 3)), 2, ens.splits)
    with pytest.raises(bits.RowError, match="2-D"):
        bits.split_bits(np.zeros(2), 2, ens.splits)
    with pytest.raises(bits.RowError, match="row 1, feature 0"):
        bits.split_bits(np.array([[0.0, 0.0], [np.inf, 0.0]]), 2, ens.splits)
    with pytest.raises(bits.RowError, match="numbers"):
        bits.split_bits([["a", "b"]], 2, ens.splits)
    # feature 1 is compared in float32: a finite value beyond float32's range is refused (the library does too);
    # feature 0 is compared in float64: the same value is fine there
    with pytest.raises(bits.RowError, match="row 0, feature 1.*float32"):
        bits.split_bits(np.array([[0.0, 1e39]]), 2, ens.splits)
    assert bits.split_bits(np.array([[1e39, 0.0]]), 2, ens.splits).tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="bits must be"):
        reference.tree_sums(ens, np.zeros((3, 4)))


def test_float32_rounding_decides_at_the_threshold() -> None:
    """scikit-learn rounds to float32 first: a float64 value just above a float32 threshold goes LEFT."""
    t = float(np.float32(0.1))
    above = np.nextafter(t, 1.0)
    s32, s64 = Split(0, t, "<=", "float32", True), Split(0, t, "<=", "float64", True)
    assert bits.split_bits([[above]], 1, [s32, s64]).tolist() == [[0], [1]]


def _same(model: Any, ens: Ensemble, rows: np.ndarray, atol: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = model.predict(rows)
        got = postprocess.predict(ens, reference.tree_sums(ens, bits.split_bits(rows, ens.n_features, ens.splits)))
        if ens.task == "classification":
            assert (got == want).all()
            raw = postprocess.raw_scores(ens, reference.tree_sums(ens, bits.split_bits(rows, ens.n_features, ens.splits)))
            np.testing.assert_allclose(postprocess.scores(ens, raw), model.predict_proba(rows), rtol=0, atol=atol)
        else:
            np.testing.assert_allclose(got, want, rtol=atol, atol=0)


@pytest.mark.parametrize("make, data, link, atol", [
    (lambda: xgb.XGBRegressor(n_estimators=6, max_depth=3, objective="count:poisson"), "count", "exponential", 1e-5),
    (lambda: xgb.XGBRegressor(n_estimators=6, max_depth=3, objective="reg:gamma"), "count", "exponential", 1e-5),
    (lambda: xgb.XGBRegressor(n_estimators=6, max_depth=3, objective="reg:tweedie"), "count", "exponential", 1e-5),
    (lambda: lgb.LGBMRegressor(n_estimators=6, objective="poisson", verbose=-1), "count", "exponential", 1e-12),
    (lambda: lgb.LGBMRegressor(n_estimators=6, objective="huber", verbose=-1), "count", "identity", 1e-12),
    (lambda: ensemble.HistGradientBoostingRegressor(max_iter=6, loss="poisson"), "count", "exponential", 1e-12),
    (lambda: ensemble.GradientBoostingRegressor(n_estimators=6, loss="huber"), "count", "identity", 1e-12),
    (lambda: lgb.LGBMClassifier(n_estimators=6, objective="multiclassova", verbose=-1), "iris", "sigmoid", 1e-12),
    (lambda: lgb.LGBMClassifier(n_estimators=6, sigmoid=0.7, verbose=-1), "binary", "sigmoid", 1e-12),
    (lambda: lgb.LGBMClassifier(n_estimators=6, objective="multiclassova", sigmoid=0.3, verbose=-1), "iris", "sigmoid",
     1e-12),
    (lambda: lgb.LGBMRegressor(n_estimators=6, objective="cross_entropy_lambda", verbose=-1), "unit",
     "logarithm_one_plus_exp", 1e-12),
    (lambda: ensemble.ExtraTreesClassifier(6, max_depth=3), "binary", "identity", 1e-12),
    (lambda: tree.ExtraTreeRegressor(max_depth=4), "count", "identity", 1e-12),
])
def test_each_link_matches_its_library(make: Any, data: str, link: str, atol: float) -> None:
    Xd, yd = {"count": (XR, np.round(YR / 30)), "iris": (XI, YI), "binary": (X, Y), "unit": (X, Y * 0.8 + 0.1)}[data]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make().fit(Xd, yd)
    ens = frontends.from_model(model)
    assert ens.postprocess == link
    _same(model, ens, Xd, atol)


def test_the_engine_is_library_code_without_framework_imports() -> None:
    """Like the packed kernel, the tree engine serves any model source: no module of it imports sei_framework."""
    import ast
    from pathlib import Path

    import sei_adapter_trees.engine as engine

    files = sorted(Path(engine.__file__).parent.glob("*.py"))
    assert {"ir.py", "bits.py", "reference.py", "postprocess.py", "treelite_import.py"} <= {f.name for f in files}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            assert not any(n.split(".")[0] == "sei_framework" for n in names), f"{path.name} imports sei_framework"
