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

from ..columns import columns_label, feature_names, recorded_columns
from ..errors import BatchError, SeiError
from .manifest import MANIFEST, MAX_MANIFEST_BYTES, JobManifest, description_fingerprint, result_file
from .record import check_job
from .scoring import read_result
from .storage import JobStore

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from ..base import AdapterClient
    from .manifest import Shard
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


def _split(name: str, values: Any, rows: int) -> dict[str, np.ndarray]:
    """One 1-D column per output: `name` for a single output, `name_0`, `name_1`, ... for several
    (a table column holds one value per row, so a multi-output model's (rows, k) array is k columns)."""
    array = np.asarray(values)
    if array.ndim <= 1 or (array.ndim == 2 and array.shape[1] == 1):
        return {name: array.reshape(rows)}
    array = array.reshape(rows, -1)
    return {f"{name}_{i}": array[:, i] for i in range(array.shape[1])}


def prediction_columns(start: int, prediction: Any) -> dict[str, np.ndarray]:
    """`row` (0-based, the input's order), the prediction, the scores and, where the model has them,
    probabilities; a multi-output model's predictions and scores are one column per output
    (`prediction_0`, `score_0`, ...), probabilities always one per class (`probability_0`, ...)."""
    rows = len(prediction.scores)
    columns: dict[str, np.ndarray] = {"row": np.arange(start, start + rows, dtype=np.int64)}
    columns.update(_split("prediction", prediction.predictions, rows))
    columns.update(_split("score", np.asarray(prediction.scores, dtype=np.float64), rows))
    if prediction.probabilities is not None:
        probabilities = np.asarray(prediction.probabilities, dtype=np.float64).reshape(rows, -1)
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
    if (answer.get("start"), answer.get("stop"), answer.get("model")) != (shard.start, shard.stop, manifest.model):
        raise BatchError(
            f"the result of shard {shard.id} is for rows [{answer.get('start')}, {answer.get('stop')}) of model "
            f"{answer.get('model')!r}; the job's shard {shard.id} holds rows [{shard.start}, {shard.stop}) of "
            f"{manifest.model!r}: its rows would land in the wrong place"
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
    (checked, not assumed). The manifest and `client`'s description of the model must be the ones the
    keyring's record of the job names (record.py), and each result must name its shard's row range.
    `client` holds the keyring that encrypted the job (`Client.offline`
    needs no service). Beside `out`, OUT.summary.json records the row count and the file's sha256.
    """
    started = time.perf_counter()
    out = os.fspath(out)
    kind = OUTPUT_FORMATS.get(os.path.splitext(out)[1].lower())
    if kind is None:
        raise BatchError(f"cannot write {out!r}: name a .csv or .parquet file")
    store = JobStore(job, storage_options)
    result_store = JobStore(results, storage_options) if results is not None else store
    manifest_bytes = store.read(MANIFEST, MAX_MANIFEST_BYTES)
    manifest = JobManifest.parse(manifest_bytes, store)
    description = client.describe().get("models", {}).get(manifest.model)
    if not isinstance(description, dict):
        raise BatchError(f"the description given has no model {manifest.model!r}, the model of job {manifest.job}")
    session = client.session(manifest.model)
    if session.key_id != manifest.key_id:
        raise BatchError(
            f"job {manifest.job} was encrypted with key id {manifest.key_id}; this keyring's key for model "
            f"{manifest.model!r} is {session.key_id}: decrypt with the keyring that encrypted the job"
        )
    check_job(client.keyring, manifest, manifest_bytes, description_fingerprint(description))
    columns = recorded_columns(manifest.columns, feature_names(description), f"job {manifest.job}")
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
        "columns": columns_label(columns),
        "shards": len(manifest.shards),
        "file": os.path.basename(path),
        "sha256": digest,
    }
    summary_path = f"{path}.summary.json"
    with fs.open(summary_path, "w") as handle:
        handle.write(json.dumps(summary, indent=1) + "\n")
    return DecryptReport(manifest.job, rows_written, len(manifest.shards), out, digest, summary_path, time.perf_counter() - started)
