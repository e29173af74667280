"""Deploy target `aci`: real azureml-core objects; only the calls that cross the network are replaced.

Each replacement checks what it receives. The dry run's build folder is then served in
azmlinfsrv, which proves that the package ACI would run answers encrypted predictions.
"""

from __future__ import annotations

import json
import logging
import sys
import types
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from azurite import azurite_fixture, loopback_only_fixture  # noqa: F401  (fixtures azurite, loopback_only)
from click.testing import CliRunner
from conftest import with_bounds
from fresh_env import fresh_venv, pip_install, served_by

from sei_framework import DeployError, Deployment
from sei_framework.cli import cli
from sei_framework.keys import Keyring

pytest.importorskip("azureml.core", reason="needs the [aci] extra (make test installs it)")
from azureml.core import Environment, Model, Workspace  # noqa: E402
from azureml.core.authentication import ServicePrincipalAuthentication  # noqa: E402
from azureml.core.model import InferenceConfig  # noqa: E402
from azureml.core.webservice.aci import AciServiceDeploymentConfiguration  # noqa: E402
from azureml.exceptions import WebserviceException  # noqa: E402
from sei_deploy_aci.target import SDK_V1_WARNING  # noqa: E402

from sei_framework import ship_local_distributions  # noqa: E402

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
SP_SECRET = "service-principal-secret-value"
PRIMARY_KEY = "aci-primary-key-value"
ENV = "SEI_TEST_BLOB_CONNECTION"
BLOB_REQUIREMENTS = ["azure-storage-blob>=12.19", "azure-identity>=1.15"]


@pytest.fixture
def aci_config(tmp_path, model_files, azurite):
    data = {
        "name": "sei-digits",
        "models": [with_bounds({"name": "digits", "adapter": "sklearn-eiserver", "path": str(model_files["digits"][0])})],
        "key_transport": {
            "name": "azure-blob",
            "options": {
                "container": "aci-keys",
                "account_url": azurite.account_url,
                "mode": "sas",
                "connection_string_env": ENV,
            },
        },  # fmt: skip
        "deploy": {
            "target": "aci",
            "options": {
                "subscription_id": SUBSCRIPTION,
                "resource_group": "sei-rg",
                "workspace_name": "sei-ws",
                "auth": "service-principal",
                "cpu_cores": 1,
                "memory_gb": 1,
                "tags": {"data": "digits"},
            },  # fmt: skip
        },
    }
    path = tmp_path / "sei-digits.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def wheel_members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def assert_framework_wheel(wheel: Path) -> None:
    """The wheel that replaces `sei-framework==...`: the core, score.py's template and every built-in plugin."""
    assert wheel.name.startswith("sei_framework-0.1.0-0") and wheel.name.endswith("-py3-none-any.whl")
    members = wheel_members(wheel)
    assert {"sei_framework/serving.py", "score_template/score.py", "sei_transport_azure_blob/transport.py"} <= set(
        members
    )
    entry_points = next(v for k, v in members.items() if k.endswith(".dist-info/entry_points.txt")).decode()
    for plugin in ("sei_adapter_sklearn", "sei_transport_azure_blob", "sei_deploy_aci", "sei_deploy_azureml_online"):
        assert f"{plugin} = {plugin}" in entry_points


def service_requirements(build: Path) -> list[str]:
    """The build's requirements but sei-framework (which travels as a wheel); they include the transport's."""
    requirements = json.loads((build / "sei_build.json").read_text())["requirements"]
    assert requirements[0] == "sei-framework==0.1.0" and set(BLOB_REQUIREMENTS) <= set(requirements)
    return requirements[1:]


class FakeService:
    """What Model.deploy returns: its methods are network calls in azureml-core."""

    def __init__(self, state: str = "Healthy") -> None:
        self.state = state
        self.scoring_uri = "http://sei-digits.westeurope.azurecontainer.io/score"
        self.waited: list[tuple] = []

    def wait_for_deployment(self, show_output=False, timeout_sec=None):
        self.waited.append((show_output, timeout_sec))

    def get_keys(self):
        return PRIMARY_KEY, "aci-secondary-key-value"

    def get_logs(self):
        return "starting\nscore.py init() failed: something\n"


