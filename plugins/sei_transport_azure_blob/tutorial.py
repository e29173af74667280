"""The Azure ML tutorial's request, which sends a storage connection string; accepted only on opt-in.

`{"data": [...], "key_id": ..., "conn_str": ..., "container": ...}`: the service reads blob
`key_id` of `container` with the client's connection string. The connection string is never
logged or quoted, and it may only name this service's container and account (or, without
`account_url`, an Azure storage account over https), so it cannot send the service elsewhere.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from sei_framework import InvalidRequest

from .options import CONTAINER_PATTERN, AzureBlobOptions
from .storage import client_kwargs, download, endpoint_of, sdk

__all__ = ["is_tutorial_request", "checked_request", "source_of", "fetch_tutorial_keys", "refuse_tutorial_request"]

log = logging.getLogger(__name__)
AZURE_BLOB_SUFFIXES = (
    ".blob.core.windows.net",
    ".blob.core.chinacloudapi.cn",
    ".blob.core.usgovcloudapi.net",
)


def is_tutorial_request(request: dict[str, Any]) -> bool:
    return "conn_str" in request


def refuse_tutorial_request() -> InvalidRequest:
    return InvalidRequest(
        "this service does not accept storage connection strings in requests (the Azure ML tutorial's "
        "request); publish your public keys with SEI's client, or ask the operator to set "
        "key_transport.options.accept_tutorial_requests",
        code="tutorial_request_refused",
    )


def _client_for(conn_str: object, options: AzureBlobOptions) -> Any:
    if not isinstance(conn_str, str) or not conn_str:
        raise InvalidRequest("conn_str must be a storage connection string", code="invalid_conn_str")
    try:
        client = sdk().BlobServiceClient.from_connection_string(conn_str, **client_kwargs(options))
    except ValueError:
        raise InvalidRequest("conn_str is not a storage connection string", code="invalid_conn_str") from None
    endpoint = endpoint_of(client)
    if options.account_url:
        if endpoint != options.account_url:
            raise InvalidRequest(
                f"conn_str is for storage endpoint {endpoint}; this service reads keys only from {options.account_url}",
                code="wrong_account",
            )
    else:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        if parts.scheme != "https" or parts.port not in (None, 443) or not host.endswith(AZURE_BLOB_SUFFIXES):
            raise InvalidRequest(
                "conn_str must name an Azure storage account over https (or set account_url in the config)",
                code="wrong_account",
            )
    return client


def checked_request(options: AzureBlobOptions, request: dict[str, Any]) -> tuple[Any, str]:
    """The storage client for the request's `conn_str`, and its `container`, once both are checked."""
    container = request.get("container")
    if not isinstance(container, str) or not re.fullmatch(CONTAINER_PATTERN, container):
        raise InvalidRequest("container must be a blob container name", code="wrong_container")
    if container != options.container:
        raise InvalidRequest(
            f"container {container!r} is not this service's key container {options.container!r}",
            code="wrong_container",
        )
    return _client_for(request.get("conn_str"), options), container


def source_of(options: AzureBlobOptions, request: dict[str, Any]) -> str:
    """Where a tutorial request's keys come from: endpoint and container, never the connection string."""
    client, container = checked_request(options, request)
    return f"azure-blob {endpoint_of(client)}/{container}"


def fetch_tutorial_keys(options: AzureBlobOptions, key_id: str, request: dict[str, Any]) -> bytes | None:
    """Read the key blob with the connection string the request carries (never logged)."""
    client, container = checked_request(options, request)
    log.warning(
        "azure-blob: reading public keys %s from container %s of %s with a connection string sent by the client "
        "(the Azure ML tutorial's request; accept_tutorial_requests is on; the connection string is not logged)",
        key_id,
        container,
        urlsplit(endpoint_of(client)).hostname,  # not netloc: it could carry user:password
    )
    return download(client.get_blob_client(container, key_id), options)
