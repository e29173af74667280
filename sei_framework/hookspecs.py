"""The hooks a SEI plugin implements; this module is the plugin author's reference.

A plugin is a module with `@hookimpl` functions, registered under the `sei_framework`
entry-point group in its distribution's `pyproject.toml`::

    # my_plugin.py
    from sei_framework import ModelAdapter, hookimpl

    class MyAdapter(ModelAdapter):
        name = "my-adapter"
        ...

    @hookimpl
    def sei_register_model_adapters(registry):
        registry.register(MyAdapter)

    # pyproject.toml
    [project.entry-points.sei_framework]
    my_plugin = "my_plugin"

Hooks are called with keyword arguments; arguments are only ever added, never renamed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registry import AdapterRegistry, ModelSourceRegistry, TargetRegistry, TransportRegistry

__all__ = [
    "PROJECT_NAME",
    "hookspec",
    "hookimpl",
    "sei_register_model_adapters",
    "sei_register_key_transports",
    "sei_register_deploy_targets",
    "sei_register_model_sources",
]

PROJECT_NAME = "sei_framework"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def sei_register_model_adapters(registry: AdapterRegistry) -> None:
    """Register `ModelAdapter` subclasses with `registry.register(cls)`.

    An adapter turns a model file into a service that scores ciphertexts (server half)
    and encrypts, decrypts and reads scores for the caller (client half, `cls.client`).
    """


@hookspec
def sei_register_key_transports(registry: TransportRegistry) -> None:
    """Register `KeyTransport` subclasses with `registry.register(cls)`.

    A transport carries a client's public keys to the service under a key id
    (in the request, a shared folder, blob storage, ...).
    """


@hookspec
def sei_register_deploy_targets(registry: TargetRegistry) -> None:
    """Register `DeployTarget` subclasses with `registry.register(cls)`.

    A target runs a build folder (score.py, resolved config, model files) somewhere
    and returns its endpoint.
    """


@hookspec
def sei_register_model_sources(registry: ModelSourceRegistry) -> None:
    """Register `ModelSource` subclasses with `registry.register(cls)`; `cls.name` is a URI scheme.

    A model whose `path` is `SCHEME:...` (e.g. `azureml:NAME:VERSION`) is fetched by the source
    registered for SCHEME when the build runs, then prepared by its adapter like a local path.
    """
