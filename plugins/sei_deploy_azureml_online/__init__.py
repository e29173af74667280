"""Built-in plugin: deploy target `azureml-online`, an Azure ML managed online endpoint (SDK v2).

Needs `pip install 'sei-framework[azureml-online]'` (azure-ai-ml, azure-identity) on the
deploying machine; the SDK is imported when the target is used. The wheels that travel with
the deployment are made by `sei_framework.ship_local_distributions`.
"""

from __future__ import annotations

from sei_framework import hookimpl

from .options import OnlineOptions
from .target import AzureMLOnlineTarget

__all__ = ["AzureMLOnlineTarget", "OnlineOptions", "sei_register_deploy_targets"]


@hookimpl
def sei_register_deploy_targets(registry):
    registry.register(AzureMLOnlineTarget)
