"""The one row reader: CSV, Parquet and .npy files (local or fsspec URLs), arrays and DataFrames.

Every path that reads rows uses it: `sei predict`, `sei batch encrypt`, the Python `Client`, the build's
calibration data. Row i of the result is row i of the source (0-based, the header not counted): a
value that is not a finite number is an error naming its row and column, never a skipped row. With
`allow_nan=True` (tree models route a missing value) NaN is a value, and so is a blank CSV cell, read as
NaN; an infinity is still an error.

The header rule for CSV: `header=True`, the first line names the columns; `header=False`, every line is
data; `header=None` (the default), the first line must be a header of names: a first line holding a
number is refused until the caller says which it is (a header of numbers such as `0,1,...,783` is
common, and so is a file with no header). Columns are then chosen by name (columns.py).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from .columns import choose_columns
from .errors import InvalidRequest
from .extras import require_extra

__all__ = ["FORMATS", "RowSource", "Rows", "open_rows", "read_rows", "table_rows"]

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}
HEADER_HELP = "say which (sei: --csv-header or --no-csv-header; Python: header=True or False; a config: its *_header option)"


def _error(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_rows")


@dataclass(frozen=True)
class Rows:
    """A table of rows as float64, its column names (None: a table without names, read by position),
    and whether those columns were chosen by the model's feature names."""

    values: np.ndarray
    columns: list[str] | None = None
    by_name: bool = False


@dataclass
class RowSource:
    """A data set's chosen columns (None: by position), whether chosen by name, its row count when known
    up front, and its rows as float64 chunks, in order."""

    columns: list[str] | None
    by_name: bool
    n_rows: int | None
    chunks: Iterator[np.ndarray]


def _checked(chunk: np.ndarray, start: int, columns: list[str] | None, where: str, allow_nan: bool = False) -> np.ndarray:
    """`chunk` (rows from `start`) if every value is finite (or NaN, with `allow_nan`); else an error
    naming the first bad cell."""
    bad = np.argwhere(np.isinf(chunk) if allow_nan else ~np.isfinite(chunk))
    if len(bad):
        row, col = (int(i) for i in bad[0])
        name = f"column {columns[col]!r}" if columns else f"column {col}"
        rule = "a number or NaN, never infinite" if allow_nan else "a finite number"
        raise _error(f"{where}: row {start + row}, {name}: every value must be {rule}")
    return chunk


def table_rows(X: Any, names: list[str] | None = None, where: str = "the input", allow_nan: bool = False) -> Rows:
    """An in-memory table (array, list of rows, pandas DataFrame, or `Rows`) as the model's columns:
    by name when both have names (a DataFrame's string column names), else by position; NaN a value
    only with `allow_nan`."""
    if isinstance(X, Rows):
        values, available = X.values, X.columns
    else:
        labels = getattr(X, "columns", None)
        available = [str(c) for c in labels] if labels is not None and all(isinstance(c, str) for c in labels) else None
        try:
            values = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise _error(f"{where}: every value must be a finite number ({exc})") from None
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise _error(f"{where}: expected one row or a table of rows, got shape {values.shape}")
    chosen, by_name = choose_columns(available, names, None, where)
    if by_name and chosen is not None and available is not None:
        values = values[:, [available.index(name) for name in chosen]]
    return Rows(_checked(values, 0, chosen, where, allow_nan), chosen, by_name)


def read_rows(
    source: str | os.PathLike[str], *, names: list[str] | None = None, columns: list[str] | None = None,
    header: bool | None = None, storage_options: dict[str, Any] | None = None, allow_nan: bool = False,
) -> Rows:  # fmt: skip
    """Every row of a file at once (see `open_rows`); an empty file is an error."""
    data = open_rows(source, 1 << 16, names=names, columns=columns, header=header, storage_options=storage_options,
                     allow_nan=allow_nan)  # fmt: skip
    chunks = list(data.chunks)
    if not chunks:
        raise _error(f"{os.fspath(source)}: has no rows")
    return Rows(np.concatenate(chunks), data.columns, data.by_name)


