"""The BGV tree engine on real SEAL: results within the computed bound, the noise bound above SEAL's measured
noise, parameters refused when they cannot fit, and every malformed request or response refused by name."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import seal
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from sei_adapter_trees.engine import bound, frontends, params, reference, wire
from sei_adapter_trees.engine.bits import split_bits
from sei_adapter_trees.engine.client import TreeClient
from sei_adapter_trees.engine.seal_context import CT_HEADER
from sei_adapter_trees.engine.seal_plan import build_plan
from sei_adapter_trees.engine.server import TreeServer


class Setup:
    def __init__(self, model: object, X: np.ndarray, switching: bool | None = None):
        self.ens = frontends.from_sklearn(model)
        self.plan = build_plan(self.ens, switching=switching)
        self.client = TreeClient(self.plan.client)
        self.server = TreeServer(self.plan, self.client.relin_keys())
        self.X = X
        self.bits = split_bits(X, self.ens.n_features, self.ens.splits)
        self.request = self.client.encrypt(self.bits)
        self.response = self.server.evaluate(self.request)


@pytest.fixture(scope="module")
def iris() -> Setup:
    """A depth-3 multi-class tree (3 outputs): the smallest ring the chain fits."""
    X, y = load_iris(return_X_y=True)
    return Setup(DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), X)


@pytest.fixture(scope="module")
def forest() -> Setup:
    """A 12-tree depth-4 forest with a modulus chain: leaves at every depth, splits shared between trees and used
    below the level they were uploaded at (switched bits once carried a different BGV correction factor, and
    adding them rescaled the noise past Q: this forest decrypted to garbage)."""
    X, y = load_breast_cancer(return_X_y=True)
    model = RandomForestClassifier(n_estimators=12, max_depth=4, random_state=0).fit(X, y)
    return Setup(model, X[:150], switching=True)


@pytest.mark.parametrize("name", ["iris", "forest"])
def test_encrypted_sums_equal_reference_within_bound(name: str, request: pytest.FixtureRequest) -> None:
    s: Setup = request.getfixturevalue(name)
    got = s.client.decrypt(s.response, len(s.X))
    want = reference.tree_sums(s.ens, s.bits)
    err = np.abs(got - want).max()
    limit = s.plan.client.score_error_bound(s.ens.n_trees)
    assert limit < 1e-6
    assert err <= limit, f"max error {err} above the bound {limit} ({s.plan.params})"
    assert (got.argmax(1) == want.argmax(1)).all()


def test_noise_bound_is_above_measured_noise(forest: Setup) -> None:
    """SEAL's invariant noise budget of each output: the computed bound must leave no more room than measured."""
    p = forest.plan.params
    off = wire.HEADER.size
    primes = p.data_primes
    leaf_abs = max(float(np.abs(c[:, o]).sum()) for o in range(p.n_outputs) for c in [np.concatenate(
        forest.plan.leaf_consts)])
    rep = bound.chain_noise(p.poly_modulus_degree, p.plain_modulus, primes, p.primes[-1], p.depth,
                            leaf_abs + forest.ens.n_trees, p.switching)
    assert p.switching
    assert rep.ok
    for _ in range(p.n_outputs):
        (ln,) = struct.unpack_from("<I", forest.response, off)
        ct = seal.Ciphertext()
        ct.load_bytes(forest.client.c.ctx, forest.response[off + 4:off + 4 + ln])
        off += 4 + ln
        budget = forest.client.noise_budget(ct)
        # SEAL: budget = log2(Q) - log2(t * ||noise||) - 1, with ||noise|| the coefficient infinity norm
        measured = math.log2(math.prod(primes[:p.out_primes])) - budget - 1
        assert budget > 0
        assert rep.log2_noise + 1 >= measured  # the bound (canonical >= infinity norm) is not below what SEAL sees


