"""Deploy target `azureml-online`: real azure-ai-ml entities; only the calls that cross the network are replaced."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from azurite import loopback_only_fixture  # noqa: F401  (fixture loopback_only)
from click.testing import CliRunner

from sei_framework import DeployError, Deployment
from sei_framework.cli import cli

pytest.importorskip("azure.ai.ml", reason="needs the [azureml-online] extra (make test installs it)")
from azure.ai.ml import MLClient, load_online_deployment, load_online_endpoint  # noqa: E402
from azure.ai.ml.entities import EndpointAuthKeys, ManagedOnlineDeployment, ManagedOnlineEndpoint  # noqa: E402
from azure.ai.ml.operations import OnlineDeploymentOperations, OnlineEndpointOperations  # noqa: E402
from azure.core.exceptions import ResourceNotFoundError  # noqa: E402

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000bb"
PRIMARY_KEY = "online-primary-key-value"
BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-py311-inference:latest"


@pytest.fixture
def online_config(tmp_path, model_files):
    data = {
        "name": "sei-diabetes",
        "models": [{"name": "diabetes", "adapter": "sklearn-eiserver", "path": str(model_files["diabetes"][0])}],
        "key_transport": {
            "name": "azure-blob",
            "options": {"container": "sei-keys", "account_url": "https://seikeys.blob.core.windows.net"},
        },
        "deploy": {
            "target": "azureml-online",
            "options": {
                "subscription_id": SUBSCRIPTION,
                "resource_group": "sei-rg",
                "workspace_name": "sei-ws",
                "instance_type": "Standard_DS3_v2",
                "tags": {"data": "diabetes"},
            },
        },  # fmt: skip
    }
    path = tmp_path / "sei-diabetes.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Poller:
    """What begin_* returns; result() waits on the service in azure-ai-ml."""

    def __init__(self, value=None) -> None:
        self.value = value

    def result(self, timeout=None):
        assert timeout == 3600
        return self.value


def check_deployment(deployment: ManagedOnlineDeployment, calls: list) -> None:
    """The deployment the target submits, checked while its temporary build context still exists."""
    assert deployment.name == "sei" and deployment.endpoint_name == "sei-diabetes"
    code = Path(deployment.code_configuration.code)
    assert deployment.code_configuration.scoring_script == "score.py" and (code / "score.py").is_file()
    manifest = json.loads((code / "sei_build.json").read_text())
    assert manifest["name"] == "sei-diabetes"
    assert Path(deployment.model.path) == code / "models" and deployment.model.type == "custom_model"
    context = Path(deployment.environment.build.path)
    dockerfile = (context / "Dockerfile").read_text()
    assert f"FROM {BASE_IMAGE}" in dockerfile and "COPY wheels/ /tmp/sei/wheels/" in dockerfile
    requirements = (context / "requirements.txt").read_text().split()
    [wheel] = list((context / "wheels").glob("sei_framework-0.1.0-0*-py3-none-any.whl"))
    assert requirements == [
        f"/tmp/sei/wheels/{wheel.name}",
        *manifest["requirements"][1:],
        "azureml-inference-server-http>=1.4",
    ]
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_DS3_v2", 1)
    assert deployment.request_settings.request_timeout_ms == 90_000
    state = manifest["state"]
    expected = {state["url_env"]: os.environ[state["url_env"]]} if state["backend"] == "redis" else {}
    assert (deployment.environment_variables or {}) == expected  # the Redis URL, from the deploying machine
    calls.append("online_deployments.begin_create_or_update")


@pytest.fixture
def azure(monkeypatch, loopback_only):
    """azure-ai-ml's network calls replaced by argument-checking fakes; MLClient and entities are real."""
    state = SimpleNamespace(calls=[], endpoints={}, clients=[])

    def endpoint_create(self, endpoint, *, local=False):
        assert isinstance(self, OnlineEndpointOperations) and not local
        assert isinstance(endpoint, ManagedOnlineEndpoint) and endpoint.auth_mode == "key"
        assert endpoint.name == "sei-diabetes" and endpoint.tags["data"] == "diabetes"
        state.endpoints[endpoint.name] = dict(endpoint.traffic or {})
        state.calls.append(f"online_endpoints.begin_create_or_update traffic={endpoint.traffic or {}}")
        return Poller(endpoint)

    def deployment_create(self, deployment, *, local=False, **kwargs):
        assert isinstance(self, OnlineDeploymentOperations) and not local
        check_deployment(deployment, state.calls)
        return Poller(deployment)

    def endpoint_get(self, name, *, local=False):
        assert name in state.endpoints
        state.calls.append("online_endpoints.get")
        endpoint = ManagedOnlineEndpoint(name=name, auth_mode="key")
        endpoint._scoring_uri = f"https://{name}.westeurope.inference.ml.azure.com/score"
        return endpoint

    def get_keys(self, name):
        assert name in state.endpoints
        state.calls.append("online_endpoints.get_keys")
        return EndpointAuthKeys(primary_key=PRIMARY_KEY, secondary_key="online-secondary-key-value")

    def begin_delete(self, name=None, *, local=False):
        state.calls.append(f"online_endpoints.begin_delete {name}")
        if name not in state.endpoints:
            raise ResourceNotFoundError(f"endpoint {name} not found")
        del state.endpoints[name]
        return Poller()

    real_init = MLClient.__init__

    def ml_client_init(self, credential, subscription_id=None, resource_group_name=None, workspace_name=None, **kwargs):
        assert type(credential).__name__ == "DefaultAzureCredential"
        assert (subscription_id, resource_group_name, workspace_name) == (SUBSCRIPTION, "sei-rg", "sei-ws")
        state.clients.append(self)
        real_init(self, credential, subscription_id, resource_group_name, workspace_name, **kwargs)  # makes no call

    monkeypatch.setattr(MLClient, "__init__", ml_client_init)
    monkeypatch.setattr(OnlineEndpointOperations, "begin_create_or_update", endpoint_create)
    monkeypatch.setattr(OnlineDeploymentOperations, "begin_create_or_update", deployment_create)
    monkeypatch.setattr(OnlineEndpointOperations, "get", endpoint_get)
    monkeypatch.setattr(OnlineEndpointOperations, "get_keys", get_keys)
    monkeypatch.setattr(OnlineEndpointOperations, "begin_delete", begin_delete)
    return state


