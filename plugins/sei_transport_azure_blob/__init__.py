"""Built-in plugin: key transport `azure-blob`, public keys as blobs in Azure Storage.

Needs the `azure-blob` extra (docs/install.md); the SDK is imported when the transport is
first used, so configs naming it validate without it.
"""

from __future__ import annotations

from sei_framework import TransportRegistry, hookimpl

from .options import AzureBlobOptions
from .sas import check_sas_url, make_sas_url
from .transport import AzureBlobTransport

__all__ = ["AzureBlobOptions", "AzureBlobTransport", "check_sas_url", "make_sas_url", "sei_register_key_transports"]


@hookimpl
def sei_register_key_transports(registry: TransportRegistry) -> None:
    registry.register(AzureBlobTransport)
