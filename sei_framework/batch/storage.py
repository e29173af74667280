"""A batch job's folder: a local path or any fsspec URL, read with bounds and written atomically."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..errors import BatchError

__all__ = ["BatchError", "JobStore", "sha256_hex"]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class JobStore:
    """The files of one job under `url` (a folder, `az://container/prefix`, ...).

    Writes are atomic: a local file is written aside and renamed into place, a blob is one upload;
    a process killed mid-write leaves the old file or none, never half of one. Picklable, so Dask
    workers open the same store (credentials come from their environment, e.g. adlfs's
    AZURE_STORAGE_CONNECTION_STRING, never from the job).
    """

    def __init__(self, url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
        self.url = os.fspath(url)
        self.storage_options = dict(storage_options or {})
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except (ImportError, ValueError) as exc:
            raise BatchError(f"cannot open the job folder {self.url!r}: {exc}") from None
        self.root = self.root.rstrip("/")
        if self.is_local:
            self.url = self.root  # absolute: workers started elsewhere resolve the same folder

    def __reduce__(self) -> tuple[type[JobStore], tuple[str, dict[str, Any]]]:
        return (JobStore, (self.url, self.storage_options))

    def __repr__(self) -> str:
        return f"JobStore({self.url!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def read(self, name: str, max_bytes: int) -> bytes:
        """The file's bytes, refused (BatchError) when missing, not a regular file, or over `max_bytes`."""
        path = self.path(name)
        if self.is_local and (os.path.islink(path) or (os.path.exists(path) and not os.path.isfile(path))):
            raise BatchError(f"{self.url}/{name} is not a regular file")
        try:
            with self.fs.open(path, "rb") as handle:
                data = handle.read(max_bytes + 1)
        except FileNotFoundError:
            raise BatchError(f"{self.url}/{name} does not exist") from None
        except (OSError, ValueError) as exc:
            raise BatchError(f"cannot read {self.url}/{name}: {exc}") from None
        if len(data) > max_bytes:
            raise BatchError(f"{self.url}/{name} is larger than {max_bytes} bytes, the most this job allows")
        return data

    def write(self, name: str, data: bytes) -> None:
        """Put `data` at `name` as one unit (the parent folder is made if needed)."""
        path = self.path(name)
        try:
            if not self.is_local:
                self.fs.pipe_file(path, data)
                return
            os.makedirs(os.path.dirname(path), exist_ok=True)
            temp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp"
            try:
                with open(temp, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, path)
            finally:
                if os.path.exists(temp):
                    os.unlink(temp)
        except OSError as exc:
            raise BatchError(f"cannot write {self.url}/{name}: {exc.strerror or exc}") from None
