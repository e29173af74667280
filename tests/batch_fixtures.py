"""Fixtures of the batch tests: a built breast-cancer model with rows, and an offline client for it.
Import into a test module: `from batch_fixtures import cancer_fixture, offline_fixture  # noqa: F401`
(the fixtures are named `cancer` and `offline`)."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sei_framework import Client, Deployment
from sei_framework.batch import describe_build
from sei_framework.keys import Keyring


@pytest.fixture(scope="module", name="cancer")
def cancer_fixture(tmp_path_factory):
    """A 30-feature breast-cancer pipeline built for sklearn-packed (bulk) and sklearn-eiserver, and rows."""
    folder = tmp_path_factory.mktemp("batch-build")
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    joblib.dump(model, folder / "cancer.joblib")
    np.save(folder / "calibration.npy", X)
    config = {
        "name": "cancer",
        "models": [
            {"name": "bulk", "adapter": "sklearn-packed", "path": "cancer.joblib",
             "options": {"mode": "bulk", "calibration_data": "calibration.npy"}},
            {"name": "rows", "adapter": "sklearn-eiserver", "path": "cancer.joblib",
             "options": {"calibration_data": "calibration.npy"}},
        ],
    }  # fmt: skip
    (folder / "cancer.yaml").write_text(yaml.safe_dump(config))
    build = Deployment.from_file(folder / "cancer.yaml").build(folder / "build")
    rng = np.random.default_rng(7)
    rows = X[rng.integers(0, len(X), 9000)] * rng.uniform(0.97, 1.03, (9000, X.shape[1]))
    return build.path, model, rows


@pytest.fixture(name="offline")
def offline_fixture(cancer, tmp_path):
    return Client.offline(describe_build(cancer[0]), keyring=Keyring(tmp_path / "keys"))


def write_csv(path: Path, rows: np.ndarray) -> None:
    pacsv.write_csv(pa.table({f"f{i}": rows[:, i] for i in range(rows.shape[1])}), path)


def read_predictions(path: Path):
    table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
    return table.to_pandas()