def open_rows(
    source: str | os.PathLike[str], chunk_rows: int, *, names: list[str] | None = None,
    columns: list[str] | None = None, header: bool | None = None, storage_options: dict[str, Any] | None = None,
    allow_nan: bool = False,
) -> RowSource:  # fmt: skip
    """The rows of a .csv, .parquet or .npy file (a path or fsspec URL), `chunk_rows` at a time, never the
    whole file in memory. `names`: the model's feature names (None: it has none); `columns`: the columns
    the caller chose; `header`: whether a CSV's first line is a header; `allow_nan`: NaN (a blank CSV
    cell) is a value, not an error (module docstring)."""
    url = os.fspath(source)
    kind = FORMATS.get(os.path.splitext(url.rstrip("/"))[1].lower())
    if kind is None:
        raise _error(f"cannot read {url!r}: use a .csv, .parquet or .npy file")
    if kind == "parquet":
        require_extra("batch", f"reading {url}", InvalidRequest, modules=["pyarrow"])
    handle = _open(url, storage_options)
    try:
        if kind == "npy":
            return _npy(handle, url, chunk_rows, names, columns, allow_nan)
        if kind == "csv":
            return _csv(handle, url, chunk_rows, names, columns, header, allow_nan)
        return _parquet(handle, url, chunk_rows, names, columns, allow_nan)
    except BaseException:
        handle.close()
        raise


def _open(url: str, storage_options: dict[str, Any] | None) -> IO[bytes]:
    """A local path with the standard library; a URL (`az://...`) through fsspec (the batch extra)."""
    try:
        if "://" not in url and not storage_options:
            return open(url, "rb")  # noqa: SIM115 - closed by the reader that streams it
        require_extra("batch", f"reading {url}", InvalidRequest, modules=["fsspec"])
        import fsspec

        handle: IO[bytes] = fsspec.open(url, "rb", **(storage_options or {})).open()
        return handle
    except FileNotFoundError:
        raise _error(f"{url} cannot be read: it does not exist") from None
    except (OSError, ValueError) as exc:
        raise _error(f"cannot open {url}: {exc}") from None


