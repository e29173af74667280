"""Tree ensembles on SEAL (the trees engine) beside Concrete ML and SEI's concrete-ml adapter, in one run.

Models (breast cancer, 400 training rows, the rest held out, as bench/concrete_reference.py splits them): a depth-5
decision tree, a random forest of 20 x depth 4, XGBoost 100 x depth 6.
1. Concrete ML in-process `predict(fhe="execute")`, in Concrete ML's environment ($SEI_CONCRETE_PYTHON running
   bench/concrete_reference.py, which trains the models there and compiles them as SEI's adapter does);
2. SEI's concrete-ml adapter serving those model files ($SEI_CONCRETE_SEI_PYTHON running bench/trees_concrete_sei.py);
3. the trees engine on the same models trained here (same data, same hyperparameters; the table states whether
   their predictions equal the Concrete side's originals), full batches, its client and service in separate
   processes (bench/trees_engine_side.py), the service on 1 and on 2 worker processes.

usage: SEI_CONCRETE_PYTHON=... SEI_CONCRETE_SEI_PYTHON=... python -m bench.trees [--concrete-rows 1] [--no-concrete]
(`make bench-trees` sets both.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"tree": 150_000, "forest": 20_000, "boosted100": 2_000}  # server rows/s (issue 18)
PROTOTYPE_UP = {"tree": 2_496, "forest": 30_723}  # bytes per row the prototype uploaded


def models() -> dict[str, object]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier
    from xgboost import XGBClassifier

    return {"tree": DecisionTreeClassifier(max_depth=5, random_state=0),
            "forest": RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0),
            "boosted100": XGBClassifier(n_estimators=100, max_depth=6, random_state=0)}


def side(*args: str) -> dict:
    got = subprocess.run([sys.executable, "-m", "bench.trees_engine_side", *args], check=True, cwd=ROOT,
                         capture_output=True, text=True)
    return json.loads(got.stdout.strip().splitlines()[-1])


def engine(out: Path, repeats: int) -> dict:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    train, test = order[:400], order[400:]
    np.save(out / "test_X.npy", X[test])
    results = {}
    for name, model in models().items():
        model.fit(X[train], y[train])  # type: ignore[attr-defined]
        joblib.dump(model, out / f"engine-{name}.joblib")
        enc = side("client-encrypt", str(out), name)
        serve = {w: side("serve", str(out), name, str(w), str(repeats)) for w in (1, 2)}
        dec = side("client-decrypt", str(out), name)
        rows = enc["rows"]
        results[name] = {**enc, **dec, "serve": serve, "up_bytes_per_row": enc["request_bytes"] / rows,
                         "down_bytes_per_row": serve[2]["response_bytes"] / rows,
                         "test_predictions": model.predict(X[test]).tolist()}  # type: ignore[attr-defined]
        print(name, json.dumps(results[name]), flush=True)
    return results


def _fmt(v: float | None, spec: str, missing: str) -> str:
    return missing if v is None else format(v, spec)


def table(eng: dict, ref: dict, sei: dict) -> str:
    head = ("| model | server rows/s, 1 worker | 2 workers | target | client encrypt rows/s | decrypt rows/s | "
            "rows per CPU-s (2 workers) | up B/row (target) | down B/row | key bytes | service peak MB | client peak MB (enc/dec) | "
            "agreement with predict | error bound / max error | Concrete ML execute s/row | SEI concrete-ml s/row | "
            "ratio to Concrete ML |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for name, e in eng.items():
        s1, s2 = e["serve"][1]["server_rows_per_s"], e["serve"][2]["server_rows_per_s"]
        up_target = f" ({PROTOTYPE_UP[name] / 3:,.0f})" if name in PROTOTYPE_UP else ""
        c = ref.get(name, {}).get("predict_execute_s")
        si = sei.get(name, {}).get("server_s_per_row")
        peak = max(e["serve"][1]["service_peak_mb"], e["serve"][2]["service_peak_mb"])
        lines.append(
            f"| {name} | {s1:,.0f} | {s2:,.0f} | {TARGETS[name]:,} | {e['encrypt_rows_per_s']:,.0f} | "
            f"{e['decrypt_rows_per_s']:,.0f} | {e['serve'][2]['rows_per_cpu_s']:,.0f} | "
            f"{e['up_bytes_per_row']:,.0f}{up_target} | {e['down_bytes_per_row']:,.0f} | "
            f"{e['key_bytes']:,} | {peak:,.0f} | {e['client_encrypt_peak_mb']:,.0f}/{e['client_decrypt_peak_mb']:,.0f} | "
            f"{100 * e['agreement_with_predict']:.2f} % | {e['error_bound']:.1e} / {e['max_abs_error_of_sums']:.1e} | "
            f"{_fmt(c, '.2f', 'not run')} | {_fmt(si, '.2f', 'not run')} | "
            f"{_fmt(s2 * c if c else None, ',.0f', '-')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "trees")
    ap.add_argument("--concrete-rows", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-concrete", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    eng = engine(args.out, args.repeats)  # first: its figures are saved even if a Concrete side fails
    (args.out / "engine.json").write_text(json.dumps(eng, indent=2))
    ref: dict = {}
    sei: dict = {}
    if not args.no_concrete:
        build_py, sei_py = os.environ.get("SEI_CONCRETE_PYTHON"), os.environ.get("SEI_CONCRETE_SEI_PYTHON")
        if not build_py or not sei_py:
            raise SystemExit("set SEI_CONCRETE_PYTHON and SEI_CONCRETE_SEI_PYTHON (make bench-trees does), or --no-concrete")
        subprocess.run([build_py, "-P", str(ROOT / "bench" / "concrete_reference.py"), str(args.out),
                        str(args.concrete_rows), ",".join(TARGETS)], check=True)
        ref = json.loads((args.out / "reference.json").read_text())
        subprocess.run([sei_py, "-m", "bench.trees_concrete_sei", str(args.out), str(args.concrete_rows)], check=True,
                       cwd=ROOT)
        sei = json.loads((args.out / "sei_concrete.json").read_text())
    for name, e in eng.items():  # trained here and in Concrete ML's environment: do the two models agree?
        if name in ref:
            same = np.asarray(e["test_predictions"]) == np.asarray(ref[name]["original_predictions"])
            e["same_predictions_as_concrete_side_model"] = float(np.mean(same))
    (args.out / "results.json").write_text(json.dumps({"engine": eng, "concrete": ref, "sei_concrete": sei}, indent=2))
    print(f"load average at the end: {os.getloadavg()}")
    print(table(eng, ref, sei))


if __name__ == "__main__":
    main()
