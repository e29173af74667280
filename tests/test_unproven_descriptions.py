"""A description without `accuracy` (an older build, or a hand-made one) is refused unless the caller opts in.

Without it the client has no feature bounds to check rows against and no proven score range: HEAD
encrypted any row and returned a wrapped score as a prediction (a true 1800 came back as about -248).
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from sklearn.linear_model import LinearRegression

from sei_framework import Client, Deployment, InvalidRequest
from sei_framework.serving import ScoringService


def _service(folder: Path, adapter: str) -> ScoringService:
    model = LinearRegression()
    model.coef_, model.intercept_, model.n_features_in_ = np.array([1.0]), 0.0, 1
    joblib.dump(model, folder / "m.joblib")
    config = {"name": "unproven", "models": [
        {"name": "m", "adapter": adapter, "path": "m.joblib", "options": {"feature_bounds": [-100, 100]}}]}
    (folder / "svc.yaml").write_text(yaml.safe_dump(config))
    return ScoringService.from_build(Deployment.from_file(folder / "svc.yaml").build(folder / "build").path)


def _keyed(service: ScoringService, description: dict, allow_unproven: bool):
    from sei_transport_inline import InlineTransport

    from sei_framework import key_id_for

    client = service.adapters["m"].client(description)
    client.allow_unproven = allow_unproven
    secret, public = client.generate_keys()
    client.use_keys(secret, public)
    key_id = key_id_for(public)
    return client, {"model": "m", "key_id": key_id}, InlineTransport(InlineTransport.Options()).publish(key_id, public)


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> ScoringService:
    return _service(tmp_path_factory.mktemp("packed"), "sklearn-packed")


def test_packed_client_refuses_a_description_without_accuracy(packed):
    described = packed.describe()["models"]["m"]
    assert "accuracy" in described
    bare = {k: v for k, v in described.items() if k != "accuracy"}
    rows = np.array([[1800.0]])  # far outside [-100, 100]: with the legacy scales it wraps around +-1024
    opted, head, publish = _keyed(packed, bare, allow_unproven=True)
    answer, status = packed.handle(json.dumps({**head, **publish, "data": opted.encrypt(rows)}))
    assert status == 200, answer
    refusing = packed.adapters["m"].client(bare)
    refusing.use_keys(opted._keys.secret_bytes(), opted._keys.public_bytes())
    for call in (lambda: refusing.encrypt(rows), lambda: refusing.decrypt(answer["result"], 1)):
        with pytest.raises(InvalidRequest, match="states no proven accuracy.*allow_unproven=True") as caught:
            call()
        assert caught.value.code == "unproven_model"
    # the proven description refuses the row before encryption instead
    proven = packed.adapters["m"].client(described)
    proven.use_keys(opted._keys.secret_bytes(), opted._keys.public_bytes())
    with pytest.raises(InvalidRequest) as caught:
        proven.encrypt(rows)
    assert caught.value.code == "input_out_of_bounds"


def test_opting_in_serves_an_in_bound_row(packed):
    bare = {k: v for k, v in packed.describe()["models"]["m"].items() if k != "accuracy"}
    client, head, publish = _keyed(packed, bare, allow_unproven=True)
    answer, status = packed.handle(json.dumps({**head, **publish, "data": client.encrypt(np.array([[42.5]]))}))
    assert status == 200, answer
    assert abs(client.decrypt(answer["result"], 1)[0, 0] - 42.5) <= 1e-3


def test_the_client_flag_reaches_the_adapter_client(packed):
    described = packed.describe()
    bare = {**described, "models": {"m": {k: v for k, v in described["models"]["m"].items() if k != "accuracy"}}}
    assert Client.offline(bare).model("m").allow_unproven is False
    with pytest.raises(InvalidRequest, match="states no proven accuracy"):
        Client.offline(bare).model("m").encrypt(np.array([[1.0]]))
    assert Client.offline(bare, allow_unproven=True).model("m").allow_unproven is True


def test_eiserver_client_refuses_a_description_without_accuracy(tmp_path):
    service = _service(tmp_path, "sklearn-eiserver")
    bare = {k: v for k, v in service.describe()["models"]["m"].items() if k != "accuracy"}
    client = service.adapters["m"].client(bare)
    for call in (lambda: client.encrypt(np.array([[1800.0]])), lambda: client.decrypt([["x"]], 1)):
        with pytest.raises(InvalidRequest, match="states no proven accuracy") as caught:
            call()
        assert caught.value.code == "unproven_model"


def test_the_unproven_parameter_choice_is_the_benchmarks_only():
    """HEAD's ServerModel fell back to `choose_params` (scales from a score bound alone, nothing proven)."""
    from sei_adapter_sklearn import packed_kernel

    assert not hasattr(packed_kernel, "choose_params")
    with pytest.raises(TypeError):
        packed_kernel.ServerModel(np.ones((1, 4)), np.zeros(1))  # type: ignore[call-arg]
