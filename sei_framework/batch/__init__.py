"""Batch scoring between two parties: a data set encrypted into shards by its owner, scored by the
model owner on Dask (or an Azure ML batch endpoint), decrypted back into predictions in row order.

    encrypt_dataset(client, "forest", "rows.parquet", "jobs/june")   # data owner
    score_job("build/", "jobs/june")                                  # model owner, on Dask
    decrypt_job(client, "jobs/june", "predictions.parquet")          # data owner

A job folder is a local path or any fsspec URL (`az://container/job` with adlfs); docs/batch.md.
"""

from __future__ import annotations

from typing import Any

from ..errors import BatchError
from ..extras import require_extra

require_extra("batch", "sei batch (sei_framework.batch)", BatchError)  # before the modules that need it

from .decrypt import DecryptReport, decrypt_job  # noqa: E402
from .encrypt import EncryptReport, encrypt_dataset  # noqa: E402
from .manifest import JobManifest, Shard  # noqa: E402
from .scoring import ShardScorer, describe_build, score_shard  # noqa: E402
from .storage import JobStore  # noqa: E402

__all__ = [
    "DecryptReport",
    "EncryptReport",
    "JobManifest",
    "JobStore",
    "Shard",
    "ShardScorer",
    "ScoreReport",
    "decrypt_job",
    "describe_build",
    "encrypt_dataset",
    "score_job",
    "score_shard",
]


def __getattr__(name: str) -> Any:
    """`score_job` and `ScoreReport` import dask.distributed, an optional extra: only when asked for."""
    if name in ("score_job", "ScoreReport"):
        from . import dask_runner

        return getattr(dask_runner, name)
    raise AttributeError(name)
