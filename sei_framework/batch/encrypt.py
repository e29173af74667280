"""Step 1, the data owner's: encrypt a data set into shards for one model of a service."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..client.results import described_row_limit
from ..columns import BY_POSITION, columns_label, feature_names
from ..errors import BatchError
from ..rows import open_rows
from .manifest import FORMAT, MANIFEST, JobManifest, Shard, description_fingerprint, key_file, shard_file
from .record import write_record
from .storage import JobStore, sha256_hex

if TYPE_CHECKING:
    import numpy as np

    from ..base import AdapterClient
    from ..client import Client

__all__ = ["EncryptReport", "SHARD_BYTES", "encrypt_dataset", "fitted_rows_per_shard", "shard_body"]

SHARD_BYTES = 8 * 1024 * 1024
"""Default shard size the rows per shard are fitted to."""


@dataclass(frozen=True)
class EncryptReport:
    job: str
    rows: int
    shards: int
    bytes: int
    """Bytes of every shard file, the data owner's upload."""
    seconds: float
    columns: str = BY_POSITION
    """How the rows' columns fed the model: "by name: a, b, ..." or "by position"."""

    @property
    def bytes_per_row(self) -> float:
        return self.bytes / self.rows


def check_width(rows: np.ndarray, expected: int | None, model: str, source: str | os.PathLike[str]) -> None:
    if expected is not None and rows.shape[1] != expected:
        raise BatchError(f"model {model!r} takes {expected} features; {os.fspath(source)} has {rows.shape[1]} columns")


def fitted_rows_per_shard(
    adapter: AdapterClient, model: str, source: str | os.PathLike[str], request_rows: int, columns: list[str] | None,
    storage_options: dict[str, Any] | None, target: int = SHARD_BYTES, header: bool | None = None,
) -> int:
    """Whole requests' worth of rows (bulk batches stay whole) making shards of about `target` bytes: one
    request of the data's first rows is encrypted to measure it. Fewer, larger shards cost less per row to
    schedule; smaller ones lose less work when a worker dies."""
    names = feature_names(adapter.description)
    read = open_rows(source, request_rows, names=names, columns=columns, header=header, storage_options=storage_options,
                     allow_nan=adapter.allows_nan)  # fmt: skip
    first = next(read.chunks, None)
    if first is None:
        return request_rows
    check_width(first, adapter.description.get("n_features"), model, source)
    size = len(json.dumps(adapter.encrypt(first), separators=(",", ":"))) * request_rows / len(first)
    return request_rows * max(1, int(target // max(size, 1)))


def shard_body(manifest_fields: dict[str, Any], shard_id: str, start: int, stop: int, data: Any) -> bytes:
    return json.dumps(
        {"format": FORMAT, **manifest_fields, "shard": shard_id, "start": start, "stop": stop, "data": data},
        separators=(",", ":"),
    ).encode()


def encrypt_dataset(
    client: Client,
    model: str,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    rows_per_shard: int | None = None,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[int], object] | None = None,
    overwrite: bool = False,
    header: bool | None = None,
) -> EncryptReport:
    """Encrypt every row of `source` (CSV, Parquet or .npy, read by sei_framework.rows with `header`) for
    `model` into the job folder `out`: the public key once (keys/), one file per shard (shards/), then
    manifest.json. Where the model names its features, a file's columns are chosen by those names (a
    missing or unknown one is refused); `columns` picks the file's columns; the manifest records them.

    `client` gives the model's description (from its service, or `Client.offline` with a describe
    answer) and the key pair from its keyring; the keyring's folder also keeps the job's record
    (record.py), the hashes of its manifest and description that `decrypt_job` checks. Rows are read `rows_per_shard` at a time, never the
    whole data set at once (default: whole requests' worth of rows making shards of about 8 MB).
    """
    started = time.perf_counter()
    models = client.describe().get("models", {})
    if model not in models:
        raise BatchError(f"the service has no model {model!r}; it has: {', '.join(sorted(models))}")
    description = models[model]
    session = client.session(model)
    store = JobStore(out, storage_options)
    if store.exists(MANIFEST) and not overwrite:
        raise BatchError(f"{store.url} already holds a batch job; write to an empty folder (or pass overwrite)")
    # The scorer reads and scores a shard whole, as one request: the service's request limit bounds it.
    max_shard_bytes = (client.describe().get("limits") or {}).get("max_request_bytes")
    if rows_per_shard is None:
        request_rows = described_row_limit(description, client.describe(), session.adapter.max_rows_per_request)
        target = min(SHARD_BYTES, int(max_shard_bytes * 0.9)) if max_shard_bytes else SHARD_BYTES
        rows_per_shard = fitted_rows_per_shard(
            session.adapter, model, source, request_rows, columns, storage_options, target, header=header
        )
    if rows_per_shard < 1:
        raise BatchError(f"rows_per_shard must be at least 1, not {rows_per_shard}")
    expected = description.get("n_features")
    data = open_rows(
        source, rows_per_shard, names=feature_names(description), columns=columns, header=header,
        storage_options=storage_options, allow_nan=session.adapter.allows_nan,
    )  # fmt: skip
    store.write(key_file(session.key_id), session.public_keys)  # once per job; its name is its hash
    job = uuid.uuid4().hex
    fields = {"job": job, "model": model, "key_id": session.key_id}
    shards: list[Shard] = []
    start = total_bytes = width = 0
    for index, rows in enumerate(data.chunks):
        check_width(rows, expected, model, source)
        width = rows.shape[1]
        shard_id = f"{index:05d}"
        body = shard_body(fields, shard_id, start, start + len(rows), session.adapter.encrypt(rows))
        if max_shard_bytes and len(body) > max_shard_bytes:
            raise BatchError(
                f"shard {shard_id} is {len(body)} bytes; the service scores shards of at most {max_shard_bytes} bytes "
                f"(its limits.max_request_mb): use fewer rows per shard than {rows_per_shard}"
            )
        store.write(shard_file(shard_id), body)
        shards.append(Shard(id=shard_id, start=start, stop=start + len(rows), sha256=sha256_hex(body), bytes=len(body)))
        start += len(rows)
        total_bytes += len(body)
        if progress is not None:
            progress(len(rows))
    if not shards:
        raise BatchError(f"{os.fspath(source)} has no rows")
    manifest = JobManifest(
        job=job,
        service=client.describe().get("service"),
        model=model,
        adapter=description["adapter"],
        description=description,
        description_sha256=description_fingerprint(description),
        key_id=session.key_id,
        n_rows=start,
        n_features=width,
        rows_per_shard=rows_per_shard,
        columns=data.columns,
        source=os.path.basename(os.fspath(source).rstrip("/")),
        shards=shards,
    )
    manifest_bytes = manifest.to_bytes()
    write_record(client.keyring, manifest, manifest_bytes)  # the owner's own record, which decrypt checks
    store.write(MANIFEST, manifest_bytes)  # last: a job with a manifest has every shard
    by = columns_label(data.columns if data.by_name else None)
    return EncryptReport(job, start, len(shards), total_bytes, time.perf_counter() - started, by)