def test_deploy_creates_endpoint_deployment_and_traffic(online_config, azure, capsys, caplog):
    deployment = Deployment.from_file(online_config)
    endpoint = deployment.deploy()
    assert azure.calls == [
        "online_endpoints.begin_create_or_update traffic={}",
        "online_deployments.begin_create_or_update",
        "online_endpoints.begin_create_or_update traffic={'sei': 100}",
        "online_endpoints.get",
        "online_endpoints.get_keys",
    ]
    assert endpoint.scoring_uri == "https://sei-diabetes.westeurope.inference.ml.azure.com/score"
    assert endpoint.headers == {"Authorization": f"Bearer {PRIMARY_KEY}"} and PRIMARY_KEY not in repr(endpoint)
    out = capsys.readouterr()
    assert PRIMARY_KEY not in out.out + out.err + caplog.text
    assert deployment.delete() is True and deployment.delete() is False
    assert azure.calls[-2:] == ["online_endpoints.begin_delete sei-diabetes"] * 2


def test_failures_and_bad_names_are_deploy_errors(online_config, azure, monkeypatch):
    def failing(self, deployment, **kwargs):
        raise RuntimeError("quota exceeded for Standard_DS3_v2")

    monkeypatch.setattr(OnlineDeploymentOperations, "begin_create_or_update", failing)
    with pytest.raises(DeployError, match="'sei-diabetes' failed: RuntimeError: quota exceeded for Standard_DS3_v2"):
        Deployment.from_file(online_config).deploy()
    from sei_deploy_azureml_online import AzureMLOnlineTarget, OnlineOptions

    with pytest.raises(DeployError, match="'9lives' cannot name a managed online endpoint"):
        AzureMLOnlineTarget(OnlineOptions()).endpoint_name("9lives")


