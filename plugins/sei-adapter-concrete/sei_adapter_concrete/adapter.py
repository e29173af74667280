"""Model adapter `concrete-ml`: tree ensembles, linear models and MLPs served with Concrete ML (TFHE).

Build: compile_model.py compiles the model in Concrete ML's own environment (or reads one the user
compiled and saved with FHEModelDev); this adapter then checks its report: its own client arithmetic
must give exactly Concrete ML's predictions, and those must agree with the original model on the
calibration rows at least `min_agreement` of the time, or the build fails naming both figures. Serving: the circuit runs in engine processes
(runtime.py) that keep each client's evaluation keys deserialised between requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from sei_framework import (
    ConfigPath, InvalidRequest, ModelAdapter, PluginError, PluginOptions, RequestSize, Rows, base64_size, decode_base64,
    read_calibration, validation_problems,
)

from . import numerics, runtime
from .names import reported_names

if TYPE_CHECKING:
    from .client import ConcreteClient

__all__ = ["ConcreteAdapter", "ConcreteOptions", "CONCRETE_PYTHON_ENV", "circuit_id"]

CONCRETE_PYTHON_ENV = "SEI_CONCRETE_PYTHON"
COMPILER = Path(__file__).with_name("compile_model.py")
REPORT, SERVER, CLIENT_SPECS = "report.json", "server.zip", "client.specs.json"
LIBRARY = "Concrete ML 1.9 / concrete-python 2.10 (TFHE)"


class ConcreteOptions(PluginOptions):
    calibration_data: ConfigPath
    """A .npy, .csv or .parquet file of representative rows (the training rows), relative to the config
    file, read like `sei predict` input (columns by position): Concrete ML sets its quantisation from
    them, and the build measures agreement on them (a model already compiled with FHEModelDev: a few of
    them run for real to check the readout)."""
    calibration_header: bool | None = None
    """Whether a CSV calibration_data's first line names the columns (default: it must, and a first
    line holding a number is refused until this says which it is)."""
    n_bits: int | None = Field(None, ge=2, le=16)
    """Quantisation bits; default 6 for trees and MLPs, 8 for linear models."""
    rounding_bits: int | None = Field(6, ge=2, le=16)
    """MLPs: accumulator bits kept before each table lookup (None: exact, often too slow to compile)."""
    min_agreement: float = Field(0.95, gt=0, le=1)
    """The share of calibration rows on which the compiled model must predict what the original does."""
    regression_tolerance: float = Field(0.05, gt=0)
    """Regressors: a row agrees when within this fraction of the original predictions' range."""
    classes: list[StrictStr] | list[StrictInt] | None = None
    """A model compiled with FHEModelDev that has no `classes_`: its class labels, in the order of its
    outputs (such a model is refused without them)."""
    compiler: str | None = None
    """The Python of Concrete ML's environment; default $SEI_CONCRETE_PYTHON, else this Python."""
    compile_timeout_s: float = Field(3600, gt=0)
    run_timeout_s: float = Field(240, gt=0)
    """A request's circuit runs longer than this: the engine is stopped and the request refused."""


def circuit_id(specs: bytes) -> str:
    """The compiled circuit's id: keys made for one circuit serve only it."""
    return hashlib.sha256(specs).hexdigest()


def _compiler(options: ConcreteOptions) -> str:
    chosen = options.compiler or os.environ.get(CONCRETE_PYTHON_ENV)
    if chosen:
        return chosen
    if find_spec("concrete") is not None and find_spec("concrete.ml") is not None:
        return sys.executable
    raise PluginError(
        "compiling for concrete-ml needs Concrete ML, which is not installed here: install "
        "`sei-adapter-concrete[compile]` in an environment of its own (its pins clash with current "
        f"scikit-learn) and name its python in the adapter's `compiler` option or in ${CONCRETE_PYTHON_ENV}"
    )


def calibration_table(options: ConcreteOptions) -> Rows:
    """calibration_data's rows and column names, read by SEI's one row reader (the header rule, columns by
    position; names.py checks them against the model's): the compiler's environment gets them as .npy,
    so Concrete ML's quantiser ranges never see a header."""
    return read_calibration(Path(options.calibration_data), header=options.calibration_header)


