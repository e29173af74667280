"""Bounded load test: N concurrent clients, each with its own keys, against one local deployment.

Deploys one model (scikit-learn's diabetes regression) on the local target, runs N client threads
that each make a fixed number of encrypted predictions and check their own decrypted answers
against plaintext `predict()`, and records each worker's RSS before, after a warm-up round (one
request per client) and at the end, against the documented bound (`key_cache_mb` of converted keys
per worker, docs/security.md). Optionally holds idle connections open beside the clients (half of
them with a partial request line, reopened whenever the server drops them) and times the health
probe meanwhile, and shares quota and keys through Redis (`--state redis`, URL in $SEI_REDIS_URL).
Prints a summary and writes JSON.

usage: python bench/load_test.py [--clients 8] [--requests 5] [--rows 4] [--adapter sklearn-eiserver]
                                 [--transport inline|local-dir] [--workers 1] [--state memory|redis]
                                 [--idle 0] [--key-cache-mb 256] [--json bench/results/load_test.json]
       python bench/load_test.py --matrix   # 50 packed clients; workers 1 and 2; memory and redis; 100 idle
"""

from __future__ import annotations

import argparse
import json
import os
import socket
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
MODEL = "diabetes"


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


def _deployment(folder: Path, model_path: Path, settings: dict[str, Any]):
    import yaml

    from sei_framework import Deployment

    transport_spec: dict[str, Any] = {"name": settings["transport"]}
    if settings["transport"] == "local-dir":
        transport_spec["options"] = {"path": str(folder / "shared-keys")}
    config = {
        "name": "load-test",
        "models": [{"name": MODEL, "adapter": settings["adapter"], "path": str(model_path),
                    "options": {"feature_bounds": [-1, 1]}}],  # scikit-learn's diabetes rows are scaled
        "key_transport": transport_spec,
        "deploy": {"target": "local", "options": {"state_dir": str(folder / "state"), "workers": settings["workers"]}},
        "limits": {"max_rows_per_request": max(settings["rows"], 1), "key_cache_mb": settings["key_cache_mb"]},
        "state": {"backend": settings["state"], "namespace": f"load-test-{os.getpid()}-{time.time_ns()}"},
    }
    (folder / "load-test.yaml").write_text(yaml.safe_dump(config))
    return Deployment.from_file(folder / "load-test.yaml")


def _server(state_dir: Path):
    import psutil

    state = json.loads((state_dir / "load-test" / "state.json").read_text())
    return psutil.Process(state["pid"]), state["port"]


def workers_rss_mb(state_dir: Path) -> dict[int, float]:
    """RSS of each gunicorn worker by pid: the server's direct children (azmlinfsrv runs gunicorn's
    master in its own process; a worker's forked native-call children are not counted)."""
    import psutil

    root, _ = _server(state_dir)
    rss = {}
    for process in root.children():
        try:
            rss[process.pid] = process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            pass
    return dict(sorted(rss.items()))


def server_rss_mb(state_dir: Path) -> float | None:
    """RSS of the server process and all its workers together."""
    import psutil

    try:
        root, _ = _server(state_dir)
        return (root.memory_info().rss + sum(p.memory_info().rss for p in root.children(recursive=True))) / 2**20
    except psutil.NoSuchProcess:
        return None


