"""Options of the `azureml-online` target: the workspace, the endpoint and its instances."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from sei_framework import PluginOptions

__all__ = ["OnlineOptions", "ENDPOINT_NAME_PATTERN", "DEFAULT_BASE_IMAGE"]

ENDPOINT_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$"
DEFAULT_BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-py311-inference:latest"


class OnlineOptions(PluginOptions):
    """A managed online endpoint (key auth) with one deployment serving the build.

    The workspace comes from `config.json` (`workspace_config`, or one found from the working
    folder) or from `subscription_id` + `resource_group` + `workspace_name`. Credentials are
    `DefaultAzureCredential`'s (Azure CLI login, managed identity, AZURE_* environment variables),
    never options.
    """

    workspace_config: Path | None = None
    subscription_id: str | None = None
    resource_group: str | None = None
    workspace_name: str | None = None
    endpoint_name: str | None = Field(default=None, pattern=ENDPOINT_NAME_PATTERN)
    """Endpoint name, unique in the Azure region (default: the config's name); 3-32 characters."""
    deployment_name: str = Field(default="sei", pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,31}$")
    model_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
    instance_type: str = "Standard_DS2_v2"
    instance_count: int = Field(default=1, ge=1)
    request_timeout_ms: int = Field(default=90_000, ge=1_000, le=180_000)
    """Encrypted scoring takes seconds: the platform's 5 s default would cut requests off."""
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1)
    base_image: str = DEFAULT_BASE_IMAGE
    """An Azure ML inference image (it runs azmlinfsrv); its Python must suit the wheels (3.11 by default)."""
    tags: dict[str, str] = {}
    description: str | None = None
    deploy_timeout_s: float = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _one_workspace(self) -> OnlineOptions:
        named = [self.subscription_id, self.resource_group, self.workspace_name]
        if any(named) and not all(named):
            raise ValueError("give all of subscription_id, resource_group and workspace_name, or none of them")
        if all(named) and self.workspace_config is not None:
            raise ValueError("give either workspace_config or subscription_id/resource_group/workspace_name, not both")
        return self
