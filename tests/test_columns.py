"""Columns by name end to end: a model fitted on a DataFrame keeps its feature names through the fold, and
`sei batch`, `sei predict` and `Client.predict` choose a file's or a DataFrame's columns by those names."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from batch_fixtures import read_predictions
from sei_framework import Client, Deployment, InvalidRequest
from sei_framework.batch import JobManifest, JobStore, decrypt_job, describe_build, encrypt_dataset, score_job
from sei_framework.cli import cli
from sei_framework.columns import columns_label, recorded_columns
from sei_framework.keys import Keyring


def _parquet(frame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A breast-cancer pipeline fitted on a DataFrame (so it has feature_names_in_), built for sklearn-packed
    bulk with its calibration rows in reversed column order (read by name too), and its config."""
    folder = tmp_path_factory.mktemp("named")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = (X - X.min()) / (X.max() - X.min())  # every feature in [0, 1]: columns in another order stay in bounds
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    joblib.dump(model, folder / "named.joblib")
    _parquet(X[X.columns[::-1]], folder / "calibration.parquet")
    config = {
        "name": "named",
        "models": [{"name": "named", "adapter": "sklearn-packed", "path": "named.joblib",
                    "options": {"mode": "bulk", "calibration_data": "calibration.parquet"}}],
        "deploy": {"target": "local", "options": {"state_dir": str(folder / "state")}},
    }  # fmt: skip
    (folder / "named.yaml").write_text(yaml.safe_dump(config))
    build = Deployment.from_file(folder / "named.yaml").build(folder / "build")
    return folder, build.path, model, X


def test_the_fold_keeps_feature_names_in_the_description(named):
    _, build, _, X = named
    assert describe_build(build)["models"]["named"]["feature_names"] == list(X.columns)


def test_batch_reads_a_reversed_parquet_by_name(named, tmp_path):
    _, build, model, X = named
    offline = Client.offline(describe_build(build), keyring=Keyring(tmp_path / "keys"))
    rows = X.iloc[::2]
    source = _parquet(rows[rows.columns[::-1]], tmp_path / "reversed.parquet")
    report = encrypt_dataset(offline, "named", source, tmp_path / "job")
    assert report.columns == "by name: " + ", ".join(X.columns)
    assert JobManifest.load(JobStore(tmp_path / "job")).columns == list(X.columns)
    score_job(build, tmp_path / "job", workers=1)
    done = decrypt_job(offline, tmp_path / "job", tmp_path / "out.parquet")
    table = read_predictions(tmp_path / "out.parquet")
    assert (table["prediction"].to_numpy() == model.predict(rows)).all()
    assert json.loads(Path(done.summary).read_text())["columns"] == "by name: " + ", ".join(X.columns)
    dropped = _parquet(rows.drop(columns="mean radius").assign(extra=1.0), tmp_path / "dropped.parquet")
    with pytest.raises(InvalidRequest, match="missing 'mean radius'; unknown 'extra'"):
        encrypt_dataset(offline, "named", dropped, tmp_path / "job2")


def test_one_label_says_how_columns_fed_the_model():
    """`sei predict`, `sei batch encrypt` and the decrypt summary say it with one function."""
    assert columns_label(None) == "by position"
    assert columns_label(["b", "a"]) == "by name: b, a"
    assert recorded_columns(["a", "b"], ["a", "b"], "job j") == ["a", "b"]
    assert recorded_columns(["a", "b"], None, "job j") is None and recorded_columns(None, ["a", "b"], "job j") is None
    with pytest.raises(InvalidRequest, match="job j was encrypted with the columns 'b', 'a'") as caught:
        recorded_columns(["b", "a"], ["a", "b"], "job j")
    assert caught.value.code == "wrong_features"


def test_online_predict_and_cli_choose_columns_by_name(named, tmp_path):
    folder, _, model, X = named
    deployment = Deployment.from_file(folder / "named.yaml")
    endpoint = deployment.deploy(tmp_path / "build")
    try:
        client = Client(endpoint, keyring=Keyring(tmp_path / "keys"))
        rows = X.iloc[:40]
        result = client.predict("named", rows[rows.columns[::-1]])
        assert (result.predictions == model.predict(rows)).all()
        assert result.columns == list(X.columns)
        assert client.predict("named", rows.to_numpy()).columns is None  # an array: by position
        with pytest.raises(InvalidRequest, match="missing 'mean radius'") as caught:
            client.predict("named", rows.drop(columns="mean radius"))
        assert caught.value.code == "wrong_features"
        source = _parquet(rows[rows.columns[::-1]], tmp_path / "reversed.parquet")
        args = ["predict", "--endpoint", endpoint.scoring_uri, "--model", "named", "--input", str(source), "--json"]
        done = CliRunner().invoke(cli, args)
        assert done.exit_code == 0, done.output
        answer = json.loads(done.stdout)
        assert answer["predictions"] == model.predict(rows).tolist() and answer["columns"] == list(X.columns)
    finally:
        deployment.delete()
