"""The browser page in headless Chromium: 10 MNIST test digits drawn on its canvas, encrypted in its Worker,
scored by the tutorial's model (sklearn-packed) in the local target, which serves the page too; the answers
equal plaintext predict() of the pixels the canvas holds. Hostile services get a clear error, never a number."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from browser import StaticSite, chromium_fixture  # noqa: F401  (fixture chromium)
from conftest import ROOT, SEED_MODEL, load_mnist, load_seed_model, with_bounds

sys.path.insert(0, str(ROOT / "tools"))
from build_page import build_page  # noqa: E402

from sei_framework import Deployment  # noqa: E402

DIGITS = 10
SCREENSHOT_COPY = ROOT / "screenshot.png"


@pytest.fixture(scope="module")
def page_dir(tmp_path_factory) -> Path:
    try:
        return build_page(tmp_path_factory.mktemp("page") / "page")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def mnist_service(tmp_path_factory, page_dir, model_files):
    """The tutorial's MNIST model and a diabetes regressor, packed, in the local target serving the page at /page/."""
    tmp = tmp_path_factory.mktemp("mnist-page")
    config = {
        "name": "mnist-page",
        "models": [{"name": "mnist", "adapter": "sklearn-packed", "path": str(SEED_MODEL),
                    "options": {"feature_bounds": [0, 1]}},
                   with_bounds({"name": "diabetes", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0])})],
        "key_transport": {"name": "inline"},
        "deploy": {"target": "local", "options": {"state_dir": str(tmp / "state"), "page": str(page_dir)}},
    }  # fmt: skip
    (tmp / "mnist-page.yaml").write_text(yaml.safe_dump(config))
    deployment = Deployment.from_file(tmp / "mnist-page.yaml")
    endpoint = deployment.deploy(tmp / "build")
    try:
        yield endpoint.scoring_uri.removesuffix("score")
    finally:
        deployment.delete()


def open_page(chromium, url: str):
    page = chromium.open(url)
    page.wait_for_function("() => document.documentElement.dataset.ready === 'true'", timeout=30_000)
    return page


def test_ten_drawn_digits_match_plaintext_predict(chromium, mnist_service, tmp_path):
    X, _ = load_mnist(DIGITS)
    page = open_page(chromium, mnist_service + "page/")
    assert page.evaluate("() => window.seiPage.connect()") is True
    assert page.input_value("#model") == "mnist"  # the model the canvas feeds comes first
    assert page.is_visible("#draw") and not page.is_visible("#features")
    drawn, answers = [], []
    for pixels in X:
        page.evaluate("(pixels) => window.seiPage.setPixels(pixels)", pixels.tolist())
        canvas = page.evaluate("() => window.seiPage.canvasFeatures()")  # what the canvas holds, read back
        answer = page.evaluate("() => window.seiPage.predict()")
        assert "error" not in answer, answer["error"]
        assert answer["features"] == canvas  # the page sent what the canvas holds
        assert page.text_content("#prediction") == answer["shown"] == str(answer["prediction"])
        drawn.append(canvas)
        answers.append(answer)
    model = load_seed_model()
    canvas_rows = np.array(drawn)
    np.testing.assert_allclose(canvas_rows, X, atol=0.5 / 255)  # the exact pixels, 8-bit as the canvas keeps them
    assert [a["prediction"] for a in answers] == model.predict(canvas_rows).tolist()
    probabilities = np.array([a["probabilities"] for a in answers])
    np.testing.assert_allclose(probabilities, model.predict_proba(canvas_rows), atol=2e-3)
    for answer in answers:
        assert answer["bytesSent"] > 0 and set(answer["steps"]) >= {"keys", "encrypt", "service", "decrypt", "total"}
    assert page.is_visible("#answer") and not page.is_visible("#error")
    shot = chromium.screenshot(page, tmp_path / "page.png")
    SCREENSHOT_COPY.write_bytes(shot.read_bytes())  # for the closing note; git ignores it
    assert chromium.errors_of(page) == []


def test_the_features_form_of_another_packed_model(chromium, mnist_service, model_files):
    _, model, X = model_files["diabetes"]
    page = open_page(chromium, mnist_service + "page/")
    assert page.evaluate("() => window.seiPage.connect()") is True
    page.select_option("#model", "diabetes")
    assert page.is_visible("#features") and not page.is_visible("#draw")
    inputs = page.locator("#features input")
    assert inputs.count() == 10
    for row in X[:2]:
        for i, value in enumerate(row):
            inputs.nth(i).fill(repr(float(value)))
        answer = page.evaluate("() => window.seiPage.predict()")
        assert "error" not in answer, answer["error"]
        assert answer["features"] == row.tolist() and answer["probabilities"] is None  # a regressor
        assert abs(answer["prediction"] - model.predict(row[None])[0]) < 0.05
    inputs.nth(3).fill("")
    answer = page.evaluate("() => window.seiPage.predict()")
    assert "Error (invalid_request): feature f3 is not a number" in answer["error"]
    assert not page.is_visible("#answer")


