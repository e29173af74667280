"""What the two endpoint targets share: names, tags, a deployment's model, code and environment, the
SDK client, delete, status, and the dry run's endpoint.yml and deployment.yml."""

from __future__ import annotations

import io
import json
from abc import abstractmethod
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import yaml

from sei_azureml_common import service_description, service_tags

from sei_framework import Build, DeployError, DeploymentStatus, DeployTarget, Endpoint

from .image import write_build_context
from .options import ENDPOINT_NAME_PATTERN
from .sdk import ml_client, relative_path, require_sdk, short, workspace_reference

__all__ = ["EndpointTarget"]


class EndpointTarget(DeployTarget):
    """An Azure ML endpoint with one deployment running one of the build's entry scripts."""

    kind: ClassVar[str]
    """What the endpoint is called in messages ("managed online endpoint", "batch endpoint")."""
    script: ClassVar[str]
    """The build's entry script the deployment runs."""
    environment_prefix: ClassVar[str]

    @property
    def opts(self) -> Any:
        return self.options

    @abstractmethod
    def operations(self, client: Any) -> tuple[Any, Any]:
        """The SDK's operations for this kind of endpoint and its deployments (`client.online_endpoints`, ...)."""

    @abstractmethod
    def route(self, endpoint: Any) -> None:
        """Point `endpoint` at the deployment (online: its traffic; batch: its default)."""

    @abstractmethod
    def live_endpoint(self, client: Any, name: str) -> Endpoint:
        """The deployed endpoint's URI (and the headers a client needs), read back from Azure."""

    @abstractmethod
    def endpoint_entity(self, build: Build) -> Any:
        """The SDK's endpoint entity for `build`."""

    @abstractmethod
    def deployment_entity(self, build: Build, context: Path) -> Any:
        """The SDK's deployment entity for `build`, its environment built from the Docker build context `context`."""

    def deploy(self, build: Build) -> Endpoint:
        """The endpoint, then its deployment (environment built from the build), then the route to it."""
        endpoint = self.endpoint_entity(build)
        name = endpoint.name
        with tempfile.TemporaryDirectory(prefix=self.environment_prefix) as tmp:
            context = Path(tmp) / "environment"
            self.write_environment(build, context)
            deployment = self.deployment_entity(build, context)
            client = self.ml_client()
            endpoints, deployments = self.operations(client)
            timeout = self.opts.deploy_timeout_s
            try:
                endpoints.begin_create_or_update(endpoint).result(timeout=timeout)
                deployments.begin_create_or_update(deployment).result(timeout=timeout)
                self.route(endpoint)
                endpoints.begin_create_or_update(endpoint).result(timeout=timeout)
                return self.live_endpoint(client, name)
            except DeployError:
                raise
            except Exception as exc:
                raise DeployError(f"deploying {self.kind} {name!r} failed: {short(exc)}") from None

    def endpoint_name(self, name: str) -> str:
        endpoint = self.opts.endpoint_name or name
        if not re.fullmatch(ENDPOINT_NAME_PATTERN, endpoint):
            raise DeployError(
                f"{endpoint!r} cannot name a {self.kind} (3-32 characters: letters, digits and hyphens, starting "
                "with a letter); set deploy.options.endpoint_name"
            )
        return endpoint

    def tags(self, build: Build) -> dict[str, str]:
        return service_tags(build, self.opts)

    def description(self, build: Build) -> str:
        return service_description(build, self.opts)

    def require_sdk(self) -> None:
        require_sdk(DeployError, f"the {self.name} deploy target")

    def ml_client(self) -> Any:
        """MLClient with DefaultAzureCredential for the configured workspace (no call is made yet)."""
        return ml_client(self.opts, DeployError, f"the {self.name} deploy target")

    def write_environment(self, build: Build, folder: Path) -> list[Path]:
        """The environment's Docker build context (image.py)."""
        return write_build_context(build, folder, base_image=self.opts.base_image)

    def deployment_fields(self, build: Build, context: Path) -> dict[str, Any]:
        """What every deployment of `build` has: its name and endpoint, the build's `models/` as the model,
        the build folder as code with this target's script, and the environment built from `context`."""
        self.require_sdk()
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import BuildContext, CodeConfiguration, Environment, Model

        if not (build.path / self.script).is_file():
            raise DeployError(f"build {build.path} has no {self.script} (made by an older sei-framework): build it again")

        def where(path: Path) -> str:
            return str(Path(path).resolve())

        endpoint = self.endpoint_name(build.name)
        return {
            "name": self.opts.deployment_name,
            "endpoint_name": endpoint,
            "description": self.description(build),
            "tags": self.tags(build),
            "model": Model(
                name=self.opts.model_name or endpoint,
                path=where(build.models_dir),
                type=AssetTypes.CUSTOM_MODEL,
                description=self.description(build),
            ),
            "environment": Environment(name=f"{self.environment_prefix}{endpoint}", build=BuildContext(path=where(context))),
            "code_configuration": CodeConfiguration(code=where(build.path), scoring_script=self.script),
        }

    def logs_hint(self, endpoint: str) -> str | None:
        """Where the deployment's logs are read (a command), for `sei status`; None: no one place."""
        return None

    def status(self, name: str) -> DeploymentStatus:
        """What Azure holds of the endpoint: provisioning state, scoring URI, traffic (never its keys)."""
        endpoint = self.endpoint_name(name)
        client = self.ml_client()
        from azure.core.exceptions import ResourceNotFoundError

        try:
            live = self.operations(client)[0].get(name=endpoint)
        except ResourceNotFoundError:
            return DeploymentStatus("not deployed", details={"endpoint": endpoint})
        except Exception as exc:
            raise DeployError(f"cannot read {self.kind} {endpoint!r}: {short(exc)}") from None
        provisioning = str(getattr(live, "provisioning_state", None) or "unknown")
        details = {"endpoint": endpoint, "provisioning_state": provisioning}
        traffic = getattr(live, "traffic", None) or {}
        if traffic:
            details["traffic"] = ", ".join(f"{deployment} {share}%" for deployment, share in traffic.items())
        hint = self.logs_hint(endpoint)
        details |= {"logs": hint} if hint else {}
        state = "running" if provisioning.lower() == "succeeded" else provisioning.lower()
        return DeploymentStatus(state, scoring_uri=getattr(live, "scoring_uri", None) or None, details=details)

    def delete(self, name: str) -> bool:
        endpoint = self.endpoint_name(name)
        client = self.ml_client()
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.operations(client)[0].begin_delete(name=endpoint).result(timeout=self.opts.deploy_timeout_s)
        except ResourceNotFoundError:
            return False
        except Exception as exc:
            raise DeployError(f"cannot delete {self.kind} {endpoint!r}: {short(exc)}") from None
        return True

    def write_dry_run(
        self, build: Build, out: Path, endpoint: Any, deployment: Any, layout: Callable[[dict], dict] = lambda d: d
    ) -> list[Path]:
        """endpoint.yml, deployment.yml (through `layout`, with paths relative to OUT: the SDK writes absolute
        ones) and workspace.json, the workspace named, never a credential."""
        endpoint_file, deployment_file, workspace_file = out / "endpoint.yml", out / "deployment.yml", out / "workspace.json"
        endpoint_file.write_text(yaml.safe_dump(json.loads(json.dumps(endpoint.dump())), sort_keys=False))
        buffer = io.StringIO()
        deployment.dump(buffer)
        document = layout(yaml.safe_load(buffer.getvalue()))
        document["code_configuration"]["code"] = relative_path(build.path, out)
        document["model"]["path"] = relative_path(build.models_dir, out)
        document["environment"]["build"]["path"] = relative_path(out / "environment", out)
        deployment_file.write_text(yaml.safe_dump(document, sort_keys=False))
        workspace_file.write_text(json.dumps(workspace_reference(self.opts), indent=2) + "\n")
        return [endpoint_file, deployment_file, workspace_file]
