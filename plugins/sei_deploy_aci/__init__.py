"""Built-in plugin: deploy target `aci`, Azure Container Instances through an Azure ML workspace.

Needs the `aci` extra (azureml-core; docs/install.md) on the deploying machine; the SDK is
imported when the target is used, so configs naming it validate without it.
"""

from __future__ import annotations

from sei_framework import TargetRegistry, hookimpl

from .options import AciOptions
from .target import AciTarget

__all__ = [
    "AciOptions",
    "AciTarget",
    "sei_register_deploy_targets",
]


@hookimpl
def sei_register_deploy_targets(registry: TargetRegistry) -> None:
    registry.register(AciTarget)
