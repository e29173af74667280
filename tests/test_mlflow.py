"""MLflow model folders (sklearn flavour) as model paths, and `azureml:NAME:VERSION` registered models.

Models are saved with MLflow's own `mlflow.sklearn.save_model`, built, and served in process by both
linear adapters, agreeing with the plaintext model. The `azureml` model source runs with the SDK's
real MLClient and entities; only `ModelOperations.get` and `.download` (the network calls) are fakes,
and the fake download writes a real MLflow model folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import keyed_request, with_bounds
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sei_framework import ConfigError, Deployment, InvalidRequest, SeiError, feature_names
from sei_framework.rows import table_rows
from sei_framework.config import load_config
from sei_framework.serving import ScoringService

mlflow_sklearn = pytest.importorskip("mlflow.sklearn", reason="needs the [mlflow] extra (make test installs it)")
pd = pytest.importorskip("pandas")
from mlflow.models import infer_signature  # noqa: E402

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000cc"
REQUIREMENTS = ["scikit-learn"]  # given, so save_model does not infer them (slow)


def save(model, folder: Path, signature=None, **kwargs) -> Path:
    mlflow_sklearn.save_model(model, str(folder), signature=signature, pip_requirements=REQUIREMENTS, **kwargs)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> SimpleNamespace:
    """An iris pipeline (scaler + LogisticRegression) with a column signature, and a diabetes regression
    without one and with a tensor signature (cloudpickle, as Databricks and older MLflow write)."""
    folder = tmp_path_factory.mktemp("mlflow")
    X, y = load_iris(return_X_y=True, as_frame=True)
    iris = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    Xd, yd = load_diabetes(return_X_y=True)
    diabetes = make_pipeline(StandardScaler(), Ridge()).fit(Xd[:400], yd[:400])
    return SimpleNamespace(
        folder=folder,
        iris=iris,
        X=X,
        diabetes=diabetes,
        Xd=Xd[400:],
        iris_dir=save(iris, folder / "iris", infer_signature(X, iris.predict(X))),
        plain_dir=save(diabetes, folder / "diabetes-plain"),
        tensor_dir=save(
            diabetes, folder / "diabetes-tensor", infer_signature(Xd[:400], diabetes.predict(Xd[:400])),
            serialization_format="cloudpickle",
        ),
    )


def write_config(folder: Path, models: list[dict], **extra) -> Path:
    path = folder / "mlflow.yaml"
    path.write_text(yaml.safe_dump({"name": "mlflow", "models": models, **extra}))
    return path


def serve(config: Path, out: Path) -> ScoringService:
    return ScoringService.from_build(Deployment.from_file(config).build(out).path)


def scores(service: ScoringService, name: str, rows: np.ndarray) -> np.ndarray:
    client, body, publish, _ = keyed_request(service, name, rows)
    answer, status = service.handle(json.dumps({**body, **publish}))
    assert status == 200, answer
    return client.decrypt(answer["result"], len(rows))


IRIS_BOUNDS = {"feature_bounds": [0, 8]}  # iris measurements in cm (both adapters refuse rows out of bounds)


def test_mlflow_models_are_served_by_both_linear_adapters(models, tmp_path):
    """The classifier on both adapters; the regression without a signature on one and with a tensor
    signature on the other (the registered-model test below serves it on both too)."""
    entries = [
        {"name": "iris-eiserver", "adapter": "sklearn-eiserver", "path": str(models.iris_dir), "options": IRIS_BOUNDS},
        {"name": "iris-packed", "adapter": "sklearn-packed", "path": str(models.iris_dir), "options": IRIS_BOUNDS},
        with_bounds({"name": "plain-eiserver", "adapter": "sklearn-eiserver", "path": str(models.plain_dir)}),
        with_bounds({"name": "tensor-packed", "adapter": "sklearn-packed", "path": str(models.tensor_dir)}),
    ]
    service = serve(write_config(tmp_path, entries), tmp_path / "build")
    frame = models.X.iloc[::15]  # 10 rows of every class
    for name in ("iris-eiserver", "iris-packed"):
        got = scores(service, name, frame.values)
        np.testing.assert_allclose(got, models.iris.decision_function(frame), atol=1e-3)
        client = service.adapters[name].client(service.describe()["models"][name])
        assert (client.interpret(got).predictions == models.iris.predict(frame)).all()
    for name in ("plain-eiserver", "tensor-packed"):
        got = scores(service, name, models.Xd[:8])
        np.testing.assert_allclose(got[:, 0], models.diabetes.predict(models.Xd[:8]), atol=1e-3)
    described = service.describe()["models"]
    assert [c["name"] for c in described["iris-packed"]["signature"]["inputs"]] == list(models.X.columns)
    assert described["tensor-packed"]["signature"]["inputs"][0]["tensor-spec"]["shape"] == [-1, 10]
    assert "signature" not in described["plain-eiserver"]
    assert described["iris-eiserver"]["estimator"] == "Pipeline(StandardScaler, LogisticRegression)"


def test_a_dataframe_is_read_by_the_signatures_column_names(models, tmp_path):
    entries = [{"name": "iris", "adapter": "sklearn-packed", "path": str(models.iris_dir), "options": IRIS_BOUNDS},
               with_bounds({"name": "tensor", "adapter": "sklearn-packed", "path": str(models.tensor_dir)})]  # fmt: skip
    service = serve(write_config(tmp_path, entries), tmp_path / "build")
    described = service.describe()["models"]
    names = feature_names(described["iris"])
    assert names == list(models.X.columns)
    frame = models.X.iloc[:3]
    assert table_rows(frame, names).by_name  # the signature's columns, in order
    reordered = table_rows(frame[list(reversed(frame.columns))], names)  # chosen by name, put in the model's order
    np.testing.assert_array_equal(reordered.values, frame.values)
    assert not table_rows(frame.values, names).by_name  # an array: by position, its feature count checked
    with pytest.raises(InvalidRequest, match=r"missing 'petal width \(cm\)'; unknown 'petal_width'") as caught:
        table_rows(frame.rename(columns={"petal width (cm)": "petal_width"}), names)
    assert caught.value.code == "wrong_features"
    with pytest.raises(InvalidRequest, match="missing 'petal width"):
        table_rows(frame.iloc[:, :3], names)
    assert feature_names(described["tensor"]) is None  # a tensor signature names no columns


class NotSklearn:
    """A python_function model, for an MLflow folder without the sklearn flavour."""

    def predict(self, context, model_input):
        return model_input


@pytest.fixture(scope="module")
def bad_models(models) -> dict[str, Path]:
    import mlflow.pyfunc

    folder = models.folder
    (folder / "not-mlflow").mkdir()
    (folder / "not-mlflow" / "model.pkl").write_bytes(b"")
    X, iris = models.X, models.iris
    mlflow.pyfunc.save_model(
        str(folder / "pyfunc"), python_model=mlflow.pyfunc.PythonModel(), pip_requirements=REQUIREMENTS
    )
    three = save(iris, folder / "three-columns", infer_signature(X.iloc[:, :3], iris.predict(X)))
    return {"not-mlflow": folder / "not-mlflow", "pyfunc": folder / "pyfunc", "three": three}


@pytest.mark.parametrize(
    "which, message",
    [
        ("not-mlflow", r"is a folder but not an MLflow model \(it has no MLmodel file\)"),
        ("pyfunc", r"has no 'sklearn' flavour \(its flavours: python_function\)"),
        ("three", "its signature takes 3 input columns but the model takes 4 features"),
    ],
)
def test_unusable_mlflow_folders_are_refused_at_build(bad_models, tmp_path, which, message):
    config = write_config(tmp_path, [with_bounds({"name": "m", "adapter": "sklearn-eiserver", "path": str(bad_models[which])})])
    deployment = Deployment.from_file(config)
    deployment.validate()  # a folder is a model path; what is in it is the adapter's to judge, at build
    with pytest.raises(SeiError, match=message):
        deployment.build(tmp_path / "build")
    assert not (tmp_path / "build").exists()


def test_skops_types_are_trusted_by_sei_not_by_the_mlmodel_file(models, tmp_path):
    """MLflow reads the skops allow-list from the model's own MLmodel; SEI applies its own rules."""
    import skops.io as sio

    folder = tmp_path / "iris"
    save(models.iris, folder)
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    sio.dump({"f": np.load}, folder / "model.skops")  # a function, which a skops file must not smuggle in
    flavor = {**mlmodel["flavors"]["sklearn"], "skops_trusted_types": ["numpy.load"]}
    (folder / "MLmodel").write_text(yaml.safe_dump({**mlmodel, "flavors": {**mlmodel["flavors"], "sklearn": flavor}}))
    config = write_config(tmp_path, [with_bounds({"name": "m", "adapter": "sklearn-packed", "path": str(folder)})])
    with pytest.raises(SeiError, match=r"contains untrusted types: .*numpy.*load"):
        Deployment.from_file(config).build(tmp_path / "build")


