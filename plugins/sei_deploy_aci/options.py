"""Options of the `aci` target: which Azure ML workspace, and the container instance's size."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from sei_framework import PluginOptions

__all__ = [
    "WorkspaceOptions",
    "AciOptions",
    "ACI_NAME_PATTERN",
    "default_python",
    "service_tags",
    "service_description",
]

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"

ACI_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"


def default_python() -> str:
    """The deploying interpreter's major.minor: the service gets the wheels this machine resolved."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def service_tags(build, options: WorkspaceOptions) -> dict[str, str]:
    """Tags that say which SEI build a service runs, plus the config's own."""
    return {"sei_service": build.name, "sei_version": str(build.manifest.get("sei_version")), **options.tags}


def service_description(build, options: WorkspaceOptions) -> str:
    models = ", ".join(m["name"] for m in build.manifest["models"])
    return options.description or f"SEI encrypted inference ({models})"


class WorkspaceOptions(PluginOptions):
    """An Azure ML workspace: a `config.json` (`workspace_config`, or one found from the working
    folder when nothing is set), or `subscription_id` + `resource_group` + `workspace_name`.
    Credentials are never options: they come from the Azure CLI login, a managed identity, or
    the standard AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET environment variables.
    """

    workspace_config: Path | None = None
    subscription_id: str | None = None
    resource_group: str | None = None
    workspace_name: str | None = None
    model_name: str | None = Field(default=None, pattern=MODEL_NAME_PATTERN)
    """Name under which the build's model files are registered (default: the service name)."""
    tags: dict[str, str] = {}
    description: str | None = None

    @model_validator(mode="after")
    def _one_workspace(self) -> WorkspaceOptions:
        named = [self.subscription_id, self.resource_group, self.workspace_name]
        if any(named) and not all(named):
            raise ValueError("give all of subscription_id, resource_group and workspace_name, or none of them")
        if all(named) and self.workspace_config is not None:
            raise ValueError("give either workspace_config or subscription_id/resource_group/workspace_name, not both")
        return self


class AciOptions(WorkspaceOptions):
    auth: Literal["default", "cli", "msi", "service-principal"] = "default"
    """How to sign in: the SDK's default (interactive), the Azure CLI's login (needs azure-cli installed),
    a managed identity, or a service principal from AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET."""
    service_name: str | None = Field(default=None, pattern=ACI_NAME_PATTERN)
    """ACI service name (default: the config's name); 3-32 characters, a-z, 0-9 and hyphens."""
    cpu_cores: float = Field(default=1, gt=0, le=4)
    memory_gb: float = Field(default=1, gt=0, le=16)
    auth_enabled: bool = True
    """Clients must send the service's key (`Authorization: Bearer ...`); `deploy` returns it in the endpoint."""
    python_version: str = Field(default_factory=default_python, pattern=r"^3\.\d{1,2}$")
    base_image: str | None = None
    """Docker base image (default: Azure ML's CPU image)."""
    deploy_timeout_s: float = Field(default=1800, gt=0)