def test_the_page_is_served_with_its_policy_and_nothing_else(mnist_service):
    index = requests.get(mnist_service + "page/", timeout=10)
    assert index.status_code == 200 and "script-src 'self'" in index.headers["Content-Security-Policy"]
    wasm = requests.get(mnist_service + "page/vendor/node-seal/seal_throws.wasm", timeout=10)
    assert wasm.headers["Content-Type"] == "application/wasm"
    for path in ("page/../sei_build.json", "page/%2e%2e/sei_build.json", "page/vendor/", "page/.hidden", "page/lib", "page/a%00b.js"):
        answer = requests.get(mnist_service + path, timeout=10)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", path
    assert requests.post(mnist_service + "page/index.html", timeout=10).status_code == 405


def test_the_pages_files_are_revalidated_by_a_strong_etag(mnist_service, page_dir):
    """Each file: `no-cache` and a strong ETag, its content's SHA-256; If-None-Match with that tag is a 304 without
    the body (weak comparison, lists, `*`), any other tag the file; new bytes at the same path, a new tag."""
    url = mnist_service + "page/worker.js"
    first = requests.get(url, timeout=10)
    tag = first.headers["ETag"]
    assert first.status_code == 200 and tag == f'"{hashlib.sha256(first.content).hexdigest()}"'
    assert first.headers["Cache-Control"] == "no-cache"
    assert requests.get(mnist_service + "page/", timeout=10).headers["ETag"] != tag  # per file
    for header in (tag, f'"other", {tag}', f"W/{tag}", "*"):
        again = requests.get(url, headers={"If-None-Match": header}, timeout=10)
        assert again.status_code == 304 and again.content == b"", header
        assert again.headers["ETag"] == tag and again.headers["Cache-Control"] == "no-cache", header
    assert requests.head(url, headers={"If-None-Match": tag}, timeout=10).status_code == 304
    for header in ('"other"', tag[:-2] + '"', tag.strip('"'), ""):
        assert requests.get(url, headers={"If-None-Match": header}, timeout=10).content == first.content, header
    script = page_dir / "worker.js"
    kept = script.read_bytes()
    try:
        script.write_bytes(kept + b"// redeployed\n")  # a redeploy: other bytes under the same name
        changed = requests.get(url, headers={"If-None-Match": tag}, timeout=10)
        assert changed.status_code == 200 and changed.content.endswith(b"// redeployed\n")
        assert changed.headers["ETag"] == f'"{hashlib.sha256(changed.content).hexdigest()}"' != tag
    finally:
        script.write_bytes(kept)


