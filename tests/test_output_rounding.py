"""Decoded CKKS scores leave the client rounded to a grid no finer than the proven error bound.

A decryption at full precision carries noise that depends on the secret key; with the response
ciphertexts, a shared predictions file would let anyone solve for the key (Li and Micciancio, 2021).
The adapter client's decrypt rounds, so the online Client, `sei predict` and `sei batch decrypt`
(all of which decrypt through it) write only rounded scores. HEAD returned the raw decoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from conftest import keyed_request
from sei_adapter_sklearn.bounds import output_grid, round_scores
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from sei_framework import Deployment, InvalidRequest
from sei_framework.serving import ScoringService


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory) -> tuple[Path, Ridge, np.ndarray]:
    folder = tmp_path_factory.mktemp("rounding")
    X, y = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.1).fit(X[:300], y[:300])
    joblib.dump(model, folder / "m.joblib")
    np.save(folder / "train.npy", X[:300])
    config = {"name": "rounding", "models": [
        {"name": adapter, "adapter": f"sklearn-{adapter}", "path": "m.joblib",
         "options": {"calibration_data": "train.npy"}} for adapter in ("packed", "eiserver")]}
    (folder / "svc.yaml").write_text(yaml.safe_dump(config))
    return folder, model, X[300:310]


@pytest.mark.parametrize("name", ["packed", "eiserver"])
def test_decrypted_scores_are_rounded_to_the_proven_error(diabetes, name):
    folder, model, X = diabetes
    service = ScoringService.from_build(Deployment.from_file(folder / "svc.yaml").build(folder / f"b-{name}").path)
    client, body, publish, _ = keyed_request(service, name, X)
    answer, status = service.handle(json.dumps({**body, **publish}))
    assert status == 200, answer
    scores = client.decrypt(answer["result"], len(X))[:, 0]
    accuracy = service.describe()["models"][name]["accuracy"]
    grid = output_grid(accuracy)
    assert accuracy["error_bound"] <= grid < 2 * accuracy["error_bound"]
    assert np.array_equal(scores, np.round(scores / grid) * grid)  # every score on the grid (HEAD: none was)
    assert np.abs(scores - model.predict(X)).max() <= accuracy["error_bound"] + grid / 2


def test_the_grid_comes_from_the_proven_bound_only():
    assert output_grid({"error_bound": 3e-6}) == 2.0 ** -18
    assert output_grid({"error_bound": 2.0 ** -18}) == 2.0 ** -18
    assert output_grid(None) == 2.0 ** -10  # opted in to a model without a proof: ~ the default tolerance
    for bad in ({}, {"error_bound": 0}, {"error_bound": "x"}, {"error_bound": float("nan")}):
        with pytest.raises(InvalidRequest, match="accuracy description cannot be read"):
            output_grid(bad)
    np.testing.assert_array_equal(round_scores(np.array([0.3, -0.3, 1.24]), 0.5), [0.5, -0.5, 1.0])
