"""Keyring sessions: each model's adapter client with the key pair it uses, and publishing its keys."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..base import AdapterClient, KeyTransport
from ..errors import InvalidRequest, KeyringError, KeyTransportError
from ..fingerprint import description_fingerprint
from ..keys import Keyring, key_id_for
from ..plugins import SeiPlugins

__all__ = ["ModelSession", "open_session", "publish_keys"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSession:
    """One model's adapter client, with the key pair it uses (its key id and public key bytes), and the
    fingerprint of the description it was made from (sent with every request: fingerprint.py)."""

    adapter: AdapterClient
    key_id: str
    public_keys: bytes
    fingerprint: str = ""


def open_session(
    name: str, models: dict[str, Any], plugins: SeiPlugins, keyring: Keyring, *, allow_unproven: bool = False
) -> ModelSession:
    """Model `name`'s adapter client (from the described `models`) with its scheme's key pair from
    `keyring`: made on first use, and checked to belong together."""
    if name not in models:
        raise InvalidRequest(f"unknown model {name!r}; the service has: {', '.join(sorted(models))}", code="unknown_model")
    description = models[name]
    adapter = plugins.model_adapters().get(description["adapter"])
    client = adapter.client(description)
    client.allow_unproven = allow_unproven
    scheme = client.key_scheme

    def generate() -> tuple[bytes, bytes]:
        log.info("generating keys for %s", scheme)
        return client.generate_keys()

    pair = keyring.load_or_create(scheme, generate)  # once, for every process and thread
    try:
        client.use_keys(*pair)  # raises if the secret key does not belong to the public key
    except Exception as exc:  # a damaged keyring, or keys an older plugin version wrote
        raise KeyringError(
            f"the stored {scheme} keys in {keyring.folder} cannot be used "
            f"({type(exc).__name__}: {exc}); move that scheme's folder "
            f"{keyring.folder_for(scheme)} away to make new keys"
        ) from None
    return ModelSession(client, key_id_for(pair[1]), pair[1], description_fingerprint(description))


def publish_keys(transport: KeyTransport, session: ModelSession) -> dict[str, Any]:
    """Make `session`'s public keys reachable for the service; the fields to add to the next request."""
    try:
        return transport.publish(session.key_id, session.public_keys)
    except KeyTransportError:
        raise
    except Exception as exc:
        raise KeyTransportError(f"publishing keys through {transport.name!r} failed: {exc}") from exc
