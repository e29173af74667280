"""trees-seal reads calibration_data through SEI's one row reader (sei_framework.read_calibration): the CSV
header rule, columns by the model's feature names, the error codes and messages of every other path; NaN
(a blank CSV cell, as pandas writes it) is a missing value, an infinity an error."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from sei_framework import Deployment, PluginError, SeiError, read_calibration
from sei_framework.serving import ScoringService

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def named_tree(tmp_path_factory):
    """A small tree fitted on a DataFrame (so it names its features), and calibration rows with two missing values."""
    folder = tmp_path_factory.mktemp("trees-calibration")
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = NAMES
    joblib.dump(DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), folder / "tree.joblib")
    rows = X.iloc[::3].copy()
    rows.iloc[1, 0] = rows.iloc[4, 3] = np.nan
    return folder, rows


def _build(folder, options: dict) -> ScoringService:
    config = {"name": "cal", "models": [{"name": "m", "adapter": "trees-seal", "path": "tree.joblib", "options": options}]}
    (folder / "cal.yaml").write_text(yaml.safe_dump(config))
    return ScoringService.from_build(Deployment.from_file(folder / "cal.yaml").build(folder / "build").path)


def test_a_csv_with_a_header_and_blank_cells_calibrates_by_name(named_tree):
    """The header names the columns in another order and pandas writes NaN as a blank cell: the splits build
    checks the rows, missing values included, through the encrypted path (the old reader refused the blank
    cells), and a thermometer grid lies inside each feature's own calibration range (read by name)."""
    folder, rows = named_tree
    rows[rows.columns[::-1]].to_csv(folder / "reversed.csv", index=False)
    assert "\n," in (folder / "reversed.csv").read_text()  # a blank cell
    rows.dropna()[rows.columns[::-1]].to_csv(folder / "complete.csv", index=False)
    config = {"name": "cal", "models": [
        {"name": "splits", "adapter": "trees-seal", "path": "tree.joblib",
         "options": {"calibration_data": "reversed.csv", "verify_rows": 64}},
        {"name": "grid", "adapter": "trees-seal", "path": "tree.joblib",
         "options": {"mode": "thermometer", "n_bits": 7, "min_agreement": 0.8, "calibration_data": "complete.csv"}},
    ]}  # fmt: skip
    (folder / "cal.yaml").write_text(yaml.safe_dump(config))
    models = ScoringService.from_build(Deployment.from_file(folder / "cal.yaml").build(folder / "build").path).describe()["models"]
    assert models["splits"]["feature_names"] == NAMES
    assert models["splits"]["accuracy"]["verified_rows"] > len(rows)  # the threshold rows and every calibration row
    lo, hi = np.nanmin(rows.to_numpy(), axis=0), np.nanmax(rows.to_numpy(), axis=0)
    splits = models["grid"]["splits"]
    assert splits and all(lo[s["feature"]] < s["threshold"] < hi[s["feature"]] for s in splits)


def test_calibration_rows_keep_nan_and_refuse_what_other_readers_refuse(tmp_path):
    (tmp_path / "rows.csv").write_text("b,a\n2,\n4,3\n")
    read = read_calibration(tmp_path / "rows.csv", n_features=2, names=["a", "b"], allow_nan=True)
    np.testing.assert_array_equal(read.values, [[np.nan, 2], [3, 4]])  # by name, the blank cell a NaN
    assert read.by_name and read.columns == ["a", "b"]
    np.testing.assert_array_equal(read_calibration(tmp_path / "rows.csv", allow_nan=True).values, [[2, np.nan], [4, 3]])
    with pytest.raises(PluginError, match=r"row 0, column 'a': '' is not a number") as caught:
        read_calibration(tmp_path / "rows.csv", names=["a", "b"])  # a model that cannot route NaN
    assert caught.value.code == "invalid_rows"
    with pytest.raises(PluginError, match=r"missing 'c'; unknown 'b'") as caught:
        read_calibration(tmp_path / "rows.csv", names=["a", "c"], allow_nan=True)
    assert caught.value.code == "wrong_features"
    with pytest.raises(PluginError, match=r"has shape \(2, 2\); the model takes rows of 3 features"):
        read_calibration(tmp_path / "rows.csv", n_features=3, allow_nan=True)
    np.save(tmp_path / "inf.npy", np.array([[1.0, np.nan], [np.inf, 0.0]]))
    with pytest.raises(PluginError, match=r"row 1, column 0: every value must be a number or NaN, never infinite"):
        read_calibration(tmp_path / "inf.npy", allow_nan=True)


@pytest.mark.parametrize("text, options, words", [
    # a first line of numbers: a header or data? (the old reader took it as a calibration row)
    ("0,1,2,3\n5.1,3.5,1.4,0.2\n", {}, "is its first line a header or data"),
    # a bad first data row (the old reader took it for a header and dropped it)
    ("5.1,oops,1.4,0.2\n4.9,3.0,1.4,0.2\n", {"calibration_header": False}, r"row 0, column 1: 'oops' is not a number"),
    ("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,inf,0.2\n", {}, "never infinite"),
    ("sepal_length,sepal_width,petal_length\n5.1,3.5,1.4\n", {}, r"missing 'petal_width'"),
])  # fmt: skip
def test_a_build_refuses_calibration_rows_as_every_reader_does(named_tree, tmp_path, text, options, words):
    folder, _ = named_tree
    (tmp_path / "tree.joblib").write_bytes((folder / "tree.joblib").read_bytes())
    (tmp_path / "cal.csv").write_text(text)
    with pytest.raises(SeiError, match=words):
        _build(tmp_path, {"calibration_data": "cal.csv", **options})
