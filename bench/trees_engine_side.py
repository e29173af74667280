"""One side of the tree engine for bench/trees.py, in its own process so each side's peak memory is its own.

    python -m bench.trees_engine_side client-encrypt OUT MODEL
    python -m bench.trees_engine_side serve OUT MODEL WORKERS REPEATS
    python -m bench.trees_engine_side client-decrypt OUT MODEL

Files in OUT carry bytes between the sides (plan is rebuilt from the model file: it is deterministic). Each run
prints one JSON line of figures; peak memory is ru_maxrss of the process (and of its worker processes).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from sei_adapter_trees.engine import frontends
from sei_adapter_trees.engine.bits import split_bits
from sei_adapter_trees.engine.client import TreeClient
from sei_adapter_trees.engine.seal_plan import ServerPlan, build_plan
from sei_adapter_trees.engine.workers import WorkerPool
from sei_adapter_trees.model_files import load_tree_model


def _plan(out: Path, name: str) -> tuple[object, ServerPlan]:
    model = load_tree_model(out / f"engine-{name}.joblib")  # the allow-list, not a bare unpickle
    ens = frontends.from_xgboost(model) if "XGB" in type(model).__name__ else frontends.from_sklearn(model)
    return ens, build_plan(ens)


def _peak_mb(children: bool = False) -> float:
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if children else 0
    return max(me, kids) / 1024.0


def client_encrypt(out: Path, name: str) -> dict:
    ens, plan = _plan(out, name)
    rows = plan.params.rows
    X = np.load(out / "test_X.npy")
    Xb = X[np.resize(np.arange(len(X)), rows)]
    start = time.perf_counter()
    client = TreeClient(plan.client)
    keys = client.relin_keys()
    keygen = time.perf_counter() - start
    start = time.perf_counter()
    bits = split_bits(Xb, ens.n_features, ens.splits)  # type: ignore[attr-defined]
    request = client.encrypt(bits)
    encrypt = time.perf_counter() - start
    (out / f"{name}.sk").write_bytes(client.secret_key())
    (out / f"{name}.rk").write_bytes(keys)
    (out / f"{name}.req").write_bytes(request)
    return {"rows": rows, "keygen_s": keygen, "encrypt_s": encrypt, "encrypt_rows_per_s": rows / encrypt,
            "request_bytes": len(request), "key_bytes": len(keys), "splits": len(plan.client.split_levels),
            "params": json.loads(plan.params.to_json()), "error_bound": plan.client.score_error_bound(
                len(plan.trees)), "client_encrypt_peak_mb": _peak_mb()}


def serve(out: Path, name: str, workers: int, repeats: int) -> dict:
    _, plan = _plan(out, name)
    request = (out / f"{name}.req").read_bytes()
    with WorkerPool(plan, (out / f"{name}.rk").read_bytes(), workers) as pool:
        response = pool.evaluate(request)  # warm
        times, cpu = [], []
        for _ in range(repeats):
            start, c0 = time.perf_counter(), _cpu(pool)
            response = pool.evaluate(request)
            times.append(time.perf_counter() - start)
            cpu.append(_cpu(pool) - c0)
    (out / f"{name}.resp").write_bytes(response)
    s = float(np.median(times))
    c = float(np.median(cpu))
    return {"workers": workers, "server_s": s, "server_rows_per_s": plan.params.rows / s, "response_bytes": len(response),
            "server_cpu_s": c, "rows_per_cpu_s": plan.params.rows / c, "service_peak_mb": _peak_mb(children=True)}


def _cpu(pool: WorkerPool) -> float:
    """CPU seconds of this process and its live worker processes (from /proc: the machine is shared, so wall
    time alone mixes in other load)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for proc in pool._procs:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def client_decrypt(out: Path, name: str) -> dict:
    ens, plan = _plan(out, name)
    model = load_tree_model(out / f"engine-{name}.joblib")  # the allow-list, not a bare unpickle
    client = TreeClient(plan.client, (out / f"{name}.sk").read_bytes())
    rows = plan.params.rows
    X = np.load(out / "test_X.npy")
    Xb = X[np.resize(np.arange(len(X)), rows)]
    start = time.perf_counter()
    sums = client.decrypt((out / f"{name}.resp").read_bytes(), rows)
    decrypt = time.perf_counter() - start
    from sei_adapter_trees.engine import postprocess, reference

    want = reference.tree_sums(ens, split_bits(Xb, ens.n_features, ens.splits))  # type: ignore[arg-type, attr-defined]
    predicted = postprocess.predict(ens, sums)  # type: ignore[arg-type]
    return {"decrypt_s": decrypt, "decrypt_rows_per_s": rows / decrypt,
            "max_abs_error_of_sums": float(np.abs(sums - want).max()),
            "agreement_with_predict": float(np.mean(np.asarray(predicted) == model.predict(Xb))),
            "client_decrypt_peak_mb": _peak_mb()}


def main() -> None:
    mode, out, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if mode == "client-encrypt":
        res = client_encrypt(out, name)
    elif mode == "serve":
        res = serve(out, name, int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "client-decrypt":
        res = client_decrypt(out, name)
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
