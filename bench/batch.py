"""Batch scoring at scale: a million rows through `sei batch encrypt`, `score` and `decrypt`, each step a
process of its own whose peak memory (its whole process tree, Dask workers included) is sampled.

Trains a 30-feature breast-cancer pipeline (scaler + logistic regression) served by `sklearn-packed`
in bulk mode, writes ROWS rows resampled from the data with noise to a Parquet file (streamed, never
all in memory), then runs the three steps as the two parties would; encrypt also runs on a tenth of
the rows, to show its peak memory does not grow with the data. Scores the job on one Dask worker and
on two, alternating for three rounds (results removed in between; the median round of each is
reported), and projects 100 M rows on N workers from the one-worker cost per shard. Checks every prediction against plaintext `predict` in
chunks. With --mnist N (the MNIST test set in data/) it also sends the first N MNIST test images through
the batch path and through the online service (azmlinfsrv) and compares the two.

usage: python -m bench.batch [--rows 1000000] [--mnist 10000] [--out bench/results/batch]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEI = str(Path(sys.executable).parent / "sei")
CHUNK = 100_000
ROUNDS = 3


def peak_rss(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run `command`; return (seconds, peak RSS in bytes of its process tree, stdout). Sampled every 200 ms."""
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)  # sampling costs CPU the 2-worker run would miss

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return time.perf_counter() - started, peak, out


