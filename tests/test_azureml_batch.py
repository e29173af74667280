"""Deploy target `azureml-batch`: real azure-ai-ml entities; only the calls that cross the network are replaced.

The build's batch_score.py is then run as Azure ML's batch runner runs it, for real: imported from the
build folder, its model files under AZUREML_MODEL_DIR, init() once, run() on mini-batches of every file
of an encrypted job folder, results into AZUREML_BI_OUTPUT_PATH, and the results decrypted into
predictions that equal the plaintext model's.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import joblib
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from azurite import loopback_only_fixture  # noqa: F401  (fixture loopback_only)
from click.testing import CliRunner
from conftest import with_bounds
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sei_framework import Client, ConfigError, DeployError, Deployment
from sei_framework.batch import decrypt_job, describe_build, encrypt_dataset
from sei_framework.cli import cli

pytest.importorskip("azure.ai.ml", reason="needs the [azureml-online] extra (make test installs it)")
from azure.ai.ml import load_batch_deployment, load_batch_endpoint  # noqa: E402
from azure.ai.ml._utils._endpoint_utils import validate_scoring_script  # noqa: E402  (the SDK's own pre-upload check)
from azure.ai.ml.entities import BatchEndpoint, ModelBatchDeployment  # noqa: E402
from azure.ai.ml.operations import BatchDeploymentOperations, BatchEndpointOperations  # noqa: E402
from azure.core.exceptions import ResourceNotFoundError  # noqa: E402
from azureml_fakes import Poller, check_ml_client  # noqa: E402  (after the SDK check)

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000cc"
BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-py311-inference:latest"
BATCH_RUNTIME = ["fsspec>=2024.6", "azureml-core>=1.57", "azureml-dataset-runtime[fuse]>=1.57"]
INVOCATION_URI = "https://sei-diabetes.westeurope.inference.ml.azure.com/jobs"
RETRIES = {"max_retries": 5, "timeout": 600}
REDIS_URL = "rediss://:redis-batch-access-key@sei.redis.cache.windows.net:6380/0"
OPTIONS = {
    "subscription_id": SUBSCRIPTION,
    "resource_group": "sei-rg",
    "workspace_name": "sei-ws",
    "compute": "cpu-cluster",
    "mini_batch_size": 4,
    "instance_count": 3,
    "max_concurrency_per_instance": 2,
    "retry_settings": RETRIES,
    "error_threshold": 2,
    "tags": {"data": "diabetes"},
}


@pytest.fixture
def batch_config(tmp_path, model_files):
    data = {
        "name": "sei-diabetes",
        "models": [with_bounds({"name": "diabetes", "adapter": "sklearn-eiserver", "path": str(model_files["diabetes"][0])})],
        "deploy": {"target": "azureml-batch", "options": OPTIONS},
    }
    path = tmp_path / "sei-diabetes.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def with_redis_state(config_path: Path) -> Path:
    data = yaml.safe_load(config_path.read_text())
    data["state"] = {"backend": "redis", "url_env": "SEI_TEST_REDIS_URL"}
    config_path.write_text(yaml.safe_dump(data))
    return config_path


def check_settings(deployment: ModelBatchDeployment) -> None:
    """Mini-batches, instances, concurrency, retries, errors and outputs, as the config sets them."""
    settings = deployment.settings
    assert (settings.mini_batch_size, settings.max_concurrency_per_instance, settings.error_threshold) == (4, 2, 2)
    assert deployment.instance_count == 3 and deployment.resources.instance_count == 3
    retry = settings.retry_settings
    assert {"max_retries": retry.max_retries, "timeout": retry.timeout} == RETRIES
    assert settings.output_action == "summary_only"
    assert deployment.compute == "cpu-cluster"


def check_deployment(deployment: ModelBatchDeployment, calls: list) -> None:
    """The deployment the target submits, checked while its temporary build context still exists."""
    assert isinstance(deployment, ModelBatchDeployment) and deployment.type == "model"
    assert deployment.name == "sei" and deployment.endpoint_name == "sei-diabetes"
    code = Path(deployment.code_configuration.code)
    assert deployment.code_configuration.scoring_script == "batch_score.py" and (code / "batch_score.py").is_file()
    validate_scoring_script(deployment)  # what begin_create_or_update checks on this machine before uploading
    manifest = json.loads((code / "sei_build.json").read_text())
    assert manifest["name"] == "sei-diabetes"
    assert Path(deployment.model.path) == code / "models" and deployment.model.type == "custom_model"
    context = Path(deployment.environment.build.path)
    dockerfile = (context / "Dockerfile").read_text()
    assert f"FROM {BASE_IMAGE}" in dockerfile and "COPY wheels/ /tmp/sei/wheels/" in dockerfile
    [wheel] = list((context / "wheels").glob("sei_framework-0.1.0-0*-py3-none-any.whl"))
    requirements = (context / "requirements.txt").read_text().split()
    assert requirements == [f"/tmp/sei/wheels/{wheel.name}", *manifest["requirements"][1:], *BATCH_RUNTIME]
    check_settings(deployment)
    assert not deployment.settings.environment_variables  # batch scoring keeps no state: no Redis URL, ever

    # The body the SDK sends to Azure once upload_dependencies has replaced the local assets by their ids.
    uploaded = copy.deepcopy(deployment)
    uploaded.model, uploaded.environment = "azureml:sei-diabetes:1", "azureml:sei-batch-sei-diabetes:1"
    uploaded.code_configuration.code = "azureml:code:1"
    rest = uploaded._to_rest_object("westeurope").as_dict()["properties"]
    assert rest["codeConfiguration"] == {"codeId": "azureml:code:1", "scoringScript": "batch_score.py"}
    assert (rest["miniBatchSize"], rest["maxConcurrencyPerInstance"], rest["errorThreshold"]) == (4, 2, 2)
    assert rest["resources"]["instanceCount"] == 3 and rest["compute"] == "cpu-cluster"
    assert rest["retrySettings"] == {"maxRetries": 5, "timeout": "PT10M"} and rest["outputAction"] == "SummaryOnly"
    calls.append("batch_deployments.begin_create_or_update")


@pytest.fixture
def azure(monkeypatch, loopback_only):
    """azure-ai-ml's network calls replaced by argument-checking fakes; MLClient and entities are real."""
    state = SimpleNamespace(calls=[], endpoints={}, clients=[])

    def endpoint_create(self, endpoint):
        assert isinstance(self, BatchEndpointOperations)
        assert isinstance(endpoint, BatchEndpoint) and endpoint.auth_mode == "aad_token"  # Entra ID, the only auth
        assert endpoint.name == "sei-diabetes" and endpoint.tags["data"] == "diabetes"
        state.endpoints[endpoint.name] = dict(endpoint.defaults or {})
        state.calls.append(f"batch_endpoints.begin_create_or_update defaults={endpoint.defaults or {}}")
        return Poller(endpoint)

    def deployment_create(self, deployment, *, skip_script_validation=False, **kwargs):
        assert isinstance(self, BatchDeploymentOperations) and not skip_script_validation
        assert deployment.endpoint_name in state.endpoints  # the SDK looks the endpoint up first
        check_deployment(deployment, state.calls)
        return Poller(deployment)

    def endpoint_get(self, name):
        assert name in state.endpoints
        state.calls.append("batch_endpoints.get")
        return BatchEndpoint(name=name, defaults=state.endpoints[name], scoring_uri=INVOCATION_URI)

    def begin_delete(self, name):
        state.calls.append(f"batch_endpoints.begin_delete {name}")
        if name not in state.endpoints:
            raise ResourceNotFoundError(f"batch endpoint {name} not found")
        del state.endpoints[name]
        return Poller()

    check_ml_client(monkeypatch, state, SUBSCRIPTION)
    monkeypatch.setattr(BatchEndpointOperations, "begin_create_or_update", endpoint_create)
    monkeypatch.setattr(BatchDeploymentOperations, "begin_create_or_update", deployment_create)
    monkeypatch.setattr(BatchEndpointOperations, "get", endpoint_get)
    monkeypatch.setattr(BatchEndpointOperations, "begin_delete", begin_delete)
    return state


