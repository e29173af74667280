"""Built-in plugin: scikit-learn linear models (and linear pipelines) served on encrypted data."""

from __future__ import annotations

from sei_framework import AdapterRegistry, PluginError, hookimpl

__all__ = ["sei_register_model_adapters"]


@hookimpl
def sei_register_model_adapters(registry: AdapterRegistry) -> None:
    try:
        from .eiserver import EIServerAdapter
        from .packed import PackedAdapter
    except ModuleNotFoundError as exc:  # sei-framework installed without its sklearn extra
        raise PluginError(
            f"the scikit-learn adapters need `pip install 'sei-framework[sklearn]'` (missing: {exc.name})"
        ) from None

    registry.register(EIServerAdapter)
    registry.register(PackedAdapter)
