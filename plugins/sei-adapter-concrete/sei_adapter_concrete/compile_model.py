"""Compile a trained model with Concrete ML: run by the Python of Concrete ML's own environment.

    python -P compile_model.py REQUEST.json

Concrete ML pins its whole stack (numpy, scikit-learn, torch, xgboost), so SEI's build runs this
script in the environment that has it (where `sei-adapter-concrete[compile]` installs SEI too); of
SEI it imports only the public model-file loader, which unpickles the model through ALLOWED_TYPES
(the families below and what they hold), so a model file runs no code. It writes, into the
request's `out` folder, what `FHEModelDev` saves (server.zip, client.zip) and `report.json`: the
model's family, its quantizers and post-processing, the evaluation keys' size, and facts on the
calibration rows (quantized inputs, simulated quantized outputs, Concrete ML's own simulated
predictions, the original model's predictions). The adapter checks those facts; it decides.

A refusal (a family it cannot serve, features that do not match) is written as report.json
{"refused": REASON}; an error is a traceback on stderr and no report.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

# scikit-learn / XGBoost class -> (Concrete ML class, task, post-processing after dequantisation)
TREES = {
    "sklearn.tree._classes.DecisionTreeClassifier": ("DecisionTreeClassifier", "classifier", "none"),
    "sklearn.tree._classes.DecisionTreeRegressor": ("DecisionTreeRegressor", "regressor", "none"),
    "sklearn.ensemble._forest.RandomForestClassifier": ("RandomForestClassifier", "classifier", "none"),
    "sklearn.ensemble._forest.RandomForestRegressor": ("RandomForestRegressor", "regressor", "none"),
    "xgboost.sklearn.XGBClassifier": ("XGBClassifier", "classifier", "logistic"),
    "xgboost.sklearn.XGBRegressor": ("XGBRegressor", "regressor", "none"),
}
LINEAR = {
    "sklearn.linear_model._logistic.LogisticRegression": ("LogisticRegression", "classifier", "logistic"),
    "sklearn.svm._classes.LinearSVC": ("LinearSVC", "classifier", "logistic"),
    "sklearn.linear_model._base.LinearRegression": ("LinearRegression", "regressor", "none"),
    "sklearn.linear_model._ridge.Ridge": ("Ridge", "regressor", "none"),
    "sklearn.linear_model._coordinate_descent.Lasso": ("Lasso", "regressor", "none"),
    "sklearn.linear_model._coordinate_descent.ElasticNet": ("ElasticNet", "regressor", "none"),
    "sklearn.svm._classes.LinearSVR": ("LinearSVR", "regressor", "none"),
}
NETWORKS = {
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier": ("MLPClassifier", "classifier", "logistic"),
    "sklearn.neural_network._multilayer_perceptron.MLPRegressor": ("MLPRegressor", "regressor", "none"),
}
# What fitted models of those families hold, beside numpy data (sei_framework.DATA_TYPES)
HELD = (
    "sklearn.tree._tree.Tree",  # a decision tree's nodes
    "xgboost.core.Booster",  # XGBoost's trees, restored from its own binary format
    "sklearn.preprocessing._label.LabelBinarizer",  # an MLP classifier's labels
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)
DEFAULT_BITS = {"trees": 6, "linear": 8, "network": 6}  # n_bits when the request gives none
XGB_REGRESSOR_OFFSET = 0.5  # Concrete ML cuts XGBoost's graph before its final "+ 0.5" and adds it back in the clear
CHECKED_ROWS = 64  # calibration rows whose quantized inputs the adapter compares with its own


class Refused(Exception):
    """The model cannot be served; the message says why."""


def load_rows(path: Path) -> np.ndarray:
    """Calibration rows from the .npy file the adapter wrote (it reads the user's file with SEI's row reader)."""
    if path.suffix != ".npy":
        raise Refused(f"calibration data must come as .npy from the adapter, not {path.name}")
    rows = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    if rows.ndim != 2 or len(rows) < 2 or not np.isfinite(rows).all():
        raise Refused(f"calibration data {path.name} must be a 2-D table of at least 2 finite rows, got shape {rows.shape}")
    return rows


def quantizer(q: Any) -> dict:
    """A Concrete ML UniformQuantizer's parameters, as plain JSON (what quant/dequant use): scale and
    zero point are numbers, or lists with one per channel (the last axis)."""

    def plain(values: Any) -> float | list[float]:
        flat = np.asarray(values, dtype=np.float64).ravel()
        return float(flat[0]) if flat.size == 1 else flat.tolist()
    no_clipping = bool(getattr(q, "no_clipping", False))
    if not no_clipping and getattr(q, "n_bits", None) is None:
        raise Refused("the model has a clipping quantizer without a bit width")
    return {
        "n_bits": None if no_clipping else int(q.n_bits),
        "offset": int(q.offset),
        "is_narrow": bool(getattr(q, "is_narrow", False)),
        "no_clipping": no_clipping,
        "scale": plain(q.scale),
        "zero_point": plain(q.zero_point),
    }


def import_trees(cml_cls: Any, model: Any, X: np.ndarray, n_bits: int) -> Any:
    """from_sklearn_model with the trees summed under encryption, so the client decrypts one sum,
    never one output per tree. Concrete ML 1.9 sums only in the clear on this path; its own `fit`
    can sum under encryption (tree_onnx_graph_preprocessing's fhe_ensembling), so pass that here."""
    from concrete.ml.sklearn import tree_to_numpy

    original = tree_to_numpy.tree_onnx_graph_preprocessing
    tree_to_numpy.tree_onnx_graph_preprocessing = functools.partial(original, fhe_ensembling=True)
    try:
        cml = cml_cls.from_sklearn_model(model, X, n_bits=n_bits)
    finally:
        tree_to_numpy.tree_onnx_graph_preprocessing = original
    cml._fhe_ensembling = True
    return cml


def torch_network(model: Any) -> Any:
    """The scikit-learn MLP's layers as a torch module with the same weights."""
    import torch

    activations = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "logistic": torch.nn.Sigmoid, "identity": torch.nn.Identity}
    layers = []
    for i, (coef, intercept) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        linear = torch.nn.Linear(coef.shape[0], coef.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(coef.T, dtype=torch.float32))
            linear.bias.copy_(torch.tensor(intercept, dtype=torch.float32))
        layers.append(linear)
        if i < len(model.coefs_) - 1:
            layers.append(activations[model.activation]())
    return torch.nn.Sequential(*layers)


