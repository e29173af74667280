"""Built-in plugin: key transport `inline`, public keys travel (once) in the request itself."""

from __future__ import annotations

import base64
from typing import Any, ClassVar

from sei_framework import KeyTransport, TransportRegistry, decode_base64, hookimpl

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
        return decode_base64(encoded, f"'{FIELD}'", code="invalid_keys")


@hookimpl
def sei_register_key_transports(registry: TransportRegistry) -> None:
    registry.register(InlineTransport)
