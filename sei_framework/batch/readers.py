"""Read a data set as chunks of rows without holding it in memory: CSV, Parquet or .npy, local or fsspec."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import fsspec
import numpy as np

from ..errors import BatchError

__all__ = ["DataSource", "open_rows"]

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}


@dataclass
class DataSource:
    """A data set's columns (None for .npy), its row count when known up front, and its row chunks."""

    columns: list[str] | None
    n_rows: int | None
    chunks: Iterator[np.ndarray]


def open_rows(
    url: str | os.PathLike[str], chunk_rows: int, columns: list[str] | None = None, storage_options: dict | None = None
) -> DataSource:
    """Rows of `url` as float64 arrays of `chunk_rows` rows (the last may be shorter)."""
    url = os.fspath(url)
    suffix = os.path.splitext(url.rstrip("/"))[1].lower()
    kind = FORMATS.get(suffix)
    if kind is None:
        raise BatchError(f"cannot read {url!r}: use a .csv (with a header row), .parquet or .npy file")
    try:
        handle = fsspec.open(url, "rb", **(storage_options or {})).open()
    except FileNotFoundError:
        raise BatchError(f"{url} does not exist") from None
    except (OSError, ValueError) as exc:
        raise BatchError(f"cannot open {url}: {exc}") from None
    if kind == "npy":
        if columns:
            raise BatchError("--columns applies to CSV and Parquet files; a .npy file is all features")
        return _npy(handle, url, chunk_rows)
    return _arrow(handle, url, kind, chunk_rows, columns)


def _npy(handle: BinaryIO, url: str, chunk_rows: int) -> DataSource:
    try:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
    except (ValueError, OSError) as exc:
        handle.close()
        raise BatchError(f"{url} is not a .npy file: {exc}") from None
    if len(shape) != 2 or fortran or dtype.hasobject or dtype.kind not in "fiub":
        handle.close()
        raise BatchError(f"{url} must hold a 2-D C-ordered numeric array; it holds {dtype} of shape {shape}")
    n_rows, n_cols = shape

    def chunks() -> Iterator[np.ndarray]:
        with handle:
            row_bytes = n_cols * dtype.itemsize
            for start in range(0, n_rows, chunk_rows):
                count = min(chunk_rows, n_rows - start)
                raw = handle.read(count * row_bytes)
                if len(raw) != count * row_bytes:
                    raise BatchError(f"{url} ends early: row {start + len(raw) // row_bytes} of {n_rows} is missing")
                yield np.frombuffer(raw, dtype=dtype).reshape(count, n_cols).astype(np.float64)

    return DataSource(None, int(n_rows), chunks())


def _arrow(handle: BinaryIO, url: str, kind: str, chunk_rows: int, columns: list[str] | None) -> DataSource:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if kind == "parquet":
            parquet = pq.ParquetFile(handle, pre_buffer=False)  # pre-buffering keeps every row group read
            names = parquet.schema_arrow.names
            n_rows = parquet.metadata.num_rows
            batches = parquet.iter_batches(batch_size=chunk_rows, columns=columns)
        else:
            reader = pacsv.open_csv(handle, read_options=pacsv.ReadOptions(block_size=1 << 20))  # 8 MB blocks: RSS grew with the file
            names = reader.schema.names
            n_rows = None
            batches = iter(reader)
    except (pa.ArrowException, OSError) as exc:
        handle.close()
        raise BatchError(f"cannot read {url} as {kind}: {exc}") from None
    missing = [c for c in columns or [] if c not in names]
    if missing:
        handle.close()
        raise BatchError(f"{url} has no column {', '.join(map(repr, missing))}; it has: {', '.join(names)}")
    selected = list(columns or names)

    def to_rows(batch: pa.RecordBatch) -> np.ndarray:
        try:
            return np.column_stack([batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64) for name in selected])
        except (ValueError, TypeError, pa.ArrowException) as exc:
            raise BatchError(f"{url}: every selected column must be numeric ({exc})") from None

    def chunks() -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        held = 0
        with handle:
            try:
                for batch in batches:
                    if batch.num_rows == 0:
                        continue
                    pending.append(to_rows(batch))
                    held += batch.num_rows
                    while held >= chunk_rows:
                        rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
                        yield rows[:chunk_rows]
                        rest = rows[chunk_rows:]
                        pending, held = ([rest] if len(rest) else []), len(rest)
            except (pa.ArrowException, OSError) as exc:
                raise BatchError(f"cannot read {url} as {kind}: {exc}") from None
            if held:
                yield np.concatenate(pending)

    return DataSource(selected, n_rows, chunks())