def test_a_pickled_mlflow_model_loads_through_the_allow_list(models, tmp_path):
    """A pickle-format MLflow model is read by SEI's restricted unpickler, not mlflow.sklearn.load_model."""
    folder = tmp_path / "iris"
    save(models.iris, folder, serialization_format="pickle")
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    planted = tmp_path / "planted"
    (folder / mlmodel["flavors"]["sklearn"]["pickled_model"]).write_bytes(
        b"cos\nsystem\n(S'touch " + str(planted).encode() + b"'\ntR."
    )
    config = write_config(tmp_path, [{"name": "m", "adapter": "sklearn-packed", "path": str(folder)}])
    with pytest.raises(SeiError, match=r"contains untrusted types: os\.system"):
        Deployment.from_file(config).build(tmp_path / "build")
    assert not planted.exists()


# -- azureml:NAME:VERSION ---------------------------------------------------------------------------

azure_ml = pytest.importorskip("azure.ai.ml", reason="needs the [azureml-online] extra (make test installs it)")
from azure.ai.ml import MLClient  # noqa: E402
from azure.ai.ml.entities import Model  # noqa: E402
from azure.ai.ml.operations import ModelOperations  # noqa: E402
from azure.core.exceptions import ResourceNotFoundError  # noqa: E402


@pytest.fixture
def registry(monkeypatch, models):
    """A workspace holding `diabetes` version 3 (an MLflow model); MLClient is real, the network calls fakes."""
    state = SimpleNamespace(calls=[], workspaces=[])
    real_init = MLClient.__init__

    def ml_client_init(self, credential, subscription_id=None, resource_group_name=None, workspace_name=None, **kw):
        assert type(credential).__name__ == "DefaultAzureCredential"
        state.workspaces.append((subscription_id, resource_group_name, workspace_name))
        real_init(self, credential, subscription_id, resource_group_name, workspace_name, **kw)  # makes no call

    def get(self, name, version=None, label=None):
        assert isinstance(self, ModelOperations) and label is None
        state.calls.append(f"models.get {name}:{version}")
        if (name, version) != ("diabetes", "3"):
            raise ResourceNotFoundError(f"model {name}:{version} not found")
        path = "azureml://datastores/workspaceblobstore/paths/mlflow-model/"
        return Model(name=name, version=version, type="mlflow_model", path=path)

    def download(self, name, version, download_path="."):
        assert isinstance(self, ModelOperations)
        state.calls.append(f"models.download {name}:{version}")
        # as the SDK lays it out: DOWNLOAD_PATH/NAME/<the registered folder>/...
        signature = infer_signature(models.Xd, models.diabetes.predict(models.Xd))
        save(models.diabetes, Path(download_path) / name / "mlflow-model", signature, serialization_format="cloudpickle")

    monkeypatch.setattr(MLClient, "__init__", ml_client_init)
    monkeypatch.setattr(ModelOperations, "get", get)
    monkeypatch.setattr(ModelOperations, "download", download)
    return state


