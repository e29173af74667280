"""Deployment config files: the core schema, then each named plugin's own `Options`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .base import DeployTarget, KeyTransport, ModelAdapter, ModelSource, PluginOptions
from .errors import ConfigError, UnknownPluginError
from .paths import config_context
from .plugins import SeiPlugins
from .registry import SCHEME_PATTERN, Registry
from .validation import validation_problems

__all__ = [
    "ModelLimitsConfig",
    "ModelConfig",
    "TransportConfig",
    "DeployConfig",
    "LimitsConfig",
    "StateConfig",
    "SeiConfig",
    "ResolvedModel",
    "ResolvedConfig",
    "load_config",
    "parse_config",
    "resolve_config",
    "model_uri_scheme",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelLimitsConfig(_Strict):
    """One model's own limits; unset, the build fits them to the model (see `sei_framework.limits`)."""

    max_rows_per_request: int | None = Field(default=None, ge=1)
    """Rows one request to this model may hold; the build refuses a value whose requests cannot fit
    `limits.max_request_mb`."""


def model_uri_scheme(path: object) -> str | None:
    """The scheme of a model URI (`azureml:NAME:VERSION` -> `azureml`); None for a file or folder path.

    A string that starts with a scheme of two or more characters and a colon is a URI (one letter
    and a colon is a Windows drive); write `./name:with-colon` for a local file so named."""
    if not isinstance(path, str):
        return None
    match = re.match(rf"^({SCHEME_PATTERN}):", path)
    return match.group(1) if match else None


class ModelConfig(_Strict):
    """One model the service holds, served by the named adapter."""

    name: str = Field(pattern=NAME_PATTERN)
    adapter: str
    path: Path | str
    """A model file or folder (an MLflow model, say), relative to the config file; or a model URI
    (`SCHEME:...`, e.g. `azureml:NAME:VERSION`) that the model source registered for SCHEME fetches
    at build time."""
    options: dict[str, Any] = {}
    limits: ModelLimitsConfig = ModelLimitsConfig()

    @field_validator("path", mode="before")
    @classmethod
    def _path_or_uri(cls, value: Any) -> Any:
        """A URI stays a string; anything else is a path."""
        if isinstance(value, str) and model_uri_scheme(value) is None:
            return Path(value)
        return value

    @property
    def uri_scheme(self) -> str | None:
        return model_uri_scheme(self.path)


class TransportConfig(_Strict):
    """How clients' public keys reach the service."""

    name: str = "inline"
    options: dict[str, Any] = {}


class DeployConfig(_Strict):
    """Where the service runs."""

    target: str = "local"
    options: dict[str, Any] = {}


class LimitsConfig(_Strict):
    """What one service accepts; defaults suit the built-in adapters."""

    max_request_mb: float = Field(default=64, gt=0)
    max_rows_per_request: int = Field(default=64, ge=1)
    """Rows per request for a model that sets none of its own (`models[].limits`); a model whose
    adapter reports its request size gets at least one natural batch (sklearn-packed bulk: 4096
    rows), capped at what fits `max_request_mb`."""
    max_public_key_mb: float = Field(default=32, gt=0)
    key_cache_mb: float = Field(default=256, gt=0)
    """Converted public keys each worker keeps, measured as they sit in memory (see docs/security.md)."""
    max_requests_per_key: int | None = Field(default=10000, ge=1)
    """Predict requests one key id may make per quota window (None: no quota); counted per worker
    process with `state: memory`, across every worker and replica with `state: redis`."""
    quota_window_s: float = Field(default=3600, gt=0)