def calibration_rows(options: ConcreteOptions) -> np.ndarray:
    return calibration_table(options).values


def _compile(source: Path, options: ConcreteOptions, out: Path) -> dict[str, Any]:
    """Run compile_model.py in Concrete ML's environment; its report, or a PluginError saying why not."""
    table = calibration_table(options)
    calibration = table.values
    with tempfile.TemporaryDirectory(prefix="sei-concrete-") as work:
        np.save(Path(work) / "calibration.npy", calibration, allow_pickle=False)
        request = {"model": str(source), "calibration": str(Path(work) / "calibration.npy"), "out": str(out),
                   "n_bits": options.n_bits, "rounding_bits": options.rounding_bits, "precompiled": source.is_dir(),
                   "classes": options.classes}  # fmt: skip
        path = Path(work) / "request.json"
        path.write_text(json.dumps(request))
        try:
            done = subprocess.run(
                [_compiler(options), "-P", str(COMPILER), str(path)],
                capture_output=True, timeout=options.compile_timeout_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise PluginError(f"Concrete ML did not compile the model within {options.compile_timeout_s:g} s") from None
        except OSError as exc:
            raise PluginError(f"the Concrete ML compiler {options.compiler or ''} cannot be run: {exc}") from None
    said = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
    report = json.loads((out / REPORT).read_text()) if (out / REPORT).is_file() else None
    if report is not None and "refused" in report:
        raise PluginError(f"concrete-ml cannot serve {source.name}: {report['refused']}")
    if done.returncode != 0 or report is None:
        raise PluginError(f"Concrete ML failed to compile {source.name}: {said[-1] if said else f'exit {done.returncode}'}")
    report["feature_names"] = reported_names(report, table.columns, source.name)
    return report


def _agreement(report: dict[str, Any], predicted: np.ndarray, tolerance: float) -> float:
    original = np.asarray(report["calibration"]["original_predictions"])
    if report["task"] == "classifier":
        return float(np.mean(predicted == original))
    spread = float(np.ptp(original)) or 1.0
    return float(np.mean(np.abs(predicted - original) <= tolerance * spread))


PROBABILITY_TOLERANCE = 1e-6
"""The most SEI's probabilities may differ from Concrete ML's `predict_proba` on a calibration row
(both read the same integer outputs; they differ only by float rounding)."""


def check_probabilities(scores: np.ndarray, activation: str, expected: Any, name: str) -> dict[str, Any]:
    """SEI's client's probabilities must be Concrete ML's `predict_proba` (within PROBABILITY_TOLERANCE);
    what was checked, for the build's metadata."""
    ours, theirs = numerics.probabilities(scores, activation), np.asarray(expected, dtype=np.float64)
    if ours.shape != theirs.shape:
        raise PluginError(f"{name}: SEI's client reads {ours.shape[1]} class probabilities, Concrete ML "
                          f"{theirs.shape[-1]}; refusing to serve it")
    worst = float(np.abs(ours - theirs).max(initial=0.0))
    if not worst <= PROBABILITY_TOLERANCE:
        raise PluginError(f"{name}: SEI's client's probabilities differ from Concrete ML's predict_proba by up to "
                          f"{worst:.3g} (more than {PROBABILITY_TOLERANCE:g}); refusing to serve it")
    return {"rows": len(ours), "max_difference": worst, "tolerance": PROBABILITY_TOLERANCE}


def check_report(report: dict[str, Any], options: ConcreteOptions, name: str) -> dict[str, Any]:
    """The client's arithmetic must reproduce Concrete ML exactly, and the compiled model must agree
    with the original often enough; the figures go into the build's metadata."""
    calibration = report["calibration"]
    rows = np.asarray(calibration["checked_inputs"], dtype=np.float64)
    if not np.array_equal(numerics.quantize(rows, report["input_quantizers"]), np.asarray(calibration["checked_q_inputs"])):
        raise PluginError(f"{name}: SEI's client would quantize inputs differently from Concrete ML; refusing to serve it")
    scores = numerics.dequantize(np.asarray(calibration["q_outputs"], dtype=np.float64), report["output_quantizer"], report["offset"])
    predicted = numerics.predictions(scores, report["task"], report["activation"], report["classes"])
    if calibration["concrete_predictions"] is not None:
        expected = np.asarray(calibration["concrete_predictions"])
        same = np.array_equal(predicted, expected) if report["task"] == "classifier" else np.allclose(predicted, expected, rtol=1e-9, atol=1e-9)
        if not same:
            raise PluginError(f"{name}: SEI's client would read the outputs differently from Concrete ML; refusing to serve it")
    probabilities = None  # an MLP compiled from scikit-learn: Concrete ML has no predict_proba for its torch module
    if report["has_probabilities"] and calibration["concrete_probabilities"] is not None:
        probabilities = check_probabilities(scores, report["activation"], calibration["concrete_probabilities"], name)
    if calibration["original_predictions"] is None:  # a compiled model: Concrete ML's own readout was checked
        return {"rows": calibration["rows"], "agreement": None, "min_agreement": None, "probabilities": probabilities,
                "checked": "the readout of rows run for real against Concrete ML's; no original model to compare"}  # fmt: skip
    agreement = _agreement(report, predicted, options.regression_tolerance)
    if agreement < options.min_agreement:
        raise PluginError(
            f"{name} compiled at {report['n_bits']} bits agrees with the original model on {agreement:.1%} of the "
            f"{calibration['rows']} calibration rows, under min_agreement ({options.min_agreement:.1%}); raise n_bits "
            "or give calibration data closer to what the model will see"
        )
    return {"rows": calibration["rows"], "agreement": round(agreement, 6), "min_agreement": options.min_agreement,
            "probabilities": probabilities}  # fmt: skip


class ConcreteData(BaseModel):
    """A request's `data`: the model's feature count and one base64 ciphertext per row."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    n_features: StrictInt = Field(ge=1, le=2**31)
    rows: list[StrictStr] = Field(min_length=1)


class ConcreteAdapter(ModelAdapter):
    """One compiled Concrete circuit; clients send one ciphertext per row."""

    name: ClassVar[str] = "concrete-ml"
    Options = ConcreteOptions
    options: ConcreteOptions
    requirements = ("sei-adapter-concrete", "concrete-python==2.10.0")

    @classmethod
    def prepare(cls, source: Path, options: ConcreteOptions, dest: Path) -> dict[str, Any]:  # type: ignore[override]  # the core validates `options` with cls.Options before it calls prepare
        source = Path(source)
        with tempfile.TemporaryDirectory(prefix="sei-concrete-out-") as out:
            report = _compile(source, options, Path(out))
            checked = check_report(report, options, source.name)
            shutil.copy(Path(out) / SERVER, dest / SERVER)
            with zipfile.ZipFile(Path(out) / "client.zip") as bundle:
                (dest / CLIENT_SPECS).write_bytes(bundle.read(CLIENT_SPECS))
        report.pop("calibration")
        (dest / REPORT).write_text(json.dumps(report))
        sizes = {key: report[key] for key in ("ciphertext_bytes", "result_bytes", "evaluation_key_bytes", "key_memory_bytes")}
        return {"family": report["family"], "n_features": report["n_features"], "n_outputs": report["n_outputs"],
                "n_bits": report["n_bits"], "calibration": checked, "sizes": sizes}  # fmt: skip

    @classmethod
    def request_size(cls, metadata: dict[str, Any]) -> RequestSize:
        """One ciphertext per row; evaluation keys of tens to hundreds of MB, held expanded by the engine."""
        sizes = metadata["sizes"]
        return RequestSize(
            batch_bytes=base64_size(sizes["ciphertext_bytes"]) + 4,
            public_key_bytes=base64_size(sizes["evaluation_key_bytes"]),
            key_bytes=sizes["evaluation_key_bytes"],
            key_memory_bytes=sizes["evaluation_key_bytes"] + sizes["key_memory_bytes"],
        )

    def __init__(self, model_dir: Path, metadata: dict[str, Any], options: ConcreteOptions) -> None:
        super().__init__(model_dir, metadata, options)
        self.report = json.loads((model_dir / REPORT).read_text())
        self.specs = (model_dir / CLIENT_SPECS).read_bytes()
        self.server_path = str((model_dir / SERVER).resolve())
        self.n_features = int(self.report["n_features"])
        layout = self.report.get("ciphertext_layout")  # builds before it: the size check only
        self.payload = tuple(layout["payload"]) if layout else (0, 0)
        self.frame = base64.b64decode(layout["frame"]) if layout else None

    def describe(self) -> dict[str, Any]:
        report = self.report
        circuit = circuit_id(self.specs)
        return {
            **({"feature_names": report["feature_names"]} if report.get("feature_names") else {}),
            "family": report["family"],
            "task": report["task"],
            "n_features": self.n_features,
            "n_outputs": report["n_outputs"],
            "classes": report["classes"],
            "has_probabilities": report["has_probabilities"],
            "quantization": {key: report[key] for key in ("input_quantizers", "output_quantizer", "activation", "offset")},
            "client_specs": base64.b64encode(self.specs).decode("ascii"),
            "circuit": circuit,
            "key_scheme": f"concrete-{circuit[:32]}",
            "encryption": {
                "library": LIBRARY,
                "scheme": "TFHE",
                "n_bits": report["n_bits"],
                "evaluation_key_bytes": report["evaluation_key_bytes"],
                "trees_summed_under_encryption": report["trees_summed_under_encryption"],
            },
            "agreement": self.metadata.get("calibration"),
        }

    def load_public_keys(self, data: bytes) -> runtime.KeyHandle:
        expected = int(self.report["evaluation_key_bytes"])
        if len(data) != expected:
            raise InvalidRequest(
                f"evaluation keys for this model are {expected} bytes, not {len(data)} (keys made for another model?)",
                code="invalid_keys",
            )
        return runtime.admit(data, self.options.run_timeout_s)

    def key_size(self, keys: runtime.KeyHandle) -> int:
        return len(keys.blob) + int(self.report["key_memory_bytes"])

    def count_rows(self, data: Any) -> int:
        rows = data.get("rows") if isinstance(data, dict) else None
        return len(rows) if isinstance(rows, list) else 1

    def _ciphertexts(self, data: Any) -> list[bytes]:
        try:
            parsed = ConcreteData.model_validate(data)
        except ValidationError as exc:
            problems = validation_problems(exc, "data", limit=5)
            raise InvalidRequest("; ".join(problems) or "data is invalid", code="invalid_data") from None
        if parsed.n_features != self.n_features:
            raise InvalidRequest(f"the model takes {self.n_features} features, not {parsed.n_features}", code="wrong_features")
        size = int(self.report["ciphertext_bytes"])  # every row's ciphertext of a circuit has this size
        blobs = []
        for i, text in enumerate(parsed.rows):
            if len(text) > 4 * size:
                raise InvalidRequest(f"ciphertext {i} is larger than any this model's rows make", code="invalid_ciphertext")
            blob = decode_base64(text, f"ciphertext {i}")
            if len(blob) != size:
                raise InvalidRequest(
                    f"ciphertext {i} is {len(blob)} bytes; this model's are {size} (made for another model?)",
                    code="invalid_ciphertext",
                )
            if self.frame is not None and blob[: self.payload[0]] + blob[self.payload[1] :] != self.frame:
                raise InvalidRequest(
                    f"ciphertext {i} was not made for this model's circuit (its value type differs)", code="invalid_ciphertext"
                )
            blobs.append(blob)
        return blobs

    def predict(self, data: Any, keys: runtime.KeyHandle) -> list[str]:
        results = runtime.run(keys, self.server_path, self._ciphertexts(data), self.options.run_timeout_s)
        return [base64.b64encode(result).decode("ascii") for result in results]

    def engine_pids(self) -> dict[str, int | None]:
        """The process id of each engine of this worker (None: not running)."""
        return {role: engine.pid for role, engine in runtime.engines().items()}

    @classmethod
    def client(cls, description: dict[str, Any]) -> ConcreteClient:
        from .client import ConcreteClient

        return ConcreteClient(description)

