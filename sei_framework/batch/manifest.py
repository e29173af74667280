"""The job manifest: which model and key a job was encrypted for, and every shard's rows and hash."""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import BatchError, InvalidRequest
from ..fingerprint import description_fingerprint
from ..keys import check_key_id
from ..validation import validation_problems
from .storage import JobStore

__all__ = [
    "FORMAT",
    "JobManifest",
    "MANIFEST",
    "MAX_MANIFEST_BYTES",
    "Shard",
    "description_fingerprint",
    "key_file",
    "result_file",
    "shard_file",
]

FORMAT: Final = "sei-batch/1"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
SHA256 = r"^[0-9a-f]{64}$"  # pydantic's Rust regex: $ is the end of the text, never before a newline


def shard_file(shard_id: str) -> str:
    return f"shards/{shard_id}.json"


def result_file(shard_id: str) -> str:
    return f"results/{shard_id}.json"


def key_file(key_id: str) -> str:
    return f"keys/{key_id}.pub"


class Shard(BaseModel):
    """Rows [start, stop) of the data set, encrypted into shards/ID.json with this hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[0-9]{5,9}$")
    start: int = Field(ge=0)
    stop: int = Field(ge=1)
    sha256: str = Field(pattern=SHA256)
    bytes: int = Field(ge=1)

    @property
    def rows(self) -> int:
        return self.stop - self.start


class JobManifest(BaseModel):
    """manifest.json: written last by `encrypt_dataset`, so a job with a manifest has all its shards."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["sei-batch/1"] = FORMAT
    job: str = Field(pattern=r"^[0-9a-f]{32}$")
    service: str | None = None
    model: str = Field(min_length=1, max_length=200)
    adapter: str = Field(min_length=1, max_length=200)
    description: dict[str, Any]
    description_sha256: str = Field(pattern=SHA256)
    key_id: str
    n_rows: int = Field(ge=1)
    n_features: int = Field(ge=1)
    rows_per_shard: int = Field(ge=1)
    columns: list[str] | None = None
    source: str = ""
    shards: list[Shard] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> JobManifest:
        try:
            check_key_id(self.key_id)
        except InvalidRequest as exc:
            raise ValueError(exc.message) from None
        if description_fingerprint(self.description) != self.description_sha256:
            raise ValueError("description_sha256 is not the hash of the description")
        expected = 0
        ids = set()
        for shard in self.shards:
            if shard.start != expected or shard.stop <= shard.start:
                raise ValueError(f"shard {shard.id} covers rows [{shard.start}, {shard.stop}); expected a start of {expected}")
            if shard.id in ids:
                raise ValueError(f"shard id {shard.id} appears twice")
            ids.add(shard.id)
            expected = shard.stop
        if expected != self.n_rows:
            raise ValueError(f"the shards cover {expected} rows; the manifest says {self.n_rows}")
        return self

    def shard(self, shard_id: str) -> Shard:
        for shard in self.shards:
            if shard.id == shard_id:
                return shard
        raise BatchError(f"job {self.job} has no shard {shard_id!r}")

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(), indent=1).encode()

    @classmethod
    def load(cls, store: JobStore) -> JobManifest:
        """The job's manifest, checked: shards partition the rows exactly once, hashes well formed."""
        return cls.parse(store.read(MANIFEST, MAX_MANIFEST_BYTES), store)

    @classmethod
    def parse(cls, raw: bytes, store: JobStore) -> JobManifest:
        """`raw` manifest bytes of the job in `store`, checked as `load` does."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(validation_problems(exc, limit=5))
            raise BatchError(f"{store.url}/{MANIFEST} is not a valid SEI batch manifest: {problems}") from None