def make_data(folder: Path, rows: int):
    """The model, its build, and ROWS rows as Parquet, written chunk by chunk."""
    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sei_framework import Deployment

    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X, y)
    joblib.dump(model, folder / "cancer.joblib")
    np.save(folder / "calibration.npy", X)
    config = {"name": "cancer-batch", "models": [{"name": "cancer", "adapter": "sklearn-packed", "path": "cancer.joblib",
              "options": {"mode": "bulk", "calibration_data": "calibration.npy"}}]}  # fmt: skip
    (folder / "cancer.yaml").write_text(yaml.safe_dump(config))
    build = Deployment.from_file(folder / "cancer.yaml").build(folder / "build")
    rng = np.random.default_rng(2026)
    names = [f"f{i}" for i in range(X.shape[1])]
    schema = pa.schema([(n, pa.float64()) for n in names])
    with pq.ParquetWriter(folder / "rows.parquet", schema) as writer, \
            pq.ParquetWriter(folder / "tenth.parquet", schema) as tenth:  # fmt: skip
        for start in range(0, rows, CHUNK):
            count = min(CHUNK, rows - start)
            chunk = X[rng.integers(0, len(X), count)] * rng.uniform(0.97, 1.03, (count, X.shape[1]))
            table = pa.table({n: chunk[:, i] for i, n in enumerate(names)})
            writer.write_table(table)
            if start < rows // 10:
                tenth.write_table(table.slice(0, min(count, rows // 10 - start)))
    return model, build.path


def agreement(model, folder: Path) -> tuple[float, int]:
    """Share of rows whose decrypted prediction equals plaintext predict, row order checked, in chunks."""
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(folder / "rows.parquet").iter_batches(batch_size=CHUNK)
    predictions = pq.ParquetFile(folder / "predictions.parquet").iter_batches(batch_size=CHUNK, columns=["row", "prediction"])
    same = total = 0
    for features, predicted in zip(rows, predictions, strict=True):
        X = np.column_stack([c.to_numpy() for c in features.columns])
        assert (predicted.column("row").to_numpy() == np.arange(total, total + len(X))).all(), "row order"
        same += int((predicted.column("prediction").to_numpy() == model.predict(X)).sum())
        total += len(X)
    return same / total, total


def run(rows: int, out: Path, mnist: int, folder: Path) -> dict:
    """The whole bench in ``folder`` (data, build, job: gigabytes for a million rows; removed by `main`)."""
    env = {**os.environ, "SEI_HOME": str(folder / "home")}
    model, build = make_data(folder, rows)
    job = folder / "job"
    figures: dict = {"rows": rows, "features": 30, "adapter": "sklearn-packed (bulk)", "cores": os.cpu_count()}
    subprocess.run([SEI, "batch", "describe", str(build), "--out", str(folder / "service.json")], env=env, check=True)

    seconds, peak, _ = peak_rss([SEI, "batch", "encrypt", "--describe", str(folder / "service.json"), "--model", "cancer",
                                 "--input", str(folder / "rows.parquet"), "--out", str(job)], env)  # fmt: skip
    _, tenth_peak, _ = peak_rss([SEI, "batch", "encrypt", "--describe", str(folder / "service.json"), "--model", "cancer",
                                 "--input", str(folder / "tenth.parquet"), "--out", str(folder / "tenth-job")], env)  # fmt: skip
    manifest = json.loads((job / "manifest.json").read_text())
    shard_bytes = sum(s["bytes"] for s in manifest["shards"])
    figures["encrypt"] = {"seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mb": peak / 2**20,
                          "shards": len(manifest["shards"]), "rows_per_shard": manifest["rows_per_shard"],
                          "bytes_per_row_up": shard_bytes / rows, "key_bytes": (job / "keys" / f"{manifest['key_id']}.pub").stat().st_size,
                          "peak_rss_mb_for_a_tenth_of_the_rows": tenth_peak / 2**20}  # fmt: skip

    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(ROUNDS):  # alternating, so both see the same machine; the median run of each is reported
        for workers in (1, 2):
            for result in (job / "results").glob("*.json") if (job / "results").exists() else []:
                result.unlink()
            report = folder / f"score-{workers}.json"
            seconds, peak, _ = peak_rss([SEI, "batch", "score", str(build), str(job), "--workers", str(workers),
                                         "--report", str(report)], env)  # fmt: skip
            scoring = json.loads(report.read_text())["scoring_seconds"]
            result_bytes = sum(p.stat().st_size for p in (job / "results").glob("*.json"))
            runs[workers].append({
                "seconds": seconds, "scoring_seconds": scoring, "rows_per_s": rows / scoring,
                "peak_rss_mb": peak / 2**20, "bytes_per_row_down": result_bytes / rows,
            })  # fmt: skip
    for workers, measured in runs.items():
        figures[f"score_{workers}_workers"] = sorted(measured, key=lambda run: run["scoring_seconds"])[len(measured) // 2]
        figures[f"score_{workers}_workers"]["scoring_seconds_all_rounds"] = [run["scoring_seconds"] for run in measured]
    one, two = figures["score_1_workers"], figures["score_2_workers"]
    figures["speedup_2_over_1_workers"] = {"scoring": one["scoring_seconds"] / two["scoring_seconds"],
                                           "whole_command": one["seconds"] / two["seconds"]}  # fmt: skip

    shard_rows = manifest["rows_per_shard"]
    per_shard = one["scoring_seconds"] / len(manifest["shards"])  # one single-threaded worker, build loaded
    figures["worker_seconds_per_shard"] = per_shard
    hundred_million = 100_000_000
    figures["projection_100M_rows"] = {
        "cpu_hours_one_worker": hundred_million / shard_rows * per_shard / 3600,
        **{f"hours_on_{n}_workers_if_cpu_bound": hundred_million / shard_rows * per_shard / n / 3600 for n in (8, 64, 512)},
        "gb_up": figures["encrypt"]["bytes_per_row_up"] * hundred_million / 1e9,
        "gb_down": one["bytes_per_row_down"] * hundred_million / 1e9,
        "encrypt_cpu_hours_data_owner": hundred_million / figures["encrypt"]["rows_per_s"] / 3600,
    }

    seconds, peak, _ = peak_rss([SEI, "batch", "decrypt", str(job), "--out", str(folder / "predictions.parquet")], env)
    figures["decrypt"] = {"seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mb": peak / 2**20}
    share, checked = agreement(model, folder)
    figures["agreement_with_plaintext"] = share
    figures["rows_checked"] = checked
    if mnist:
        figures["mnist"] = mnist_batch_vs_online(folder, env, mnist)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(figures, indent=1))
    return figures


def mnist_batch_vs_online(folder: Path, env: dict, count: int) -> dict:
    """The first COUNT MNIST test images through the batch path and the online service: same predictions?"""
    import pyarrow.parquet as pq
    import yaml

    from bench.data import SEED_MODEL as model_path
    from bench.data import mnist_images
    from sei_framework import Deployment
    from sei_framework.keys import Keyring

    images = mnist_images()[:count]
    config = {"name": "mnist-batch", "models": [{"name": "mnist", "adapter": "sklearn-packed", "path": str(model_path),
              "options": {"mode": "bulk", "feature_bounds": [0, 1]}}], "deploy": {"target": "local", "options": {"state_dir": str(folder / "state")}}}  # fmt: skip
    (folder / "mnist.yaml").write_text(yaml.safe_dump(config))
    np.save(folder / "mnist.npy", images)
    deployment = Deployment.from_file(folder / "mnist.yaml")
    endpoint = deployment.deploy(folder / "mnist-build")
    try:
        online = deployment.client(endpoint, keyring=Keyring(folder / "home" / "keys")).predict("mnist", images)
    finally:
        deployment.delete()
    job = folder / "mnist-job"
    subprocess.run([SEI, "batch", "describe", str(folder / "mnist-build"), "--out", str(folder / "mnist.json")], env=env, check=True)
    for step in (["encrypt", "--describe", str(folder / "mnist.json"), "--model", "mnist", "--input", str(folder / "mnist.npy"), "--out", str(job)],
                 ["score", str(folder / "mnist-build"), str(job)],
                 ["decrypt", str(job), "--out", str(folder / "mnist.parquet")]):  # fmt: skip
        subprocess.run([SEI, "batch", *step], env=env, check=True, stdout=subprocess.DEVNULL)
    table = pq.read_table(folder / "mnist.parquet")
    batch_scores = np.column_stack([table.column(f"score_{i}").to_numpy() for i in range(10)])
    return {
        "rows": count,
        "predictions_equal": bool((table.column("prediction").to_numpy() == online.predictions).all()),
        "max_score_difference": float(np.abs(batch_scores - online.scores).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mnist", type=int, default=10_000, help="MNIST rows compared batch vs online (0: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sei-batch-bench-") as folder:
        figures = run(args.rows, args.out, args.mnist, Path(folder))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
