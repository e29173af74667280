"""EIServer.predict against the sklearn-eiserver adapter on the same request, side by side.

Both compute the same native dot products; the adapter converts the public keys once per key id
and reuses them. Prints per-prediction seconds and the ratio, and writes bench/results/eiserver.json.

    .venv/bin/python -m bench.eiserver_keys --repeats 3
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
from encrypted.inference.eiclient import EILinearRegressionClient
from encrypted.inference.eiserver import EIServer

from sei_adapter_sklearn.common import SklearnOptions
from sei_adapter_sklearn.eiserver import EIServerAdapter

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


def mnist_row() -> tuple[Path, np.ndarray]:
    with gzip.open(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz") as handle:
        image = np.frombuffer(handle.read(), np.uint8, offset=16, count=784)
    return SHARED / "seed-model" / "sklearn_mnist_model.pkl", image / 255.0


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model_path, x = mnist_row()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = joblib.load(model_path)
    client = EILinearRegressionClient()
    _, public_keys = client.get_public_keys()
    ciphertexts = client.encrypt(x)

    with tempfile.TemporaryDirectory() as tmp:
        metadata = EIServerAdapter.prepare(model_path, SklearnOptions(), Path(tmp))
        adapter = EIServerAdapter(Path(tmp), metadata, SklearnOptions())
        keys = adapter.load_public_keys(public_keys)  # once per key id, then cached by the service
        data = {"n_features": 784, "rows": [ciphertexts]}
        adapter_s, adapter_result = timed(lambda: adapter.predict(data, keys), args.repeats)
    server = EIServer(model.coef_, model.intercept_)
    eiserver_s, eiserver_result = timed(lambda: server.predict(ciphertexts, public_keys), args.repeats)

    expected = model.decision_function(x[None, :])[0]
    errors = {
        "eiserver": float(np.abs(client.decrypt(eiserver_result) - expected).max()),
        "adapter": float(np.abs(client.decrypt(adapter_result[0]) - expected).max()),
    }
    report = {
        "model": "tutorial MNIST LogisticRegression (784 x 10)",
        "repeats": args.repeats,
        "eiserver_predict_s": eiserver_s,
        "adapter_predict_s": adapter_s,
        "speedup": eiserver_s / adapter_s,
        "max_abs_error": errors,
    }
    print(f"EIServer.predict           {eiserver_s:7.2f} s per prediction (median of {args.repeats})")
    print(f"sklearn-eiserver adapter   {adapter_s:7.2f} s per prediction (keys converted once)")
    print(f"speed-up                   {report['speedup']:7.1f}x; max abs error {errors}")
    out = ROOT / "bench" / "results" / "eiserver.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
