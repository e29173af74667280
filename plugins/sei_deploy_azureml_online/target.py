"""The `azureml-online` deploy target: a managed online endpoint (azure-ai-ml, SDK v2).

The same build folder as every target: the deployment runs its `score.py` (CodeConfiguration),
with its `models/` folder as the model, in an environment built from a Docker build context
that carries the wheels no index has (see image.py). The endpoint uses key auth; `deploy`
returns its scoring URI with the key in the Authorization header.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import yaml

from sei_azureml_common import service_description, service_environment, service_tags

from sei_framework import Build, DeployError, DeployTarget, Endpoint

from .image import write_build_context
from .options import ENDPOINT_NAME_PATTERN, OnlineOptions
from .sdk import ml_client, relative_path, require_sdk, short, workspace_reference

__all__ = ["AzureMLOnlineTarget"]


class AzureMLOnlineTarget(DeployTarget):
    """Azure ML managed online endpoint + deployment; `delete` removes the endpoint."""

    name: ClassVar[str] = "azureml-online"
    Options = OnlineOptions

    @property
    def opts(self) -> OnlineOptions:
        return self.options  # type: ignore[return-value]

    def endpoint_name(self, name: str) -> str:
        endpoint = self.opts.endpoint_name or name
        if not re.fullmatch(ENDPOINT_NAME_PATTERN, endpoint):
            raise DeployError(
                f"{endpoint!r} cannot name a managed online endpoint (3-32 characters: letters, digits and "
                "hyphens, starting with a letter); set deploy.options.endpoint_name"
            )
        return endpoint

    def tags(self, build: Build) -> dict[str, str]:
        return service_tags(build, self.opts)

    def description(self, build: Build) -> str:
        return service_description(build, self.opts)

    # -- entities -----------------------------------------------------------------------------

    def endpoint_entity(self, build: Build) -> Any:
        require_sdk(DeployError, "the azureml-online deploy target")
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        return ManagedOnlineEndpoint(
            name=self.endpoint_name(build.name),
            auth_mode="key",
            description=self.description(build),
            tags=self.tags(build),
        )

    def deployment_entity(self, build: Build, context: Path, *, dry_run: bool = False) -> Any:
        """The deployment of `build` with the environment built from the Docker build context `context`."""
        require_sdk(DeployError, "the azureml-online deploy target")
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import (
            BuildContext,
            CodeConfiguration,
            Environment,
            ManagedOnlineDeployment,
            Model,
        )

        def where(path: Path) -> str:
            return str(Path(path).resolve())

        endpoint = self.endpoint_name(build.name)
        return ManagedOnlineDeployment(
            name=self.opts.deployment_name,
            endpoint_name=endpoint,
            description=self.description(build),
            tags=self.tags(build),
            model=Model(
                name=self.opts.model_name or endpoint,
                path=where(build.models_dir),
                type=AssetTypes.CUSTOM_MODEL,
                description=self.description(build),
            ),
            environment=Environment(name=f"sei-{endpoint}", build=BuildContext(path=where(context))),
            code_configuration=CodeConfiguration(code=where(build.path), scoring_script="score.py"),
            environment_variables=service_environment(build, dry_run=dry_run),
            **self.scaling(),
        )

    def scaling(self) -> dict[str, Any]:
        """The deployment's instances, request settings, probes and scale settings, as SDK entities."""
        require_sdk(DeployError, "the azureml-online deploy target")
        from azure.ai.ml.entities import DefaultScaleSettings, OnlineRequestSettings, ProbeSettings

        o = self.opts

        def probe(settings: Any) -> Any:
            return None if settings is None else ProbeSettings(**settings.model_dump())

        return {
            "instance_type": o.instance_type,
            "instance_count": o.instance_count,
            "request_settings": OnlineRequestSettings(
                request_timeout_ms=o.request_timeout_ms,
                max_concurrent_requests_per_instance=o.max_concurrent_requests_per_instance,
                max_queue_wait_ms=o.max_queue_wait_ms,
            ),
            "liveness_probe": probe(o.liveness_probe),
            "readiness_probe": probe(o.readiness_probe),
            "scale_settings": DefaultScaleSettings(),  # the only type managed endpoints take (ScaleSettings)
        }

    # -- Azure --------------------------------------------------------------------------------

    def ml_client(self) -> Any:
        """MLClient with DefaultAzureCredential for the configured workspace (no call is made yet)."""
        return ml_client(self.opts, DeployError, "the azureml-online deploy target")

    def deploy(self, build: Build) -> Endpoint:
        endpoint = self.endpoint_entity(build)
        name = endpoint.name
        with tempfile.TemporaryDirectory(prefix="sei-online-") as tmp:
            context = Path(tmp) / "environment"
            write_build_context(build, context, base_image=self.opts.base_image)
            deployment = self.deployment_entity(build, context)
            client = self.ml_client()
            timeout = self.opts.deploy_timeout_s
            try:
                client.online_endpoints.begin_create_or_update(endpoint).result(timeout=timeout)
                client.online_deployments.begin_create_or_update(deployment).result(timeout=timeout)
                endpoint.traffic = {self.opts.deployment_name: 100}
                client.online_endpoints.begin_create_or_update(endpoint).result(timeout=timeout)
                live = client.online_endpoints.get(name=name)
                keys = client.online_endpoints.get_keys(name=name)
            except Exception as exc:
                raise DeployError(f"deploying managed online endpoint {name!r} failed: {short(exc)}") from None
        if not getattr(live, "scoring_uri", None) or not getattr(keys, "primary_key", None):
            raise DeployError(f"managed online endpoint {name!r} has no scoring URI or key yet")
        return Endpoint(live.scoring_uri, headers={"Authorization": f"Bearer {keys.primary_key}"})

    def delete(self, name: str) -> bool:
        endpoint = self.endpoint_name(name)
        client = self.ml_client()
        from azure.core.exceptions import ResourceNotFoundError

        try:
            client.online_endpoints.begin_delete(name=endpoint).result(timeout=self.opts.deploy_timeout_s)
        except ResourceNotFoundError:
            return False
        except Exception as exc:
            raise DeployError(f"cannot delete managed online endpoint {endpoint!r}: {short(exc)}") from None
        return True

    # -- dry run ------------------------------------------------------------------------------

    def dry_run(self, build: Build, out: Path) -> list[Path]:
        """Write endpoint.yml, deployment.yml (paths relative to OUT) and the environment's build context."""
        out = Path(out)
        written = write_build_context(build, out / "environment", base_image=self.opts.base_image)
        endpoint = self.endpoint_entity(build)
        (out / "endpoint.yml").write_text(yaml.safe_dump(json.loads(json.dumps(endpoint.dump())), sort_keys=False))
        buffer = io.StringIO()
        self.deployment_entity(build, out / "environment", dry_run=True).dump(buffer)
        document = yaml.safe_load(buffer.getvalue())  # the SDK writes absolute paths: make them relative to OUT
        document["code_configuration"]["code"] = relative_path(build.path, out)
        document["model"]["path"] = relative_path(build.models_dir, out)
        document["environment"]["build"]["path"] = relative_path(out / "environment", out)
        deployment_file = out / "deployment.yml"
        deployment_file.write_text(yaml.safe_dump(document, sort_keys=False))
        workspace = workspace_reference(self.opts)
        (out / "workspace.json").write_text(json.dumps(workspace, indent=2) + "\n")
        return [build.score_script, *written, out / "endpoint.yml", deployment_file, out / "workspace.json"]
