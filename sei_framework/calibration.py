"""A build's calibration rows (an adapter's `calibration_data` option), read by the one row reader.

Every adapter that takes calibration data reads it here, so the header rule, the choice of columns by the
model's feature names, the error codes and the messages are those of `sei predict` and `sei batch`.
"""

from __future__ import annotations

import os

from .errors import InvalidRequest, PluginError
from .rows import Rows, read_rows

__all__ = ["read_calibration"]


def read_calibration(
    path: str | os.PathLike[str], *, n_features: int | None = None, names: list[str] | None = None,
    header: bool | None = None, allow_nan: bool = False,
) -> Rows:  # fmt: skip
    """calibration_data's rows by `read_rows`: by the model's `names` where it has them, a CSV's first line
    by `header` (the adapter's `calibration_header` option), NaN a value only with `allow_nan`.

    A PluginError (a build-time refusal) says `calibration_data: ` and the reader's message, with its code
    (`invalid_rows`, `wrong_features`); with `n_features`, a table of another width is refused too."""
    try:
        rows = read_rows(path, names=names, header=header, allow_nan=allow_nan)
    except InvalidRequest as exc:
        raise PluginError(f"calibration_data: {exc.message}", code=exc.code) from None
    if n_features is not None and rows.values.shape[1] != n_features:
        raise PluginError(
            f"calibration_data {os.fspath(path)} has shape {rows.values.shape}; the model takes rows of {n_features} features",
            code="wrong_features",
        )
    return rows
