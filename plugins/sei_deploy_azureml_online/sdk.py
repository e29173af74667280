"""What the targets and the model source share: the SDK v2 check, one-line SDK errors, MLClient, and
how a dry run names the workspace and its folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sei_azureml_common import Workspace

from sei_framework import SeiError, require_extra

__all__ = ["require_sdk", "short", "ml_client", "relative_path", "workspace_reference"]



def require_sdk(error: type[SeiError], what: str) -> None:
    """Raise `error` naming the `azureml-online` extra when azure-ai-ml or azure-identity is missing."""
    require_extra("azureml-online", f"{what} (Azure ML SDK v2)", error)


def short(exc: BaseException) -> str:
    """The exception's type and its message on one line (the SDK's messages span several)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:400]}" if text else type(exc).__name__


def ml_client(workspace: Workspace, error: type[SeiError], what: str) -> Any:
    """MLClient with DefaultAzureCredential for `workspace` (no call is made yet); `error` if it cannot."""
    require_sdk(error, what)
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    try:
        if workspace.workspace_name:
            return MLClient(
                DefaultAzureCredential(), workspace.subscription_id, workspace.resource_group, workspace.workspace_name
            )
        path = str(workspace.workspace_config) if workspace.workspace_config else None
        return MLClient.from_config(DefaultAzureCredential(), path=path)
    except Exception as exc:
        raise error(f"cannot open the Azure ML workspace for {what}: {short(exc)}") from None


def relative_path(path: Path, base: Path) -> str:
    """`path` relative to `base`, with forward slashes: the SDK writes absolute paths, a dry run does not."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def workspace_reference(workspace: Workspace) -> dict[str, Any]:
    """The workspace a dry run would deploy to, for its workspace.json (names only; no credential is an option)."""
    if workspace.workspace_name:
        return {
            "subscription_id": workspace.subscription_id,
            "resource_group": workspace.resource_group,
            "name": workspace.workspace_name,
        }
    config = workspace.workspace_config
    return {"config": str(config) if config else "config.json found from the working folder"}
