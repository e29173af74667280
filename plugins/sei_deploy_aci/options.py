"""Options of the `aci` target: which Azure ML workspace, and the container instance's size."""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from sei_azureml_common import WorkspaceOptions

from sei_framework import ConfigPath, check_cors_origins

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
    cors_origins: list[str] = []
    """Exact origins of web pages allowed to call the service from a browser (azmlinfsrv's AML_CORS_ORIGINS,
    set in the container's environment); `*` only with `auth_enabled: false`."""
    python_version: str = Field(default_factory=default_python, pattern=r"^3\.[0-9]{1,2}$")
    base_image: str | None = None
    """Docker base image (default: Azure ML's CPU image)."""
    deploy_timeout_s: float = Field(default=1800, gt=0)
    ssl_enabled: bool = False
    """Serve over https with your certificate for `ssl_cname` (ACI has no managed certificates); without it
    the scoring URI is plain http and SEI's client refuses to send the service key to it unless told to."""
    ssl_cert_pem_file: ConfigPath | None = None
    """The certificate chain (PEM) for `ssl_cname`, relative to the config file; read by the SDK at
    deploy, never copied into a dry run."""
    ssl_key_pem_file: ConfigPath | None = None
    """Its private key (PEM), relative to the config file: a file path only, so the key itself never
    sits in a config."""
    ssl_cname: str | None = Field(default=None, max_length=253, pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
    """The DNS name clients use (a CNAME to the service's Azure name), which the certificate names."""
    dns_name_label: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
    """A stable DNS label for the container's address (`LABEL.REGION.azurecontainer.io`)."""

    @field_validator("cors_origins")
    @classmethod
    def _cors(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return check_cors_origins(value, auth=bool(info.data.get("auth_enabled", True)))

    @model_validator(mode="after")
    def _tls_complete(self) -> AciOptions:
        tls = {"ssl_cert_pem_file": self.ssl_cert_pem_file, "ssl_key_pem_file": self.ssl_key_pem_file, "ssl_cname": self.ssl_cname}
        missing = [name for name, value in tls.items() if value is None]
        if self.ssl_enabled and missing:
            raise ValueError(f"ssl_enabled needs {', '.join(missing)} (ACI serves https only with your certificate)")
        if not self.ssl_enabled and len(missing) < len(tls):
            raise ValueError("ssl_cert_pem_file, ssl_key_pem_file and ssl_cname take effect only with ssl_enabled: true")
        return self
