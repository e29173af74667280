"""concrete-ml names a model's features when it was fitted on a DataFrame: the compiler records
`feature_names_in_`, the adapter checks them against the calibration table and reports them."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from sei_adapter_concrete.compile_model import fitted_names
from sei_adapter_concrete.names import reported_names
from sei_framework import PluginError


def test_the_compiler_records_the_names_a_model_was_fitted_with():
    X = pd.DataFrame({"age": [1.0, 2.0, 3.0, 4.0], "income": [4.0, 3.0, 2.0, 1.0]})
    y = [0, 1, 0, 1]
    assert fitted_names(DecisionTreeClassifier().fit(X, y)) == ["age", "income"]
    assert fitted_names(DecisionTreeClassifier().fit(X.to_numpy(), y)) is None  # an array: by position


def test_reported_names_are_checked_against_the_calibration_columns():
    report = {"n_features": 2, "feature_names": ["age", "income"]}
    assert reported_names(report, ["age", "income"], "m.joblib") == ["age", "income"]
    assert reported_names(report, None, "m.joblib") == ["age", "income"]  # a .npy: no names to compare
    assert reported_names({"n_features": 2, "feature_names": None}, ["a", "b"], "m.joblib") is None
    with pytest.raises(PluginError, match=r"calibration_data's columns \('income', 'age'\) are not the model's"):
        reported_names(report, ["income", "age"], "m.joblib")
    for bad in (["age"], ["age", "age"], ["age", 3], "age,income"):
        with pytest.raises(PluginError, match="unreadable feature_names"):
            reported_names({"n_features": 2, "feature_names": bad}, None, "m.joblib")