@pytest.fixture
def azure(monkeypatch, loopback_only):
    """azureml-core's network calls replaced by fakes that check their arguments and record the calls."""
    for name, value in (
        ("AZURE_TENANT_ID", "tenant"),
        ("AZURE_CLIENT_ID", "client"),
        ("AZURE_CLIENT_SECRET", SP_SECRET),
    ):
        monkeypatch.setenv(name, value)
    state = SimpleNamespace(calls=[], workspace=None, wheels=[], model=None, service=FakeService())

    def workspace_get(name, auth=None, subscription_id=None, resource_group=None, **kwargs):
        assert (name, subscription_id, resource_group) == ("sei-ws", SUBSCRIPTION, "sei-rg")
        assert isinstance(auth, ServicePrincipalAuthentication)
        state.workspace = Workspace(subscription_id, resource_group, name, auth=auth, _disable_service_check=True)
        state.calls.append("Workspace.get")
        return state.workspace

    def from_config(*args, **kwargs):
        raise AssertionError("the config names the workspace: Workspace.from_config must not be used")

    def add_private_pip_wheel(workspace, file_path, exist_ok=False):
        assert workspace is state.workspace and exist_ok is True
        assert_framework_wheel(Path(file_path))
        state.wheels.append(Path(file_path).name)
        state.calls.append("Environment.add_private_pip_wheel")
        return (
            f"https://seiws.blob.core.windows.net/azureml/Environment/azureml-private-packages/{Path(file_path).name}"
        )

    def register(workspace, model_path, model_name, tags=None, properties=None, description=None, **kwargs):
        assert workspace is state.workspace and model_name == "sei-digits"
        folder = Path(model_path)
        assert folder.name == "models" and (folder.parent / "sei_build.json").is_file()
        assert [p.name for p in folder.iterdir()] == ["digits"] and any((folder / "digits").iterdir())
        assert tags == {"sei_service": "sei-digits", "sei_version": "0.1.0", "data": "digits"}
        assert description == "SEI encrypted inference (digits)"
        state.model = SimpleNamespace(name=model_name, id=f"{model_name}:1", version=1)
        state.calls.append("Model.register")
        return state.model

    def deploy(workspace, name, models, inference_config=None, deployment_config=None, deployment_target=None,
               overwrite=False, show_output=False):  # fmt: skip
        assert workspace is state.workspace and name == "sei-digits" and models == [state.model] and overwrite
        assert isinstance(inference_config, InferenceConfig) and inference_config.entry_script == "score.py"
        build = Path(inference_config.source_directory)
        assert (build / "score.py").is_file() and json.loads((build / "sei_build.json").read_text())["name"] == name
        env = inference_config.environment
        assert isinstance(env, Environment) and env.name == "sei-sei-digits"
        assert set(env.environment_variables) <= {"EXAMPLE_ENV_VAR"}  # the SDK's placeholder; nothing of SEI's
        deps = env.python.conda_dependencies
        url = f"https://seiws.blob.core.windows.net/azureml/Environment/azureml-private-packages/{state.wheels[0]}"
        assert list(deps.pip_packages) == [url, *service_requirements(build), "azureml-defaults>=1.57"]
        assert deps.get_python_version() == f"{sys.version_info.major}.{sys.version_info.minor}"
        assert isinstance(deployment_config, AciServiceDeploymentConfiguration)
        assert (deployment_config.cpu_cores, deployment_config.memory_gb, deployment_config.auth_enabled) == (
            1,
            1,
            True,
        )
        assert deployment_config.tags["data"] == "digits" and deployment_target is None
        state.calls.append("Model.deploy")
        return state.service

    monkeypatch.setattr(Workspace, "get", staticmethod(workspace_get))
    monkeypatch.setattr(Workspace, "from_config", staticmethod(from_config))
    monkeypatch.setattr(Environment, "add_private_pip_wheel", staticmethod(add_private_pip_wheel))
    monkeypatch.setattr(Model, "register", staticmethod(register))
    monkeypatch.setattr(Model, "deploy", staticmethod(deploy))
    return state


