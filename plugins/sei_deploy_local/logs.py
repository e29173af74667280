"""The deployment's folder and server log: private (0700 / 0600), rotated at each deploy, never truncated."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

__all__ = ["KEEP_LOGS", "open_log", "private_dir", "rotate"]

KEEP_LOGS = 3
"""server.log.1 ... server.log.3: the logs of the deploys before this one."""


def private_dir(path: Path) -> Path:
    """`path` created if needed, readable by its owner only (it holds the log and the server's config)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def rotate(log: Path, keep: int = KEEP_LOGS) -> None:
    """server.log -> server.log.1 -> ... -> server.log.<keep>; the oldest is dropped."""
    oldest = log.with_name(f"{log.name}.{keep}")
    oldest.unlink(missing_ok=True)
    for n in range(keep - 1, 0, -1):
        older = log.with_name(f"{log.name}.{n}")
        if older.exists():
            older.chmod(0o600)
            older.rename(log.with_name(f"{log.name}.{n + 1}"))
    if log.exists():
        log.chmod(0o600)
        log.rename(log.with_name(f"{log.name}.1"))


def open_log(log: Path) -> IO[bytes]:
    """The log opened for appending, created 0600 (and made 0600 if it existed)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")
