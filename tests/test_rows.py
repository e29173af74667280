"""The one row reader (sei_framework.rows): the CSV header rule, row identity, columns by name."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sei_framework import InvalidRequest, read_rows
from sei_framework.cli import cli
from sei_framework.rows import open_rows, table_rows

MNIST_HEADER = ",".join(str(i) for i in range(784))


def _mnist_csv(path, rows: np.ndarray) -> None:
    np.savetxt(path, rows, delimiter=",", header=MNIST_HEADER, comments="", fmt="%d")


def test_a_header_of_numbers_is_a_header_when_declared(tmp_path):
    rows = np.arange(3 * 784).reshape(3, 784) % 256
    _mnist_csv(tmp_path / "mnist.csv", rows)
    read = read_rows(tmp_path / "mnist.csv", header=True)
    np.testing.assert_array_equal(read.values, rows)  # row 0 is the first data row, not the header
    assert read.columns == [str(i) for i in range(784)]
    with pytest.raises(InvalidRequest, match="is its first line a header or data") as caught:
        read_rows(tmp_path / "mnist.csv")  # undeclared: never guessed
    assert caught.value.code == "invalid_rows"
    assert len(read_rows(tmp_path / "mnist.csv", header=False).values) == 4  # declared data: the header line is row 0


def test_a_malformed_first_data_row_is_an_error_naming_it(tmp_path):
    (tmp_path / "named.csv").write_text("a,b,c\n1,oops,3\n4,5,6\n")
    with pytest.raises(InvalidRequest, match=r"row 0, column 'b': 'oops' is not a number"):
        read_rows(tmp_path / "named.csv")
    (tmp_path / "bare.csv").write_text("1,oops,3\n4,5,6\n")
    with pytest.raises(InvalidRequest, match="is its first line a header or data"):
        read_rows(tmp_path / "bare.csv")  # the old readers took it for a header and dropped it
    with pytest.raises(InvalidRequest, match=r"row 0, column 1: 'oops' is not a number"):
        read_rows(tmp_path / "bare.csv", header=False)
    (tmp_path / "late.csv").write_text("a,b\n" + "1,2\n" * 5000 + "3,\n")
    with pytest.raises(InvalidRequest, match=r"row 5000, column 'b': '' is not a number"):
        list(open_rows(tmp_path / "late.csv", 64).chunks)  # counted across chunks


def test_columns_are_chosen_by_the_models_names(tmp_path):
    names = ["a", "b", "c"]
    pq.write_table(pa.table({"c": [3.0, 6.0], "b": [2.0, 5.0], "a": [1.0, 4.0]}), tmp_path / "reversed.parquet")
    read = read_rows(tmp_path / "reversed.parquet", names=names)
    np.testing.assert_array_equal(read.values, [[1, 2, 3], [4, 5, 6]])
    assert read.by_name and read.columns == names
    by_position = read_rows(tmp_path / "reversed.parquet")  # a model without names: the file's order
    np.testing.assert_array_equal(by_position.values, [[3, 2, 1], [6, 5, 4]])
    assert not by_position.by_name
    with pytest.raises(InvalidRequest, match=r"missing 'a'") as caught:
        table_rows(read_rows(tmp_path / "reversed.parquet", columns=["c", "b"]), names)
    assert caught.value.code == "wrong_features"
    pq.write_table(pa.table({"c": [3.0], "b": [2.0], "x": [0.0]}), tmp_path / "other.parquet")
    with pytest.raises(InvalidRequest, match=r"missing 'a'; unknown 'x'"):
        read_rows(tmp_path / "other.parquet", names=names)
    np.save(tmp_path / "rows.npy", np.ones((2, 3)))
    assert not read_rows(tmp_path / "rows.npy", names=names).by_name  # no names in the file: by position


def test_cli_predict_says_which_header_rule_it_needs(tmp_path):
    _mnist_csv(tmp_path / "mnist.csv", np.zeros((2, 784)))
    # port 9 (discard): the file is refused before anything is sent
    base = ["predict", "--endpoint", "http://127.0.0.1:9/score", "--model", "m", "--input", str(tmp_path / "mnist.csv")]
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 3 and "--csv-header or --no-csv-header" in result.output


def test_calibration_bounds_do_not_take_a_header_as_data(tmp_path):
    from sei_adapter_sklearn.bounds import BoundsOptions, input_bounds

    rows = 100.0 + np.arange(6.0).reshape(3, 2)
    np.savetxt(tmp_path / "cal.csv", rows, delimiter=",", header="0,1", comments="")
    options = BoundsOptions(calibration_data=str(tmp_path / "cal.csv"), calibration_header=True, calibration_margin=0)
    lo, hi, origin = input_bounds(2, options)
    assert origin == "calibration_data"
    np.testing.assert_array_equal(lo, rows.min(axis=0))  # the old loaders took 0 and 1 for a row of data
    np.testing.assert_array_equal(hi, rows.max(axis=0))
    with pytest.raises(Exception, match="is its first line a header or data"):
        input_bounds(2, BoundsOptions(calibration_data=str(tmp_path / "cal.csv")))
    pq.write_table(pa.table({"y": rows[:, 1], "x": rows[:, 0]}), tmp_path / "cal.parquet")
    lo, _, _ = input_bounds(2, BoundsOptions(calibration_data=str(tmp_path / "cal.parquet"), calibration_margin=0), ["x", "y"])
    np.testing.assert_array_equal(lo, rows.min(axis=0))  # by the model's names, in its order
