"""POST with retries: idempotent requests, full-jitter backoff, no redirects, no ~/.netrc."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import requests

from ..base import Endpoint
from ..errors import ServiceError
from ..net import redact_credentials, redact_uri

__all__ = ["RETRY_STATUSES", "HttpCaller"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
"""Answers of a proxy or a service that is starting or overloaded: worth another try."""
_RETRY_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A session auth that adds nothing, so requests never adds ~/.netrc credentials on its own."""
    return request


class HttpCaller:
    """Sends one JSON body to an endpoint and returns the JSON answer, retrying what may pass on.

    Connection errors, timeouts and 502/503/504 answers are retried up to `retries` times, after a
    random wait of up to `backoff` * 2**attempt seconds (at most `max_backoff`; full jitter, so many
    clients do not retry in step). The URI is shown without its credentials in every message and log.
    """

    def __init__(self, *, timeout: float, retries: int, backoff: float, max_backoff: float) -> None:
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = requests.Session()
        self.session.auth = _no_netrc  # only the endpoint's own headers are credentials SEI sends

    def post(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body`; an error answer raises ServiceError with its code."""
        uri = endpoint.scoring_uri
        attempts, attempt = self.retries + 1, 0
        while True:
            last = attempt == self.retries
            try:
                response = self.session.post(
                    uri, json=body, headers=endpoint.headers, timeout=self.timeout, allow_redirects=False
                )  # a redirect could carry the headers elsewhere: it is an error answer instead
            except _RETRY_ERRORS as exc:
                if not last:
                    self._wait(attempt, uri, type(exc).__name__)
                    attempt += 1
                    continue
                raise _unreachable(uri, exc, attempts) from None
            except requests.RequestException as exc:  # a bad URI and the like: retrying cannot help
                message = f"cannot reach {redact_uri(uri)}: {type(exc).__name__}: {redact_credentials(str(exc), uri)}"
                raise ServiceError(message, code="unreachable", status=0) from None
            if response.status_code in RETRY_STATUSES and not last:
                self._wait(attempt, uri, str(response.status_code), response.headers.get("Retry-After"))
                attempt += 1
                continue
            return _answer(response, attempt + 1)

    def _wait(self, attempt: int, uri: str, what: str, retry_after: str | None = None) -> None:
        """Sleep before retry `attempt + 1`: full jitter under an exponential cap (or Retry-After)."""
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        if retry_after is not None and retry_after.strip().isdigit():
            delay = max(delay, min(self.max_backoff, float(retry_after)))
        log.info("%s from %s; retry %d of %d in %.2f s", what, redact_uri(uri), attempt + 1, self.retries, delay)
        time.sleep(delay)


def _unreachable(uri: str, exc: requests.RequestException, attempts: int) -> ServiceError:
    shown = redact_uri(uri)
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if _connection_refused(exc):
        message = (
            f"nothing answers at {shown} (connection refused, {tries}). If the service was redeployed "
            "it may have moved: a local deployment with `port: 0` gets a new port on each deploy, so "
            "use the scoring URI that `sei deploy CONFIG` prints (or the Endpoint `Deployment.deploy()` "
            "returns); otherwise check that the service is running"
        )
    else:
        message = f"cannot reach {shown} ({tries}): {type(exc).__name__}: {redact_credentials(str(exc), uri)}"
    return ServiceError(message, code="unreachable", status=0)


def _answer(response: requests.Response, attempts: int) -> dict[str, Any]:
    if response.is_redirect or 300 <= response.status_code < 400:
        status, location = response.status_code, response.headers.get("Location", "")
        raise ServiceError(
            f"service answered {status}, a redirect to {redact_uri(location[:200])!r}; the client follows no "
            "redirects (they could carry its headers to another host): use the scoring URI it points to, if you "
            "trust it",
            code="redirect",
            status=status,
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200 or not isinstance(answer, dict) or "error" in answer:
        error = (answer or {}).get("error") if isinstance(answer, dict) else None
        if isinstance(error, dict):
            code, message = error.get("code", "error"), error.get("message", "")
        else:
            code, message = "http_error", response.text[:200]
        after = f" (after {attempts} attempts)" if attempts > 1 else ""
        status = response.status_code
        raise ServiceError(f"service answered {status} {code}: {message}{after}", code=code, status=status)
    return answer


def _connection_refused(exc: BaseException) -> bool:
    """Whether a requests error comes from a refused connection (nothing listens on that port)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConnectionRefusedError):
            return True
        todo.extend((item.__cause__, item.__context__, getattr(item, "reason", None), *item.args))
    return False
