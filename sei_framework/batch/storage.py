"""A batch job's folder: a local path or any fsspec URL, read with bounds and written atomically."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import uuid
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..errors import BatchError
from ..extras import require_extra

__all__ = ["BatchError", "JobStore", "forget_storage_options", "remember_storage_options", "sha256_hex"]

MB = 1024 * 1024
# A local job file is opened without following a link at its name (no check-then-open race), without
# blocking on a FIFO, and without leaking the descriptor into a child process.
_READ_FLAGS = os.O_RDONLY
for _flag in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC", "O_BINARY"):
    _READ_FLAGS |= getattr(os, _flag, 0)

_OPTIONS: dict[str, dict[str, Any]] = {}
"""This process's storage options (credentials, often) by reference; a pickled JobStore carries the reference only."""
_OPTIONS_LOCK = threading.Lock()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def remember_storage_options(options: dict[str, Any], ref: str | None = None) -> str:
    """Keep `options` in this process under `ref` (default: the reference of equal options already kept,
    else a fresh random one) and return the reference: a name that tells nothing of the options."""
    with _OPTIONS_LOCK:
        if ref is None:
            ref = next((known for known, kept in _OPTIONS.items() if kept == options), None) or uuid.uuid4().hex
        _OPTIONS[ref] = dict(options)
    return ref


def forget_storage_options(ref: str) -> None:
    """Drop the options kept under `ref` (a worker plugin's teardown, when the run that needed them ends)."""
    with _OPTIONS_LOCK:
        _OPTIONS.pop(ref, None)


_AT_CALLS = {os.open, os.mkdir, os.rename, os.unlink} <= os.supports_dir_fd
"""POSIX: files are opened relative to their folder's descriptor. Windows has no such calls (nor O_NOFOLLOW):
there a path is opened as it is."""
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _not_regular(path: str, exc: OSError) -> BatchError | None:
    if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a symlink (EMLINK on FreeBSD)
        return BatchError(f"{path} is not a regular file: it, or a folder on its way, is a symbolic link")
    if exc.errno == errno.ENXIO:  # a socket
        return BatchError(f"{path} is not a regular file (a socket)")
    if exc.errno == errno.ENOTDIR:
        return BatchError(f"{path}: a folder on its way is a symbolic link or not a folder")
    return None


