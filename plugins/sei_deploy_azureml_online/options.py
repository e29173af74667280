"""Options of the `azureml-online` target: the workspace, the endpoint, its instances and probes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from sei_azureml_common import WorkspaceOptions

from sei_framework import PluginOptions

__all__ = [
    "OnlineOptions",
    "LivenessProbe",
    "ReadinessProbe",
    "ScaleSettings",
    "ENDPOINT_NAME_PATTERN",
    "DEFAULT_BASE_IMAGE",
]

ENDPOINT_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$"
DEFAULT_BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-py311-inference:latest"


class LivenessProbe(PluginOptions):
    """When to restart a container: Azure ML's ProbeSettings, in seconds (unset: Azure's defaults,
    10 s delay, every 10 s, 2 s timeout, restart after 30 failures). The ranges are Azure's."""

    initial_delay: int | None = Field(default=None, ge=1)
    period: int | None = Field(default=None, ge=1)
    timeout: int | None = Field(default=None, ge=1)
    failure_threshold: int | None = Field(default=None, ge=1)
    success_threshold: Literal[1] | None = None
    """Fixed at 1 for a liveness probe."""


class ReadinessProbe(LivenessProbe):
    """When a container takes traffic: the same settings; `success_threshold` may exceed 1."""

    success_threshold: int | None = Field(default=None, ge=1)  # type: ignore[assignment]


class ScaleSettings(PluginOptions):
    """Managed online deployments support only the `default` scale type: a fixed `instance_count`.
    Autoscaling is an Azure Monitor autoscale setting on the deployment, a separate resource."""

    type: Literal["default"] = "default"


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
    instance_type: str = Field(default="Standard_DS2_v2", pattern=r"^[A-Za-z][A-Za-z0-9_]{1,63}$")
    instance_count: int = Field(default=1, ge=1)
    """Instances at creation; Azure recommends at least 3 for high availability."""
    request_timeout_ms: int = Field(default=90_000, ge=1_000, le=180_000)
    """Encrypted scoring takes seconds: the platform's 5 s default would cut requests off (Azure's maximum: 180 s)."""
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1)
    max_queue_wait_ms: int | None = Field(default=None, ge=0)
    """How long a request may wait in the instance's queue (unset: Azure's default, 500 ms)."""
    liveness_probe: LivenessProbe | None = None
    readiness_probe: ReadinessProbe | None = None
    scale_settings: ScaleSettings = ScaleSettings()
    base_image: str = DEFAULT_BASE_IMAGE
    """An Azure ML inference image (it runs azmlinfsrv); its Python must suit the wheels (3.11 by default)."""
    deploy_timeout_s: float = Field(default=3600, gt=0)