class Compiled:
    """What the steps after compilation need, whichever path compiled the model."""

    def __init__(
        self, module: Any, quantize: Any, dequantize_output: Any, circuit: Any, concrete_predict: Any, concrete_proba: Any
    ) -> None:
        self.module = module
        self.quantize = quantize
        self.dequantize_output = dequantize_output
        self.circuit = circuit
        self.concrete_predict = concrete_predict
        self.concrete_proba = concrete_proba


def indexed_classes(model: Any) -> tuple[Any, np.ndarray | None]:
    """A classifier whose labels are not 0..k-1 (strings, say) as a copy labelled 0..k-1, which Concrete ML
    compiles (its forests take integer labels only), and the labels to map its predictions back with.

    scikit-learn keeps the labels in `classes_` only: the trees' values and the coefficients are
    already per class index, so relabelling changes nothing else. Other models: (model, None)."""
    classes = getattr(model, "classes_", None)
    if classes is None:
        return model, None
    classes = np.asarray(classes)
    if np.issubdtype(classes.dtype, np.integer) and np.array_equal(classes, np.arange(len(classes))):
        return model, None
    relabelled = copy.deepcopy(model)
    relabelled.classes_ = np.arange(len(classes))
    return relabelled, classes


def compile_estimator(model: Any, family: str, X: np.ndarray, request: dict) -> Compiled:
    import concrete.ml.sklearn as cml_sklearn

    cml_name = (TREES.get(family) or LINEAR[family])[0]
    cml_cls = getattr(cml_sklearn, cml_name)
    n_bits = int(request["n_bits"])
    model, labels = indexed_classes(model)
    cml = import_trees(cml_cls, model, X, n_bits) if family in TREES else cml_cls.from_sklearn_model(model, X, n_bits=n_bits)
    cml.compile(X)
    has_proba = hasattr(model, "predict_proba")

    def concrete_predict(rows: np.ndarray) -> np.ndarray:
        predicted = cml.predict(rows, fhe="simulate")
        return predicted if labels is None else labels[np.asarray(predicted, dtype=np.int64)]

    return Compiled(
        cml,
        cml.quantize_input,
        cml.dequantize_output,
        cml.fhe_circuit,
        concrete_predict,
        (lambda rows: cml.predict_proba(rows, fhe="simulate")) if has_proba else None,
    )


