"""Bounded load test: N concurrent clients, each with its own keys, against one local deployment.

Deploys the diabetes regression (scikit-learn's bundled data) on the local target, runs N client
threads that each make a fixed number of encrypted predictions and check their own decrypted
answers against plaintext `predict()`, records the server's RSS before, after a warm-up round
(one request per client) and at the end, and checks the service still answers. Prints a summary and writes JSON.

usage: python bench/load_test.py [--clients 8] [--requests 5] [--rows 4] [--transport inline|local-dir]
                                 [--workers 1] [--json bench/results/load_test.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_load_test", "main"]

TOLERANCE = 1e-3


def _train(folder: Path) -> tuple[Path, Any, np.ndarray]:
    """The diabetes pipeline the tests use: (model file, model, held-out rows)."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_diabetes(return_X_y=True)
    model = make_pipeline(StandardScaler(), Ridge()).fit(X[:400], y[:400])
    path = folder / "diabetes.joblib"
    joblib.dump(model, path)
    return path, model, X[400:]


def _deployment(folder: Path, model_path: Path, transport: str, workers: int, max_rows: int, key_cache_mb: float):
    import yaml

    from sei_framework import Deployment

    transport_spec = {"name": transport}
    if transport == "local-dir":
        transport_spec["options"] = {"path": str(folder / "shared-keys")}
    config = {
        "name": "load-test",
        "models": [{"name": "diabetes", "adapter": "sklearn-eiserver", "path": str(model_path)}],
        "key_transport": transport_spec,
        "deploy": {"target": "local", "options": {"state_dir": str(folder / "state"), "workers": workers}},
        "limits": {"max_rows_per_request": max_rows, "key_cache_mb": key_cache_mb},
    }
    (folder / "load-test.yaml").write_text(yaml.safe_dump(config))
    return Deployment.from_file(folder / "load-test.yaml")


def server_rss_mb(state_dir: Path) -> float | None:
    """RSS of the server process and its workers, from the local target's state.json (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    state = json.loads((state_dir / "load-test" / "state.json").read_text())
    try:
        root = psutil.Process(state["pid"])
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:  # a forked native-call child that just ended
            pass
    return total / 2**20


def _round(clients: int, run) -> list[dict]:
    """`run(index)` for every client at once, all starting together."""
    barrier = threading.Barrier(clients)

    def one(index: int) -> dict:
        barrier.wait()
        return run(index)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(one, range(clients)))


def _merge(first: dict, second: dict) -> dict:
    """One client's results over two rounds."""
    return {**second, "latencies_s": first["latencies_s"] + second["latencies_s"],
            "errors": first["errors"] + second["errors"], "failures": first["failures"] + second["failures"],
            "max_abs_error": max(first["max_abs_error"], second["max_abs_error"])}  # fmt: skip


def _client_run(
    index: int, endpoint, folder: Path, model, rows: np.ndarray, first: int, requests: int, per_request: int
) -> dict:
    """One client: its own keyring, requests first..first+requests-1 of `per_request` rows, each checked."""
    from sei_framework import Client
    from sei_framework.keys import Keyring

    client = Client(endpoint, keyring=Keyring(folder / f"keys-{index}"))
    latencies, errors, max_error, failures = [], 0, 0.0, []
    for r in range(first, first + requests):
        start = ((index * 97 + r) * per_request) % (len(rows) - per_request)
        batch = rows[start : start + per_request]
        began = time.perf_counter()
        try:
            result = client.predict("diabetes", batch, batch_size=per_request)
        except Exception as exc:  # a load test counts failures instead of stopping at the first
            errors += 1
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        latencies.append(time.perf_counter() - began)
        error = float(np.max(np.abs(result.predictions - model.predict(batch))))
        max_error = max(max_error, error)
        if error > TOLERANCE:
            failures.append(f"request {r}: max abs error {error:.3g}")
    key_id = client._session_for("diabetes").key_id
    return {"client": index, "key_id": key_id, "latencies_s": latencies, "errors": errors,
            "max_abs_error": max_error, "failures": failures}  # fmt: skip


def _still_answers(endpoint, folder: Path, model, rows: np.ndarray) -> bool:
    from sei_framework import Client
    from sei_framework.keys import Keyring

    try:
        result = Client(endpoint, keyring=Keyring(folder / "keys-0")).predict("diabetes", rows[:1])
    except Exception:
        return False
    return bool(np.max(np.abs(result.predictions - model.predict(rows[:1]))) <= TOLERANCE)


