"""The bottom-up walk of the tree engine (`engine.horner`) on real SEAL: the same exact sums as the top-down walk,
whole trees or split at the root for two workers, and SEAL's measured noise under its computed bound."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import seal
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from sei_adapter_trees.engine import bound, frontends, reference, wire
from sei_adapter_trees.engine.bits import split_bits
from sei_adapter_trees.engine.client import TreeClient
from sei_adapter_trees.engine.seal_plan import build_plan
from sei_adapter_trees.engine.server import TreeServer
from sei_adapter_trees.engine.workers import WorkerPool


class Flat:
    """A model on a flat modulus (no prime dropped between products), one request of its rows."""

    def __init__(self, model: object, X: np.ndarray):
        self.ens = frontends.from_sklearn(model)
        self.plan = build_plan(self.ens, switching=False)
        self.client = TreeClient(self.plan.client)
        self.keys = self.client.relin_keys()
        self.server = TreeServer(self.plan, self.keys)
        self.X = X
        self.bits = split_bits(X, self.ens.n_features, self.ens.splits)
        self.request = self.client.encrypt(self.bits)

    def sums(self, response: bytes) -> np.ndarray:
        return self.client.decrypt(response, len(self.X))

    def walk(self, horner: bool, halves: bool) -> bytes:
        """A response from one walk: bottom-up or top-down, whole trees or the root's halves."""
        self.server._horner = horner
        try:
            n_rows, bits = self.server.parse_request(self.request)
            outs = self.server.partial(bits, self.server.units(halves=halves))
            return self.server.pack_response(n_rows, self.server.finish(outs, bits))
        finally:
            self.server._horner = not self.plan.params.switching and self.server._single is not None


@pytest.fixture(scope="module")
def forest() -> Flat:
    """A two-class forest of 12 depth-4 trees: leaves at every depth, one output walked (the other derived)."""
    X, y = load_breast_cancer(return_X_y=True)
    return Flat(RandomForestClassifier(n_estimators=12, max_depth=4, random_state=0).fit(X, y), X[:150])


@pytest.fixture(scope="module")
def boosted() -> Flat:
    """Regression by boosting: one output, nothing derived."""
    X, y = load_breast_cancer(return_X_y=True)
    return Flat(GradientBoostingRegressor(n_estimators=8, max_depth=3, random_state=0).fit(X, y), X[:100])


@pytest.mark.parametrize("name", ["forest", "boosted"])
def test_bottom_up_equals_top_down_exactly_whole_or_halved(name: str, request: pytest.FixtureRequest) -> None:
    s: Flat = request.getfixturevalue(name)
    assert s.server._horner, "a flat modulus with one walked output is walked bottom-up"
    top_down = s.sums(s.walk(horner=False, halves=False))
    whole = s.sums(s.walk(horner=True, halves=False))
    halved = s.sums(s.walk(horner=True, halves=True))
    # both walks compute the same integers mod t: the decrypted sums are identical, not merely close
    assert np.array_equal(whole, top_down) and np.array_equal(halved, top_down)
    want = reference.tree_sums(s.ens, s.bits)
    assert np.abs(whole - want).max() <= s.plan.client.score_error_bound(len(s.plan.trees))


def test_bottom_up_on_two_workers_equals_one_process(forest: Flat) -> None:
    with WorkerPool(forest.plan, forest.keys, 2) as pool:
        assert np.array_equal(forest.sums(pool.evaluate(forest.request)), forest.sums(forest.server.evaluate(
            forest.request)))


def test_bottom_up_noise_stays_under_its_bound(forest: Flat) -> None:
    """SEAL's measured noise of each output (whole trees and halves) is under `bound.horner_noise`, which the
    parameters were chosen against (`chain_noise` takes the larger of both walks on a flat modulus)."""
    p = forest.plan.params
    primes = p.data_primes
    leaf_abs = max(float(np.abs(np.concatenate(forest.plan.leaf_consts)[:, o]).sum()) for o in range(p.n_outputs))
    n_trees = len(forest.plan.trees)
    horner = bound.horner_noise(p.poly_modulus_degree, p.plain_modulus, primes, p.primes[-1], p.depth,
                                leaf_abs + n_trees, n_trees)
    rep = bound.chain_noise(p.poly_modulus_degree, p.plain_modulus, primes, p.primes[-1], p.depth,
                            leaf_abs + n_trees, False, n_trees)
    assert rep.ok and rep.log2_noise >= math.log2(horner)
    for halves in (False, True):
        response = forest.walk(horner=True, halves=halves)
        off = wire.HEADER.size
        for _ in range(p.n_outputs):
            (ln,) = struct.unpack_from("<I", response, off)
            ct = seal.Ciphertext()
            ct.load_bytes(forest.client.c.ctx, response[off + 4:off + 4 + ln])
            off += 4 + ln
            budget = forest.client.noise_budget(ct)
            measured = math.log2(math.prod(primes[:p.out_primes])) - budget - 1
            assert budget > 0
            assert math.log2(horner) + 1 >= measured


def test_identical_subtrees_have_a_zero_difference(forest: Flat) -> None:
    """SEAL refuses a transparent (all-zero) result; two equal subtree values differ by zero, not by an error."""
    from sei_adapter_trees.engine.horner import Ops

    s = forest.server
    _, bits = s.parse_request(forest.request)
    b = next(x for x in bits if x is not None)
    assert s._ops.difference(seal.Ciphertext(b), seal.Ciphertext(b)) is None
    assert isinstance(s._ops, Ops)


def test_one_tree_split_at_its_root_between_two_processes_equals_one_process() -> None:
    """One tree: this process evaluates one root half ((1 - bit) x left or bit x right), a worker the other."""
    X, y = load_breast_cancer(return_X_y=True)
    tree = Flat(DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y), X)
    assert tree.server._horner
    with WorkerPool(tree.plan, tree.keys, 2) as pool:
        assert len(pool._own) == 1 and pool._own[0][1] in (0, 1)  # a root half, the other in the worker
        got = tree.sums(pool.evaluate(tree.request))
    assert np.array_equal(got, tree.sums(tree.server.evaluate(tree.request)))


def test_an_unexpected_failure_mid_request_leaves_no_answer_in_the_pipes(forest: Flat) -> None:
    """This process fails its share after the worker was sent its own (here MemoryError): the worker's answer must
    not be read as the next request's. The pool stops its workers and the next answer is exact."""
    from sei_adapter_trees.pool import PooledServer

    want = forest.sums(forest.server.evaluate(forest.request))
    pooled = PooledServer(forest.plan, forest.keys, 2)
    server = pooled._pool.server
    real = server.partial

    def fails_once(*args: object) -> object:
        server.partial = real  # type: ignore[method-assign]
        raise MemoryError("injected")

    server.partial = fails_once  # type: ignore[method-assign]
    with pytest.raises(MemoryError, match="injected"):
        pooled.evaluate(forest.request)
    assert np.array_equal(forest.sums(pooled.evaluate(forest.request)), want)
    assert len(pooled._pool._procs) == 1  # fresh workers, not a fall-back to one process
    pooled._pool.close()
