"""score.py rendered into a build folder, imported, and called as Azure ML calls it."""

from __future__ import annotations

import base64
import importlib.util
import json

import numpy as np
import pytest

from sei_framework.build import Build


def import_score(build: Build, name: str):
    spec = importlib.util.spec_from_file_location(name, build.score_script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(score, body) -> tuple[dict, int]:
    """run() answers JSON data, or an AMLResponse carrying an error status."""
    answer = score.run(body if isinstance(body, str) else json.dumps(body))
    if not hasattr(answer, "get_data"):
        return answer, 200
    return json.loads(answer.get_data()), answer.status_code


@pytest.fixture
def score(make_deployment, tmp_path, monkeypatch):
    build = make_deployment().build(tmp_path / "build")
    monkeypatch.delenv("AZUREML_MODEL_DIR", raising=False)
    module = import_score(build, "score_under_test")
    module.init()
    return module


def test_build_folder_contents(make_deployment, tmp_path):
    build = make_deployment().build(tmp_path / "build")
    names = sorted(p.name for p in build.path.iterdir())
    assert names == [
        "Dockerfile", "batch_score.py", "image-requirements.txt", "kubernetes.yaml", "models", "requirements.txt",
        "score.py", "sei_build.json",
    ]  # fmt: skip
    assert sorted(p.name for p in build.models_dir.iterdir()) == ["diabetes", "digits"]
    requirements = (build.path / "requirements.txt").read_text().split()
    assert requirements[0].startswith("sei-framework==") and "encrypted-inference==0.9" in requirements
    manifest = json.loads((build.path / "sei_build.json").read_text())
    assert manifest["plugins"] == ["sei_adapter_sklearn", "sei_deploy_local", "sei_transport_inline"]
    metadata = manifest["models"][0]["metadata"]
    assert metadata.pop("accuracy")["error_bound"] <= 1e-3  # the proven bound (test_eiserver_accuracy.py)
    assert metadata == {"estimator": "LogisticRegression", "n_features": 64, "n_outputs": 10}


def test_build_refuses_to_overwrite_a_folder_it_did_not_make(make_deployment, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(Exception, match="not a SEI build folder"):
        make_deployment().build(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_init_finds_the_models_where_azure_ml_mounts_them(make_deployment, tmp_path, monkeypatch):
    """In ACI the registered model folder sits under AZUREML_MODEL_DIR, apart from score.py."""
    import shutil

    build = make_deployment().build(tmp_path / "build")
    mounted = tmp_path / "azureml-models" / "svc" / "1"
    mounted.mkdir(parents=True)
    shutil.move(build.path / "models", mounted / "models")  # score.py's folder no longer has them
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(mounted))
    module = import_score(build, "score_mounted")
    module.init()
    assert set(module.run(json.dumps({"op": "describe"}))["models"]) == {"digits", "diabetes"}
    assert module.service.adapters["digits"].model_dir == mounted / "models" / "digits"


def test_describe(score):
    answer = score.run(json.dumps({"op": "describe"}))
    assert set(answer["models"]) == {"digits", "diabetes"}
    digits = answer["models"]["digits"]
    assert digits["adapter"] == "sklearn-eiserver" and digits["n_features"] == 64 and digits["n_outputs"] == 10
    assert digits["encryption"]["scheme"] == "CKKS" and digits["encryption"]["poly_modulus_degree"] == 8192
    assert "coef" not in digits["readout"] and "intercept" not in digits["readout"], "describe must not reveal weights"
    assert answer["key_transport"] == {"name": "inline", "options": {}}


def test_run_scores_encrypted_rows_of_two_models(score, model_files):
    from sei_adapter_sklearn.eiserver import EIServerAdapter
    from sei_transport_inline import InlineTransport

    from sei_framework import key_id_for

    description = score.run(json.dumps({"op": "describe"}))["models"]
    client = EIServerAdapter.client(description["digits"])
    secret, public = client.generate_keys()
    client.use_keys(secret, public)
    key_id = key_id_for(public)
    keys_field = InlineTransport(InlineTransport.Options()).publish(key_id, public)
    for name, first in (("digits", True), ("diabetes", False)):
        _, model, X = model_files[name]
        rows = X[:2]
        client = EIServerAdapter.client(description[name])  # each checks rows against its model's bounds
        client.use_keys(secret, public)
        body = {"model": name, "key_id": key_id, "data": client.encrypt(rows), **(keys_field if first else {})}
        answer = score.run(json.dumps(body))
        assert answer["model"] == name, answer
        scores = client.decrypt(answer["result"], len(rows))
        expected = model.decision_function(rows) if name == "digits" else model.predict(rows)[:, None]
        np.testing.assert_allclose(scores, np.atleast_2d(expected).reshape(len(rows), -1), atol=1e-3)


def test_errors_are_json_with_a_code(score):
    assert call(score, "{not json") == (
        {"error": {"code": "invalid_json", "message": "request body is not valid JSON"}},
        400,
    )
    answer, status = call(score, {"model": "nope", "key_id": "a" * 32, "data": {}})
    assert status == 400 and answer["error"]["code"] == "unknown_model"
    assert "diabetes, digits" in answer["error"]["message"]


def test_service_refuses_keys_that_do_not_match_their_id(score):
    body = {"model": "digits", "key_id": "a" * 32, "data": {"n_features": 64, "rows": [["AAAA"]]}, "public_keys": "aGVsbG8="}
    assert call(score, body)[0]["error"]["code"] == "key_mismatch"


def test_a_request_without_model_gets_the_bare_result_like_the_tutorial(make_deployment, tmp_path, model_files):
    from sei_adapter_sklearn.eiserver import EIServerAdapter

    from sei_framework import key_id_for

    build = make_deployment(models=("diabetes",), name="one").build(tmp_path / "one")
    score = import_score(build, "score_one_model")
    score.init()
    client = EIServerAdapter.client(call(score, {"op": "describe"})[0]["models"]["diabetes"])
    secret, public = client.generate_keys()
    client.use_keys(secret, public)
    _, model, X = model_files["diabetes"]
    body = {
        "data": client._client.encrypt(X[0]),  # EILinearRegressionClient's own output
        "key_id": key_id_for(public),
        "public_keys": base64.b64encode(public).decode(),
    }
    answer, status = call(score, body)
    assert status == 200 and isinstance(answer, list) and len(answer) == 1
    assert abs(client._client.decrypt(answer)[0] - model.predict(X[:1])[0]) < 1e-3