class StateConfig(_Strict):
    """Where quota counts and published keys live: `memory` (one process) or `redis` (shared)."""

    backend: Literal["memory", "redis"] = "memory"
    url_env: str = Field(default="SEI_REDIS_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the Redis URL (never the URL itself: it carries the password)."""
    namespace: str | None = Field(default=None, pattern=NAME_PATTERN)
    """Deployments with the same namespace share quota and keys (default: the deployment name)."""
    prefix: str = Field(default="sei", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    public_key_ttl_s: float = Field(default=7 * 24 * 3600, gt=0)
    """Published public keys unused this long are dropped from Redis."""
    timeout_s: float = Field(default=2.0, gt=0, le=30)
    """Connect and read timeout of each Redis call; past it the request is refused with 503."""


class SeiConfig(_Strict):
    """A deployment: several models, one key transport, one deploy target."""

    name: str = Field(pattern=NAME_PATTERN)
    models: list[ModelConfig] = Field(min_length=1)
    key_transport: TransportConfig = TransportConfig()
    deploy: DeployConfig = DeployConfig()
    limits: LimitsConfig = LimitsConfig()
    state: StateConfig = StateConfig()
    model_sources: dict[str, dict[str, Any]] = {}
    """Options of each model source, by URI scheme (`azureml: {workspace_config: ...}`)."""
    _base_dir: Path | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path | None:
        """The folder relative paths in this config resolve from (the config file's); None: the
        working folder (a config built in code)."""
        return self._base_dir

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        names = [m.name for m in models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        return models


@dataclass(frozen=True)
class ResolvedModel:
    config: ModelConfig
    adapter: type[ModelAdapter]
    options: PluginOptions
    source: Path | str
    """The model file or folder; or its URI, which `model_source` fetches at build time."""
    model_source: ModelSource | None = None


@dataclass(frozen=True)
class ResolvedConfig:
    """A config whose plugin names exist and whose plugin options validated."""

    config: SeiConfig
    models: list[ResolvedModel]
    transport: type[KeyTransport]
    transport_options: PluginOptions
    target: type[DeployTarget]
    target_options: PluginOptions
    plugins: list[str]
    """Entry-point names of the plugins the config uses (what a service must load)."""

    def transport_instance(self) -> KeyTransport:
        return self.transport(self.transport_options)

    def target_instance(self) -> DeployTarget:
        return self.target(self.target_options)


def parse_config(data: Any, *, base_dir: Path, source: str = "config") -> SeiConfig:
    """Validate a mapping against the core schema; every relative path in it (model paths here,
    plugins' `ConfigPath` options in `resolve_config`) resolves from base_dir."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        config = SeiConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source} is invalid:", problems=validation_problems(exc)) from None
    base_dir = Path(base_dir).expanduser().absolute()
    config._base_dir = base_dir
    for model in config.models:
        if isinstance(model.path, Path) and not model.path.is_absolute():
            model.path = (base_dir / model.path).resolve()
    return config


def load_config(path: str | Path) -> SeiConfig:
    """Read and validate a YAML config file (core schema only)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(data, base_dir=path.parent.resolve(), source=str(path))


P = TypeVar("P", ModelAdapter, KeyTransport, DeployTarget)


def _plugin_options(
    registry: Registry[P], name: str, options: dict[str, Any], where: str, problems: list[str], base_dir: Path | None
) -> tuple[type[P] | None, PluginOptions | None]:
    try:
        cls = registry.get(name)
    except UnknownPluginError as exc:
        problems.append(f"{where}: {exc}")
        return None, None
    try:  # ConfigPath fields resolve from the config's folder
        return cls, cls.Options.model_validate(options, context=config_context(base_dir))
    except ValidationError as exc:
        problems.extend(validation_problems(exc, prefix=where.rsplit(".", 1)[0] + ".options"))
        return cls, None


def _model_sources(
    config: SeiConfig, plugins: SeiPlugins, target: type[DeployTarget] | None, target_options: PluginOptions | None,
    problems: list[str],
) -> dict[str, ModelSource]:
    """An instance of each model source that a model's URI or `model_sources` names (no network yet)."""
    registry = plugins.model_sources()
    wanted = [m.uri_scheme for m in config.models if m.uri_scheme] + list(config.model_sources)
    sources: dict[str, ModelSource] = {}
    for scheme in dict.fromkeys(wanted):
        if scheme not in registry:
            if scheme in config.model_sources:
                unknown = UnknownPluginError(registry.kind, scheme, registry.names())
                problems.append(f"model_sources.{scheme}: {unknown}")
            continue
        cls = registry.get(scheme)
        try:  # ConfigPath fields resolve from the config's folder
            options = cls.Options.model_validate(
                config.model_sources.get(scheme, {}), context=config_context(config.base_dir)
            )
        except ValidationError as exc:
            problems.extend(validation_problems(exc, prefix=f"model_sources.{scheme}"))
            continue
        name = target.name if target is not None else None
        sources[scheme] = cls(options, target=name, target_options=target_options)
    return sources


def resolve_config(config: SeiConfig, plugins: SeiPlugins, *, check_files: bool = True) -> ResolvedConfig:
    """Second phase: every named plugin exists and accepts its options; all problems at once."""
    problems: list[str] = []
    adapters = plugins.model_adapters()
    adapter_options = []
    for i, model in enumerate(config.models):
        adapter_options.append(
            _plugin_options(adapters, model.adapter, model.options, f"models[{i}].adapter", problems, config.base_dir)
        )
        if check_files and isinstance(model.path, Path) and not model.path.exists():  # a file, not a URI
            problems.append(f"models[{i}].path: no such file: {model.path}")
    transports, targets = plugins.key_transports(), plugins.deploy_targets()
    tcls, topts = _plugin_options(
        transports, config.key_transport.name, config.key_transport.options, "key_transport.name", problems,
        config.base_dir,
    )
    dcls, dopts = _plugin_options(
        targets, config.deploy.target, config.deploy.options, "deploy.target", problems, config.base_dir
    )
    sources = _model_sources(config, plugins, dcls, dopts, problems)
    models = []
    for i, (model, (cls, options)) in enumerate(zip(config.models, adapter_options, strict=True)):
        scheme = model.uri_scheme
        source = sources.get(scheme) if scheme else None
        if scheme is not None and scheme not in plugins.model_sources():
            available = ", ".join(plugins.model_sources().names()) or "none"
            problems.append(
                f"models[{i}].path: no model source handles {scheme!r} URIs (available: {available}); "
                "write a local path that starts with a word and a colon as ./PATH"
            )
        elif source is not None:
            try:
                source.check(str(model.path))
            except ValueError as exc:
                problems.append(f"models[{i}].path: {exc}")
        if cls is not None and options is not None:
            models.append(ResolvedModel(model, cls, options, model.path, source))
    if problems or tcls is None or topts is None or dcls is None or dopts is None:  # each None left a problem
        raise ConfigError(f"config {config.name!r} is invalid:", problems=problems)
    used = [adapters.entry(m.adapter).plugin for m in config.models]
    used += [transports.entry(config.key_transport.name).plugin, targets.entry(config.deploy.target).plugin]
    return ResolvedConfig(config, models, tcls, topts, dcls, dopts, sorted(set(used)))
