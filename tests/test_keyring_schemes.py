"""Keyring.folder_for: every scheme gets its own folder inside the keyring, whatever its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from sei_framework import KeyringError
from sei_framework.keys import PAIR_FILE, Keyring

HOSTILE = ["..", ".", "../escaped", "a/../../b", "/etc/sei", ".hidden", "a\\..\\b", "..\x00", "x" * 300]


@pytest.mark.parametrize("scheme", HOSTILE)
def test_a_scheme_never_leaves_the_keyring(tmp_path: Path, scheme: str) -> None:
    keyring = Keyring(tmp_path / "keys")
    folder = keyring.folder_for(scheme)
    assert folder.parent == keyring.folder and folder.name not in (".", "..") and "/" not in folder.name
    assert len(folder.name) < 120
    keyring.save(scheme, b"secret", b"public")
    assert keyring.load(scheme) == (b"secret", b"public")
    outside = [p for p in tmp_path.rglob(PAIR_FILE) if keyring.folder not in p.parents]
    assert outside == []


def test_schemes_that_differ_only_in_replaced_characters_get_their_own_folders(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keys")
    schemes = ["a/b", "a_b", "a:b", "a b", "a.b", "a\u00e9b", "a\u00e8b"]
    assert len({keyring.folder_for(s) for s in schemes}) == len(schemes)
    for i, scheme in enumerate(schemes):
        keyring.save(scheme, f"secret {i}".encode(), f"public {i}".encode())
    for i, scheme in enumerate(schemes):
        assert keyring.load(scheme) == (f"secret {i}".encode(), f"public {i}".encode())


def test_plain_schemes_keep_their_folder_names(tmp_path: Path) -> None:
    """Keyrings made by earlier versions are found where they are."""
    keyring = Keyring(tmp_path)
    for scheme in ("packed-0123abcd", "eiserver-ckks-8192", "concrete-" + "f" * 32, "a.b_c-d"):
        assert keyring.folder_for(scheme) == tmp_path / scheme


def test_an_empty_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="non-empty string"):
        Keyring(tmp_path).folder_for("")