def test_dry_run_writes_yaml_the_sdk_loads(online_config, loopback_only, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a dry run must not call Azure")

    for name in ("begin_create_or_update", "get", "get_keys", "begin_delete"):
        monkeypatch.setattr(OnlineEndpointOperations, name, forbidden)
    monkeypatch.setattr(OnlineDeploymentOperations, "begin_create_or_update", forbidden)
    out = tmp_path / "dry"
    result = CliRunner().invoke(cli, ["deploy", str(online_config), "--dry-run", str(out)])
    assert result.exit_code == 0, result.output
    endpoint = load_online_endpoint(out / "endpoint.yml")
    assert (endpoint.name, endpoint.auth_mode) == ("sei-diabetes", "key")
    raw = yaml.safe_load((out / "deployment.yml").read_text())
    assert raw["code_configuration"] == {"code": "build", "scoring_script": "score.py"}
    assert raw["model"]["path"] == "build/models" and raw["environment"]["build"]["path"] == "environment"
    deployment = load_online_deployment(out / "deployment.yml")  # the SDK's own schema accepts it
    assert deployment.instance_type == "Standard_DS3_v2" and deployment.request_settings.request_timeout_ms == 90_000
    base = Path(deployment.base_path)  # the SDK resolves paths from the YAML file's folder
    assert (base / deployment.code_configuration.code).resolve() == (out / "build").resolve()
    [wheel] = (out / "environment" / "wheels").glob("*.whl")
    assert f"/tmp/sei/wheels/{wheel.name}" in (out / "environment" / "requirements.txt").read_text()
    assert (out / "build" / "score.py").is_file()
    assert json.loads((out / "workspace.json").read_text())["name"] == "sei-ws"


REDIS_URL = "rediss://:redis-access-key-value@sei.redis.cache.windows.net:6380/0"


def with_redis_state(config_path: Path) -> Path:
    data = yaml.safe_load(config_path.read_text())
    data["state"] = {"backend": "redis", "url_env": "SEI_TEST_REDIS_URL"}
    config_path.write_text(yaml.safe_dump(data))
    return config_path


def test_redis_state_url_reaches_the_deployment_from_the_environment(online_config, azure, monkeypatch):
    deployment = Deployment.from_file(with_redis_state(online_config))
    monkeypatch.delenv("SEI_TEST_REDIS_URL", raising=False)
    with pytest.raises(DeployError, match="needs the Redis URL in the environment variable SEI_TEST_REDIS_URL"):
        deployment.deploy()
    monkeypatch.setenv("SEI_TEST_REDIS_URL", REDIS_URL)
    deployment.deploy()  # check_deployment: environment_variables == {"SEI_TEST_REDIS_URL": REDIS_URL}
    assert "online_deployments.begin_create_or_update" in azure.calls


def test_dry_run_names_the_redis_variable_never_its_value(online_config, loopback_only, tmp_path, monkeypatch):
    monkeypatch.setenv("SEI_TEST_REDIS_URL", REDIS_URL)
    out = tmp_path / "dry"
    result = CliRunner().invoke(cli, ["deploy", str(with_redis_state(online_config)), "--dry-run", str(out)])
    assert result.exit_code == 0, result.output
    deployment = load_online_deployment(out / "deployment.yml")
    assert deployment.environment_variables == {"SEI_TEST_REDIS_URL": "<the value of $SEI_TEST_REDIS_URL when deploying>"}
    texts = [f.read_bytes() for f in out.rglob("*") if f.is_file()]
    assert texts and not any(b"redis-access-key-value" in t for t in texts)