class IdleConnections:
    """Holds `count` connections open to the server without finishing a request: half send a partial
    request line, half nothing. The server may drop them (its header timeout); they are reopened."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def __enter__(self) -> IdleConnections:
        if self.count:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.count:
            self._thread.join(timeout=10)

    def _open(self, index: int) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            return None
        if index % 2 == 0:
            sock.sendall(b"POST /score HTTP/1.1\r\n")
        sock.setblocking(False)
        self.opened += 1
        return sock

    def _hold(self) -> None:
        sockets: list[socket.socket | None] = [self._open(i) for i in range(self.count)]
        while not self._stop.wait(0.2):
            for i, sock in enumerate(sockets):
                if sock is None or _closed(sock):
                    if sock is not None:
                        sock.close()
                    sockets[i] = self._open(i)
        for sock in sockets:
            if sock is not None:
                sock.close()


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _probe_latencies(port: int, stop: threading.Event, out: list[float]) -> None:
    """The health probe, once every 0.2 s until `stop`: its latencies (a failure counts as 30 s)."""
    import requests

    while not stop.wait(0.2):
        began = time.perf_counter()
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=30).raise_for_status()
            out.append(time.perf_counter() - began)
        except requests.RequestException:
            out.append(30.0)


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
    index: int, deployment, endpoint, folder: Path, model, rows: np.ndarray, first: int, requests: int, per_request: int
) -> dict:
    """One client: its own keyring, requests first..first+requests-1 of `per_request` rows, each checked."""
    from sei_framework import Keyring

    client = deployment.client(endpoint, keyring=Keyring(folder / f"keys-{index}"))  # the config's key transport
    latencies, errors, max_error, failures = [], 0, 0.0, []
    for r in range(first, first + requests):
        start = ((index * 97 + r) * per_request) % (len(rows) - per_request)
        batch = rows[start : start + per_request]
        began = time.perf_counter()
        try:
            result = client.predict(MODEL, batch, batch_size=per_request)
        except Exception as exc:  # a load test counts failures instead of stopping at the first
            errors += 1
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        latencies.append(time.perf_counter() - began)
        error = float(np.max(np.abs(result.predictions - model.predict(batch))))
        max_error = max(max_error, error)
        if error > TOLERANCE:
            failures.append(f"request {r}: max abs error {error:.3g}")
    key_id = client.session(MODEL).key_id
    return {"client": index, "key_id": key_id, "latencies_s": latencies, "errors": errors,
            "max_abs_error": max_error, "failures": failures}  # fmt: skip


def _still_answers(deployment, endpoint, folder: Path, model, rows: np.ndarray) -> bool:
    from sei_framework import Keyring

    try:
        result = deployment.client(endpoint, keyring=Keyring(folder / "keys-0")).predict(MODEL, rows[:1])
    except Exception:
        return False
    return bool(np.max(np.abs(result.predictions - model.predict(rows[:1]))) <= TOLERANCE)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_load_test(
    *,
    clients: int = 8,
    requests: int = 5,
    rows: int = 4,
    adapter: str = "sklearn-eiserver",
    transport: str = "inline",
    workers: int = 1,
    state: str = "memory",
    idle: int = 0,
    key_cache_mb: float = 256,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Deploy, load, check, delete; returns the summary (see module docstring)."""
    settings = {"rows": rows, "adapter": adapter, "transport": transport, "workers": workers,
                "state": state, "key_cache_mb": key_cache_mb}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sei-load-") as scratch:
        folder = Path(workdir) if workdir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        model_path, model, X = _train(folder)
        deployment = _deployment(folder, model_path, settings)
        endpoint = deployment.deploy(folder / "build")
        state_dir = folder / "state"
        probe: list[float] = []
        try:
            _, port = _server(state_dir)
            rss_before, workers_before = server_rss_mb(state_dir), workers_rss_mb(state_dir)
            stop_probe = threading.Event()
            prober = threading.Thread(target=_probe_latencies, args=(port, stop_probe, probe), daemon=True)
            with IdleConnections(port, idle) as held:
                prober.start()
                began = time.perf_counter()
                # a warm-up round fills the key cache; the rounds after it must not grow the server
                warmup = _round(
                    clients, lambda i: _client_run(i, deployment, endpoint, folder, model, X, 0, 1, rows)
                )
                rss_warm, workers_warm = server_rss_mb(state_dir), workers_rss_mb(state_dir)
                rest = _round(
                    clients, lambda i: _client_run(i, deployment, endpoint, folder, model, X, 1, requests - 1, rows)
                )
                wall = time.perf_counter() - began
                stop_probe.set()
                prober.join(timeout=40)
            rss_after, workers_after = server_rss_mb(state_dir), workers_rss_mb(state_dir)
            answers = _still_answers(deployment, endpoint, folder, model, X)
        finally:
            deployment.delete()
    results = [_merge(a, b) for a, b in zip(warmup, rest, strict=True)]
    latencies = [t for r in results for t in r["latencies_s"]]
    growth = {pid: workers_after[pid] - workers_warm[pid] for pid in workers_after if pid in workers_warm}
    return {
        **settings,
        "clients": clients,
        "requests_per_client": requests,
        "rows_per_request": rows,
        "idle_connections": idle,
        "idle_connections_opened": held.opened,
        "distinct_key_ids": len({r["key_id"] for r in results}),
        "requests_ok": len(latencies),
        "errors": sum(r["errors"] for r in results),
        "max_abs_error": max((r["max_abs_error"] for r in results), default=0.0),
        "all_correct": all(not r["failures"] for r in results) and len(latencies) == clients * requests,
        "failures": [f for r in results for f in r["failures"]][:20],
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "latency_max_s": max(latencies) if latencies else None,
        "probe_p50_s": _percentile(probe, 50),
        "probe_max_s": max(probe) if probe else None,
        "wall_s": wall,
        "rows_per_s": len(latencies) * rows / wall if wall else None,
        "rss_before_mb": rss_before,
        "rss_after_warmup_mb": rss_warm,
        "rss_after_mb": rss_after,
        "rss_growth_after_warmup_mb": None if rss_warm is None or rss_after is None else rss_after - rss_warm,
        "workers_rss_before_mb": list(workers_before.values()),
        "workers_rss_after_warmup_mb": list(workers_warm.values()),
        "workers_rss_after_mb": list(workers_after.values()),
        "worker_growth_max_mb": max(
            (workers_after[p] - workers_before[p] for p in workers_after if p in workers_before), default=None
        ),
        "worker_growth_after_warmup_max_mb": max(growth.values(), default=None),
        "still_answers": answers,
    }


