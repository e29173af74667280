"""Outputs of an ensemble that follow exactly from another one, so the server walks the leaves only once."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["derived_outputs"]


def derived_outputs(leaf_consts: Iterable[np.ndarray], n_outputs: int) -> dict[int, tuple[int, int, int]]:
    """Outputs that follow from an earlier one: ``{o: (base, sign, const)}`` when, in every tree, output o's
    leaf constant equals ``sign`` times the base's plus one per-tree constant (a two-class forest's class
    fractions: p1 = 1 - p0). A row reaches exactly one leaf per tree, so output o = sign * base + const (the sum
    of those per-tree constants), exactly, in integers; the server then walks the leaves for the base only."""
    consts = [np.asarray(c, dtype=np.int64) for c in leaf_consts]
    out: dict[int, tuple[int, int, int]] = {}
    for o in range(1, n_outputs):
        for base in range(o):
            if base in out:
                continue
            for sign in (-1, 1):
                diffs = [c[:, o] - sign * c[:, base] for c in consts]
                if all(d.size and np.all(d == d[0]) for d in diffs):
                    out[o] = (base, sign, int(sum(int(d[0]) for d in diffs)))
                    break
            if o in out:
                break
    return out
