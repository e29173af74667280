"""trees-seal end to end: served beside sklearn-packed through azmlinfsrv, hostile requests, key transports,
and a batch job, every prediction equal to the library's own `predict`."""

from __future__ import annotations

import base64
import json

import lightgbm
import numpy as np
import pytest
import requests
import xgboost
import yaml
from conftest import with_bounds
from sklearn.datasets import load_breast_cancer, load_iris

from sei_framework import Client, Deployment
from sei_framework.batch import decrypt_job, describe_build, encrypt_dataset, score_job
from sei_framework.keys import Keyring


@pytest.fixture(scope="module")
def tree_models(tmp_path_factory):
    """Small real models as their own libraries write them: XGBoost JSON (binary), LightGBM text (3 classes)."""
    folder = tmp_path_factory.mktemp("trees")
    X, y = load_breast_cancer(return_X_y=True)
    xgb = xgboost.XGBClassifier(n_estimators=6, max_depth=3, random_state=0).fit(X, y)
    xgb.save_model(folder / "cancer.json")
    Xi, yi = load_iris(return_X_y=True)
    lgb = lightgbm.LGBMClassifier(n_estimators=4, num_leaves=6, max_depth=3, verbose=-1, random_state=0).fit(Xi, yi)
    lgb.booster_.save_model(folder / "iris.txt")
    return {"cancer": (folder / "cancer.json", xgb, X), "iris": (folder / "iris.txt", lgb, Xi)}


@pytest.fixture(scope="module")
def service(tree_models, model_files, tmp_path_factory):
    """One azmlinfsrv service: two trees-seal models (one on two worker processes) and a sklearn-packed one, keys inline."""
    folder = tmp_path_factory.mktemp("trees-service")
    config = {
        "name": "trees",
        "models": [
            {"name": "cancer", "adapter": "trees-seal", "path": str(tree_models["cancer"][0]), "options": {"workers": 2}},
            {"name": "iris", "adapter": "trees-seal", "path": str(tree_models["iris"][0])},
            with_bounds({"name": "digits", "adapter": "sklearn-packed", "path": str(model_files["digits"][0])}),
        ],
        "key_transport": {"name": "inline"},
        "deploy": {"target": "local", "options": {"state_dir": str(folder / "state")}},
    }
    (folder / "trees.yaml").write_text(yaml.safe_dump(config))
    deployment = Deployment.from_file(folder / "trees.yaml")
    endpoint = deployment.deploy(folder / "build")
    yield endpoint, folder / "build"
    deployment.delete()


