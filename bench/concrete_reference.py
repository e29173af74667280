"""Concrete ML's own serving paths, for bench/concrete.py: run by the Python of Concrete ML's environment.

    python -P bench/concrete_reference.py OUT_DIR ROWS [MODEL,MODEL,...]

Trains the issue's models on scikit-learn's breast cancer data (30 features; 400 training rows, the
rest held out), compiles each exactly as SEI's adapter does (sei_adapter_concrete/compile_model.py,
trees summed under encryption), and times per row, for the first ROWS held-out rows:
- `predict(fhe="execute")` in process (keys already generated, as a warm model has them);
- `FHEModelServer.run` with the serialized evaluation keys, as Concrete ML's client/server example serves.
Writes OUT_DIR/reference.json, the model files (joblib), the calibration and held-out rows, and what
Concrete ML's simulation and the original models predict on the held-out rows.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

COMPILE_MODEL = Path(__file__).resolve().parent.parent / "plugins/sei-adapter-concrete/sei_adapter_concrete/compile_model.py"
MODELS = {  # name: (model, options as SEI's config gives them)
    "logistic": (LogisticRegression(max_iter=5000), {"n_bits": 8}),
    "tree": (DecisionTreeClassifier(max_depth=5, random_state=0), {"n_bits": 6}),
    "forest": (RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0), {"n_bits": 6}),
    "boosted": (XGBClassifier(n_estimators=20, max_depth=4, random_state=0), {"n_bits": 6}),
    "boosted100": (XGBClassifier(n_estimators=100, max_depth=6, random_state=0), {"n_bits": 6}),  # bench/trees.py
    "mlp": (MLPClassifier(hidden_layer_sizes=(20,), max_iter=3000, random_state=0), {"n_bits": 6, "rounding_bits": 6}),
}


def load_compile_model():
    spec = importlib.util.spec_from_file_location("sei_compile_model", COMPILE_MODEL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_row(call, rows: np.ndarray) -> float:
    """Median seconds of call(row) over the rows."""
    times = []
    for i in range(len(rows)):
        start = time.perf_counter()
        call(rows[i : i + 1])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def serve_with_concrete_ml(compiled, folder: Path, rows: np.ndarray) -> dict:
    """FHEModelDev / FHEModelClient / FHEModelServer, keys serialized on every run as in Zama's example."""
    from concrete.ml.deployment import FHEModelClient, FHEModelDev, FHEModelServer

    shutil.rmtree(folder, ignore_errors=True)
    FHEModelDev(str(folder), compiled.module).save(via_mlir=True)
    client = FHEModelClient(str(folder), key_dir=str(folder / "keys"))
    client.generate_private_and_evaluation_keys()
    keys = client.get_serialized_evaluation_keys()
    server = FHEModelServer(str(folder))
    server.load()
    ciphertexts = [client.quantize_encrypt_serialize(rows[i : i + 1]) for i in range(len(rows))]
    server.run(ciphertexts[0], keys)  # warm
    times = []
    for ciphertext in ciphertexts:
        start = time.perf_counter()
        server.run(ciphertext, keys)
        times.append(time.perf_counter() - start)
    return {"server_run_serialized_keys_s": float(np.median(times)), "key_bytes": len(keys),
            "ciphertext_bytes": len(ciphertexts[0])}  # fmt: skip


def main(out: Path, n_rows: int, names: list[str] | None = None) -> None:
    compile_model = load_compile_model()
    X, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:400], order[400:]
    scaler = StandardScaler().fit(X[train])  # the logistic regression and the MLP take standardised inputs
    np.save(out / "calibration.npy", X[train])
    np.save(out / "calibration_scaled.npy", scaler.transform(X[train]))
    np.save(out / "test_X.npy", X[test])
    np.save(out / "test_X_scaled.npy", scaler.transform(X[test]))
    np.save(out / "test_y.npy", y[test])
    results = {}
    for name, (model, options) in MODELS.items():
        if (names is None and name == "boosted100") or (names is not None and name not in names):
            continue
        scaled = name in ("logistic", "mlp")  # standardised inputs: the 8-bit logistic regression on raw units agrees on 91 % only
        Xtr, Xte = (scaler.transform(X[train]), scaler.transform(X[test])) if scaled else (X[train], X[test])
        model.fit(Xtr, y[train])
        joblib.dump(model, out / f"{name}.joblib")
        family = f"{type(model).__module__}.{type(model).__name__}"
        request = {"rounding_bits": None, **options}
        compiled = (
            compile_model.compile_network(model, Xtr, request)
            if family in compile_model.NETWORKS
            else compile_model.compile_estimator(model, family, Xtr, request)
        )
        q_test = np.asarray(compiled.quantize(Xte), dtype=np.int64)
        q_outputs = compile_model.simulate(compiled, q_test)
        rows = Xte[:n_rows]
        figures = serve_with_concrete_ml(compiled, out / f"{name}-deployment", rows)
        if compiled.concrete_predict is not None:
            compiled.module.fhe_circuit.keygen()
            compiled.concrete_predict(rows[:1])  # warm
            figures["predict_execute_s"] = per_row(partial(compiled.module.predict, fhe="execute"), rows)
        else:  # compile_torch_model's QuantizedModule: forward(fhe="execute") is its in-process path
            compiled.module.fhe_circuit.keygen()
            figures["predict_execute_s"] = per_row(partial(compiled.module.forward, fhe="execute"), rows)
        results[name] = {
            **figures,
            "options": options,
            "scaled_inputs": scaled,
            "q_outputs_simulated": q_outputs.tolist(),
            "original_predictions": model.predict(Xte).tolist(),
            "original_accuracy": float(np.mean(model.predict(Xte) == y[test])),
        }
        print(f"{name}: {json.dumps({k: v for k, v in figures.items()})}", flush=True)
    (out / "reference.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",") if len(sys.argv) > 3 else None)