def test_deploy_submits_the_build_and_returns_uri_and_key(aci_config, azure, capsys, caplog):
    endpoint = Deployment.from_file(aci_config).deploy()
    assert azure.calls == ["Workspace.get", "Environment.add_private_pip_wheel", "Model.register", "Model.deploy"]
    assert azure.service.waited == [(False, 1800)]
    assert endpoint.scoring_uri == "http://sei-digits.westeurope.azurecontainer.io/score"
    assert endpoint.headers == {"Authorization": f"Bearer {PRIMARY_KEY}"}
    assert PRIMARY_KEY not in repr(endpoint)
    out = capsys.readouterr()
    for secret in (SP_SECRET, PRIMARY_KEY):
        assert secret not in out.out + out.err + caplog.text


def test_deploy_warns_once_that_sdk_v1_is_out_of_support(aci_config, azure, caplog):
    """A logged warning: `sei` prints warnings on stderr (logging at WARNING), so does Python when unconfigured."""
    with caplog.at_level(logging.WARNING):
        Deployment.from_file(aci_config).deploy()
    [warning] = [r for r in caplog.records if "SDK v1" in r.getMessage()]
    assert (warning.levelno, warning.name, warning.getMessage()) == (logging.WARNING, "sei_deploy_aci", SDK_V1_WARNING)
    assert "out of support since 2026-06-30" in SDK_V1_WARNING
    assert "target azureml-online (configs/mnist-online.yaml)" in SDK_V1_WARNING


