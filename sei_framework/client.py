"""The client API: keys, key transport, encrypt, call, decrypt."""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
from pydantic import ValidationError
from urllib3.util import parse_url

from .base import AdapterClient, Endpoint, KeyTransport, Prediction
from .errors import InvalidRequest, KeyringError, KeyTransportError, SeiError, ServiceError
from .keys import Keyring, key_id_for
from .plugins import SeiPlugins, get_plugin_manager

__all__ = ["Client", "ModelSession", "is_loopback_host"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
"""Answers of a proxy or a service that is starting or overloaded: worth another try."""
_RETRY_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass(frozen=True)
class ModelSession:
    """One model's adapter client, with the key pair it uses: its key id and public key bytes."""

    adapter: AdapterClient
    key_id: str
    public_keys: bytes


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1 (also IPv4-mapped): traffic that stays on this machine."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A session auth that adds nothing, so requests never adds ~/.netrc credentials on its own."""
    return request


class Client:
    """Talks to one SEI service; the secret keys stay in the local keyring.

    >>> client = Client("http://127.0.0.1:8890/score")                     # an `inline` service
    >>> client = Deployment.from_file("my-config.yaml").client(endpoint)   # any key transport
    >>> client.predict("mnist", X).predictions

    Key transport: the one passed as `transport`; else the one the service describes, only if
    that transport allows it (`inline`) or `trust_service_transport` is set. A transport that uses
    the client's credentials or files (`azure-blob`, `local-dir`) never takes its destination
    from the service by default: a spoofed service could collect the token or direct the writes.

    A model whose description states no proven accuracy (an older or hand-made build) is refused
    (`unproven_model`): its rows and scores could not be checked. `allow_unproven` serves it anyway.

    The endpoint's headers (a bearer token, a service key) go over plain http only to a loopback
    address unless `allow_insecure_http`; redirects are never followed.

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
        trust_service_transport: bool = False,
        allow_insecure_http: bool = False,
        description: dict[str, Any] | None = None,
        allow_unproven: bool = False,
    ) -> None:
        self.allow_unproven = allow_unproven  # AdapterClient.allow_unproven: serve a model with no proven accuracy
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else Endpoint(endpoint)
        self.trust_service_transport = trust_service_transport
        self.allow_insecure_http = allow_insecure_http
        self._warned_insecure: str | None = None
        self._check_endpoint()  # before anything is sent
        self.keyring = keyring or Keyring()
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._plugins = plugins
        self._transport = transport
        self._description = description  # a describe answer handed over (batch jobs): no service call
        self._models: dict[str, ModelSession] = {}
        self._pending: dict[str, dict[str, Any]] = {}  # key_id -> fields to send once
        self._transport_checked = False
        self._session = requests.Session()
        self._session.auth = _no_netrc  # only the endpoint's own headers are credentials SEI sends

    @classmethod
    def offline(cls, description: dict[str, Any], **kwargs: Any) -> Client:
        """A client without a service: encrypts and decrypts for the models of `description` (a service's
        `describe` answer, as a batch job carries it) with keys from the keyring; it sends nothing."""
        return cls(Endpoint(""), description=description, **kwargs)

    @property
    def plugins(self) -> SeiPlugins:
        if self._plugins is None:
            self._plugins = get_plugin_manager()
        return self._plugins

    def call(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST one request, retrying what may pass on; an error answer raises ServiceError with its code."""
        self._check_endpoint()  # the endpoint may have been replaced since
        uri = self.endpoint.scoring_uri
        if not uri:
            raise SeiError("this client has no service endpoint (Client.offline): it encrypts and decrypts only")
        attempts, attempt = self.retries + 1, 0
        while True:
            last = attempt == self.retries
            try:
                response = self._session.post(
                    uri, json=body, headers=self.endpoint.headers, timeout=self.timeout, allow_redirects=False
                )  # a redirect could carry the headers elsewhere: it is an error answer instead
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

    def _check_endpoint(self) -> None:
        """Refuse to send the endpoint's headers or URL credentials over plain http beyond loopback."""
        uri = self.endpoint.scoring_uri
        try:
            parts, host = urlsplit(uri), parse_url(uri).host
            hosts = {parts.hostname, host}  # both parsers must agree that the host is loopback
            userinfo = parts.username is not None or parts.password is not None
        except ValueError:  # urllib3's LocationParseError is a ValueError
            hosts, userinfo, parts = {None}, False, None
        if not self.endpoint.headers and not userinfo:
            return
        if parts is not None and parts.scheme == "https":
            return
        if all(is_loopback_host(h) for h in hosts):
            return
        names = sorted(self.endpoint.headers)
        if any(name.lower() == "authorization" for name in names):
            what = "Authorization header (a bearer token or service key)"
        elif names:
            what = f"header{'s' if len(names) > 1 else ''} {', '.join(names)}"
        else:
            what = "user name and password in the URI"
        shown = (parts.hostname if parts is not None else None) or "an unparsable host"
        if self.allow_insecure_http:
            if self._warned_insecure != uri:
                log.warning("sending the endpoint's %s to %s over plain http (allow_insecure_http)", what, shown)
                self._warned_insecure = uri
            return
        raise SeiError(
            f"refusing to send the endpoint's {what} to {shown} over plain http, where anyone on the way can "
            "read and reuse it; use the service's https URI (docs/azure.md says which deploy targets serve "
            "TLS), or, on a network you trust, allow it: `sei predict --allow-insecure-http` or "
            "Client(..., allow_insecure_http=True)",
            code="insecure_http",
        )

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
        if response.is_redirect or 300 <= response.status_code < 400:
            status, location = response.status_code, response.headers.get("Location", "")
            raise ServiceError(
                f"service answered {status}, a redirect to {location[:200]!r}; the client follows no redirects "
                "(they could carry its headers to another host): use the scoring URI it points to, if you trust it",
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

    def describe(self) -> dict[str, Any]:
        """The service's models, adapters, encryption parameters and key transport (cached)."""
        if self._description is None:
            self._description = self.call({"op": "describe"})
        return self._description

    @property
    def transport(self) -> KeyTransport:
        """The key transport passed in; else the service's, if its class or the user allows that."""
        if self._transport is None:
            self._transport = self._transport_from_service()
        return self._transport

    def _described_transport(self) -> tuple[str, dict[str, Any]] | None:
        spec = self.describe().get("key_transport")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            return None
        options = spec.get("options", {})
        return spec["name"], options if isinstance(options, dict) else {}

    def _transport_from_service(self) -> KeyTransport:
        uri = self.endpoint.scoring_uri
        described = self._described_transport()
        if described is None:
            raise KeyTransportError(f"the service at {uri} does not say how it takes public keys (no key_transport)")
        name, options = described
        cls = self.plugins.key_transports().get(name)
        if not (cls.service_may_configure or self.trust_service_transport):
            shown = json.dumps(options, sort_keys=True, default=str)
            shown = shown if len(shown) <= 300 else shown[:300] + "..."
            raise KeyTransportError(
                f"the service at {uri} takes public keys through the {name!r} key transport with options {shown}; "
                f"this client does not let a service choose where {name!r} sends its credentials or writes its "
                "files. Configure the transport yourself: `sei predict --config CONFIG` (your deployment config's "
                "key_transport), Deployment.from_file(CONFIG).client(endpoint) or Client(endpoint, transport=...); "
                "or, if you trust this service and the way to it, `sei predict --trust-service-transport` "
                "(Client(..., trust_service_transport=True))",
                code="untrusted_key_transport",
            )
        try:
            validated = cls.Options.model_validate(options)
        except ValidationError as exc:
            fields = ", ".join(sorted({".".join(map(str, e["loc"])) or "<top>" for e in exc.errors()}))
            raise KeyTransportError(f"the service at {uri} describes invalid {name!r} options ({fields})") from None
        if not cls.service_may_configure:
            log.warning("using the %r key transport as the service at %s describes it (trusted)", name, uri)
        return cls(validated)

    def _checked_transport(self) -> KeyTransport:
        """The transport, once checked against the one the service names (a mismatch cannot work)."""
        transport = self.transport
        if self._transport_checked:
            return transport
        described = self._described_transport()
        if described is not None:
            name, options = described
            if name != transport.name:
                raise KeyTransportError(
                    f"the service at {self.endpoint.scoring_uri} takes public keys through {name!r}; this "
                    f"client's key transport is {transport.name!r} (a config for another service?)",
                    code="key_transport_mismatch",
                )
            mine = transport.client_options()
            differ = sorted(k for k in set(mine) | set(options) if mine.get(k) != options.get(k))
            if differ:
                log.warning(
                    "the %r options %s differ from what the service at %s describes; fine if both name the "
                    "same place, else the service will not find the keys",
                    name,
                    ", ".join(map(repr, differ)),
                    self.endpoint.scoring_uri,
                )
        self._transport_checked = True
        return transport

    def model(self, name: str) -> AdapterClient:
        """The adapter client for model `name`, with keys from the keyring (made on first use)."""
        return self.session(name).adapter

    def session(self, name: str) -> ModelSession:
        """Model `name`'s adapter client and key pair (from the keyring, made on first use, checked)."""
        if name not in self._models:
            models = self.describe()["models"]
            if name not in models:
                raise InvalidRequest(f"unknown model {name!r}; the service has: {', '.join(sorted(models))}", code="unknown_model")
            description = models[name]
            adapter = self.plugins.model_adapters().get(description["adapter"])
            client = adapter.client(description)
            client.allow_unproven = self.allow_unproven
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
            self._models[name] = ModelSession(client, key_id_for(pair[1]), pair[1])
        return self._models[name]

    def _publish(self, client: ModelSession) -> None:
        transport = self._checked_transport()
        try:
            self._pending[client.key_id] = transport.publish(client.key_id, client.public_keys)
        except KeyTransportError:
            raise
        except Exception as exc:
            raise KeyTransportError(f"publishing keys through {transport.name!r} failed: {exc}") from exc

    def predict_encrypted(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Encrypt `rows`, score them on the service, return the decrypted scores."""
        client = self.session(name)
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
        client.check_input(X)  # as given: a DataFrame's column names against the model's signature
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        expected = self.describe()["models"][name].get("n_features")
        if expected is not None and X.shape[1] != expected:
            raise InvalidRequest(f"model {name!r} takes {expected} features; the input has {X.shape[1]}", code="wrong_features")
        limits = self.describe()["models"][name].get("limits") or self.describe().get("limits", {})
        limit = limits.get("max_rows_per_request", client.max_rows_per_request)  # the model's own, if described
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