def _open_parent(root: str, name: str, *, create: bool = False) -> tuple[int | None, str]:
    """A descriptor of the folder holding `name` (a path relative to the job folder `root`) and the file's
    own name, every folder on the way opened without following a symbolic link (none is reached through
    one that is swapped in between a check and the open); `create`: missing folders are made. Without
    the *at() calls: None and the file's path."""
    if create:
        os.makedirs(root if _AT_CALLS else os.path.dirname(f"{root}/{name}"), exist_ok=True)
    if not _AT_CALLS:
        return None, f"{root}/{name}"
    fd = os.open(root, _DIR_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))  # the job folder itself is the user's choice
    *folders, leaf = name.split("/")
    try:
        for folder in folders:
            if create:
                try:
                    os.mkdir(folder, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            parent, fd = fd, os.open(folder, _DIR_FLAGS, dir_fd=fd)
            os.close(parent)
    except OSError:
        os.close(fd)
        raise
    return fd, leaf


def _open_local(root: str, name: str) -> int:
    """A descriptor of the regular file `name` in the job folder `root`, never one reached through a link."""
    path = f"{root}/{name}"
    try:
        parent, leaf = _open_parent(root, name)
        try:
            fd = os.open(leaf, _READ_FLAGS, dir_fd=parent)
        finally:
            if parent is not None:
                os.close(parent)
    except OSError as exc:
        refused = _not_regular(path, exc)
        if refused is not None:
            raise refused from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BatchError(f"{path} is not a regular file")
    return fd


def _read_fd(fd: int, max_bytes: int) -> bytes:
    chunks, size = [], 0
    while size <= max_bytes:  # bounded even if the file grows while it is read
        chunk = os.read(fd, min(max_bytes + 1 - size, 16 * MB))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


AZURE_SCHEMES = ("az", "abfs", "abfss")  # fsspec protocols served by adlfs (the batch-azure extra)


class JobStore:
    """The files of one job under `url` (a folder, `az://container/prefix`, ...).

    Writes are atomic: a local file is written aside and renamed into place, a blob is one upload;
    a process killed mid-write leaves the old file or none, never half of one. Local files are read
    with O_NOFOLLOW. Picklable, so Dask workers open the same store; a pickle carries the URL and a
    reference to the storage options, never the options themselves (they are often credentials):
    a process that unpickles one gets them from its own `remember_storage_options` (score_job's
    worker plugin), and without options a store uses the environment's (e.g. adlfs's
    AZURE_STORAGE_CONNECTION_STRING). The file system opens on first use, not when unpickled.
    """

    def __init__(self, url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
        self.url = os.fspath(url)
        self._options: dict[str, Any] | None = dict(storage_options or {})
        self.options_ref = remember_storage_options(self._options) if self._options else None
        self._fs: fsspec.AbstractFileSystem | None = None
        self._root = ""
        self._connect()
        if self.is_local:
            self.url = self._root  # absolute: workers started elsewhere resolve the same folder

    @classmethod
    def _restore(cls, url: str, options_ref: str | None) -> JobStore:
        store = cls.__new__(cls)
        store.url, store.options_ref, store._options, store._fs, store._root = url, options_ref, None, None, ""
        return store

    def __reduce__(self) -> tuple[Any, tuple[str, str | None]]:
        return (JobStore._restore, (self.url, self.options_ref))

    def __repr__(self) -> str:
        return f"JobStore({self.url!r})"

    @property
    def storage_options(self) -> dict[str, Any]:
        """The options this store opens its file system with (kept in this process, never pickled)."""
        if self._options is None:
            if self.options_ref is None:
                self._options = {}
            else:
                with _OPTIONS_LOCK:
                    found = _OPTIONS.get(self.options_ref)
                if found is None:
                    raise BatchError(
                        f"this process has no storage options for the job folder {self.url!r}: give them to "
                        "score_job (it hands them to each Dask worker once), or set the credentials in the "
                        "environment of every worker"
                    )
                self._options = dict(found)
        return self._options

    def _connect(self) -> None:
        if "://" in self.url and self.url.split("://", 1)[0] in AZURE_SCHEMES:
            require_extra("batch-azure", "a job folder in Azure Storage", BatchError)
        try:
            self._fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except (ImportError, ValueError) as exc:
            raise BatchError(f"cannot open the job folder {self.url!r}: {exc}") from None
        self._root = root.rstrip("/")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            self._connect()
        assert self._fs is not None
        return self._fs

    @property
    def root(self) -> str:
        if self._fs is None:
            self._connect()
        return self._root

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self.path(name)))

    def read(self, name: str, max_bytes: int, *, offset: int = 0, exact: bool = False) -> bytes:
        """Up to `max_bytes` of the file from `offset`, refused (BatchError) when missing, not a regular file,
        or longer than that (`exact`: anything but exactly `max_bytes`). Never reads more than `max_bytes` + 1."""
        path = self.path(name)
        try:
            if self.is_local:
                fd = _open_local(self.root, name)
                try:
                    if offset:
                        os.lseek(fd, offset, os.SEEK_SET)
                    data = _read_fd(fd, max_bytes)
                finally:
                    os.close(fd)
            else:
                with self.fs.open(path, "rb") as handle:
                    if offset:
                        handle.seek(offset)
                    data = handle.read(max_bytes + 1)
        except FileNotFoundError:
            raise BatchError(f"{self.url}/{name} does not exist") from None
        except (OSError, ValueError) as exc:
            raise BatchError(f"cannot read {self.url}/{name}: {exc}") from None
        if len(data) > max_bytes:
            raise BatchError(f"{self.url}/{name} is larger than {max_bytes + offset} bytes, the most this job allows")
        if exact and len(data) != max_bytes:
            raise BatchError(f"{self.url}/{name} is shorter than it says ({len(data) + offset} of {max_bytes + offset} bytes)")
        return data

    def read_head(self, name: str, max_bytes: int) -> tuple[bytes, int]:
        """At most the first `max_bytes` of the file (its header) and the file's whole size, from one open;
        missing or special files refused as by `read`."""
        path = self.path(name)
        try:
            if self.is_local:
                fd = _open_local(self.root, name)
                try:
                    return os.read(fd, max_bytes), os.fstat(fd).st_size
                finally:
                    os.close(fd)
            with self.fs.open(path, "rb") as handle:
                head = bytes(handle.read(max_bytes))
                size = getattr(handle, "size", None)
            return head, int(size if size is not None else self.fs.size(path))
        except FileNotFoundError:
            raise BatchError(f"{self.url}/{name} does not exist") from None
        except (OSError, ValueError) as exc:
            raise BatchError(f"cannot read {self.url}/{name}: {exc}") from None

    def write(self, name: str, data: bytes) -> None:
        """Put `data` at `name` as one unit (the parent folder is made if needed)."""
        path = self.path(name)
        try:
            if not self.is_local:
                self.fs.pipe_file(path, data)
                return
            parent, leaf = _open_parent(self.root, name, create=True)
            head, tail = os.path.split(leaf)
            temp = os.path.join(head, f".{tail}.{uuid.uuid4().hex[:12]}.tmp")
            try:
                # O_EXCL: never through a link or a file planted at the temporary name
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                with os.fdopen(os.open(temp, flags, 0o644, dir_fd=parent), "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, leaf, src_dir_fd=parent, dst_dir_fd=parent)  # replaces a link at `leaf`, never writes through it
            finally:
                try:
                    os.unlink(temp, dir_fd=parent)
                except FileNotFoundError:
                    pass
                if parent is not None:
                    os.close(parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
                raise BatchError(f"cannot write {path}: a folder on its way is a symbolic link or not a folder") from None
            raise BatchError(f"cannot write {self.url}/{name}: {exc.strerror or exc}") from None
