"""The client API: keys, key transport, encrypt, call, decrypt."""

from __future__ import annotations

import logging
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


@dataclass(frozen=True)
class _ModelSession:
    adapter: AdapterClient
    key_id: str
    public_keys: bytes


class Client:
    """Talks to one SEI service; the secret keys stay in the local keyring.

    >>> client = Client("http://127.0.0.1:8890/score")
    >>> client.predict("mnist", X).predictions
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        transport: KeyTransport | None = None,
        keyring: Keyring | None = None,
        plugins: SeiPlugins | None = None,
        timeout: float = 600.0,
    ) -> None:
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else Endpoint(endpoint)
        self.keyring = keyring or Keyring()
        self.timeout = timeout
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
        """POST one request; an error answer raises ServiceError with its code."""
        try:
            response = self._session.post(
                self.endpoint.scoring_uri, json=body, headers=self.endpoint.headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise ServiceError(f"cannot reach {self.endpoint.scoring_uri}: {exc}", code="unreachable", status=0) from None
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
            raise ServiceError(f"service answered {response.status_code} {code}: {message}", code=code, status=response.status_code)
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
            pair = self.keyring.load(client.key_scheme)
            if pair is None:
                log.info("generating keys for %s", client.key_scheme)
                pair = client.generate_keys()
                self.keyring.save(client.key_scheme, *pair)
            try:
                client.use_keys(*pair)
            except Exception as exc:  # a damaged keyring, or keys an older plugin version wrote
                raise KeyringError(
                    f"the stored {client.key_scheme} keys in {self.keyring.folder} cannot be used "
                    f"({type(exc).__name__}: {exc}); move that scheme's folder away to make new keys"
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
            if exc.code != "unknown_key_id" or published_now:
                raise
            self._publish(client)  # the service forgot our keys (restart, eviction): publish again
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
