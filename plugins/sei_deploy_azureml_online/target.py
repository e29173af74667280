"""The `azureml-online` deploy target: a managed online endpoint (azure-ai-ml, SDK v2).

The same build folder as every target: the deployment runs its `score.py` (CodeConfiguration),
with its `models/` folder as the model, in an environment built from a Docker build context
that carries the wheels no index has (see image.py). The endpoint uses key auth; `deploy`
returns its scoring URI with the key in the Authorization header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from sei_azureml_common import service_environment

from sei_framework import Build, DeployError, Endpoint, cors_environment

from .endpoint import EndpointTarget
from .options import OnlineOptions

__all__ = ["AzureMLOnlineTarget"]


class AzureMLOnlineTarget(EndpointTarget):
    """Azure ML managed online endpoint + deployment; `delete` removes the endpoint."""

    name: ClassVar[str] = "azureml-online"
    Options = OnlineOptions
    kind = "managed online endpoint"
    script = "score.py"
    environment_prefix = "sei-"

    def operations(self, client: Any) -> tuple[Any, Any]:
        return client.online_endpoints, client.online_deployments

    def route(self, endpoint: Any) -> None:
        endpoint.traffic = {self.opts.deployment_name: 100}

    def live_endpoint(self, client: Any, name: str) -> Endpoint:
        """The scoring URI, with the endpoint's primary key in the Authorization header."""
        live = client.online_endpoints.get(name=name)
        keys = client.online_endpoints.get_keys(name=name)
        if not getattr(live, "scoring_uri", None) or not getattr(keys, "primary_key", None):
            raise DeployError(f"managed online endpoint {name!r} has no scoring URI or key yet")
        return Endpoint(live.scoring_uri, headers={"Authorization": f"Bearer {keys.primary_key}"})

    def logs_hint(self, endpoint: str) -> str | None:
        return f"az ml online-deployment get-logs --endpoint-name {endpoint} --name {self.opts.deployment_name}"

    # -- entities -----------------------------------------------------------------------------

    def endpoint_entity(self, build: Build) -> Any:
        self.require_sdk()
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        return ManagedOnlineEndpoint(
            name=self.endpoint_name(build.name),
            auth_mode="key",
            description=self.description(build),
            tags=self.tags(build),
        )

    def deployment_entity(self, build: Build, context: Path, *, dry_run: bool = False) -> Any:
        """The deployment of `build` with the environment built from the Docker build context `context`."""
        fields = self.deployment_fields(build, context)
        from azure.ai.ml.entities import ManagedOnlineDeployment

        return ManagedOnlineDeployment(
            **fields,
            environment_variables={
                **service_environment(
                    build, dry_run=dry_run, secret_reference=self.opts.redis_url_secret, target="azureml-online"
                ),
                **cors_environment(self.opts.cors_origins),
            },
            **self.scaling(),
        )

    def scaling(self) -> dict[str, Any]:
        """The deployment's instances, request settings, probes and scale settings, as SDK entities."""
        self.require_sdk()
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

    # -- dry run ------------------------------------------------------------------------------

    def dry_run(self, build: Build, out: Path) -> list[Path]:
        """Write endpoint.yml, deployment.yml (paths relative to OUT) and the environment's build context."""
        out = Path(out)
        written = self.write_environment(build, out / "environment")
        deployment = self.deployment_entity(build, out / "environment", dry_run=True)
        files = self.write_dry_run(build, out, self.endpoint_entity(build), deployment)
        return [build.score_script, *written, *files]