def test_dry_run_writes_yaml_the_sdk_loaders_accept(batch_config, loopback_only, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a dry run must not call Azure")

    for name in ("begin_create_or_update", "get", "begin_delete", "invoke"):
        monkeypatch.setattr(BatchEndpointOperations, name, forbidden)
    monkeypatch.setattr(BatchDeploymentOperations, "begin_create_or_update", forbidden)
    monkeypatch.setenv("SEI_TEST_REDIS_URL", REDIS_URL)
    out = tmp_path / "dry"
    result = CliRunner().invoke(cli, ["deploy", str(with_redis_state(batch_config)), "--dry-run", str(out)])
    assert result.exit_code == 0, result.output

    endpoint = load_batch_endpoint(out / "endpoint.yml")
    assert (endpoint.name, endpoint.auth_mode) == ("sei-diabetes", "aad_token")
    rest = endpoint._to_rest_batch_endpoint("westeurope").as_dict()["properties"]  # the body the SDK would send
    assert rest["defaults"] == {"deploymentName": "sei"}  # the deployment is the endpoint's default
    raw = yaml.safe_load((out / "deployment.yml").read_text())
    assert raw["code_configuration"] == {"code": "build", "scoring_script": "batch_score.py"}
    assert raw["model"]["path"] == "build/models" and raw["environment"]["build"]["path"] == "environment"
    assert (raw["type"], raw["compute"], raw["resources"]["instance_count"]) == ("model", "azureml:cpu-cluster", 3)
    assert (raw["mini_batch_size"], raw["max_concurrency_per_instance"], raw["error_threshold"]) == (4, 2, 2)
    assert raw["retry_settings"] == RETRIES and raw["output_action"] == "summary_only"

    deployment = load_batch_deployment(out / "deployment.yml")  # the SDK's own schema accepts it
    assert isinstance(deployment, ModelBatchDeployment)
    check_settings(deployment)
    assert deployment.code_configuration.scoring_script == "batch_score.py"
    base = Path(deployment.base_path)  # the SDK resolves paths from the YAML file's folder
    build = (base / deployment.code_configuration.code).resolve()
    assert build == (out / "build").resolve() and (build / "batch_score.py").is_file()
    assert (base / deployment.model.path).resolve() == (build / "models").resolve()
    context = base / deployment.environment.build.path
    [wheel] = (context / "wheels").glob("*.whl")
    requirements = (context / "requirements.txt").read_text().split()
    assert requirements[0] == f"/tmp/sei/wheels/{wheel.name}" and requirements[-3:] == BATCH_RUNTIME
    assert f"FROM {BASE_IMAGE}" in (context / "Dockerfile").read_text()
    assert json.loads((out / "workspace.json").read_text())["name"] == "sei-ws"

    # Batch scoring keeps no service state: even with state: redis, no Redis URL reaches the deployment.
    assert not deployment.environment_variables
    texts = [f.read_bytes() for f in out.rglob("*") if f.is_file()]
    assert texts and not any(b"redis-batch-access-key" in t for t in texts)
    assert "redis-batch-access-key" not in result.output


def test_invalid_options_are_config_errors_naming_the_field(batch_config):
    data = yaml.safe_load(batch_config.read_text())
    options = data["deploy"]["options"]
    del options["compute"]
    options.update(
        mini_batch_size=0,
        instance_count=0,
        max_concurrency_per_instance=0,
        retry_settings={"max_retries": -1, "timeout": 0, "backoff": 2},
        error_threshold=-2,
        output_action="append_file",
        endpoint_name="9lives",
        instance_type="Standard_DS3_v2",  # an online deployment's option: batch jobs run on the compute cluster
    )
    batch_config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        Deployment.from_file(batch_config).validate()
    problems = {p.split(":")[0]: p for p in caught.value.problems}
    prefix = "deploy.options."
    assert set(problems) == {
        prefix + field
        for field in (
            "compute", "mini_batch_size", "instance_count", "max_concurrency_per_instance",
            "retry_settings.max_retries", "retry_settings.timeout", "retry_settings.backoff", "error_threshold",
            "output_action", "endpoint_name", "instance_type",
        )
    }  # fmt: skip
    assert "Field required" in problems[prefix + "compute"]
    assert "greater than or equal to 1" in problems[prefix + "mini_batch_size"]
    assert "greater than or equal to -1" in problems[prefix + "error_threshold"]
    assert "'summary_only' or 'append_row'" in problems[prefix + "output_action"]
    assert "Extra inputs are not permitted" in problems[prefix + "instance_type"]

    options.clear()
    options.update(compute="cpu cluster")  # a name Azure would refuse later, refused here first
    batch_config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"deploy\.options\.compute: String should match pattern"):
        Deployment.from_file(batch_config).validate()


