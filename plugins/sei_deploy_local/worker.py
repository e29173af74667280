"""Runs in each gunicorn worker: SEI's middleware around azmlinfsrv's app, SEI's answer to malformed HTTP.

Imported by the worker after gevent has patched it (gunicorn.conf.py's post_worker_init hook).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import MethodType
from typing import Any

from sei_framework import CORS_ENV, Build, log_to_stderr

from .answers import REASONS, error_bytes
from .auth import BearerAuth, expected_header
from .cors import CorsErrors
from .guard import Guard
from .static import StaticPage

__all__ = ["setup"]

MB = 1024 * 1024
MALFORMED = "malformed HTTP request ({}); send POST /score with the JSON request as its body"
INTERNAL = "internal error; see the service log"


def setup(worker: Any, build: str, token_env: str | None, page: str | None = None) -> None:  # a gunicorn Worker
    """Wrap the app: the guard (limits, encoding, one error shape), auth when it is on, and CORS headers on
    SEI's own answers when origins are allowed (the variable azmlinfsrv itself reads); the page's files
    in front of auth (they hold no secret)."""
    log_to_stderr("sei_deploy_local")
    limits = Build.open(Path(build)).manifest["limits"]
    origins = [o for o in os.environ.get(CORS_ENV, "").split(",") if o]
    app: Guard | BearerAuth | StaticPage | CorsErrors = Guard(worker.wsgi, int(limits["max_request_mb"] * MB))
    if token_env:
        app = BearerAuth(app, expected_header(token_env), preflight_open=bool(origins))
    if page:
        app = StaticPage(app, Path(page))
    if origins:
        app = CorsErrors(app, origins)
    worker.wsgi = app
    worker.handle_error = MethodType(handle_error, worker)


def classify(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, message) for an exception gunicorn raised before the app saw the request."""
    from gunicorn.http import errors

    name = type(exc).__name__
    if isinstance(exc, (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName)):
        return 500, "internal_error", INTERNAL
    if isinstance(exc, errors.LimitRequestLine):
        return 414, "uri_too_long", "the request line is too long; send POST /score with the request as its body"
    if isinstance(exc, errors.LimitRequestHeaders):
        return 431, "headers_too_large", "too many or too large request headers"
    if isinstance(exc, errors.UnsupportedTransferCoding):
        return 501, "not_implemented", "unsupported Transfer-Encoding; send the body plain or chunked"
    if isinstance(exc, errors.ExpectationFailed):
        return 417, "expectation_failed", "only 'Expect: 100-continue' is supported"
    if isinstance(exc, errors.ParseException) or name == "SSLError":
        return 400, "bad_request", MALFORMED.format(name)
    return 500, "internal_error", INTERNAL


def handle_error(worker: Any, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
    """gunicorn's Worker.handle_error, answering in SEI's shape; its own answer and log line carry the
    raw request line, query string included."""
    status, code, message = classify(exc)
    if status >= 500:
        worker.log.exception("error handling a request (%s)", type(exc).__name__)
    else:
        worker.log.warning("request refused: %s (%s)", code, type(exc).__name__)
    body = error_bytes(code, message)
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'ERROR')}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    try:
        client.sendall(head.encode("latin-1") + body)
    except Exception:
        worker.log.debug("failed to send an error answer")
