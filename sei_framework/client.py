"""The client API: keys, key transport, encrypt, call, decrypt."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import requests

from .base import AdapterClient, Endpoint, KeyTransport, Prediction
from .errors import InvalidRequest, KeyringError, KeyTransportError, ServiceError
from .keys import Keyring, key_id_for
from .plugins import SeiPlugins, get_plugin_manager

__all__ = ["Client"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
"""Answers of a proxy or a service that is starting or overloaded: worth another try."""
_RETRY_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass(frozen=True)
class _ModelSession:
    adapter: AdapterClient
    key_id: str
    public_keys: bytes


class Client:
    """Talks to one SEI service; the secret keys stay in the local keyring.

    >>> client = Client("http://127.0.0.1:8890/score")
    >>> client.predict("mnist", X).predictions

    Requests are idempotent, so connection errors, timeouts and 502/503/504 answers are retried up
    to `retries` times, after a random wait of up to `backoff` * 2**attempt seconds (at most
    `max_backoff`; full jitter, so many clients do not retry in step).
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        transport: KeyTransport | None = None,
        keyring: Keyring | None = None,
        plugins: SeiPlugins | None = None,
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
    ) -> None:
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else Endpoint(endpoint)
        self.keyring = keyring or Keyring()
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._plugins = plugins
        self._transport = transport
        self._description: dict[str, Any] | None = None
        self._models: dict[str, _ModelSession] = {}
        self._pending: dict[str, dict[str, Any]] = {}  # key_id -> fields to send once
        self._session = requests.Session()

    @property
    def plugins(self) -> SeiPlugins:
        if self._plugins is None:
            self._plugins = get_plugin_manager()
        return self._plugins

    def call(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST one request, retrying what may pass on; an error answer raises ServiceError with its code."""
        uri = self.endpoint.scoring_uri
        attempts, attempt = self.retries + 1, 0
        while True:
            last = attempt == self.retries
            try:
                response = self._session.post(uri, json=body, headers=self.endpoint.headers, timeout=self.timeout)
            except _RETRY_ERRORS as exc:
                if not last:
                    self._wait(attempt, uri, type(exc).__name__)
                    attempt += 1
                    continue
                raise self._unreachable(exc, attempts) from None
            except requests.RequestException as exc:  # a bad URI and the like: retrying cannot help
                message = f"cannot reach {uri}: {type(exc).__name__}: {exc}"
                raise ServiceError(message, code="unreachable", status=0) from None
            if response.status_code in RETRY_STATUSES and not last:
                self._wait(attempt, uri, str(response.status_code), response.headers.get("Retry-After"))
                attempt += 1
                continue
            return self._answer(response, attempt + 1)

    def _wait(self, attempt: int, uri: str, what: str, retry_after: str | None = None) -> None:
        """Sleep before retry `attempt + 1`: full jitter under an exponential cap (or Retry-After)."""
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        if retry_after is not None and retry_after.strip().isdigit():
            delay = max(delay, min(self.max_backoff, float(retry_after)))
        log.info("%s from %s; retry %d of %d in %.2f s", what, uri, attempt + 1, self.retries, delay)
        time.sleep(delay)

    def _unreachable(self, exc: requests.RequestException, attempts: int) -> ServiceError:
        uri = self.endpoint.scoring_uri
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if _connection_refused(exc):
            message = (
                f"nothing answers at {uri} (connection refused, {tries}). If the service was redeployed "
                "it may have moved: a local deployment with `port: 0` gets a new port on each deploy, so "
                "use the scoring URI that `sei deploy CONFIG` prints (or the Endpoint `Deployment.deploy()` "
                "returns); otherwise check that the service is running"
            )
        else:
            message = f"cannot reach {uri} ({tries}): {type(exc).__name__}: {exc}"
        return ServiceError(message, code="unreachable", status=0)

    @staticmethod
    def _answer(response: requests.Response, attempts: int) -> dict[str, Any]:
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

    def describe(self) -> dict[str, Any]:
        """The service's models, adapters, encryption parameters and key transport (cached)."""
        if self._description is None:
            self._description = self.call({"op": "describe"})
        return self._description

    @property
    def transport(self) -> KeyTransport:
        if self._transport is None:
            spec = self.describe()["key_transport"]
            cls = self.plugins.key_transports().get(spec["name"])
            self._transport = cls(cls.Options.model_validate(spec["options"]))
        return self._transport

    def model(self, name: str) -> AdapterClient:
        """The adapter client for model `name`, with keys from the keyring (made on first use)."""
        return self._session_for(name).adapter

    def _session_for(self, name: str) -> _ModelSession:
        if name not in self._models:
            models = self.describe()["models"]
            if name not in models:
                raise InvalidRequest(f"unknown model {name!r}; the service has: {', '.join(sorted(models))}", code="unknown_model")
            description = models[name]
            adapter = self.plugins.model_adapters().get(description["adapter"])
            client = adapter.client(description)
            scheme = client.key_scheme

            def generate() -> tuple[bytes, bytes]:
                log.info("generating keys for %s", scheme)
                return client.generate_keys()

            pair = self.keyring.load_or_create(scheme, generate)  # once, for every process and thread
            try:
                client.use_keys(*pair)  # raises if the secret key does not belong to the public key
            except Exception as exc:  # a damaged keyring, or keys an older plugin version wrote
                raise KeyringError(
                    f"the stored {scheme} keys in {self.keyring.folder} cannot be used "
                    f"({type(exc).__name__}: {exc}); move that scheme's folder "
                    f"{self.keyring.folder_for(scheme)} away to make new keys"
                ) from None
            self._models[name] = _ModelSession(client, key_id_for(pair[1]), pair[1])
        return self._models[name]

    def _publish(self, client: _ModelSession) -> None:
        try:
            self._pending[client.key_id] = self.transport.publish(client.key_id, client.public_keys)
        except KeyTransportError:
            raise
        except Exception as exc:
            raise KeyTransportError(f"publishing keys through {self.transport.name!r} failed: {exc}") from exc

    def predict_encrypted(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Encrypt `rows`, score them on the service, return the decrypted scores."""
        client = self._session_for(name)
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        body = {"model": name, "key_id": client.key_id, "data": client.adapter.encrypt(rows)}
        published_now = False
        if client.key_id not in self._pending:
            self._publish(client)
            published_now = True
        try:
            answer = self.call({**body, **self._pending[client.key_id]})
        except ServiceError as exc:
            if exc.code not in ("unknown_key_id", "key_mismatch") or published_now:
                raise
            # the service forgot our keys (restart, eviction), or the published copy was replaced
            # (key_mismatch: what the transport holds under our key id is not our keys): publish again
            self._publish(client)
            answer = self.call({**body, **self._pending[client.key_id]})
        self._pending[client.key_id] = {}
        return client.adapter.decrypt(answer["result"], len(rows))

    def predict(
        self,
        name: str,
        X: Any,
        *,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Prediction:
        """Encrypted predictions for every row of X, sent in batches; `progress(n)` after each."""
        client = self.model(name)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        expected = self.describe()["models"][name].get("n_features")
        if expected is not None and X.shape[1] != expected:
            raise InvalidRequest(f"model {name!r} takes {expected} features; the input has {X.shape[1]}", code="wrong_features")
        limit = self.describe().get("limits", {}).get("max_rows_per_request", client.max_rows_per_request)
        size = max(1, min(batch_size or client.max_rows_per_request, limit))
        scores = []
        for start in range(0, len(X), size):
            batch = X[start : start + size]
            scores.append(self.predict_encrypted(name, batch))
            if progress is not None:
                progress(len(batch))
        return client.interpret(np.vstack(scores))


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
