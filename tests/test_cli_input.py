"""`sei predict` input files: what cannot be predicted by any model is a one-line error before anything is sent
(NaN is a missing value a tree model routes: the client refuses it for other models, tests/test_trees_service.py)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from sei_framework.cli import cli


def _write(path, content) -> None:
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_bytes(content)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "has no rows"),
        ("header-only.csv", b"a,b,c\n", "has no rows"),
        ("blank-lines.csv", b"\n\n", "has no rows"),
        ("empty.npy", b"", "not a readable .npy array"),
        ("truncated.npy", b"\x93NUMPY\x01\x00", "not a readable .npy array"),
        ("zero-rows.npy", np.zeros((0, 4)), "has no rows"),
        ("inf.csv", b"a,b,c\n1,inf,3\n", "row 0, column 'b': every value must be a number or NaN, never infinite"),
        ("numbers.csv", b"1,2,3\n", "is its first line a header or data?"),
        ("inf.npy", np.array([[1.0, np.inf]]), "row 0, column 1: every value must be a number or NaN, never infinite"),
        ("words.npy", np.array([["a", "b"]]), "must hold a 2-D C-ordered array of numbers"),
        ("flat.npy", np.zeros(3), "must hold a 2-D C-ordered array of numbers"),
        ("rows.txt", b"1,2\n", "use a .csv, .parquet or .npy file"),
    ],
)
def test_unusable_input_files_are_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    _write(path, content)
    # port 9 (discard) on loopback: nothing is contacted, because the input is refused first
    result = CliRunner().invoke(cli, ["predict", "--endpoint", "http://127.0.0.1:9/score", "--model", "m", "--input", str(path)])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
