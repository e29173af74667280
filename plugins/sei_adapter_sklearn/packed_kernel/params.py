"""Kernel parameters: the `Params` record, the HES bound and the NTT primes (`accuracy.plan` chooses them)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
import seal

__all__ = ["HES_MAX_BITS", "MAX_SINGLE_FEATURES", "RESPONSE_BITS", "Params", "coeff_modulus_bits", "ring_degree"]

# Homomorphic Encryption Standard, 128-bit classical security, ternary secret.
HES_MAX_BITS = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
# 32: the response is switched to 2^32; 62: it carries both 31-bit residues (the full Q, no switch).
RESPONSE_BITS = (32, 62)
MAX_SINGLE_FEATURES = 32768


def ring_degree(n_features: int, mode: str) -> int:
    """N for a layout: bulk always 4096; single the smallest power of two >= n_features (>= 4096)."""
    if n_features < 1:
        raise ValueError("n_features must be >= 1")
    if mode == "bulk":
        return 4096
    if mode != "single":
        raise ValueError("mode must be 'single' or 'bulk'")
    if n_features > MAX_SINGLE_FEATURES:
        raise ValueError(f"single mode takes at most {MAX_SINGLE_FEATURES} features (one ciphertext of "
                         f"N = {MAX_SINGLE_FEATURES}); this model has {n_features}: use mode 'bulk'")
    N = 4096
    while N < n_features:
        N *= 2
    return N


def coeff_modulus_bits(N: int) -> tuple[int, ...]:
    """Two 31-bit data primes and the special prime: 16 bits at N = 4096, 17 above (no 16-bit NTT prime exists)."""
    return (31, 31, 16) if N <= 4096 else (31, 31, 17)


@cache
def _primes(N: int, bits: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(m.value()) for m in seal.CoeffModulus.Create(N, list(bits)))


@dataclass(frozen=True)
class Params:
    scheme: str = "rlwe-coeff/ckks-ctx"          # SEAL CKKS context, coefficient encoding
    poly_modulus_degree: int = 4096
    coeff_modulus_bits: tuple[int, ...] = (31, 31, 16)   # last prime = SEAL special prime
    log_scale_x: int = 28                        # client input scale 2^28
    log_scale_w: int = 23                        # server weight scale 2^23
    response_bits: int = 32                      # 32: modulus switch to 2^32; 62: the full Q (RNS residues)
    mode: str = "single"
    n_features: int = 784
    n_outputs: int = 10

    # -- derived -----------------------------------------------------------
    def total_coeff_modulus_bits(self) -> int:
        return int(sum(self.coeff_modulus_bits))

    def security_bits_ok(self) -> bool:
        """True iff total modulus bits fit the HES 128-bit table for N."""
        lim = HES_MAX_BITS.get(self.poly_modulus_degree)
        return lim is not None and self.total_coeff_modulus_bits() <= lim

    @property
    def data_primes(self) -> tuple[int, ...]:
        return _primes(self.poly_modulus_degree, self.coeff_modulus_bits)[:-1]

    @property
    def key_primes(self) -> tuple[int, ...]:
        return _primes(self.poly_modulus_degree, self.coeff_modulus_bits)

    @property
    def Q(self) -> int:
        return int(np.prod([int(p) for p in self.data_primes], dtype=object))

    @property
    def outputs_per_block(self) -> int:
        return max(1, self.poly_modulus_degree // self.n_features)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_outputs // self.outputs_per_block)

    def outputs_in_block(self, j: int) -> int:
        """Scores that single-row block j holds: the response carries c0 at these positions only."""
        return min(self.outputs_per_block, self.n_outputs - j * self.outputs_per_block)

    def max_abs_score(self) -> float:
        """Half the representable range: |score| above this is not guaranteed (headroom factor 2).

        The model-specific bound a build proves (feature bounds, weights) is smaller; see `accuracy`.
        """
        return self.Q / 4.0 / 2.0 ** (self.log_scale_x + self.log_scale_w)

    @property
    def switches_modulus(self) -> bool:
        """True: responses are switched to 2^32 (4-byte words); False: two 31-bit residues mod Q."""
        return self.response_bits == 32

    def response_scale(self) -> float:
        """Decrypted response value per unit of score."""
        T = self.log_scale_x + self.log_scale_w
        return 2.0 ** (T + 32) / float(self.Q) if self.switches_modulus else 2.0 ** T

    def fingerprint(self) -> bytes:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).digest()[:8]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> Params:
        d = json.loads(s)
        d["coeff_modulus_bits"] = tuple(d["coeff_modulus_bits"])
        return cls(**d)

    def validate(self) -> None:
        if not self.security_bits_ok():
            raise ValueError(f"parameters exceed HES 128-bit bound: {self.total_coeff_modulus_bits()} bits "
                             f"for N={self.poly_modulus_degree}")
        if any(b > 31 for b in self.coeff_modulus_bits[:-1]) or len(self.coeff_modulus_bits) != 3:
            raise ValueError("two data primes of <= 31 bits and a special prime (exact uint64 arithmetic, CRT of 2)")
        if self.mode not in ("single", "bulk"):
            raise ValueError("mode must be 'single' or 'bulk'")
        if self.mode == "single" and self.n_features > self.poly_modulus_degree:
            raise ValueError("single mode needs n_features <= N")
        if self.response_bits not in RESPONSE_BITS:
            raise ValueError(f"response_bits must be one of {RESPONSE_BITS}")
        if self.log_scale_x < 0 or self.log_scale_w < 0 or self.log_scale_x + self.log_scale_w > 62:
            raise ValueError("log_scale_x and log_scale_w must be >= 0 with a sum <= 62")
        # Accuracy is not a property of Params alone: `accuracy.plan` proves it for a model and its inputs.
