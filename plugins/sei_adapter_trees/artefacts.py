"""The build's artefacts as data: the ensemble's trees (server only) and its readout (what the client is told).

`trees.npz` holds the tree arrays (loaded with `allow_pickle=False`); `ensemble.json` the splits, the
plaintext post-processing and the labels. The client's half (`readout`) never holds tree structure or
leaf values: it is what describe() shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .engine.ir import Ensemble, Split, Tree

__all__ = ["ENSEMBLE_FILE", "TREES_FILE", "load_ensemble", "readout", "save_ensemble", "split_from_json", "split_to_json"]

ENSEMBLE_FILE = "ensemble.json"
TREES_FILE = "trees.npz"
LABEL_TYPES = (str, int, float, bool)
"""Labels that travel in JSON as themselves; any other type is refused at build (say what to convert)."""


def split_to_json(split: Split) -> dict[str, Any]:
    return {"feature": split.feature, "threshold": split.threshold, "op": split.op, "dtype": split.dtype,
            "nan_left": split.nan_left}  # fmt: skip


def split_from_json(data: Any) -> Split:
    """A split as describe() states it; ValueError naming what is wrong (a service the client cannot read)."""
    if not isinstance(data, dict) or set(data) != {"feature", "threshold", "op", "dtype", "nan_left"}:
        raise ValueError("a split needs exactly feature, threshold, op, dtype and nan_left")
    feature, threshold = data["feature"], data["threshold"]
    if type(feature) is not int or feature < 0 or type(threshold) not in (int, float) or not np.isfinite(threshold):
        raise ValueError("a split's feature must be a whole number >= 0 and its threshold a finite number")
    if data["op"] not in ("<", "<=") or data["dtype"] not in ("float32", "float64") or type(data["nan_left"]) is not bool:
        raise ValueError("a split's op must be < or <=, its dtype float32 or float64, nan_left true or false")
    return Split(feature, float(threshold), data["op"], data["dtype"], data["nan_left"])


def _labels(classes: tuple[Any, ...] | None) -> dict[str, Any] | None:
    """Class labels as JSON values and the numpy dtype `predict` returns them in."""
    if classes is None:
        return None
    array = np.asarray(classes)
    values = [c.item() if isinstance(c, np.generic) else c for c in classes]
    if not all(isinstance(v, LABEL_TYPES) for v in values):
        kinds = sorted({type(v).__name__ for v in values if not isinstance(v, LABEL_TYPES)})
        raise ValueError(f"class labels of type {', '.join(kinds)} cannot be described; use strings or numbers")
    return {"values": values, "dtype": array.dtype.str if array.dtype != object else "object"}


def labels_from_json(data: Any) -> np.ndarray | None:
    """The labels array `predict` returns values of (its dtype preserved: strings stay strings)."""
    if data is None:
        return None
    values, dtype = data["values"], data["dtype"]
    if not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, LABEL_TYPES) for v in values):
        raise ValueError("classes must be a list of at least two strings or numbers")
    if dtype == "object":
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array
    if not isinstance(dtype, str) or np.dtype(dtype).kind not in "biufU":
        raise ValueError(f"classes have an unexpected dtype {dtype!r}")
    return np.asarray(values, dtype=np.dtype(dtype))


def readout(ensemble: Ensemble) -> dict[str, Any]:
    """What the client needs to read scores: post-processing and labels, never trees or leaf values."""
    return {
        "task": ensemble.task,
        "n_outputs": ensemble.n_outputs,
        "n_trees": ensemble.n_trees,
        "average": ensemble.average,
        "base_score": [float(v) for v in ensemble.base_score],
        "postprocess": ensemble.postprocess,
        "postprocess_params": {k: float(v) for k, v in ensemble.postprocess_params.items()},
        "classes": _labels(ensemble.classes),
    }


def save_ensemble(ensemble: Ensemble, dest: Path) -> None:
    """Write the ensemble into `dest` as JSON and npz (no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    for k, tree in enumerate(ensemble.trees):
        arrays.update({f"{k}.split": tree.split, f"{k}.left": tree.left, f"{k}.right": tree.right,
                       f"{k}.leaf_values": tree.leaf_values})  # fmt: skip
    with (dest / TREES_FILE).open("wb") as out:
        save: Any = np.savez  # its stub types ** as `allow_pickle`
        save(out, allow_pickle=False, **arrays)
    header = {"n_features": ensemble.n_features, "splits": [split_to_json(s) for s in ensemble.splits],
              **readout(ensemble)}  # fmt: skip
    (dest / ENSEMBLE_FILE).write_text(json.dumps(header))


def load_ensemble(model_dir: Path) -> Ensemble:
    """The ensemble `save_ensemble` wrote, checked against the IR's invariants."""
    header = json.loads((model_dir / ENSEMBLE_FILE).read_text())
    with np.load(model_dir / TREES_FILE, allow_pickle=False) as data:
        trees = tuple(
            Tree(data[f"{k}.split"], data[f"{k}.left"], data[f"{k}.right"], data[f"{k}.leaf_values"])
            for k in range(header["n_trees"])
        )
    labels = labels_from_json(header["classes"])
    return Ensemble(
        n_features=header["n_features"],
        splits=tuple(split_from_json(s) for s in header["splits"]),
        trees=trees,
        n_outputs=header["n_outputs"],
        base_score=np.asarray(header["base_score"], dtype=np.float64),
        average=header["average"],
        postprocess=header["postprocess"],
        task=header["task"],
        classes=None if labels is None else tuple(labels.tolist()),
        postprocess_params=header["postprocess_params"],
    ).validate()
