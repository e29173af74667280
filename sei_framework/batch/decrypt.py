"""Step 3, the data owner's: decrypt every result into predictions in the original row order."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import fsspec
import numpy as np

from ..errors import BatchError, SeiError
from .manifest import JobManifest, Shard, result_file
from .scoring import read_result
from .storage import JobStore

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from ..base import AdapterClient
    from ..client import Client

__all__ = ["DecryptReport", "decrypt_job", "prediction_columns"]

OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class DecryptReport:
    job: str
    rows: int
    shards: int
    path: str
    sha256: str
    summary: str
    """The summary file beside the predictions: row count, the row check, the file's hash."""
    seconds: float


def prediction_columns(start: int, prediction: Any) -> dict[str, np.ndarray]:
    """`row` (0-based, the input's order), `prediction`, the scores and, where the model has them, probabilities."""
    columns: dict[str, np.ndarray] = {"row": np.arange(start, start + len(prediction.scores), dtype=np.int64)}
    columns["prediction"] = np.asarray(prediction.predictions)
    scores = np.asarray(prediction.scores, dtype=np.float64).reshape(len(columns["row"]), -1)
    names = ["score"] if scores.shape[1] == 1 else [f"score_{i}" for i in range(scores.shape[1])]
    columns.update({name: scores[:, i] for i, name in enumerate(names)})
    if prediction.probabilities is not None:
        probabilities = np.asarray(prediction.probabilities, dtype=np.float64).reshape(len(columns["row"]), -1)
        columns.update({f"probability_{i}": probabilities[:, i] for i in range(probabilities.shape[1])})
    return columns


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes what passes through it to `handle`."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.handle.write(view)
        return view.nbytes


class _Writer:
    """Appends tables of prediction columns to one CSV or Parquet file."""

    def __init__(self, sink: _HashingFile, kind: str) -> None:
        self.sink, self.kind = sink, kind
        self.writer: Any = None  # a pyarrow ParquetWriter or CSVWriter, made when the first table gives the schema

    def write(self, columns: dict[str, np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pa.table(columns)
        if self.writer is None:
            self.writer = (pq.ParquetWriter if self.kind == "parquet" else pacsv.CSVWriter)(self.sink, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _decrypt_shard(adapter: AdapterClient, results: JobStore, manifest: JobManifest, shard: Shard, writer: _Writer) -> int:
    """Decrypt one shard's result and append its rows; every problem is a BatchError naming the shard."""
    answer = read_result(results, manifest, shard)
    if answer is None:
        raise BatchError(
            f"the result of shard {shard.id} is not for this job's shard (another job's, or a damaged file): "
            "run `sei batch score` again; it rescores it"
        )
    try:
        prediction = adapter.interpret(adapter.decrypt(answer["result"], shard.rows))
    except SeiError as exc:
        raise BatchError(f"shard {shard.id} (rows {shard.start} to {shard.stop - 1}): {exc.message}") from None
    if len(prediction.scores) != shard.rows:
        raise BatchError(f"shard {shard.id} decrypted to {len(prediction.scores)} rows; it holds {shard.rows}")
    writer.write(prediction_columns(shard.start, prediction))
    return shard.rows


def decrypt_job(
    client: Client,
    job: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[int], object] | None = None,
) -> DecryptReport:
    """Decrypt the results of the job folder `job` into `out` (.csv or .parquet), rows in input order.

    Every shard must have a result for exactly its bytes, and every row of the input appears once:
    the manifest's shards partition the rows, and each result decrypts to exactly its shard's rows
    (checked, not assumed). `client` holds the keyring that encrypted the job (`Client.offline`
    needs no service). Beside `out`, OUT.summary.json records the row count and the file's sha256.
    """
    started = time.perf_counter()
    out = os.fspath(out)
    kind = OUTPUT_FORMATS.get(os.path.splitext(out)[1].lower())
    if kind is None:
        raise BatchError(f"cannot write {out!r}: name a .csv or .parquet file")
    store = JobStore(job, storage_options)
    result_store = JobStore(results, storage_options) if results is not None else store
    manifest = JobManifest.load(store)
    session = client.session(manifest.model)
    if session.key_id != manifest.key_id:
        raise BatchError(
            f"job {manifest.job} was encrypted with key id {manifest.key_id}; this keyring's key for model "
            f"{manifest.model!r} is {session.key_id}: decrypt with the keyring that encrypted the job"
        )
    missing = [shard.id for shard in manifest.shards if not result_store.exists(result_file(shard.id))]
    if missing:
        raise BatchError(
            f"{len(missing)} of {len(manifest.shards)} shards of job {manifest.job} have no result yet "
            f"({', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}); run `sei batch score` on the job"
        )
    fs, path = fsspec.core.url_to_fs(out, **(storage_options or {}))
    temp = f"{path}.{uuid.uuid4().hex[:12]}.partial"
    rows_written = 0
    try:
        with fs.open(temp, "wb") as handle:
            sink = _HashingFile(handle)
            writer = _Writer(sink, kind)
            try:
                for shard in manifest.shards:
                    rows_written += _decrypt_shard(session.adapter, result_store, manifest, shard, writer)
                    if progress is not None:
                        progress(shard.rows)
            finally:
                writer.close()  # also on an error: the partial file is then removed
        if rows_written != manifest.n_rows:
            raise BatchError(f"wrote {rows_written} rows; the job has {manifest.n_rows}")
        fs.mv(temp, path)
    finally:
        if fs.exists(temp):
            fs.rm(temp)
    digest = sink.digest.hexdigest()
    summary = {
        "job": manifest.job,
        "model": manifest.model,
        "source": manifest.source,
        "rows": manifest.n_rows,
        "row_check": f"rows 0 to {manifest.n_rows - 1}, each exactly once, in input order (column 'row')",
        "shards": len(manifest.shards),
        "file": os.path.basename(path),
        "sha256": digest,
    }
    summary_path = f"{path}.summary.json"
    with fs.open(summary_path, "w") as handle:
        handle.write(json.dumps(summary, indent=1) + "\n")
    return DecryptReport(manifest.job, rows_written, len(manifest.shards), out, digest, summary_path, time.perf_counter() - started)
