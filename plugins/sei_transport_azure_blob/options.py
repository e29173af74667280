"""Options of the `azure-blob` key transport: where keys live and how each side may read them."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from sei_framework import PluginOptions, is_loopback_host

__all__ = ["AzureBlobOptions"]

CONTAINER_PATTERN = r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"
"""Azure's container naming rule (Python `re`: pydantic's patterns have no look-ahead)."""
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class AzureBlobOptions(PluginOptions):
    """Public keys are one blob per key id in `container`.

    Secrets never appear here: a connection string is read from the environment variable
    named by `connection_string_env` (each side reads its own), or `account_url` is used with
    an Azure identity (`DefaultAzureCredential`), or (mode `sas`) the client sends a short-lived
    read-only SAS URL of its key blob and the service holds no storage credentials at all.
    """

    container: str
    """Blob container holding the keys (3-63 characters: a-z, 0-9 and single hyphens)."""
    account_url: str | None = None
    """Blob endpoint, e.g. https://ACCOUNT.blob.core.windows.net (Azurite: http://127.0.0.1:10000/devstoreaccount1)."""
    connection_string_env: str = Field(default="SEI_BLOB_CONNECTION", pattern=ENV_NAME_PATTERN)
    """Name of the environment variable holding a storage connection string (never the string itself)."""
    mode: Literal["read", "sas"] = "read"
    """`read`: the service reads key blobs with its own credentials. `sas`: the client sends a SAS URL."""
    sas_expiry_minutes: int = Field(default=15, ge=1, le=1440)
    """Lifetime of the SAS URLs clients make; the service refuses SAS URLs valid for longer."""
    accept_tutorial_requests: bool = False
    """Accept the Azure ML tutorial's request, which carries a connection string (off: it is refused)."""
    max_blob_mb: float | None = Field(default=None, gt=0)
    """Largest key blob the service downloads; default: the service's `limits.max_public_key_mb`."""
    timeout_s: float = Field(default=30, gt=0)
    """Connection and read timeout of each storage call."""

    @field_validator("container")
    @classmethod
    def _check_container(cls, name: str) -> str:
        if not re.fullmatch(CONTAINER_PATTERN, name):
            raise ValueError("must be a blob container name: 3-63 characters, a-z, 0-9 and single hyphens")
        return name

    @field_validator("account_url")
    @classmethod
    def _check_account_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https:// URL of a blob endpoint")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("plain http is only allowed for a local emulator (127.0.0.1, localhost); use https")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry a query, a fragment or user info (no SAS tokens or keys here)")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _sas_needs_account(self) -> AzureBlobOptions:
        if self.mode == "sas" and self.account_url is None:
            raise ValueError("mode 'sas' needs account_url: the service accepts SAS URLs of that account only")
        return self
