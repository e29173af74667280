"""Built-in plugin: deploy target `azureml-online`, an Azure ML managed online endpoint (SDK v2),
and model source `azureml` (`path: azureml:NAME:VERSION`, a registered model fetched at build time).

Needs `pip install 'sei-framework[azureml-online]'` (azure-ai-ml, azure-identity) on the
deploying machine; the SDK is imported when the target is used. The wheels that travel with
the deployment are made by `sei_framework.ship_local_distributions`.
"""

from __future__ import annotations

from sei_framework import hookimpl

from .model_source import AzureMLModelSource
from .options import OnlineOptions
from .target import AzureMLOnlineTarget

__all__ = ["AzureMLModelSource", "AzureMLOnlineTarget", "OnlineOptions", "sei_register_deploy_targets",
           "sei_register_model_sources"]


@hookimpl
def sei_register_deploy_targets(registry):
    registry.register(AzureMLOnlineTarget)


@hookimpl
def sei_register_model_sources(registry):
    registry.register(AzureMLModelSource)  # `azureml:NAME:VERSION` model paths, fetched at build time
