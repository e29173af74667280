"""Thermometer mode: the client sends a full thermometer code on a uniform per-feature grid, so it learns the grid
only, not the model's split thresholds; and the upload cost of each mode.

The grid has ``n_bits`` edges per feature, evenly spaced strictly inside the calibration data's [min, max]. Bit
``k`` of feature ``f`` is 1 when ``x_f > edge_k`` (float64). Every split threshold snaps to its feature's nearest
edge, which changes predictions: agreement with the exact model is measured on the calibration rows, and the
model is refused below ``min_agreement``. NaN has no place on a shared grid, so rows with NaN are refused
(``bits.RowError``) in this mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from . import bits, postprocess, reference
from .ir import Ensemble, Split, Tree
from .treelite_import import UnsupportedModel

Mode = Literal["exact", "thermometer"]


@dataclass(frozen=True, eq=False)
class Grid:
    """``edges[f]`` is float64[n_bits], increasing: the thermometer edges of feature ``f``."""

    edges: np.ndarray  # float64[n_features, n_bits]

    @property
    def n_bits(self) -> int:
        return int(self.edges.shape[1])

    def to_json(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist()}

    @classmethod
    def from_json(cls, data: Any) -> Grid:
        """A grid from ``to_json`` data; ValueError unless it is a finite, strictly increasing table of floats."""
        edges = np.asarray(data.get("edges") if isinstance(data, dict) else None, dtype=np.float64)
        if edges.ndim != 2 or edges.shape[1] < 1 or not np.isfinite(edges).all() or (np.diff(edges, axis=1) <= 0).any():
            raise ValueError("a grid's edges must be a finite, strictly increasing list per feature")
        return cls(edges=edges)

    @classmethod
    def from_calibration(cls, X: np.ndarray, n_bits: int) -> Grid:
        if n_bits < 1:
            raise ValueError(f"n_bits must be >= 1, got {n_bits}")
        rows = np.asarray(X, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] < 2:
            raise ValueError("calibration data must be a 2-D array of at least 2 rows")
        lo, hi = np.nanmin(rows, axis=0), np.nanmax(rows, axis=0)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError("calibration data must hold finite values for every feature")
        steps = np.arange(1, n_bits + 1, dtype=np.float64) / (n_bits + 1)
        edges = lo[:, None] + (hi - lo)[:, None] * steps[None, :]
        for k in range(1, n_bits):  # strictly increasing, even for a constant feature (distinct bits)
            edges[:, k] = np.maximum(edges[:, k], np.nextafter(edges[:, k - 1], np.inf))
        return cls(edges=edges)


def to_grid(ensemble: Ensemble, X_calibration: np.ndarray, n_bits: int) -> tuple[Ensemble, dict[str, Any]]:
    """The gridded ensemble and its grid as JSON data (``{"edges": [[...] per feature]}``, ``Grid.from_json``),
    without measuring agreement (``build`` measures it and refuses)."""
    grid = Grid.from_calibration(X_calibration, n_bits)
    return grid_ensemble(ensemble, grid), grid.to_json()


def grid_ensemble(ensemble: Ensemble, grid: Grid) -> Ensemble:
    """The ensemble whose splits are the whole grid (feature-major: split ``f * n_bits + k`` is edge ``k`` of
    feature ``f``), each tree node pointing at its threshold's nearest edge. The client sends every grid bit."""
    if grid.edges.shape[0] != ensemble.n_features:
        raise ValueError(f"the grid has {grid.edges.shape[0]} features, the model {ensemble.n_features}")
    n_bits = grid.n_bits
    splits = tuple(Split(f, float(grid.edges[f, k]), "<=", "float64", True)
                   for f in range(ensemble.n_features) for k in range(n_bits))
    snapped = np.array([s.feature * n_bits + int(np.argmin(np.abs(grid.edges[s.feature] - s.threshold)))
                        for s in ensemble.splits], dtype=np.int32)
    trees = tuple(Tree(split=snapped[t.split] if t.n_internal else t.split, left=t.left, right=t.right,
                       leaf_values=t.leaf_values) for t in ensemble.trees)
    return Ensemble(
        n_features=ensemble.n_features, splits=splits, trees=trees, n_outputs=ensemble.n_outputs,
        base_score=ensemble.base_score, average=ensemble.average, postprocess=ensemble.postprocess,
        task=ensemble.task, classes=ensemble.classes, postprocess_params=dict(ensemble.postprocess_params),
    ).validate()


def thermometer_bits(X: object, grid: Grid) -> np.ndarray:
    """uint8[n_features * n_bits, n_rows]: the full thermometer code of each row (refuses NaN and infinities)."""
    rows = bits.check_rows(X, grid.edges.shape[0], ())
    if np.isnan(rows).any():
        r, c = (int(v) for v in np.argwhere(np.isnan(rows))[0])
        raise bits.RowError(f"row {r}, feature {c} is NaN: thermometer mode cannot route missing values")
    code = rows.T[:, None, :] > grid.edges[:, :, None]  # [n_features, n_bits, n_rows]
    return code.reshape(-1, rows.shape[0]).astype(np.uint8)


def agreement(exact: Ensemble, gridded: Ensemble, grid: Grid, X: np.ndarray) -> float:
    """The fraction of rows ``X`` the gridded model predicts as the exact one (labels equal; regression values
    equal to 1e-9 relative)."""
    rows = np.asarray(X, dtype=np.float64)
    want = postprocess.predict(exact, reference.tree_sums(exact, bits.split_bits(rows, exact.n_features, exact.splits)))
    got = postprocess.predict(gridded, reference.tree_sums(gridded, thermometer_bits(rows, grid)))
    if exact.task == "classification":
        return float(np.mean(want == got))
    return float(np.mean(np.isclose(got, want, rtol=1e-9, atol=0.0)))


def build(ensemble: Ensemble, X_calibration: np.ndarray, n_bits: int, min_agreement: float) -> tuple[Ensemble, Grid, float]:
    """Grid from the calibration rows, the gridded model, and its measured agreement; UnsupportedModel when the
    agreement is below ``min_agreement``."""
    grid = Grid.from_calibration(X_calibration, n_bits)
    gridded = grid_ensemble(ensemble, grid)
    measured = agreement(ensemble, gridded, grid, X_calibration)
    if measured < min_agreement:
        raise UnsupportedModel(f"thermometer mode with n_bits={n_bits} agrees with the model on {measured:.2%} of the "
                               f"calibration rows, below min_agreement={min_agreement:.2%}; raise n_bits or use the "
                               "exact mode")
    return gridded, grid, measured


def upload_bits_per_row(ensemble: Ensemble, mode: Mode, n_bits: int | None = None) -> int:
    """Encrypted bits (ciphertext slots) the client uploads per row: one per distinct split in the exact mode,
    ``n_features * n_bits`` in thermometer mode. Each bit is one slot of a per-split ciphertext holding up to
    N/2 rows, so a request uploads this many ciphertexts whatever its row count."""
    if mode == "exact":
        return len(ensemble.splits)
    if mode == "thermometer":
        if n_bits is None or n_bits < 1:
            raise ValueError("thermometer mode needs n_bits >= 1")
        return ensemble.n_features * n_bits
    raise ValueError(f"unknown mode {mode!r}")
