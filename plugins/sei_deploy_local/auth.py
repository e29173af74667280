"""Bearer-token WSGI middleware: azmlinfsrv hands run() only the body, so the token is checked in front of it."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable
from typing import Any

from .answers import error_answer
from .cors import is_preflight

__all__ = ["BearerAuth", "expected_header"]

MESSAGE = "missing or wrong Authorization bearer token"


def expected_header(token_env: str) -> bytes:
    """The Authorization header clients must send, from the environment; empty (refuse all) when unset."""
    token = os.environ.get(token_env, "")
    return ("Bearer " + token).encode("latin-1", "replace") if token else b""


class BearerAuth:
    """Refuses every request but the `/` health probe (and, with CORS on, a browser's preflight, which never
    carries a token and has no body) without the right token, before its body is read."""

    def __init__(self, app: Callable, expected: bytes, *, preflight_open: bool = False) -> None:
        self.app = app
        self.expected = expected
        self.preflight_open = preflight_open

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self.app(environ, start_response)  # the health probe stays open
        if self.preflight_open and is_preflight(environ):
            return self.app(environ, start_response)  # azmlinfsrv answers it: 200, CORS headers if allowed
        given = environ.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace")
        if self.expected and hmac.compare_digest(given, self.expected):
            return self.app(environ, start_response)
        return error_answer(start_response, 401, "unauthorized", MESSAGE, headers=[("WWW-Authenticate", "Bearer")])
