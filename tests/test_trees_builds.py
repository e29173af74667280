"""trees-seal builds in process: string labels and a scikit-learn forest through the real encrypted path,
thermometer mode, and every refusal named at build."""

from __future__ import annotations

import json

import joblib
import lightgbm
import numpy as np
import pytest
import yaml
from conftest import keyed_request
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sei_framework import Deployment, SeiError
from sei_framework.serving import ScoringService


def build(folder, models: list[dict]) -> ScoringService:
    (folder / "trees.yaml").write_text(yaml.safe_dump({"name": "trees", "models": models}))
    return ScoringService.from_build(Deployment.from_file(folder / "trees.yaml").build(folder / "build").path)


def score(service: ScoringService, name: str, rows: np.ndarray):
    client, body, publish, _ = keyed_request(service, name, rows)
    answer, status = service.handle(json.dumps({**body, **publish}))
    assert status == 200, answer
    return client.interpret(client.decrypt(json.loads(answer)["result"] if isinstance(answer, str) else answer["result"], len(rows)))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A forest with string labels (a scaler pipeline before it) and the same forest on a thermometer grid."""
    folder = tmp_path_factory.mktemp("trees-builds")
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(8, max_depth=3, random_state=0)).fit(X, labels)
    joblib.dump(forest, folder / "iris.joblib")
    np.save(folder / "calibration.npy", X)
    service = build(folder, [
        {"name": "iris", "adapter": "trees-seal", "path": "iris.joblib", "options": {"calibration_data": "calibration.npy"}},
        {"name": "grid", "adapter": "trees-seal", "path": "iris.joblib",
         "options": {"mode": "thermometer", "n_bits": 15, "min_agreement": 0.9, "calibration_data": "calibration.npy"}},
        {"name": "pooled", "adapter": "trees-seal", "path": "iris.joblib", "options": {"workers": 2}},
    ])  # fmt: skip
    return service, forest, X


def test_string_labels_come_back_as_predict_returns_them(served):
    service, forest, X = served
    result = score(service, "iris", X[::5])
    assert result.predictions.dtype.kind == "U" and (result.predictions == forest.predict(X[::5])).all()
    np.testing.assert_allclose(result.probabilities, forest.predict_proba(X[::5]), atol=1e-5)
    described = service.describe()["models"]["iris"]
    assert described["readout"]["classes"]["values"] == ["setosa", "versicolor", "virginica"]
    assert described["accuracy"]["verified_rows"] >= 64


def test_thermometer_mode_shows_only_the_grid_and_agrees_as_measured(served):
    service, forest, X = served
    described = service.describe()["models"]["grid"]
    assert described["mode"] == "thermometer" and len(described["splits"]) == 4 * 15
    assert {s["threshold"] for s in described["splits"]}.isdisjoint(
        {s["threshold"] for s in service.describe()["models"]["iris"]["splits"]}
    )  # the model's own thresholds are not shown
    levels = json.loads(described["encryption"]["params"]["engine"])["split_levels"]
    assert len(set(levels)) == 1  # nor which grid thresholds the trees use, at which depth: every split at one level
    result = score(service, "grid", X)
    assert np.mean(result.predictions == forest.predict(X)) == pytest.approx(described["grid"]["agreement"])
    client = service.adapters["grid"].client(described)
    from sei_framework import InvalidRequest

    with pytest.raises(InvalidRequest, match="NaN"):
        client.check_rows(np.array([[np.nan, 1.0, 1.0, 1.0]]))


def _write(folder, name: str, model) -> str:
    if isinstance(model, lightgbm.LGBMModel):
        model.booster_.save_model(folder / name)
    elif isinstance(model, bytes):
        (folder / name).write_bytes(model)
    else:
        joblib.dump(model, folder / name)
    return name


def _refusals():
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    categorical = np.column_stack([(y * 3 + rng.integers(0, 3, len(X))) % 5, X[:, :3]])  # informative categories
    return {
        "tolerance": ("rf.joblib", RandomForestClassifier(3, max_depth=3, random_state=0).fit(X, y), {"tolerance": 1e-30}, "tolerance"),
        "categorical": ("cat.txt", lightgbm.LGBMClassifier(n_estimators=3, verbose=-1, min_data_per_group=5,
                        cat_smooth=1).fit(categorical, y, categorical_feature=[0]), {}, "categorical"),
        "multi-output": ("multi.joblib", RandomForestRegressor(3, max_depth=2, random_state=0).fit(X, np.column_stack([y, y])), {}, "multi-output"),
        "not trees": ("linear.joblib", LogisticRegression(max_iter=50).fit(X[:, :3], y), {}, "LogisticRegression"),
        "pipeline": ("pca.joblib", make_pipeline(PCA(2), RandomForestClassifier(2, max_depth=2)).fit(X, y), {}, "PCA"),
        "garbage": ("garbage.joblib", b"not a pickle at all", {}, "garbage.joblib"),
        "extension": ("model.bin", b"\0\1", {}, "extension"),
        "agreement": ("rf2.joblib", RandomForestClassifier(3, max_depth=3, random_state=0).fit(X, y),
                      {"mode": "thermometer", "n_bits": 1, "min_agreement": 1.0, "calibration_data": "cal.npy"}, "min_agreement"),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(_refusals()))
def test_every_refusal_names_what_and_why(case, tmp_path):
    file, model, options, words = _refusals()[case]
    np.save(tmp_path / "cal.npy", load_breast_cancer(return_X_y=True)[0])
    name = _write(tmp_path, file, model)
    with pytest.raises(SeiError, match=words) as caught:
        build(tmp_path, [{"name": "m", "adapter": "trees-seal", "path": name, "options": options}])
    assert "Traceback" not in str(caught.value)


def test_a_key_pair_that_does_not_belong_together_is_refused(served):
    """The relinearization keys the service computes with must be the secret key's: a product through
    them must decrypt right, or the client would read sums of another key's noise as scores."""
    service, _, _ = served
    client = service.adapters["iris"].client(service.describe()["models"]["iris"])
    secret, public = client.generate_keys()
    other_secret, other_public = client.generate_keys()
    client.use_keys(secret, public)
    with pytest.raises(ValueError, match="not this secret key's"):
        client.use_keys(secret, other_public)
    with pytest.raises(ValueError, match="do not load"):
        client.use_keys(secret, public[: len(public) // 2])


def test_a_pooled_model_splits_each_batch_over_worker_processes(served):
    """workers: 2 evaluates each batch on two processes; the answer is the library's, and the key cache
    counts the keys in each process."""
    service, forest, X = served
    result = score(service, "pooled", X[::3])
    assert (result.predictions == forest.predict(X[::3])).all()
    np.testing.assert_allclose(result.probabilities, forest.predict_proba(X[::3]), atol=1e-5)
    adapter = service.adapters["pooled"]
    client = adapter.client(service.describe()["models"]["pooled"])
    _, public = client.generate_keys()
    keys = adapter.load_public_keys(public)
    assert adapter.key_size(keys) == 3 * len(public)
    assert service.describe()["models"]["pooled"]["splits"] == service.describe()["models"]["iris"]["splits"]
