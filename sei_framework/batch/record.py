"""The data owner's own record of each job it encrypted, kept in its keyring folder, never in the job folder.

The job folder is shared with the model owner and whoever can write to its storage, so nothing in it can
vouch for itself: `description_sha256` sits beside the description it hashes, and a manifest whose shards
were reordered still validates. At encrypt time the data owner keeps, beside its keys, the sha256 of the
manifest bytes it wrote and of the description it encrypted for; decrypt refuses a job that does not
match that record.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BatchError
from ..keys import Keyring, _private_dir
from .manifest import SHA256, JobManifest
from .storage import sha256_hex

__all__ = ["RECORDS", "JobRecord", "check_job", "record_path", "write_record"]

RECORDS = "batch-jobs"
"""The keyring's sub-folder of job records, one `JOB.json` per job."""
MAX_RECORD_BYTES = 64 * 1024


class JobRecord(BaseModel):
    """What the data owner encrypted: the job, its model and key, and the hashes decrypt checks against."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["sei-batch-record/1"] = "sei-batch-record/1"
    job: str = Field(pattern=r"^[0-9a-f]{32}$")
    model: str
    key_id: str
    n_rows: int = Field(ge=1)
    manifest_sha256: str = Field(pattern=SHA256)
    description_sha256: str = Field(pattern=SHA256)


def record_path(keyring: Keyring, job: str) -> Path:
    return keyring.folder / RECORDS / f"{job}.json"


def write_record(keyring: Keyring, manifest: JobManifest, manifest_bytes: bytes) -> Path:
    """Keep the record of `manifest` (whose exact bytes are `manifest_bytes`) in `keyring`'s folder (0600)."""
    record = JobRecord(
        job=manifest.job, model=manifest.model, key_id=manifest.key_id, n_rows=manifest.n_rows,
        manifest_sha256=sha256_hex(manifest_bytes), description_sha256=manifest.description_sha256,
    )  # fmt: skip
    path = record_path(keyring, manifest.job)
    try:
        _private_dir(path.parent)
        fd, temp = tempfile.mkstemp(prefix=f".{manifest.job}-", suffix=".tmp", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(record.model_dump_json(indent=1) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    except OSError as exc:
        raise BatchError(f"cannot keep the record of job {manifest.job} in {path.parent}: {exc.strerror or exc}") from None
    return path


def _load(keyring: Keyring, job: str) -> JobRecord:
    path = record_path(keyring, job)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        raise BatchError(
            f"this keyring ({keyring.folder}) has no record of job {job}: decrypt with the keyring folder that "
            f"encrypted the job (its {RECORDS}/ folder holds one record per job)"
        ) from None
    except OSError as exc:
        raise BatchError(f"cannot read the record of job {job} ({path}): {exc.strerror or exc}") from None
    try:
        if len(raw) > MAX_RECORD_BYTES:
            raise ValueError("too large")
        return JobRecord.model_validate_json(raw)
    except (ValidationError, ValueError):
        raise BatchError(f"the record of job {job} ({path}) is damaged: it is not an SEI batch job record") from None


def check_job(keyring: Keyring, manifest: JobManifest, manifest_bytes: bytes, description_sha256: str) -> JobRecord:
    """Refuse (BatchError) a job whose manifest is not, byte for byte, the one this keyring's owner wrote, or a
    decrypt with the description (`description_sha256`, its fingerprint) of another build of the model."""
    record = _load(keyring, manifest.job)
    if sha256_hex(manifest_bytes) != record.manifest_sha256:
        raise BatchError(
            f"the manifest of job {manifest.job} changed after it was encrypted (its sha256 is not the one this "
            "keyring recorded): its shards' rows, hashes or model cannot be trusted; encrypt the data again"
        )
    if description_sha256 != record.description_sha256:
        raise BatchError(
            f"the description given for model {record.model!r} is not the one job {manifest.job} was encrypted for "
            "(another build of the model?): decrypt with the job's own description (no --describe)"
        )
    return record