def test_one_row_and_a_full_batch(iris: Setup) -> None:
    n = iris.plan.params.rows
    one = iris.bits[:, :1]
    got = iris.client.decrypt(iris.server.evaluate(iris.client.encrypt(one)), 1)
    assert np.abs(got - reference.tree_sums(iris.ens, one)).max() <= iris.plan.client.score_error_bound(1)
    full = np.resize(iris.bits, (iris.bits.shape[0], n))
    got = iris.client.decrypt(iris.server.evaluate(iris.client.encrypt(full)), n)
    assert (got.argmax(1) == reference.tree_sums(iris.ens, full).argmax(1)).all()
    with pytest.raises(ValueError, match="1..16384 rows|1..8192 rows"):
        iris.client.encrypt(np.zeros((iris.bits.shape[0], n + 1), dtype=np.uint8))


def test_upload_uses_per_split_levels_and_packing(forest: Setup) -> None:
    cp = forest.plan.client
    p = cp.params
    assert len(forest.request) == wire.request_size(cp) == wire.HEADER.size + sum(wire.split_sizes(cp))
    assert wire.relin_keys_size(cp) == len(forest.client.relin_keys())
    assert min(cp.split_levels) < p.top_primes  # deeper splits travel with fewer primes
    unpacked = wire.HEADER.size + cp.n_splits * (32 + 2 * p.top_primes * p.rows * 8)  # SEAL's own form
    assert len(forest.request) < unpacked / 2.5


def _mutate(buf: bytes, off: int, new: bytes) -> bytes:
    return buf[:off] + new + buf[off + len(new):]


def test_hostile_requests_are_refused_and_the_server_keeps_serving(iris: Setup, forest: Setup) -> None:
    req, srv = iris.request, iris.server
    h = wire.HEADER.size
    bad = {
        "bad magic": b"XXXX" + req[4:],
        "message version": _mutate(req, 4, b"\x09"),
        "wrong message kind": _mutate(req, 5, b"\x02"),
        "fingerprint mismatch": forest.request,
        "truncated or padded": req[:-1],
        "expected exactly": req + b"\0",
        "states 0 rows": _mutate(req, 16, struct.pack("<I", 0)),
        "carries 3 ciphertexts": _mutate(req, 20, struct.pack("<I", 3)),
        "out of range": _mutate(req, h + 32, b"\xff" * 16),
        "message too short": b"SEIT",
        "expected bytes": "not bytes",
    }
    for msg, payload in bad.items():
        with pytest.raises(wire.TreesInputError, match=msg):
            srv.evaluate(payload)  # type: ignore[arg-type]
    got = iris.client.decrypt(srv.evaluate(req), len(iris.X))
    assert np.abs(got - reference.tree_sums(iris.ens, iris.bits)).max() <= iris.plan.client.score_error_bound(1)


def test_client_refuses_responses_of_unexpected_shape_or_level(iris: Setup, forest: Setup) -> None:
    c, srv = iris.client, iris.server
    n_rows, cts = srv.parse_request(iris.request)
    n_out = iris.plan.params.n_outputs
    ev = c.c.evaluator
    other = cts[0] if cts[0].coeff_modulus_size() != iris.plan.params.out_primes else ev.mod_switch_to_next(cts[0])
    top = [other] * n_out  # right count, wrong level
    with pytest.raises(wire.TreesInputError, match="response is .* bytes|not at the output level"):
        c.decrypt(srv.pack_response(n_rows, top), n_rows)
    low = ev.mod_switch_to(cts[0], c.c.parms_id_lists[iris.plan.params.out_primes])
    size3 = ev.multiply(low, low)  # size 3 at the output level
    with pytest.raises(wire.TreesInputError):
        c.decrypt(srv.pack_response(n_rows, [size3] * n_out), n_rows)
    with pytest.raises(wire.TreesInputError, match="carries 1 ciphertexts"):
        c.decrypt(srv.pack_response(n_rows, [low]), n_rows)
    with pytest.raises(wire.TreesInputError, match="states 150 rows, the request had 5"):
        c.decrypt(iris.response, 5)
    with pytest.raises(wire.TreesInputError, match="fingerprint"):
        c.decrypt(forest.response, n_rows)
    flipped = bytearray(iris.response)
    flipped[wire.HEADER.size + 4 + CT_HEADER:wire.HEADER.size + 4 + CT_HEADER + 8] = b"\xff" * 8
    with pytest.raises(wire.TreesInputError, match="does not load"):
        c.decrypt(bytes(flipped), n_rows)


