"""The tail bounds both accuracy proofs use (EIServer's CKKS and the packed kernel's BFV-style noise).

Plain math, no framework or backend imports, so the packed kernel stays a standalone engine and a
service of one adapter never imports the other's backend.
"""

from __future__ import annotations

import math

__all__ = ["LOG_TAIL", "NOISE_PROXY", "bernstein_bound", "subgaussian_bound"]

LOG_TAIL = math.log(2.0) * 65
"""ln(2/delta) for delta = 2^-64: each tail bound fails with probability at most 2^-64."""
NOISE_PROXY = 10.5
"""Sub-Gaussian variance proxy of a fresh SEAL noise coefficient: CBD(21) has 21/2; SEAL 3.5's
normal with sigma 3.2, clipped, has 10.24."""


def subgaussian_bound(proxy: float) -> float:
    """|S| bound for a sub-Gaussian S with variance proxy `proxy`, failing with probability 2^-64."""
    return math.sqrt(2.0 * proxy * LOG_TAIL)


def bernstein_bound(n: int, c: float = 0.5, var: float = 1.0 / 12.0) -> float:
    """|sum of n independent zero-mean terms, |X| <= c, Var X <= var| bound, failing with probability 2^-64."""
    a = c * LOG_TAIL / 3.0
    return a + math.sqrt(a * a + 2.0 * LOG_TAIL * n * var)