def run_load_test(
    *,
    clients: int = 8,
    requests: int = 5,
    rows: int = 4,
    transport: str = "inline",
    workers: int = 1,
    key_cache_mb: float = 256,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Deploy, load, check, delete; returns the summary (see module docstring)."""
    with tempfile.TemporaryDirectory(prefix="sei-load-") as scratch:
        folder = Path(workdir) if workdir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        model_path, model, X = _train(folder)
        deployment = _deployment(folder, model_path, transport, workers, max(rows, 1), key_cache_mb)
        endpoint = deployment.deploy(folder / "build")
        try:
            rss_before = server_rss_mb(folder / "state")
            began = time.perf_counter()
            # a warm-up round fills the key cache; the rounds after it must not grow the server
            warmup = _round(clients, lambda i: _client_run(i, endpoint, folder, model, X, 0, 1, rows))
            rss_warm = server_rss_mb(folder / "state")
            rest = _round(clients, lambda i: _client_run(i, endpoint, folder, model, X, 1, requests - 1, rows))
            wall = time.perf_counter() - began
            rss_after = server_rss_mb(folder / "state")
            answers = _still_answers(endpoint, folder, model, X)
        finally:
            deployment.delete()
    results = [_merge(a, b) for a, b in zip(warmup, rest)]
    latencies = [t for r in results for t in r["latencies_s"]]
    return {
        "clients": clients,
        "requests_per_client": requests,
        "rows_per_request": rows,
        "transport": transport,
        "workers": workers,
        "distinct_key_ids": len({r["key_id"] for r in results}),
        "requests_ok": len(latencies),
        "errors": sum(r["errors"] for r in results),
        "max_abs_error": max((r["max_abs_error"] for r in results), default=0.0),
        "all_correct": all(not r["failures"] for r in results) and len(latencies) == clients * requests,
        "failures": [f for r in results for f in r["failures"]][:20],
        "latency_median_s": statistics.median(latencies) if latencies else None,
        "latency_max_s": max(latencies) if latencies else None,
        "wall_s": wall,
        "rows_per_s": len(latencies) * rows / wall if wall else None,
        "rss_before_mb": rss_before,
        "rss_after_warmup_mb": rss_warm,
        "rss_after_mb": rss_after,
        "rss_growth_after_warmup_mb": None if rss_warm is None or rss_after is None else rss_after - rss_warm,
        "still_answers": answers,
    }


def _print_summary(summary: dict[str, Any]) -> None:
    def mb(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f} MB"

    print(
        f"{summary['clients']} clients x {summary['requests_per_client']} requests x "
        f"{summary['rows_per_request']} rows ({summary['transport']} keys, {summary['workers']} worker(s))"
    )
    print(f"  ok {summary['requests_ok']}, errors {summary['errors']}, max abs error {summary['max_abs_error']:.2e}, "
          f"all correct: {summary['all_correct']}")  # fmt: skip
    if summary["latency_median_s"] is not None:
        print(f"  latency median {summary['latency_median_s']:.2f} s, max {summary['latency_max_s']:.2f} s; "
              f"{summary['rows_per_s']:.1f} rows/s over {summary['wall_s']:.1f} s")  # fmt: skip
    print(f"  server RSS {mb(summary['rss_before_mb'])}, {mb(summary['rss_after_warmup_mb'])} after warm-up, "
          f"{mb(summary['rss_after_mb'])} at the end; "
          f"still answers: {summary['still_answers']}")  # fmt: skip
    for failure in summary["failures"]:
        print(f"  failure: {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--rows", type=int, default=4, help="rows per request")
    parser.add_argument("--transport", choices=["inline", "local-dir"], default="inline")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--key-cache-mb", type=float, default=256, help="service key cache (small: eviction under load)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "load_test.json"))
    args = parser.parse_args(argv)
    summary = run_load_test(
        clients=args.clients,
        requests=args.requests,
        rows=args.rows,
        transport=args.transport,
        workers=args.workers,
        key_cache_mb=args.key_cache_mb,
    )
    _print_summary(summary)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=2))
    print(f"json: {args.json}")
    return 0 if summary["all_correct"] and summary["still_answers"] else 1


if __name__ == "__main__":
    sys.exit(main())
