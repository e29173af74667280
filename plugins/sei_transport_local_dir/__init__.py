"""Built-in plugin: key transport `local-dir`, a folder that the client and the service both read."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from pydantic import field_validator

from sei_framework import KeyTransportError, KeyTransport, PluginOptions, check_key_id, hookimpl

__all__ = ["LocalDirTransport", "sei_register_key_transports"]


class LocalDirOptions(PluginOptions):
    path: Path
    """The shared folder; one file per key id. A relative path is taken from where SEI is run."""

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.expanduser().resolve()  # the service runs elsewhere: it gets the absolute path


class LocalDirTransport(KeyTransport):
    """Public keys are files named by key id in a shared folder."""

    name: ClassVar[str] = "local-dir"
    Options = LocalDirOptions

    def client_options(self) -> dict[str, Any]:
        return {"path": str(self.options.path)}

    def _file(self, key_id: str) -> Path:
        return self.options.path / f"{check_key_id(key_id)}.keys"

    def publish(self, key_id: str, public_keys: bytes) -> dict[str, Any]:
        target = self._file(key_id)
        if target.exists() and target.stat().st_size == len(public_keys):
            return {}
        try:
            self.options.path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.options.path, delete=False) as handle:
                handle.write(public_keys)
            os.replace(handle.name, target)
        except OSError as exc:
            raise KeyTransportError(f"cannot write public keys to {self.options.path}: {exc.strerror}") from None
        return {}

    def fetch(self, key_id: str, request: dict[str, Any]) -> bytes | None:
        try:
            return self._file(key_id).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyTransportError(f"cannot read public keys from {self.options.path}: {exc.strerror}") from None


@hookimpl
def sei_register_key_transports(registry):
    registry.register(LocalDirTransport)
