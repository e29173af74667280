"""Packed builds unpack into this user's own 0700 folder, checked before anything in it is trusted."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import pytest

from sei_framework.batch.private_dir import private_dir
from sei_framework.batch.scoring import pack_build, unpack_build
from sei_framework.errors import BatchError


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh temp dir standing in for /tmp (tempfile.gettempdir() reads tempfile.tempdir)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture
def blob(tmp_path: Path) -> bytes:
    build = tmp_path / "build"
    build.mkdir()
    (build / "sei_build.json").write_text(json.dumps({"genuine": True}))
    return pack_build(build)


def test_builds_unpack_into_a_0700_folder_of_this_user(tmp_root: Path, blob: bytes) -> None:
    folder = unpack_build(blob)
    root = folder.parent
    assert root == tmp_root / f"sei-builds-{os.getuid()}"
    info = os.lstat(root)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert json.loads((folder / "sei_build.json").read_text()) == {"genuine": True}
    assert unpack_build(blob) == folder  # the second worker of this user reuses it


def test_a_build_planted_in_the_shared_folder_is_not_trusted(tmp_root: Path, blob: bytes) -> None:
    """Before: /tmp/sei-builds/<digest> was trusted as soon as it held a sei_build.json."""
    digest = hashlib.sha256(blob).hexdigest()[:32]
    planted = tmp_root / "sei-builds" / digest
    planted.mkdir(parents=True)
    (planted / "sei_build.json").write_text(json.dumps({"planted": True}))
    folder = unpack_build(blob)
    assert folder != planted
    assert json.loads((folder / "sei_build.json").read_text()) == {"genuine": True}


def test_a_folder_open_to_others_is_refused(tmp_root: Path, blob: bytes) -> None:
    root = tmp_root / f"sei-builds-{os.getuid()}"
    root.mkdir(mode=0o700)
    os.chmod(root, 0o777)  # anyone may have planted a build in it
    with pytest.raises(BatchError, match=r"sei-builds-\d+ has mode 0777, not 0700"):
        unpack_build(blob)


def test_a_symlink_is_refused(tmp_root: Path, blob: bytes) -> None:
    elsewhere = tmp_root / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_root / f"sei-builds-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(BatchError, match="is a symlink"):
        unpack_build(blob)


def test_a_folder_of_another_user_is_refused(tmp_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0700 folder named for this user's uid but made by another (seen from a user it does not belong to)."""
    mine = os.getuid()
    other = mine + 1
    (tmp_root / f"sei-builds-{other}").mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: other)
    with pytest.raises(BatchError, match=rf"belongs to uid {mine}, not to this user \(uid {other}\)"):
        private_dir("sei-builds")


def test_a_file_in_its_place_is_refused(tmp_root: Path) -> None:
    (tmp_root / f"sei-builds-{os.getuid()}").write_text("")
    with pytest.raises(BatchError, match="is not a folder"):
        private_dir("sei-builds")
