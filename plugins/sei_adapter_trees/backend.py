"""The adapter's one door to the engine: planning, the service's evaluator, the client's keys, and
the plaintext reference and post-processing the build and the client use.

The rest of the plugin calls only this module, so the engine's names live in one place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .engine.ir import Ensemble, Split

__all__ = [
    "KEY_EXPANSION", "ClientKeys", "EngineInputError", "Plan", "PlanError", "Server", "plan", "plan_from_json",
    "raw_scores", "split_bits",
]

KEY_EXPANSION = 2.0
"""Bytes SEAL's loaded relinearization keys hold per byte received (the wire form is compressed)."""


class PlanError(ValueError):
    """No parameters at 128-bit security serve the ensemble within the tolerance (the reason is the message)."""


class EngineInputError(ValueError):
    """Bytes the engine refuses: the message names what is wrong, never the bytes."""


@dataclass(frozen=True)
class Plan:
    """What the build chose: the engine's parameters (`params`, its own JSON) and what they cost and prove."""

    params: dict[str, Any]
    scheme_name: str
    slots: int
    """Rows per ciphertext batch."""
    split_bytes: tuple[int, ...]
    """Bytes of each split's ciphertext as uploaded (each at the level its uses need)."""
    key_bytes: int
    """Bytes of one client's relinearization keys as uploaded."""
    error_bound: float
    """Proven bound on the absolute error of every decrypted sum (from the parameters and the depth)."""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "split_bytes": list(self.split_bytes)}

    def fingerprint(self) -> str:
        """Keys made for these parameters serve every model planned with the same ones."""
        return hashlib.sha256(json.dumps(self.params, sort_keys=True).encode()).hexdigest()[:16]


def plan_from_json(data: Any) -> Plan:
    """The plan as metadata or describe() holds it; ValueError naming what is wrong."""
    if not isinstance(data, dict) or set(data) != {f for f in Plan.__dataclass_fields__}:
        raise ValueError(f"a plan needs exactly the fields {', '.join(Plan.__dataclass_fields__)}")
    slots, key_bytes, bound, sizes = data["slots"], data["key_bytes"], data["error_bound"], data["split_bytes"]
    if type(slots) is not int or not 1 <= slots <= 1 << 20 or type(key_bytes) is not int or key_bytes < 1:
        raise ValueError("a plan's slots and key_bytes must be positive whole numbers")
    if not isinstance(sizes, list) or not all(type(n) is int and n > 0 for n in sizes):
        raise ValueError("a plan's split_bytes must be a list of positive whole numbers")
    if type(bound) not in (int, float) or not 0 < bound < 1 or not isinstance(data["params"], dict):
        raise ValueError("a plan's error_bound must be a number in (0, 1) and its params an object")
    return Plan(data["params"], str(data["scheme_name"]), slots, tuple(sizes), key_bytes, float(bound))


def split_bits(rows: np.ndarray, splits: tuple[Split, ...]) -> np.ndarray:
    """bool[n_rows, n_splits]: 1 where the row goes right, compared as the model's library compares."""
    from .engine.bits import split_bits as bits

    return np.asarray(bits(rows, splits), dtype=bool)


def raw_scores(readout: dict[str, Any], sums: np.ndarray) -> np.ndarray:
    """The library's raw scores from the decrypted sums of leaf values: averaged (forests), plus the base score."""
    base = np.asarray(readout["base_score"], dtype=np.float64)
    scale = 1.0 / readout["n_trees"] if readout["average"] else 1.0
    return sums * scale + base
