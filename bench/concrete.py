"""concrete-ml beside Concrete ML's own serving, side by side in one run (`make bench-concrete`).

First runs bench/concrete_reference.py in Concrete ML's environment ($SEI_CONCRETE_PYTHON): the models
trained and compiled as SEI compiles them, timed through `predict(fhe="execute")` in process and
through `FHEModelServer.run` with serialized keys. Then builds a SEI service of the same model files
(and, for the wire, the linear adapters on the same data), and times what the service spends per row
(`ScoringService.handle`, JSON and the engine round trip included) once a client's keys are kept
and expanded (a new client's first two requests pay that: one in each engine), with one row per
request and with several. Checks every encrypted prediction against Concrete ML's
simulation and reports held-out accuracy against the original models'.

usage: SEI_CONCRETE_PYTHON=.venv-concrete-build/bin/python python -m bench.concrete [--rows 3] [--out bench/results/concrete]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"max_public_key_mb": 512, "max_request_mb": 700, "key_cache_mb": 16384}
BATCH = 4  # rows per request in the several-rows figure


def reference(out: Path, rows: int) -> dict:
    python = os.environ.get("SEI_CONCRETE_PYTHON")
    if not python:
        raise SystemExit("set SEI_CONCRETE_PYTHON to the python of Concrete ML's environment (make bench-concrete does)")
    script = ROOT / "bench" / "concrete_reference.py"  # -P: bench/concrete.py would shadow the concrete package
    subprocess.run([python, "-P", str(script), str(out), str(rows)], check=True)
    return json.loads((out / "reference.json").read_text())


def linear_models(out: Path) -> list[dict]:
    """The breast cancer classifier as the linear adapters serve it, for the wire comparison."""
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn.datasets import load_breast_cancer

    data_X, data_y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(data_X))
    X, y = data_X[order[:400]], data_y[order[:400]]
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X, y), out / "linear.joblib")
    options = {"calibration_data": str(out / "calibration.npy")}
    return [
        {"name": "linear-packed", "adapter": "sklearn-packed", "path": str(out / "linear.joblib"), "options": options},
        {"name": "linear-eiserver", "adapter": "sklearn-eiserver", "path": str(out / "linear.joblib"), "options": options},
    ]


def serve(out: Path, ref: dict):
    from sei_framework import Deployment
    from sei_framework.serving import ScoringService

    models = linear_models(out)
    for name, figures in ref.items():
        calibration = out / ("calibration_scaled.npy" if figures["scaled_inputs"] else "calibration.npy")
        models.append({"name": name, "adapter": "concrete-ml", "path": str(out / f"{name}.joblib"),
                       "options": {"calibration_data": str(calibration), **figures["options"]}})  # fmt: skip
    config = {"name": "bench-concrete", "models": models, "limits": LIMITS}
    (out / "sei.yaml").write_text(yaml.safe_dump(config))
    build = Deployment.from_file(out / "sei.yaml").build(out / "build")
    return build, ScoringService.from_build(build.path)


def timed_requests(service, name: str, rows: np.ndarray, batch: int) -> dict:
    """A fresh client's first request (keys travel, first run), then the rows `batch` at a time."""
    from sei_framework import key_id_for

    client = service.adapters[name].client(service.describe()["models"][name])
    start = time.perf_counter()
    secret, public = client.generate_keys()
    keygen = time.perf_counter() - start
    client.use_keys(secret, public)
    key_id = key_id_for(public)

    def ask(chunk: np.ndarray, with_keys: bool) -> tuple[float, int, int, np.ndarray]:
        body = {"model": name, "key_id": key_id, "data": client.encrypt(chunk)}
        if with_keys:
            body["public_keys"] = base64.b64encode(public).decode("ascii")
        request = json.dumps(body)
        start = time.perf_counter()
        answer, status = service.handle(request)
        seconds = time.perf_counter() - start
        assert status == 200, answer
        response = json.dumps(answer)
        return seconds, len(json.dumps(body["data"])), len(response), client.interpret(client.decrypt(answer["result"], len(chunk)))

    first_s, _, _, _ = ask(rows[:1], True)  # probation engine: keys read, expanded, run once
    ask(rows[:1], False)  # the trusted engine takes the proven keys over and expands them: untimed, once per client
    times, request_bytes, response_bytes, predictions = [], 0, 0, []
    for start_row in range(0, len(rows), batch):
        seconds, sent, got, prediction = ask(rows[start_row : start_row + batch], False)
        times.append(seconds / len(rows[start_row : start_row + batch]))
        request_bytes, response_bytes = request_bytes + sent, response_bytes + got
        predictions.append(prediction.predictions)
    return {
        "keygen_s": keygen, "first_request_s": first_s, "server_s_per_row": float(np.median(times)),
        "request_bytes_per_row": request_bytes / len(rows), "response_bytes_per_row": response_bytes / len(rows),
        "key_bytes": len(public), "predictions": np.concatenate(predictions).tolist(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "concrete")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ref = reference(args.out, args.rows)
    build, service = serve(args.out, ref)
    from sei_adapter_concrete import numerics

    X, Xs, y = (np.load(args.out / f) for f in ("test_X.npy", "test_X_scaled.npy", "test_y.npy"))
    results = {}
    for name in ("linear-packed", "linear-eiserver"):
        single = timed_requests(service, name, X[: args.rows], 1)
        results[name] = {k: v for k, v in single.items() if k != "predictions"}
    for name, figures in ref.items():
        rows = (Xs if figures["scaled_inputs"] else X)[: args.rows]
        single, several = timed_requests(service, name, rows, 1), timed_requests(service, name, rows, BATCH)
        described = service.describe()["models"][name]
        quantization = described["quantization"]
        scores = numerics.dequantize(np.asarray(figures["q_outputs_simulated"], dtype=np.float64),
                                     quantization["output_quantizer"], quantization["offset"])  # fmt: skip
        simulated = numerics.predictions(scores, described["task"], quantization["activation"], described["classes"])
        results[name] = {
            "concrete_predict_execute_s": figures["predict_execute_s"],
            "concrete_server_run_serialized_keys_s": figures["server_run_serialized_keys_s"],
            "sei_server_s_per_row": single["server_s_per_row"],
            f"sei_server_s_per_row_{BATCH}_per_request": several["server_s_per_row"],
            "sei_first_request_s": single["first_request_s"],
            "client_keygen_s": single["keygen_s"],
            "key_bytes": single["key_bytes"],
            "request_bytes_per_row": single["request_bytes_per_row"],
            "response_bytes_per_row": single["response_bytes_per_row"],
            "agreement_with_simulation": float(np.mean(np.asarray(single["predictions"]) == simulated[: args.rows])),
            "held_out_accuracy_simulated": float(np.mean(simulated == y)),
            "held_out_accuracy_original": figures["original_accuracy"],
            "key_memory_bytes": build.manifest["models"][[m["name"] for m in build.manifest["models"]].index(name)]["metadata"]["sizes"]["key_memory_bytes"],
        }
        print(name, json.dumps(results[name]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    chart(results, args.out / "bench.png")
    print(table(results))


def chart(results: dict, path: Path) -> None:
    """Server seconds per row, each model, the three ways side by side (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, r in results.items() if "concrete_predict_execute_s" in r]
    series = [("Concrete ML predict(fhe=execute)", "concrete_predict_execute_s"),
              ("FHEModelServer.run, serialized keys", "concrete_server_run_serialized_keys_s"),
              ("SEI concrete-ml, keys kept", "sei_server_s_per_row")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(series)
    for i, (label, key) in enumerate(series):
        ax.bar([x + i * width for x in range(len(names))], [results[n][key] for n in names], width, label=label)
    ax.set_xticks([x + width for x in range(len(names))], names)
    ax.set_yscale("log")
    ax.set_ylabel("server seconds per row")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(results: dict) -> str:
    lines = ["| model | Concrete ML predict(execute) | FHEModelServer.run, serialized keys | SEI server per row (1 / 4 per request) | keys | request / response bytes per row | agreement with simulation | held-out accuracy (compiled / original) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, r in results.items():
        if "concrete_predict_execute_s" not in r:
            lines.append(f"| {name} | | | {r['server_s_per_row']:.3f} s | {r['key_bytes'] / 1e6:.1f} MB | "
                         f"{r['request_bytes_per_row']:,.0f} / {r['response_bytes_per_row']:,.0f} | | |")  # fmt: skip
            continue
        lines.append(
            f"| {name} | {r['concrete_predict_execute_s']:.3f} s | {r['concrete_server_run_serialized_keys_s']:.3f} s | "
            f"{r['sei_server_s_per_row']:.3f} / {r[f'sei_server_s_per_row_{BATCH}_per_request']:.3f} s | "
            f"{r['key_bytes'] / 1e6:.1f} MB | {r['request_bytes_per_row']:,.0f} / {r['response_bytes_per_row']:,.0f} | "
            f"{r['agreement_with_simulation']:.0%} | {r['held_out_accuracy_simulated']:.1%} / {r['held_out_accuracy_original']:.1%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