def compile_network(model: Any, X: np.ndarray, request: dict) -> Compiled:
    from concrete.ml.torch.compile import compile_torch_model

    if model.activation not in ("relu", "tanh", "logistic", "identity"):
        raise Refused(f"MLP activation {model.activation!r} is not one this adapter imports")
    rounding = request.get("rounding_bits")
    module = compile_torch_model(
        torch_network(model), X.astype(np.float32), n_bits=int(request["n_bits"]), rounding_threshold_bits=rounding
    )
    return Compiled(module, module.quantize_input, module.dequantize_output, module.fhe_circuit, None, None)


def simulate(compiled: Compiled, q_inputs: np.ndarray) -> np.ndarray:
    """Quantized outputs of the compiled circuit, simulated one row at a time as it is served."""
    outputs = [np.asarray(compiled.circuit.simulate(q_inputs[i : i + 1])) for i in range(len(q_inputs))]
    return np.concatenate(outputs, axis=0).reshape(len(q_inputs), -1)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def ciphertext_layout(ciphertexts: list[bytes]) -> dict:
    """Where this circuit's ciphertexts hold their encrypted words, and the bytes around them (the
    value's type: shape, precision, key, encoding), which every ciphertext of the circuit repeats
    exactly: fresh encryptions of one row differ only in the words."""
    rows = np.frombuffer(b"".join(ciphertexts), dtype=np.uint8).reshape(len(ciphertexts), -1)
    differ = np.nonzero((rows != rows[0]).any(axis=0))[0]
    start, stop = int(differ.min()) // 8 * 8, -(-(int(differ.max()) + 1) // 8) * 8
    frame = ciphertexts[0][:start] + ciphertexts[0][stop:]
    return {"payload": [start, stop], "frame": base64.b64encode(frame).decode("ascii")}


def measure_serving(out: Path, q_row: np.ndarray) -> tuple[dict, Callable[[np.ndarray], np.ndarray]]:
    """One fresh key set and one served row, as the service holds and runs them: key and wire sizes,
    the memory one deserialised (and, after its first run, expanded) key set takes, and times."""
    from concrete import fhe

    client = fhe.Client.load(out / "client.zip")
    start = time.perf_counter()
    client.keygen(force=True)
    keygen_seconds = time.perf_counter() - start
    blob = client.evaluation_keys.serialize()
    ciphertext = client.encrypt(q_row).serialize()
    layout = ciphertext_layout([ciphertext] + [client.encrypt(q_row).serialize() for _ in range(3)])
    server = fhe.Server.load(out / "server.zip")
    before = _rss_bytes()
    keys = fhe.EvaluationKeys.deserialize(blob)
    times = []
    for _ in range(2):  # the first run expands compressed keys; the second is what a kept key set costs
        start = time.perf_counter()
        result = server.run(fhe.Value.deserialize(ciphertext), evaluation_keys=keys).serialize()
        times.append(time.perf_counter() - start)
    def run(q: np.ndarray) -> np.ndarray:
        """The circuit run for real on one quantized row: its decrypted integer outputs."""
        result = server.run(client.encrypt(q), evaluation_keys=keys)
        return np.asarray(client.decrypt(result)).reshape(1, -1)

    return {
        "evaluation_key_bytes": len(blob),
        "key_memory_bytes": max(_rss_bytes() - before, len(blob)),
        "ciphertext_bytes": len(ciphertext),
        "ciphertext_layout": layout,
        "result_bytes": len(result),
        "keygen_seconds": round(keygen_seconds, 3),
        "first_run_seconds": round(times[0], 3),
        "run_seconds": round(times[1], 3),
    }, run


def as_json_list(values: Any) -> list:
    return [v.item() if hasattr(v, "item") else v for v in np.asarray(values).ravel()]


def load_model(path: Path) -> object:
    """The model file, unpickled through the allow-list; a file naming another type is refused by name."""
    from sei_framework import DATA_TYPES, ModelFileError, load_pickle

    try:
        return load_pickle(path, DATA_TYPES | {*TREES, *LINEAR, *NETWORKS, *HELD})
    except ModelFileError as exc:
        if not exc.refused:
            raise
        families = sorted(name.rsplit(".", 1)[1] for name in (*TREES, *LINEAR, *NETWORKS))
        shown = ", ".join(name.rsplit(".", 1)[1] for name in exc.refused)
        raise Refused(
            f"{shown} is not a family this adapter compiles (it takes {', '.join(families)}): {exc}"
        ) from None


def fitted_names(model: Any) -> list[str] | None:
    """The `feature_names_in_` a model fitted on a DataFrame kept (None: fitted on an array)."""
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(name) for name in names]


