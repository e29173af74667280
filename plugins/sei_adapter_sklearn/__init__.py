"""Built-in plugin: scikit-learn linear models (and linear pipelines) served on encrypted data."""

from __future__ import annotations

from sei_framework import PluginError, hookimpl, install_hint

__all__ = ["sei_register_model_adapters"]


@hookimpl
def sei_register_model_adapters(registry):
    try:
        from .eiserver import EIServerAdapter
        from .packed import PackedAdapter
    except ModuleNotFoundError as exc:  # sei-framework installed without its sklearn extra
        raise PluginError(
            f"the scikit-learn adapters need the `sklearn` extra of sei-framework (`client` on a machine that only "
            f"calls services; not importable: {exc.name}); add it: {install_hint('sklearn')}",
            code="missing_extra",
        ) from None

    registry.register(EIServerAdapter)
    registry.register(PackedAdapter)
