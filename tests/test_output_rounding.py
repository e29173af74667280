"""Decoded CKKS scores leave the client rounded to a grid no finer than the proven error bound.

A decryption at full precision carries noise that depends on the secret key; with the response
ciphertexts, a shared predictions file would let anyone solve for the key (Li and Micciancio, 2021).
The adapter client's decrypt rounds, so the online Client, `sei predict` and `sei batch decrypt`
(all of which decrypt through it) write only rounded scores. HEAD returned the raw decoding.

A rounded score is within the error bound e plus half the grid g of the float model, so the build proves
e + g/2 <= tolerance (rounding.error_budget). Before, it proved e <= tolerance only, and a model with e just
under the tolerance was served with rounded scores up to ~2 x the tolerance off.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from conftest import keyed_request
from sei_adapter_sklearn import packed_kernel as K
from sei_adapter_sklearn.bounds import output_grid, round_scores
from sei_adapter_sklearn.eiserver_accuracy import prove
from sei_adapter_sklearn.rounding import delivered_error, error_budget, grid_step
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression, Ridge

from sei_framework import Deployment, InvalidRequest, PluginError
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
    assert accuracy["error_bound"] + grid / 2 <= accuracy["tolerance"]  # the rounded error is within the tolerance


def test_the_grid_comes_from_the_proven_bound_only():
    assert output_grid({"error_bound": 3e-6}) == 2.0 ** -18
    assert output_grid({"error_bound": 2.0 ** -18}) == 2.0 ** -18
    assert output_grid(None) == 2.0 ** -10  # opted in to a model without a proof: ~ the default tolerance
    for bad in ({}, {"error_bound": 0}, {"error_bound": "x"}, {"error_bound": float("nan")}):
        with pytest.raises(InvalidRequest, match="accuracy description cannot be read"):
            output_grid(bad)
    np.testing.assert_array_equal(round_scores(np.array([0.3, -0.3, 1.24]), 0.5), [0.5, -0.5, 1.0])


TOL = 1e-3


def test_the_error_budget_leaves_room_for_the_rounding():
    assert error_budget(TOL) == TOL - 2.0**-11 and grid_step(error_budget(TOL)) == 2.0**-10
    assert error_budget(2.0**-9) == 2.0**-10  # a power of two: e = 2^-10 on its own grid, 3/4 of the tolerance
    assert grid_step(2.0**-18) == 2.0**-18 and grid_step(np.nextafter(2.0**-18, 1.0)) == 2.0**-17
    for tolerance in [*np.geomspace(1e-12, 1e6, 997), *(2.0**k for k in range(-40, 20))]:
        budget = error_budget(float(tolerance))
        assert tolerance / 2 <= budget and delivered_error(budget) <= tolerance, tolerance
        assert delivered_error(budget * (1 + 1e-9)) > tolerance, tolerance  # and no larger bound would do
    with pytest.raises(ValueError, match="tolerance"):
        error_budget(0.0)


def _largest(accepted, low: float, high: float) -> float:
    """The largest scale in [low, high] (to 0.1 %) that `accepted(scale)` holds for."""
    while high / low > 1.001:
        mid = float(np.sqrt(low * high))
        low, high = (mid, high) if accepted(mid) else (low, mid)
    return low


def _proves(check) -> bool:
    try:
        check()
        return True
    except ValueError:
        return False


W_PACKED = np.where(np.arange(64) % 3 == 0, -1.0, 1.0) * (0.5 + (np.arange(64) * 0.6180339887498949) % 1.0)
PROOFS = {  # name: (weights, feature bounds, the proof against the bare tolerance), the model times a scale
    "eiserver": (np.array([[1.0, -2.0, 3.0, 0.5]]), [-1.0, 1.0], lambda W: prove(W, [0.0], -1.0, 1.0, TOL)),
    "packed": (W_PACKED[None, :], [0.0, 1.0], lambda W: K.plan(W, [0.0], 0.0, 1.0, "single", TOL)),
}
"""The issue's EIServer measurement model (4 features) and a 64-feature packed model whose edge is its error bound."""


@pytest.mark.parametrize("name", ["packed", "eiserver"])
def test_a_model_proven_against_the_bare_tolerance_is_refused(name, tmp_path):
    """The old build's edge: the largest model whose error bound is within the tolerance, with no room for the
    rounding. Its bound is far above tolerance / 2, so rounded scores could miss the tolerance by up to ~2x;
    the build refuses it now, naming the rounding (HEAD served it)."""
    base, bounds, proof_at = PROOFS[name]
    scale = _largest(lambda s: _proves(lambda: proof_at(base * s)), 1.0, 1e9)
    bound = proof_at(base * scale).error_bound
    assert bound > 0.9 * TOL and delivered_error(bound) > 1.8 * TOL  # what HEAD's rounded scores could be off by
    model = LinearRegression()
    model.coef_, model.intercept_, model.n_features_in_ = base[0] * scale, 0.0, base.shape[1]
    joblib.dump(model, tmp_path / "m.joblib")
    config = {"name": "edge", "models": [{"name": "m", "adapter": f"sklearn-{name}", "path": "m.joblib",
                                          "options": {"feature_bounds": bounds}}]}  # fmt: skip
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(PluginError, match=r"above the tolerance 0\.001 less 0\.000488 of output rounding \(0\.000512\)"):
        Deployment.from_file(tmp_path / "svc.yaml").build(tmp_path / "build")


def test_a_description_whose_rounding_misses_its_tolerance_is_refused_by_the_client(diabetes):
    """A description from an older build (error bound above the budget) is refused before anything is encrypted."""
    folder, _, X = diabetes
    service = ScoringService.from_build(Deployment.from_file(folder / "svc.yaml").build(folder / "b-old").path)
    for name in ("packed", "eiserver"):
        described = service.describe()["models"][name]
        old = {**described, "accuracy": {**described["accuracy"], "error_bound": 0.9 * TOL}}
        client = service.adapters[name].client(old)  # no keys: the description is refused first
        with pytest.raises(InvalidRequest, match="plus half the output rounding's grid") as caught:
            client.encrypt(X[:1])
        assert caught.value.code == "unproven_model"


def test_rounded_scores_at_the_edge_stay_within_the_tolerance():
    """Measured, bulk kernel, 4096 random in-bound rows x 2 outputs: at the largest model proven against the bare
    tolerance (what builds proved before), rounding to 2^-9 takes scores past it; at the largest model proven
    against error_budget (what the adapter proves now), none is."""
    from test_packed_accuracy import EDGES, kernel_scores

    make, low, high, lo, hi, _ = EDGES["weights"]
    X = np.random.default_rng(0).uniform(lo, hi, (4096, 64))
    past = {}
    for max_error in (TOL, error_budget(TOL)):
        def proof(w: float, max_error: float = max_error) -> K.Plan:
            return K.plan(*make(w), lo, hi, "bulk", TOL, max_error=max_error)

        w = _largest(lambda w, proof=proof: _proves(lambda: proof(w)), low, high)
        plan = proof(w)
        W, b = make(w)
        rounded = round_scores(kernel_scores(plan.params, W, b, X), grid_step(plan.error_bound))
        errors = np.abs(rounded - (X @ W.T + b))
        assert errors.max() <= delivered_error(plan.error_bound)
        past[max_error] = int((errors > TOL).sum())
    assert past[TOL] > 50 and past[error_budget(TOL)] == 0, past  # measured: 125 of 8192, and none
