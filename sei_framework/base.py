"""Base classes that plugins subclass: model adapters, key transports and deploy targets.

Each plugin class has a `name` and a nested pydantic `Options` model (extra fields forbidden),
so the core validates plugin options without knowing their schema.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from .net import redact_uri

if TYPE_CHECKING:
    from .build import Build

__all__ = [
    "PluginOptions",
    "ModelAdapter",
    "AdapterClient",
    "KeyTransport",
    "DeployTarget",
    "ModelSource",
    "Endpoint",
    "DeploymentStatus",
    "Prediction",
    "RequestSize",
]

K = TypeVar("K")


class PluginOptions(BaseModel):
    """Base of every plugin's `Options`: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Prediction:
    """Decrypted scores and what the model's own `predict` (and `predict_proba`) would return."""

    scores: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray | None = None
    columns: list[str] | None = None
    """The input's columns, chosen by the model's feature names, in its order; None: taken by position
    (the model or the input has no column names)."""


@dataclass(frozen=True)
class RequestSize:
    """What requests to one model carry, as `ModelAdapter.request_size` reports it at build time: the
    build fits the model's rows per request to `limits.max_request_mb`, or says what to set."""

    batch_bytes: int
    """Bytes of a request's `data` field (as sent: JSON, base64 included) per batch of `batch_rows` rows."""
    batch_rows: int = 1
    """Rows that travel together at one cost (a bulk ciphertext batch): a request of fewer rows is as
    large, and the build gives the model at least one full batch per request. 1: the cost is per row."""
    public_key_bytes: int = 0
    """Bytes of the public keys as they may travel with a request (the `inline` transport), base64 included."""
    key_bytes: int = 0
    """Bytes of one public key set as the service receives it (checked against `limits.max_public_key_mb`)."""
    key_memory_bytes: int = 0
    """Bytes one converted key set holds in a worker (checked against `limits.key_cache_mb`)."""


@dataclass(frozen=True, repr=False)
class Endpoint:
    """Where a deployed service answers; `headers` (auth) and credentials in the URI are kept out of repr and logs."""

    scoring_uri: str
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Endpoint(scoring_uri={redact_uri(self.scoring_uri)!r})"


@dataclass(frozen=True)
class DeploymentStatus:
    """What a deploy target knows of a deployment, as `sei status` shows it; never a secret."""

    state: str
    """e.g. `running`, `stopped`, `not deployed`, `unknown`."""
    scoring_uri: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    """Further facts in display order (a pid, a port, a log file, a provisioning state)."""


class AdapterClient(ABC):
    """Client half of a model adapter: keys, encryption, decryption, and reading the scores."""

    key_scheme: str
    """Keys made for one scheme serve every model with the same scheme and parameters (a class attribute,
    or set per instance when the scheme depends on the model's parameters)."""

    max_rows_per_request: int = 16

    allows_nan: bool = False
    """Whether the model routes NaN as a missing value (tree models): the client's row checks then accept
    NaN, never an infinity, and leave the rest to `encrypt`. False: every value must be finite."""

    allow_unproven: bool = False
    """Serve a model whose description states no proven accuracy (an older or hand-made build) without
    its input and score checks; `Client(allow_unproven=True)` sets it. Adapters that prove bounds refuse
    such a model otherwise."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.description = description

    @abstractmethod
    def generate_keys(self) -> tuple[bytes, bytes]:
        """Make a fresh key pair; return (secret key bytes, public key bytes)."""

    @abstractmethod
    def use_keys(self, secret: bytes, public: bytes) -> None:
        """Encrypt and decrypt with this key pair from now on.

        Must raise if the secret key does not belong to the public key (a damaged or tampered
        keyring): the service computes with the public key, so a mismatched pair would decrypt
        wrong scores without any error. The client turns the exception into a KeyringError.
        """

    @staticmethod
    def keyed(keys: K | None) -> K:
        """A client's key material as `use_keys` set it; a clear error when it has not been called yet."""
        if keys is None:
            raise RuntimeError("this client has no keys yet: call use_keys(secret, public) first")
        return keys

    def check_input(self, X: Any) -> None:  # noqa: B027 - optional: the default accepts anything
        """Check the caller's input as given (a pandas DataFrame's column names, say) before it becomes
        an array of rows; raise InvalidRequest to refuse it. The default accepts anything."""

    @abstractmethod
    def encrypt(self, rows: np.ndarray) -> Any:
        """Encrypt a 2-D array of rows into the JSON-serialisable `data` field of a request."""

    @abstractmethod
    def decrypt(self, result: Any, n_rows: int) -> np.ndarray:
        """Decrypt a response's `result` field into scores of shape (n_rows, n_outputs)."""

    @abstractmethod
    def interpret(self, scores: np.ndarray) -> Prediction:
        """Turn decrypted scores into predictions (and probabilities where the model has them)."""


