"""Calibration rows reach Concrete ML through SEI's one row reader: a header is never a row of data."""

from __future__ import annotations

import numpy as np
import pytest

from sei_adapter_concrete.adapter import ConcreteOptions, calibration_rows
from sei_adapter_concrete.compile_model import Refused, load_rows
from sei_framework import PluginError


def test_a_header_of_numbers_is_not_a_calibration_row(tmp_path):
    rows = 100.0 + np.arange(8.0).reshape(4, 2)
    np.savetxt(tmp_path / "train.csv", rows, delimiter=",", header="0,1", comments="")
    options = ConcreteOptions(calibration_data=str(tmp_path / "train.csv"), calibration_header=True)
    read = calibration_rows(options)
    np.testing.assert_array_equal(read, rows)  # the quantiser's range is [100, 107], not [0, 107]
    with pytest.raises(PluginError, match="is its first line a header or data"):
        calibration_rows(ConcreteOptions(calibration_data=str(tmp_path / "train.csv")))
    np.save(tmp_path / "rows.npy", read)
    np.testing.assert_array_equal(load_rows(tmp_path / "rows.npy"), rows)  # what the compiler reads
    with pytest.raises(Refused, match="as .npy from the adapter"):
        load_rows(tmp_path / "train.csv")  # the compiler has no CSV reader of its own
