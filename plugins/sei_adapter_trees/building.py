"""Build time: load a model file, import it, plan the parameters, refuse what cannot be served, verify.

Every refusal is a PluginError naming what and why. The artefacts are data (JSON and npz); the build
sends `verify_rows` rows (at every split's threshold, its float neighbours and NaN, then calibration
rows) through the real encrypted path and fails unless the predictions equal the library's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sei_framework import PluginError, install_hint

from . import backend
from .artefacts import save_ensemble
from .calibration import load_rows
from .engine.ir import Ensemble, Split
from .options import TreesOptions

__all__ = ["prepare_trees", "score_ceiling", "threshold_rows"]


def _neighbours(split: Split) -> list[float]:
    """The threshold as the library compares it, and the nearest values on each side, in its precision."""
    dtype = np.float32 if split.dtype == "float32" else np.float64
    t = dtype(split.threshold)
    return [float(t), float(np.nextafter(t, dtype(-np.inf))), float(np.nextafter(t, dtype(np.inf)))]


def threshold_rows(ensemble: Ensemble, base: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` rows, each `base` with one feature at a split's threshold, a float neighbour, or NaN."""
    rows: list[np.ndarray] = []
    for split in ensemble.splits:
        for value in [*_neighbours(split), float("nan")]:
            row = base.copy()
            row[split.feature] = value
            rows.append(row)
    if not rows:
        return base.reshape(1, -1)[:count]
    picked = np.linspace(0, len(rows) - 1, num=min(count, len(rows))).round().astype(int)
    return np.vstack([rows[i] for i in np.unique(picked)])


def score_ceiling(ensemble: Ensemble) -> float:
    """A bound on every sum of leaf values, rounded up to a power of two: the client refuses a decrypted
    sum beyond it, and learns only its order of magnitude, not a leaf value."""
    leaves = float(sum(np.abs(t.leaf_values).max() for t in ensemble.trees))
    return float(2.0 ** np.ceil(np.log2(max(leaves, 2.0**-60))))


def _import(source: Path, options: TreesOptions) -> tuple[Any, Ensemble, str]:
    try:
        from .engine.treelite_import import TreeImportError, import_model
        from .model_files import ModelFileError, load_tree_model
    except ModuleNotFoundError as exc:
        raise PluginError(
            f"building a trees-seal model needs the Python module {exc.name!r} (the `trees` extra of sei-framework); "
            f"add it: {install_hint('trees')}",
            code="missing_extra",
        ) from None
    try:
        model = load_tree_model(source, trusted_types=options.trusted_types or None)
        ensemble = import_model(model)
    except (ModelFileError, TreeImportError) as exc:
        raise PluginError(str(exc)) from None
    return model, ensemble, type(model).__name__


def _thermometer(model: Any, ensemble: Ensemble, rows: np.ndarray, options: TreesOptions) -> tuple[Ensemble, dict[str, Any]]:
    """The ensemble on a uniform per-feature grid; refused when fewer than min_agreement rows keep their prediction."""
    from .engine.thermometer import to_grid

    gridded, grid = to_grid(ensemble, rows, options.n_bits)
    agreement = float(np.mean(backend.plain_predict(gridded, rows) == backend.library_predict(model, ensemble, rows)))
    if agreement < options.min_agreement:
        raise PluginError(
            f"on the thermometer grid ({options.n_bits} bits per feature) the model predicts as the original on "
            f"{agreement:.2%} of the calibration rows, below min_agreement {options.min_agreement:g}: raise n_bits, "
            "lower min_agreement, or serve mode `splits`"
        )
    return gridded, {"n_bits": options.n_bits, "agreement": agreement, **grid}


def _verify(model: Any, ensemble: Ensemble, plan: backend.Plan, rows: np.ndarray) -> None:
    """The real encrypted path on `rows` must predict exactly what the library does, scores within the bound."""
    got_raw = backend.encrypted_raw(ensemble, plan, rows)
    want = backend.library_predict(model, ensemble, rows)
    got = backend.plain_interpret(ensemble, got_raw, plan.error_bound)
    wrong = np.flatnonzero(np.asarray(got) != np.asarray(want))
    if wrong.size:
        raise PluginError(
            f"the encrypted path predicts differently from the model on {wrong.size} of {len(rows)} check rows "
            f"(first: row {int(wrong[0])}): the model cannot be served exactly; please report it"
        )
    error = float(np.abs(got_raw - backend.plain_raw(ensemble, rows)).max())
    if error > plan.error_bound:
        raise PluginError(f"the encrypted scores differ by {error:.3g}, over the proven bound {plan.error_bound:.3g}")


def prepare_trees(source: Path, options: TreesOptions, dest: Path) -> dict[str, Any]:
    """Write ensemble.json and trees.npz into `dest`; return the metadata the service and describe() need."""
    model, ensemble, estimator = _import(source, options)
    calibration = load_rows(options.calibration_data, ensemble.n_features) if options.calibration_data else None
    extra: dict[str, Any] = {}
    if options.mode == "thermometer":
        assert calibration is not None  # the options' validator requires it in this mode
        ensemble, grid = _thermometer(model, ensemble, calibration, options)
        extra["grid"] = grid
    try:
        plan = backend.plan(ensemble, options.tolerance)
    except backend.PlanError as exc:
        raise PluginError(f"{estimator} cannot be served within tolerance {options.tolerance:g}: {exc}") from None
    base = np.median(calibration, axis=0) if calibration is not None else np.zeros(ensemble.n_features)
    check = threshold_rows(ensemble, base, options.verify_rows)
    if calibration is not None:
        check = np.vstack([check, calibration[: options.verify_rows]])
    _verify(model, ensemble, plan, check)
    save_ensemble(ensemble, dest)
    accuracy = {"tolerance": options.tolerance, "error_bound": plan.error_bound, "max_abs_sum": score_ceiling(ensemble),
                "verified_rows": len(check)}  # fmt: skip
    return {"estimator": estimator, "mode": options.mode, "n_features": ensemble.n_features,
            "n_outputs": ensemble.n_outputs, "plan": plan.to_json(), "accuracy": accuracy, **extra}  # fmt: skip
