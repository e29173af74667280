"""Plugin distribution `sei-adapter-concrete`: model adapter `concrete-ml` (Concrete ML, TFHE).

Tree ensembles, linear models and scikit-learn MLPs, compiled by Concrete ML at build time (in its
own environment), served with concrete-python. Leans only on the public `sei_framework` API.
"""

from __future__ import annotations

from sei_framework import AdapterRegistry, hookimpl

__all__ = ["sei_register_model_adapters"]


@hookimpl
def sei_register_model_adapters(registry: AdapterRegistry) -> None:
    from .adapter import ConcreteAdapter

    registry.register(ConcreteAdapter)
