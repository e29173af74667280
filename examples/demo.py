"""`make demo`: train two models on scikit-learn's bundled data, serve them encrypted, compare.

Trains a digits classifier and a diabetes regression, writes a two-model config, deploys it
on the local target (azmlinfsrv on 127.0.0.1), predicts a few dozen rows on encrypted data,
prints agreement with plaintext predictions and latency per request, and stops the server.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sei_framework import Deployment


ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "demo-local.yaml"


def train(workdir: Path) -> dict[str, tuple[object, np.ndarray]]:
    """Fit both models, save them where the demo config expects them; (model, held-out rows) by file."""
    X, y = load_digits(return_X_y=True)
    X_train, X_digits, y_train, _ = train_test_split(X / 16.0, y, test_size=0.2, random_state=0)
    digits = LogisticRegression(max_iter=2000).fit(X_train, y_train)
    X, y = load_diabetes(return_X_y=True)
    X_train, X_diabetes, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=0)
    diabetes = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X_train, y_train)
    joblib.dump(digits, workdir / "digits.joblib")
    joblib.dump(diabetes, workdir / "diabetes.joblib")
    return {"digits.joblib": (digits, X_digits), "diabetes.joblib": (diabetes, X_diabetes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=24, help="rows to predict per model")
    args = parser.parse_args()
    models_dir = ROOT / "examples" / "models"
    models_dir.mkdir(exist_ok=True)
    trained = train(models_dir)
    deployment = Deployment.from_file(CONFIG)
    models = {m.name: trained[m.path.name] for m in deployment.config.models}
    print(f"deploying {deployment.name} ({CONFIG.relative_to(ROOT)}) with models {', '.join(models)} ...", flush=True)
    endpoint = deployment.deploy()
    print(f"serving at {endpoint.scoring_uri}")
    try:
        client = deployment.client(endpoint)
        for name, (model, X) in models.items():
            rows = X[: args.rows]
            stamps = [time.perf_counter()]
            result = client.predict(name, rows, progress=lambda n, stamps=stamps: stamps.append(time.perf_counter()))
            latencies = np.diff(stamps)
            plain = model.predict(rows)
            if result.scores.shape[1] == 1:
                error = np.abs(result.predictions - plain).max()
                print(f"{name}: {len(rows)} encrypted predictions, max |encrypted - plaintext| = {error:.2e}")
            else:
                agree = np.mean(result.predictions == plain)
                print(f"{name}: {len(rows)} encrypted predictions, {agree:.0%} agree with plaintext predict()")
            adapter = deployment.resolved.models[list(models).index(name)].adapter.name
            print(
                f"  {adapter}: {len(latencies)} requests of up to {client.model(name).max_rows_per_request} rows: "
                f"median {np.median(latencies):.2f} s, first {latencies[0]:.2f} s (includes key upload)"
            )
    finally:
        deployment.delete()
        print("server stopped")


if __name__ == "__main__":
    main()
