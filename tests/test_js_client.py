"""The JS client's unit tests (clients/js/test/unit.test.js), run in headless Chromium against vectors the Python
side computes here, a real in-process ScoringService, and hostile answers (garbage, a redirect, wrong sizes,
tampered ciphertexts, error bodies): each must be a SeiError with the Python client's code, never a number."""

from __future__ import annotations

import base64
import json
import subprocess

import numpy as np
import pytest
import yaml
from browser import JS_CLIENT, chromium_fixture, site_fixture  # noqa: F401
from conftest import with_bounds

from sei_framework import Deployment, key_id_for
from sei_framework.fingerprint import description_fingerprint
from sei_framework.serving import ScoringService


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(status: int, answer: object) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(answer).encode()


@pytest.fixture(scope="module")
def service(tmp_path_factory, model_files) -> ScoringService:
    folder = tmp_path_factory.mktemp("js-unit")
    config = {
        "name": "jsunit",
        "models": [with_bounds({"name": "digits", "adapter": "sklearn-packed", "path": str(model_files["digits"][0])})],
        "key_transport": {"name": "inline"},
    }
    (folder / "svc.yaml").write_text(yaml.safe_dump(config))
    return ScoringService.from_build(Deployment.from_file(folder / "svc.yaml").build(folder / "build").path)


def _hostile(service: ScoringService, kind: str):
    """A service that describes itself truthfully and answers predictions with `kind` of hostility."""

    def handle(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        request = json.loads(body)
        answer, status = service.handle(body)
        if request.get("op") == "describe":
            return _json(status, answer)
        if kind == "garbage":
            return 200, {"Content-Type": "text/html"}, b"<html>an error page of a proxy</html>"
        if kind == "redirect":
            return 302, {"Location": "http://198.51.100.7/score"}, b""
        if kind == "error":
            return _json(400, {"error": {"code": "invalid_data", "message": "data.ciphertexts: Field required"}})
        if kind == "wrong_size":
            return _json(200, {"result": [b64(bytes(100))] * len(answer["result"])})
        if kind == "wrong_count":
            return _json(200, {"result": answer["result"] + answer["result"]})
        if kind == "changed":  # a model rebuilt between describe and predict, and again after the client re-described
            return _json(409, {"error": {"code": "description_changed", "message": "model 'digits' is not the version"}})
        if kind == "tampered":  # a high bit of the first score's word flipped: decrypts to a wrapped value
            blob = bytearray(base64.b64decode(answer["result"][0]))
            blob[24 + 3] ^= 0x40
            return _json(200, {"result": [b64(bytes(blob)), *answer["result"][1:]]})
        raise AssertionError(kind)

    return handle


@pytest.fixture(scope="module")
def vectors(service, site, tmp_path_factory, model_files):
    """What the Python side computes, for the JS tests to match: written to /vectors/vectors.json."""
    from sei_adapter_sklearn.packed_kernel import Params
    from sei_adapter_sklearn.packed_kernel.wire import _expand_a

    description = service.describe()
    described = description["models"]["digits"]
    params = Params.from_json(described["encryption"]["params"])
    client = service.adapters["digits"].client(described)
    secret, public = client.generate_keys()
    _, other_public = client.generate_keys()
    seed = bytes(range(32))
    expanded = _expand_a(seed, np.array(params.data_primes, dtype=np.uint64), params.poly_modulus_degree)
    rng = np.random.default_rng(7)
    scores = rng.normal(0, 3, size=(4, described["n_outputs"]))
    readout = client.interpret(scores)
    _, _, X = model_files["digits"]
    data = {
        "description": description,
        "fingerprint": params.fingerprint().hex(),
        "key_scheme": described["key_scheme"],
        "secret": b64(secret), "public": b64(public), "other_public": b64(other_public), "key_id": key_id_for(public),
        "seed": b64(seed), "primes": list(params.data_primes), "expanded_head": expanded[:, :16].tolist(),
        "expanded_tail": expanded[:, -4:].tolist(),
        "scores": scores.tolist(), "predictions": readout.predictions.tolist(),
        "probabilities": readout.probabilities.tolist(), "rows": X[:2].tolist(),
        "description_sha256": description_fingerprint(described),
    }  # fmt: skip
    folder = tmp_path_factory.mktemp("vectors")
    (folder / "vectors.json").write_text(json.dumps(data))
    site.mount("/vectors/", folder)

    def score(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        answer, status = service.handle(body)
        return _json(status, answer)

    site.route("/score", score)
    for kind in ("garbage", "redirect", "error", "wrong_size", "wrong_count", "tampered", "changed"):
        site.route(f"/hostile/{kind}", _hostile(service, kind))
    return data


def test_unit_tests_pass_in_chromium(chromium, site, vectors, tmp_path):
    page = chromium.open(site.url("/sei/test/index.html"))
    result = chromium.wait_result(page)
    shot = chromium.screenshot(page, tmp_path / "shots" / "unit.png")  # the harness's helper, for the page tests
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["failed"] == [], result["failed"]
    assert len(result["passed"]) >= 15, result["passed"]
    # description_changed: described again once and sent again once (describe, predict, describe, predict), then failed
    assert [p for m, p, _ in site.requests if p == "/hostile/changed"] == ["/hostile/changed"] * 4
    # the browser logs each 4xx answer itself; the hostile error routes' 400 and 409 are the only ones expected
    expected = ("the server responded with a status of 400 (Bad Request)", "the server responded with a status of 409 (Conflict)")
    assert [e for e in chromium.errors_of(page) if not e.endswith(expected)] == []


def test_a_failing_js_test_is_reported(chromium, site, vectors):
    """The runner itself: a page whose test throws reports it by name (the harness cannot pass a broken suite)."""
    page = chromium.open(site.url("/sei/test/index.html?only=__no_such_test__"))
    assert chromium.wait_result(page) == {"passed": [], "failed": []}
    page = chromium.open(site.url("/sei/test/failing.html"))
    result = chromium.wait_result(page)
    assert result["passed"] == [] and [f["name"] for f in result["failed"]] == ["fails on purpose"]


def test_the_library_a_page_loads_is_at_most_3_mb(chromium, site, vectors):
    """What a page fetches for the library (its modules, node-seal's JS and wasm, the hash modules), by the bytes
    the site served, within the issue's 3 MB budget; nothing comes from elsewhere (the site is the only origin)."""
    site.requests.clear()
    page = chromium.open(site.url("/sei/test/blank.html"))
    chromium.wait_result(page)
    page.evaluate("async () => { await sei.loadSeal(); }")
    paths = {path for method, path, _ in site.requests if method == "GET" and path.startswith(("/sei/src/", "/sei/node_modules/"))}
    assert any(p.endswith(".wasm") for p in paths) and "/sei/src/index.js" in paths
    files = [site.file_for(p) for p in paths]
    assert all(files), paths
    total = sum(f.stat().st_size for f in files if f is not None)
    assert total <= 3 * 1024 * 1024, f"{total} bytes"


def test_the_library_type_checks():
    """tsc (a pinned devDependency, `make js-client`) checks the JSDoc types of clients/js/src, strict."""
    tsc = JS_CLIENT / "node_modules" / ".bin" / "tsc"
    if not tsc.is_file():
        pytest.skip("TypeScript is not installed in clients/js (run `make js-client`)")
    done = subprocess.run([str(tsc), "-p", "tsconfig.json"], cwd=JS_CLIENT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
