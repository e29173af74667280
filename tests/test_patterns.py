"""Every format check refuses a trailing newline and other near misses.

Python's `re.match(r"^...$")` accepts "value\\n" ($ also matches before a final newline), so the
checks in Python use `fullmatch`. pydantic's `Field(pattern=...)` runs Rust's regex, where `$` is the
end of the text but `\\d` is any Unicode digit; these tests pin both behaviours down.
"""

from __future__ import annotations

import json

import pytest
from conftest import keyed_request
from pydantic import ValidationError

from sei_framework import DeployError, InvalidRequest, check_key_id
from sei_framework.config import ModelConfig, SeiConfig
from sei_framework.keys import KEY_ID_PATTERN
from sei_framework.serving import ScoringService

KEY_ID = "abcdefghijklmnopqrstuvwxyz234567"
NEAR_MISSES = ["{}\n", "{}\r\n", "\n{}", "{}\r", "{} ", "{}\x00", "{}\u2028"]


def near_misses(good: str) -> list[str]:
    return [form.format(good) for form in NEAR_MISSES]


@pytest.mark.parametrize("value", [*near_misses(KEY_ID), KEY_ID[:-1] + "\n", KEY_ID.upper(), "ａ" + KEY_ID[1:], KEY_ID + "a"])
def test_check_key_id_refuses_near_misses(value):
    assert check_key_id(KEY_ID) == KEY_ID
    with pytest.raises(InvalidRequest) as info:
        check_key_id(value)
    assert info.value.code == "invalid_key_id"
    assert not KEY_ID_PATTERN.match(value) and not KEY_ID_PATTERN.search(value)  # safe however it is used


def test_service_answers_400_to_a_key_id_with_a_trailing_newline(make_deployment, model_files, tmp_path):
    service = ScoringService.from_build(make_deployment(models=("diabetes",)).build(tmp_path / "build").path)
    _, body, publish, _ = keyed_request(service, "diabetes", model_files["diabetes"][2][:1])
    for bad in (body["key_id"] + "\n", body["key_id"] + "\r\n"):
        answer, status = service.handle(json.dumps({**body, **publish, "key_id": bad}))
        assert (status, answer["error"]["code"]) == (400, "invalid_key_id"), answer


def _options(module: str, cls: str, **required):
    def validate(field: str, value: str):
        return getattr(pytest.importorskip(module), cls).model_validate({**required, field: value})

    return validate


def _config(field: str, value: str):
    if field == "name":
        return SeiConfig.model_validate({"name": value, "models": [{"name": "m", "adapter": "a", "path": "p"}]})
    return ModelConfig.model_validate({"name": value, "adapter": "a", "path": "p"})


# (what validates, the field, a good value, extra bad values)
PYDANTIC_FIELDS = [
    (_config, "name", "svc-1", ["Svc", "-svc"]),
    (_config, "model", "digits_2", ["ｄigits"]),
    (_options("sei_deploy_local", "LocalOptions"), "token_env", "SEI_TOKEN", ["SEI-TOKEN", "SEÍ"]),
    (_options("sei_deploy_aci", "AciOptions"), "service_name", "my-svc", ["My-svc"]),
    (_options("sei_deploy_aci", "AciOptions"), "python_version", "3.11", ["3.١١", "3.１１", "3.11.2"]),
    (_options("sei_azureml_common", "WorkspaceOptions"), "model_name", "my.model_1", ["my model"]),
    (_options("sei_deploy_azureml_online", "OnlineOptions"), "endpoint_name", "my-endpoint", ["9endpoint"]),
    (_options("sei_deploy_azureml_online", "OnlineOptions"), "deployment_name", "blue", ["blue_1"]),
    (_options("sei_transport_azure_blob", "AzureBlobOptions", container="keys"), "connection_string_env", "SEI_CONN", ["1X"]),
    (_options("sei_transport_azure_blob", "AzureBlobOptions"), "container", "sei-keys", ["sei--keys", "Keys"]),
]


@pytest.mark.parametrize(
    ("validate", "field", "good", "bad"),
    [(v, f, g, b) for v, f, g, extra in PYDANTIC_FIELDS for b in [*near_misses(g), *extra]],
    ids=lambda x: repr(x) if isinstance(x, str) else "",
)
def test_option_and_config_patterns_refuse_near_misses(validate, field, good, bad):
    validate(field, good)
    with pytest.raises(ValidationError):
        validate(field, bad)


@pytest.mark.parametrize("bad", [*near_misses("my-svc"), "-svc"])
def test_aci_service_name_check_refuses_near_misses(bad):
    aci = pytest.importorskip("sei_deploy_aci")
    target = aci.AciTarget(aci.AciOptions())
    assert target.service_name("my-svc") == "my-svc"
    with pytest.raises(DeployError, match="cannot name an ACI service"):
        target.service_name(bad)


@pytest.mark.parametrize("bad", [*near_misses("my-endpoint"), "9endpoint"])
def test_online_endpoint_name_check_refuses_near_misses(bad):
    online = pytest.importorskip("sei_deploy_azureml_online")
    target = online.AzureMLOnlineTarget(online.OnlineOptions())
    assert target.endpoint_name("my-endpoint") == "my-endpoint"
    with pytest.raises(DeployError, match="cannot name a managed online endpoint"):
        target.endpoint_name(bad)


@pytest.mark.parametrize("bad", near_misses("sei-keys"))
def test_tutorial_container_check_refuses_near_misses(bad):
    blob = pytest.importorskip("sei_transport_azure_blob")
    from sei_transport_azure_blob.tutorial import checked_request

    options = blob.AzureBlobOptions(container="sei-keys", accept_tutorial_requests=True)
    with pytest.raises(InvalidRequest, match="container must be a blob container name") as info:
        checked_request(options, {"container": bad, "conn_str": "x"})
    assert info.value.code == "wrong_container"


@pytest.mark.parametrize("bad", [*near_misses("azureml:diabetes:3"), "azureml:diabetes:latest\n", "azureml:diabetes"])
def test_registered_model_uri_check_refuses_near_misses(bad):
    online = pytest.importorskip("sei_deploy_azureml_online")
    assert online.model_source.parse_uri("azureml:diabetes:3") == ("diabetes", "3")
    with pytest.raises(ValueError, match="not a registered model reference"):
        online.model_source.parse_uri(bad)


@pytest.mark.parametrize("field", ["id", "sha256"])
def test_batch_shard_fields_refuse_near_misses(field):
    from sei_framework.batch import Shard

    good = {"id": "00001", "start": 0, "stop": 5, "sha256": "a" * 64, "bytes": 10}
    Shard.model_validate(good)
    for bad in [*near_misses(good[field]), good[field].upper() if field == "sha256" else "٠٠٠٠١"]:
        with pytest.raises(ValidationError):
            Shard.model_validate({**good, field: bad})


@pytest.mark.parametrize("name", ["00001.json\n", "0000١.json", "00001.json.tmp", ".00001.json.abc.tmp", "x.json"])
def test_batch_script_takes_only_shard_files(name, tmp_path):
    from sei_framework.batch.scoring import job_shard_of

    assert job_shard_of(tmp_path / "job" / "shards" / "00001.json") == (str(tmp_path / "job"), "00001")
    assert job_shard_of(tmp_path / "job" / "shards" / name) is None
