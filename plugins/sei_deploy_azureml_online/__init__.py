"""Built-in plugin: deploy targets `azureml-online`, an Azure ML managed online endpoint (SDK v2), and
`azureml-batch`, an Azure ML batch endpoint that scores SEI batch jobs (the build's batch_score.py);
and model source `azureml` (`path: azureml:NAME:VERSION`, a registered model fetched at build time).

Needs the `azureml-online` extra (azure-ai-ml, azure-identity; docs/install.md) on the
deploying machine; the SDK is imported when the target is used. The wheels that travel with
the deployment are made by `sei_framework.ship_local_distributions`.
"""

from __future__ import annotations

from sei_framework import ModelSourceRegistry, TargetRegistry, hookimpl

from .batch import AzureMLBatchTarget
from .model_source import AzureMLModelSource
from .options import BatchOptions, OnlineOptions
from .target import AzureMLOnlineTarget

__all__ = ["AzureMLBatchTarget", "AzureMLModelSource", "AzureMLOnlineTarget", "BatchOptions", "OnlineOptions",
           "sei_register_deploy_targets", "sei_register_model_sources"]


@hookimpl
def sei_register_deploy_targets(registry: TargetRegistry) -> None:
    registry.register(AzureMLOnlineTarget)
    registry.register(AzureMLBatchTarget)  # a batch mode of the same plugin: batch endpoints (batch.py)


@hookimpl
def sei_register_model_sources(registry: ModelSourceRegistry) -> None:
    registry.register(AzureMLModelSource)  # `azureml:NAME:VERSION` model paths, fetched at build time
