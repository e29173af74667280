"""The options of the `trees-seal` adapter (validated strictly by the core before `prepare`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, FiniteFloat, StrictInt, model_validator

from sei_framework import ConfigPath, PluginOptions

__all__ = ["TreesOptions"]


class TreesOptions(PluginOptions):
    """What a config may set for a tree-ensemble model; the build refuses what it cannot serve."""

    mode: Literal["splits", "thermometer"] = "splits"
    """`splits`: one encrypted bit per distinct split (the client learns every split's feature and threshold);
    `thermometer`: a thermometer code on a uniform per-feature grid (the client learns only the grid)."""
    tolerance: FiniteFloat = Field(1e-5, gt=0, lt=1)
    """Largest absolute error of a decrypted score the build must prove from the parameters and the depth, or refuse."""
    n_bits: StrictInt = Field(15, ge=1, le=1024)
    """Thermometer mode: thermometer bits (grid thresholds) per feature, evenly spaced inside the calibration range."""
    min_agreement: FiniteFloat = Field(0.99, gt=0, le=1)
    """Thermometer mode: the least share of calibration rows whose gridded prediction equals the model's own."""
    calibration_data: ConfigPath | None = None
    """A .npy, .csv or .parquet file of representative rows, relative to the config file, read like `sei predict`
    input (columns by the model's feature names where it has them; NaN, or a blank CSV cell, is a missing
    value): the thermometer grid's range and the rows its agreement is measured on (required in that mode);
    in `splits` mode the build also checks its first rows through the encrypted path."""
    calibration_header: bool | None = None
    """Whether a CSV calibration_data's first line names the columns (default: it must, and a first
    line holding a number is refused until this says which it is)."""
    verify_rows: StrictInt = Field(64, ge=1, le=4096)
    """Rows the build sends through the encrypted path (threshold neighbours and calibration rows) whose
    predictions must equal the library's own, or the build fails."""
    workers: StrictInt = Field(1, ge=1, le=16)
    """Service processes that share each batch's trees (2: both cores of a 2-core machine for one request);
    each holds the client's keys too, which the key cache counts."""
    trusted_types: list[str] = []
    """Exact `module.name`s to load beyond the allow-list, in a pickled or skops model file."""

    @model_validator(mode="after")
    def _thermometer_needs_calibration(self) -> TreesOptions:
        if self.mode == "thermometer" and self.calibration_data is None:
            raise ValueError("mode `thermometer` needs calibration_data: the grid is taken from its range")
        return self
