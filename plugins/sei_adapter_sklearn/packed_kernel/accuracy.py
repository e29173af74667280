"""What the packed kernel proves for one model: score range, exact bulk products, error bound; `plan`.

A decoded score differs from the float model `x @ w + b` by
  quantisation   sum_i |w_i - Wq_i 2^-lw| max|x_i| + 2^-(lx+1) sum_i |Wq_i| 2^-lw + |b - bq 2^-T|  (worst case)
  RLWE noise     (e . P + e_rerand) / 2^T, P the weights the score coefficient sees       (tail bound)
  mod switch     rounding of c0 and of c1 (times the ternary secret) when the response is switched to 2^32
with T = lx + lw. Worst-case terms hold for every input inside the feature bounds; the noise and
rounding terms are sub-Gaussian / Bernstein tail bounds that fail with probability < 2^-60 per score.
A decoded value is exact as long as |Q-level message| < Q/2; `plan` keeps a factor 2 of headroom
above the declared score bound so that the client can tell an out-of-range value from a score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from ..tail_bounds import NOISE_PROXY, bernstein_bound, subgaussian_bound  # 4 tail events: < 2^-60 per score
from .params import RESPONSE_BITS, Params, coeff_modulus_bits, ring_degree

__all__ = ["AccuracyError", "Analysis", "Plan", "analyse", "exact_limb_bits", "plan", "score_range"]

EXACT_FLOAT = 2 ** 53        # every integer of magnitude <= 2^53 is a float64
MAX_LIMB_BITS = 16
INT64_SAFE = 2 ** 62         # |Wq|, |xq| stay below this (int64 with room)
NOISE_MAX = 21               # |e| of a fresh noise coefficient: SEAL's CBD(21), or its Gaussian clipped at 19.2
HEADROOM = 2.0               # decoded values wrap only beyond HEADROOM x (max_abs_score + tolerance)


class AccuracyError(ValueError):
    """No parameters within 128-bit security serve this model within the tolerance; says which bound."""

    def __init__(self, message: str, *, error_bound: float | None = None, max_abs_score: float | None = None):
        super().__init__(message)
        self.error_bound = error_bound
        self.max_abs_score = max_abs_score


def rerandomisation_noise(N: int) -> float:
    """Noise of SEAL's Enc_pk(0) (u e_pk + e1 + e2 s, whether or not SEAL divides it by the special
    prime, plus that division's rounding), in units of the data level."""
    return 2.0 * subgaussian_bound(NOISE_PROXY * N) + NOISE_MAX + 0.5 + bernstein_bound(N)


def switch_error(N: int) -> float:
    """Decryption error from switching c0, c1 to 2^32 (units of 2^32): c0's rounding, c1's rounding
    times the ternary secret (uniform c1: zero-mean, variance 1/12), and the float64 switch's 2^-20."""
    return 0.5 + 2.0 ** -20 + bernstein_bound(N, c=0.5 + 2.0 ** -20) + N * 2.0 ** -20


def exact_limb_bits(Wq: np.ndarray) -> int:
    """Widest limb (<= 16 bits) for which the bulk product Wq @ limb is exact in float64.

    Every partial sum of row k, in any order BLAS adds, is an integer of magnitude at most
    ||Wq_k||_1 (2^lb - 1); <= 2^53 makes every one of them a float64. Raises if even 1-bit limbs
    cannot be exact.
    """
    Wq = np.asarray(Wq, dtype=np.float64)
    d = max(Wq.shape[-1], 1)
    l1 = float(np.abs(Wq).sum(axis=-1).max(initial=0.0)) * (1.0 + d * 2.0 ** -52)  # float rounding, upwards
    if l1 == 0:
        return MAX_LIMB_BITS
    bits = min(MAX_LIMB_BITS, int(math.floor(math.log2(EXACT_FLOAT / l1 + 1.0))))
    while bits >= 1 and (2 ** bits - 1) * l1 > EXACT_FLOAT:
        bits -= 1
    if bits < 1:
        raise ValueError(f"bulk products cannot be exact: sum |Wq| = {l1:.3g} > 2^53 even for 1-bit limbs")
    return bits


