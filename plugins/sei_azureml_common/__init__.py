"""What the Azure ML deploy targets share: the workspace options, and a service's tags and description.

A helper package, not a plugin: it registers nothing, and both `sei_deploy_aci` and
`sei_deploy_azureml_online` import it, so neither plugin imports the other.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, model_validator

from sei_framework import Build, ConfigPath, DeployError, PluginOptions

__all__ = [
    "Workspace",
    "WorkspaceOptions",
    "MODEL_NAME_PATTERN",
    "service_tags",
    "service_description",
    "service_environment",
    "SECRET_REFERENCE_PATTERN",
    "url_credentials",
]

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"


class Workspace(PluginOptions):
    """An Azure ML workspace: a `config.json` (`workspace_config`, or one found from the working
    folder when nothing is set), or `subscription_id` + `resource_group` + `workspace_name`.
    Credentials are never options: they come from the Azure CLI login, a managed identity, or
    the standard AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET environment variables.
    """

    workspace_config: ConfigPath | None = None
    """An Azure ML `config.json`, relative to the config file."""
    subscription_id: str | None = None
    resource_group: str | None = None
    workspace_name: str | None = None

    @model_validator(mode="after")
    def _one_workspace(self) -> Workspace:
        named = [self.subscription_id, self.resource_group, self.workspace_name]
        if any(named) and not all(named):
            raise ValueError("give all of subscription_id, resource_group and workspace_name, or none of them")
        if all(named) and self.workspace_config is not None:
            raise ValueError("give either workspace_config or subscription_id/resource_group/workspace_name, not both")
        return self

    @property
    def names_workspace(self) -> bool:
        """Whether a workspace is given (else a config.json is looked for from the working folder)."""
        return self.workspace_config is not None or self.workspace_name is not None


class WorkspaceOptions(Workspace):
    """The Azure ML deploy targets' options: a workspace, and how the service is named and tagged."""

    model_name: str | None = Field(default=None, pattern=MODEL_NAME_PATTERN)
    """Name under which the build's model files are registered (default: the service name)."""
    tags: dict[str, str] = {}
    description: str | None = None


def service_tags(build: Build, options: WorkspaceOptions) -> dict[str, str]:
    """Tags that say which SEI build a service runs, plus the config's own."""
    return {"sei_service": build.name, "sei_version": str(build.manifest.get("sei_version")), **options.tags}


def service_description(build: Build, options: WorkspaceOptions) -> str:
    models = ", ".join(m["name"] for m in build.manifest["models"])
    return options.description or f"SEI encrypted inference ({models})"


SECRET_REFERENCE_PATTERN = (
    r"^\$\{\{(keyvault:https://[A-Za-z0-9-]{3,24}\.vault\.azure\.net/secrets/[A-Za-z0-9-]{1,127}(/[0-9a-f]{32})?"
    r"|azureml://connections/[A-Za-z0-9_-]{1,255}(/[A-Za-z0-9_/-]{1,255})?)\}\}$"
)
"""An Azure ML secret-injection reference (Key Vault secret or workspace connection); never a secret itself."""


_CREDENTIAL_QUERY = re.compile(r"user|pass|pwd|secret|token|credential|auth|^sig$|^key$|access_?key|account_?key", re.I)
"""Query parameters that carry credentials: redis-py reads `password` and `username` from the query
string as it reads them from the user-info part; the rest are the usual names for secrets."""


def url_credentials(url: str) -> list[str]:
    """The parts of `url` that carry credentials (named, never their values): its user name and password,
    and each credential-bearing query parameter, decoded as redis-py decodes them. Raises ValueError
    for a URL that cannot be parsed."""
    parts = urlsplit(url)
    found = [name for name, value in (("user name", parts.username), ("password", parts.password)) if value is not None]
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _CREDENTIAL_QUERY.search(key):
            found.append(f"query parameter {key!r}")
    return found


def service_environment(build: Build, *, dry_run: bool, secret_reference: str | None = None,
                        target: str = "this target") -> dict[str, str]:  # fmt: skip
    """Environment variables the service needs from the deploying machine: with `state: redis`, the Redis URL.

    A deployment's environment variables are stored in the workspace in clear, so a URL that carries a
    password is refused: name it with `secret_reference` (Azure ML secret injection, resolved inside the
    deployment), or use a Redis URL without credentials. A dry run never writes the URL's value.
    """
    state = build.manifest.get("state") or {}
    if state.get("backend") != "redis":
        return {}
    name = state["url_env"]
    if secret_reference is not None:
        return {name: secret_reference}  # a reference, resolved by Azure ML inside the deployment
    if dry_run:
        return {name: f"<the value of ${name} when deploying>"}
    value = os.environ.get(name)
    if not value:
        raise DeployError(
            f"state: redis needs the Redis URL in the environment variable {name} when deploying; "
            "the service receives it as an environment variable of its deployment"
        )
    try:
        credentials = url_credentials(value)
    except ValueError:
        raise DeployError(f"the Redis URL in {name} is not a URL") from None
    if credentials:
        raise DeployError(
            f"the Redis URL in {name} carries credentials ({', '.join(credentials)}), and {target} would store "
            "it in the deployment's environment variables, which the workspace keeps in clear. Keep the URL in "
            "Azure Key Vault and name it with the azureml-online option redis_url_secret: "
            "'${{keyvault:https://VAULT.vault.azure.net/secrets/NAME}}' (secret injection), or use a Redis URL without a password (docs/azure.md)"
        )
    return {name: value}
