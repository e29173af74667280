"""BGV parameters of the tree engine at 128-bit security, chosen from the deepest tree and the leaf values.

Why BGV and not CKKS: measured by ``bench/trees_scheme.py`` (docs/trees.md), a BGV ciphertext holds N rows
(CKKS N/2), a row-product costs about half as much, and the split bits are exact integers, so the only score
error is the rounding of leaf values (`bound.score_error_bound`), not accumulated approximation noise.

Layout of the modulus chain (SEAL drops the last data prime first): ``out_primes`` primes that the output keeps,
then ``depth - 1`` chain primes, each dropped after one product, then SEAL's special prime for key switching.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from functools import cache

import seal

from . import bound

__all__ = ["HES_MAX_BITS", "ParamsError", "TreeParams", "choose"]

# Homomorphic Encryption Standard, 128-bit classical security, ternary secret (SEAL's tc128 table).
HES_MAX_BITS = {8192: 218, 16384: 438, 32768: 881}
MAX_PRIME_BITS = 60
DEFAULT_TOLERANCE = 1e-6


class ParamsError(ValueError):
    """The ensemble cannot be served at 128-bit security within the tolerance; the message says why."""


@cache
def _primes(n: int, bits: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(m.value()) for m in seal.CoeffModulus.Create(n, list(bits)))


@cache
def _plain_modulus(n: int, bits: int) -> int:
    return int(seal.PlainModulus.Batching(n, bits).value())


def _batching_bits(n: int, bits: int) -> int | None:
    """The fewest plaintext bits >= `bits` for which SEAL has a batching prime at N=`n` (t = 1 mod 2N):
    some sizes have none, and a larger t only leaves more room. None above the largest size served."""
    for size in range(bits, MAX_PRIME_BITS - 7):
        try:
            _plain_modulus(n, size)
        except RuntimeError:  # SEAL found no prime of that size
            continue
        return size
    return None


@dataclass(frozen=True)
class TreeParams:
    """Everything both sides must agree on; `fingerprint` binds messages to it."""

    poly_modulus_degree: int
    plain_modulus_bits: int
    coeff_modulus_bits: tuple[int, ...]  # data primes (q_0 first) then the special prime
    out_primes: int                      # data primes left at the output level
    depth: int                           # deepest tree: internal nodes on its longest root-to-leaf path
    leaf_scale: float                    # leaf values are rounded to multiples of 1 / leaf_scale
    n_outputs: int
    scheme: str = "bgv"
    switching: bool = True               # drop one prime after each product (False: a flat modulus)

    @property
    def rows(self) -> int:
        """Rows one ciphertext carries (one per slot)."""
        return self.poly_modulus_degree

    @property
    def plain_modulus(self) -> int:
        return _plain_modulus(self.poly_modulus_degree, self.plain_modulus_bits)

    @property
    def primes(self) -> tuple[int, ...]:
        return _primes(self.poly_modulus_degree, self.coeff_modulus_bits)

    @property
    def data_primes(self) -> tuple[int, ...]:
        return self.primes[:-1]

    @property
    def top_primes(self) -> int:
        """Data primes of a fresh ciphertext (the top level)."""
        return len(self.coeff_modulus_bits) - 1

    def validate(self) -> None:
        lim = HES_MAX_BITS.get(self.poly_modulus_degree)
        if lim is None:
            raise ParamsError(f"poly_modulus_degree must be one of {sorted(HES_MAX_BITS)}")
        if sum(self.coeff_modulus_bits) > lim:
            raise ParamsError(f"{sum(self.coeff_modulus_bits)} modulus bits exceed the 128-bit bound {lim} "
                              f"at N={self.poly_modulus_degree}")
        if self.scheme != "bgv":
            raise ParamsError("scheme must be 'bgv'")
        chain = max(self.depth - 1, 0) if self.switching else 0
        if self.out_primes < 1 or self.top_primes != self.out_primes + chain:
            raise ParamsError("the modulus chain does not match the depth")
        if not 1 <= self.n_outputs <= 4096 or not self.leaf_scale > 0:
            raise ParamsError("n_outputs must be 1..4096 and leaf_scale > 0")

    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.to_json().encode()).digest()[:8]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> TreeParams:
        d = json.loads(s)
        d["coeff_modulus_bits"] = tuple(d["coeff_modulus_bits"])
        p = cls(**d)
        p.validate()
        return p


def choose(depth: int, n_trees: int, n_outputs: int, leaf_max_sum: float, leaf_abs_total: float,
           tolerance: float = DEFAULT_TOLERANCE, switching: bool | None = None) -> TreeParams:
    """The cheapest parameters (fewest primes, then smallest N) serving the ensemble within ``tolerance``.

    depth: the deepest tree's depth; leaf_max_sum: max over outputs of sum over trees of max |leaf value| (bounds
    the output); leaf_abs_total: max over outputs of sum over all leaves of |leaf value| (scales the noise);
    tolerance: the allowed |error| of each raw output (sum of tree outputs, before averaging); switching: force
    the chain layout (None: the cheaper by `cost`).
    Raises ParamsError naming what does not fit.
    """
    if depth < 0 or n_trees < 1 or n_outputs < 1 or not tolerance > 0:
        raise ParamsError("depth >= 0, n_trees >= 1, n_outputs >= 1 and tolerance > 0 are required")
    if not (math.isfinite(leaf_max_sum) and math.isfinite(leaf_abs_total)):
        raise ParamsError("leaf values must be finite")
    # leaf scale: a power of two with n_trees / (2 scale) <= tolerance
    scale = 2.0 ** math.ceil(math.log2(max(n_trees / (2 * tolerance), 1.0)))
    best: TreeParams | None = None
    reasons = []
    for n in sorted(HES_MAX_BITS):
        # |output| <= scale * leaf_max_sum + n_trees / 2 must stay below t / 2
        need = 2 * (scale * leaf_max_sum + n_trees / 2 + 1)
        t_bits = max(math.ceil(math.log2(need)) + 1, n.bit_length() + 2)
        found_bits = _batching_bits(n, t_bits)
        if found_bits is None:
            reasons.append(f"N={n}: leaf values need a {t_bits}-bit plaintext modulus (tolerance too tight or "
                           f"leaf values too large)")
            continue
        t_bits = found_bits
        t = _plain_modulus(n, t_bits)
        # spend the plaintext room on precision: the largest power-of-two scale that still fits
        room = (t / 2 - 1 - n_trees / 2) / leaf_max_sum if leaf_max_sum > 0 else scale
        n_scale = 2.0 ** math.floor(math.log2(room)) if leaf_max_sum > 0 else scale
        n_scale = min(max(n_scale, scale), 2.0 ** 52)
        fits = False
        for sw in (True, False) if switching is None else (switching,):
            found = _fit_chain(n, t, t_bits, depth, n_scale * leaf_abs_total + n_trees, sw, n_trees)
            if found is None:
                continue
            fits = True
            bits, out_primes = found
            cand = TreeParams(n, t_bits, bits, out_primes, depth, n_scale, n_outputs, switching=sw)
            if best is None or cost(cand) < cost(best) * 0.999:  # ties: the smaller N (tried first)
                best = cand
        if not fits:
            reasons.append(f"N={n}: depth {depth} needs more than {HES_MAX_BITS[n]} modulus bits")
    if best is None:
        raise ParamsError("cannot serve this ensemble at 128-bit security: " + "; ".join(reasons))
    best.validate()
    return best


def cost(p: TreeParams) -> float:
    """Estimated server cost per row of one full-depth path: a product at k primes costs about k (multiply)
    + k (k + 1) (relinearization with one special prime) + 2 k (two modulus switches) NTTs of N log N each,
    for N rows."""
    k = p.top_primes
    total = 0.0
    for _ in range(max(p.depth - 1, 1)):
        total += k + k * (k + 1) + (2 * k if p.switching else 0)
        if p.switching:
            k -= 1
    return total * math.log2(p.poly_modulus_degree)


def _fit_chain(n: int, t: int, t_bits: int, depth: int, leaf_abs_sum: float,
               switching: bool, n_trees: int = 1) -> tuple[tuple[int, ...], int] | None:
    """Smallest modulus (fewest primes, then fewest bits) whose noise bound leaves the margin.

    switching: ``out_primes`` 60-bit primes then ``depth - 1`` chain primes; flat: ``out_primes`` equal primes."""
    lim = HES_MAX_BITS[n]
    chain = max(depth - 1, 0)
    for out_primes in range(1, 15):
        sizes = range(t_bits + 8, MAX_PRIME_BITS + 1) if switching else range(30, MAX_PRIME_BITS + 1)
        for p_bits in sizes:
            if switching:
                bits = (MAX_PRIME_BITS,) * out_primes + (p_bits,) * chain + (MAX_PRIME_BITS,)
            else:
                bits = (p_bits,) * out_primes + (MAX_PRIME_BITS,)
            if sum(bits) > lim:
                break
            primes = _primes(n, bits)
            rep = bound.chain_noise(n, t, primes[:-1], primes[-1], depth, leaf_abs_sum, switching, n_trees)
            if rep.ok:
                return bits, out_primes
        if switching and out_primes >= 3:
            break
    return None