def score_range(W: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """max over outputs and over the box lo <= x <= hi of |x @ w_k + b_k| (float model)."""
    top = np.maximum(W * lo, W * hi).sum(axis=1) + b
    bottom = np.minimum(W * lo, W * hi).sum(axis=1) + b
    return float(np.maximum(np.abs(top), np.abs(bottom)).max(initial=0.0))


@dataclass(frozen=True)
class Analysis:
    """Bounds for one model under one Params (score units unless named otherwise)."""

    error_bound: float        # max over outputs of |decoded - float score| (inputs in the bounds)
    quantisation: float       # of which: the worst-case quantisation part
    noise: float              # of which: RLWE noise and modulus-switch rounding (tail bounds)
    wrap_score: float         # |score| beyond which a decoded value wraps around
    message_fits: bool        # the Q-level message of every in-bound input is < Q/2 (no wrap)
    limb_bits: int | None     # bulk: the exact limb width (None: no exact width, or single mode)
    problem: str | None = None  # why these Params cannot work at all (int64 range, exactness)


def _block_norms(Wq: np.ndarray, p: Params) -> tuple[np.ndarray, np.ndarray]:
    """L1 and L2 norms of the weights a score coefficient is multiplied with, per output."""
    A = np.abs(Wq)
    l1, l2sq = A.sum(axis=1), (A * A).sum(axis=1)
    if p.mode == "single":   # the score coefficient sees every weight of its block (negacyclic product)
        block = np.arange(Wq.shape[0]) // p.outputs_per_block
        sums1 = np.bincount(block, weights=l1)
        sums2 = np.bincount(block, weights=l2sq)
        l1, l2sq = sums1[block], sums2[block]
    return l1, np.sqrt(l2sq)


def analyse(W: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, p: Params) -> Analysis:
    """The bounds of the module docstring for `p`, inputs in [lo, hi] (per feature)."""
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    lx, lw = p.log_scale_x, p.log_scale_w
    T = lx + lw
    N, Q = p.poly_modulus_degree, float(p.Q)
    xmax = np.maximum(np.abs(lo), np.abs(hi))
    inf = float("inf")
    if np.abs(W).max(initial=0.0) * 2.0 ** lw >= INT64_SAFE or xmax.max(initial=0.0) * 2.0 ** lx >= INT64_SAFE:
        return Analysis(inf, inf, inf, 0.0, False, None, "weights or inputs overflow int64 at these scales")
    Wq = np.rint(W * 2.0 ** lw)
    bq = np.rint(b * 2.0 ** T)
    quant = (np.abs(W - Wq * 2.0 ** -lw) @ xmax + 2.0 ** -(lx + 1) * 2.0 ** -lw * np.abs(Wq).sum(axis=1)
             + np.abs(b - bq * 2.0 ** -T)) * (1.0 + 2.0 ** -40)
    l1, l2 = _block_norms(Wq, p)
    noise_q = np.minimum(NOISE_MAX * l1, subgaussian_bound(NOISE_PROXY) * l2) + rerandomisation_noise(N)  # data level
    switch_q = switch_error(N) * Q / 2.0 ** 32 if p.switches_modulus else 0.0                     # data level
    xq_lo, xq_hi = np.rint(lo * 2.0 ** lx), np.rint(hi * 2.0 ** lx)
    top = np.maximum(Wq * xq_lo, Wq * xq_hi).sum(axis=1) + bq
    bottom = np.minimum(Wq * xq_lo, Wq * xq_hi).sum(axis=1) + bq
    message = np.maximum(np.abs(top), np.abs(bottom)) * (1.0 + 2.0 ** -30) + noise_q + switch_q
    scale = 2.0 ** T
    noise = float(noise_q.max(initial=0.0) + switch_q) / scale
    wrap = (Q / 2.0 - float(noise_q.max(initial=0.0)) - switch_q) / scale
    decode = wrap * 2.0 ** -50          # float64 conversion and division of the decoded integer
    error = float((quant + noise_q / scale).max(initial=0.0)) + switch_q / scale + decode
    limb_bits, problem = None, None
    if p.mode == "bulk":
        try:
            limb_bits = exact_limb_bits(Wq)
        except ValueError as exc:
            problem = str(exc)
    return Analysis(error, float(quant.max(initial=0.0)), noise, wrap, bool(np.all(message < Q / 2.0)),
                    limb_bits, problem)


@dataclass(frozen=True)
class Plan:
    """Parameters proven for a model: scores within `max_abs_score`, errors within `error_bound`."""

    params: Params
    max_abs_score: float      # |float score| of any in-bound input is at most this
    tolerance: float
    analysis: Analysis

    @property
    def error_bound(self) -> float:
        return self.analysis.error_bound


def _check_inputs(W: ArrayLike, b: ArrayLike, lo: ArrayLike, hi: ArrayLike, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if W.ndim != 2 or b.shape != (W.shape[0],):
        raise ValueError("W must be (n_outputs, n_features) and b (n_outputs,)")
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (W.shape[1],)).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (W.shape[1],)).copy()
    for name, array in (("weights", W), ("intercepts", b), ("feature bounds", lo), ("feature bounds", hi)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"non-finite {name}")
    if np.any(lo > hi):
        raise ValueError("every feature bound needs lo <= hi")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")
    return W, b, lo, hi


