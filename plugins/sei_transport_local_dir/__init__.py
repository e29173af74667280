"""Built-in plugin: key transport `local-dir`, a folder that the client and the service both read."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from sei_framework import (
    ConfigPath,
    InvalidRequest,
    KeyTransport,
    KeyTransportError,
    PluginOptions,
    TransportRegistry,
    check_key_id,
    hookimpl,
    key_id_for,
)

__all__ = ["LocalDirTransport", "sei_register_key_transports"]

MB = 1024 * 1024
# Never follow a link at the key file's name, never block on a FIFO, never leak the descriptor.
_READ_FLAGS = os.O_RDONLY
for _flag in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC", "O_BINARY"):  # the client may run on Windows
    _READ_FLAGS |= getattr(os, _flag, 0)

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


DEFAULT_MAX_KEY_MB = 32  # neither the option nor the service names a limit


class LocalDirOptions(PluginOptions):
    path: ConfigPath
    """The shared folder; one file per key id. Relative to the config file; made absolute, so the
    service (which runs elsewhere) and every client agree."""
    max_key_mb: float | None = Field(default=None, gt=0)
    """Largest key file the service reads (a larger one is refused unread); default: the service's
    `limits.max_public_key_mb`."""


class _BadKeyFile(Exception):
    """The name of a key file holds something other than a regular file (what it is: the message)."""


class _TooLarge(Exception):
    """The key file is over the limit (its size: the message)."""


def _read_key_file(path: Path, limit: int) -> bytes | None:
    """The bytes of the regular file at `path`, None if there is none; at most `limit` bytes are
    read (_TooLarge beyond), and a symlink, FIFO, directory or device is refused unread (_BadKeyFile)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a symlink (EMLINK on FreeBSD)
            raise _BadKeyFile("a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a socket
            raise _BadKeyFile("a socket") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _BadKeyFile(_KINDS.get(stat.S_IFMT(info.st_mode), "a special file"))
        if info.st_size > limit:
            raise _TooLarge(f"{info.st_size} bytes")
        chunks, size = [], 0
        while size <= limit:  # bounded even if the file grows after fstat
            chunk = os.read(fd, min(limit + 1 - size, MB))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise _TooLarge(f"more than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


class LocalDirTransport(KeyTransport):
    """Public keys are files named by key id in a shared folder."""

    name: ClassVar[str] = "local-dir"
    service_may_configure: ClassVar[bool] = False  # the client writes files: only where its user says
    Options = LocalDirOptions
    options: LocalDirOptions

    def client_options(self) -> dict[str, Any]:
        return {"path": str(self.options.path)}

    def _file(self, key_id: str) -> Path:
        return self.options.path / f"{check_key_id(key_id)}.keys"

    def _published(self, target: Path, key_id: str, size: int) -> bool:
        """True if `target` is a regular file whose content hashes to `key_id` (not merely the same size)."""
        try:
            existing = _read_key_file(target, size)
        except (_BadKeyFile, _TooLarge, OSError):
            return False
        return existing is not None and key_id_for(existing) == key_id

    def publish(self, key_id: str, public_keys: bytes) -> dict[str, Any]:
        target = self._file(key_id)
        if self._published(target, key_id, len(public_keys)):
            return {}
        folder = self.options.path
        tmp = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key_id}.", suffix=".tmp")  # unique, O_EXCL
            with os.fdopen(fd, "wb") as handle:
                if hasattr(os, "fchmod"):  # mkstemp makes 0600; the service may run as another user
                    os.fchmod(handle.fileno(), 0o644)
                handle.write(public_keys)
            os.replace(tmp, target)  # a symlink at `target` is replaced, not followed
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise KeyTransportError(f"cannot write public keys to {target}: {exc.strerror}") from None
        return {}

    def fetch(self, key_id: str, request: dict[str, Any], *, max_bytes: int | None = None) -> bytes | None:
        """The key file's bytes, at most the smaller of `max_bytes` (the service's key limit) and the
        `max_key_mb` option (DEFAULT_MAX_KEY_MB when neither is given)."""
        limits = [int(self.options.max_key_mb * MB)] if self.options.max_key_mb is not None else []
        limits += [max_bytes] if max_bytes is not None else []
        limit = min(limits) if limits else int(DEFAULT_MAX_KEY_MB * MB)
        try:
            return _read_key_file(self._file(key_id), limit)
        except _TooLarge as size:
            raise InvalidRequest(
                f"the key file for key id {key_id} is {size}; this service reads at most {limit}",
                code="keys_too_large",
            ) from None
        except _BadKeyFile as kind:
            raise KeyTransportError(
                f"the key file for key id {key_id} is {kind}, not a regular file; publish the keys again",
                code="bad_key_file",
            ) from None
        except OSError as exc:
            raise KeyTransportError(f"cannot read the key file for key id {key_id}: {exc.strerror}") from None

    def fetch_at_most(self, key_id: str, request: dict[str, Any], max_bytes: int) -> bytes | None:
        """`fetch` bounded by the service's key limit."""
        return self.fetch(key_id, request, max_bytes=max_bytes)


@hookimpl
def sei_register_key_transports(registry: TransportRegistry) -> None:
    registry.register(LocalDirTransport)
