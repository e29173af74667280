"""The JS client in headless Chromium beside the Python client, in one run, on the tutorial's MNIST model
(sklearn-packed, single mode) served by the local target, which also serves the page.

Measures, for each client: key generation, encryption and decryption of one row (MNIST digits), and the round
trip of one digit (Python: `Client.predict`; the page: its Predict, drawn canvas to shown answer, Worker
included); plus the size of the JS and wasm the page loads. Prints a table of medians and writes
bench/results/browser/bench.json. Needs `make js-client chromium` (`make bench-browser` does both).

usage: python -m bench.browser [--digits 10] [--repeats 5] [--out bench/results/browser]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.data import SEED_MODEL, mnist_images
from sei_framework import Client, Deployment
from sei_framework.keys import Keyring

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests")]
from browser import Chromium, chromium_executable  # noqa: E402  (tests/browser.py: the tests' Chromium)
from build_page import build_page  # noqa: E402

IN_PAGE = """async ({ rows, repeats }) => {
  const lib = await import(new URL('lib/index.js', location.href).href);
  const now = () => performance.now();
  let t = now();
  await lib.loadSeal();
  const wasm = now() - t;
  const client = new lib.Client(new URL('../score', location.href).href, { keyStore: 'memory' });
  const description = await client.describe();
  const params = lib.Params.fromJson(description.models.mnist.encryption.params);
  const keygen = [];
  for (let r = 0; r < repeats; r += 1) {
    t = now();
    const keys = await lib.ClientKeys.generate(params);
    keygen.push(now() - t);
    keys.delete();
  }
  const model = await client.model('mnist');
  await client.predict('mnist', [rows[0]]);  // publishes the public keys
  const encrypt = [], decrypt = [];
  for (const row of rows) {
    t = now();
    const data = model.encrypt([row]);
    encrypt.push(now() - t);
    const answer = await client.call({ model: 'mnist', key_id: model.keyId, data });
    t = now();
    model.decrypt(answer.result, 1);
    decrypt.push(now() - t);
  }
  return { wasm, keygen, encrypt, decrypt };
}"""


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def python_side(uri: str, X: Any, repeats: int, keys: Path) -> dict[str, list[float]]:
    client = Client(uri, keyring=Keyring(keys))
    client.predict("mnist", X[:1])  # keys made and published, description cached
    adapter = client.session("mnist").adapter
    key_id = client.session("mnist").key_id
    keygen, encrypt, decrypt, round_trip = [], [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        adapter.generate_keys()
        keygen.append((time.perf_counter() - t) * 1000)
    for row in X:
        t = time.perf_counter()
        data = adapter.encrypt(row[None])
        encrypt.append((time.perf_counter() - t) * 1000)
        answer = client.call({"model": "mnist", "key_id": key_id, "data": data})
        t = time.perf_counter()
        adapter.decrypt(answer["result"], 1)
        decrypt.append((time.perf_counter() - t) * 1000)
    for row in X:
        t = time.perf_counter()
        client.predict("mnist", row[None])
        round_trip.append((time.perf_counter() - t) * 1000)
    return {"keygen": keygen, "encrypt": encrypt, "decrypt": decrypt, "round_trip": round_trip}


def browser_side(base: str, X: Any, repeats: int) -> tuple[dict[str, Any], str]:
    executable = chromium_executable()
    if executable is None:
        sys.exit("no Chromium: run `make chromium` (or set SEI_CHROMIUM)")
    chromium = Chromium(executable)
    try:
        page = chromium.open(base + "page/")
        page.wait_for_function("() => document.documentElement.dataset.ready === 'true'", timeout=30_000)
        measured = page.evaluate(IN_PAGE, {"rows": X.tolist(), "repeats": repeats})
        page.evaluate("() => window.seiPage.setPixels(new Array(784).fill(0))")
        warm = page.evaluate("() => window.seiPage.predict()")  # the page's Worker makes its keys once
        if "error" in warm:
            sys.exit(f"the page failed: {warm['error']}")
        wall, in_page = [], []
        for row in X:
            page.evaluate("(pixels) => window.seiPage.setPixels(pixels)", row.tolist())
            t = time.perf_counter()
            answer = page.evaluate("() => window.seiPage.predict()")
            wall.append((time.perf_counter() - t) * 1000)
            if "error" in answer:
                sys.exit(f"the page failed: {answer['error']}")
            in_page.append(answer["steps"]["total"])
        measured |= {"round_trip": wall, "round_trip_in_worker": in_page, "bytes_sent": warm["bytesSent"]}
        return measured, chromium.version
    finally:
        chromium.close()


def sizes(page: Path) -> dict[str, int]:
    files = [p for p in page.rglob("*") if p.is_file() and p.suffix in (".js", ".wasm")]
    library = [p for p in files if p.parent.name == "lib" or "vendor" in p.parts]
    return {
        "library_js_wasm_bytes": sum(p.stat().st_size for p in library),
        "page_js_wasm_bytes": sum(p.stat().st_size for p in files),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="key generations per client")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "browser")
    args = parser.parse_args()
    X = mnist_images()[: args.digits]
    with tempfile.TemporaryDirectory(prefix="sei-bench-browser-") as tmp:
        page = build_page(Path(tmp) / "page")
        config = {
            "name": "mnist-browser-bench",
            "models": [{"name": "mnist", "adapter": "sklearn-packed", "path": str(SEED_MODEL),
                        "options": {"feature_bounds": [0, 1]}}],
            "key_transport": {"name": "inline"},
            "deploy": {"target": "local", "options": {"state_dir": str(Path(tmp) / "state"), "page": str(page)}},
        }  # fmt: skip
        (Path(tmp) / "bench.yaml").write_text(yaml.safe_dump(config))
        deployment = Deployment.from_file(Path(tmp) / "bench.yaml")
        endpoint = deployment.deploy(Path(tmp) / "build")
        try:
            python = python_side(endpoint.scoring_uri, X, args.repeats, Path(tmp) / "keys")
            js, version = browser_side(endpoint.scoring_uri.removesuffix("score"), X, args.repeats)
        finally:
            deployment.delete()
        size = sizes(page)
    rows = [
        ("key generation", median_ms(python["keygen"]), median_ms(js["keygen"]), "< 1000"),
        ("encrypt one row", median_ms(python["encrypt"]), median_ms(js["encrypt"]), ""),
        ("decrypt one row", median_ms(python["decrypt"]), median_ms(js["decrypt"]), ""),
        ("round trip, one digit", median_ms(python["round_trip"]), median_ms(js["round_trip"]), "<= 300"),
    ]
    print(f"Chromium {version}; {args.digits} MNIST digits, {args.repeats} key generations; medians in ms")
    print("| step | Python client | JS client in Chromium | target |\n| --- | --- | --- | --- |")
    for name, py, browser, target in rows:
        print(f"| {name} | {py} | {browser} | {target} |")
    print(f"node-seal start (wasm compile, once): {js['wasm']:.1f} ms; the page's round trip measured in its "
          f"Worker: {median_ms(js['round_trip_in_worker'])} ms; request bodies of the first prediction "
          f"(public keys included): {js['bytes_sent']:,} bytes")
    print(f"JS + wasm the library loads (lib/ + vendor/): {size['library_js_wasm_bytes'] / 1e6:.2f} MB "
          f"(target <= 3 MB); with the page's own scripts: {size['page_js_wasm_bytes'] / 1e6:.2f} MB")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"chromium": version, "python": python, "js": js, "sizes": size, "digits": args.digits}
    (args.out / "bench.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
