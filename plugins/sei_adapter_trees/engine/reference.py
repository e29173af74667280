"""Plaintext evaluation of the IR from split bits, with the same indicator products the encrypted engine uses.

Walking down a tree: the root's indicator is 1; at an internal node with indicator ``p`` and bit ``b`` (1 = the
row goes right), ``right = p * b`` and ``left = p - right``. Each output is the sum over trees, in tree order, of
``leaf value x leaf indicator``. On 0/1 bits every indicator is exactly 0 or 1, so this is the library's own walk;
the encrypted engine computes the same products on ciphertexts.
"""

from __future__ import annotations

import numpy as np

from .ir import Ensemble, Tree


def leaf_indicators(tree: Tree, bits: np.ndarray) -> np.ndarray:
    """float64[n_leaves, n_rows]: 1 where the row reaches the leaf. ``bits`` is [n_splits, n_rows]."""
    n_rows = bits.shape[1]
    leaves = np.zeros((tree.n_leaves, n_rows), dtype=np.float64)
    if tree.n_internal == 0:
        leaves[0] = 1.0
        return leaves
    stack = [(0, np.ones(n_rows, dtype=np.float64))]
    while stack:
        node, parent = stack.pop()
        right = parent * bits[int(tree.split[node])]
        left = parent - right
        for child, ind in ((int(tree.left[node]), left), (int(tree.right[node]), right)):
            if child >= 0:
                stack.append((child, ind))
            else:
                leaves[~child] = ind
    return leaves


def tree_sums(ensemble: Ensemble, bits: np.ndarray) -> np.ndarray:
    """float64[n_rows, n_outputs]: the sum over trees of each row's leaf values (before averaging and base
    score), what the encrypted engine returns."""
    bits = np.asarray(bits)
    if bits.ndim != 2 or bits.shape[0] != len(ensemble.splits):
        raise ValueError(f"bits must be [{len(ensemble.splits)} splits, n_rows], got shape {bits.shape}")
    b = bits.astype(np.float64)
    total = np.zeros((b.shape[1], ensemble.n_outputs), dtype=np.float64)
    for tree in ensemble.trees:
        total += leaf_indicators(tree, b).T @ tree.leaf_values
    return total
