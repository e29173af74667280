"""Hosts and URIs: which traffic stays on this machine, and URIs fit to show (no credentials)."""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote

__all__ = ["is_loopback_host", "redact_uri", "redact_credentials"]

REDACTED = "***"


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1 (also IPv4-mapped, also in brackets): traffic that
    stays on this machine. Names that merely resolve there (`localhost.`, other host names) do not count."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _userinfo(uri: str) -> tuple[str, int, int] | None:
    """The `user:password` part of `uri`'s authority and where it stands, or None (as urllib splits it:
    the authority ends at the first / ? or #, and the user part at its last @)."""
    _, sep, _ = uri.partition("://")
    start = uri.index("://") + 3 if sep else 0
    end = len(uri)
    for mark in "/?#":
        found = uri.find(mark, start)
        if found != -1:
            end = min(end, found)
    at = uri.rfind("@", start, end)
    return (uri[start:at], start, at) if at != -1 else None


def redact_uri(uri: str) -> str:
    """`uri` fit for messages and logs: a user name and password in it (`https://user:pass@host`)
    become `***`; anything else is kept."""
    found = _userinfo(uri)
    if found is None:
        return uri
    _, start, at = found
    return uri[:start] + REDACTED + uri[at:]


def redact_credentials(text: str, uri: str) -> str:
    """`text` (an error message from an HTTP library, say) with `uri`'s credentials removed wherever they
    appear in it, whole, as user name or password, raw or percent-decoded."""
    found = _userinfo(uri)
    if found is None:
        return text
    userinfo = found[0]
    user, _, password = userinfo.partition(":")
    secrets = {userinfo, unquote(userinfo), user, unquote(user), password, unquote(password)}
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
