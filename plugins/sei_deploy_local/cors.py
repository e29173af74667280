"""CORS on the answers SEI's middleware makes itself (refusals, 401): azmlinfsrv's flask-cors only sees the
answers of its own app, and a page cannot read an answer without the header, so it would see a bare
network failure instead of the error's message."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["CorsErrors", "is_preflight"]


def is_preflight(environ: dict[str, Any]) -> bool:
    """A browser's CORS preflight: OPTIONS with Origin and Access-Control-Request-Method (never a token)."""
    return (
        environ.get("REQUEST_METHOD") == "OPTIONS"
        and bool(environ.get("HTTP_ORIGIN"))
        and bool(environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"))
    )


class CorsErrors:
    """Adds `Access-Control-Allow-Origin` for an allowed origin to an answer that lacks it."""

    def __init__(self, app: Callable, origins: list[str]) -> None:
        self.app = app
        self.any = origins == ["*"]
        self.origins = {origin.lower() for origin in origins}

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        origin = environ.get("HTTP_ORIGIN", "")
        if not (self.any or origin.lower() in self.origins):
            return self.app(environ, start_response)
        allowed = "*" if self.any else origin

        def with_cors(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            if not any(name.lower() == "access-control-allow-origin" for name, _ in headers):
                headers = [*headers, ("Access-Control-Allow-Origin", allowed), ("Vary", "Origin")]
            return start_response(status, headers, exc_info)

        return self.app(environ, with_cors)
