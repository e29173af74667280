"""With calibration_data the build proves the widest bounds the tolerance allows (up to a cap), so
held-out rows of the training distribution are served, not refused.

HEAD took the calibration range widened by 10 % on each side: five held-out rows of scikit-learn's
breast cancer data (train_test_split, random_state 0) were refused as outside the bounds although
the precision budget proves far wider bounds within 1e-3.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import joblib
import numpy as np
import pytest
import yaml
from conftest import keyed_request
from sei_adapter_sklearn.bounds import WIDEN_STEPS, output_grid, widest_bounds
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sei_framework import Deployment, InvalidRequest
from sei_framework.serving import ScoringService

ADAPTERS = ("packed", "eiserver")


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    """Breast cancer rows in raw units, a scaled logistic regression, and services with old and new bounds."""
    folder = tmp_path_factory.mktemp("cancer")
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X_train, y_train)
    joblib.dump(model, folder / "m.joblib")
    np.save(folder / "train.npy", X_train)
    models = []
    for adapter in ADAPTERS:
        models.append({"name": adapter, "adapter": f"sklearn-{adapter}", "path": "m.joblib",
                       "options": {"calibration_data": "train.npy"}})
        models.append({"name": f"{adapter}-head", "adapter": f"sklearn-{adapter}", "path": "m.joblib",  # HEAD's 10 %
                       "options": {"calibration_data": "train.npy", "calibration_max_margin": 0.1}})
    (folder / "svc.yaml").write_text(yaml.safe_dump({"name": "cancer", "models": models}))
    service = ScoringService.from_build(Deployment.from_file(folder / "svc.yaml").build(folder / "build").path)
    return service, model, X_train, X_test


def outside(rows: np.ndarray, bounds: list) -> np.ndarray:
    pairs = np.asarray(bounds)
    return np.any((rows < pairs[:, 0]) | (rows > pairs[:, 1]), axis=1)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_held_out_rows_refused_by_the_ten_percent_bounds_are_served(cancer, adapter):
    service, model, X_train, X_test = cancer
    head = service.describe()["models"][f"{adapter}-head"]["accuracy"]
    assert head["calibration_margin"] == 0.1
    refused = outside(X_test, head["feature_bounds"])
    assert refused.sum() == 5  # what HEAD refused
    with pytest.raises(InvalidRequest) as caught:
        service.adapters[f"{adapter}-head"].client(service.describe()["models"][f"{adapter}-head"]).encrypt(
            X_test[refused][:1])
    assert caught.value.code == "input_out_of_bounds"

    accuracy = service.describe()["models"][adapter]["accuracy"]
    assert accuracy["bounds_from"] == "calibration_data" and accuracy["calibration_margin"] == 1.0  # the cap
    assert accuracy["error_bound"] + output_grid(accuracy) / 2 <= accuracy["tolerance"] == 1e-3  # still a proof, rounding included
    assert not outside(X_test, accuracy["feature_bounds"]).any()
    rows = X_test[refused] if adapter == "eiserver" else np.vstack([X_test[refused], X_test[:50]])  # EIServer: slow
    client, body, publish, _ = keyed_request(service, adapter, rows)
    answer, status = service.handle(json.dumps({**body, **publish}))
    assert status == 200, answer
    scores = client.decrypt(answer["result"], len(rows))
    expected = model.decision_function(rows)
    assert np.abs(scores[:, 0] - expected).max() <= accuracy["error_bound"] + output_grid(accuracy) / 2 <= 1e-3
    assert np.array_equal(client.interpret(scores).predictions, model.predict(rows))


def _search(prove_up_to: float, low: float = 0.1, cap: float = 1.0):
    """widest_bounds on one feature calibrated on [0, 10], with a proof that holds up to a margin."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "rows.npy"
    np.save(path, np.array([[0.0], [10.0]]))
    options = SimpleNamespace(calibration_data=str(path), feature_bounds=None, calibration_margin=low,
                              calibration_max_margin=cap)
    proven: list[float] = []

    def prove(lo: np.ndarray, hi: np.ndarray) -> float:
        margin = float(hi[0] - 10.0) / 10.0
        if margin > prove_up_to:
            raise ValueError("too wide")
        proven.append(margin)
        return margin

    lo, hi, proof, margin = widest_bounds(1, options, np.array([-1.0]), np.array([11.0]), low, prove, (ValueError,))
    return lo, hi, proof, margin, proven


def test_the_margin_is_the_widest_proven_one_within_the_cap():
    lo, hi, proof, margin, _ = _search(prove_up_to=5.0)
    assert margin == proof == 1.0 and (lo[0], hi[0]) == (-10.0, 20.0)  # the cap
    lo, hi, proof, margin, proven = _search(prove_up_to=0.37)
    assert margin == proof and margin in proven and 0.37 - 0.9 / 2 ** WIDEN_STEPS <= margin <= 0.37
    assert (lo[0], hi[0]) == pytest.approx((-10 * margin, 10 + 10 * margin))
    lo, hi, proof, margin, proven = _search(prove_up_to=0.05)  # only the least margin (proven by the caller)
    assert margin == proof == 0.1 and (lo[0], hi[0]) == (-1.0, 11.0)
    _, _, _, margin, proven = _search(prove_up_to=5.0, low=0.3, cap=0.2)  # a cap below the least: no widening
    assert margin == 0.3 and proven == []
