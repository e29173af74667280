"""A per-user folder under the temp dir that only its owner can write: checked before anything in it
is trusted, since another local user could otherwise plant a folder there first."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..errors import BatchError

__all__ = ["private_dir"]


def private_dir(name: str) -> Path:
    """`<tempdir>/<name>-<uid>`, created 0700 if absent; refused unless it is a real folder (not a
    symlink) owned by this user with mode 0700 exactly."""
    uid = os.getuid()
    path = Path(tempfile.gettempdir()) / f"{name}-{uid}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a folder"
    elif info.st_uid != uid:
        problem = f"belongs to uid {info.st_uid}, not to this user (uid {uid})"
    elif stat.S_IMODE(info.st_mode) != 0o700:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}, not 0700"
    if problem:
        raise BatchError(
            f"{path} {problem}, so another local user may have planted what is in it; SEI does not use it "
            "(remove it, or set TMPDIR to a folder of your own)"
        )
    return path
