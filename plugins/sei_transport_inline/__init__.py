"""Built-in plugin: key transport `inline`, public keys travel (once) in the request itself."""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar

from sei_framework import InvalidRequest, KeyTransport, TransportRegistry, hookimpl

__all__ = ["InlineTransport", "sei_register_key_transports"]

FIELD = "public_keys"


class InlineTransport(KeyTransport):
    """The client sends its public keys base64-encoded with its first request; the service caches them."""

    name: ClassVar[str] = "inline"
    keys_in_requests: ClassVar[bool] = True
    service_may_configure: ClassVar[bool] = True  # the client side touches no credentials and no files

    def publish(self, key_id: str, public_keys: bytes) -> dict[str, Any]:
        return {FIELD: base64.b64encode(public_keys).decode("ascii")}

    def fetch(self, key_id: str, request: dict[str, Any]) -> bytes | None:
        encoded = request.get(FIELD)
        if encoded is None:
            return None
        if not isinstance(encoded, str):
            raise InvalidRequest(f"'{FIELD}' must be a base64 string", code="invalid_keys")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"'{FIELD}' is not valid base64", code="invalid_keys") from None


@hookimpl
def sei_register_key_transports(registry: TransportRegistry) -> None:
    registry.register(InlineTransport)
