"""WSGI middleware in front of azmlinfsrv's app: bounded bodies, UTF-8 JSON, no query strings, one error shape.

azmlinfsrv reads a whole body into memory before score.py's run() sees it, so `limits.max_request_mb`
is enforced here, on Content-Length or on the bytes read of a chunked body, before more is read. A gevent
worker serves many requests at once, so the bodies it holds together are bounded too (a budget of a few
bodies at the limit), and a body must arrive in time, so a slow sender cannot hold that budget for long.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .answers import error_answer, refuse

__all__ = ["Guard"]

READ_CHUNK = 1 << 16
BUDGET_BODIES = 4
"""A worker holds at most this many bodies at the limit at once (more smaller ones): the bytes received
count, not the Content-Length announced; a request that would go over gets 503 (busy)."""
BODY_IDLE_S = 10.0
BODY_TIMEOUT_S = 120.0
"""A body must keep arriving (no pause over BODY_IDLE_S) and be complete within BODY_TIMEOUT_S."""
_SWAGGER_QUERY = re.compile(r"version=\d{1,2}")
_DROPPED_HEADERS = {"content-type", "content-length"}


def drop_query(environ: dict[str, Any]) -> None:
    """Forget the query string, so no token or other secret in a URL reaches a log line.

    SEI's protocol has no query parameters; azmlinfsrv's own `/swagger.json?version=N` keeps its one.
    """
    kept = ""
    if environ.get("PATH_INFO") == "/swagger.json":
        kept = "&".join(p for p in environ.get("QUERY_STRING", "").split("&") if _SWAGGER_QUERY.fullmatch(p))
    environ["QUERY_STRING"] = kept
    for key in ("RAW_URI", "REQUEST_URI"):
        if key in environ:
            path = environ[key].split("?", 1)[0]
            environ[key] = f"{path}?{kept}" if kept else path


class Guard:
    """Admits a request to the app only when its body is within the limit and is UTF-8; shapes every error."""

    def __init__(self, app: Callable, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.budget = BodyBudget(BUDGET_BODIES * (max_request_bytes + 1))

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        drop_query(environ)
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        if path == "/score" and method == "GET":
            return refuse(
                start_response, 405, "method_not_allowed",
                "GET /score takes no request; send POST /score with the JSON request as its body",
                headers=[("Allow", "POST")],
            )  # fmt: skip
        scoring = path == "/score" and method == "POST"
        if scoring:
            media = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
            if media.startswith("multipart/"):
                return refuse(
                    start_response, 415, "unsupported_media_type",
                    "send the JSON request itself as the body with Content-Type: application/json "
                    "(curl --data-binary @request.json), not as a multipart form",
                )  # fmt: skip
            # A form content type (curl -d's default) would make the app parse the body as a form.
            environ["CONTENT_TYPE"] = "application/json"
        if not (_has_body(environ) or scoring):
            return self._shaped(environ, start_response)
        return self._with_body(environ, start_response, scoring)

    def _with_body(self, environ: dict[str, Any], start_response: Callable, scoring: bool) -> Iterable[bytes]:
        """Refuse on Content-Length, read the body within the limit, budget and time, then call the app."""
        limit = self.max_request_bytes
        length = _content_length(environ)
        if length is not None and length > limit:
            return refuse(
                start_response, 413, "request_too_large",
                f"request body is {length} bytes; this service accepts at most {limit} (limits.max_request_mb)",
            )  # fmt: skip
        held = 0  # bytes of this body in memory, counted against the worker's budget
        try:
            try:
                body = _read(environ, limit + 1 if length is None else length, self.budget)
            except TimeoutError:
                return refuse(
                    start_response, 408, "request_timeout",
                    f"the request body stalled for {BODY_IDLE_S:g} s or took over {BODY_TIMEOUT_S:g} s to arrive",
                )  # fmt: skip
            except _OverBudget:
                return refuse(
                    start_response, 503, "busy",
                    "this worker is receiving too many large requests at once; retry shortly",
                    headers=[("Retry-After", "1")],
                )  # fmt: skip
            held = body.tell()
            refusal = self._check_body(environ, start_response, scoring, body)
            if refusal is not None:
                return refusal
            result = self._shaped(environ, start_response)
            kept, held = held, 0
        finally:
            self.budget.give(held)
        return _Releasing(result, lambda: self.budget.give(kept))

    def _check_body(
        self, environ: dict[str, Any], start_response: Callable, scoring: bool, body: io.BytesIO
    ) -> list[bytes] | None:
        """Refuse a body over the limit, empty (to score) or not UTF-8; or hand it to the app."""
        limit = self.max_request_bytes
        size = body.tell()
        if size > limit:
            return refuse(
                start_response, 413, "request_too_large",
                f"request body is over {limit} bytes; this service accepts at most {limit} (limits.max_request_mb)",
            )  # fmt: skip
        if scoring and size == 0:
            return refuse(
                start_response, 400, "invalid_json",
                "request body is empty; send the JSON request as the body with Content-Type: application/json",
            )  # fmt: skip
        with body.getbuffer() as view:
            try:
                str(view, "utf-8")
            except UnicodeDecodeError as exc:
                return refuse(
                    start_response, 400, "invalid_encoding",
                    f"request body must be UTF-8 JSON; byte {exc.start} is not valid UTF-8",
                )  # fmt: skip
        body.seek(0)
        environ["wsgi.input"] = body
        environ["wsgi.input_terminated"] = True
        environ["CONTENT_LENGTH"] = str(size)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return None

    def _shaped(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        """The app's answer; an error answer not in SEI's shape (azmlinfsrv's, Flask's) is rewritten."""
        state: dict[str, Any] = {"passthrough": False, "error": None}
        written: list[bytes] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            if state["passthrough"] or int(status.split(None, 1)[0]) < 400:
                return start_response(status, headers, exc_info)
            state["error"] = (status, headers)
            return written.append

        result = self.app(environ, capture)
        if state["error"] is None:  # a success, or an app that starts its response lazily
            state["passthrough"] = True
            return result
        try:
            body = b"".join([*written, *result])
        finally:
            if hasattr(result, "close"):
                result.close()
        status, headers = state["error"]
        if _is_sei_error(body):
            start_response(status, headers)
            return [body]
        code = int(status.split(None, 1)[0])
        kept = [(k, v) for k, v in headers if k.lower() not in _DROPPED_HEADERS]
        return error_answer(start_response, code, *_describe(code, environ, _message_of(body)), headers=kept)


class BodyBudget:
    """Bytes of request bodies a worker holds at once (azmlinfsrv's copies of them come on top)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.used + size > self.total:
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size


class _Releasing:
    """The app's answer; `release` runs once when the server closes it (the request is over)."""

    def __init__(self, result: Iterable[bytes], release: Callable[[], None]) -> None:
        self.result = result
        self.release = release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.result)

    def close(self) -> None:
        try:
            if hasattr(self.result, "close"):
                self.result.close()
        finally:
            release, self.release = self.release, lambda: None
            release()


