"""The Azure ML tutorial's own client code, unchanged, against configs/mnist-aci.yaml served locally.

The service is the tutorial's config with the `local` target, and Azurite stands in for the
workspace's storage account. The client steps are the tutorial's, as its users wrote them:
EILinearRegressionClient, get_public_keys, upload the keys blob with a connection string,
encrypt one image, POST {"data", "key_id", "conn_str", "container"}, decrypt, argmax.
SEI's own client then uses the same service without sending any secret.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
from azurite import ACCOUNT_KEY, azurite_fixture  # noqa: F401  (fixture azurite)
from conftest import ROOT, load_mnist, load_seed_model

from sei_framework import Deployment
from sei_framework.config import load_config
from sei_framework.keys import Keyring

pytest.importorskip("azure.storage.blob", reason="needs the [azure-blob] extra (make test installs it)")
CONFIG = ROOT / "configs" / "mnist-aci.yaml"
IMAGES = 3


@pytest.fixture(scope="module")
def seed_model():
    return load_seed_model()


@pytest.fixture(scope="module")
def tutorial_service(azurite, tmp_path_factory):
    """configs/mnist-aci.yaml on the local target; Azurite is the storage account its transport trusts."""
    tmp = tmp_path_factory.mktemp("tutorial")
    config = load_config(CONFIG)
    options = {**config.key_transport.options, "account_url": azurite.account_url}
    config = config.model_copy(update={"key_transport": config.key_transport.model_copy(update={"options": options})})
    deployment = Deployment(config).with_target("local", state_dir=str(tmp / "state"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEI_HOME", str(tmp / "sei-home"))
        patch.delenv("SEI_BLOB_CONNECTION", raising=False)  # mode sas: the service holds no storage credentials
        endpoint = deployment.deploy(tmp / "build")
    try:
        yield endpoint, options["container"], tmp / "state" / config.name / "server.log", deployment
    finally:
        deployment.delete()


def test_the_tutorials_client_code_gets_the_right_digits(tutorial_service, azurite, seed_model):
    endpoint, container_name, server_log, _ = tutorial_service
    X_test, y_test = load_mnist(IMAGES)

    # -- the tutorial's client steps ------------------------------------------------------------
    from azure.storage.blob import BlobServiceClient
    from encrypted.inference.eiclient import EILinearRegressionClient

    # The tutorial wrote EILinearRegressionClient(verbose=True), which PRINTS THE SECRET KEY; never here.
    edp = EILinearRegressionClient(verbose=False)
    public_keys_blob, public_keys_data = edp.get_public_keys()

    conn_str = azurite.connection_string  # the tutorial builds it from the datastore's account key
    blob_service_client = BlobServiceClient.from_connection_string(conn_str)
    if not blob_service_client.get_container_client(container_name).exists():
        blob_service_client.create_container(container_name)  # the tutorial's datastore container already exists
    blob_service_client.get_blob_client(container=container_name, blob=public_keys_blob).upload_blob(public_keys_data)

    predictions = []
    for sample_index in range(IMAGES):
        raw_data = edp.encrypt(X_test[sample_index])
        data = json.dumps(
            {"data": raw_data, "key_id": public_keys_blob, "conn_str": conn_str, "container": container_name}
        )
        data = bytes(data, encoding="ASCII")
        # service.run(input_data=data) in the tutorial: a JSON POST to the scoring URI
        response = requests.post(
            endpoint.scoring_uri, data=data, headers={"Content-Type": "application/json"}, timeout=300
        )
        assert response.status_code == 200, response.text[:500]
        eresult = response.json()
        results = edp.decrypt(eresult)
        predictions.append(np.argmax(results))
        np.testing.assert_allclose(
            results, seed_model.decision_function(X_test[sample_index : sample_index + 1])[0], atol=1e-3
        )
    # ---------------------------------------------------------------------------------------------

    assert predictions == list(seed_model.predict(X_test))
    assert (np.array(predictions) == y_test).mean() >= 2 / 3
    log = server_log.read_text(errors="replace")
    assert "connection string sent by the client" in log  # the opt-in is visible in the log...
    assert conn_str not in log and ACCOUNT_KEY not in log  # ...the connection string is not
    assert edp.secret_key() not in log


def test_seis_own_client_uses_the_same_service_with_a_sas_url(
    tutorial_service, azurite, seed_model, tmp_path, monkeypatch
):
    endpoint, _, server_log, deployment = tutorial_service
    monkeypatch.setenv("SEI_BLOB_CONNECTION", azurite.connection_string)  # the client's own credentials
    X, _ = load_mnist(IMAGES)
    client = deployment.client(endpoint, keyring=Keyring(tmp_path / "keys"))  # the user's config: Azurite
    assert client.describe()["key_transport"]["options"]["mode"] == "sas"
    result = client.predict("mnist", X)
    np.testing.assert_allclose(result.scores, seed_model.decision_function(X), atol=1e-3)
    assert (result.predictions == seed_model.predict(X)).all()
    assert ACCOUNT_KEY not in server_log.read_text(errors="replace")