def _truncated(answer: dict) -> dict:
    blob = base64.b64decode(answer["result"][0])
    return {**answer, "result": [base64.b64encode(blob[: len(blob) // 2]).decode()]}


HOSTILE = {
    "garbage": lambda real: (200, {"Content-Type": "text/html"}, b"<html>not an answer</html>"),
    "garbage_json": lambda real: (200, {"Content-Type": "application/json"}, b'{"result": ["AAAAAAAA"]}'),
    "wrong_size": lambda real: (200, {"Content-Type": "application/json"}, json.dumps(_truncated(real())).encode()),
    "extra_ciphertext": lambda real: (
        200, {"Content-Type": "application/json"},
        json.dumps({"result": real()["result"] * 2}).encode(),
    ),  # fmt: skip
    "result_not_a_list": lambda real: (200, {"Content-Type": "application/json"}, b'{"result": 7}'),
    "redirect": lambda real: (307, {"Location": "http://127.0.0.1:9/score"}, b""),
    "server_error": lambda real: (500, {"Content-Type": "text/plain"}, b"Internal Server Error"),
}
EXPECTED_CODE = {
    "garbage": "http_error", "garbage_json": "invalid_response", "wrong_size": "invalid_response",
    "extra_ciphertext": "invalid_response", "result_not_a_list": "invalid_response", "redirect": "redirect",
    "server_error": "http_error",
}  # fmt: skip


@pytest.fixture(scope="module")
def hostile_site(page_dir, mnist_service):
    """The page and a fake /score on one origin: describe and predict go to the real service, then `mode`
    says how the answer to a prediction is spoiled."""
    state: dict[str, Any] = {"mode": "honest"}

    def real(body: bytes):
        return lambda: requests.post(mnist_service + "score", data=body, timeout=60,
                                     headers={"Content-Type": "application/json"}).json()  # fmt: skip

    def handle(body: bytes, headers: dict) -> tuple[int, dict, bytes]:
        request = json.loads(body)
        if request.get("op") != "describe" and state["mode"] == "together":
            # honest, but no prediction is answered before the other one has arrived: two in flight at once
            state["bodies"].append((request["data"]["n_rows"], len(body)))
            state["barrier"].wait(timeout=60)
        if request.get("op") == "describe" or state["mode"] in ("honest", "together"):
            return 200, {"Content-Type": "application/json"}, json.dumps(real(body)()).encode()
        return HOSTILE[state["mode"]](real(body))

    site = StaticSite()
    site.mount("/page/", page_dir)
    site.route("/score", handle)
    site.start()
    try:
        yield site, state
    finally:
        site.stop()


TWO_AT_ONCE = """async ([uri, first, second]) => {
  const worker = new Worker(new URL('worker.js', location.href), { type: 'module' });
  const ask = (id, rows) => new Promise((resolve) => {
    worker.addEventListener('message', (event) => { if (event.data.id === id) resolve(event.data); });
    worker.postMessage({ id, op: 'predict', uri, token: '', store: 'memory', model: 'mnist', rows });
  });
  try {
    return await Promise.all([ask(1, first), ask(2, second)]);
  } finally {
    worker.terminate();
  }
}"""


def test_two_predictions_in_flight_at_once_get_their_own_answers_times_and_bytes(chromium, hostile_site):
    """The page's Worker with two predictions of one model in flight together (the service answers neither before
    both arrived): each answer is its own rows', and its times and bytes are its call's alone."""
    site, state = hostile_site
    X, _ = load_mnist(17)
    first, second = X[:1], X[1:17]  # 1 row and 16: one request each
    page = open_page(chromium, site.url("/page/index.html"))
    state.update(mode="together", bodies=[], barrier=threading.Barrier(2))
    try:
        answers = page.evaluate(TWO_AT_ONCE, [site.url("/score"), first.tolist(), second.tolist()])
    finally:
        state["mode"] = "honest"
    model = load_seed_model()
    assert [a["ok"] for a in answers] == [True, True], answers
    assert answers[0]["result"]["predictions"] == model.predict(first).tolist()
    assert answers[1]["result"]["predictions"] == model.predict(second).tolist()
    sent = dict(state["bodies"])  # rows -> bytes of that request's body, as the service received it
    assert sorted(sent) == [1, 16] and len(state["bodies"]) == 2
    assert [a["bytesSent"] for a in answers] == [sent[1], sent[16]]  # each its own, not the other's too
    for answer in answers:
        steps = answer["steps"]
        assert set(steps) == {"keys", "encrypt", "service", "decrypt", "total"} and min(steps.values()) >= 0
        assert steps["keys"] + steps["encrypt"] + steps["service"] + steps["decrypt"] == pytest.approx(steps["total"])
    # each call timed its own encryption and decryption (a shared timer gives both the same figures)
    assert answers[0]["steps"]["encrypt"] != answers[1]["steps"]["encrypt"]
    assert answers[0]["steps"]["decrypt"] != answers[1]["steps"]["decrypt"]
    assert chromium.errors_of(page) == []


def test_hostile_answers_show_a_clear_error_and_never_a_number(chromium, hostile_site, tmp_path):
    site, state = hostile_site
    X, _ = load_mnist(1)
    page = open_page(chromium, site.url("/page/index.html"))  # the test site serves no folder index
    assert page.evaluate("() => window.seiPage.connect()") is True
    page.select_option("#model", "mnist")
    page.evaluate("(pixels) => window.seiPage.setPixels(pixels)", X[0].tolist())
    for mode in HOSTILE:
        state["mode"] = "honest"
        good = page.evaluate("() => window.seiPage.predict()")
        assert "error" not in good and page.text_content("#prediction") == str(good["prediction"])
        state["mode"] = mode
        answer = page.evaluate("() => window.seiPage.predict()")
        assert "prediction" not in answer, mode
        error = page.text_content("#error")
        assert page.is_visible("#error") and f"Error ({EXPECTED_CODE[mode]})" in error, (mode, error)
        assert not page.is_visible("#answer"), mode
        assert page.text_content("#prediction") == "" and page.text_content("#bytes") == "", mode
        assert page.locator("#probabilities tbody tr").count() == 0, mode
    assert chromium.screenshot(page, tmp_path / "hostile.png").is_file()


def test_the_page_option_needs_a_built_page(tmp_path, model_files):
    """`sei serve` and `sei deploy` share _prepare: the page folder must hold index.html, and reaches the workers."""
    from sei_deploy_local import LocalOptions, LocalTarget

    from sei_framework import DeployError

    data = {"name": "p", "models": [with_bounds({"name": "diabetes", "adapter": "sklearn-packed",
                                                 "path": str(model_files["diabetes"][0])})]}  # fmt: skip
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    build = Deployment.from_file(tmp_path / "p.yaml").build(tmp_path / "build")
    (tmp_path / "empty").mkdir()
    target = LocalTarget(LocalOptions(state_dir=tmp_path / "state", page=tmp_path / "empty"))
    with pytest.raises(DeployError, match="has no index.html; build the page there first"):
        target._prepare(build)
    (tmp_path / "empty" / "index.html").write_text("<!doctype html>")
    _, run_dir, _, _ = target._prepare(build)
    assert f"page={str((tmp_path / 'empty').resolve())!r}" in (run_dir / "gunicorn.conf.py").read_text()


@pytest.fixture(scope="module")
def cross_origin(tmp_path_factory, page_dir, model_files):
    """The page on two static sites (two origins); a service with auth that allows only the first one."""
    import os

    allowed, other = StaticSite(), StaticSite()
    for site in (allowed, other):
        site.mount("/page/", page_dir)
        site.start()
    tmp = tmp_path_factory.mktemp("cross-origin")
    options = {"state_dir": str(tmp / "state"), "auth": True, "token_env": "SEI_TEST_PAGE_TOKEN",
               "cors_origins": [allowed.origin]}  # fmt: skip
    config = {
        "name": "cross-origin",
        "models": [with_bounds({"name": "diabetes", "adapter": "sklearn-packed", "path": str(model_files["diabetes"][0])})],
        "key_transport": {"name": "inline"},
        "deploy": {"target": "local", "options": options},
    }
    (tmp / "cross-origin.yaml").write_text(yaml.safe_dump(config))
    os.environ["SEI_TEST_PAGE_TOKEN"] = "page-token-value"
    deployment = Deployment.from_file(tmp / "cross-origin.yaml")
    try:
        yield deployment.deploy(tmp / "build").scoring_uri, allowed, other
    finally:
        deployment.delete()
        os.environ.pop("SEI_TEST_PAGE_TOKEN", None)
        allowed.stop()
        other.stop()


def test_a_page_on_an_allowed_origin_calls_a_service_with_auth(chromium, cross_origin, model_files):
    uri, allowed, other = cross_origin
    _, model, X = model_files["diabetes"]

    def attempt(site: StaticSite, token: str) -> tuple:
        page = open_page(chromium, site.url("/page/index.html"))
        page.fill("#uri", uri)
        page.fill("#token", token)
        page.select_option("#store", "memory")
        return page, page.evaluate("() => window.seiPage.connect()")

    page, connected = attempt(allowed, "page-token-value")
    assert connected is True
    inputs = page.locator("#features input")
    for i, value in enumerate(X[0]):
        inputs.nth(i).fill(repr(float(value)))
    answer = page.evaluate("() => window.seiPage.predict()")
    assert "error" not in answer, answer["error"]
    assert abs(answer["prediction"] - model.predict(X[:1])[0]) < 0.05
    page, connected = attempt(allowed, "wrong-token")  # SEI's 401 carries the CORS header: the page says why
    assert connected is False and "Error (unauthorized)" in page.text_content("#error")
    page, connected = attempt(other, "page-token-value")  # the browser withholds the answer from this origin
    assert connected is False and "Error (unreachable)" in page.text_content("#error")
    assert page.text_content("#prediction") == "" and not page.is_visible("#answer")


@pytest.mark.parametrize("config", ["tsconfig.json", "tsconfig.worker.json"])
def test_the_pages_scripts_type_check(config):
    """tsc (the JS client's pinned devDependency) checks the page's JSDoc types, strict, with the DOM's types
    for page.js and a Worker's for worker.js, against the client's own sources."""
    tsc = ROOT / "clients" / "js" / "node_modules" / ".bin" / "tsc"
    if not tsc.is_file():
        pytest.skip("TypeScript is not installed in clients/js (run `make js-client`)")
    done = subprocess.run([str(tsc), "-p", config], cwd=ROOT / "clients" / "web", capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
