"""A 100,000-row `trees-seal` batch job: `sei build`, `sei batch encrypt`, `score` (1 and 2 Dask workers) and
`decrypt`, each step a process of its own whose wall time and peak memory are measured (`bench.batch.peak_rss`).

The model: scikit-learn's `DecisionTreeClassifier(max_depth=5, random_state=0)` fitted on the breast cancer
data (30 features); the rows: drawn from that data with up to 3 % noise. Every decrypted prediction is checked
against the tree's own `predict`, in row order.

usage: python -m bench.trees_batch [--rows 100000] [--out bench/results/trees-batch]   (`make bench-trees-batch`)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.batch import SEI, peak_rss

ROOT = Path(__file__).resolve().parent.parent


def run(rows: int, folder: Path) -> dict:
    """The job in ``folder`` (removed by `main`)."""
    import joblib
    import pyarrow.parquet as pq
    import yaml
    from sklearn.datasets import load_breast_cancer
    from sklearn.tree import DecisionTreeClassifier

    env = {**os.environ, "SEI_HOME": str(folder / "home")}
    X, y = load_breast_cancer(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y)
    joblib.dump(model, folder / "tree.joblib")
    (folder / "trees.yaml").write_text(yaml.safe_dump(
        {"name": "trees-batch", "models": [{"name": "tree", "adapter": "trees-seal", "path": "tree.joblib"}]}))
    rng = np.random.default_rng(2026)
    data = X[rng.integers(0, len(X), rows)] * rng.uniform(0.97, 1.03, (rows, X.shape[1]))
    np.save(folder / "rows.npy", data)
    build, job = folder / "build", folder / "job"
    figures: dict = {"rows": rows, "model": "DecisionTreeClassifier(max_depth=5)", "cores": os.cpu_count()}

    def step(name: str, *args: str) -> None:
        seconds, peak, _ = peak_rss([SEI, *args], env)
        figures[name] = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak / 2**20)}

    step("build", "build", str(folder / "trees.yaml"), "--out", str(build))
    step("describe", "batch", "describe", str(build), "--out", str(folder / "service.json"))
    step("encrypt", "batch", "encrypt", "--describe", str(folder / "service.json"), "--model", "tree",
         "--input", str(folder / "rows.npy"), "--out", str(job))
    manifest = json.loads((job / "manifest.json").read_text())
    figures["encrypt"].update(shards=len(manifest["shards"]), rows_per_s=round(rows / figures["encrypt"]["seconds"]),
                              bytes_per_row_up=round(sum(s["bytes"] for s in manifest["shards"]) / rows))
    for workers in (1, 2):
        for result in (job / "results").glob("*.json") if (job / "results").exists() else []:
            result.unlink()
        report = folder / f"score-{workers}.json"
        step(f"score_{workers}_workers", "batch", "score", str(build), str(job), "--workers", str(workers),
             "--report", str(report))
        scoring = json.loads(report.read_text())["scoring_seconds"]
        figures[f"score_{workers}_workers"].update(scoring_seconds=round(scoring, 2), rows_per_s=round(rows / scoring))
    step("decrypt", "batch", "decrypt", str(job), "--out", str(folder / "predictions.parquet"))
    predicted = pq.read_table(folder / "predictions.parquet", columns=["row", "prediction"])
    assert (predicted.column("row").to_numpy() == np.arange(rows)).all(), "row order"
    figures["equal_to_predict"] = float(np.mean(predicted.column("prediction").to_numpy() == model.predict(data)))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "trees-batch")
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sei-trees-batch-") as folder:
        figures = run(args.rows, Path(folder))
    figures["bench_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trees-batch.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