class _OverBudget(Exception):
    pass


def _read(environ: dict[str, Any], want: int, budget: BodyBudget) -> io.BytesIO:
    """Up to `want` bytes of the body, each chunk taken from `budget` (given back here on any failure).

    Raises TimeoutError when the body stalls or takes too long, _OverBudget when the worker holds too much.
    """
    body = io.BytesIO()
    stream = environ["wsgi.input"]
    sock = environ.get("gunicorn.socket")
    prior = sock.gettimeout() if sock is not None else None
    deadline = time.monotonic() + BODY_TIMEOUT_S
    try:
        while body.tell() < want:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if sock is not None:
                sock.settimeout(min(BODY_IDLE_S, remaining))
            chunk = stream.read(min(READ_CHUNK, want - body.tell()))
            if not chunk:
                break
            if not budget.take(len(chunk)):
                raise _OverBudget
            body.write(chunk)
    except BaseException:
        budget.give(body.tell())
        raise
    finally:
        if sock is not None:
            try:
                sock.settimeout(prior)
            except OSError:
                pass
    return body


def _has_body(environ: dict[str, Any]) -> bool:
    return _content_length(environ) not in (None, 0) or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def _content_length(environ: dict[str, Any]) -> int | None:
    value = environ.get("CONTENT_LENGTH") or ""
    return int(value) if value.isdigit() else None  # gunicorn has refused any other value


def _is_sei_error(body: bytes) -> bool:
    try:
        error = json.loads(body)["error"]
    except (ValueError, TypeError, KeyError):
        return False
    return isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str)


def _message_of(body: bytes) -> str | None:
    """azmlinfsrv's own error body is `{"message": ...}` with a fixed sentence; nothing else is trusted."""
    try:
        message = json.loads(body)["message"]
    except (ValueError, TypeError, KeyError):
        return None
    return message if isinstance(message, str) else None


def _describe(status: int, environ: dict[str, Any], message: str | None) -> tuple[str, str]:
    """The code and message of an error answer that azmlinfsrv or Flask made."""
    if status == 404:
        return "not_found", "no such path; this service answers POST /score (and GET / as its health probe)"
    if status == 405:
        method = environ.get("REQUEST_METHOD", "")
        return "method_not_allowed", f"{method} is not allowed here; send POST /score (GET / is the health probe)"
    if status == 431:
        return "headers_too_large", message or "request headers too large"
    if status == 415:
        return "unsupported_media_type", message or "send the request with Content-Type: application/json"
    if status >= 500:
        return "internal_error", message or "internal error; see the service log"
    return "bad_request", message or "bad request"
