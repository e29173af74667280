"""What EIServer's CKKS dot product (encrypted-inference 0.9, SEAL 3.5) proves for one model; `prove`.

The client encodes a row at scale D = 2^40 into the 4096 slots of a symmetric (seeded) encryption,
N = 8192, primes of 60, 40, 40 (+ 60 special) bits. The native code multiplies by the weights
encoded at D, rescales by the last 40-bit prime (result: primes 60 + 40, Q ~ 2^100, scale ~ 2^40),
rotates and sums all 4096 slots with the Galois keys, adds the intercept. For one output k, a
decrypted score differs from the float model `x @ w + b` by at most (w, x restricted to each
ciphertext's 4096 features where a sum runs over ciphertexts c):

  input noise     sqrt(2 ln(2/delta) 10.5 N/2) ||w||_2 / D   the encryption noise e (sigma 3.2) seen
                  through the weights: Re sum_j w_j slot_j(e) = sum_i e_i Re c_i, sum_i (Re c_i)^2 =
                  N/2 ||w||^2 (Parseval); sub-Gaussian tail, fails with probability delta = 2^-64
  input rounding  N / (2 sqrt 2) sum_c ||w_c||_2 / D          coefficients of x rounded (|r| <= 1/2),
                  worst case by Cauchy-Schwarz
  weight rounding N / (2 sqrt 2) sum_c ||xmax_c||_2 / D       the same for the weight plaintext
  float64         2^-40 (A + ||w||_2 ||xmax||_2)             the encoders' and decoder's FFTs in
                  float64 (~log2 N 2^-53 of the values); A = sum |w| xmax + |b| bounds every slot
  key switching   FIXED_ERROR                                 rescale and 12 rotations: a key-dependent
                  bias and a per-request part; measured sigma 1.5e-6 over key pairs, bound ~30 sigma

Measured (tests/test_eiserver_accuracy.py): the input noise has sigma 205 ||w||_2 / 2^40 as predicted
(~2^-32 of the score for generic weights); the bound is ~10-20 x the largest error seen.
Range: a slot wraps modulo Q at |value| >= Q / 2 / scale = 2^59 (measured) and SEAL aborts on an
intercept of |b| >= 2^58; `prove` keeps every slot (A), input and weight below 2^57, so a true score
up to 2^59 still decodes to itself and the client can tell it is out of range.
The native code also aborts when a weight plaintext encodes to zero (an all-zero output, or
weights below ~1.9e-9): such an output is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .tail_bounds import NOISE_PROXY, subgaussian_bound

__all__ = ["Analysis", "EIServerAccuracyError", "Proof", "analyse", "prove"]

N = 8192
SLOTS = N // 2                   # features per ciphertext
SCALE = 2.0 ** 40                # the client's and the weights' encoding scale
ROUNDING = N / (2.0 * math.sqrt(2.0))  # sum_i |r_i| |Re c_i| <= 1/2 sqrt(N) sqrt(N/2) ||w||_2
FLOAT_RELATIVE = 2.0 ** -40
FIXED_ERROR = 5e-5               # rescale and key-switching noise, measured (see above)
RANGE_LIMIT = 2.0 ** 57          # slots, inputs and weights stay below this (wrap at 2^59, abort at 2^58)
ZERO_PLAINTEXT = 3e-9            # ||w_c||_2 above this encodes to a nonzero plaintext (> N / (2 sqrt 2 D))


class EIServerAccuracyError(ValueError):
    """This model cannot be served within the tolerance (or at all); the message says which bound."""


@dataclass(frozen=True)
class Analysis:
    """Per-output bounds (score units) for inputs in the box; `analyse`."""

    error: np.ndarray         # |decrypted - float score| <= error[k]
    input_noise: np.ndarray   # of which: encryption noise and input rounding through the weights
    reach: np.ndarray         # max |float score| over the box
    slot: np.ndarray          # sum |w| xmax + |b|: what any slot of the computation can hold
    largest: float            # the largest magnitude anything encoded reaches (slots, inputs, weights)
    dead: np.ndarray          # outputs whose weights encode to a zero plaintext (the native code aborts)


@dataclass(frozen=True)
class Proof:
    """A model's bounds for inputs in the box: scores within `max_abs_score`, errors within `error_bound`."""

    error_bound: float        # max over outputs of |decrypted - float score|
    input_noise: float        # of which (max over outputs): encryption noise and rounding through the weights
    max_abs_score: float      # |float score| of any in-bound input is at most this
    max_slot: float           # max over outputs of sum |w| xmax + |b|: what any slot can hold


