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


TRAIN = """
import sys, joblib, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(0)
X = pd.DataFrame(rng.uniform(-1, 1, size=(200, 3)), columns=["age", "income", "tenure"])
y = (X["age"] + 2 * X["income"] - X["tenure"] > 0).astype(int)
joblib.dump(LogisticRegression().fit(X, y), sys.argv[1])
X.to_csv(sys.argv[2], index=False)
X[X.columns[::-1]].to_csv(sys.argv[3], index=False)
"""


def test_a_model_fitted_on_a_dataframe_is_described_with_its_names(compiler, tmp_path):
    """One real build in Concrete ML's environment: the names reach describe(); a calibration table
    whose columns are in another order is refused rather than compiled on misplaced columns."""
    import subprocess

    from conftest import write_config

    from sei_framework import Deployment, SeiError
    from sei_framework.serving import ScoringService

    model, rows, reversed_rows = tmp_path / "named.joblib", tmp_path / "rows.csv", tmp_path / "reversed.csv"
    subprocess.run([compiler, "-c", TRAIN, str(model), str(rows), str(reversed_rows)], check=True)
    entry = {"name": "named", "adapter": "concrete-ml", "path": str(model), "options": {"calibration_data": str(rows)}}
    build = Deployment.from_file(write_config(tmp_path, [entry])).build(tmp_path / "build")
    described = ScoringService.from_build(build.path).describe()["models"]["named"]
    assert described["feature_names"] == ["age", "income", "tenure"]
    entry["options"]["calibration_data"] = str(reversed_rows)
    with pytest.raises(SeiError, match=r"calibration_data's columns \('tenure', 'income', 'age'\) are not the model's"):
        Deployment.from_file(write_config(tmp_path, [entry])).build(tmp_path / "build2")