def _npy(
    handle: IO[bytes], url: str, chunk_rows: int, names: list[str] | None, columns: list[str] | None, allow_nan: bool,
) -> RowSource:  # fmt: skip
    choose_columns(None, names, columns, url)  # a .npy file has no names: refuses `columns`
    try:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
    except (ValueError, OSError, EOFError) as exc:
        raise _error(f"{url} is not a readable .npy array: {exc}") from None
    if len(shape) != 2 or fortran or dtype.hasobject or dtype.kind not in "fiub":
        raise _error(f"{url} must hold a 2-D C-ordered array of numbers; it holds {dtype} of shape {shape}")
    n_rows, n_cols = shape

    def chunks() -> Iterator[np.ndarray]:
        with handle:
            row_bytes = n_cols * dtype.itemsize
            for start in range(0, n_rows, chunk_rows):
                count = min(chunk_rows, n_rows - start)
                raw = handle.read(count * row_bytes)
                if len(raw) != count * row_bytes:
                    raise _error(f"{url} ends early: row {start + len(raw) // max(row_bytes, 1)} of {n_rows} is missing")
                rows = np.frombuffer(raw, dtype=dtype).reshape(count, n_cols).astype(np.float64)
                yield _checked(rows, start, None, url, allow_nan)

    return RowSource(None, False, int(n_rows), chunks())


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv(
    handle: IO[bytes], url: str, chunk_rows: int, names: list[str] | None, columns: list[str] | None,
    header: bool | None, allow_nan: bool,
) -> RowSource:  # fmt: skip
    """A CSV file by the header rule, parsed by the standard library (no pyarrow: the concrete-ml
    environment's numpy is older than pyarrow's)."""
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    lines = csv.reader(text)

    def rows() -> Iterator[list[str]]:
        try:
            for line in lines:
                # blank lines are no rows; with allow_nan a line of blank cells (",,") is a row of NaN
                if line and (any(cell.strip() for cell in line) or (allow_nan and len(line) > 1)):
                    yield line
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _error(f"cannot read {url} as CSV: {exc}") from None

    data = rows()
    first = next(data, None)
    if first is None:
        raise _error(f"{url}: has no rows")
    if header is None:
        numbers = [i for i, cell in enumerate(first) if _is_number(cell)]
        if numbers:
            raise _error(
                f"{url}: is its first line a header or data? It holds numbers (column {numbers[0]}: "
                f"{first[numbers[0]]!r}); " + HEADER_HELP
            )
        header = True
    available = [cell.strip() for cell in first] if header else None
    width = len(first)
    chosen, by_name = choose_columns(available, names, columns, url)
    picks = [available.index(name) for name in chosen] if available is not None and chosen is not None else None
    if picks == list(range(width)):
        picks = None

    def convert(batch: list[list[str]], start: int) -> np.ndarray:
        for row, line in enumerate(batch):
            if len(line) != width:
                raise _error(f"{url}: row {start + row} has {len(line)} values; the first line has {width}")
        cells: list[list[str]] = [[line[i] for i in picks] for line in batch] if picks is not None else batch
        try:
            values = np.array(cells, dtype=np.float64)
        except ValueError:
            if allow_nan:  # a blank cell is a missing value
                cells = [[cell if cell.strip() else "nan" for cell in line] for line in cells]
                with contextlib.suppress(ValueError):
                    return _checked(np.array(cells, dtype=np.float64).reshape(len(batch), -1), start, chosen, url, allow_nan)
            for row, line in enumerate(cells):
                for col, cell in enumerate(line):
                    if not _is_number(cell):
                        name = f"column {chosen[col]!r}" if chosen is not None else f"column {col}"
                        raise _error(f"{url}: row {start + row}, {name}: {cell!r} is not a number") from None
            raise
        return _checked(values.reshape(len(batch), -1), start, chosen, url, allow_nan)

    def chunks() -> Iterator[np.ndarray]:
        with text:
            batch: list[list[str]] = [] if header else [first]
            start = 0
            for line in data:
                batch.append(line)
                if len(batch) == chunk_rows:
                    yield convert(batch, start)
                    start, batch = start + len(batch), []
            if batch:
                yield convert(batch, start)

    return RowSource(chosen, by_name, None, chunks())


def _parquet(
    handle: IO[bytes], url: str, chunk_rows: int, names: list[str] | None, columns: list[str] | None, allow_nan: bool,
) -> RowSource:  # fmt: skip
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(handle, pre_buffer=False)  # pre-buffering keeps every row group read
    except (pa.ArrowException, OSError) as exc:
        raise _error(f"cannot read {url} as parquet: {exc}") from None
    chosen, by_name = choose_columns(list(parquet.schema_arrow.names), names, columns, url)
    fields = list(chosen or [])
    batches = parquet.iter_batches(batch_size=chunk_rows, columns=fields)

    def column(batch: pa.RecordBatch, name: str) -> np.ndarray:
        values = batch.column(name)  # by name: the reader may deliver another order
        try:
            return values.to_numpy(zero_copy_only=False).astype(np.float64)
        except (ValueError, TypeError, pa.ArrowException) as exc:
            raise _error(f"{url}: column {name!r} must hold numbers, not {values.type} ({exc})") from None

    def chunks() -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        held = start = 0
        with handle:
            try:
                for batch in batches:
                    if batch.num_rows == 0:
                        continue
                    rows = np.column_stack([column(batch, name) for name in fields])
                    pending.append(_checked(rows, start + held, chosen, url, allow_nan))
                    held += batch.num_rows
                    while held >= chunk_rows:
                        rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
                        yield rows[:chunk_rows]
                        start += chunk_rows
                        rest = rows[chunk_rows:]
                        pending, held = ([rest] if len(rest) else []), len(rest)
            except (pa.ArrowException, OSError) as exc:
                raise _error(f"cannot read {url} as parquet: {exc}") from None
            if held:
                yield np.concatenate(pending)

    return RowSource(chosen, by_name, parquet.metadata.num_rows, chunks())