class ModelAdapter(ABC):
    """Server half of a model adapter: prepares a model at build time and scores ciphertexts.

    Optional, with defaults: `request_size(metadata)` (build time: what a request carries, so the
    build fits the rows per request to the model) and `key_size(keys)` (the bytes converted keys
    hold, for the key cache's budget).
    """

    name: ClassVar[str]
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    requirements: ClassVar[tuple[str, ...]] = ()
    """pip requirements the service needs for this adapter, besides sei-framework."""
    key_expansion: ClassVar[float] = 1.0
    """Bytes a converted key set's native objects (which the key cache cannot see into) hold per
    public-key byte, when `key_size` is not overridden. Default 1: what they were made from."""

    @classmethod
    @abstractmethod
    def prepare(cls, source: Path, options: PluginOptions, dest: Path) -> dict[str, Any]:
        """Build time: check the model file, write what serving needs into `dest`, return metadata."""

    def __init__(self, model_dir: Path, metadata: dict[str, Any], options: PluginOptions) -> None:
        self.model_dir = model_dir
        self.metadata = metadata
        self.options = options

    @classmethod
    def request_size(cls, metadata: dict[str, Any]) -> RequestSize | None:
        """Build time, after `prepare` (its `metadata`): what requests to this model carry. None (the
        default): unknown, the config's `limits.max_rows_per_request` applies as it is."""
        return None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What a client needs: features, outputs, encryption parameters, key scheme."""

    @abstractmethod
    def load_public_keys(self, data: bytes) -> Any:
        """Check and convert public key bytes once; the result is cached by key id."""

    @abstractmethod
    def predict(self, data: Any, keys: Any) -> Any:
        """Score a request's `data` field with cached keys; return the response's `result` field."""

    def reference_scores(self, X: np.ndarray) -> np.ndarray | None:
        """Plaintext scores of the served model, for benchmarks and checks; None if unknown."""
        return None

    def count_rows(self, data: Any) -> int:
        """Rows in a request's `data` field, for the rows-per-request limit."""
        return len(data) if isinstance(data, list) else 1

    def key_size(self, keys: Any) -> int | None:
        """Bytes that keys from `load_public_keys` hold in memory, charged to `limits.key_cache_mb`.
        None (the default): measured generically (numpy arrays, ctypes, Python containers; native
        objects it cannot see count as `key_expansion` bytes per public-key byte). Override when that is wrong."""
        return None

    @classmethod
    @abstractmethod
    def client(cls, description: dict[str, Any]) -> AdapterClient:
        """The client half, configured from this adapter's `describe()` output."""


class KeyTransport(ABC):
    """Carries a client's public keys to the service, addressed by key id."""

    name: ClassVar[str]
    Options: ClassVar[type[PluginOptions]] = PluginOptions
    requirements: ClassVar[tuple[str, ...]] = ()
    keys_in_requests: ClassVar[bool] = False
    """Whether public keys travel inside predict requests (then they count in a request's size)."""
    service_may_configure: ClassVar[bool] = False
    """Whether a `Client` may build this transport from the options the service describes. Only
    for a client side that uses no credentials, files or hosts of the client's (`inline`): else a
    spoofed service could send the client's storage token, or its file writes, where it likes. Off:
    the client uses the transport its user configures (or one it explicitly allowed)."""

    def __init__(self, options: PluginOptions) -> None:
        self.options = options

    def client_options(self) -> dict[str, Any]:
        """Options the service's `describe` answer shows (never secrets); a client builds the
        transport from them only if `service_may_configure` or its user trusts the service."""
        return {}

    @abstractmethod
    def publish(self, key_id: str, public_keys: bytes) -> dict[str, Any]:
        """Client side: make the keys reachable; return fields to add to the next request."""

    @abstractmethod
    def fetch(self, key_id: str, request: dict[str, Any]) -> bytes | None:
        """Service side: the public key bytes for `key_id`, or None when there are none."""

    def fetch_at_most(self, key_id: str, request: dict[str, Any], max_bytes: int) -> bytes | None:
        """Service side: `fetch`, told the service's key limit (`limits.max_public_key_mb`) so that a
        transport can refuse a larger key set unread. The default fetches, and the service checks after."""
        return self.fetch(key_id, request)

    def unverified_source(self, key_id: str, request: dict[str, Any]) -> str | None:
        """Where keys come from when their id is not their content hash (the tutorial's key ids
        hash the secret key); the service then caches them apart per source. None by default:
        keys must hash to their key id."""
        return None


class DeployTarget(ABC):
    """Runs a build folder somewhere and gives back its endpoint."""

    name: ClassVar[str]
    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, options: PluginOptions) -> None:
        self.options = options

    @abstractmethod
    def deploy(self, build: Build) -> Endpoint:
        """Start (or update) the service for `build` and return its endpoint once it answers."""

    @abstractmethod
    def delete(self, name: str) -> bool:
        """Stop and remove the deployment called `name`; False when there was none."""

    def status(self, name: str) -> DeploymentStatus:
        """What this target knows of the deployment called `name` (URI, state, where its log is).
        The default knows nothing; a target that keeps state overrides it."""
        return DeploymentStatus("unknown", details={"note": f"deploy target {self.name!r} reports no status"})

    def serve(self, build: Build) -> None:
        """Serve `build` in the foreground until interrupted."""
        from .errors import DeployError

        raise DeployError(f"deploy target {self.name!r} cannot serve in the foreground")

    def dry_run(self, build: Build, out: Path) -> list[Path]:
        """Write what `deploy` would submit into `out` without deploying; return the files."""
        from .errors import DeployError

        raise DeployError(f"deploy target {self.name!r} has no dry run")


class ModelSource(ABC):
    """Fetches a model that a config names by URI (`SCHEME:...` as a model's `path`) at build time.

    `name` is the URI scheme. `Options` come from the config's `model_sources.SCHEME`; the source
    also sees the deploy target's name and validated options (a source may take defaults from them).
    """

    name: ClassVar[str]
    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(
        self, options: PluginOptions, *, target: str | None = None, target_options: PluginOptions | None = None
    ) -> None:
        self.options = options
        self.target = target
        self.target_options = target_options

    def check(self, uri: str) -> None:  # noqa: B027 - optional: the default accepts any uri
        """Validate time, no network: raise ValueError saying what is wrong with `uri`. Default: accept."""

    @abstractmethod
    def fetch(self, uri: str, dest: Path) -> Path:
        """Download the model `uri` into the empty folder `dest`; return the model file or folder in it
        that the model's adapter `prepare`s."""
