"""Built-in plugin `trees-seal`: tree ensembles (scikit-learn, XGBoost, LightGBM) on batched SEAL ciphertexts.

The engine (engine/) is library code with no framework imports; this package adapts it to SEI.
"""

from __future__ import annotations

from typing import Any

from sei_framework import hookimpl

__all__ = ["sei_register_model_adapters"]


@hookimpl
def sei_register_model_adapters(registry: Any) -> None:
    from .adapter import TreesAdapter

    registry.register(TreesAdapter)
