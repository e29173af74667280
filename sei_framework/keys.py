"""Key ids and the client's key store. Secret keys never leave the store's folder."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

__all__ = ["KEY_ID_PATTERN", "key_id_for", "check_key_id", "Keyring", "sei_home"]

KEY_ID_PATTERN = re.compile(r"^[a-z2-7]{32}$")


def key_id_for(public_keys: bytes) -> str:
    """Content address of public keys: 32 lowercase base32 characters of their SHA-256."""
    return base64.b32encode(hashlib.sha256(public_keys).digest()).decode("ascii")[:32].lower()


def check_key_id(key_id: object) -> str:
    """Return `key_id` if it has the strict key-id form, else raise InvalidRequest."""
    from .errors import InvalidRequest

    if not isinstance(key_id, str) or not KEY_ID_PATTERN.match(key_id):
        raise InvalidRequest("key_id must be 32 characters from a-z and 2-7", code="invalid_key_id")
    return key_id


def sei_home() -> Path:
    """Where SEI keeps client keys and local deployment state ($SEI_HOME, else ~/.sei)."""
    return Path(os.environ.get("SEI_HOME") or Path.home() / ".sei")


class Keyring:
    """One key pair per key scheme, kept in files readable only by their owner."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else sei_home() / "keys"

    def _dir(self, scheme: str) -> Path:
        return self.folder / re.sub(r"[^A-Za-z0-9_.-]", "_", scheme)

    def load(self, scheme: str) -> tuple[bytes, bytes] | None:
        """The stored (secret, public) pair for `scheme`, or None."""
        folder = self._dir(scheme)
        try:
            return (folder / "secret.key").read_bytes(), (folder / "public.key").read_bytes()
        except FileNotFoundError:
            return None

    def save(self, scheme: str, secret: bytes, public: bytes) -> None:
        folder = self._dir(scheme)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, data, mode in (("secret.key", secret, 0o600), ("public.key", public, 0o644)):
            tmp = folder / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, folder / name)
