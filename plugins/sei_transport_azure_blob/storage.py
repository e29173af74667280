"""Azure Storage calls of the `azure-blob` transport, with errors that never carry secrets.

The SDK is imported on first use, so the plugin loads (and configs validate) without it.
Error messages are written here from status and error codes; an SDK exception's own text is
never passed on, because some of them quote the URL they were given (with its SAS token).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from sei_framework import InvalidRequest, KeyTransportError, PluginError, install_hint, require_extra

from .options import AzureBlobOptions

__all__ = ["sdk", "client_kwargs", "service_client", "blob_from_url", "download", "upload_once", "endpoint_of"]



def sdk() -> ModuleType:
    """The `azure.storage.blob` module, or a PluginError naming the `azure-blob` extra."""
    require_extra("azure-blob", "the azure-blob key transport (Azure Storage SDK)", PluginError)
    import azure.storage.blob as blob

    return blob


def client_kwargs(options: AzureBlobOptions) -> dict[str, Any]:
    return {"connection_timeout": options.timeout_s, "read_timeout": options.timeout_s, "retry_total": 2}


def endpoint_of(client: Any) -> str:
    """The blob endpoint URL of a service client, without a trailing slash."""
    return client.url.split("?", 1)[0].rstrip("/")


def service_client(options: AzureBlobOptions, environ: Mapping[str, str] | None = None) -> Any:
    """A BlobServiceClient with this side's own credentials: its connection string, else its Azure identity."""
    blob = sdk()
    environ = os.environ if environ is None else environ
    name = options.connection_string_env
    conn_str = environ.get(name)
    if conn_str:
        try:
            client = blob.BlobServiceClient.from_connection_string(conn_str, **client_kwargs(options))
        except ValueError:
            raise KeyTransportError(
                f"the environment variable {name} does not hold a storage connection string"
            ) from None
        if options.account_url and endpoint_of(client) != options.account_url:
            raise KeyTransportError(
                f"the connection string in {name} is for {endpoint_of(client)}, but the config's account_url "
                f"is {options.account_url}"
            )
        return client
    if options.account_url:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise PluginError(
                "account_url without a connection string needs azure-identity, of the `azure-blob` extra: "
                + install_hint("azure-blob"),
                code="missing_extra",
            ) from None
        return blob.BlobServiceClient(
            options.account_url, credential=DefaultAzureCredential(), **client_kwargs(options)
        )
    raise KeyTransportError(
        f"no storage credentials: set the environment variable {name} to a storage connection string, "
        "or configure account_url to use an Azure identity"
    )


def blob_from_url(url: str, options: AzureBlobOptions) -> Any:
    """A BlobClient for an already checked SAS URL (no other credential)."""
    return sdk().BlobClient.from_blob_url(url, **client_kwargs(options))


def _where(blob_client: Any) -> str:
    return f"container {blob_client.container_name!r} of {blob_client.primary_hostname}"


DEFAULT_MAX_BLOB_MB = 32  # neither the option nor the service names a limit


def download(
    blob_client: Any, options: AzureBlobOptions, *, sas: bool = False, max_bytes: int | None = None
) -> bytes | None:
    """The blob's bytes (at most the smaller of `max_bytes` and the `max_blob_mb` option), None when
    there is no such blob; storage errors become SEI errors."""
    from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError

    limits = [int(options.max_blob_mb * 1024 * 1024)] if options.max_blob_mb is not None else []
    limits += [max_bytes] if max_bytes is not None else []
    limit = min(limits) if limits else DEFAULT_MAX_BLOB_MB * 1024 * 1024
    try:
        stream = blob_client.download_blob()
        if stream.size > limit:
            raise InvalidRequest(
                f"the key blob is {stream.size} bytes; this service reads at most {limit}", code="keys_too_large"
            )
        return stream.readall()
    except ResourceNotFoundError as exc:
        if getattr(exc, "error_code", None) == "ContainerNotFound":
            raise KeyTransportError(f"{_where(blob_client)} does not exist") from None
        return None
    except HttpResponseError as exc:
        raise _refused(exc, blob_client, sas) from None
    except AzureError as exc:
        raise KeyTransportError(
            f"cannot read key blob from {blob_client.primary_hostname}: {type(exc).__name__}"
        ) from None


def _refused(exc: Any, blob_client: Any, sas: bool) -> Exception:
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None) or "unknown"
    if sas and status == 403:
        text = str(getattr(exc, "message", "") or "").lower()
        if "expire" in text:
            return InvalidRequest("key_sas_url has expired; publish the keys again", code="key_sas_expired")
        return InvalidRequest(
            f"the storage account refused key_sas_url ({code}): wrong signature, permissions or time window",
            code="key_sas_rejected",
        )
    if status in (401, 403):
        return KeyTransportError(f"the service's storage credentials may not read {_where(blob_client)} ({code})")
    return KeyTransportError(f"reading a key blob from {_where(blob_client)} failed: HTTP {status} {code}")


def upload_once(service: Any, container: str, name: str, data: bytes) -> Any:
    """Upload `data` as blob `name` unless it already holds as many bytes (names are content hashes).

    The container is created (private) when it does not exist yet. Returns the BlobClient.
    """
    from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError

    blob_client = service.get_blob_client(container, name)
    try:
        try:
            if blob_client.get_blob_properties().size == len(data):
                return blob_client
        except ResourceNotFoundError:
            pass
        try:
            blob_client.upload_blob(data, overwrite=True)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != "ContainerNotFound":
                raise
            try:
                service.get_container_client(container).create_container()
            except ResourceExistsError:
                pass
            blob_client.upload_blob(data, overwrite=True)
    except HttpResponseError as exc:
        code = getattr(exc, "error_code", None) or "unknown"
        raise KeyTransportError(
            f"cannot upload public keys to {_where(blob_client)}: HTTP {exc.status_code} {code}"
        ) from None
    except AzureError as exc:
        raise KeyTransportError(
            f"cannot upload public keys to {blob_client.primary_hostname}: {type(exc).__name__}"
        ) from None
    return blob_client
