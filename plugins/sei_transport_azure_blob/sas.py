"""Short-lived read-only SAS URLs: made by the client for its key blob, checked by the service.

The service downloads a SAS URL only after checking that it points at its own account,
container and the request's key id, grants read only, and expires soon, so a request can
neither send the service to another host (SSRF) nor hand it a long-lived token.
"""

from __future__ import annotations

from datetime import datetime, timedelta, UTC
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sei_framework import InvalidRequest, KeyTransportError

from .options import AzureBlobOptions
from .storage import sdk

__all__ = ["FIELD", "make_sas_url", "check_sas_url"]

FIELD = "key_sas_url"
CLOCK_SKEW = timedelta(minutes=5)
MAX_URL = 4096


def make_sas_url(service: Any, blob_client: Any, minutes: int, *, now: datetime | None = None) -> str:
    """A read-only SAS URL for one blob, valid `minutes` from `now` (negative: already expired)."""
    blob = sdk()
    now = now or datetime.now(UTC)
    start, expiry = now - CLOCK_SKEW, now + timedelta(minutes=minutes)
    https = blob_client.url.startswith("https://")
    common = {
        "account_name": blob_client.account_name,
        "container_name": blob_client.container_name,
        "blob_name": blob_client.blob_name,
        "permission": blob.BlobSasPermissions(read=True),
        "start": start,
        "expiry": expiry,
        "protocol": "https" if https else None,
    }
    account_key = getattr(service.credential, "account_key", None)
    if account_key:
        token = blob.generate_blob_sas(account_key=account_key, **common)
    else:  # an Azure identity: sign with a user delegation key instead of the account key
        try:
            delegation = service.get_user_delegation_key(start, expiry)
        except Exception as exc:
            raise KeyTransportError(
                f"cannot get a user delegation key from {blob_client.primary_hostname} to sign a SAS: "
                f"{type(exc).__name__}"
            ) from None
        token = blob.generate_blob_sas(user_delegation_key=delegation, **common)
    return f"{blob_client.url}?{token}"


def _refuse(message: str, code: str = "invalid_key_sas_url") -> InvalidRequest:
    return InvalidRequest(message, code=code)


def _parse_time(value: str) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise _refuse("key_sas_url has an unreadable expiry time (se)")


def check_sas_url(url: object, options: AzureBlobOptions, key_id: str, *, now: datetime | None = None) -> str:
    """Return `url` if it is a short-lived read-only SAS URL of this service's blob for `key_id`.

    Messages name what is wrong, never the token.
    """
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise _refuse(f"{FIELD} must be a URL string of at most {MAX_URL} characters")
    assert options.account_url is not None  # mode "sas" requires it
    parts, own = urlsplit(url), urlsplit(options.account_url)
    if parts.username or parts.password or parts.fragment:
        raise _refuse(f"{FIELD} must not carry user info or a fragment")
    if parts.scheme != own.scheme or (parts.netloc or "").lower() != own.netloc.lower():
        raise _refuse(f"{FIELD} must point at this service's storage account {options.account_url}")
    prefix = own.path.rstrip("/") + "/"
    if not parts.path.startswith(prefix):
        raise _refuse(f"{FIELD} must point at this service's storage account {options.account_url}")
    container, _, blob_name = parts.path[len(prefix) :].partition("/")
    if container != options.container:
        raise _refuse(
            f"{FIELD} names container {container!r}; this service reads keys from container {options.container!r}",
            code="wrong_container",
        )
    if blob_name != key_id:
        raise _refuse(f"{FIELD} names blob {blob_name!r}, not the request's key id {key_id}")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise _refuse(f"{FIELD} has a malformed query string") from None
    if any(len(values) != 1 for values in query.values()):
        raise _refuse(f"{FIELD} repeats a query parameter")
    if "sig" not in query or "se" not in query:
        raise _refuse(f"{FIELD} carries no SAS token (sig and se)")
    if query.get("sp") != ["r"]:
        raise _refuse(f"{FIELD} must grant read permission only (sp=r)")
    if query.get("sr", ["b"]) != ["b"]:
        raise _refuse(f"{FIELD} must be a SAS for one blob (sr=b)")
    now = now or datetime.now(UTC)
    expiry = _parse_time(query["se"][0])
    if expiry <= now:
        raise _refuse(f"{FIELD} expired at {query['se'][0]}; publish the keys again", code="key_sas_expired")
    if expiry - now > timedelta(minutes=options.sas_expiry_minutes) + CLOCK_SKEW:
        raise _refuse(
            f"{FIELD} is valid until {query['se'][0]}; this service accepts SAS URLs valid for at most "
            f"{options.sas_expiry_minutes} minutes",
            code="key_sas_too_long",
        )
    return url
