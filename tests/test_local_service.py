"""End to end through azmlinfsrv on 127.0.0.1: two models, both built-in transports, the CLI, bad input."""

from __future__ import annotations

import base64
import json
import zlib

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from sei_framework import Client, Endpoint, ServiceError
from sei_framework.cli import cli
from sei_framework.keys import Keyring


@pytest.fixture
def local_dir_service(make_deployment, tmp_path):
    deployment = make_deployment(transport={"name": "local-dir", "options": {"path": str(tmp_path / "shared-keys")}})
    endpoint = deployment.deploy(tmp_path / "build")
    yield deployment, endpoint
    assert deployment.delete() is True


@pytest.fixture
def inline_service(make_deployment, tmp_path):
    deployment = make_deployment(name="inline-svc", limits={"max_rows_per_request": 3})
    endpoint = deployment.deploy(tmp_path / "build-inline")
    yield deployment, endpoint
    deployment.delete()


def assert_matches_plaintext(result, model, rows):
    if result.scores.shape[1] == 1:
        np.testing.assert_allclose(result.predictions, model.predict(rows), atol=1e-3)
    else:
        np.testing.assert_allclose(result.scores, model.decision_function(rows), atol=1e-3)
        assert (result.predictions == model.predict(rows)).all()


def test_two_models_with_local_dir_keys(local_dir_service, model_files, tmp_path):
    deployment, endpoint = local_dir_service
    assert endpoint.scoring_uri.startswith("http://127.0.0.1:")
    client = deployment.client(endpoint, keyring=Keyring(tmp_path / "keys"))  # the config's own key transport
    assert client.describe()["key_transport"]["name"] == "local-dir"
    for name in ("digits", "diabetes"):
        _, model, X = model_files[name]
        assert_matches_plaintext(client.predict(name, X[:5]), model, X[:5])
    secret, _ = Keyring(tmp_path / "keys").load("eiserver-ckks-8192")
    server_log = (tmp_path / "state" / deployment.name / "server.log").read_text(errors="replace")
    assert "/score" in server_log  # the log is the one the requests went to
    assert base64.b64encode(secret).decode() not in server_log and secret.hex() not in server_log
    published = list((tmp_path / "shared-keys").iterdir())
    assert [p.name for p in published] == [f"{client.session('digits').key_id}.keys"]
    assert requests.get(endpoint.scoring_uri.replace("/score", "/"), timeout=5).status_code == 200


def test_cli_predict_reads_npy_and_csv(local_dir_service, model_files, tmp_path):
    _, endpoint = local_dir_service
    _, model, X = model_files["diabetes"]
    np.save(tmp_path / "rows.npy", X[:3])
    np.savetxt(tmp_path / "rows.csv", X[:2], delimiter=",", header=",".join(f"f{i}" for i in range(10)), comments="")
    runner = CliRunner()
    for path, n in ((tmp_path / "rows.npy", 3), (tmp_path / "rows.csv", 2)):
        args = ["predict", "--endpoint", endpoint.scoring_uri, "--model", "diabetes", "--input", str(path), "--json"]
        result = runner.invoke(cli, [*args, "--config", str(tmp_path / "svc.yaml")])  # local-dir: the user's folder
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        np.testing.assert_allclose(answer["predictions"], model.predict(X[:n]), atol=1e-3)
    args = ["predict", "--endpoint", endpoint.scoring_uri, "--model", "digits", "--input", str(tmp_path / "rows.npy")]
    result = runner.invoke(cli, [*args, "--config", str(tmp_path / "svc.yaml")])
    assert result.exit_code == 3 and "model 'digits' takes 64 features; the input has 10" in result.output


def post(endpoint: Endpoint, body) -> tuple[int, dict]:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    response = requests.post(endpoint.scoring_uri, data=data, headers={"Content-Type": "application/json"}, timeout=120)
    return response.status_code, response.json()