def test_trees_and_packed_in_one_service_match_their_libraries(service, tree_models, model_files, tmp_path):
    endpoint, _ = service
    client = Client(endpoint, keyring=Keyring(tmp_path / "keys"))
    for name in ("cancer", "iris"):
        _, model, X = tree_models[name]
        rows = X[:: max(1, len(X) // 60)]
        result = client.predict(name, rows)
        assert (result.predictions == model.predict(rows)).all(), name
        np.testing.assert_allclose(result.probabilities, model.predict_proba(rows), atol=1e-5)
    _, digits, Xd = model_files["digits"]
    assert (client.predict("digits", Xd[:5]).predictions == digits.predict(Xd[:5])).all()
    described = client.describe()["models"]["cancer"]
    assert described["encryption"]["security_bits"] == 128 and described["accuracy"]["error_bound"] <= 1e-4
    assert described["request"]["rows_per_batch"] == described["limits"]["max_rows_per_request"]


def test_hostile_batches_are_refused_and_the_service_keeps_serving(service, tree_models, tmp_path):
    endpoint, _ = service
    client = Client(endpoint, keyring=Keyring(tmp_path / "keys"))
    _, model, X = tree_models["cancer"]
    client.predict("cancer", X[:1])  # publishes the keys
    session = client.session("cancer")
    good = {"model": "cancer", "key_id": session.key_id, "data": session.adapter.encrypt(X[:3])}
    blob = base64.b64decode(good["data"]["batches"][0])
    iris = client.session("iris")
    client.predict("iris", tree_models["iris"][2][:1])
    foreign = base64.b64decode(iris.adapter.encrypt(tree_models["iris"][2][:3])["batches"][0])
    rng = np.random.default_rng(3)
    garbage = bytearray(blob)
    garbage[64:4096] = rng.bytes(4096 - 64)  # residues past the header: out of range for their primes
    bad_batches = {
        "random bytes": rng.bytes(len(blob)),
        "truncated": blob[: len(blob) // 2],
        "oversized": blob + b"\0" * 16,
        "another model's batch": foreign,
        "residues out of range": b"".join([blob[:24], b"\xff" * (len(blob) - 24)]),
    }
    for what, bad in bad_batches.items():
        body = {**good, "data": {**good["data"], "batches": [base64.b64encode(bad).decode()]}}
        response = requests.post(endpoint.scoring_uri, data=json.dumps(body), timeout=120)
        assert response.status_code == 400, (what, response.text)
        assert response.json()["error"]["code"] == "invalid_ciphertext", (what, response.text)
    lying = {**good, "data": {**good["data"], "n_rows": 2}}  # the batch holds 3 rows
    response = requests.post(endpoint.scoring_uri, data=json.dumps(lying), timeout=120)
    assert response.status_code == 400 and "holds 3 rows" in response.json()["error"]["message"], response.text
    for data in ({**good["data"], "batches": []}, {**good["data"], "n_features": 4}, {**good["data"], "batches": "x"}):
        response = requests.post(endpoint.scoring_uri, data=json.dumps({**good, "data": data}), timeout=120)
        assert response.status_code == 400 and response.json()["error"]["code"] in ("invalid_data", "wrong_features")
    response = requests.post(endpoint.scoring_uri, data=json.dumps(good), timeout=120)
    assert response.status_code == 200, response.text
    scores = session.adapter.decrypt(response.json()["result"], 3)
    assert (session.adapter.interpret(scores).predictions == model.predict(X[:3])).all()


def test_hostile_keys_are_refused_and_the_service_keeps_serving(service, tree_models, tmp_path):
    from sei_framework import key_id_for

    endpoint, _ = service
    client = Client(endpoint, keyring=Keyring(tmp_path / "keys"))
    _, model, X = tree_models["cancer"]
    client.predict("cancer", X[:1])
    session = client.session("cancer")
    data = session.adapter.encrypt(X[:2])
    real = session.public_keys
    rng = np.random.default_rng(11)
    # (Another model's relinearization keys on the same SEAL ring and moduli are valid keys: the service
    # cannot tell them from the sender's own, and only the sender would get sums it cannot decrypt.)
    hostile = {"random": rng.bytes(len(real)), "truncated": real[: len(real) // 3],
               "damaged": real[:200] + rng.bytes(len(real) - 200), "empty": b""}
    for what, bad in hostile.items():
        body = {"model": "cancer", "key_id": key_id_for(bad), "public_keys": base64.b64encode(bad).decode(), "data": data}
        response = requests.post(endpoint.scoring_uri, data=json.dumps(body), timeout=120)
        assert response.status_code == 400, (what, response.text[:300])
        assert response.json()["error"]["code"] in ("invalid_keys", "invalid_data"), (what, response.text[:300])
    good = {"model": "cancer", "key_id": session.key_id, "data": data}
    response = requests.post(endpoint.scoring_uri, data=json.dumps(good), timeout=120)
    assert response.status_code == 200, response.text
    scores = session.adapter.decrypt(response.json()["result"], 2)
    assert (session.adapter.interpret(scores).predictions == model.predict(X[:2])).all()


def test_a_response_of_the_wrong_shape_or_level_is_refused(service, tree_models, tmp_path):
    from sei_framework import InvalidRequest

    endpoint, _ = service
    client = Client(endpoint, keyring=Keyring(tmp_path / "keys"))
    _, _, X = tree_models["cancer"]
    client.predict("cancer", X[:1])
    session = client.session("cancer")
    body = {"model": "cancer", "key_id": session.key_id, "data": session.adapter.encrypt(X[:2])}
    result = requests.post(endpoint.scoring_uri, data=json.dumps(body), timeout=120).json()["result"]
    blob = base64.b64decode(result[0])
    level = bytearray(blob)
    level[24 + 4 + 20] ^= 1  # the first ciphertext's parms_id: another level of the modulus chain
    for bad in ([], result * 2, [base64.b64encode(blob[:-8]).decode()], [base64.b64encode(bytes(level)).decode()]):
        with pytest.raises(InvalidRequest) as caught:
            session.adapter.decrypt(bad, 2)
        assert caught.value.code == "invalid_response"
    with pytest.raises(InvalidRequest):
        session.adapter.decrypt(result, 3)  # the service answered for 2 rows


def test_a_batch_job_equals_the_library(service, tree_models, tmp_path):
    _, build = service
    _, model, X = tree_models["cancer"]
    rng = np.random.default_rng(5)
    rows = X[rng.integers(0, len(X), 20000)] * rng.uniform(0.95, 1.05, (20000, X.shape[1]))
    rows[rng.random(rows.shape) < 0.02] = np.nan  # missing values: routed as XGBoost routes them
    np.save(tmp_path / "rows.npy", rows)
    offline = Client.offline(describe_build(build), keyring=Keyring(tmp_path / "keys"))
    report = encrypt_dataset(offline, "cancer", tmp_path / "rows.npy", tmp_path / "job")
    assert report.rows == len(rows)
    assert score_job(build, tmp_path / "job", workers=1).scored == report.shards
    decrypt_job(offline, tmp_path / "job", tmp_path / "out.csv")
    from batch_fixtures import read_predictions

    table = read_predictions(tmp_path / "out.csv")
    assert list(table["row"]) == list(range(len(rows)))
    assert (table["prediction"].to_numpy() == model.predict(rows)).all()


def test_sei_predict_routes_missing_values_for_trees_and_refuses_them_for_a_linear_model(service, tree_models,
                                                                                        tmp_path):
    """`sei predict` reads NaN (a missing value): a trees-seal model routes it as the library does; a
    sklearn-packed model refuses it by row and column before any row is sent, and the service keeps serving."""
    from click.testing import CliRunner

    from sei_framework.cli import cli

    endpoint, _ = service
    _, xgb, X = tree_models["cancer"]
    rows = X[:12].copy()
    rows[::3, 0] = np.nan  # XGBoost's default direction for each split on feature 0
    path = tmp_path / "missing.csv"
    np.savetxt(path, rows, delimiter=",", header=",".join(f"f{i}" for i in range(X.shape[1])), comments="")
    env = {"SEI_HOME": str(tmp_path / "home")}
    got = CliRunner().invoke(cli, ["predict", "--endpoint", endpoint.scoring_uri, "--model", "cancer", "--input",
                                   str(path), "--json"], env=env)
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["predictions"] == xgb.predict(rows).tolist()
    refused = CliRunner().invoke(cli, ["predict", "--endpoint", endpoint.scoring_uri, "--model", "digits", "--input",
                                       str(path)], env=env)
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "row 0, column 'f0': every value must be a finite number" in refused.output
    again = CliRunner().invoke(cli, ["predict", "--endpoint", endpoint.scoring_uri, "--model", "cancer", "--input",
                                     str(path), "--json"], env=env)
    assert again.exit_code == 0 and json.loads(again.stdout)["predictions"] == xgb.predict(rows).tolist()
