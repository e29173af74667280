"""SEI's error answer, `{"error": {"code", "message"}}`, for the parts of the local server outside run()."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["error_answer", "error_bytes", "refuse"]

log = logging.getLogger("sei_deploy_local")

REASONS = {
    400: "BAD REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT FOUND",
    405: "METHOD NOT ALLOWED",
    413: "CONTENT TOO LARGE",
    414: "URI TOO LONG",
    415: "UNSUPPORTED MEDIA TYPE",
    417: "EXPECTATION FAILED",
    431: "REQUEST HEADER FIELDS TOO LARGE",
    500: "INTERNAL SERVER ERROR",
    501: "NOT IMPLEMENTED",
}


def error_bytes(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_answer(
    start_response: Callable, status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    """Start a JSON error response and return its body (a WSGI iterable)."""
    body = error_bytes(code, message)
    start_response(
        f"{status} {REASONS.get(status, 'ERROR')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers],
    )
    return [body]


def refuse(start_response: Callable, status: int, code: str, message: str, **kwargs: Any) -> list[bytes]:
    """As error_answer, and a `request refused` line in the service log (as serving.py writes)."""
    log.info("request refused: %s (%s)", code, message)
    return error_answer(start_response, status, code, message, **kwargs)
