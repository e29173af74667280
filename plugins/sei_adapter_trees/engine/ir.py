"""The tree-ensemble IR: the one representation every library's model is imported into.

The encrypted engine needs only ``splits``, ``trees`` (structure and leaf values) and ``n_outputs``; the rest
(base score, averaging, post-processing, labels) is plaintext work on the client (``postprocess``).

A split's bit is 1 when the row goes RIGHT. Splits are deduplicated across all trees: two nodes that compare
the same feature against the same threshold the same way (operator, precision, NaN direction) share one bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Op = Literal["<", "<="]
Dtype = Literal["float32", "float64"]
Task = Literal["classification", "regression"]

# The client-side post-processors ``postprocess.apply`` implements, by name.
POSTPROCESSORS = ("identity", "sigmoid", "softmax", "exponential", "logarithm_one_plus_exp")


_MAX = float(np.finfo(np.float64).max)


class IRError(ValueError):
    """An ensemble that breaks the IR's invariants (a bug in an importer, or a model SEI cannot represent)."""


@dataclass(frozen=True)
class Split:
    """One distinct comparison of the ensemble.

    The row goes LEFT when ``x <op> threshold``, with ``x`` first rounded to ``dtype`` (the library's comparison
    precision: scikit-learn trees and XGBoost compare float32, LightGBM and HistGradientBoosting float64), and the
    comparison done in float64 against ``threshold`` exactly as the library stores it. NaN goes left iff
    ``nan_left``. The bit the client sends is 1 when the row goes RIGHT. ``threshold`` is finite (``finite_split``).
    """

    feature: int
    threshold: float
    op: Op
    dtype: Dtype
    nan_left: bool


def finite_split(feature: int, threshold: float, op: Op, dtype: Dtype, nan_left: bool) -> Split:
    """The split, with an infinite threshold replaced by the finite comparison that routes every finite value
    the same way (``x <= +inf`` and ``x < +inf``: ``x <= MAX``; ``x <= -inf`` and ``x < -inf``: ``x < -MAX``).
    Libraries store such thresholds for "all values one side, NaN the other" splits."""
    if threshold == np.inf:
        return Split(feature, _MAX, "<=", dtype, nan_left)
    if threshold == -np.inf:
        return Split(feature, -_MAX, "<", dtype, nan_left)
    return Split(feature, float(threshold), op, dtype, nan_left)


@dataclass(frozen=True, eq=False)
class Tree:
    """One tree in array form; node 0 is the root (a single-leaf tree has no internal node).

    ``split[i]`` indexes ``Ensemble.splits`` for internal node ``i``; ``left[i]``/``right[i]`` is a child: ``>= 0``
    an internal node id, ``< 0`` the leaf ``~child``. ``leaf_values[j]`` is what leaf ``j`` adds to each raw output.
    """

    split: np.ndarray  # int32[n_internal]
    left: np.ndarray  # int32[n_internal]
    right: np.ndarray  # int32[n_internal]
    leaf_values: np.ndarray  # float64[n_leaves, n_outputs]

    @property
    def n_internal(self) -> int:
        return int(self.split.shape[0])

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_values.shape[0])

    def leaf_depths(self) -> np.ndarray:
        """int64[n_leaves]: the number of internal nodes on the path from the root to each leaf."""
        depths = np.zeros(self.n_leaves, dtype=np.int64)
        if self.n_internal == 0:
            return depths
        stack = [(0, 0)]
        while stack:
            node, depth = stack.pop()
            for child in (int(self.left[node]), int(self.right[node])):
                if child >= 0:
                    stack.append((child, depth + 1))
                else:
                    depths[~child] = depth + 1
        return depths

    def depth(self) -> int:
        """The tree's depth: the most internal nodes on a root-to-leaf path (0 for a single leaf)."""
        return int(self.leaf_depths().max()) if self.n_leaves else 0

    def leaf_paths(self) -> list[list[tuple[int, bool]]]:
        """For each leaf, its path as ``(split index, goes_right)`` from the root down."""
        paths: list[list[tuple[int, bool]]] = [[] for _ in range(self.n_leaves)]
        if self.n_internal == 0:
            return paths
        stack: list[tuple[int, list[tuple[int, bool]]]] = [(0, [])]
        while stack:
            node, path = stack.pop()
            s = int(self.split[node])
            for child, right in ((int(self.left[node]), False), (int(self.right[node]), True)):
                step = [*path, (s, right)]
                if child >= 0:
                    stack.append((child, step))
                else:
                    paths[~child] = step
        return paths


