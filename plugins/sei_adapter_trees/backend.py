"""The adapter's one door to the engine: planning, the service's evaluator, the client's keys, and
the plaintext reference and post-processing the build and the client use.

The rest of the plugin calls only this module, so the engine's names live in one place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np

from .engine import bits as engine_bits
from .engine import postprocess, reference
from .engine.ir import Ensemble, Split, Tree

__all__ = [
    "KEY_EXPANSION", "EngineInputError", "Plan", "PlanError", "RowError", "Server", "decrypt_batch",
    "encrypt_batches", "encrypted_sums", "interpret", "keys_from_pair", "new_keys", "plain_sums", "plan", "plan_from_json", "raw_scores",
    "readout_ensemble", "score_bound", "split_bits",
]

KEY_EXPANSION = 1.0
"""Bytes a loaded key set (SEAL's relinearization keys in an engine server) holds per byte received, as the key
cache counts it: 1.0, a deliberate upper bound on the about 0.67 measured (the resident memory of three more key
sets of the XGBoost test model, 1.57 MB each as sent)."""
RowError = engine_bits.RowError


class PlanError(ValueError):
    """No parameters at 128-bit security serve the ensemble within the tolerance (the reason is the message)."""


class EngineInputError(ValueError):
    """Bytes the engine refuses: the message names what is wrong, never the bytes."""


@dataclass(frozen=True)
class Plan:
    """What the build chose: the engine's public plan (`engine`, its own JSON) and what it costs and proves."""

    engine: str
    """The engine's client plan: parameters and each split's level (what the client must know)."""
    slots: int
    """Rows per batch: one request message of `request_bytes` carries up to this many rows."""
    request_bytes: int
    response_bytes: int
    key_bytes: int
    """Bytes of one client's relinearization keys as uploaded."""
    error_bound: float
    """Proven bound on |decrypted sum - exact sum of leaf values| for every output (parameters and depth)."""
    scheme_name: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def key_fingerprint(self) -> str:
        """Keys depend on the encryption parameters only: every model planned with the same ones shares them."""
        params = json.loads(self.engine)["params"]
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def plan_from_json(data: Any) -> Plan:
    """The plan as metadata or describe() holds it; ValueError naming what is wrong."""
    fields = set(Plan.__dataclass_fields__)
    if not isinstance(data, dict) or set(data) != fields:
        raise ValueError(f"a plan needs exactly the fields {', '.join(sorted(fields))}")
    counts = [data[k] for k in ("slots", "request_bytes", "response_bytes", "key_bytes")]
    if not all(type(n) is int and 1 <= n <= 1 << 40 for n in counts):
        raise ValueError("a plan's slots and byte counts must be positive whole numbers")
    bound = data["error_bound"]
    if type(bound) not in (int, float) or not 0 < bound < 1:
        raise ValueError("a plan's error_bound must be a number in (0, 1)")
    if not isinstance(data["engine"], str) or not isinstance(data["scheme_name"], str):
        raise ValueError("a plan's engine and scheme_name must be strings")
    engine = json.loads(data["engine"])
    if not isinstance(engine, dict) or not isinstance(engine.get("params"), dict):
        raise ValueError("a plan's engine must be a JSON object with the encryption parameters")
    slots, request_bytes, response_bytes, key_bytes = counts
    return Plan(data["engine"], slots, request_bytes, response_bytes, key_bytes, float(bound), data["scheme_name"])


def split_bits(rows: np.ndarray, n_features: int, splits: tuple[Split, ...]) -> np.ndarray:
    """uint8[n_splits, n_rows]: 1 where the row goes right, compared as the model's library compares.
    RowError names a row the splits cannot route (infinite, or too large for a float32 comparison)."""
    return engine_bits.split_bits(rows, n_features, splits)


def readout_ensemble(n_features: int, splits: tuple[Split, ...], readout: dict[str, Any], classes: Any) -> Ensemble:
    """The ensemble as the client knows it: its splits and post-processing, and `n_trees` weightless
    single-leaf trees in place of the trees it never sees (so the engine's post-processing applies)."""
    n_outputs = readout["n_outputs"]
    empty = np.zeros(0, dtype=np.int32)
    tree = Tree(empty, empty, empty, np.zeros((1, n_outputs)))
    return Ensemble(
        n_features=n_features, splits=splits, trees=(tree,) * readout["n_trees"], n_outputs=n_outputs,
        base_score=np.asarray(readout["base_score"], dtype=np.float64), average=readout["average"],
        postprocess=readout["postprocess"], task=readout["task"], classes=classes,
        postprocess_params=dict(readout["postprocess_params"]),
    ).validate()  # fmt: skip


def raw_scores(ensemble: Ensemble, sums: np.ndarray) -> np.ndarray:
    """float64[n_rows, n_outputs]: the library's raw scores (averaged for forests, plus the base score)."""
    return postprocess.raw_scores(ensemble, sums)


def interpret(ensemble: Ensemble, raw: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(predictions, probabilities or None) from raw scores within `bound` of the exact ones, as `predict` would.

    Classes whose raw scores lie within twice the bound of the best are a tie, settled as the library settles
    one (the first class; for a one-output binary model, raw 0 is the first class): the decrypted scores
    cannot order them."""
    if ensemble.task == "regression":
        return postprocess.scores(ensemble, raw), None
    settled = raw.copy()
    if ensemble.n_outputs == 1:
        settled[np.abs(raw) <= 2 * bound] = 0.0
    else:
        best = raw.max(axis=1, keepdims=True)
        first = np.argmax(raw >= best - 2 * bound, axis=1)
        settled[np.arange(len(raw)), first] = best[:, 0] + 1.0  # the first of the near-best wins
    return postprocess.labels(ensemble, settled), postprocess.scores(ensemble, raw)


def score_bound(ensemble: Ensemble, plan: Plan) -> float:
    """The proven bound on every raw score's error: the sums' bound, divided by the trees a forest averages."""
    return plan.error_bound / ensemble.n_trees if ensemble.average else plan.error_bound


def plain_sums(ensemble: Ensemble, rows: np.ndarray) -> np.ndarray:
    """The exact sums of leaf values, walked in plaintext from the same split bits."""
    return reference.tree_sums(ensemble, split_bits(rows, ensemble.n_features, ensemble.splits))


def plan(ensemble: Ensemble, tolerance: float, per_split_levels: bool = True) -> Plan:
    """Parameters for `ensemble` whose proven error of every raw score is within `tolerance` (PlanError if none).
    Without `per_split_levels` every split travels at the top level: the client no longer learns, from the
    levels, the shallowest depth that uses each split (nor, on a thermometer grid, which edges are used)."""
    from .engine import wire
    from .engine.params import ParamsError
    from .engine.seal_plan import build_plan

    per_sum = tolerance * ensemble.n_trees if ensemble.average else tolerance  # a forest averages its sums
    try:  # Ensemble is the engine's EnsembleLike
        client = build_plan(cast(Any, ensemble), per_sum, per_split_levels=per_split_levels).client
    except ParamsError as exc:
        raise PlanError(str(exc)) from None
    return Plan(
        engine=client.to_json(),
        slots=client.params.rows,
        request_bytes=wire.request_size(client),
        response_bytes=wire.response_size(client),
        key_bytes=len(_engine_client(client).relin_keys()),
        error_bound=client.score_error_bound(ensemble.n_trees),
        scheme_name=f"{client.params.scheme.upper()}, one row per slot",
    )


def _client_plan(plan: Plan) -> Any:
    from .engine.params import ParamsError
    from .engine.seal_plan import ClientPlan

    try:
        return ClientPlan.from_json(plan.engine)
    except (ParamsError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the engine's plan cannot be read: {type(exc).__name__}: {exc}") from None


def _engine_client(client_plan: Any, secret: bytes | None = None) -> Any:
    from .engine.client import TreeClient

    return TreeClient(client_plan, secret)


def new_keys(plan: Plan) -> Any:
    """A fresh secret key (and its relinearization keys) for these parameters: the engine's client."""
    return _engine_client(_client_plan(plan))


class Server:
    """The service's evaluator for one model: one engine server per client key set (`load_keys`)."""

    def __init__(self, ensemble: Ensemble, plan: Plan) -> None:
        from .engine.seal_plan import ServerPlan

        client = _client_plan(plan)
        if client.n_splits != len(ensemble.splits) or client.params.n_outputs != ensemble.n_outputs:
            raise ValueError("the build's plan does not fit its ensemble (a damaged build folder)")
        scale = client.params.leaf_scale
        consts = tuple(np.rint(t.leaf_values * scale).astype(np.int64) for t in ensemble.trees)
        self.plan = ServerPlan(client, cast(Any, ensemble.trees), consts)

    def load_keys(self, data: bytes, workers: int = 1) -> Any:
        """An engine server holding these relinearization keys, its evaluations on `workers` processes
        (EngineInputError if the keys are not for this plan)."""
        from .engine.server import TreeServer
        from .engine.wire import TreesInputError

        try:
            server = TreeServer(self.plan, data)  # the keys checked here first, before any process starts
            if workers == 1:
                return server
            from .pool import PooledServer

            return PooledServer(self.plan, data, workers)
        except TreesInputError as exc:
            raise EngineInputError(str(exc)) from None

    def check(self, message: bytes, n_rows: int) -> None:
        """EngineInputError unless `message` is a request of `n_rows` rows for this plan, of exactly its size."""
        from .engine import wire

        client = self.plan.client
        try:
            got = wire.parse_header(message, wire.KIND_REQUEST, client, wire.request_size(client), client.n_splits)
        except wire.TreesInputError as exc:
            raise EngineInputError(str(exc)) from None
        if got != n_rows:
            raise EngineInputError(f"the batch holds {got} rows; the request says {n_rows}")

    def evaluate(self, server: Any, message: bytes) -> bytes:
        """One checked batch's response (EngineInputError when a ciphertext in it is malformed)."""
        from .engine.wire import TreesInputError

        try:
            return bytes(server.evaluate(message))
        except TreesInputError as exc:
            raise EngineInputError(str(exc)) from None


def encrypt_batches(keys: Any, bits: np.ndarray, slots: int) -> list[bytes]:
    """One request message per batch of up to `slots` rows (`bits` is [n_splits, n_rows])."""
    return [bytes(keys.encrypt(bits[:, start : start + slots])) for start in range(0, bits.shape[1], slots)]


def decrypt_batch(keys: Any, message: bytes, n_rows: int) -> np.ndarray:
    """float64[n_rows, n_outputs] sums; EngineInputError when the message is not a response of that shape and level."""
    from .engine.wire import TreesInputError

    try:
        return np.asarray(keys.decrypt(message, n_rows), dtype=np.float64)
    except TreesInputError as exc:
        raise EngineInputError(str(exc)) from None


def keys_from_pair(plan: Plan, secret: bytes, public: bytes) -> Any:
    """The client's keys from a stored pair; ValueError unless `public` is these parameters' relinearization
    keys of this very secret key (checked by a product through them, decrypted with the secret key)."""
    from .engine.wire import TreesInputError

    client = _client_plan(plan)
    try:
        keys = _engine_client(client, secret)
    except TreesInputError as exc:
        raise ValueError(str(exc)) from None
    check_relin_keys(keys, plan, public)
    return keys


def check_relin_keys(keys: Any, plan: Plan, public: bytes) -> None:
    """ValueError unless `public` loads for these parameters and, where the engine multiplies ciphertexts
    (depth >= 2), a product relinearized with it decrypts right under this secret key: a two-node tree on
    one split at the top level (a plan of its own: one ciphertext to encrypt, whatever the model's
    splits), evaluated by the real engine on the bits [0, 1]."""
    from .engine.seal_plan import ClientPlan, ServerPlan
    from .engine.server import TreeServer
    from .engine.wire import TreesInputError

    params = _client_plan(plan).params
    try:
        if params.depth < 2:  # no ciphertext product: the keys are never used, but they must load
            from .engine.seal_context import context_for

            context_for(params).ctx.from_relin_str(public)
            return
        probe = ClientPlan(params, (params.top_primes,))
        tree = Tree(np.zeros(2, np.int32), np.array([~0, ~1], np.int32), np.array([1, ~2], np.int32),
                    np.zeros((3, params.n_outputs)))  # fmt: skip
        consts = (np.repeat(np.arange(1, 4, dtype=np.int64)[:, None], params.n_outputs, axis=1),)
        server = TreeServer(ServerPlan(probe, cast(Any, (tree,)), consts), public)
        client = _engine_client(probe, keys.secret_key())
        sums = client.decrypt(server.evaluate(client.encrypt(np.array([[0, 1]], dtype=np.uint8))), 2)
    except (TreesInputError, ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(f"the relinearization keys do not load for these parameters: {exc}") from None
    if not np.array_equal(np.rint(sums * params.leaf_scale), [[1] * params.n_outputs, [3] * params.n_outputs]):
        raise ValueError("the relinearization keys are not this secret key's")


def encrypted_sums(ensemble: Ensemble, plan: Plan, rows: np.ndarray) -> np.ndarray:
    """The sums of leaf values for `rows` through the real encrypted path: fresh keys, the service's
    evaluator, decryption (the build's check)."""
    keys = new_keys(plan)
    server = Server(ensemble, plan)
    engine = server.load_keys(keys.relin_keys())
    bits = split_bits(rows, ensemble.n_features, ensemble.splits)
    parts = []
    for start, message in zip(range(0, len(rows), plan.slots), encrypt_batches(keys, bits, plan.slots), strict=True):
        size = min(plan.slots, len(rows) - start)
        server.check(message, size)
        parts.append(decrypt_batch(keys, server.evaluate(engine, message), size))
    return np.vstack(parts)
