"""Build time: load a model file, import it, plan the parameters, refuse what cannot be served, verify.

Every refusal is a PluginError naming what and why. The artefacts are data (JSON and npz); the build
sends `verify_rows` rows (at every split's threshold, its float neighbours and NaN, then calibration
rows) through the real encrypted path and fails unless the predictions equal the library's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sei_framework import ModelFileError, PluginError, install_hint, load_pickle, load_skops, read_calibration

from . import backend
from .artefacts import save_ensemble
from .engine import postprocess
from .engine.ir import Ensemble, Split
from .names import tree_feature_names
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
    """(the model object when the file is a pickle or skops file, else None; its IR; what it is)."""
    try:
        from .model_files import PICKLE_SUFFIXES, SKOPS_SUFFIX, UnsupportedModel, allowed_types, load_ensemble
    except ModuleNotFoundError as exc:
        raise PluginError(
            f"building a trees-seal model needs the Python module {exc.name!r} (the `trees` extra of sei-framework); "
            f"add it: {install_hint('trees')}",
            code="missing_extra",
        ) from None
    trusted = options.trusted_types or None
    try:
        ensemble = load_ensemble(source, trusted_types=trusted)
        model = None
        if source.suffix.lower() in (*PICKLE_SUFFIXES, SKOPS_SUFFIX):  # the object, for its own predict
            allowed = allowed_types() | set(options.trusted_types)
            model = load_skops(source, allowed) if source.suffix.lower() == SKOPS_SUFFIX else load_pickle(source, allowed)
    except (ModelFileError, UnsupportedModel) as exc:
        raise PluginError(f"{source.name}: {exc}") from None
    what = type(model).__name__ if model is not None else {".txt": "LightGBM model file"}.get(source.suffix.lower(), "XGBoost model file")
    return model, ensemble, what


def library_predict(model: Any, rows: np.ndarray) -> np.ndarray | None:
    """What the loaded model's own `predict` returns for `rows` (None without a model object: XGBoost and
    LightGBM files are read as data, and their IR is checked against their library by the engine's tests)."""
    return None if model is None else np.asarray(model.predict(rows))


def _thermometer(ensemble: Ensemble, rows: np.ndarray, options: TreesOptions) -> tuple[Ensemble, dict[str, Any]]:
    """The ensemble on a uniform per-feature grid; refused when fewer than min_agreement rows keep their prediction."""
    from .engine.thermometer import build
    from .engine.treelite_import import UnsupportedModel

    try:
        gridded, _, agreement = build(ensemble, rows, options.n_bits, options.min_agreement)
    except UnsupportedModel as exc:
        raise PluginError(f"calibration_data: {exc}") from None
    except ValueError as exc:
        raise PluginError(f"calibration_data cannot make a thermometer grid: {exc}") from None
    return gridded, {"n_bits": options.n_bits, "agreement": agreement}


def _verify(model: Any, ensemble: Ensemble, plan: backend.Plan, rows: np.ndarray) -> None:
    """The real encrypted path on `rows` must predict exactly what the plaintext walk (and, when the model
    object is at hand, its library's `predict`) does, every sum within the proven bound."""
    sums = backend.encrypted_sums(ensemble, plan, rows)
    exact = backend.plain_sums(ensemble, rows)
    error = float(np.abs(sums - exact).max())
    if error > plan.error_bound:
        raise PluginError(f"the encrypted sums differ by {error:.3g}, over the proven bound {plan.error_bound:.3g}")
    got, _ = backend.interpret(ensemble, backend.raw_scores(ensemble, sums), backend.score_bound(ensemble, plan))
    wants = [("the plaintext walk", postprocess.predict(ensemble, exact), np.ones(len(rows), dtype=bool))]
    try:
        library, kept = library_predict(model, rows), np.ones(len(rows), dtype=bool)
    except ValueError:  # a library that refuses NaN: compare on the rows without
        kept = ~np.isnan(rows).any(axis=1)
        library = library_predict(model, rows[kept])
    if library is not None:
        wants.append(("the model's own predict", library, kept))
    for what, want, rows_kept in wants:
        mine = np.asarray(got)[rows_kept]
        if ensemble.task == "regression":  # values: within the bound (a link such as exp scales it; 1e-9 relative)
            wrong = np.flatnonzero(~np.isclose(mine, want, rtol=1e-9, atol=2 * backend.score_bound(ensemble, plan)))
        else:
            wrong = np.flatnonzero(mine != np.asarray(want))
        if wrong.size:
            raise PluginError(
                f"the encrypted path predicts differently from {what} on {wrong.size} of {len(want)} check rows "
                f"(first: check row {int(wrong[0])}): the model cannot be served exactly"
            )


def prepare_trees(source: Path, options: TreesOptions, dest: Path) -> dict[str, Any]:
    """Write ensemble.json and trees.npz into `dest`; return the metadata the service and describe() need."""
    model, ensemble, estimator = _import(source, options)
    names = tree_feature_names(source, model, ensemble.n_features)
    calibration = None
    if options.calibration_data is not None:  # NaN allowed: a missing value, routed as the library routes it
        calibration = read_calibration(options.calibration_data, n_features=ensemble.n_features, names=names,
                                       header=options.calibration_header, allow_nan=True).values  # fmt: skip
    extra: dict[str, Any] = {}
    if options.mode == "thermometer":
        assert calibration is not None  # the options' validator requires it in this mode
        ensemble, grid = _thermometer(ensemble, calibration, options)
        extra["grid"] = grid
    try:
        plan = backend.plan(ensemble, options.tolerance, per_split_levels=options.mode == "splits")  # a grid hides its use
    except backend.PlanError as exc:
        raise PluginError(f"{estimator} cannot be served within tolerance {options.tolerance:g}: {exc}") from None
    base = np.zeros(ensemble.n_features)
    if calibration is not None:
        base = np.nan_to_num(np.nanmedian(calibration, axis=0)) if np.isfinite(calibration).any(axis=0).all() else base
    check = threshold_rows(ensemble, base, options.verify_rows)
    if calibration is not None:
        check = np.vstack([check, calibration[: options.verify_rows]])
    _verify(model if options.mode == "splits" else None, ensemble, plan, check)
    save_ensemble(ensemble, dest)
    accuracy = {"tolerance": options.tolerance, "error_bound": backend.score_bound(ensemble, plan),
                "max_abs_sum": score_ceiling(ensemble), "verified_rows": len(check)}  # fmt: skip
    return {"estimator": estimator, "mode": options.mode, "n_features": ensemble.n_features,
            "n_outputs": ensemble.n_outputs, "plan": plan.to_json(), "accuracy": accuracy, "workers": options.workers,
            **({"feature_names": names} if names is not None else {}), **extra}  # fmt: skip
