"""Kernel parameters: the `Params` record, `choose_params`, the HES bound and the NTT primes."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import seal

__all__ = ["HES_MAX_BITS", "Params", "choose_params"]

# Homomorphic Encryption Standard, 128-bit classical security, ternary secret.
HES_MAX_BITS = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}


@lru_cache(maxsize=None)
def _primes(N: int, bits: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(m.value()) for m in seal.CoeffModulus.Create(N, list(bits)))


@dataclass(frozen=True)
class Params:
    scheme: str = "rlwe-coeff/ckks-ctx"          # SEAL CKKS context, coefficient encoding
    poly_modulus_degree: int = 4096
    coeff_modulus_bits: tuple[int, ...] = (31, 31, 16)   # last prime = SEAL special prime
    log_scale_x: int = 28                        # client input scale 2^28
    log_scale_w: int = 23                        # server weight scale 2^23
    response_bits: int = 32                      # modulus of the returned ciphertext
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
        """|score| must stay below this (headroom factor 2 kept)."""
        return self.Q / 4.0 / 2.0 ** (self.log_scale_x + self.log_scale_w)

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
        if any(b > 31 for b in self.coeff_modulus_bits[:-1]) or len(self.coeff_modulus_bits) < 2:
            raise ValueError("data primes must be <= 31 bits (exact uint64 arithmetic)")
        if self.mode not in ("single", "bulk"):
            raise ValueError("mode must be 'single' or 'bulk'")
        if self.mode == "single" and self.n_features > self.poly_modulus_degree:
            raise ValueError("single mode needs n_features <= N")
        if self.response_bits not in (32,):
            raise ValueError("response_bits must be 32")
        resp_scale = self.log_scale_x + self.log_scale_w + self.response_bits - math.log2(self.Q)
        if resp_scale < 16:
            raise ValueError("response scale too small for 1e-3 accuracy")


def choose_params(n_features: int, n_outputs: int, mode: str = "single",
                  max_abs_score: float = 512.0) -> Params:
    """Smallest N that fits the layout, validated for 128-bit security.

    ``max_abs_score`` bounds |x.w_k + b_k| (scores above it wrap around).
    """
    if n_features < 1 or n_outputs < 1:
        raise ValueError("n_features and n_outputs must be >= 1")
    if mode == "single":
        N = 4096
        while N < n_features:
            N *= 2
        if N > 32768:
            raise ValueError("n_features too large for single-row packing")
    elif mode == "bulk":
        N = 4096
    else:
        raise ValueError("mode must be 'single' or 'bulk'")
    # Q ~ 2^62; keep Q/4 > max_abs_score * 2^(lx+lw)
    budget = 60 - max(0, math.ceil(math.log2(max(max_abs_score, 1.0))))
    lw = min(23, budget // 2)
    lx = budget - lw
    p = Params(poly_modulus_degree=N, log_scale_x=lx, log_scale_w=lw, mode=mode,
               n_features=int(n_features), n_outputs=int(n_outputs))
    p.validate()
    return p