def test_sei_deploy_prints_the_scoring_uri_and_never_the_key(aci_config, azure):
    result = CliRunner().invoke(cli, ["deploy", str(aci_config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "http://sei-digits.westeurope.azurecontainer.io/score"
    assert PRIMARY_KEY not in result.output and SP_SECRET not in result.output


def test_unhealthy_service_is_a_deploy_error_with_its_log(aci_config, azure):
    azure.service = FakeService(state="Unhealthy")
    with pytest.raises(
        DeployError, match="ACI service 'sei-digits' is Unhealthy, not Healthy; its log ends:\nstarting"
    ):
        Deployment.from_file(aci_config).deploy()


def test_delete_removes_the_web_service(aci_config, azure, monkeypatch):
    import azureml.core.webservice as webservice

    deleted = []

    class Webservice:  # Webservice(ws, name) is a GET in azureml-core; .delete() a DELETE
        def __init__(self, workspace, name):
            assert workspace is azure.workspace
            if name != "sei-digits":
                raise WebserviceException(
                    f"WebserviceNotFound: Webservice with name {name} not found in provided workspace"
                )
            self.name = name

        def delete(self):
            deleted.append(self.name)

    monkeypatch.setattr(webservice, "Webservice", Webservice)
    deployment = Deployment.from_file(aci_config)
    assert deployment.delete() is True and deleted == ["sei-digits"]
    other = deployment.with_target("aci", **deployment.config.deploy.options, service_name="sei-other")
    assert other.delete() is False and deleted == ["sei-digits"]


def test_status_shows_the_service_state_and_uri_never_the_key(aci_config, azure, monkeypatch, capsys, caplog):
    import azureml.core.webservice as webservice

    def lookup(workspace, name):  # Webservice(ws, name): a GET in azureml-core
        assert workspace is azure.workspace
        if name != "sei-digits":
            raise WebserviceException(f"WebserviceNotFound: Webservice with name {name} not found in provided workspace")
        return azure.service

    monkeypatch.setattr(webservice, "Webservice", lookup)
    result = CliRunner().invoke(cli, ["status", str(aci_config), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "name": "sei-digits", "target": "aci", "state": "running",
        "scoring_uri": "http://sei-digits.westeurope.azurecontainer.io/score", "service": "sei-digits",
        "aci_state": "Healthy", "logs": "Webservice(workspace, 'sei-digits').get_logs() (azureml-core)",
    }  # fmt: skip
    azure.service.state = "Unhealthy"
    assert Deployment.from_file(aci_config).status().state == "unhealthy"
    out = capsys.readouterr()
    for secret in (SP_SECRET, PRIMARY_KEY):
        assert secret not in result.output + out.out + out.err + caplog.text
    deployment = Deployment.from_file(aci_config)
    other = deployment.with_target("aci", **deployment.config.deploy.options, service_name="sei-other")
    assert other.status().state == "not deployed"


def test_names_aci_refuses_are_reported():
    from sei_deploy_aci import AciOptions, AciTarget

    with pytest.raises(DeployError, match="'sei_digits' cannot name an ACI service"):
        AciTarget(AciOptions()).service_name("sei_digits")


def test_local_distributions_travel_as_wheels(tmp_path):
    shipment = ship_local_distributions(["sei-transport-sqlite==0.1.0", "numpy>=1.24"], tmp_path)
    assert shipment.index_requirements == ["numpy>=1.24"]
    [wheel] = shipment.wheels
    assert wheel.name.startswith(
        "sei_transport_sqlite-0.1.0-0"
    ) and "sei_transport_sqlite/__init__.py" in wheel_members(wheel)


def test_dry_run_writes_what_aci_would_get_and_it_serves(
    aci_config, azurite, loopback_only, tmp_path, monkeypatch, model_files, caplog
):
    def forbidden(*args, **kwargs):
        raise AssertionError("a dry run must not call Azure")

    for owner, name in ((Workspace, "get"), (Workspace, "from_config"), (Environment, "add_private_pip_wheel"),
                        (Model, "register"), (Model, "deploy")):  # fmt: skip
        monkeypatch.setattr(owner, name, staticmethod(forbidden))
    out = tmp_path / "dry"
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(cli, ["deploy", str(aci_config), "--dry-run", str(out)])
    assert result.exit_code == 0, result.output
    assert [r.getMessage() for r in caplog.records].count(SDK_V1_WARNING) == 1  # once per dry run too
    [wheel] = sorted((out / "wheels").glob("*.whl"))
    assert_framework_wheel(wheel)
    conda = yaml.safe_load((out / "environment" / "conda_dependencies.yml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    expected = [f"wheels/{wheel.name}", *service_requirements(out / "build"), "azureml-defaults>=1.57"]
    assert [p for p in pip if not p.startswith("--")] == expected
    assert f"python={sys.version_info.major}.{sys.version_info.minor}" in conda["dependencies"]
    assert json.loads((out / "inference_config.json").read_text()) == {
        "entry_script": "score.py", "source_directory": "build", "environment": "environment"
    }  # fmt: skip
    deployment_config = json.loads((out / "deployment_config.json").read_text())
    assert deployment_config["cpu_cores"] == 1 and deployment_config["memory_gb"] == 1
    assert deployment_config["auth_enabled"] is True and deployment_config["tags"]["data"] == "digits"
    assert json.loads((out / "model.json").read_text())["model_path"] == "build/models"
    assert json.loads((out / "service.json").read_text())["private_wheels"] == [f"wheels/{wheel.name}"]
    written = {line.removeprefix("wrote ") for line in result.output.splitlines()}
    assert {str(out / "build" / "score.py"), str(wheel), str(out / "deployment_config.json")} <= written

    # What ACI would run: a fresh environment made from exactly the dry run's pip list (the wheel
    # included; nothing of the development environment), serving the build folder in its azmlinfsrv.
    # A requirement missing from the list fails here, at import or at the first request.
    python = fresh_venv(tmp_path / "aci-env")
    packages = [p for p in pip if not p.startswith("--")]  # azureml-core's index options: pip's own config here
    pip_install(python, packages, cwd=out)  # then pip check; sei_framework from the venv
    monkeypatch.setenv(ENV, azurite.connection_string)  # the client's own storage credentials
    _, model, X = model_files["digits"]
    with served_by(python, out / "build", tmp_path / "state") as endpoint:
        client = Deployment.from_file(aci_config).client(endpoint, keyring=Keyring(tmp_path / "keys"))  # own transport
        result = client.predict("digits", X[:3])
    np.testing.assert_allclose(result.scores, model.decision_function(X[:3]), atol=1e-3)
    assert (result.predictions == model.predict(X[:3])).all()


def test_tls_options_reach_the_sdk_configuration_and_are_checked(tmp_path):
    from pydantic import ValidationError
    from sei_deploy_aci import AciOptions, AciTarget

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nprivate-key-body\n")
    options = AciOptions(
        ssl_enabled=True, ssl_cert_pem_file=cert, ssl_key_pem_file=key, ssl_cname="scoring.example.com",
        dns_name_label="sei-digits",
    )  # fmt: skip
    build = types.SimpleNamespace(name="sei-digits", manifest={"sei_version": "0.1.0", "models": [{"name": "digits"}]})
    config = AciTarget(options).deployment_config(build)
    assert isinstance(config, AciServiceDeploymentConfiguration)
    assert (config.ssl_enabled, config.ssl_cname, config.dns_name_label) == (True, "scoring.example.com", "sei-digits")
    assert (config.ssl_cert_pem_file, config.ssl_key_pem_file) == (str(cert), str(key))
    with pytest.raises(ValidationError, match="ssl_enabled needs ssl_key_pem_file, ssl_cname"):
        AciOptions(ssl_enabled=True, ssl_cert_pem_file=cert)
    with pytest.raises(ValidationError, match="take effect only with ssl_enabled"):
        AciOptions(ssl_cname="scoring.example.com")
    with pytest.raises(ValidationError, match="ssl_cname"):
        AciOptions(ssl_enabled=True, ssl_cert_pem_file=cert, ssl_key_pem_file=key, ssl_cname="not a host\n")
    assert AciTarget(AciOptions()).deployment_config(build).ssl_enabled is None  # plain http unless asked


def test_redis_state_url_is_an_environment_variable_of_the_service_and_never_of_a_dry_run(monkeypatch):
    from sei_deploy_aci import AciOptions, AciTarget

    build = types.SimpleNamespace(name="sei-digits", manifest={"state": {"backend": "redis", "url_env": "SEI_TEST_REDIS_URL"}})
    target = AciTarget(AciOptions())
    monkeypatch.setenv("SEI_TEST_REDIS_URL", "rediss://:redis-access-key-value@host:6380/0")
    with pytest.raises(DeployError, match="carries credentials") as info:  # ACI keeps them in clear
        target.environment(build, ["sei-framework"])
    assert "redis-access-key-value" not in str(info.value)
    dry = target.environment(build, ["sei-framework"], dry_run=True)
    assert "redis-access-key-value" not in str(dry.environment_variables)
    monkeypatch.setenv("SEI_TEST_REDIS_URL", "rediss://host:6380/0")
    env = target.environment(build, ["sei-framework"])
    assert env.environment_variables == {"SEI_TEST_REDIS_URL": "rediss://host:6380/0"}
    monkeypatch.delenv("SEI_TEST_REDIS_URL")
    with pytest.raises(DeployError, match="SEI_TEST_REDIS_URL"):
        target.environment(build, ["sei-framework"])
    memory = types.SimpleNamespace(name="sei-digits", manifest={"state": {"backend": "memory"}})
    assert target.environment(memory, ["sei-framework"]).environment_variables == {}