def test_bad_names_and_old_builds_are_deploy_errors(batch_config, tmp_path):
    from sei_deploy_azureml_online import AzureMLBatchTarget, BatchOptions

    target = AzureMLBatchTarget(BatchOptions(compute="cpu-cluster"))
    with pytest.raises(DeployError, match="'9lives' cannot name a batch endpoint .* deploy.options.endpoint_name"):
        target.endpoint_name("9lives")
    build = Deployment.from_file(batch_config).build(tmp_path / "build")
    (build.path / "batch_score.py").unlink()  # a build made before batch_score.py existed
    with pytest.raises(DeployError, match="has no batch_score.py .* build it again"):
        target.deployment_entity(build, tmp_path / "environment")


def test_deploy_creates_endpoint_and_default_deployment_and_prints_no_secret(batch_config, azure, monkeypatch, caplog):
    monkeypatch.setenv("SEI_TEST_REDIS_URL", REDIS_URL)
    config = with_redis_state(batch_config)
    result = CliRunner().invoke(cli, ["deploy", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == INVOCATION_URI  # `sei deploy` prints the invocation URI, and only it
    assert "redis-batch-access-key" not in result.output + caplog.text  # never shown, never sent (no state in batch)
    assert azure.calls == [
        "batch_endpoints.begin_create_or_update defaults={}",
        "batch_deployments.begin_create_or_update",
        "batch_endpoints.begin_create_or_update defaults={'deployment_name': 'sei'}",
        "batch_endpoints.get",
    ]

    deployment = Deployment.from_file(config)
    endpoint = deployment.deploy()
    assert endpoint.scoring_uri == INVOCATION_URI and endpoint.headers == {}  # Entra ID tokens only: no key
    assert deployment.delete() is True and deployment.delete() is False
    assert azure.calls[-2:] == ["batch_endpoints.begin_delete sei-diabetes"] * 2


def test_failures_are_deploy_errors(batch_config, azure, monkeypatch):
    def failing(self, deployment, **kwargs):
        raise RuntimeError("compute cpu-cluster\nwas not found in workspace sei-ws")

    monkeypatch.setattr(BatchDeploymentOperations, "begin_create_or_update", failing)
    with pytest.raises(DeployError, match="'sei-diabetes' failed: RuntimeError: compute cpu-cluster was not found"):
        Deployment.from_file(batch_config).deploy()


# -- batch_score.py, run as Azure ML's batch runner runs it -------------------------------------


def import_batch_score(build_dir: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, build_dir / "batch_score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_batch_score_scores_a_job_folder_in_mini_batches(tmp_path, monkeypatch):
    """A sklearn-packed bulk model on breast cancer data; 5,000 rows encrypted by the data owner into five shards."""
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    joblib.dump(model, tmp_path / "breast-cancer.joblib")
    np.save(tmp_path / "calibration.npy", X)
    config = tmp_path / "sei-breast-cancer.yaml"
    config.write_text(yaml.safe_dump({
        "name": "sei-breast-cancer",
        "models": [{"name": "cancer", "adapter": "sklearn-packed", "path": "breast-cancer.joblib",
                    "options": {"mode": "bulk", "calibration_data": "calibration.npy"}}],
        "deploy": {"target": "azureml-batch", "options": {"compute": "cpu-cluster", "mini_batch_size": 4}},
    }))  # fmt: skip
    build = Deployment.from_file(config).build(tmp_path / "build")

    # The data owner: keys of their own, rows encrypted into a job folder for the build's description.
    rows = X[np.random.default_rng(7).integers(0, len(X), 5000)]
    np.save(tmp_path / "rows.npy", rows)
    client = Client.offline(describe_build(build.path))
    job = tmp_path / "job"
    assert encrypt_dataset(client, "cancer", tmp_path / "rows.npy", job, rows_per_shard=1000).shards == 5
    files = sorted(str(p) for p in job.rglob("*") if p.is_file())  # a uri_folder's files, as the runner lists them
    assert [Path(f).relative_to(job).parts[0] for f in files] == ["keys", "manifest.json", *["shards"] * 5]
    before = snapshot(job)

    # Azure ML mounts the registered model apart from the code, and hands the job an output folder.
    mounted = tmp_path / "azureml-models" / "sei-breast-cancer" / "1"
    mounted.mkdir(parents=True)
    shutil.move(build.models_dir, mounted / "models")
    output = tmp_path / "output"
    output.mkdir()
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(mounted))
    monkeypatch.setenv("AZUREML_BI_OUTPUT_PATH", str(output))
    batch_score = import_batch_score(build.path, "batch_score_under_test")
    batch_score.init()

    order = np.random.default_rng(1).permutation(len(files))  # the runner's order is its own
    mini_batches = [[files[i] for i in order[:4]], [files[i] for i in order[4:]]]
    lines = []
    for mini_batch in mini_batches:
        answer = batch_score.run(mini_batch)
        assert len(answer) == len(mini_batch)  # one element per input file: Azure ML counts the rest as failed
        lines += answer
    shards = {f"{i:05d}": "scored 1000" for i in range(5)}
    others = {"manifest.json": "passed 0", Path(files[0]).name: "passed 0"}
    assert dict(line.split(" ", 1) for line in lines) == {**shards, **others}
    assert sorted(snapshot(output)) == [f"results/{i:05d}.json" for i in range(5)]
    assert snapshot(job) == before  # the input is a read-only mount: nothing is written beside the shards

    # The data owner decrypts the results from the job's output: every row, in order, as plaintext predict().
    report = decrypt_job(client, job, tmp_path / "predictions.parquet", results=output)
    assert (report.rows, report.shards) == (5000, 5)
    table = pq.read_table(tmp_path / "predictions.parquet")
    np.testing.assert_array_equal(table.column("row").to_numpy(), np.arange(5000))
    np.testing.assert_array_equal(table.column("prediction").to_numpy(), model.predict(rows))

    # The same job again (a retried mini-batch, or a second invocation with the same output): nothing is rescored.
    results = snapshot(output)
    again = batch_score.run(files)
    assert len(again) == len(files)
    shard_lines = sorted(line for line in again if not line.endswith(" passed 0"))
    assert shard_lines == [f"{i:05d} skipped 1000" for i in range(5)]
    assert snapshot(output) == results