@dataclass(frozen=True, eq=False)
class Ensemble:
    """A tree ensemble: what the server evaluates (``splits``, ``trees``, ``n_outputs``) and what the client
    applies afterwards: ``raw = base_score + (sum of tree outputs) [/ n_trees if average]``, then ``postprocess``.

    ``classes`` holds the original labels (any type) for classification; ``postprocess_params`` holds named
    constants a post-processor needs (e.g. ``sigmoid_alpha``).
    """

    n_features: int
    splits: tuple[Split, ...]
    trees: tuple[Tree, ...]
    n_outputs: int
    base_score: np.ndarray  # float64[n_outputs], added on the client
    average: bool  # raw = sum / n_trees (forests)
    postprocess: str  # one of POSTPROCESSORS
    task: Task
    classes: tuple[Any, ...] | None
    postprocess_params: dict[str, float] = field(default_factory=dict)

    @property
    def n_trees(self) -> int:
        return len(self.trees)

    def max_depth(self) -> int:
        """The deepest tree's depth (the multiplicative depth the encrypted engine needs)."""
        return max((t.depth() for t in self.trees), default=0)

    def validate(self) -> Ensemble:
        """Check every invariant; raise IRError naming the first broken one. Returns self."""
        if self.n_features < 1:
            raise IRError(f"n_features must be >= 1, got {self.n_features}")
        if self.n_outputs < 1:
            raise IRError(f"n_outputs must be >= 1, got {self.n_outputs}")
        if not self.trees:
            raise IRError("the ensemble has no trees")
        if len(set(self.splits)) != len(self.splits):
            raise IRError("splits are not deduplicated")
        for s in self.splits:
            if not 0 <= s.feature < self.n_features:
                raise IRError(f"split on feature {s.feature}, outside 0..{self.n_features - 1}")
            if s.op not in ("<", "<=") or s.dtype not in ("float32", "float64"):
                raise IRError(f"split {s}: unknown operator or dtype")
            if not np.isfinite(s.threshold):
                raise IRError(f"split on feature {s.feature} has a non-finite threshold (use finite_split)")
        if self.base_score.shape != (self.n_outputs,) or self.base_score.dtype != np.float64:
            raise IRError(f"base_score must be float64[{self.n_outputs}], got {self.base_score.dtype}{self.base_score.shape}")
        if self.postprocess not in POSTPROCESSORS:
            raise IRError(f"unknown post-processor {self.postprocess!r}")
        if self.task == "classification":
            if not self.classes or len(self.classes) < 2:
                raise IRError("a classifier needs at least two classes")
        elif self.classes is not None:
            raise IRError("a regressor has no classes")
        for k, t in enumerate(self.trees):
            _validate_tree(k, t, len(self.splits), self.n_outputs)
        return self


def _validate_tree(k: int, t: Tree, n_splits: int, n_outputs: int) -> None:
    n = t.n_internal
    for name, arr in (("split", t.split), ("left", t.left), ("right", t.right)):
        if arr.dtype != np.int32 or arr.shape != (n,):
            raise IRError(f"tree {k}: {name} must be int32[{n}], got {arr.dtype}{arr.shape}")
    if t.leaf_values.dtype != np.float64 or t.leaf_values.ndim != 2 or t.leaf_values.shape[1] != n_outputs:
        raise IRError(f"tree {k}: leaf_values must be float64[n_leaves, {n_outputs}]")
    if not np.isfinite(t.leaf_values).all():
        raise IRError(f"tree {k}: a leaf value is not finite")
    if t.n_leaves != n + 1:
        raise IRError(f"tree {k}: {n} internal nodes need {n + 1} leaves, got {t.n_leaves}")
    if n and (t.split.min() < 0 or t.split.max() >= n_splits):
        raise IRError(f"tree {k}: a node's split index is out of range")
    children = np.concatenate([t.left, t.right])
    internal = np.sort(children[children >= 0])
    leaves = np.sort(~children[children < 0])
    # Every node but the root is some node's child exactly once; every leaf is reached exactly once.
    if not (np.array_equal(internal, np.arange(1, n)) and np.array_equal(leaves, np.arange(t.n_leaves))):
        if n or t.n_leaves != 1:
            raise IRError(f"tree {k}: children do not form a tree rooted at node 0")
    # With one parent per node and none for the root, a walk from the root terminates; it must see every node.
    seen, stack = 0, [0] if n else []
    while stack:
        node = stack.pop()
        seen += 1
        stack.extend(c for c in (int(t.left[node]), int(t.right[node])) if c >= 0)
    if seen != n:
        raise IRError(f"tree {k}: {n - seen} internal nodes are unreachable from the root")
