"""The `azureml-batch` deploy target: an Azure ML batch endpoint (azure-ai-ml, SDK v2) that scores SEI batch jobs.

The same build folder as every target: the deployment runs its `batch_score.py` (CodeConfiguration),
with its `models/` folder as the model, in an environment built like the online target's (image.py)
plus the packages Azure ML's batch runner needs. `deploy` makes the endpoint, its deployment (a
`ModelBatchDeployment` on the configured compute cluster), makes that deployment the default, and
returns the endpoint's invocation URI. Batch endpoints take Microsoft Entra ID tokens only: there is
no key to return or print.

A job is one invocation. Its input is a job folder (`sei batch encrypt`: manifest.json, keys/,
shards/) as a `uri_folder` the workspace can read (a datastore path or a data asset); its output is
a folder, where each shard's result lands as results/ID.json:

    az ml batch-endpoint invoke --name ENDPOINT --input azureml://datastores/jobs/paths/june \\
        --input-type uri_folder --output-path azureml://datastores/workspaceblobstore/paths/sei/june
    az ml job download --name JOB --output-name score --download-path .
    sei batch decrypt JOB_FOLDER --results named-outputs/score --out predictions.parquet

or from Python, `ml_client.batch_endpoints.invoke(endpoint_name=ENDPOINT, input=Input(type="uri_folder",
path=...), outputs={"score": Output(type="uri_folder", path=...)})`. Invoking again with the same
output scores only the shards that have no result there yet (docs/azure.md, "Batch endpoints").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from sei_framework import Build, DeployError, Endpoint

from .endpoint import EndpointTarget
from .image import BATCH_RUNTIME_REQUIREMENTS, write_build_context
from .options import BatchOptions
from .sdk import short

__all__ = ["AzureMLBatchTarget", "BATCH_SCRIPT", "check_loadable", "root_layout"]

BATCH_SCRIPT = "batch_score.py"
"""The build's Azure ML batch entry script (score_template/batch_score.py)."""


def root_layout(document: dict[str, Any]) -> dict[str, Any]:
    """A dumped ModelBatchDeployment in the batch deployment YAML's root-level layout, the one
    `azure.ai.ml.load_batch_deployment` reads (it refuses the `settings` block the SDK dumps): the settings
    moved to the top level, and the instance count only in `resources` (the SDK dumps it in both places).
    With `type: model` kept, the loader gives back a ModelBatchDeployment, what `deploy` submits."""
    document = dict(document)
    settings = dict(document.pop("settings", None) or {})
    settings.pop("instance_count", None)
    document.update(settings)
    return document


class AzureMLBatchTarget(EndpointTarget):
    """Azure ML batch endpoint + model batch deployment running batch_score.py; `delete` removes the endpoint."""

    name: ClassVar[str] = "azureml-batch"
    Options = BatchOptions
    kind = "batch endpoint"
    script = BATCH_SCRIPT
    environment_prefix = "sei-batch-"

    def operations(self, client: Any) -> tuple[Any, Any]:
        return client.batch_endpoints, client.batch_deployments

    def route(self, endpoint: Any) -> None:
        endpoint.defaults = {"deployment_name": self.opts.deployment_name}

    def live_endpoint(self, client: Any, name: str) -> Endpoint:
        """The invocation URI; no headers: callers sign in with Microsoft Entra ID."""
        live = client.batch_endpoints.get(name=name)
        if not getattr(live, "scoring_uri", None):
            raise DeployError(f"batch endpoint {name!r} has no invocation URI yet")
        return Endpoint(live.scoring_uri)

    # -- entities -----------------------------------------------------------------------------

    def endpoint_entity(self, build: Build) -> Any:
        self.require_sdk()
        from azure.ai.ml.entities import BatchEndpoint

        return BatchEndpoint(
            name=self.endpoint_name(build.name),
            description=self.description(build),
            tags=self.tags(build),
        )  # auth_mode: aad_token, the only one batch endpoints have

    def deployment_entity(self, build: Build, context: Path) -> Any:
        """The deployment of `build` with the environment built from the Docker build context `context`.
        Batch scoring keeps no service state, so no Redis URL reaches it, whatever the config's `state`."""
        fields = self.deployment_fields(build, context)
        from azure.ai.ml.entities import ModelBatchDeployment

        return ModelBatchDeployment(**fields, compute=self.opts.compute, settings=self.settings())

    def settings(self) -> Any:
        """The deployment's mini-batches, instances, concurrency, retries and outputs, as the SDK's entity."""
        self.require_sdk()
        from azure.ai.ml.entities import BatchRetrySettings, ModelBatchDeploymentSettings

        o = self.opts
        return ModelBatchDeploymentSettings(
            mini_batch_size=o.mini_batch_size,
            instance_count=o.instance_count,
            max_concurrency_per_instance=o.max_concurrency_per_instance,
            output_action=o.output_action,
            retry_settings=BatchRetrySettings(**o.retry_settings.model_dump()),
            error_threshold=o.error_threshold,
        )

    def write_environment(self, build: Build, folder: Path) -> list[Path]:
        """The environment's Docker build context: the online target's, with the batch runner's packages."""
        return write_build_context(build, folder, base_image=self.opts.base_image, runtime=BATCH_RUNTIME_REQUIREMENTS)

    # -- dry run ------------------------------------------------------------------------------

    def dry_run(self, build: Build, out: Path) -> list[Path]:
        """Write endpoint.yml and deployment.yml (paths relative to OUT), the environment's build context and
        workspace.json; both YAML files are read back with the SDK's own loaders before this returns."""
        out = Path(out)
        written = self.write_environment(build, out / "environment")
        endpoint = self.endpoint_entity(build)
        self.route(endpoint)  # as `deploy` leaves it
        deployment = self.deployment_entity(build, out / "environment")
        files = self.write_dry_run(build, out, endpoint, deployment, layout=root_layout)
        check_loadable(*files[:2])
        return [build.path / BATCH_SCRIPT, *written, *files]


def check_loadable(endpoint_file: Path, deployment_file: Path) -> None:
    """DeployError unless `load_batch_endpoint` and `load_batch_deployment` accept the files as written."""
    from azure.ai.ml import load_batch_deployment, load_batch_endpoint

    for load, path in ((load_batch_endpoint, endpoint_file), (load_batch_deployment, deployment_file)):
        try:
            load(path)
        except Exception as exc:
            raise DeployError(f"the SDK's {load.__name__} refuses {path}: {short(exc)}") from None