def plan(W: ArrayLike, b: ArrayLike, lo: ArrayLike, hi: ArrayLike, mode: str, tolerance: float, max_abs_score: float | None = None,
         response_bits: tuple[int, ...] = RESPONSE_BITS, max_error: float | None = None) -> Plan:
    """Scales (and response width) that serve `x @ W.T + b` for every x in [lo, hi] within `tolerance`:
    an error bound within `max_error` (default `tolerance`; less when the caller rounds the scores after).

    Largest input x weight scale that keeps HEADROOM x (max_abs_score + tolerance) representable,
    split between inputs and weights to minimise the error bound (bulk: fewest float64 limbs first);
    32-bit responses when they meet the tolerance, else the full modulus. Raises AccuracyError naming
    the bound that fails.
    """
    W, b, lo, hi = _check_inputs(W, b, lo, hi, tolerance)
    limit = tolerance if max_error is None else max_error
    if not (math.isfinite(limit) and 0 < limit <= tolerance):
        raise ValueError(f"max_error must be a finite number in (0, tolerance], got {max_error!r}")
    K, d = W.shape
    N = ring_degree(d, mode)
    reach = score_range(W, b, lo, hi)
    if max_abs_score is not None:
        if not (math.isfinite(max_abs_score) and max_abs_score > 0):
            raise ValueError(f"max_abs_score must be a finite number > 0, got {max_abs_score!r}")
        if max_abs_score < reach:
            raise AccuracyError(f"scores reach {reach:.6g} for inputs within the feature bounds, above "
                                f"max_abs_score {max_abs_score:.6g}", max_abs_score=reach)
    bound = reach if max_abs_score is None else float(max_abs_score)
    base = Params(poly_modulus_degree=N, coeff_modulus_bits=coeff_modulus_bits(N), mode=mode,
                  n_features=d, n_outputs=K)
    Q = float(base.Q)
    top_T = math.floor(math.log2(Q / 2.0 / (HEADROOM * (bound + tolerance))))
    if top_T < 1:
        raise AccuracyError(f"scores reach {bound:.6g}: more than the kernel represents (|score| < {Q / 8:.3g})",
                            max_abs_score=bound)
    def fits(a: Analysis) -> bool:
        return (not a.problem and a.message_fits and a.wrap_score >= HEADROOM * (bound + tolerance)
                and a.error_bound <= limit)

    if N == 4096 and 32 in response_bits:   # the scales every model had before `plan`: keep them (and keys)
        legacy = replace(base, log_scale_x=28, log_scale_w=23)
        a = analyse(W, b, lo, hi, legacy)
        if fits(a):
            return Plan(legacy, bound, tolerance, a)
    best: tuple[Analysis, Params] | None = None
    problems: list[str] = []
    for rb in response_bits:
        found: list[tuple[tuple, Analysis, Params]] = []
        for T in range(min(top_T, 62), max(top_T - 3, 0), -1):
            for lx in range(T + 1):
                p = replace(base, log_scale_x=lx, log_scale_w=T - lx, response_bits=rb)
                a = analyse(W, b, lo, hi, p)
                if a.problem:
                    problems.append(a.problem)
                    continue
                if best is None or a.error_bound < best[0].error_bound:
                    best = (a, p)
                if fits(a):
                    limbs = -(-31 // a.limb_bits) if a.limb_bits else 0
                    found.append(((limbs, a.error_bound), a, p))
            if found:
                _, a, p = min(found, key=lambda item: item[0])
                p.validate()
                return Plan(p, bound, tolerance, a)
    if best is None:
        raise AccuracyError(f"no parameters work: {problems[-1] if problems else 'none tried'}", max_abs_score=bound)
    a = best[0]
    allowed = f"the tolerance {tolerance:g}" if limit == tolerance else f"the tolerance {tolerance:g} less {tolerance - limit:.3g} of output rounding ({limit:.3g})"
    raise AccuracyError(
        f"the error bound is {a.error_bound:.3g} at best (quantisation {a.quantisation:.3g}, noise "
        f"{a.noise:.3g}), above {allowed}, for scores up to {bound:.6g}",
        error_bound=a.error_bound, max_abs_score=bound)
