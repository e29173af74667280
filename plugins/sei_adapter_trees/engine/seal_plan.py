"""From an ensemble to what the encrypted engine runs: parameters, each split's level, quantised leaf constants.

The client sees only `ClientPlan` (parameters and the level of each split's ciphertext); the server keeps the
trees and the leaf constants. A split's level is the number of data primes its ciphertext needs: the level of the
shallowest node that uses it (a node at depth d >= 1 multiplies at ``top - (d - 1)``; the root's bit is used at
the top). Sending each split at that level, not the top, cuts the upload.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from . import bound, params

__all__ = ["ClientPlan", "EnsembleLike", "PlanTree", "ServerPlan", "TreeLike", "build_plan"]


class TreeLike(Protocol):
    """What the engine reads of `ir.Tree`."""

    @property
    def split(self) -> np.ndarray: ...

    @property
    def left(self) -> np.ndarray: ...

    @property
    def right(self) -> np.ndarray: ...

    @property
    def leaf_values(self) -> np.ndarray: ...

    def depth(self) -> int: ...


class EnsembleLike(Protocol):
    """What the engine reads of `ir.Ensemble`."""

    @property
    def splits(self) -> tuple[object, ...]: ...

    @property
    def trees(self) -> tuple[TreeLike, ...]: ...

    @property
    def n_outputs(self) -> int: ...


@dataclass(frozen=True)
class ClientPlan:
    """The public half of a plan: parameters and the level (data primes) of each split's ciphertext."""

    params: params.TreeParams
    split_levels: tuple[int, ...]

    @property
    def n_splits(self) -> int:
        return len(self.split_levels)

    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.to_json().encode()).digest()[:8]

    def to_json(self) -> str:
        return json.dumps({"params": json.loads(self.params.to_json()), "split_levels": list(self.split_levels)},
                          sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> ClientPlan:
        d = json.loads(s)
        p = params.TreeParams.from_json(json.dumps(d["params"]))
        levels = tuple(int(v) for v in d["split_levels"])
        if any(not p.out_primes <= v <= p.top_primes for v in levels):
            raise params.ParamsError("a split level lies outside the modulus chain")
        return cls(p, levels)

    def score_error_bound(self, n_trees: int) -> float:
        return bound.score_error_bound(n_trees, self.params.leaf_scale)


@dataclass(frozen=True)
class ServerPlan:
    """The server's half: the trees and each leaf's quantised constant per output (integers, |c| < t/2)."""

    client: ClientPlan
    trees: tuple[TreeLike, ...]
    leaf_consts: tuple[np.ndarray, ...]  # per tree: int64[n_leaves, n_outputs]

    @property
    def params(self) -> params.TreeParams:
        return self.client.params

    def to_bytes(self) -> bytes:
        """The plan as bytes (the client plan's JSON and the arrays in an .npz, no pickle), for worker processes."""
        arrays: dict[str, Any] = {"client": np.frombuffer(self.client.to_json().encode(), dtype=np.uint8)}
        for i, (t, c) in enumerate(zip(self.trees, self.leaf_consts, strict=True)):
            arrays.update({f"s{i}": np.asarray(t.split, np.int32), f"l{i}": np.asarray(t.left, np.int32),
                           f"r{i}": np.asarray(t.right, np.int32), f"c{i}": np.asarray(c, np.int64)})
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ServerPlan:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            client = ClientPlan.from_json(z["client"].tobytes().decode())
            n = sum(1 for k in z.files if k.startswith("s"))
            trees = tuple(PlanTree(z[f"s{i}"], z[f"l{i}"], z[f"r{i}"], z[f"c{i}"].astype(np.float64))
                          for i in range(n))
            consts = tuple(z[f"c{i}"] for i in range(n))
        return cls(client, trees, consts)


@dataclass(frozen=True, eq=False)
class PlanTree:
    """A tree as a worker process rebuilds it (its leaf values are the quantised constants)."""

    split: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_values: np.ndarray

    def depth(self) -> int:
        if len(self.split) == 0:
            return 0
        best, stack = 0, [(0, 1)]
        while stack:
            node, d = stack.pop()
            best = max(best, d)
            stack.extend((c, d + 1) for c in (int(self.left[node]), int(self.right[node])) if c >= 0)
        return best


def _split_levels(ens: EnsembleLike, top: int, bottom: int) -> tuple[int, ...]:
    n_splits = len(ens.splits)
    min_depth = np.full(n_splits, 1 << 30, dtype=np.int64)
    for t in ens.trees:
        if t.split.shape[0] == 0:
            continue
        stack = [(0, 0)]
        while stack:
            node, d = stack.pop()
            s = int(t.split[node])
            min_depth[s] = min(min_depth[s], d)
            for c in (int(t.left[node]), int(t.right[node])):
                if c >= 0:
                    stack.append((c, d + 1))
    # a split no node uses is still sent (the client's bit layout is fixed by the split list), at the lowest level
    return tuple(top - max(int(d) - 1, 0) if d < (1 << 30) else bottom for d in min_depth)


def build_plan(ens: EnsembleLike, tolerance: float = params.DEFAULT_TOLERANCE,
               per_split_levels: bool = True, switching: bool | None = None) -> ServerPlan:
    """Choose parameters for the ensemble and quantise its leaves; raise ParamsError if it cannot be served.

    per_split_levels=False sends every split at the top level: more upload, but the client no longer learns the
    shallowest depth at which each split is used.
    """
    trees = tuple(ens.trees)
    if not trees:
        raise params.ParamsError("the ensemble has no trees")
    depth = max(t.depth() for t in trees)
    vals = [np.asarray(t.leaf_values, dtype=np.float64) for t in trees]
    if any(v.ndim != 2 or v.shape[1] != ens.n_outputs for v in vals):
        raise params.ParamsError("leaf_values must be [n_leaves, n_outputs]")
    leaf_max_sum = float(np.max(np.sum([np.abs(v).max(axis=0) for v in vals], axis=0)))
    leaf_abs_total = float(np.max(np.sum([np.abs(v).sum(axis=0) for v in vals], axis=0)))
    p = params.choose(depth, len(trees), ens.n_outputs, leaf_max_sum, leaf_abs_total, tolerance, switching)
    consts = tuple(np.rint(v * p.leaf_scale).astype(np.int64) for v in vals)
    top = p.top_primes
    flat = not (per_split_levels and p.switching)  # a flat modulus has one level
    levels = (top,) * len(ens.splits) if flat else _split_levels(ens, top, p.out_primes)
    return ServerPlan(ClientPlan(p, levels), trees, consts)
