"""The client API: keys, key transport, encrypt, call, decrypt.

One module per concern, composed by `Client`: `http` (POST with retries), `endpoint` (where
credentials may go), `transports` (which key transport to trust), `sessions` (keyring key pairs
per model) and `results` (batching and reading the scores).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..base import AdapterClient, Endpoint, KeyTransport, Prediction
from ..errors import DescriptionChanged, SeiError, ServiceError
from ..fingerprint import FINGERPRINT_FIELD
from ..keys import Keyring
from ..net import is_loopback_host, redact_uri
from ..plugins import SeiPlugins, get_plugin_manager
from .endpoint import EndpointPolicy
from .http import RETRY_STATUSES, HttpCaller
from .results import check_rows, described_row_limit, request_rows, score_in_batches
from .sessions import ModelSession, open_session, publish_keys
from .transports import check_transport, transport_from_service

__all__ = ["RETRY_STATUSES", "Client", "ModelSession", "is_loopback_host"]

log = logging.getLogger(__name__)


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
    address unless `allow_insecure_http`; redirects are never followed; a header value HTTP cannot
    carry (a token outside latin-1) is refused. Credentials in the URI never show in messages or logs.

    Requests are idempotent, so connection errors, timeouts and 502/503/504 answers are retried up
    to `retries` times, after a random wait of up to `backoff` * 2**attempt seconds (at most
    `max_backoff`; full jitter, so many clients do not retry in step).

    Every request carries the fingerprint of the model's description the client encrypts for and reads
    answers with. When the model was rebuilt since (`description_changed`), the client describes the
    service again once, checks the new description as on first use, encrypts again and resends; a
    second mismatch is an error. No answer is ever read with another version's labels, bounds or readout.
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
        self.policy = EndpointPolicy(allow_insecure_http=allow_insecure_http)
        self.policy.check(self.endpoint)  # before anything is sent
        self.keyring = keyring or Keyring()
        self.http = HttpCaller(timeout=timeout, retries=retries, backoff=backoff, max_backoff=max_backoff)
        self._plugins = plugins
        self._transport = transport
        self._description = description  # a describe answer handed over (batch jobs): no service call
        self._models: dict[str, ModelSession] = {}
        self._pending: dict[str, dict[str, Any]] = {}  # key_id -> fields to send once
        self._transport_checked = False
        self._transport_from_service = False

    @classmethod
    def offline(cls, description: dict[str, Any], **kwargs: Any) -> Client:
        """A client without a service: encrypts and decrypts for the models of `description` (a service's
        `describe` answer, as a batch job carries it) with keys from the keyring; it sends nothing."""
        return cls(Endpoint(""), description=description, **kwargs)

    @property
    def allow_insecure_http(self) -> bool:
        return self.policy.allow_insecure_http

    @allow_insecure_http.setter
    def allow_insecure_http(self, allow: bool) -> None:
        self.policy.allow_insecure_http = allow

    @property
    def timeout(self) -> float:
        return self.http.timeout

    @property
    def retries(self) -> int:
        return self.http.retries

    @property
    def plugins(self) -> SeiPlugins:
        if self._plugins is None:
            self._plugins = get_plugin_manager()
        return self._plugins

    def call(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST one request, retrying what may pass on; an error answer raises ServiceError with its code."""
        self.policy.check(self.endpoint)  # the endpoint may have been replaced since
        if not self.endpoint.scoring_uri:
            raise SeiError("this client has no service endpoint (Client.offline): it encrypts and decrypts only")
        return self.http.post(self.endpoint, body)

    def describe(self) -> dict[str, Any]:
        """The service's models, adapters, encryption parameters and key transport (cached; described again
        when a request finds that the model changed on the service)."""
        if self._description is None:
            self._description = self.call({"op": "describe"})
        return self._description

    @property
    def transport(self) -> KeyTransport:
        """The key transport passed in; else the service's, if its class or the user allows that."""
        if self._transport is None:
            shown = redact_uri(self.endpoint.scoring_uri)
            trusted = self.trust_service_transport
            self._transport = transport_from_service(self.describe(), self.plugins, shown, trusted=trusted)
            self._transport_from_service = True
        return self._transport

    def _checked_transport(self) -> KeyTransport:
        """The transport, once checked against the one the service names (a mismatch cannot work)."""
        transport = self.transport
        if not self._transport_checked:
            check_transport(transport, self.describe(), redact_uri(self.endpoint.scoring_uri))
            self._transport_checked = True
        return transport

    def model(self, name: str) -> AdapterClient:
        """The adapter client for model `name`, with keys from the keyring (made on first use)."""
        return self.session(name).adapter

    def session(self, name: str) -> ModelSession:
        """Model `name`'s adapter client and key pair (from the keyring, made on first use, checked)."""
        if name not in self._models:
            self._models[name] = open_session(
                name, self.describe()["models"], self.plugins, self.keyring, allow_unproven=self.allow_unproven
            )
        return self._models[name]

    def _publish(self, session: ModelSession) -> None:
        self._pending[session.key_id] = publish_keys(self._checked_transport(), session)

    def predict_encrypted(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Encrypt `rows`, score them on the service, return the decrypted scores. If the model changed on
        the service since it was described, describe again once and resend (see the class docstring);
        read the scores with `client.model(name)` as it is now."""
        try:
            return self._score(name, rows)
        except DescriptionChanged:
            self._describe_again(name)
        return self._score_again(name, lambda: self._score(name, rows))

    def predict(
        self,
        name: str,
        X: Any,
        *,
        batch_size: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> Prediction:
        """Encrypted predictions for every row of X, sent in batches; `progress(n)` after each. If the model
        changed on the service meanwhile, every batch is scored again with the new description (once).

        X: an array (columns by position), a pandas DataFrame or `sei_framework.read_rows`' result. Where
        the model names its features (describe(): feature_names), named columns are chosen by name and a
        missing or unknown one is refused; `Prediction.columns` says which (None: by position)."""
        counts = [0, 0]  # rows reported to `progress`, rows scored in this pass

        def report(n: int) -> None:  # a second pass reports only the rows the first did not
            counts[1] += n
            if counts[1] > counts[0] and progress is not None:
                progress(counts[1] - counts[0])
                counts[0] = counts[1]

        def attempt() -> Prediction:
            counts[1] = 0
            return self._predict(name, X, batch_size, report)

        try:
            return attempt()
        except DescriptionChanged:
            self._describe_again(name)
        return self._score_again(name, attempt)

    def _predict(self, name: str, X: Any, batch_size: int | None, progress: Callable[[int], object]) -> Prediction:
        adapter = self.model(name)
        described = self.describe()["models"][name]
        rows = check_rows(name, adapter, X, described)
        limit = described_row_limit(described, self.describe(), adapter.max_rows_per_request)
        size = request_rows(limit, adapter, batch_size)
        scored = score_in_batches(adapter, rows.values, size, lambda batch: self._score(name, batch), progress)
        return replace(scored, columns=rows.columns if rows.by_name else None)

    def _score(self, name: str, rows: np.ndarray) -> np.ndarray:
        """One request for `rows`, bound to the session's description; DescriptionChanged if the service's differs."""
        session = self.session(name)
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        data = session.adapter.encrypt(rows)
        body = {"model": name, "key_id": session.key_id, FINGERPRINT_FIELD: session.fingerprint, "data": data}
        published_now = False
        if session.key_id not in self._pending:
            self._publish(session)
            published_now = True
        try:
            answer = self._call_model(body, session)
        except ServiceError as exc:
            if exc.code not in ("unknown_key_id", "key_mismatch") or published_now:
                raise
            # the service forgot our keys (restart, eviction), or the published copy was replaced
            # (key_mismatch: what the transport holds under our key id is not our keys): publish again
            self._publish(session)
            answer = self._call_model(body, session)
        self._pending[session.key_id] = {}
        return session.adapter.decrypt(answer["result"], len(rows))

    def _call_model(self, body: dict[str, Any], session: ModelSession) -> dict[str, Any]:
        try:
            return self.call({**body, **self._pending[session.key_id]})
        except ServiceError as exc:
            if exc.code == DescriptionChanged.code:
                raise DescriptionChanged(exc.message) from None
            raise

    def _describe_again(self, name: str) -> None:
        """Forget the service's description (and what was made from it), describe it again, and open model
        `name`'s session with the same checks as on first use."""
        if not self.endpoint.scoring_uri:
            raise DescriptionChanged(f"model {name!r} changed, and an offline client cannot describe it again")
        log.warning("model %r changed on the service (rebuilt or redeployed): describing it again", name)
        self._description = None
        self._models.clear()
        self._pending.clear()  # a new build has likely not seen our keys: publish them with the next request
        self._transport_checked = False
        if self._transport_from_service:
            self._transport, self._transport_from_service = None, False
        self.session(name)

    def _score_again(self, name: str, attempt: Callable[[], Any]) -> Any:
        """`attempt()` once more after describing again; a second mismatch is an error, not a third try."""
        try:
            return attempt()
        except DescriptionChanged:
            raise ServiceError(
                f"model {name!r} changed on the service again after the client described it anew (a deployment "
                "still rolling out, or replicas serving different builds?): no answer was read; retry once the "
                "service serves one version",
                code=DescriptionChanged.code,
                status=DescriptionChanged.status,
            ) from None
