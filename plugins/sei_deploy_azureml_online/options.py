"""Options of the `azureml-online` target: the workspace, the endpoint and its instances."""

from __future__ import annotations

from pydantic import Field
from sei_azureml_common import WorkspaceOptions

__all__ = ["OnlineOptions", "ENDPOINT_NAME_PATTERN", "DEFAULT_BASE_IMAGE"]

ENDPOINT_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$"
DEFAULT_BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-py311-inference:latest"


class OnlineOptions(WorkspaceOptions):
    """A managed online endpoint (key auth) with one deployment serving the build.

    The workspace comes from `config.json` (`workspace_config`, or one found from the working
    folder) or from `subscription_id` + `resource_group` + `workspace_name`. Credentials are
    `DefaultAzureCredential`'s (Azure CLI login, managed identity, AZURE_* environment variables),
    never options.
    """

    endpoint_name: str | None = Field(default=None, pattern=ENDPOINT_NAME_PATTERN)
    """Endpoint name, unique in the Azure region (default: the config's name); 3-32 characters."""
    deployment_name: str = Field(default="sei", pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,31}$")
    instance_type: str = "Standard_DS2_v2"
    instance_count: int = Field(default=1, ge=1)
    request_timeout_ms: int = Field(default=90_000, ge=1_000, le=180_000)
    """Encrypted scoring takes seconds: the platform's 5 s default would cut requests off."""
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1)
    base_image: str = DEFAULT_BASE_IMAGE
    """An Azure ML inference image (it runs azmlinfsrv); its Python must suit the wheels (3.11 by default)."""
    deploy_timeout_s: float = Field(default=3600, gt=0)
