"""The Python API for a config file: validate, build, deploy, delete."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from .base import DeploymentStatus, Endpoint, KeyTransport
from .build import Build, build
from .client import Client
from .config import DeployConfig, ResolvedConfig, SeiConfig, load_config, resolve_config
from .keys import sei_home
from .plugins import SeiPlugins, get_plugin_manager

__all__ = ["Deployment"]


class Deployment:
    """A config file's deployment.

    >>> deployment = Deployment.from_file("configs/demo-local.yaml")
    >>> deployment.client(deployment.deploy()).predict("digits", X)
    """

    def __init__(self, config: SeiConfig, *, plugins: SeiPlugins | None = None) -> None:
        self.config = config
        self.plugins = plugins or get_plugin_manager()

    @classmethod
    def from_file(cls, path: str | Path, *, plugins: SeiPlugins | None = None) -> Deployment:
        return cls(load_config(path), plugins=plugins)

    @property
    def name(self) -> str:
        return self.config.name

    def with_target(self, target: str, **options: Any) -> Deployment:
        """The same deployment sent to another target (e.g. `local` to try an ACI config)."""
        config = self.config.model_copy(update={"deploy": DeployConfig(target=target, options=options)})
        return Deployment(config, plugins=self.plugins)

    @cached_property
    def resolved(self) -> ResolvedConfig:
        """The config checked against every plugin it names (raises ConfigError with field paths)."""
        return resolve_config(self.config, self.plugins)

    def validate(self) -> ResolvedConfig:
        return self.resolved

    def build(self, out: str | Path | None = None) -> Build:
        """Write the build folder (default: $SEI_HOME/builds/NAME)."""
        return build(self.resolved, out or sei_home() / "builds" / self.name, self.plugins)

    def deploy(self, out: str | Path | None = None) -> Endpoint:
        """Build, then deploy with the configured target; returns the endpoint once it answers."""
        return self.resolved.target_instance().deploy(self.build(out))

    def serve(self, out: str | Path | None = None) -> None:
        """Build, then serve in the foreground until interrupted."""
        self.resolved.target_instance().serve(self.build(out))

    def dry_run(self, out: str | Path) -> list[Path]:
        """Build into OUT/build and write what the target would submit, without deploying."""
        out = Path(out)
        return self.resolved.target_instance().dry_run(self.build(out / "build"), out)

    def delete(self) -> bool:
        """Stop and remove the deployment; False when there was none."""
        return self.resolved.target_instance().delete(self.name)

    def status(self) -> DeploymentStatus:
        """What the target knows of this deployment: URI, state, log (the model files need not be here)."""
        return resolve_config(self.config, self.plugins, check_files=False).target_instance().status(self.name)

    def key_transport(self) -> KeyTransport:
        """This config's key transport, as its clients use it (the model files need not be here)."""
        return resolve_config(self.config, self.plugins, check_files=False).transport_instance()

    def client(self, endpoint: Endpoint | str, **kwargs: Any) -> Client:
        """A client for this deployment's endpoint that publishes keys where this config says, never
        where the service says (see `Client`)."""
        return Client(endpoint, transport=self.key_transport(), plugins=self.plugins, **kwargs)
