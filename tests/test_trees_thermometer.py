"""Thermometer mode: the grid from calibration data, thresholds snapped to it, agreement measured and the model
refused below min_agreement; the upload cost of each mode."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("treelite")

from sklearn import ensemble  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402

from sei_adapter_trees.engine import bits, frontends, postprocess, reference, thermometer  # noqa: E402
from sei_adapter_trees.engine.ir import Ensemble  # noqa: E402
from sei_adapter_trees.engine.treelite_import import UnsupportedModel  # noqa: E402

X, Y = load_breast_cancer(return_X_y=True)


@pytest.fixture(scope="module")
def exact() -> Ensemble:
    return frontends.from_sklearn(ensemble.RandomForestClassifier(10, max_depth=4, random_state=0).fit(X, Y))


def test_the_code_is_the_whole_grid_and_the_gridded_model_routes_by_it(exact: Ensemble) -> None:
    grid = thermometer.Grid.from_calibration(X, 16)
    gridded = thermometer.grid_ensemble(exact, grid)
    code = thermometer.thermometer_bits(X[:50], grid)
    assert code.shape == (X.shape[1] * 16, 50)
    # the code is what the gridded splits' own bits are: the client needs nothing but the grid
    assert np.array_equal(code, bits.split_bits(X[:50], exact.n_features, gridded.splits))
    # each code is monotone along a feature's edges (a thermometer)
    per_feature = code.reshape(X.shape[1], 16, 50)
    assert (np.diff(per_feature.astype(int), axis=1) <= 0).all()
    # every snapped threshold is its feature's nearest edge
    for tree_exact, tree_grid in zip(exact.trees, gridded.trees, strict=True):
        for node in range(tree_exact.n_internal):
            s = exact.splits[tree_exact.split[node]]
            g = gridded.splits[tree_grid.split[node]]
            assert g.feature == s.feature
            assert abs(g.threshold - s.threshold) == np.abs(grid.edges[s.feature] - s.threshold).min()


def test_agreement_is_measured_and_grows_with_n_bits(exact: Ensemble) -> None:
    coarse = thermometer.build(exact, X, 2, 0.0)[2]
    fine = thermometer.build(exact, X, 256, 0.0)[2]
    assert 0.0 < coarse < fine <= 1.0
    gridded, grid, measured = thermometer.build(exact, X, 256, fine)
    sums = reference.tree_sums(gridded, thermometer.thermometer_bits(X, grid))
    exact_labels = postprocess.predict(exact, reference.tree_sums(exact, bits.split_bits(X, 30, exact.splits)))
    assert measured == np.mean(postprocess.predict(gridded, sums) == exact_labels)


def test_below_min_agreement_the_model_is_refused(exact: Ensemble) -> None:
    coarse = thermometer.build(exact, X, 1, 0.0)[2]
    assert coarse < 1.0
    with pytest.raises(UnsupportedModel, match="min_agreement"):
        thermometer.build(exact, X, 1, min(1.0, coarse + 0.01))


def test_nan_and_infinite_rows_are_refused_in_thermometer_mode(exact: Ensemble) -> None:
    grid = thermometer.Grid.from_calibration(X, 4)
    rows = X[:2].copy()
    rows[1, 3] = np.nan
    with pytest.raises(bits.RowError, match="row 1, feature 3 is NaN"):
        thermometer.thermometer_bits(rows, grid)
    rows[1, 3] = np.inf
    with pytest.raises(bits.RowError, match="infinite"):
        thermometer.thermometer_bits(rows, grid)


def test_upload_cost_per_mode(exact: Ensemble) -> None:
    assert thermometer.upload_bits_per_row(exact, "exact") == len(exact.splits)
    assert thermometer.upload_bits_per_row(exact, "thermometer", 8) == 30 * 8
    with pytest.raises(ValueError, match="n_bits"):
        thermometer.upload_bits_per_row(exact, "thermometer")


def test_to_grid_gives_the_grid_as_json_data(exact: Ensemble) -> None:
    gridded, data = thermometer.to_grid(exact, X, 8)
    grid = thermometer.Grid.from_json(data)
    assert np.array_equal(grid.edges, thermometer.Grid.from_calibration(X, 8).edges)
    assert [s.threshold for s in gridded.splits] == grid.edges.reshape(-1).tolist()
    for bad in ({"edges": [[1.0, 1.0]]}, {"edges": [[float("nan")]]}, {"edges": [1.0]}, [1.0]):
        with pytest.raises(ValueError, match="edges"):
            thermometer.Grid.from_json(bad)