def test_bad_input_gets_clear_errors_and_the_service_keeps_serving(inline_service, model_files, tmp_path):
    _, endpoint = inline_service
    _, model, X = model_files["digits"]
    client = Client(endpoint, keyring=Keyring(tmp_path / "keys"))
    assert_matches_plaintext(client.predict("digits", X[:1]), model, X[:1])  # publishes the keys inline
    session = client.session("digits")
    good = {"model": "digits", "key_id": session.key_id, "data": session.adapter.encrypt(X[:1])}
    ciphertext = base64.b64decode(good["data"]["rows"][0][0])

    def with_data(**changes):
        return {**good, "data": {**good["data"], **changes}}

    def with_ciphertext(blob: bytes):
        return with_data(rows=[[base64.b64encode(blob).decode()]])

    garbage_body = ciphertext[:16] + np.random.default_rng(0).bytes(len(ciphertext) - 16)
    # well formed for the model's parameters, but every coefficient above its prime: only SEAL itself
    # can tell, in the forked child that the service isolates native calls in
    members = bytearray(zlib.decompress(ciphertext[16:]))
    members[-64 - 8 * 24576 : -64] = b"\xff" * (8 * 24576)
    body = zlib.compress(bytes(members))
    out_of_range = ciphertext[:8] + (16 + len(body)).to_bytes(8, "little") + body
    cases = [
        ("{this is not json", "invalid_json", "not valid JSON"),
        ({**good, "model": "mnist"}, "unknown_model", "unknown model 'mnist'; this service has: diabetes, digits"),
        ({k: v for k, v in good.items() if k != "key_id"}, "invalid_key_id", "key_id must be 32 characters"),
        ({**good, "key_id": "b" * 32}, "unknown_key_id", "no public keys for key id bbbb"),
        ({**good, "key_id": "../../etc/passwd"}, "invalid_key_id", "key_id must be"),
        (with_data(rows=[["bm90IGEgY2lwaGVydGV4dA=="]]), "invalid_ciphertext", "not a Microsoft SEAL 3 serialization"),
        (with_data(rows=[["%%%"]]), "invalid_ciphertext", "ciphertext 0 is not valid base64"),
        (with_ciphertext(ciphertext[: len(ciphertext) // 2]), "invalid_ciphertext", "but its header says"),
        (with_ciphertext(garbage_body), "invalid_ciphertext", "ciphertext 0 is not valid zlib data"),
        (with_ciphertext(out_of_range), "rejected_input", "encrypted dot product (malformed ciphertext or public keys?) failed"),
        (with_data(n_features=784), "wrong_features", "model takes 64 features; the request says 784"),
        (with_data(rows=good["data"]["rows"] * 4), "too_many_rows", "request has 4 rows; this service accepts at most 3"),
        ({**good, "op": "train"}, "unknown_op", "unknown op 'train'"),
        ([1, 2, 3], "invalid_request", "request body must be a JSON object"),
    ]
    for body, code, message in cases:
        status, answer = post(endpoint, body)
        assert 400 <= status < 500, (code, status, answer)
        assert answer["error"]["code"] == code, answer
        assert message in answer["error"]["message"], answer
        status, answer = post(endpoint, good)  # the next good request still succeeds
        assert status == 200, answer
    scores = session.adapter.decrypt(answer["result"], 1)
    np.testing.assert_allclose(scores, model.decision_function(X[:1]), atol=1e-3)


def test_client_republishes_keys_when_the_service_forgot_them(make_deployment, model_files, tmp_path):
    deployment = make_deployment(models=("diabetes",), name="restart-svc")
    _, model, X = model_files["diabetes"]
    client = Client(deployment.deploy(tmp_path / "b1"), keyring=Keyring(tmp_path / "keys"))
    try:
        client.predict("diabetes", X[:1])
        client.endpoint = deployment.deploy(tmp_path / "b2")  # a fresh service with an empty key cache
        with pytest.raises(ServiceError, match="unknown_key_id"):
            session = client.session("diabetes")
            client.call({"model": "diabetes", "key_id": session.key_id, "data": session.adapter.encrypt(X[:1])})
        assert_matches_plaintext(client.predict("diabetes", X[:2]), model, X[:2])
    finally:
        deployment.delete()


def test_cli_deploy_and_delete(make_deployment, tmp_path):
    deployment = make_deployment(models=("diabetes",), name="cli-svc")
    config = str(tmp_path / "cli-svc.yaml")
    runner = CliRunner()
    result = runner.invoke(cli, ["deploy", config])
    assert result.exit_code == 0, result.output
    uri = result.output.strip().splitlines()[-1]
    assert uri.startswith("http://127.0.0.1:") and uri.endswith("/score")
    assert set(Client(uri).describe()["models"]) == {"diabetes"}
    result = runner.invoke(cli, ["delete", config])
    assert result.exit_code == 0 and "deleted cli-svc" in result.output
    with pytest.raises(requests.ConnectionError):
        requests.get(uri, timeout=5)
    assert "was not deployed" in runner.invoke(cli, ["delete", config]).output
    assert deployment.name == "cli-svc"
