"""Deploy target `azureml-online`: real azure-ai-ml entities; only the calls that cross the network are replaced.

The dry run's build context is then installed into a fresh environment and its build folder served
by that environment's azmlinfsrv, which proves that the package the endpoint would run answers
encrypted predictions.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from azurite import azurite_fixture, loopback_only_fixture  # noqa: F401  (fixtures azurite, loopback_only)
from click.testing import CliRunner
from conftest import with_bounds
from fresh_env import fresh_venv, pip_install, served_by

from sei_framework import ConfigError, DeployError, Deployment, get_plugin_manager
from sei_framework.cli import cli
from sei_framework.config import load_config, resolve_config
from sei_framework.keys import Keyring

pytest.importorskip("azure.ai.ml", reason="needs the [azureml-online] extra (make test installs it)")
from azure.ai.ml import load_online_deployment, load_online_endpoint  # noqa: E402
from azure.ai.ml.entities import (  # noqa: E402
    DefaultScaleSettings,
    EndpointAuthKeys,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
)
from azure.ai.ml.operations import OnlineDeploymentOperations, OnlineEndpointOperations  # noqa: E402
from azure.core.exceptions import ResourceNotFoundError  # noqa: E402
from azureml_fakes import Poller, check_ml_client  # noqa: E402  (after the SDK check)

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000bb"
PRIMARY_KEY = "online-primary-key-value"
BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-py311-inference:latest"
ENV = "SEI_TEST_BLOB_CONNECTION"
LIVENESS = {"initial_delay": 30, "period": 15, "timeout": 5, "failure_threshold": 4}
READINESS = {"initial_delay": 5, "period": 5, "timeout": 3, "success_threshold": 2, "failure_threshold": 10}


@pytest.fixture
def online_config(tmp_path, model_files):
    data = {
        "name": "sei-diabetes",
        "models": [with_bounds({"name": "diabetes", "adapter": "sklearn-eiserver", "path": str(model_files["diabetes"][0])})],
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
                "instance_count": 3,
                "max_concurrent_requests_per_instance": 2,
                "max_queue_wait_ms": 2000,
                "liveness_probe": LIVENESS,
                "readiness_probe": READINESS,
                "scale_settings": {"type": "default"},
                "tags": {"data": "diabetes"},
            },
        },  # fmt: skip
    }
    path = tmp_path / "sei-diabetes.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def check_scaling(deployment: ManagedOnlineDeployment) -> None:
    """Instances, request settings, probes and scale type, as the config sets them."""
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_DS3_v2", 3)
    request = deployment.request_settings
    assert (request.request_timeout_ms, request.max_concurrent_requests_per_instance, request.max_queue_wait_ms) == (
        90_000, 2, 2000
    )  # fmt: skip
    fields = ("initial_delay", "period", "timeout", "success_threshold", "failure_threshold")
    assert {f: getattr(deployment.liveness_probe, f) for f in fields} == {**LIVENESS, "success_threshold": None}
    assert {f: getattr(deployment.readiness_probe, f) for f in fields} == READINESS
    assert isinstance(deployment.scale_settings, DefaultScaleSettings)
    rest = deployment._to_rest_object("westeurope").as_dict()["properties"]  # the body the SDK sends to Azure
    liveness = {"initialDelay": "PT30S", "period": "PT15S", "timeout": "PT5S", "failureThreshold": 4}
    assert rest["livenessProbe"] == liveness
    assert rest["readinessProbe"]["successThreshold"] == 2 and rest["scaleSettings"] == {"scaleType": "Default"}
    assert rest["requestSettings"] == {
        "requestTimeout": "PT1M30S", "maxConcurrentRequestsPerInstance": 2, "maxQueueWait": "PT2S"
    }  # fmt: skip


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
    check_scaling(deployment)
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

    check_ml_client(monkeypatch, state, SUBSCRIPTION)
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


def test_status_shows_what_azure_holds_never_the_keys(online_config, azure, monkeypatch, capsys, caplog):
    deployment = Deployment.from_file(online_config)
    deployment.deploy()
    real_get = OnlineEndpointOperations.get

    def provisioned(self, name, *, local=False):
        endpoint = real_get(self, name, local=local)
        endpoint._provisioning_state, endpoint.traffic = "Succeeded", {"sei": 100}  # as Azure answers
        return endpoint

    monkeypatch.setattr(OnlineEndpointOperations, "get", provisioned)
    result = CliRunner().invoke(cli, ["status", str(online_config), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "name": "sei-diabetes", "target": "azureml-online", "state": "running",
        "scoring_uri": "https://sei-diabetes.westeurope.inference.ml.azure.com/score",
        "endpoint": "sei-diabetes", "provisioning_state": "Succeeded", "traffic": "sei 100%",
        "logs": "az ml online-deployment get-logs --endpoint-name sei-diabetes --name sei",
    }  # fmt: skip
    assert "online_endpoints.get_keys" not in azure.calls[5:]  # status never asks for the keys
    out = capsys.readouterr()
    assert PRIMARY_KEY not in result.output + out.out + out.err + caplog.text

    def missing(self, name, *, local=False):
        raise ResourceNotFoundError(f"endpoint {name} not found")

    monkeypatch.setattr(OnlineEndpointOperations, "get", missing)
    assert deployment.status().state == "not deployed"


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
    assert raw["liveness_probe"] == LIVENESS and raw["readiness_probe"] == READINESS
    assert raw["scale_settings"] == {"type": "default"}
    deployment = load_online_deployment(out / "deployment.yml")  # the SDK's own schema accepts it
    check_scaling(deployment)
    base = Path(deployment.base_path)  # the SDK resolves paths from the YAML file's folder
    assert (base / deployment.code_configuration.code).resolve() == (out / "build").resolve()
    [wheel] = (out / "environment" / "wheels").glob("*.whl")
    assert f"/tmp/sei/wheels/{wheel.name}" in (out / "environment" / "requirements.txt").read_text()
    assert (out / "build" / "score.py").is_file()
    assert json.loads((out / "workspace.json").read_text())["name"] == "sei-ws"


REDIS_URL = "rediss://:redis-access-key-value@sei.redis.cache.windows.net:6380/0"
REDIS_URL_WITHOUT_CREDENTIALS = "rediss://sei.redis.cache.windows.net:6380/0"


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
    monkeypatch.setenv("SEI_TEST_REDIS_URL", REDIS_URL_WITHOUT_CREDENTIALS)
    deployment.deploy()  # check_deployment: environment_variables == {"SEI_TEST_REDIS_URL": that URL}
    assert "online_deployments.begin_create_or_update" in azure.calls


def test_a_redis_url_with_a_password_never_lands_in_the_deployment(online_config, azure, monkeypatch):
    """Deployment environment variables are stored in the workspace in clear: a password in the Redis URL
    is refused, and a Key Vault (secret injection) reference is what the deployment gets instead."""
    monkeypatch.setenv("SEI_TEST_REDIS_URL", REDIS_URL)
    config = with_redis_state(online_config)
    with pytest.raises(DeployError, match="carries credentials.*redis_url_secret") as info:
        Deployment.from_file(config).deploy()
    assert "redis-access-key-value" not in str(info.value)
    assert "online_deployments.begin_create_or_update" not in azure.calls
    data = yaml.safe_load(config.read_text())
    reference = "${{keyvault:https://sei-vault.vault.azure.net/secrets/sei-redis-url}}"
    data["deploy"]["options"]["redis_url_secret"] = reference
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SEI_TEST_REDIS_URL", reference)  # check_deployment expects this variable's value
    Deployment.from_file(config).deploy()  # check_deployment: environment_variables == {"SEI_TEST_REDIS_URL": reference}
    assert "online_deployments.begin_create_or_update" in azure.calls
    with pytest.raises(ConfigError, match="redis_url_secret"):
        data["deploy"]["options"]["redis_url_secret"] = "rediss://:pw@host:6380"
        config.write_text(yaml.safe_dump(data))
        Deployment.from_file(config).validate()


def test_dry_run_names_the_redis_variable_never_its_value(online_config, loopback_only, tmp_path, monkeypatch):
    monkeypatch.setenv("SEI_TEST_REDIS_URL", REDIS_URL)
    out = tmp_path / "dry"
    result = CliRunner().invoke(cli, ["deploy", str(with_redis_state(online_config)), "--dry-run", str(out)])
    assert result.exit_code == 0, result.output
    deployment = load_online_deployment(out / "deployment.yml")
    assert deployment.environment_variables == {"SEI_TEST_REDIS_URL": "<the value of $SEI_TEST_REDIS_URL when deploying>"}
    texts = [f.read_bytes() for f in out.rglob("*") if f.is_file()]
    assert texts and not any(b"redis-access-key-value" in t for t in texts)


def test_invalid_scaling_options_are_config_errors_with_field_paths(online_config):
    data = yaml.safe_load(online_config.read_text())
    data["deploy"]["options"].update(
        instance_count=0,
        request_timeout_ms=200_000,
        max_queue_wait_ms=-1,
        liveness_probe={**LIVENESS, "success_threshold": 2},
        readiness_probe={"period": 0, "timeout": 0, "path": "/ready"},
        scale_settings={"type": "target_utilization"},
    )
    online_config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        Deployment.from_file(online_config).validate()
    problems = {p.split(":")[0]: p for p in caught.value.problems}
    prefix = "deploy.options."
    assert set(problems) == {
        prefix + field
        for field in (
            "instance_count", "request_timeout_ms", "max_queue_wait_ms", "liveness_probe.success_threshold",
            "readiness_probe.period", "readiness_probe.timeout", "readiness_probe.path", "scale_settings.type",
        )
    }  # fmt: skip
    assert "Input should be 1" in problems[prefix + "liveness_probe.success_threshold"]
    assert "less than or equal to 180000" in problems[prefix + "request_timeout_ms"]
    assert "'default'" in problems[prefix + "scale_settings.type"]


@pytest.fixture
def served_config(online_config, azurite):
    """online_config with its keys in Azurite, mode sas: the service holds no storage credentials."""
    data = yaml.safe_load(online_config.read_text())
    data["key_transport"] = {
        "name": "azure-blob",
        "options": {
            "container": "online-keys", "account_url": azurite.account_url, "mode": "sas", "connection_string_env": ENV,
        },
    }  # fmt: skip
    online_config.write_text(yaml.safe_dump(data))
    return online_config


def test_dry_run_installs_into_a_fresh_environment_and_serves(
    served_config, azurite, loopback_only, tmp_path, monkeypatch, model_files
):
    """What the endpoint would run: the dry run's build context installed into a fresh environment (its pip
    layer: Docker and the base image's own packages are not here) and its build folder served by that
    environment's azmlinfsrv. A requirement missing from the list fails here, at pip check, import or request."""
    out = tmp_path / "dry"
    result = CliRunner().invoke(cli, ["deploy", str(served_config), "--dry-run", str(out)])
    assert result.exit_code == 0, result.output
    deployment = load_online_deployment(out / "deployment.yml")  # the folders as the SDK reads them
    base = Path(deployment.base_path)
    context, build = base / deployment.environment.build.path, base / deployment.code_configuration.code
    assert deployment.environment.build.dockerfile_path in (None, "Dockerfile")  # Azure's default: Dockerfile
    assert (base / deployment.model.path).resolve() == (build / "models").resolve()

    # The image build, read from the Dockerfile: which context files land where, and its one pip install.
    dockerfile = (context / "Dockerfile").read_text().splitlines()
    [image] = [line.split()[1] for line in dockerfile if line.startswith("FROM ")]
    copies = {dest: source for _, source, dest in (line.split() for line in dockerfile if line.startswith("COPY "))}
    assert copies == {"/tmp/sei/requirements.txt": "requirements.txt", "/tmp/sei/wheels/": "wheels/"}
    assert [line for line in dockerfile if line.startswith("RUN ")] == [
        "RUN pip install --no-cache-dir -r /tmp/sei/requirements.txt"
    ]
    assert image == BASE_IMAGE and f"py{sys.version_info.major}{sys.version_info.minor}" in image  # its Python is ours

    # Docker is not available here, so the image's paths map back to the build context they are copied
    # from: /tmp/sei/wheels/NAME is environment/wheels/NAME. Every other line is installed as written.
    requirements = (context / copies["/tmp/sei/requirements.txt"]).read_text().split()
    wheels = context / copies["/tmp/sei/wheels/"]
    prefix = "/tmp/sei/wheels/"
    local = [str(wheels / r.removeprefix(prefix)) if r.startswith(prefix) else r for r in requirements]
    assert {Path(r) for r in local if r.startswith("/")} == set(wheels.glob("*.whl")) and len(local) > 2
    assert requirements[-1] == "azureml-inference-server-http>=1.4"  # azmlinfsrv comes from the list itself
    mapped = tmp_path / "requirements.txt"
    mapped.write_text("\n".join(local) + "\n")
    python = fresh_venv(tmp_path / "online-env")
    pip_install(python, ["-r", str(mapped)], cwd=context)  # then pip check; sei_framework from the venv

    monkeypatch.setenv(ENV, azurite.connection_string)  # the client's own storage credentials
    _, model, X = model_files["diabetes"]
    with served_by(python, build, tmp_path / "state") as endpoint:
        client = Deployment.from_file(served_config).client(endpoint, keyring=Keyring(tmp_path / "keys"))
        prediction = client.predict("diabetes", X[:3])
    np.testing.assert_allclose(prediction.predictions, model.predict(X[:3]), atol=1e-3)


def test_mnist_online_is_the_tutorials_service_on_a_managed_endpoint():
    """configs/mnist-online.yaml leads; it is configs/mnist-aci.yaml but for the target."""
    configs = Path(__file__).resolve().parent.parent / "configs"
    online, aci = (load_config(configs / f"mnist-{name}.yaml") for name in ("online", "aci"))
    for part in ("models", "key_transport", "limits"):
        assert getattr(online, part) == getattr(aci, part), part
    assert "configs/mnist-online.yaml" in (configs / "mnist-aci.yaml").read_text().split("\nname:")[0]
    target = resolve_config(online, get_plugin_manager(), check_files=False).target_instance()
    assert target.name == "azureml-online" and target.endpoint_name(online.name) == "sei-mnist-online"
    scaling = target.scaling()  # the SDK's entities from the config's options
    assert scaling["request_settings"].request_timeout_ms == 90_000 and scaling["instance_count"] == 1