def _fmt(value: float | None, unit: str, scale: float = 1.0, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f} {unit}"


def _print_summary(summary: dict[str, Any]) -> None:
    print(
        f"{summary['clients']} clients x {summary['requests_per_client']} requests x {summary['rows_per_request']} rows; "
        f"{summary['adapter']}, {summary['transport']} keys, {summary['workers']} worker(s), state {summary['state']}, "
        f"{summary['idle_connections']} idle connections ({summary['idle_connections_opened']} opened)"
    )
    print(f"  ok {summary['requests_ok']}, errors {summary['errors']}, max abs error {summary['max_abs_error']:.2e}, "
          f"all correct: {summary['all_correct']}")  # fmt: skip
    print(f"  latency p50 {_fmt(summary['latency_p50_s'], 'ms', 1000)}, p95 {_fmt(summary['latency_p95_s'], 'ms', 1000)}, "
          f"max {_fmt(summary['latency_max_s'], 'ms', 1000)}; health probe p50 {_fmt(summary['probe_p50_s'], 'ms', 1000)}, "
          f"max {_fmt(summary['probe_max_s'], 'ms', 1000)}; {summary['rows_per_s']:.1f} rows/s over {summary['wall_s']:.1f} s")  # fmt: skip
    workers = ", ".join(
        f"{a:.0f}->{b:.0f}->{c:.0f}"
        for a, b, c in zip(summary["workers_rss_before_mb"], summary["workers_rss_after_warmup_mb"], summary["workers_rss_after_mb"], strict=True)
    )  # fmt: skip
    print(f"  worker RSS MB (before -> after warm-up -> end): {workers}; bound: key_cache_mb {summary['key_cache_mb']:g} "
          f"per worker; largest growth {_fmt(summary['worker_growth_max_mb'], 'MB', digits=1)}, "
          f"after warm-up {_fmt(summary['worker_growth_after_warmup_max_mb'], 'MB', digits=1)}; "
          f"still answers: {summary['still_answers']}")  # fmt: skip
    for failure in summary["failures"]:
        print(f"  failure: {failure}")


MATRIX = [  # (workers, state): 50 packed clients each, 100 idle connections held beside them
    (1, "memory"), (2, "memory"), (1, "redis"), (2, "redis"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--rows", type=int, default=4, help="rows per request")
    parser.add_argument("--adapter", choices=["sklearn-eiserver", "sklearn-packed"], default="sklearn-eiserver")
    parser.add_argument("--transport", choices=["inline", "local-dir"], default="inline")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--state", choices=["memory", "redis"], default="memory", help="redis: URL in $SEI_REDIS_URL")
    parser.add_argument("--idle", type=int, default=0, help="idle connections held open during the run")
    parser.add_argument("--key-cache-mb", type=float, default=256, help="service key cache (small: eviction under load)")
    parser.add_argument("--matrix", action="store_true", help="50 packed clients x 10 requests: workers 1/2, memory/redis, 100 idle")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "load_test.json"))
    args = parser.parse_args(argv)
    if args.matrix:
        runs = [dict(clients=50, requests=10, rows=2, adapter="sklearn-packed", workers=w, state=s, idle=100,
                     key_cache_mb=args.key_cache_mb) for w, s in MATRIX]  # fmt: skip
    else:
        runs = [dict(clients=args.clients, requests=args.requests, rows=args.rows, adapter=args.adapter,
                     transport=args.transport, workers=args.workers, state=args.state, idle=args.idle,
                     key_cache_mb=args.key_cache_mb)]  # fmt: skip
    summaries = []
    for run in runs:
        summaries.append(run_load_test(**run))
        _print_summary(summaries[-1])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summaries if args.matrix else summaries[0], indent=2))
    print(f"json: {args.json}")
    return 0 if all(s["all_correct"] and s["still_answers"] for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
