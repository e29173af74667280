"""Cross-origin access to a service (CORS): which web pages' origins may call it from a browser.

azmlinfsrv allows the origins listed in its `AML_CORS_ORIGINS` variable (through flask-cors, which reads a
string with `*`, `?`, `[`, `(`, `$`, `^` or `\\` as a regular expression). SEI's targets accept exact
origins only, each as a browser sends it in the `Origin` header, so each is compared literally.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["CORS_ENV", "check_cors_origins", "cors_environment"]

CORS_ENV = "AML_CORS_ORIGINS"
"""azmlinfsrv's setting: a comma-separated list of allowed origins."""
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(value: str) -> str:
    """`value` as the browser writes it (scheme://host[:port], lower case, no default port), or ValueError."""
    hint = "give an exact origin such as https://app.example.com or http://127.0.0.1:8000"
    if value != value.strip() or not value or any(c in value for c in ",*\\ \t"):
        raise ValueError(f"{value!r} is not an origin (no wildcard, comma or space); {hint}")
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{value!r} is not an origin: the scheme must be http or https; {hint}")
    if parts.path or parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(f"{value!r} is not an origin: an origin has no path (not even a final '/'); {hint}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"an origin has no user name or password (the one given has); {hint}")  # never echoed
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} is not an origin: its port is not a number from 1 to 65535") from None
    host = (parts.hostname or "").lower()
    if not _valid_host(host):
        raise ValueError(f"{value!r} is not an origin: {host or 'the host'!r} is not a host name or IP address; {hint}")
    if ":" in host:  # flask-cors would read the brackets of [::1] as a regular expression
        raise ValueError(f"{value!r}: an IPv6 origin cannot be allowed exactly; serve the page under a host name")
    if port == 0:
        raise ValueError(f"{value!r} is not an origin: its port is not a number from 1 to 65535")
    suffix = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{suffix}"


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.split(".")
    return len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def check_cors_origins(origins: list[str], *, auth: bool) -> list[str]:
    """The origins in canonical form, duplicates dropped; ValueError naming a malformed one.

    `["*"]` (any web page) is accepted only for a service without auth: with auth, a page on any site
    could make a signed-in user's browser call the service.
    """
    if "*" in origins:
        if auth:
            raise ValueError(
                "cors_origins '*' lets every web site's pages call this service, and it requires auth: "
                "list the exact origins of your pages (https://app.example.com) instead"
            )
        if len(origins) > 1:
            raise ValueError("cors_origins '*' already allows every origin; give it alone or list exact origins")
        return ["*"]
    return list(dict.fromkeys(_origin(origin) for origin in origins))


def cors_environment(origins: list[str]) -> dict[str, str]:
    """The variable that makes azmlinfsrv answer these origins' requests ({} when none: CORS stays off)."""
    return {CORS_ENV: ",".join(origins)} if origins else {}
