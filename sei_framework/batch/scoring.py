"""Step 2, the model owner's, for one shard: check it, score it with the build's model, write the result."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import ModelAdapter
from ..build import Build
from ..columns import feature_names, recorded_columns
from ..errors import BatchError, SeiError
from ..keys import key_id_for
from ..serving import load_models, model_description
from .manifest import (
    FORMAT, MANIFEST, MAX_MANIFEST_BYTES, JobManifest, Shard, description_fingerprint, key_file, result_file, shard_file,
)
from .private_dir import private_dir
from .storage import JobStore, sha256_hex

__all__ = [
    "ShardOutcome", "ShardScorer", "describe_build", "pack_build", "read_result", "result_header", "result_payload",
    "score_shard", "scorer_for", "unpack_build",
]  # fmt: skip

MB = 1024 * 1024
RESULT_FORMAT = "sei-batch-result/2"
MAX_RESULT_HEADER_BYTES = 4096
"""A result file starts with one JSON line this long at most: enough to decide a skip without the result."""
MAX_RESULT_BYTES = 1024 * MB
"""The largest result of one shard that is written or read (decrypt reads no more than its header declares)."""
CACHED_KEYS = 8
"""Converted public keys a worker keeps (one per job's key id; a job has one)."""


@dataclass(frozen=True)
class ShardOutcome:
    shard: str
    status: str
    """"scored", or "skipped": a result for exactly this shard's bytes was already there."""
    rows: int
    bytes_in: int
    bytes_out: int
    seconds: float


def result_payload(manifest: JobManifest, shard: Shard, result: Any) -> bytes:
    """results/ID.json: a header line (what was scored, and the size and hash of the result), then the result."""
    body = json.dumps(result, separators=(",", ":")).encode()
    if len(body) > MAX_RESULT_BYTES:
        raise BatchError(f"the result of shard {shard.id} is {len(body)} bytes, over the {MAX_RESULT_BYTES} a result may be")
    header = {"format": RESULT_FORMAT, "job": manifest.job, "shard": shard.id, "start": shard.start, "stop": shard.stop,
              "model": manifest.model, "input_sha256": shard.sha256, "result_bytes": len(body),
              "result_sha256": sha256_hex(body)}  # fmt: skip
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def result_header(store: JobStore, manifest: JobManifest, shard: Shard) -> dict[str, Any] | None:
    """The header of `shard`'s result if one is there for exactly its bytes (its hash) and the file has the
    size the header declares, else None. Reads the header only, never the result."""
    name = result_file(shard.id)
    if not store.exists(name):
        return None
    try:
        head, size = store.read_head(name, MAX_RESULT_HEADER_BYTES)
    except BatchError:
        return None
    end = head.find(b"\n")
    try:
        header = json.loads(head[:end]) if end > 0 else None
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    matches = {"format": RESULT_FORMAT, "job": manifest.job, "shard": shard.id, "input_sha256": shard.sha256}
    if any(header.get(key) != value for key, value in matches.items()):
        return None
    declared = header.get("result_bytes")
    if type(declared) is not int or not 0 < declared <= MAX_RESULT_BYTES or size != end + 1 + declared:
        return None
    return {**header, "offset": end + 1}


def read_result(store: JobStore, manifest: JobManifest, shard: Shard) -> dict[str, Any] | None:
    """The result of `shard` (its header's fields and "result") if one is there for exactly its bytes,
    else None; the read takes no more than the size its header declares (at most MAX_RESULT_BYTES)."""
    header = result_header(store, manifest, shard)
    if header is None:
        return None
    name = result_file(shard.id)
    body = store.read(name, header["result_bytes"], offset=header["offset"], exact=True)
    if sha256_hex(body) != header.get("result_sha256"):
        raise BatchError(
            f"{store.url}/{name} is damaged (its result does not match the hash in its header): delete it and "
            "run `sei batch score` again"
        )
    try:
        return {**header, "result": json.loads(body)}
    except ValueError:
        raise BatchError(f"{store.url}/{name} is damaged (its result is not JSON): delete it and run `sei batch score` again") from None


class ShardScorer:
    """The models of one build, loaded once per process, and the converted keys of the jobs it scores."""

    def __init__(self, build_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str] | None = None) -> None:
        self.build = Build.open(build_dir)
        self.adapters = load_models(self.build, model_dir)
        limits = self.build.manifest["limits"]
        self.max_key_bytes = int(limits["max_public_key_mb"] * MB)
        self.max_shard_bytes = int(limits["max_request_mb"] * MB)
        """A shard is read and scored whole, as one request is: the service's limit on a request's bytes applies."""
        self._keys: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._manifests: dict[str, tuple[str, JobManifest]] = {}
        self._lock = threading.Lock()

    def manifest(self, store: JobStore) -> JobManifest:
        """The job's manifest, read every time (a job folder may be re-encrypted), parsed once per content."""
        raw = store.read(MANIFEST, MAX_MANIFEST_BYTES)
        digest = sha256_hex(raw)
        with self._lock:
            cached = self._manifests.get(store.url)
        if cached is not None and cached[0] == digest:
            return cached[1]
        manifest = JobManifest.parse(raw, store)
        with self._lock:
            self._manifests[store.url] = (digest, manifest)
        return manifest

    def adapter_for(self, manifest: JobManifest) -> ModelAdapter:
        """The job's model, refused unless the shards were encrypted for exactly this model's parameters."""
        adapter = self.adapters.get(manifest.model)
        if adapter is None:
            raise BatchError(
                f"job {manifest.job} is for model {manifest.model!r}; this build ({self.build.name}) has: "
                + ", ".join(sorted(self.adapters))
            )
        described = model_description(adapter)
        if description_fingerprint(described) != manifest.description_sha256:
            raise BatchError(
                f"job {manifest.job} was encrypted for another version of model {manifest.model!r} (its description, "
                f"parameters included, differs from build {self.build.name}'s); encrypt again with this build's description"
            )
        recorded_columns(manifest.columns, feature_names(described), f"job {manifest.job}")
        return adapter

    def keys_for(self, store: JobStore, manifest: JobManifest, adapter: ModelAdapter) -> Any:
        """The job's public key, read once per worker, checked against its key id, converted by the adapter."""
        slot = (manifest.model, manifest.key_id)
        with self._lock:
            if slot in self._keys:
                self._keys.move_to_end(slot)
                return self._keys[slot]
        raw = store.read(key_file(manifest.key_id), self.max_key_bytes)
        if key_id_for(raw) != manifest.key_id:
            raise BatchError(f"{store.url}/{key_file(manifest.key_id)} does not hash to its key id")
        try:
            keys = adapter.load_public_keys(raw)
        except SeiError as exc:
            raise BatchError(f"the job's public key is refused by model {manifest.model!r}: {exc.message}") from None
        with self._lock:
            self._keys[slot] = keys
            while len(self._keys) > CACHED_KEYS:
                self._keys.popitem(last=False)
        return keys

    def score(self, store: JobStore, shard_id: str, results: JobStore | None = None) -> ShardOutcome:
        """Score one shard into results/ID.json (in `results`, default the job's folder), unless a result
        for exactly these shard bytes is already there. Every failure is a BatchError naming the shard."""
        started = time.perf_counter()
        results = results or store
        manifest = self.manifest(store)
        shard = manifest.shard(shard_id)
        if result_header(results, manifest, shard) is not None:
            return ShardOutcome(shard.id, "skipped", shard.rows, 0, 0, time.perf_counter() - started)
        adapter = self.adapter_for(manifest)
        if shard.bytes > self.max_shard_bytes:
            raise BatchError(
                f"shard {shard.id} of job {manifest.job} is {shard.bytes} bytes, over the {self.max_shard_bytes} this "
                f"build scores at once (limits.max_request_mb of {self.build.name}): encrypt with fewer rows per shard"
            )
        raw = store.read(shard_file(shard.id), shard.bytes, exact=True)
        if sha256_hex(raw) != shard.sha256:
            raise BatchError(f"shard {shard.id} of job {manifest.job} does not match its hash in the manifest")
        try:
            body = json.loads(raw)
        except ValueError:
            raise BatchError(f"shard {shard.id} of job {manifest.job} is not JSON") from None
        header = {"format": FORMAT, "job": manifest.job, "shard": shard.id, "model": manifest.model,
                  "key_id": manifest.key_id, "start": shard.start, "stop": shard.stop}
        if not isinstance(body, dict) or any(body.get(k) != v for k, v in header.items()) or "data" not in body:
            raise BatchError(f"shard {shard.id}'s header does not match the manifest of job {manifest.job}")
        keys = self.keys_for(store, manifest, adapter)
        try:
            rows = adapter.count_rows(body["data"])
            if rows != shard.rows:
                raise BatchError(f"shard {shard.id} holds {rows} rows; the manifest says {shard.rows}")
            result = adapter.predict(body["data"], keys)
        except BatchError:
            raise
        except SeiError as exc:
            raise BatchError(f"shard {shard.id} of job {manifest.job} was refused: {exc.message}") from None
        payload = result_payload(manifest, shard, result)
        results.write(result_file(shard.id), payload)
        return ShardOutcome(shard.id, "scored", shard.rows, len(raw), len(payload), time.perf_counter() - started)


