"""Options of the `aci` target: which Azure ML workspace, and the container instance's size."""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field
from sei_azureml_common import WorkspaceOptions

__all__ = ["AciOptions", "ACI_NAME_PATTERN", "default_python"]

ACI_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"


def default_python() -> str:
    """The deploying interpreter's major.minor: the service gets the wheels this machine resolved."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


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
    python_version: str = Field(default_factory=default_python, pattern=r"^3\.[0-9]{1,2}$")
    base_image: str | None = None
    """Docker base image (default: Azure ML's CPU image)."""
    deploy_timeout_s: float = Field(default=1800, gt=0)
