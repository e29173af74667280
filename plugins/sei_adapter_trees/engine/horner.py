"""Bottom-up evaluation of one tree for one output, on a flat modulus (no prime dropped between products).

A subtree's value is f(leaf) = its constant and f(u) = f(left) + bit_u * (f(right) - f(left)). Each value is held
as a ciphertext plus an integer constant (None: the constant alone). A node whose children are leaves costs
one plaintext product and no ciphertext product; every other node one ciphertext product, and a relinearization
only of its difference f(right) - f(left) when that is a product (size 3). Products are left unrelinearized:
sums of them are relinearized once per output. Against the top-down walk (an indicator per node) this halves
both the products and the relinearizations of a complete tree; `bound.horner_noise` bounds its noise.

Work units split a tree at its root for two workers: side 0 is (1 - bit) * f(left), side 1 is bit * f(right).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import seal

__all__ = ["Ops", "tree_value"]

Value = tuple["seal.Ciphertext | None", int]


@dataclass(frozen=True)
class Ops:
    """What the walk needs of a server: its evaluator, relinearization keys, plaintext modulus and constant caches
    (an NTT plaintext and a noiseless ciphertext of a constant at a level)."""

    evaluator: Any
    relin_keys: Any
    t: int
    const_ntt: Callable[[int, int], seal.Plaintext]
    const_ct: Callable[[int, int], seal.Ciphertext]

    def times(self, w: seal.Ciphertext, x: seal.Ciphertext | None, c: int) -> seal.Ciphertext | None:
        """w * (x + c) for a size-2 ciphertext w; x is consumed (relinearized and changed in place)."""
        ev, k = self.evaluator, w.coeff_modulus_size()
        if x is None:
            return ev.multiply_plain(w, self.const_ntt(c, k)) if c % self.t else None
        if x.size() > 2:
            ev.relinearize_inplace(x, self.relin_keys)
        if c % self.t:
            ev.add_inplace(x, self.const_ct(c, k))
        ev.multiply_inplace(x, w)
        return x

    def difference(self, right: seal.Ciphertext | None, left: seal.Ciphertext | None) -> seal.Ciphertext | None:
        """right - left as a new ciphertext (None: zero)."""
        ev = self.evaluator
        if left is None:
            return None if right is None else seal.Ciphertext(right)
        if right is None:
            return ev.negate(left)
        try:
            return ev.sub(right, left)
        except RuntimeError as e:  # identical subtrees: the difference is zero (SEAL refuses a transparent result)
            if "transparent" not in str(e):
                raise
            return None


def _node(ops: Ops, bit: seal.Ciphertext, left: Value, right: Value) -> Value:
    (a_ct, a), (b_ct, b) = left, right
    prod = ops.times(bit, ops.difference(b_ct, a_ct), b - a)
    if prod is None:
        return a_ct, a
    if a_ct is not None:
        ops.evaluator.add_inplace(prod, a_ct)
    return prod, a


def tree_value(ops: Ops, tree: Any, consts: np.ndarray, side: int,
               bit: Callable[[int], seal.Ciphertext]) -> Value:
    """The tree's value for one output: side -1 the whole tree; 0 or 1 the root's (1 - bit) * left or bit * right
    subtree. ``consts`` holds each leaf's integer constant; ``bit(s)`` returns split s's ciphertext."""
    split, lefts, rights = tree.split, tree.left, tree.right

    done: dict[int, Value] = {}

    def child(c: int) -> Value:
        """A leaf's constant, or an internal child's value (computed earlier; taken once)."""
        return done.pop(c) if c >= 0 else (None, int(consts[~c]))

    def value(node: int) -> Value:
        if node < 0:
            return child(node)
        stack = [node]  # post-order without recursion
        while stack:
            u = stack[-1]
            lc, rc = int(lefts[u]), int(rights[u])
            kids = [c for c in (lc, rc) if c >= 0 and c not in done]
            if kids:
                stack.extend(kids)
                continue
            stack.pop()
            done[u] = _node(ops, bit(int(split[u])), child(lc), child(rc))
        return done.pop(node)

    if side < 0:
        return value(0)
    b = bit(int(split[0]))
    sub_ct, sub_c = value(int((lefts, rights)[side][0]))
    if side == 1:
        return ops.times(b, sub_ct, sub_c), 0
    ev = ops.evaluator
    one_minus = ev.negate(b)
    ev.add_inplace(one_minus, ops.const_ct(1, b.coeff_modulus_size()))
    return ops.times(one_minus, sub_ct, sub_c), 0
