"""The sklearn-packed adapter end to end through azmlinfsrv: single-row and bulk models in one service."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests
import yaml
from conftest import with_bounds

from sei_framework import Client, Deployment
from sei_framework.keys import Keyring


@pytest.fixture(scope="module")
def packed_service(model_files, tmp_path_factory):
    """One service for the module: each test has keys of its own, and none changes what the service holds
    beyond its own keys' cache entries."""
    tmp_path = tmp_path_factory.mktemp("packed-service")
    config = {
        "name": "packed",
        "models": [
            with_bounds({"name": "digits", "adapter": "sklearn-packed", "path": str(model_files["digits"][0])}),
            with_bounds({"name": "digits-bulk", "adapter": "sklearn-packed", "path": str(model_files["digits"][0]), "options": {"mode": "bulk"}}),
            with_bounds({"name": "diabetes", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0])}),
        ],
        "key_transport": {"name": "inline"},
        "deploy": {"target": "local", "options": {"state_dir": str(tmp_path / "state")}},
        "limits": {"max_rows_per_request": 4096},
    }
    (tmp_path / "packed.yaml").write_text(yaml.safe_dump(config))
    deployment = Deployment.from_file(tmp_path / "packed.yaml")
    with pytest.MonkeyPatch.context() as patch:  # the tests' own SEI_HOME fixture is per test
        patch.setenv("SEI_HOME", str(tmp_path / "sei-home"))
        endpoint = deployment.deploy(tmp_path / "build")
    yield endpoint
    assert deployment.delete() is True


def test_single_and_bulk_match_plaintext(packed_service, model_files, tmp_path):
    client = Client(packed_service, keyring=Keyring(tmp_path / "keys"))
    _, digits, X = model_files["digits"]
    for name, rows in (("digits", X[:20]), ("digits-bulk", X)):
        result = client.predict(name, rows)
        assert np.abs(result.scores - digits.decision_function(rows)).max() <= 1e-3
        assert (result.predictions == digits.predict(rows)).all()
        np.testing.assert_allclose(result.probabilities, digits.predict_proba(rows), atol=1e-3)
    _, diabetes, Xd = model_files["diabetes"]
    np.testing.assert_allclose(client.predict("diabetes", Xd[:10]).predictions, diabetes.predict(Xd[:10]), atol=1e-3)
    assert client.describe()["models"]["digits"]["encryption"]["security_bits"] == 128


def test_hostile_ciphertexts_are_refused_and_the_service_keeps_serving(packed_service, model_files, tmp_path):
    client = Client(packed_service, keyring=Keyring(tmp_path / "keys"))
    _, digits, X = model_files["digits"]
    client.predict("digits", X[:1])
    session = client.session("digits")
    good = {"model": "digits", "key_id": session.key_id, "data": session.adapter.encrypt(X[:1])}
    blob = base64.b64decode(good["data"]["ciphertexts"][0])
    rng = np.random.default_rng(1)
    for bad in (rng.bytes(len(blob)), blob[: len(blob) // 2], blob + b"\0", blob[:24] + rng.bytes(len(blob) - 24)):
        body = {**good, "data": {**good["data"], "ciphertexts": [base64.b64encode(bad).decode()]}}
        response = requests.post(packed_service.scoring_uri, data=json.dumps(body), timeout=60)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_ciphertext", response.text
        response = requests.post(packed_service.scoring_uri, data=json.dumps(good), timeout=60)
        assert response.status_code == 200
    scores = session.adapter.decrypt(response.json()["result"], 1)
    assert np.abs(scores - digits.decision_function(X[:1])).max() <= 1e-3
    # a bulk request that declares fewer rows than its ciphertexts hold cannot slip past the rows limit
    bulk = client.session("digits-bulk")
    lying = {"model": "digits-bulk", "key_id": bulk.key_id, "data": {**bulk.adapter.encrypt(X[:40]), "n_rows": 1}}
    client.predict("digits-bulk", X[:1])  # publishes the bulk model's keys
    response = requests.post(packed_service.scoring_uri, data=json.dumps(lying), timeout=60)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_data", response.text
    assert "hold 40 rows" in response.json()["error"]["message"]


def test_unusable_stored_keys_are_a_clear_error(packed_service, model_files, tmp_path):
    from sei_framework import KeyringError

    keyring = Keyring(tmp_path / "keys")
    scheme = Client(packed_service, keyring=keyring).describe()["models"]["digits"]["key_scheme"]
    keyring.save(scheme, b"SEIP damaged secret", b"public")
    with pytest.raises(KeyringError, match=rf"the stored {scheme} keys in .*keys cannot be used .*move that"):
        Client(packed_service, keyring=keyring).predict("digits", model_files["digits"][2][:1])
