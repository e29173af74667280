"""What the Azure ML deploy targets share: the workspace options, and a service's tags and description.

A helper package, not a plugin: it registers nothing, and both `sei_deploy_aci` and
`sei_deploy_azureml_online` import it, so neither plugin imports the other.
"""

from __future__ import annotations

import os

from pydantic import Field, model_validator

from sei_framework import Build, ConfigPath, DeployError, PluginOptions

__all__ = [
    "Workspace",
    "WorkspaceOptions",
    "MODEL_NAME_PATTERN",
    "service_tags",
    "service_description",
    "service_environment",
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


def service_environment(build: Build, *, dry_run: bool) -> dict[str, str]:
    """Environment variables the service needs from the deploying machine: with `state: redis`, the
    Redis URL, read from the variable the config names. A dry run writes a placeholder, never the URL."""
    state = build.manifest.get("state") or {}
    if state.get("backend") != "redis":
        return {}
    name = state["url_env"]
    if dry_run:
        return {name: f"<the value of ${name} when deploying>"}
    value = os.environ.get(name)
    if not value:
        raise DeployError(
            f"state: redis needs the Redis URL in the environment variable {name} when deploying; "
            "the service receives it as an environment variable of its deployment"
        )
    return {name: value}
