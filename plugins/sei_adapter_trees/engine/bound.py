"""Noise and error bounds of the BGV tree engine, computed from the parameters, the tree shapes and the leaves.

Two separate questions:

* **Decryption is correct** (the result decrypts to the exact integer sum mod t). The noise analysis below is the
  standard canonical-embedding analysis of BGV (as in Costache, Laine and Player, ESORICS 2020, and Iliashenko's
  thesis): a polynomial whose N coefficients are independent with variance V has canonical norm at most
  ``TAIL * sqrt(N * V)`` (central limit, TAIL = 6: each bound fails with probability below 2^-25 per slot);
  products are submultiplicative; the infinity norm of the coefficients is at most the canonical norm, and BGV
  decrypts correctly while it stays below Q/2. `params.choose` picks primes so the bound holds with a margin
  of ``MARGIN_BITS``.
* **The score error**, given correct decryption. The split bits are exact 0/1 integers, every product is exact,
  and the only error is the rounding of each leaf value to an integer multiple of 1/scale: at most
  ``1 / (2 * scale)`` per tree a row visits, so ``n_trees / (2 * scale)`` per raw output (before averaging).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MARGIN_BITS", "SIGMA", "TAIL", "NoiseReport", "chain_noise", "horner_noise", "score_error_bound"]

TAIL = 6.0            # tail factor of the central-limit bounds
SIGMA = 3.2           # SEAL's error standard deviation
SECRET_VAR = 2.0 / 3  # ternary uniform secret
MARGIN_BITS = 10      # the final noise bound must stay 2^10 below Q/2


def _b(n: int, var: float) -> float:
    """Canonical-norm bound of a polynomial with n independent coefficients of variance var."""
    return TAIL * math.sqrt(n * var)


def fresh(n: int, t: int) -> float:
    """m + t*e of a fresh symmetric encryption (m centred mod t)."""
    return _b(n, t * t / 12 + t * t * SIGMA * SIGMA)


def scale_noise(n: int, t: int, size: int) -> float:
    """Rounding term a modulus switch adds: t*(tau_0 + tau_1 s [+ tau_2 s^2]) with tau uniform mod t."""
    var = t * t / 12 * (1 + n * SECRET_VAR + (n * n * SECRET_VAR ** 2 if size >= 3 else 0))
    return _b(n, var)


def relin_noise(n: int, t: int, n_primes: int, q_max: int, special: int) -> float:
    """Key switching with one special prime P: t * sum_i [c2]_{q_i} e_i / P plus the rounding of the mod-down."""
    ks = TAIL * t * n * SIGMA * math.sqrt(n_primes / 12) * q_max / special
    return ks + scale_noise(n, t, 2)


@dataclass(frozen=True)
class NoiseReport:
    """log2 of the noise bound at the output and of the output level's Q/2; ``ok`` when margin bits remain."""

    log2_noise: float
    log2_half_q: float

    @property
    def margin_bits(self) -> float:
        return self.log2_half_q - self.log2_noise

    @property
    def ok(self) -> bool:
        return self.margin_bits >= MARGIN_BITS


def chain_noise(n: int, t: int, data_primes: Sequence[int], special: int, depth: int,
                leaf_abs_sum: float, switching: bool = True, n_trees: int = 1) -> NoiseReport:
    """Noise bound of one output: indicators down ``depth`` levels, leaf constants summed.

    ``data_primes`` in SEAL order (q_0 first; the last is dropped first); the bits start fresh at the top level
    and after each of the ``depth - 1`` products the product is switched down one prime. ``leaf_abs_sum`` is the
    sum over all leaves of all trees of |quantised leaf constant| for that output (a constant c scales noise by |c|).
    The final relinearization of the sum happens at the output level. ``switching=False``: no prime is dropped
    (a flat modulus: fewer, cheaper operations per product, more modulus bits for deep trees); the server may then
    walk the trees bottom-up (`horner`), so the bound is the larger of both walks' (``n_trees`` trees).
    """
    if depth < 0 or len(data_primes) < (max(depth, 1) if switching else 1):
        raise ValueError("not enough data primes for the depth")
    nu_bit = fresh(n, t)
    # depth-1 nodes: indicator = bit or 1 - bit (no product yet)
    nu = nu_bit + 1.0
    level = len(data_primes)  # primes in the current modulus
    for _ in range(1, depth):
        if not switching:
            right = nu * nu_bit + relin_noise(n, t, level, max(data_primes), special)
            nu = nu + right
            continue
        p = data_primes[level - 1]
        q_max = max(data_primes[:level])
        # the bit, switched down from its fresh level to this one (its noise shrinks; never below the rounding)
        nu_b = nu_bit  # a bit below its upload level keeps its residues under fewer primes: fresh noise
        # a product whose children are both leaves skips relinearization (size 3): bound every switch as size 3
        right = nu * nu_b + relin_noise(n, t, level, q_max, special)
        right = right / p + scale_noise(n, t, 3)
        parent = nu / p + scale_noise(n, t, 3)
        nu = right + parent  # the left child = parent - right bounds both children
        level -= 1
    out_primes = data_primes[:level]
    q_max = max(out_primes)
    total = leaf_abs_sum * nu + relin_noise(n, t, level, q_max, special)
    if not switching:
        total = max(total, horner_noise(n, t, data_primes, special, depth, leaf_abs_sum, n_trees))
    half_q = math.prod(out_primes) / 2
    return NoiseReport(math.log2(total), math.log2(half_q))


def horner_noise(n: int, t: int, data_primes: Sequence[int], special: int, depth: int, leaf_abs_sum: float,
                 n_trees: int) -> float:
    """Noise bound of one output of the bottom-up walk (`horner`) on a flat modulus.

    With x the bound of a fresh bit and R of a relinearization, a node's value f = f_L + bit * (relin(f_R - f_L))
    has ||f|| <= (1 + x)(||f_L|| + ||f_R||) + x R, a root split for two workers (1 - bit)(relin(f_L)) +
    bit (relin(f_R)) at most (1 + x)(||f_L|| + ||f_R||) + 2 (1 + x) R, and a leaf its constant. Unrolled: each leaf
    constant times (1 + x)^(its depth <= depth), plus, per relinearizing node at depth d (only nodes at depth
    <= depth - 3 relinearize, and the root; at most 2^d per tree), 2 (1 + x) R (1 + x)^d; then the output's
    relinearization. The phase's constant part (at most ``leaf_abs_sum``) is counted once more.
    """
    x = fresh(n, t)
    r = relin_noise(n, t, len(data_primes), max(data_primes), special)
    try:
        relinearizing = sum(2.0 ** d * (1 + x) ** d for d in range(max(depth - 2, 1)))
        return leaf_abs_sum * ((1 + x) ** depth + 1) + n_trees * 2 * (1 + x) * r * relinearizing + r
    except OverflowError:  # far beyond any modulus
        return math.inf


def score_error_bound(n_trees: int, leaf_scale: float) -> float:
    """Bound on |decrypted raw output - exact sum of leaf values|: each tree's leaf is rounded to 1/leaf_scale."""
    return n_trees / (2.0 * leaf_scale)
