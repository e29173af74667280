"""Endpoint policy: which endpoints may receive the client's credentials, and headers fit to send."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from urllib3.util import parse_url

from ..base import Endpoint
from ..errors import InvalidRequest, SeiError
from ..net import is_loopback_host

__all__ = ["EndpointPolicy", "check_headers"]

log = logging.getLogger(__name__)

_HEADER_NAME = re.compile(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
"""An HTTP field name (RFC 9110 token)."""
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|\A\s|\s\Z")
"""Control characters (but tab), or white space at either end: what HTTP libraries refuse or mangle."""


def check_headers(headers: dict[str, str]) -> None:
    """Refuse a header that HTTP cannot carry as given, naming the header and never showing its value.

    Header values travel as latin-1 bytes: a token with other characters would be replaced by `?`s
    (or fail deep in the HTTP library, whose message shows the value)."""
    given: list[tuple[object, object]] = list(headers.items())  # checked, not trusted to the annotation
    for name, value in given:
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidRequest(f"the endpoint's header name {name!r} is not a valid HTTP field name", code="invalid_header")
        what = "bearer token" if name.lower() == "authorization" else "value"
        if not isinstance(value, str):
            raise InvalidRequest(f"the endpoint's {name} header {what} must be a string", code="invalid_header")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequest(
                f"the endpoint's {name} header {what} has characters outside latin-1, which HTTP headers cannot "
                "carry (they would be sent as '?'); use the ASCII form of the token",
                code="invalid_header",
            ) from None
        if _BAD_VALUE.search(value):
            raise InvalidRequest(
                f"the endpoint's {name} header {what} has control characters or white space at an end",
                code="invalid_header",
            )


class EndpointPolicy:
    """The endpoint's headers and URI credentials go over https, or over plain http to loopback only,
    unless `allow_insecure_http` (then with a warning, once per URI)."""

    def __init__(self, *, allow_insecure_http: bool = False) -> None:
        self.allow_insecure_http = allow_insecure_http
        self._warned: str | None = None

    def check(self, endpoint: Endpoint) -> None:
        """Raise before anything is sent if `endpoint` would expose its credentials."""
        check_headers(endpoint.headers)
        uri = endpoint.scoring_uri
        try:
            parts, host = urlsplit(uri), parse_url(uri).host
            hosts = {parts.hostname, host}  # both parsers must agree that the host is loopback
            userinfo = parts.username is not None or parts.password is not None
        except ValueError:  # urllib3's LocationParseError is a ValueError
            hosts, userinfo, parts = {None}, False, None
        if not endpoint.headers and not userinfo:
            return
        if parts is not None and parts.scheme == "https":
            return
        if all(is_loopback_host(h) for h in hosts):
            return
        names = sorted(endpoint.headers)
        if any(name.lower() == "authorization" for name in names):
            what = "Authorization header (a bearer token or service key)"
        elif names:
            what = f"header{'s' if len(names) > 1 else ''} {', '.join(names)}"
        else:
            what = "user name and password in the URI"
        shown = (parts.hostname if parts is not None else None) or "an unparsable host"
        if self.allow_insecure_http:
            if self._warned != uri:
                log.warning("sending the endpoint's %s to %s over plain http (allow_insecure_http)", what, shown)
                self._warned = uri
            return
        raise SeiError(
            f"refusing to send the endpoint's {what} to {shown} over plain http, where anyone on the way can "
            "read and reuse it; use the service's https URI (docs/azure.md says which deploy targets serve "
            "TLS), or, on a network you trust, allow it: `sei predict --allow-insecure-http` or "
            "Client(..., allow_insecure_http=True)",
            code="insecure_http",
        )
