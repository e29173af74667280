"""Byte compatibility of the JS client (clients/js, in headless Chromium) with the Python client, through a real
in-process ScoringService behind a route of the test site:

(a) the JS client makes the keys and encrypts, the service answers, the Python client decrypts with those keys;
(b) the Python client makes the keys and encrypts, the service answers, the JS client decrypts with those keys.
Keys cross as the kernel's own secret blob (SEAL's serialization inside), exported on one side, imported on the other.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import yaml
from browser import chromium_fixture, site_fixture  # noqa: F401
from conftest import with_bounds

from sei_framework import Deployment
from sei_framework.fingerprint import FINGERPRINT_FIELD, description_fingerprint
from sei_framework.serving import ScoringService

SENT: list[tuple[str, str | None]] = []
"""(model, description fingerprint) of each predict request the service received."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_files, site) -> ScoringService:
    """digits (single mode, 64 features, 10 classes) and diabetes (bulk, 10 features) behind POST /score."""
    folder = tmp_path_factory.mktemp("js-cross")
    config = {
        "name": "jscross",
        "models": [
            with_bounds({"name": "digits", "adapter": "sklearn-packed", "path": str(model_files["digits"][0])}),
            with_bounds({"name": "diabetes", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0]),
                         "options": {"mode": "bulk"}}),
        ],
        "key_transport": {"name": "inline"},
    }  # fmt: skip
    (folder / "svc.yaml").write_text(yaml.safe_dump(config))
    scoring = ScoringService.from_build(Deployment.from_file(folder / "svc.yaml").build(folder / "build").path)

    def score(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        request = json.loads(body)
        if request.get("op") != "describe":
            SENT.append((request.get("model"), request.get(FINGERPRINT_FIELD)))
        answer, status = scoring.handle(body)
        return status, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    site.route("/score", score)
    return scoring


@pytest.fixture(scope="module")
def page(chromium, site, service):
    page = chromium.open(site.url("/sei/test/blank.html"))
    chromium.wait_result(page)
    return page


def python_client(service: ScoringService, name: str, secret: bytes, public: bytes):
    client = service.adapters[name].client(service.describe()["models"][name])
    client.use_keys(secret, public)
    return client


def test_js_request_decrypts_in_python(page, service, model_files, site):
    """(a) JS keys and encryption; the service's answer decrypted by the Python client with the JS keys."""
    _, digits, X = model_files["digits"]
    rows = X[:3]
    out = page.evaluate(
        """async ([uri, rows]) => {
          const client = new sei.Client(uri, { keyStore: 'memory' });
          const model = await client.model('digits');
          const body = { model: 'digits', key_id: model.keyId, data: model.encrypt(rows), public_keys: sei.toBase64(model.publicKeys) };
          const answer = await client.call(body);
          const pair = await client.keyStore.get(model.params.keyScheme);
          return { result: answer.result, secret: sei.toBase64(pair.secret), public: sei.toBase64(pair.public),
                   keyId: model.keyId, js: model.decrypt(answer.result, rows.length) };
        }""",
        [site.url("/score"), rows.tolist()],
    )
    public = base64.b64decode(out["public"])
    from sei_framework import key_id_for

    assert out["keyId"] == key_id_for(public)
    client = python_client(service, "digits", base64.b64decode(out["secret"]), public)
    scores = client.decrypt(out["result"], len(rows))
    np.testing.assert_array_equal(scores, np.array(out["js"]))  # the same keys decrypt the same bytes alike
    assert np.abs(scores - digits.decision_function(rows)).max() <= 1e-3
    assert (client.interpret(scores).predictions == digits.predict(rows)).all()


def test_python_request_decrypts_in_js(page, service, model_files):
    """(b) Python keys and encryption; the service's answer decrypted by the JS client with the Python keys."""
    _, digits, X = model_files["digits"]
    rows = X[3:6]
    described = service.describe()["models"]["digits"]
    client = service.adapters["digits"].client(described)
    secret, public = client.generate_keys()
    client.use_keys(secret, public)
    from sei_framework import key_id_for

    body = {"model": "digits", "key_id": key_id_for(public), "data": client.encrypt(rows), "public_keys": b64(public)}
    answer, status = service.handle(json.dumps(body))
    assert status == 200, answer
    out = page.evaluate(
        """async ([description, secret, pub, result, n]) => {
          const store = sei.memoryKeyStore();
          const params = sei.Params.fromJson(description.models.digits.encryption.params);
          await store.put(params.keyScheme, { secret: sei.fromBase64(secret), public: sei.fromBase64(pub) });
          const client = new sei.Client('', { keyStore: store, description });
          const model = await client.model('digits');
          const scores = model.decrypt(result, n);
          return { keyId: model.keyId, ...model.interpret(scores) };
        }""",
        [service.describe(), b64(secret), b64(public), answer["result"], len(rows)],
    )
    assert out["keyId"] == key_id_for(public)
    np.testing.assert_array_equal(np.array(out["scores"]), client.decrypt(answer["result"], len(rows)))
    assert out["predictions"] == digits.predict(rows).tolist()
    np.testing.assert_allclose(out["probabilities"], digits.predict_proba(rows), atol=1e-3)


def test_js_predict_end_to_end_single_and_bulk(page, service, model_files, site):
    """The JS client's predict() through the service: describe, keys, inline publishing, both modes."""
    _, digits, X = model_files["digits"]
    _, diabetes, Xd = model_files["diabetes"]
    SENT.clear()
    out = page.evaluate(
        """async ([uri, digits, diabetes]) => {
          const client = new sei.Client(uri, { keyStore: 'memory' });
          const a = await client.predict('digits', digits);
          const b = await client.predict('diabetes', diabetes);
          return { a, b };
        }""",
        [site.url("/score"), X[:20].tolist(), Xd[:5].tolist()],
    )
    assert out["a"]["predictions"] == digits.predict(X[:20]).tolist()
    np.testing.assert_allclose(out["a"]["scores"], digits.decision_function(X[:20]), atol=1e-3)
    np.testing.assert_allclose(out["a"]["probabilities"], digits.predict_proba(X[:20]), atol=1e-3)
    np.testing.assert_allclose(out["b"]["predictions"], diabetes.predict(Xd[:5]), atol=1e-3)
    assert out["b"]["probabilities"] is None
    # every request carried the fingerprint of the description it was made for, as the Python client computes it
    models = service.describe()["models"]
    assert sorted(set(SENT)) == sorted((name, description_fingerprint(models[name])) for name in ("digits", "diabetes"))
