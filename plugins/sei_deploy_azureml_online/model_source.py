"""Model source `azureml`: a model registered in an Azure ML workspace, `azureml:NAME:VERSION`.

The build looks the model up and downloads it with the SDK v2 (`MLClient.models.get` and
`.download`), then the model's adapter prepares what was downloaded: an MLflow model folder (a
model registered as `mlflow_model`, as Azure ML does for MLflow runs) or a single model file.

The workspace: `model_sources.azureml` in the config if it names one; else the deploy target's,
when the target is an Azure ML one (`azureml-online`, `azureml-batch`, `aci`); else a `config.json`
found from the working folder. Credentials are `DefaultAzureCredential`'s, never options.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from sei_azureml_common import Workspace

from sei_framework import ModelSource, PluginError

from .sdk import ml_client, short

__all__ = ["AzureMLModelSource", "parse_uri"]

URI_PATTERN = re.compile(
    r"^azureml:(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,254}):(?P<version>[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"
)


def parse_uri(uri: str) -> tuple[str, str]:
    """(name, version) of `azureml:NAME:VERSION`; ValueError saying the expected form otherwise."""
    match = URI_PATTERN.fullmatch(uri)
    if match is None:
        raise ValueError(
            f"{uri!r} is not a registered model reference; write azureml:NAME:VERSION (letters, digits, "
            "'.', '_' and '-'; a version number, not 'latest')"
        )
    return match.group("name"), match.group("version")


def _where(workspace: Workspace) -> str:
    if workspace.workspace_name:
        return f"workspace {workspace.workspace_name!r} (resource group {workspace.resource_group!r})"
    if workspace.workspace_config:
        return f"the workspace of {workspace.workspace_config}"
    return "the workspace of the config.json found from the working folder"


class AzureMLModelSource(ModelSource):
    """`azureml:NAME:VERSION`: a registered model of an Azure ML workspace, downloaded at build time."""

    name: ClassVar[str] = "azureml"
    Options = Workspace

    @property
    def workspace(self) -> Workspace:
        """The config's `model_sources.azureml` if it names a workspace; else an Azure ML target's."""
        own: Workspace = self.options  # type: ignore[assignment]
        if not own.names_workspace and isinstance(self.target_options, Workspace):
            return self.target_options
        return own

    def check(self, uri: str) -> None:
        parse_uri(uri)

    def ml_client(self) -> Any:
        """MLClient with DefaultAzureCredential for the workspace (no call is made yet)."""
        return ml_client(self.workspace, PluginError, f"model {self.name} URIs")

    def fetch(self, uri: str, dest: Path) -> Path:
        name, version = parse_uri(uri)
        client = self.ml_client()
        where = _where(self.workspace)
        from azure.core.exceptions import ResourceNotFoundError

        try:
            model = client.models.get(name=name, version=version)
        except ResourceNotFoundError:
            raise PluginError(f"{uri}: no model {name!r} version {version} is registered in {where}") from None
        except Exception as exc:
            raise PluginError(f"{uri}: cannot look the model up in {where}: {short(exc)}") from None
        try:
            client.models.download(name=name, version=version, download_path=str(dest))
        except Exception as exc:
            raise PluginError(f"{uri}: downloading the model from {where} failed: {short(exc)}") from None
        return locate(Path(dest), uri, getattr(model, "type", None))


def locate(folder: Path, uri: str, kind: str | None) -> Path:
    """The downloaded model: the one folder holding an MLmodel file, else the one file downloaded."""
    mlmodels = sorted(folder.rglob("MLmodel"))
    if len(mlmodels) == 1:
        return mlmodels[0].parent
    if len(mlmodels) > 1:
        found = ", ".join(str(p.parent.relative_to(folder)) for p in mlmodels[:5])
        raise PluginError(f"{uri} holds {len(mlmodels)} MLflow models ({found}); SEI serves one model per entry")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if len(files) == 1:
        return files[0]
    shown = ", ".join(str(p.relative_to(folder)) for p in files[:5]) + (" ..." if len(files) > 5 else "")
    raise PluginError(
        f"{uri} (a {kind or 'model'}) holds {len(files)} files and no MLmodel file ({shown or 'nothing'}); SEI "
        "takes a registered MLflow model (sklearn flavour) or a model registered as a single file"
    )