def compile_request(request: dict) -> dict:
    from concrete.ml.deployment import FHEModelDev

    out = Path(request["out"])
    X = load_rows(Path(request["calibration"]))
    model: Any = load_model(Path(request["model"]))
    family = f"{type(model).__module__}.{type(model).__name__}"
    if family not in TREES and family not in LINEAR and family not in NETWORKS:
        known = sorted(name.rsplit(".", 1)[1] for name in (*TREES, *LINEAR, *NETWORKS))
        raise Refused(f"{type(model).__name__} is not a family this adapter compiles (it takes {', '.join(known)})")
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        raise Refused(f"{type(model).__name__} is not fitted (it has no n_features_in_)")
    if X.shape[1] != n_features:
        raise Refused(f"the calibration data has {X.shape[1]} columns; the model takes {n_features} features")
    cml_name, task, activation = (TREES.get(family) or LINEAR.get(family) or NETWORKS[family])
    kind = "trees" if family in TREES else "linear" if family in LINEAR else "network"
    request = {**request, "n_bits": request.get("n_bits") or DEFAULT_BITS[kind]}
    start = time.perf_counter()
    compiled = compile_network(model, X, request) if family in NETWORKS else compile_estimator(model, family, X, request)
    compile_seconds = time.perf_counter() - start
    FHEModelDev(str(out), compiled.module).save(via_mlir=True)

    q_inputs = np.asarray(compiled.quantize(X), dtype=np.int64)
    q_outputs = simulate(compiled, q_inputs)
    module = compiled.module
    inputs = module.input_quantizers
    outputs = module.output_quantizers
    if len(outputs) != 1 or len(inputs) not in (1, X.shape[1]):
        raise Refused("the compiled model has several outputs or inputs; this adapter serves one of each")
    serving, _ = measure_serving(out, q_inputs[:1])
    classes = getattr(model, "classes_", None)
    report = {
        "family": type(model).__name__,
        "concrete_class": cml_name,
        "task": task,
        "classes": as_json_list(classes) if task == "classifier" else None,
        "n_features": int(X.shape[1]),
        "feature_names": fitted_names(model),
        "n_outputs": int(q_outputs.shape[1]),
        "input_quantizers": [quantizer(q) for q in inputs],
        "output_quantizer": quantizer(outputs[0]),
        "activation": activation,
        "offset": XGB_REGRESSOR_OFFSET if family == "xgboost.sklearn.XGBRegressor" else 0.0,
        "has_probabilities": task == "classifier" and hasattr(model, "predict_proba"),
        "trees_summed_under_encryption": family in TREES,
        "n_bits": int(request["n_bits"]),
        "rounding_bits": request.get("rounding_bits") if family in NETWORKS else None,
        **serving,
        "compile_seconds": round(compile_seconds, 3),
        "versions": {name: metadata.version(name) for name in ("concrete-ml", "concrete-python", "scikit-learn")},
        "calibration": {
            "rows": int(len(X)),
            "checked_inputs": X[:CHECKED_ROWS].tolist(),
            "checked_q_inputs": q_inputs[:CHECKED_ROWS].tolist(),
            "q_outputs": q_outputs.tolist(),
            "original_predictions": as_json_list(model.predict(X)),
            "concrete_predictions": as_json_list(compiled.concrete_predict(X)) if compiled.concrete_predict else None,
            "concrete_probabilities": compiled.concrete_proba(X).tolist() if compiled.concrete_proba else None,
        },
    }
    (out / "report.json").write_text(json.dumps(report))
    return report


# Concrete ML model classes (as FHEModelDev saves them) -> (task, post-processing after dequantisation)
COMPILED = {
    **{name: (task, activation) for name, task, activation in (*TREES.values(), *LINEAR.values())},
    "NeuralNetClassifier": ("classifier", "logistic"),
    "NeuralNetRegressor": ("regressor", "none"),
}
ENSEMBLES = {"RandomForestClassifier", "RandomForestRegressor", "XGBClassifier", "XGBRegressor"}
FHE_CHECKED_ROWS = 3  # a compiled model comes without its circuit's simulation: these rows run for real