def _chunks(a: np.ndarray) -> list[np.ndarray]:
    """The last axis cut into the ciphertexts' 4096 features each."""
    return [a[..., i : i + SLOTS] for i in range(0, a.shape[-1], SLOTS)]


def analyse(W: ArrayLike, b: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> Analysis:
    """The module docstring's bounds for `x @ W.T + b`, lo <= x <= hi, per output."""
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if W.ndim != 2 or b.shape != (W.shape[0],):
        raise ValueError("W must be (n_outputs, n_features) and b (n_outputs,)")
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (W.shape[1],))
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (W.shape[1],))
    if not all(np.all(np.isfinite(a)) for a in (W, b, lo, hi)) or np.any(lo > hi):
        raise ValueError("weights, intercepts and feature bounds must be finite, with lo <= hi")
    xmax = np.maximum(np.abs(lo), np.abs(hi))
    chunk_norms = np.stack([np.linalg.norm(c, axis=1) for c in _chunks(W)], axis=1)  # (outputs, ciphertexts)
    slot = np.abs(W) @ xmax + np.abs(b)
    top = np.maximum(W * lo, W * hi).sum(axis=1) + b
    bottom = np.minimum(W * lo, W * hi).sum(axis=1) + b
    w2 = np.linalg.norm(W, axis=1)
    noise = subgaussian_bound(NOISE_PROXY * N / 2.0) * w2 / SCALE + ROUNDING * chunk_norms.sum(axis=1) / SCALE
    weight_rounding = ROUNDING * sum(float(np.linalg.norm(c)) for c in _chunks(xmax)) / SCALE
    floats = FLOAT_RELATIVE * (slot + w2 * float(np.linalg.norm(xmax)))
    return Analysis(
        error=noise + weight_rounding + floats + FIXED_ERROR,
        input_noise=noise,
        reach=np.maximum(np.abs(top), np.abs(bottom)),
        slot=slot,
        largest=max(float(slot.max(initial=0.0)), float(xmax.max(initial=0.0)), float(np.abs(W).max(initial=0.0))),
        dead=np.flatnonzero(np.all(chunk_norms <= ZERO_PLAINTEXT, axis=1)),
    )


def prove(W: ArrayLike, b: ArrayLike, lo: ArrayLike, hi: ArrayLike, tolerance: float, max_error: float | None = None) -> Proof:
    """`analyse`, refused (EIServerAccuracyError) when an error bound exceeds `max_error` (default `tolerance`;
    the adapter passes the tolerance less its output rounding's half-step), a value could come near the
    wrap-around, or an output cannot be computed at all."""
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")
    limit = tolerance if max_error is None else max_error
    if not (math.isfinite(limit) and 0 < limit <= tolerance):
        raise ValueError(f"max_error must be a finite number in (0, tolerance], got {max_error!r}")
    a = analyse(W, b, lo, hi)
    if a.dead.size:
        raise EIServerAccuracyError(
            f"output {int(a.dead[0])} has (nearly) all-zero weights (||w|| <= {ZERO_PLAINTEXT:g}): EIServer's native "
            "dot product aborts on a weight plaintext that encodes to zero"
        )
    if a.largest + tolerance > RANGE_LIMIT:
        raise EIServerAccuracyError(
            f"values reach {a.largest:.6g} for inputs within the feature bounds: more than EIServer's CKKS "
            f"represents with room to detect a wrap-around (|value| <= 2^57 = {RANGE_LIMIT:.6g})"
        )
    proof = Proof(float(a.error.max()), float(a.input_noise.max()), float(a.reach.max()), float(a.slot.max()))
    if proof.error_bound > limit:
        allowed = f"the tolerance {tolerance:g}" if limit == tolerance else f"the tolerance {tolerance:g} less {tolerance - limit:.3g} of output rounding ({limit:.3g})"
        raise EIServerAccuracyError(
            f"the error bound is {proof.error_bound:.3g} (encryption noise through the weights "
            f"{proof.input_noise:.3g}, ~5.2e-9 x ||w||_2), above {allowed}, for scores up to "
            f"{proof.max_abs_score:.6g}"
        )
    return proof
