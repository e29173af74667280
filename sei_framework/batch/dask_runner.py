"""Step 2 on Dask (`distributed`, the batch extra): every shard of a job scored on a `LocalCluster` or an existing cluster's workers."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from distributed import Client as DaskClient
from distributed import as_completed
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.security import Security

from ..errors import BatchError, SeiError
from .cluster import check_scheduler, local_cluster
from .manifest import JobManifest
from .scoring import ShardOutcome, ShardScorer, pack_build, score_shard, scorer_for
from .storage import JobStore, forget_storage_options, remember_storage_options

__all__ = ["ScoreReport", "score_job"]


@dataclass(frozen=True)
class ScoreReport:
    job: str
    shards: int
    scored: int
    skipped: int
    rows: int
    seconds: float
    workers: int
    bytes_in: int = 0
    bytes_out: int = 0
    shard_seconds: float = 0.0
    """Worker time summed over the shards scored (what the projection for more workers rests on)."""
    scoring_seconds: float = 0.0
    """From the first shard submitted to the last one done: the run without starting the cluster and
    loading the build on its workers."""
    failed: dict[str, str] = field(default_factory=dict)
    scheduler: str = ""
    """The scheduler's address (tls:// unless a plain one on loopback, or one allowed explicitly)."""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": self.rows / self.scoring_seconds if self.scoring_seconds else None}


class BuildLoader(WorkerPlugin):
    """A Dask worker plugin: every worker, one that replaces a lost worker included, unpacks and loads the
    build when it starts, before its first shard (so shards are not held up behind the loading)."""

    def __init__(self, build: bytes) -> None:
        self.build = build

    def setup(self, worker: Any) -> None:
        scorer_for(self.build)


class StorageOptions(WorkerPlugin):
    """A Dask worker plugin: the job folders' storage options (credentials, often), handed to every worker
    once when it starts, so that the tasks, which carry only a reference to them, never carry them."""

    def __init__(self, options: dict[str, dict[str, Any]]) -> None:
        self.options = options

    def __repr__(self) -> str:
        return f"StorageOptions({len(self.options)} job folders)"

    def setup(self, worker: Any) -> None:
        for ref, options in self.options.items():
            remember_storage_options(options, ref)

    def teardown(self, worker: Any) -> None:
        for ref in self.options:
            forget_storage_options(ref)


@contextmanager
def _storage_options_on_workers(client: DaskClient, options: dict[str, dict[str, Any]]) -> Iterator[None]:
    """The job folders' storage options on every worker while the run lasts, and on none after it (a shared
    cluster keeps no credentials of a finished job)."""
    if not options:
        yield
        return
    name = f"sei-storage-{'-'.join(sorted(options))[:64]}"
    client.register_plugin(StorageOptions(options), name=name)
    try:
        yield
    finally:
        client.unregister_worker_plugin(name)


def _score_task(build: bytes, store: JobStore, shard_id: str, results: JobStore | None) -> ShardOutcome:
    """Runs on a worker; errors travel back as BatchError text (picklable, no native objects)."""
    try:
        return score_shard(build, store, shard_id, results)
    except SeiError as exc:
        raise BatchError(exc.message) from None


def score_job(
    build_dir: str | os.PathLike[str],
    job: str | os.PathLike[str],
    *,
    results: str | os.PathLike[str] | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[int], object] | None = None,
    security: Security | None = None,
    allow_insecure_scheduler: bool = False,
) -> ScoreReport:
    """Score every shard of the job folder `job` with the model of `build_dir`, on Dask.

    `scheduler`: the address of an existing cluster's scheduler; default a `LocalCluster` of `workers`
    processes. The build travels to the workers as bytes and is loaded once per worker process, which
    keeps the job's converted public key. Results are written beside the shards (or into `results`);
    a shard whose result for exactly its bytes exists is skipped, so a run stopped midway is started
    again with the same call. A worker that dies mid-run has its shards rescheduled by Dask. Shards that
    fail (damaged, refused) are named in a BatchError after every other shard is scored.

    `security`: the cluster's TLS (`distributed.security.Security`, e.g. `cluster.tls_security(...)`); a
    plain-TCP `scheduler` off loopback is refused unless `allow_insecure_scheduler`. The LocalCluster
    speaks TLS with `security`, else with a throwaway certificate. `storage_options` reach each worker
    once, through a worker plugin; the tasks carry none of them.
    """
    started = time.perf_counter()
    if scheduler is not None:
        check_scheduler(scheduler, security, allow_insecure_scheduler)
    store = JobStore(job, storage_options)
    result_store = JobStore(results, storage_options) if results is not None else None
    manifest = JobManifest.load(store)
    ShardScorer(build_dir).adapter_for(manifest)  # a job for another model is refused before any cluster starts
    build = pack_build(build_dir)
    options = {s.options_ref: s.storage_options for s in (store, result_store) if s is not None and s.options_ref}
    cluster = local_cluster(workers, threads_per_worker, security) if scheduler is None else None
    counts = {"scored": 0, "skipped": 0, "bytes_in": 0, "bytes_out": 0}
    shard_seconds = 0.0
    failed: dict[str, str] = {}
    try:
        target = cluster if cluster is not None else scheduler
        with (
            DaskClient(target, set_as_default=False, security=None if cluster is not None else security) as client,
            _storage_options_on_workers(client, options),
        ):
            info = client.scheduler_info()
            n_workers, address = len(info["workers"]), str(info.get("address", ""))
            client.register_plugin(BuildLoader(build), name=f"sei-build-{hashlib.sha256(build).hexdigest()[:16]}")
            packed = client.scatter(build, broadcast=True)
            submitted = time.perf_counter()  # every worker has loaded the build
            futures = {
                client.submit(_score_task, packed, store, shard.id, result_store, key=f"sei-{manifest.job}-{shard.id}",
                            pure=False, retries=1): shard
                for shard in manifest.shards
            }
            for future in as_completed(futures, loop=client.loop):
                shard = futures[future]
                try:
                    outcome: ShardOutcome = future.result()
                except Exception as exc:  # the task's BatchError, or a worker lost too often (KilledWorker)
                    failed[shard.id] = str(exc) or type(exc).__name__
                else:
                    counts[outcome.status] += 1
                    counts["bytes_in"] += outcome.bytes_in
                    counts["bytes_out"] += outcome.bytes_out
                    if outcome.status == "scored":
                        shard_seconds += outcome.seconds
                if progress is not None:
                    progress(shard.rows)
            scoring_seconds = time.perf_counter() - submitted
    finally:
        if cluster is not None:
            cluster.close()
    report = ScoreReport(
        manifest.job, len(manifest.shards), counts["scored"], counts["skipped"], manifest.n_rows,
        time.perf_counter() - started, n_workers, counts["bytes_in"], counts["bytes_out"], shard_seconds,
        scoring_seconds, failed, address,
    )
    if failed:
        listed = "; ".join(f"{shard}: {message}" for shard, message in sorted(failed.items())[:5])
        raise BatchError(
            f"{len(failed)} of {len(manifest.shards)} shards of job {manifest.job} were not scored ({listed}); "
            "the others were. Run the same command again to retry only these"
        )
    return report