def compiled_classes(model: Any, given: list | None, count: int) -> np.ndarray:
    """A compiled classifier's labels: its `classes_`, else the adapter's `classes` option; never guessed
    (labels 0..k-1 in place of the real ones would be wrong answers that every check passes)."""
    own = getattr(model, "classes_", None)
    if own is None and given is None:
        raise Refused(
            f"this compiled {type(model).__name__} has no class labels (classes_): give them, in the order of "
            "its outputs, in the adapter's `classes` option"
        )
    if own is not None and given is not None and as_json_list(own) != list(given):
        raise Refused(f"the `classes` option {list(given)} differs from the model's own labels {as_json_list(own)}")
    classes = np.asarray(own if own is not None else given)
    if len(classes) != count:
        raise Refused(f"{len(classes)} class labels for a model with {count} classes")
    return classes


def inspect_compiled(request: dict) -> dict:
    """A model the user compiled and saved with FHEModelDev: its readout checked on a few calibration
    rows run for real (there is no original model to measure agreement against)."""
    import shutil

    from concrete.ml.deployment import FHEModelClient

    folder, out = Path(request["model"]), Path(request["out"])
    if not (folder / "client.zip").is_file() or not (folder / "server.zip").is_file():
        raise Refused(f"{folder.name} is not a folder FHEModelDev saved (it needs client.zip and server.zip)")
    model = FHEModelClient(str(folder)).model
    name = type(model).__name__
    if name not in COMPILED:
        raise Refused(f"a compiled {name} is not a model this adapter serves (it takes {', '.join(sorted(COMPILED))})")
    if name in ENSEMBLES and not getattr(model, "_fhe_ensembling", False):
        raise Refused(
            f"this {name} sums its trees in the clear, so each client would decrypt every tree's output; "
            "give SEI the scikit-learn or XGBoost model file instead, which it compiles with the sum under encryption"
        )
    task, activation = COMPILED[name]
    X = load_rows(Path(request["calibration"]))
    inputs, outputs = model.input_quantizers, model.output_quantizers
    n_features = X.shape[1]
    if len(inputs) not in (1, n_features) or len(outputs) != 1:
        raise Refused(f"the calibration data has {n_features} columns; the compiled model has {len(inputs)} inputs")
    for archive in ("client.zip", "server.zip"):
        shutil.copy(folder / archive, out / archive)
    q_inputs = np.asarray(model.quantize_input(X.astype(np.float32) if name.startswith("NeuralNet") else X), dtype=np.int64)
    serving, run = measure_serving(out, q_inputs[:1])
    q_outputs = np.concatenate([run(q_inputs[i : i + 1]) for i in range(min(FHE_CHECKED_ROWS, len(X)))])
    values = model.post_processing(model.dequantize_output(q_outputs))  # Concrete ML's own readout
    probabilities = None
    classes = None
    if task == "classifier":
        probabilities = values if values.ndim == 2 and values.shape[1] > 1 else np.stack([1 - values.ravel(), values.ravel()], axis=1)
        classes = compiled_classes(model, request.get("classes"), probabilities.shape[1])
        predicted = np.asarray(classes)[np.argmax(probabilities, axis=1)]
    else:
        predicted = values.ravel() if values.ndim == 2 and values.shape[1] == 1 else values
    report = {
        "family": name,
        "concrete_class": name,
        "task": task,
        "classes": as_json_list(classes) if task == "classifier" else None,
        "n_features": int(n_features),
        "n_outputs": int(q_outputs.shape[1]),
        "input_quantizers": [quantizer(q) for q in inputs],
        "output_quantizer": quantizer(outputs[0]),
        "activation": activation,
        "offset": XGB_REGRESSOR_OFFSET if name == "XGBRegressor" else 0.0,
        "has_probabilities": task == "classifier",
        "trees_summed_under_encryption": name in ENSEMBLES or name.startswith("DecisionTree"),
        "n_bits": None,
        "rounding_bits": None,
        **serving,
        "compile_seconds": None,
        "precompiled": True,
        "versions": {name: metadata.version(name) for name in ("concrete-ml", "concrete-python", "scikit-learn")},
        "calibration": {
            "rows": int(len(q_outputs)),
            "checked_inputs": X[: len(q_outputs)].tolist(),
            "checked_q_inputs": q_inputs[: len(q_outputs)].tolist(),
            "q_outputs": q_outputs.tolist(),
            "original_predictions": None,
            "concrete_predictions": as_json_list(predicted),
            "concrete_probabilities": probabilities.tolist() if probabilities is not None else None,
        },
    }
    (out / "report.json").write_text(json.dumps(report))
    return report


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text())
    try:
        inspect_compiled(request) if request.get("precompiled") else compile_request(request)
    except Refused as exc:  # a file, not an exit status: a library's exit handler may change that
        (Path(request["out"]) / "report.json").write_text(json.dumps({"refused": str(exc)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