WORKSPACE = {"subscription_id": SUBSCRIPTION, "resource_group": "sei-rg", "workspace_name": "sei-ws"}


def test_a_registered_model_is_fetched_and_served(registry, models, tmp_path):
    entries = [with_bounds({"name": "eis", "adapter": "sklearn-eiserver", "path": "azureml:diabetes:3"}),
               with_bounds({"name": "packed", "adapter": "sklearn-packed", "path": "azureml:diabetes:3"})]  # fmt: skip
    config = write_config(tmp_path, entries, model_sources={"azureml": WORKSPACE})
    assert load_config(config).models[0].path == "azureml:diabetes:3"  # a URI, not a path beside the config
    service = serve(config, tmp_path / "build")
    for name in ("eis", "packed"):
        got = scores(service, name, models.Xd[:5])[:, 0]
        np.testing.assert_allclose(got, models.diabetes.predict(models.Xd[:5]), atol=1e-3)
    assert registry.calls == ["models.get diabetes:3", "models.download diabetes:3"] * 2
    assert registry.workspaces == [(SUBSCRIPTION, "sei-rg", "sei-ws")] * 2
    assert service.describe()["models"]["eis"]["signature"]["inputs"][0]["tensor-spec"]["shape"] == [-1, 10]
    assert sorted(p.name for p in (tmp_path / "build" / "models" / "eis").iterdir()) == ["linear.json"]


