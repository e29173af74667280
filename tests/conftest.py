"""Shared fixtures: a private SEI_HOME per test, trained models, and the shared data when present."""

from __future__ import annotations

import gzip
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

pytest_plugins = ["sei_framework.testing"]

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SEED_MODEL = SHARED / "seed-model" / "sklearn_mnist_model.pkl"
MNIST_IMAGES = SHARED / "mnist" / "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz"


@pytest.fixture(autouse=True)
def sei_home(tmp_path_factory, monkeypatch) -> Path:
    """Keys and local deployment state of each test stay in its own folder."""
    home = tmp_path_factory.mktemp("sei-home")
    monkeypatch.setenv("SEI_HOME", str(home))
    monkeypatch.delenv("SEI_DISABLED_PLUGINS", raising=False)
    return home


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> dict[str, tuple[Path, object, np.ndarray]]:
    """A digits classifier and a diabetes regression pipeline: (file, model, test rows)."""
    folder = tmp_path_factory.mktemp("models")
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    digits = LogisticRegression(max_iter=2000).fit(X[:1500], y[:1500])
    Xd, yd = load_diabetes(return_X_y=True)
    diabetes = make_pipeline(StandardScaler(), Ridge()).fit(Xd[:400], yd[:400])
    joblib.dump(digits, folder / "digits.joblib")
    joblib.dump(diabetes, folder / "diabetes.joblib")
    return {
        "digits": (folder / "digits.joblib", digits, X[1500:]),
        "diabetes": (folder / "diabetes.joblib", diabetes, Xd[400:]),
    }


def keyed_request(service, model: str, rows: np.ndarray) -> tuple[object, dict, dict, bytes]:
    """For `model` of an in-process ScoringService: an adapter client with fresh keys, a predict body
    for `rows`, the inline-transport fields that publish its keys, and the public key bytes."""
    from sei_framework import key_id_for
    from sei_transport_inline import InlineTransport

    client = service.adapters[model].client(service.describe()["models"][model])
    secret, public = client.generate_keys()
    client.use_keys(secret, public)
    key_id = key_id_for(public)
    body = {"model": model, "key_id": key_id, "data": client.encrypt(rows)}
    return client, body, InlineTransport(InlineTransport.Options()).publish(key_id, public), public


def needs_shared(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"shared data {path} is absent (../shared not beside the repo)")


def load_mnist(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` MNIST test images (pixels / 255) and labels."""
    with gzip.open(MNIST_IMAGES) as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(MNIST_LABELS) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    return images[:count] / 255.0, labels[:count]


@pytest.fixture
def make_deployment(tmp_path, model_files):
    """Build a Deployment from model names and transport/target settings, as a config file would."""
    import yaml

    from sei_framework import Deployment

    def make(models=("digits", "diabetes"), transport=None, target=None, limits=None, name="svc"):
        data = {
            "name": name,
            "models": [{"name": m, "adapter": "sklearn-eiserver", "path": str(model_files[m][0])} for m in models],
            "key_transport": transport or {"name": "inline"},
            "deploy": target or {"target": "local", "options": {"state_dir": str(tmp_path / "state")}},
        }
        if limits:
            data["limits"] = limits
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return Deployment.from_file(path)

    return make
