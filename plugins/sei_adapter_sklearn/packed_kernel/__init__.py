"""Packed homomorphic kernel for linear models (scores = X @ W.T + b).

Pure library code: no web, no framework imports.  Only numpy and the
``seal-python`` binding of Microsoft SEAL 4.x (PyPI ``seal-python``) are used.

Construction (see docs/packed-backend.md for the full description)
-----------------------------------------------------------------
* RLWE in a SEAL CKKS context, but with *coefficient* encoding: a plaintext is
  an integer polynomial ``m(X) = round(delta * v_i) X^i`` in Z_Q[X]/(X^N+1).
  The server only does plaintext-ciphertext products and additions, so the
  scheme is linearly homomorphic and no relinearisation / Galois keys exist.
* Ciphertext modulus at the data level: two 31-bit NTT primes (Q ~ 2^62), a
  16-bit special prime exists only because SEAL reserves the last prime of
  the chain.  N = 4096, total 78 bits <= 109 (HES 128-bit table).
* single row: x is one polynomial ``sum x_i X^i``; the server multiplies by a
  plaintext holding ``m = N // d`` weight rows reversed in blocks of length d,
  so coefficient ``t*d + d-1`` of the product is the t-th dot product (one
  NTT-domain multiply per block of m outputs, no rotations).
* bulk: feature i of up to N rows is one ciphertext ``sum_r x_{r,i} X^r``;
  score k is ``sum_i W_ki * ct_i`` (an exact modular matrix product done with
  float64 BLAS on limbs of <= 16 bits, proven exact: < 2^53), coefficient r is row r's score.
* requests are symmetric encryptions re-seeded on a SHAKE-256 seed: only the
  seed and c0 travel (c1 is expanded by the server), 31-bit words -> 4 bytes.
* responses: the server adds a fresh public-key encryption of zero
  (re-randomisation), transforms to coefficient form, adds the intercept,
  switches modulus to 2^32 (or, when the model needs the precision, keeps
  both 31-bit residues) and returns the full c1 but c0 ONLY at the
  coefficients that hold scores.  Coefficients holding partial sums are
  thus withheld, which is equivalent to a one-time-pad mask that is uniform
  mod q (perfect hiding) at zero byte cost.

Every byte string coming from the other party is parsed with numpy/struct and
fully validated (magic, version, parameter fingerprint, exact length, every
residue < its prime) before anything reaches the SEAL binding; SEAL only ever
sees bytes this package built itself.

Accuracy (``accuracy``): ``plan(W, b, lo, hi, mode, tolerance)`` chooses the scales and the
response width from the model and its input bounds, and proves the score range, the exactness
of every bulk float64 product and the error bound, or raises ``AccuracyError`` naming the bound.

Modules: ``params`` (Params), ``accuracy`` (plan), ``wire`` (message format,
KernelInputError), ``seal_context`` (SEAL plumbing), ``client`` (ClientKeys),
``server`` (PublicMaterial, ServerModel).
"""
from __future__ import annotations

from .accuracy import AccuracyError, Plan, analyse, plan
from .client import ClientKeys
from .params import HES_MAX_BITS, Params
from .server import PublicMaterial, ServerModel
from .wire import KernelInputError, public_key_size, request_size

__all__ = [
    "KernelInputError", "Params", "ClientKeys", "ServerModel",
    "PublicMaterial", "HES_MAX_BITS", "AccuracyError", "Plan", "analyse", "plan", "public_key_size", "request_size",
]