def test_the_azureml_targets_workspace_is_the_default(registry, tmp_path):
    entries = [with_bounds({"name": "m", "adapter": "sklearn-eiserver", "path": "azureml:diabetes:3"})]
    deploy = {"target": "azureml-online", "options": {**WORKSPACE, "workspace_name": "target-ws"}}
    Deployment.from_file(write_config(tmp_path, entries, deploy=deploy)).build(tmp_path / "build")
    assert registry.workspaces == [(SUBSCRIPTION, "sei-rg", "target-ws")]
    # model_sources.azureml, when it names a workspace, wins over the target's
    config = write_config(tmp_path, entries, deploy=deploy, model_sources={"azureml": WORKSPACE})
    Deployment.from_file(config).build(tmp_path / "build")
    assert registry.workspaces[-1] == (SUBSCRIPTION, "sei-rg", "sei-ws")


def test_registered_model_errors(registry, tmp_path):
    def problems(path, **extra):
        config = write_config(tmp_path, [with_bounds({"name": "m", "adapter": "sklearn-eiserver", "path": path})], **extra)
        with pytest.raises(ConfigError) as caught:
            Deployment.from_file(config).validate()
        return caught.value.problems

    assert "write azureml:NAME:VERSION" in problems("azureml:diabetes")[0]
    assert "no model source handles 's3' URIs (available: azureml)" in problems("s3:bucket/model.pkl")[0]
    bad = problems("azureml:diabetes:3", model_sources={"azureml": {"workspace_name": "ws"}, "hf": {}})
    assert any(p.startswith("model_sources.azureml: Value error, give all of subscription_id") for p in bad), bad
    assert any(p.startswith("model_sources.hf: unknown model source 'hf'; available: azureml") for p in bad), bad
    assert registry.calls == []  # validation makes no call
    config = write_config(tmp_path, [with_bounds({"name": "m", "adapter": "sklearn-eiserver", "path": "azureml:diabetes:4"})],
                          model_sources={"azureml": WORKSPACE})  # fmt: skip
    missing = r"azureml:diabetes:4: no model 'diabetes' version 4 is registered in workspace 'sei-ws'"
    with pytest.raises(SeiError, match=missing):
        Deployment.from_file(config).build(tmp_path / "build")