def test_keys_of_other_parameters_are_refused(iris: Setup, forest: Setup) -> None:
    with pytest.raises(wire.TreesInputError, match="keys"):
        TreeServer(iris.plan, forest.client.relin_keys())
    with pytest.raises(wire.TreesInputError, match="keys"):
        TreeServer(iris.plan, b"garbage")
    again = TreeClient(iris.plan.client, iris.client.secret_key())
    assert again.key_id() != iris.client.key_id()  # fresh relinearization keys, same secret
    assert np.abs(again.decrypt(iris.response, len(iris.X)) - iris.client.decrypt(iris.response, len(iris.X))).max() == 0


def test_parameters_fit_128_bit_security_or_are_refused() -> None:
    p = params.choose(depth=6, n_trees=100, n_outputs=1, leaf_max_sum=30.0, leaf_abs_total=3200.0)
    assert sum(p.coeff_modulus_bits) <= params.HES_MAX_BITS[p.poly_modulus_degree]
    assert p.top_primes == p.out_primes + 5
    with pytest.raises(params.ParamsError, match="depth 40 needs more than 881 modulus bits"):
        params.choose(depth=40, n_trees=1, n_outputs=1, leaf_max_sum=1.0, leaf_abs_total=2.0)
    with pytest.raises(params.ParamsError, match="plaintext modulus"):
        params.choose(depth=3, n_trees=10, n_outputs=1, leaf_max_sum=1e12, leaf_abs_total=1e13, tolerance=1e-9)
    with pytest.raises(params.ParamsError, match="128-bit"):
        params.TreeParams(8192, 22, (60, 60, 60, 60), 3, 1, 2.0 ** 20, 1).validate()


def test_two_worker_processes_give_the_same_sums_and_refuse_bad_requests(iris: Setup) -> None:
    from sei_adapter_trees.engine.workers import WorkerPool

    want = iris.client.decrypt(iris.response, len(iris.X))
    with WorkerPool(iris.plan, iris.client.relin_keys(), workers=2) as pool:
        assert len(pool._procs) == 1  # this process evaluates a share too
        assert (iris.client.decrypt(pool.evaluate(iris.request), len(iris.X)) == want).all()
        h = wire.HEADER.size
        with pytest.raises(wire.TreesInputError, match="out of range"):
            pool.evaluate(_mutate(iris.request, h + 32, b"\xff" * 16))
        with pytest.raises(wire.TreesInputError, match="truncated"):
            pool.evaluate(iris.request[:-3])
        assert (iris.client.decrypt(pool.evaluate(iris.request), len(iris.X)) == want).all()


@pytest.mark.parametrize("bits", [(50, 50, 50, 50), (60, 59, 58), (30, 31)])
def test_packed_residues_round_trip_and_out_of_range_is_refused(bits: tuple[int, ...]) -> None:
    n = 8192
    primes = params._primes(n, (*bits, 60))[:-1]
    rng = np.random.default_rng(0)
    res = np.stack([rng.integers(0, q, n, dtype=np.uint64) for q in primes])
    res[:, :2] = np.array([[q - 1, 0] for q in primes], dtype=np.uint64)  # the extremes of each prime
    buf = wire.pack_residues(res, primes)
    assert len(buf) == wire.packed_bytes(primes, n)
    assert np.array_equal(wire.unpack_residues(memoryview(buf), primes, n, "x"), res)
    res[-1, -1] = primes[-1]  # the last value of the last prime, one past its range
    with pytest.raises(wire.TreesInputError, match="x: a residue is out of range"):
        wire.unpack_residues(memoryview(wire.pack_residues(res, primes)), primes, n, "x")


