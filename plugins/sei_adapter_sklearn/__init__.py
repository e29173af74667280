"""Built-in plugin: scikit-learn linear models (and linear pipelines) served on encrypted data."""

from __future__ import annotations

from sei_framework import hookimpl

__all__ = ["sei_register_model_adapters"]


@hookimpl
def sei_register_model_adapters(registry):
    from .eiserver import EIServerAdapter
    from .packed import PackedAdapter

    registry.register(EIServerAdapter)
    registry.register(PackedAdapter)
