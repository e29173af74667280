"""Key transport `azure-blob` against Azurite: both modes, SAS checks, tutorial opt-in, end to end."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, UTC
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from azurite import ACCOUNT_KEY, azurite_fixture, loopback_only_fixture  # noqa: F401  (fixtures)

from sei_framework import Client, ConfigError, InvalidRequest, KeyTransportError, ServiceError, key_id_for
from sei_framework.keys import Keyring

pytest.importorskip("azure.storage.blob", reason="needs the [azure-blob] extra (make test installs it)")
from sei_transport_azure_blob import AzureBlobOptions, AzureBlobTransport, make_sas_url  # noqa: E402

ENV = "SEI_TEST_BLOB_CONNECTION"
KEYS = b"public keys " * 1000
KEY_ID = key_id_for(KEYS)


def transport(azurite, **options) -> AzureBlobTransport:
    values = {"container": "sei-keys", "account_url": azurite.account_url, "connection_string_env": ENV}
    return AzureBlobTransport(AzureBlobOptions(**{**values, **options}))


@pytest.fixture
def blob_env(azurite, monkeypatch):
    monkeypatch.setenv(ENV, azurite.connection_string)
    return azurite


def secrets_of(azurite) -> list[str]:
    return [ACCOUNT_KEY, azurite.connection_string, "AccountKey="]


def assert_no_secret(text: str, azurite, *extra: str) -> None:
    for secret in [*secrets_of(azurite), *extra]:
        assert secret not in text


def test_options_are_checked_with_field_paths(make_deployment):
    with pytest.raises(ConfigError) as error:
        make_deployment(transport={"name": "azure-blob", "options": {"container": "Keys!", "mode": "sas"}}).validate()
    problems = "\n".join(error.value.problems)
    assert "key_transport.options.container: Value error, must be a blob container name" in problems
    with pytest.raises(ConfigError) as error:
        make_deployment(
            transport={"name": "azure-blob", "options": {"container": "keys", "account_url": "http://10.1.2.3/x"}}
        ).validate()
    assert "plain http is only allowed for a local emulator" in str(error.value)
    with pytest.raises(ConfigError, match="mode 'sas' needs account_url"):
        make_deployment(transport={"name": "azure-blob", "options": {"container": "keys", "mode": "sas"}}).validate()


def test_read_mode_publish_fetch_and_clear_errors(blob_env, loopback_only, monkeypatch):
    client_side, service_side = transport(blob_env), transport(blob_env)
    assert client_side.publish(KEY_ID, KEYS) == {}  # creates the container, uploads blob KEY_ID
    blob = client_side._client().get_blob_client("sei-keys", KEY_ID)
    etag = blob.get_blob_properties().etag
    assert client_side.publish(KEY_ID, KEYS) == {} and blob.get_blob_properties().etag == etag  # uploaded once
    assert service_side.fetch(KEY_ID, {}) == KEYS
    assert service_side.fetch("a" * 32, {}) is None  # no blob: the core answers unknown_key_id
    with pytest.raises(InvalidRequest, match="key_id must be"):
        service_side.fetch("../sei-keys/x", {})
    with pytest.raises(KeyTransportError, match="container 'no-such-container' of .* does not exist"):
        transport(blob_env, container="no-such-container").fetch(KEY_ID, {})
    with pytest.raises(InvalidRequest, match="keys_too_large|reads at most") as error:
        transport(blob_env, max_blob_mb=0.001).fetch(KEY_ID, {})
    assert error.value.code == "keys_too_large"
    monkeypatch.delenv(ENV)
    with pytest.raises(KeyTransportError, match=f"set the environment variable {ENV}") as error:
        transport(blob_env, account_url=None).fetch(KEY_ID, {})
    monkeypatch.setenv(ENV, "not a connection string; AccountKey=" + ACCOUNT_KEY)
    with pytest.raises(KeyTransportError, match=f"{ENV} does not hold a storage connection string") as error:
        transport(blob_env).fetch(KEY_ID, {})
    assert_no_secret(str(error.value), blob_env)


def test_client_options_share_no_secret(blob_env):
    shared = transport(blob_env, mode="sas").client_options()
    assert shared == {
        "container": "sei-keys",
        "account_url": blob_env.account_url,
        "mode": "sas",
        "connection_string_env": ENV,
        "sas_expiry_minutes": 15,
    }
    AzureBlobOptions(**shared)  # a client configures itself from exactly this
    assert_no_secret(repr(shared), blob_env)


def test_sas_mode_checks_every_url_before_downloading(blob_env, loopback_only):
    service = transport(blob_env, mode="sas")
    fields = transport(blob_env, mode="sas").publish(KEY_ID, KEYS)
    url = fields["key_sas_url"]
    query = parse_qs(urlsplit(url).query)
    assert query["sp"] == ["r"] and query["sr"] == ["b"]
    expiry = datetime.strptime(query["se"][0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(minutes=14) < expiry - datetime.now(UTC) <= timedelta(minutes=15)
    assert service.fetch(KEY_ID, {"key_sas_url": url}) == KEYS
    assert service.fetch(KEY_ID, {}) is None  # no SAS URL: unknown_key_id, the client publishes again
    signature = query["sig"][0]

    def refused(url_or_value, code: str, message: str) -> None:
        with pytest.raises(InvalidRequest) as error:
            service.fetch(KEY_ID, {"key_sas_url": url_or_value})
        assert error.value.code == code, error.value.message
        assert message in error.value.message
        assert signature not in error.value.message and ACCOUNT_KEY not in error.value.message

    base, _, token = url.partition("?")
    refused(f"http://169.254.169.254/{'devstoreaccount1'}/sei-keys/{KEY_ID}?{token}", "invalid_key_sas_url",
            "must point at this service's storage account")  # fmt: skip
    refused(url.replace("127.0.0.1", "localhost"), "invalid_key_sas_url", "must point at this service's storage")
    refused(url.replace("/sei-keys/", "/other-keys/"), "wrong_container", "names container 'other-keys'")
    refused(url.replace(KEY_ID, "b" * 32), "invalid_key_sas_url", "not the request's key id")
    refused(base, "invalid_key_sas_url", "carries no SAS token")
    refused(url.replace("sp=r", "sp=rw"), "invalid_key_sas_url", "read permission only")
    refused(url + "#x", "invalid_key_sas_url", "fragment")
    refused(12, "invalid_key_sas_url", "must be a URL string")
    sdk_service, blob = service_side_blob(blob_env)
    past = datetime.now(UTC) - timedelta(hours=1)
    refused(make_sas_url(sdk_service, blob, 15, now=past), "key_sas_expired", "expired at")
    refused(make_sas_url(sdk_service, blob, 120), "key_sas_too_long", "at most 15 minutes")
    refused(url.replace("sig=", "sig=AAAA"), "key_sas_rejected", "refused key_sas_url")  # Azurite checks it


def service_side_blob(azurite):
    client = transport(azurite)._client()
    return client, client.get_blob_client("sei-keys", KEY_ID)


def test_tutorial_requests_only_on_opt_in(blob_env, loopback_only, caplog):
    transport(blob_env).publish(KEY_ID, KEYS)
    tutorial = {"data": ["..."], "key_id": KEY_ID, "conn_str": blob_env.connection_string, "container": "sei-keys"}
    closed = transport(blob_env)
    assert closed.unverified_source(KEY_ID, tutorial) is None
    with pytest.raises(InvalidRequest, match="does not accept storage connection strings") as error:
        closed.fetch(KEY_ID, tutorial)
    assert error.value.code == "tutorial_request_refused"
    service = transport(blob_env, accept_tutorial_requests=True, connection_string_env="SEI_UNSET_VARIABLE")
    # the tutorial's key id hashes its SECRET key: the core caches such keys apart, by this source
    assert service.unverified_source(KEY_ID, tutorial) == f"azure-blob {blob_env.account_url}/sei-keys"
    assert service.unverified_source(KEY_ID, {"key_id": KEY_ID, "data": {}}) is None  # SEI's own stay checked
    with caplog.at_level(logging.WARNING):
        assert service.fetch(KEY_ID, tutorial) == KEYS  # read with the request's connection string only
    assert "connection string sent by the client" in caplog.text
    assert_no_secret(caplog.text, blob_env)
    bad = {
        "wrong_container": {**tutorial, "container": "other"},
        "invalid_conn_str": {**tutorial, "conn_str": "AccountKey=" + ACCOUNT_KEY},
        "wrong_account": {**tutorial, "conn_str": blob_env.connection_string.replace("127.0.0.1", "169.254.169.254")},
    }
    for code, request in bad.items():
        with pytest.raises(InvalidRequest) as error:
            service.fetch(KEY_ID, request)
        assert error.value.code == code
        assert_no_secret(error.value.message, blob_env)
    no_account = transport(blob_env, accept_tutorial_requests=True, account_url=None)
    with pytest.raises(InvalidRequest, match="must name an Azure storage account over https") as error:
        no_account.fetch(KEY_ID, tutorial)  # without account_url only *.blob.core.windows.net & co.
    assert_no_secret(caplog.text + error.value.message, blob_env)


# -- end to end through azmlinfsrv ----------------------------------------------------------------


def blob_config(azurite, **options):
    values = {"container": "e2e-keys", "account_url": azurite.account_url, "connection_string_env": ENV}
    return {"name": "azure-blob", "options": {**values, **options}}


def test_local_service_reads_keys_from_blob_storage(blob_env, make_deployment, model_files, tmp_path):
    deployment = make_deployment(models=("digits",), transport=blob_config(blob_env), name="blob-svc")
    endpoint = deployment.deploy(tmp_path / "build")  # the service inherits ENV: its own credentials
    _, model, X = model_files["digits"]
    try:
        client = deployment.client(endpoint, keyring=Keyring(tmp_path / "keys"))  # the config's own account
        result = client.predict("digits", X[:4])
        np.testing.assert_allclose(result.scores, model.decision_function(X[:4]), atol=1e-3)
        assert (result.predictions == model.predict(X[:4])).all()
        key_id = client.session("digits").key_id
        victim = "c" * 32  # keys planted under someone else's id are refused by the core's hash check
        blobs = transport(blob_env, container="e2e-keys")
        blobs._client().get_blob_client("e2e-keys", victim).upload_blob(client.session("digits").public_keys)
        data = client.model("digits").encrypt(X[:1])
        with pytest.raises(ServiceError, match="key_mismatch"):
            client.call({"model": "digits", "key_id": victim, "data": data})
        assert blobs.fetch(key_id, {}) is not None
    finally:
        deployment.delete()
    log = (tmp_path / "state" / "blob-svc" / "server.log").read_text(errors="replace")
    assert "/score" in log
    assert_no_secret(log, blob_env)


def test_sas_mode_service_holds_no_storage_credentials(azurite, make_deployment, model_files, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    deployment = make_deployment(models=("diabetes",), transport=blob_config(azurite, mode="sas"), name="sas-svc")
    endpoint = deployment.deploy(tmp_path / "build")  # started without ENV: it can only use SAS URLs
    monkeypatch.setenv(ENV, azurite.connection_string)  # the client's own credentials
    _, model, X = model_files["diabetes"]
    try:
        client = deployment.client(endpoint, keyring=Keyring(tmp_path / "keys"))
        assert client.describe()["key_transport"]["options"]["mode"] == "sas"
        result = client.predict("diabetes", X[:3])
        np.testing.assert_allclose(result.predictions, model.predict(X[:3]), atol=1e-3)
        # another client, whose keys the service has not seen, sends an expired SAS URL: a clear client error
        other = Client(endpoint, keyring=Keyring(tmp_path / "other-keys")).session("diabetes")
        sent = transport(azurite, container="e2e-keys", mode="sas").publish(other.key_id, other.public_keys)
        signature = parse_qs(urlsplit(sent["key_sas_url"]).query)["sig"][0]
        service, blob = service_side_blob_in(azurite, "e2e-keys", other.key_id)
        expired = make_sas_url(service, blob, 15, now=datetime.now(UTC) - timedelta(hours=2))
        body = {"model": "diabetes", "key_id": other.key_id, "data": other.adapter.encrypt(X[:1])}
        with pytest.raises(ServiceError, match="key_sas_expired"):
            client.call({**body, "key_sas_url": expired})
        assert client.call({**body, **sent})["key_id"] == other.key_id  # the fresh one works
    finally:
        deployment.delete()
    log = (tmp_path / "state" / "sas-svc" / "server.log").read_text(errors="replace")
    assert_no_secret(log, azurite, signature)


def service_side_blob_in(azurite, container: str, key_id: str):
    client = transport(azurite, container=container)._client()
    return client, client.get_blob_client(container, key_id)