def test_a_two_class_forest_derives_its_second_output_exactly(forest: Setup, iris: Setup) -> None:
    """p1 = 1 - p0 in every leaf: the server walks the leaves for output 0 only and answers output 1 as
    (number of trees) * scale - output 0, equal to the reference on every row, in one process and on two."""
    from sei_adapter_trees.engine.workers import WorkerPool

    n_trees = len(forest.plan.trees)
    assert forest.server.derived == {1: (0, -1, int(round(n_trees * forest.plan.params.leaf_scale)))}
    assert iris.server.derived == {}  # three classes: no output is a signed copy of another
    assert forest.server._single == 0 and iris.server._single is None  # sibling leaves fold for one walked output
    want = reference.tree_sums(forest.ens, forest.bits)
    got = forest.client.decrypt(forest.response, len(forest.X))
    assert np.abs(got - want).max() <= forest.plan.client.score_error_bound(n_trees)
    with WorkerPool(forest.plan, forest.client.relin_keys(), workers=2) as pool:
        assert (forest.client.decrypt(pool.evaluate(forest.request), len(forest.X)) == got).all()


def test_two_workers_share_the_range_checks_and_still_refuse_every_split(iris: Setup) -> None:
    """Each worker unpacks only the splits it reads: an out-of-range residue in any split is still refused."""
    from sei_adapter_trees.engine.workers import WorkerPool

    sizes = wire.split_sizes(iris.plan.client)
    with WorkerPool(iris.plan, iris.client.relin_keys(), workers=2) as pool:
        for s in range(len(sizes)):
            off = wire.HEADER.size + sum(sizes[:s]) + wire.SEED_BYTES
            with pytest.raises(wire.TreesInputError, match=f"split {s}: a residue is out of range"):
                pool.evaluate(_mutate(iris.request, off, b"\xff" * 16))
        want = iris.client.decrypt(iris.response, len(iris.X))
        assert (iris.client.decrypt(pool.evaluate(iris.request), len(iris.X)) == want).all()


def test_a_plaintext_size_without_a_batching_prime_takes_the_next_size():
    """SEAL has no batching prime of 19 bits at any N served: the leaves below need 19 bits, so the
    parameters take 20 (once a RuntimeError from SEAL at build)."""
    chosen = params.choose(depth=3, n_trees=1, n_outputs=1, leaf_max_sum=100.0, leaf_abs_total=100.0, tolerance=2.0**-11)
    assert chosen.plain_modulus_bits == 20
    assert chosen.plain_modulus % (2 * chosen.poly_modulus_degree) == 1  # a batching prime


def test_a_dead_worker_fails_one_request_and_the_pool_starts_again(iris: Setup) -> None:
    """A worker killed under the service: that request is ProcessLost (not a crash, not a stuck pool), the next
    one is answered by fresh workers."""
    from sei_adapter_trees.pool import PooledServer

    from sei_framework import ProcessLost

    want = iris.client.decrypt(iris.response, len(iris.X))
    pooled = PooledServer(iris.plan, iris.client.relin_keys(), 2)
    pooled._pool._procs[0].kill()
    with pytest.raises(ProcessLost, match="worker process stopped"):
        pooled.evaluate(iris.request)
    assert (iris.client.decrypt(pooled.evaluate(iris.request), len(iris.X)) == want).all()
    pooled._pool.close()


def test_a_hung_worker_times_out_the_request_and_the_pool_starts_again(iris: Setup) -> None:
    """A worker that stops answering (SIGSTOP: alive, reading nothing) fails that request as a timeout after the
    pool's limit instead of holding the service; the next request is answered by fresh workers."""
    import signal

    from sei_adapter_trees.pool import PooledServer

    from sei_framework import ProcessLost

    want = iris.client.decrypt(iris.response, len(iris.X))
    pooled = PooledServer(iris.plan, iris.client.relin_keys(), 2, timeout_s=2.0)
    hung = pooled._pool._procs[0]
    hung.send_signal(signal.SIGSTOP)
    with pytest.raises(ProcessLost, match="timed out after 2 s") as caught:
        pooled.evaluate(iris.request)
    assert caught.value.code == "timeout"
    assert hung.poll() is not None  # killed, not left stopped
    assert (iris.client.decrypt(pooled.evaluate(iris.request), len(iris.X)) == want).all()
    pooled._pool.close()
