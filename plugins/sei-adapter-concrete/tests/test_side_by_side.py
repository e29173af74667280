"""One service, one client, four kinds of model: sklearn-packed, sklearn-eiserver, trees-seal and a Concrete
ML tree, end to end through azmlinfsrv; and the managed online endpoint's environment for that build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from conftest import concrete_model
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sei_framework import Deployment, Keyring

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from fresh_env import NO_COMPILE, fresh_venv, pip_install  # noqa: E402  (the main suite's helpers)

SCALED = {"feature_bounds": [-1, 1]}  # scikit-learn's diabetes rows are scaled
LIMITS = {"max_public_key_mb": 128, "max_request_mb": 64, "key_cache_mb": 2048}


@pytest.fixture(scope="module")
def mixed_config(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("side-by-side")
    X, y = load_diabetes(return_X_y=True)
    linear = make_pipeline(StandardScaler(), Ridge()).fit(X[:400], y[:400])
    joblib.dump(linear, folder / "diabetes.joblib")
    forest = RandomForestRegressor(8, max_depth=4, random_state=0).fit(X[:400], y[:400])
    joblib.dump(forest, folder / "forest.joblib")
    config = {
        "name": "mixed",
        "models": [
            {"name": "packed", "adapter": "sklearn-packed", "path": str(folder / "diabetes.joblib"), "options": SCALED},
            {"name": "tutorial", "adapter": "sklearn-eiserver", "path": str(folder / "diabetes.joblib"), "options": SCALED},
            concrete_model(trained, "tree"),
            {"name": "forest", "adapter": "trees-seal", "path": str(folder / "forest.joblib")},
        ],
        "key_transport": {"name": "local-dir", "options": {"path": str(folder / "shared-keys")}},
        "deploy": {"target": "local", "options": {"state_dir": str(folder / "state")}},
        "limits": LIMITS,
    }
    path = folder / "mixed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, linear, X[400:], forest


def test_four_kinds_of_model_in_one_service_through_azmlinfsrv(mixed_config, trained, tmp_path):
    path, linear, X, forest = mixed_config
    deployment = Deployment.from_file(path)
    endpoint = deployment.deploy(tmp_path / "build")
    try:
        client = deployment.client(endpoint, keyring=Keyring(tmp_path / "keys"))
        for name in ("packed", "tutorial"):
            np.testing.assert_allclose(client.predict(name, X[:2]).predictions, linear.predict(X[:2]), atol=1e-3)
        tree = client.predict("tree", trained.X[:3])
        assert tree.predictions.tolist() == trained.expected["tree"]["simulated"][:3]
        assert client.predict("tree", trained.X[3:4]).predictions.tolist() == trained.expected["tree"]["simulated"][3:4]
        served = client.predict("forest", X[:20])  # trees-seal: one batch, relinearization keys through local-dir
        bound = client.describe()["models"]["forest"]["accuracy"]["error_bound"]
        np.testing.assert_allclose(served.predictions, forest.predict(X[:20]), rtol=0, atol=2 * bound)
        assert len(list((path.parent / "shared-keys").iterdir())) == 4  # one key set per scheme, published once
    finally:
        assert deployment.delete() is True


def test_the_online_endpoints_environment_for_that_build_installs_and_resolves(mixed_config, tmp_path):
    """The azureml-online dry run's requirements, installed into a fresh environment (a CPU torch first,
    as an image would want: concrete-python needs torch), pass `pip check` and import every adapter."""
    from click.testing import CliRunner

    from sei_framework.cli import cli

    path, _, _, _ = mixed_config
    config = yaml.safe_load(path.read_text())
    config["deploy"] = {"target": "azureml-online", "options": {
        "subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "sei-rg",
        "workspace_name": "sei-ws", "instance_type": "Standard_E4s_v3"}}  # fmt: skip
    config["key_transport"] = {"name": "inline"}  # keys of 60 MB in the first request: room for them
    config["limits"] = {**LIMITS, "max_request_mb": 128}
    online = tmp_path / "online.yaml"
    online.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["deploy", str(online), "--dry-run", str(tmp_path / "dry")])
    assert result.exit_code == 0, result.output
    # the endpoint environment's image context, not the build folder's own container files
    [context] = {p.parent for p in (tmp_path / "dry").rglob("Dockerfile") if not (p.parent / "image-requirements.txt").exists()}
    requirements = (context / "requirements.txt").read_text().split()
    assert any("sei_adapter_concrete" in r for r in requirements) and "concrete-python==2.10.0" in requirements
    local = [str(context / "wheels" / r.removeprefix("/tmp/sei/wheels/")) if r.startswith("/tmp/sei/wheels/") else r
             for r in requirements]  # fmt: skip
    python = fresh_venv(tmp_path / "env")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", NO_COMPILE, "torch==2.13.0"], check=True)
    pip_install(python, local, cwd=context)  # then pip check
    imports = "import sei_adapter_sklearn, sei_adapter_concrete.runtime, concrete.fhe, seal, encrypted.inference"
    subprocess.run([str(python), "-c", imports], check=True, capture_output=True)
