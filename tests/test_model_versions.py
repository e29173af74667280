"""Issue 16, model versions: every request carries the fingerprint of the description the client used, the
service refuses another version's (`description_changed`), and the client describes again once and resends."""

from __future__ import annotations

import copy
import json

import joblib
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from test_client_retry import Answer, fast_client, serve

from sei_framework import Deployment, ServiceError
from sei_framework.fingerprint import description_fingerprint
from sei_framework.keys import Keyring
from sei_framework.serving import ScoringService


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Two builds of model "m" behind the same name, with the same weights (so the same encryption parameters
    and keys) but other class labels: version 2 is what a redeploy after relabelling serves."""
    folder = tmp_path_factory.mktemp("versions")
    X, y = load_iris(return_X_y=True)
    labels = np.array(["ant", "bee", "cow"])
    first = LogisticRegression(max_iter=2000).fit(X, labels[y])
    second = copy.deepcopy(first)
    second.classes_ = np.array(["cat", "dog", "emu"])
    services, models = [], []
    for version, model in ((1, first), (2, second)):
        joblib.dump(model, folder / f"m{version}.joblib")
        config = {
            "name": "versions",
            "models": [{"name": "m", "adapter": "sklearn-packed", "path": str(folder / f"m{version}.joblib"),
                        "options": {"feature_bounds": [0.0, 8.0]}}],
            "key_transport": {"name": "inline"},
        }  # fmt: skip
        (folder / f"v{version}.yaml").write_text(yaml.safe_dump(config))
        build = Deployment.from_file(folder / f"v{version}.yaml").build(folder / f"build{version}")
        services.append(ScoringService.from_build(build.path))
        models.append(model)
    return services, models, X


def _codes(services: list, codes: list[str], route=None):
    """Answer each request with `route(request)` (default: the newest service), recording each answer's code."""

    def handle(n: int, body: bytes) -> Answer:
        service = route(json.loads(body)) if route else services[-1]
        answer, status = service.handle(body)
        codes.append(answer.get("error", {}).get("code", "ok"))
        return status, answer

    return handle


def test_a_long_lived_client_gets_the_new_labels_after_a_redeploy(versions, tmp_path):
    (first, second), (model1, model2), X = versions
    rows = X[::15]
    live, codes = [first], []
    with serve(_codes(live, codes)) as (uri, received):
        client = fast_client(uri, keyring=Keyring(tmp_path / "keys"))
        before = client.predict("m", rows)
        assert list(before.predictions) == list(model1.predict(rows))
        live.append(second)  # the redeploy: same name, same parameters, other labels
        seen: list[int] = []
        after = client.predict("m", rows, batch_size=4, progress=seen.append)
        bodies = [json.loads(body) for body in received]
    assert list(after.predictions) == list(model2.predict(rows))  # never "ant", "bee", "cow"
    assert set(after.predictions) <= {"cat", "dog", "emu"}
    np.testing.assert_allclose(after.probabilities, model2.predict_proba(rows), atol=1e-3)
    assert sum(seen) == len(rows)  # the second pass reports no row twice
    assert codes == ["ok", "ok", "description_changed", "ok", "ok", "ok", "ok"]  # describe, predict; refused, describe, 3 batches
    fingerprints = [body.get("description_sha256") for body in bodies if body.get("op") != "describe"]
    old, new = (description_fingerprint(service.describe()["models"]["m"]) for service in (first, second))
    assert old != new and fingerprints == [old, old, new, new, new]


def test_a_second_mismatch_is_an_error_not_a_prediction(versions, tmp_path):
    """Replicas serving different builds: describe reaches the old one, predict the new one."""
    (first, second), _, X = versions
    codes: list[str] = []
    route = lambda request: first if request.get("op") == "describe" else second  # noqa: E731
    with serve(_codes([first, second], codes, route)) as (uri, _):
        client = fast_client(uri, keyring=Keyring(tmp_path / "keys"))
        with pytest.raises(ServiceError) as caught:
            client.predict("m", X[:3])
    assert (caught.value.code, caught.value.status) == ("description_changed", 409)
    assert "changed on the service again" in caught.value.message
    assert codes == ["ok", "description_changed", "ok", "description_changed"]  # describe, refused, describe, refused


def test_predict_encrypted_describes_again_too(versions, tmp_path):
    (first, second), (_, model2), X = versions
    live: list = [first]
    with serve(_codes(live, [])) as (uri, _):
        client = fast_client(uri, keyring=Keyring(tmp_path / "keys"))
        client.predict_encrypted("m", X[:2])
        live.append(second)
        scores = client.predict_encrypted("m", X[:2])
        assert list(client.model("m").interpret(scores).predictions) == list(model2.predict(X[:2]))


def test_the_service_checks_the_fingerprint(versions):
    (first, second), _, X = versions
    probe = second.adapters["m"].client(second.describe()["models"]["m"])
    secret, public = probe.generate_keys()
    probe.use_keys(secret, public)
    from sei_framework import key_id_for
    from sei_transport_inline import InlineTransport

    key_id = key_id_for(public)
    body = {"model": "m", "key_id": key_id, "data": probe.encrypt(X[:2]),
            **InlineTransport(InlineTransport.Options()).publish(key_id, public)}  # fmt: skip
    own = description_fingerprint(second.describe()["models"]["m"])
    stale = description_fingerprint(first.describe()["models"]["m"])
    answer, status = second.handle(json.dumps({**body, "description_sha256": stale}))
    assert (status, answer["error"]["code"]) == (409, "description_changed")
    assert "describe the service again" in answer["error"]["message"]
    for bad in ("abc", own.upper(), 7):
        answer, status = second.handle(json.dumps({**body, "description_sha256": bad}))
        assert (status, answer["error"]["code"]) == (400, "invalid_request") and "description_sha256" in answer["error"]["message"]
    for sent in ({"description_sha256": own}, {}):  # without one: an older client, served as before (docs/protocol.md)
        answer, status = second.handle(json.dumps({**body, **sent}))
        assert status == 200 and "result" in answer
