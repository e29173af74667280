"""Trust in key transports: the user's own, or the service's only where that is safe or allowed."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

from ..base import KeyTransport
from ..errors import KeyTransportError
from ..plugins import SeiPlugins
from ..validation import field_path

__all__ = ["check_transport", "described_transport", "transport_from_service"]

log = logging.getLogger(__name__)


def described_transport(description: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The key transport's name and options as a describe answer gives them, or None."""
    spec = description.get("key_transport")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return None
    options = spec.get("options", {})
    return spec["name"], options if isinstance(options, dict) else {}


def transport_from_service(description: dict[str, Any], plugins: SeiPlugins, shown_uri: str, *, trusted: bool) -> KeyTransport:
    """The transport the service describes, if its class lets a service configure it or the user `trusted` it.

    A transport that uses the client's credentials or files (`azure-blob`, `local-dir`) never takes its
    destination from the service by default: a spoofed service could collect the token or direct the writes.
    """
    described = described_transport(description)
    if described is None:
        raise KeyTransportError(f"the service at {shown_uri} does not say how it takes public keys (no key_transport)")
    name, options = described
    cls = plugins.key_transports().get(name)
    if not (cls.service_may_configure or trusted):
        shown = json.dumps(options, sort_keys=True, default=str)
        shown = shown if len(shown) <= 300 else shown[:300] + "..."
        raise KeyTransportError(
            f"the service at {shown_uri} takes public keys through the {name!r} key transport with options {shown}; "
            f"this client does not let a service choose where {name!r} sends its credentials or writes its "
            "files. Configure the transport yourself: `sei predict --config CONFIG` (your deployment config's "
            "key_transport), Deployment.from_file(CONFIG).client(endpoint) or Client(endpoint, transport=...); "
            "or, if you trust this service and the way to it, `sei predict --trust-service-transport` "
            "(Client(..., trust_service_transport=True))",
            code="untrusted_key_transport",
        )
    try:
        validated = cls.Options.model_validate(options)
    except ValidationError as exc:
        fields = ", ".join(sorted({field_path(e["loc"]) for e in exc.errors()}))
        raise KeyTransportError(f"the service at {shown_uri} describes invalid {name!r} options ({fields})") from None
    if not cls.service_may_configure:
        log.warning("using the %r key transport as the service at %s describes it (trusted)", name, shown_uri)
    return cls(validated)


def check_transport(transport: KeyTransport, description: dict[str, Any], shown_uri: str) -> None:
    """Refuse a transport other than the one the service names (it cannot work); warn when options differ."""
    described = described_transport(description)
    if described is None:
        return
    name, options = described
    if name != transport.name:
        raise KeyTransportError(
            f"the service at {shown_uri} takes public keys through {name!r}; this "
            f"client's key transport is {transport.name!r} (a config for another service?)",
            code="key_transport_mismatch",
        )
    mine = transport.client_options()
    differ = sorted(k for k in set(mine) | set(options) if mine.get(k) != options.get(k))
    if differ:
        log.warning(
            "the %r options %s differ from what the service at %s describes; fine if both name the "
            "same place, else the service will not find the keys",
            name,
            ", ".join(map(repr, differ)),
            shown_uri,
        )
