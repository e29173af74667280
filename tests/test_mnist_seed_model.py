"""The tutorial's pre-trained MNIST model, served by SEI, on real MNIST test images."""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import yaml

from conftest import MNIST_IMAGES, SEED_MODEL, load_mnist, needs_shared
from sei_framework import Client, Deployment
from sei_framework.keys import Keyring

pytestmark = [needs_shared(SEED_MODEL), needs_shared(MNIST_IMAGES)]
IMAGES = 50


def test_encrypted_scores_match_decision_function_on_50_images(tmp_path):
    config = {
        "name": "mnist",
        "models": [{"name": "mnist", "adapter": "sklearn-eiserver", "path": str(SEED_MODEL)}],
        "key_transport": {"name": "inline"},
        "deploy": {"target": "local", "options": {"state_dir": str(tmp_path / "state")}},
        "limits": {"max_rows_per_request": 10},
    }
    (tmp_path / "mnist.yaml").write_text(yaml.safe_dump(config))
    deployment = Deployment.from_file(tmp_path / "mnist.yaml")
    endpoint = deployment.deploy(tmp_path / "build")
    try:
        X, labels = load_mnist(IMAGES)
        result = Client(endpoint, keyring=Keyring(tmp_path / "keys")).predict("mnist", X, batch_size=10)
    finally:
        deployment.delete()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # saved by scikit-learn 0.22
        model = joblib.load(SEED_MODEL)
    assert np.abs(result.scores - model.decision_function(X)).max() <= 1e-3
    assert (result.predictions == model.predict(X)).all()
    assert (result.predictions == labels).mean() > 0.85  # the model's own accuracy is 91.93 %
