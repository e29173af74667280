"""Calibration rows for a build: a .npy or .csv table of the model's features (NaN allowed, no infinities)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sei_framework import PluginError

__all__ = ["load_rows"]


def _by_name(path: Path, rows: np.ndarray, names: list[str] | None) -> np.ndarray:
    """A CSV's columns in the model's order when the model has `names` (its header must name exactly
    those columns); by position otherwise."""
    if names is None:
        return rows
    with path.open(encoding="utf-8", errors="replace") as handle:
        header = [cell.strip().strip('"') for cell in handle.readline().rstrip("\r\n").split(",")]
    missing, unknown = [n for n in names if n not in header], [h for h in header if h not in names]
    if missing or unknown or len(set(header)) != len(header):
        raise PluginError(f"calibration_data {path}: its header must name the model's features once each "
                          f"(missing: {missing[:8]}; not the model's: {unknown[:8]})")
    return rows[:, [header.index(n) for n in names]]


def load_rows(path: Path, n_features: int, names: list[str] | None = None) -> np.ndarray:
    """Rows of shape (n, n_features) as float64; PluginError naming the file and what is wrong with it.
    A CSV with a header is read by the model's feature `names` when it has them, else by position."""
    try:
        if path.suffix.lower() == ".npy":
            rows = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".csv":
            try:
                rows = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
            except ValueError:  # a header line
                rows = _by_name(path, np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, skiprows=1), names)
        else:
            raise PluginError(f"calibration_data {path}: expected a .npy or .csv file")
        rows = np.asarray(rows, dtype=np.float64)
    except OSError as exc:
        raise PluginError(f"calibration_data {path} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise PluginError(f"calibration_data {path} is not a numeric table: {exc}") from None
    if rows.ndim != 2 or rows.shape[1] != n_features or rows.shape[0] == 0:
        raise PluginError(f"calibration_data {path} has shape {rows.shape}; the model takes rows of {n_features} features")
    if np.isinf(rows).any():
        raise PluginError(f"calibration_data {path} holds infinite values")
    return rows
