"""Options of the `azureml-online` target (the workspace, the endpoint, its instances and probes) and of the
`azureml-batch` target (the workspace, the batch endpoint, its compute cluster and mini-batches)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from sei_azureml_common import SECRET_REFERENCE_PATTERN, WorkspaceOptions

from sei_framework import PluginOptions, check_cors_origins

__all__ = [
    "BatchOptions",
    "RetrySettings",
    "OnlineOptions",
    "LivenessProbe",
    "ReadinessProbe",
    "ScaleSettings",
    "ENDPOINT_NAME_PATTERN",
    "COMPUTE_NAME_PATTERN",
    "DEFAULT_BASE_IMAGE",
]

ENDPOINT_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$"
COMPUTE_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9-]{1,31}$"
DEFAULT_BASE_IMAGE = "mcr.microsoft.com/azureml/minimal-py311-inference:latest"


class LivenessProbe(PluginOptions):
    """When to restart a container: Azure ML's ProbeSettings, in seconds (unset: Azure's defaults,
    10 s delay, every 10 s, 2 s timeout, restart after 30 failures). The ranges are Azure's."""

    initial_delay: int | None = Field(default=None, ge=1)
    period: int | None = Field(default=None, ge=1)
    timeout: int | None = Field(default=None, ge=1)
    failure_threshold: int | None = Field(default=None, ge=1)
    success_threshold: Literal[1] | None = None
    """Fixed at 1 for a liveness probe."""


class ReadinessProbe(LivenessProbe):
    """When a container takes traffic: the same settings; `success_threshold` may exceed 1."""

    success_threshold: int | None = Field(default=None, ge=1)  # type: ignore[assignment]


class ScaleSettings(PluginOptions):
    """Managed online deployments support only the `default` scale type: a fixed `instance_count`.
    Autoscaling is an Azure Monitor autoscale setting on the deployment, a separate resource."""

    type: Literal["default"] = "default"


class OnlineOptions(WorkspaceOptions):
    """A managed online endpoint (key auth) with one deployment serving the build.

    The workspace comes from `config.json` (`workspace_config`, or one found from the working
    folder) or from `subscription_id` + `resource_group` + `workspace_name`. Credentials are
    `DefaultAzureCredential`'s (Azure CLI login, managed identity, AZURE_* environment variables),
    never options.
    """

    endpoint_name: str | None = Field(default=None, pattern=ENDPOINT_NAME_PATTERN)
    """Endpoint name, unique in the Azure region (default: the config's name); 3-32 characters."""
    deployment_name: str = Field(default="sei", pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,31}$")
    redis_url_secret: str | None = Field(default=None, pattern=SECRET_REFERENCE_PATTERN)
    """With `state: redis`: where the deployment reads the Redis URL, as an Azure ML secret-injection
    reference (`${{keyvault:https://VAULT.vault.azure.net/secrets/NAME}}` or
    `${{azureml://connections/NAME/credentials/KEY}}`) instead of the deploying machine's variable."""
    instance_type: str = Field(default="Standard_DS2_v2", pattern=r"^[A-Za-z][A-Za-z0-9_]{1,63}$")
    instance_count: int = Field(default=1, ge=1)
    """Instances at creation; Azure recommends at least 3 for high availability."""
    request_timeout_ms: int = Field(default=90_000, ge=1_000, le=180_000)
    """Encrypted scoring takes seconds: the platform's 5 s default would cut requests off (Azure's maximum: 180 s)."""
    max_concurrent_requests_per_instance: int = Field(default=1, ge=1)
    max_queue_wait_ms: int | None = Field(default=None, ge=0)
    """How long a request may wait in the instance's queue (unset: Azure's default, 500 ms)."""
    liveness_probe: LivenessProbe | None = None
    readiness_probe: ReadinessProbe | None = None
    scale_settings: ScaleSettings = ScaleSettings()
    base_image: str = DEFAULT_BASE_IMAGE
    """An Azure ML inference image (it runs azmlinfsrv); its Python must suit the wheels (3.11 by default)."""
    deploy_timeout_s: float = Field(default=3600, gt=0)
    cors_origins: list[str] = []
    """Exact origins of web pages allowed to call the deployment from a browser (azmlinfsrv's AML_CORS_ORIGINS,
    an environment variable of the deployment); never `*`, as the endpoint takes a key (docs/browser.md)."""

    @field_validator("cors_origins")
    @classmethod
    def _cors(cls, value: list[str]) -> list[str]:
        return check_cors_origins(value, auth=True)


class RetrySettings(PluginOptions):
    """Azure ML's BatchRetrySettings: how often a mini-batch that fails or times out is tried again, and its
    timeout. Azure's default timeout (30 s) is short for encrypted scoring of whole shards."""

    max_retries: int = Field(default=3, ge=0)
    timeout: int = Field(default=300, ge=1)
    """Seconds one `run(mini_batch)` call may take."""


class BatchOptions(WorkspaceOptions):
    """A batch endpoint (Microsoft Entra ID auth, no keys) whose default deployment runs the build's
    batch_score.py on a compute cluster of the workspace. The workspace options are the online target's;
    credentials are `DefaultAzureCredential`'s, never options."""

    compute: str = Field(pattern=COMPUTE_NAME_PATTERN)
    """The workspace's compute cluster (AmlCompute) that runs the jobs, by name; it must exist."""
    endpoint_name: str | None = Field(default=None, pattern=ENDPOINT_NAME_PATTERN)
    """Endpoint name, unique in the Azure region (default: the config's name); 3-32 characters."""
    deployment_name: str = Field(default="sei", pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,31}$")
    instance_count: int = Field(default=1, ge=1)
    """Nodes of the cluster one job runs on."""
    max_concurrency_per_instance: int = Field(default=1, ge=1)
    """`run()` processes per node, each with the build loaded and its own converted keys."""
    mini_batch_size: int = Field(default=10, ge=1)
    """Files per `run()` call: a job folder's shards (its manifest and key files are passed over)."""
    retry_settings: RetrySettings = RetrySettings()
    error_threshold: int = Field(default=-1, ge=-1)
    """Failed files after which Azure stops the job (-1: never; every shard is tried, and `sei batch decrypt`
    names those without a result)."""
    output_action: Literal["summary_only", "append_row"] = "summary_only"
    """summary_only: results are files (results/ID.json in the job's output); append_row also writes the
    one-line outcomes of `run()` into the output's predictions.csv."""
    base_image: str = DEFAULT_BASE_IMAGE
    """The image the environment extends (its Python must suit the wheels; 3.11 by default)."""
    deploy_timeout_s: float = Field(default=3600, gt=0)
