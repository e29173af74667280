"""Batch scoring between two parties: a data set encrypted into shards by its owner, scored by the
model owner on Dask (or an Azure ML batch endpoint), decrypted back into predictions in row order.

    encrypt_dataset(client, "forest", "rows.parquet", "jobs/june")   # data owner
    score_job("build/", "jobs/june")                                  # model owner, on Dask
    decrypt_job(client, "jobs/june", "predictions.parquet")          # data owner

A job folder is a local path or any fsspec URL (`az://container/job` with adlfs); docs/batch.md.
"""

from __future__ import annotations

from typing import Any

from .decrypt import DecryptReport, decrypt_job
from .encrypt import EncryptReport, encrypt_dataset
from .manifest import JobManifest, Shard
from .scoring import ShardScorer, describe_build, score_shard
from .storage import JobStore

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
