"""The `azure-blob` key transport: one blob per key id in an Azure Storage container."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from sei_framework import KeyTransport, check_key_id

from . import sas, storage
from .options import AzureBlobOptions
from .tutorial import fetch_tutorial_keys, is_tutorial_request, refuse_tutorial_request, source_of

__all__ = ["AzureBlobTransport"]


class AzureBlobTransport(KeyTransport):
    """The client uploads its public keys as blob KEY_ID; the service reads them.

    Mode `read`: the service reads with its own credentials (connection string from the
    environment variable the config names, or its Azure identity). Mode `sas`: each request
    that publishes keys carries `key_sas_url`, a read-only SAS URL of that one blob.
    """

    name: ClassVar[str] = "azure-blob"
    Options = AzureBlobOptions
    requirements = ("azure-storage-blob>=12.19", "azure-identity>=1.15")
    service_may_configure: ClassVar[bool] = False
    """The client uploads with its own storage credentials, so only to the account and container its
    user configures: a service that named them could collect the client's Azure identity token."""

    def __init__(self, options: AzureBlobOptions) -> None:
        super().__init__(options)
        storage.sdk()  # fail now, with the install hint, rather than on the first request
        self._service: Any = None
        self._lock = threading.Lock()

    @property
    def opts(self) -> AzureBlobOptions:
        return self.options  # type: ignore[return-value]

    def client_options(self) -> dict[str, Any]:
        """Shown in `describe`: container, account URL, mode, env variable NAME; never secrets. A client
        builds its transport from these only when its user trusts the service (`trust_service_transport`)."""
        shared = {
            "container": self.opts.container,
            "mode": self.opts.mode,
            "connection_string_env": self.opts.connection_string_env,
            "sas_expiry_minutes": self.opts.sas_expiry_minutes,
        }
        if self.opts.account_url:
            shared["account_url"] = self.opts.account_url
        return shared

    def _client(self) -> Any:
        with self._lock:
            if self._service is None:
                self._service = storage.service_client(self.opts)
            return self._service

    def publish(self, key_id: str, public_keys: bytes) -> dict[str, Any]:
        """Client side: upload blob KEY_ID (once) with the client's own credentials."""
        service = self._client()
        blob = storage.upload_once(service, self.opts.container, check_key_id(key_id), public_keys)
        if self.opts.mode == "sas":
            return {sas.FIELD: sas.make_sas_url(service, blob, self.opts.sas_expiry_minutes)}
        return {}

    def unverified_source(self, key_id: str, request: dict[str, Any]) -> str | None:
        """For an accepted tutorial request, where its keys come from (endpoint and container).

        The tutorial's key id hashes the SECRET key, so its keys cannot be checked against it;
        the core then caches them apart from content-addressed keys. None for every other request.
        """
        if self.opts.accept_tutorial_requests and is_tutorial_request(request):
            return source_of(self.opts, request)
        return None

    def fetch(self, key_id: str, request: dict[str, Any], *, max_bytes: int | None = None) -> bytes | None:
        """Service side: the key blob for `key_id`, None when there is none."""
        key_id = check_key_id(key_id)
        if is_tutorial_request(request):
            if not self.opts.accept_tutorial_requests:
                raise refuse_tutorial_request()
            return fetch_tutorial_keys(self.opts, key_id, request)
        if self.opts.mode == "sas":
            url = request.get(sas.FIELD)
            if url is None:
                return None  # unknown_key_id: the client publishes and sends a fresh SAS URL
            checked = sas.check_sas_url(url, self.opts, key_id)
            return storage.download(storage.blob_from_url(checked, self.opts), self.opts, sas=True, max_bytes=max_bytes)
        blob = self._client().get_blob_client(self.opts.container, key_id)
        return storage.download(blob, self.opts, max_bytes=max_bytes)

    def fetch_at_most(self, key_id: str, request: dict[str, Any], max_bytes: int) -> bytes | None:
        return self.fetch(key_id, request, max_bytes=max_bytes)
