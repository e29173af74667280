"""`choose_params`: kernel parameters from a score bound alone, for the kernel benchmark and kernel tests.

Nothing here proves a model's accuracy: a service's parameters come from
`sei_adapter_sklearn.packed_kernel.plan(W, b, lo, hi, mode, tolerance)`, which proves them for the
model and its input bounds. This stays out of the plugin so that no serving path can take it.
"""

from __future__ import annotations

import math

from sei_adapter_sklearn.packed_kernel import Params
from sei_adapter_sklearn.packed_kernel.params import coeff_modulus_bits, ring_degree

__all__ = ["choose_params"]


def choose_params(n_features: int, n_outputs: int, mode: str = "single", max_abs_score: float = 512.0) -> Params:
    """The smallest N for the layout and scales that keep Q/4 above `max_abs_score` (|x.w_k + b_k|)."""
    if n_features < 1 or n_outputs < 1:
        raise ValueError("n_features and n_outputs must be >= 1")
    if not (math.isfinite(max_abs_score) and max_abs_score > 0):
        raise ValueError(f"max_abs_score must be a finite number > 0, got {max_abs_score!r}")
    N = ring_degree(n_features, mode)
    budget = 60 - max(0, math.ceil(math.log2(max_abs_score)))  # Q ~ 2^62; Q/4 > max_abs_score 2^(lx+lw)
    if budget < 2:
        raise ValueError(f"max_abs_score {max_abs_score:g} leaves no precision (Q ~ 2^62)")
    lw = min(23, budget // 2)
    params = Params(poly_modulus_degree=N, coeff_modulus_bits=coeff_modulus_bits(N), log_scale_x=budget - lw,
                    log_scale_w=lw, mode=mode, n_features=int(n_features), n_outputs=int(n_outputs))
    params.validate()
    return params