def pack_build(build_dir: str | os.PathLike[str]) -> bytes:
    """A build folder as zip bytes, so workers without the model owner's disk can load it."""
    root = Path(build_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def unpack_build(blob: bytes) -> Path:
    """Extract packed build bytes once per machine and user (a folder named by their hash, in this
    user's checked 0700 folder); return the folder."""
    digest = hashlib.sha256(blob).hexdigest()[:32]
    target = private_dir("sei-builds") / digest
    if (target / "sei_build.json").is_file() and not target.is_symlink():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            for member in archive.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise BatchError(f"packed build has an unsafe path {member!r}")
            archive.extractall(staging)
        os.rename(staging, target)
    except OSError:  # another worker on this machine got there first
        if not (target / "sei_build.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


_SCORERS: dict[str, ShardScorer] = {}
_SCORERS_LOCK = threading.Lock()


def scorer_for(build: str | os.PathLike[str] | bytes) -> ShardScorer:
    """This process's scorer for a build (a folder, or `pack_build` bytes), loaded on first use only."""
    path = unpack_build(build) if isinstance(build, bytes) else Path(build).resolve()
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(str(path))
        if scorer is None:
            scorer = _SCORERS[str(path)] = ShardScorer(path)
    return scorer


def score_shard(build: str | os.PathLike[str] | bytes, store: JobStore, shard_id: str, results: JobStore | None = None) -> ShardOutcome:
    """Score one shard in this process, loading the build (a folder, or `pack_build` bytes) once per process."""
    return scorer_for(build).score(store, shard_id, results)


def describe_build(build_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What a data owner encrypts a job for, as a running service's `describe` would say it, from the
    build folder alone (no service, no state): hand it over as a file (`sei batch describe`)."""
    build = Build.open(build_dir)
    adapters = load_models(build)
    rows = build.model_rows()
    return {
        "service": build.name,
        "sei_version": build.manifest["sei_version"],
        "models": {
            name: {**model_description(adapter), "limits": {"max_rows_per_request": rows[name]}}
            for name, adapter in adapters.items()
        },
        "limits": {"max_request_bytes": int(build.manifest["limits"]["max_request_mb"] * MB)},
    }


def job_shard_of(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(job folder, shard id) for a path `JOB/shards/ID.json`; None for any other file of a job."""
    path = Path(path)
    if path.parent.name != "shards" or path.suffix != ".json" or not path.stem.isdigit() or not path.stem.isascii():
        return None
    return str(path.parent.parent), path.stem
