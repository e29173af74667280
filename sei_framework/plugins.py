"""The plugin manager factory and the typed facade through which every hook is called."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

import pluggy

from . import hookspecs
from .errors import DuplicatePluginError, PluginLoadError, SeiError
from .registry import AdapterRegistry, ModelSourceRegistry, Registry, TargetRegistry, TransportRegistry

__all__ = ["ENTRYPOINT_GROUP", "DISABLE_ENV", "PluginInfo", "SeiPlugins", "get_plugin_manager"]

ENTRYPOINT_GROUP = "sei_framework"
DISABLE_ENV = "SEI_DISABLED_PLUGINS"
log = logging.getLogger(__name__)
R = TypeVar("R", bound=Registry)


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its name, distribution and what it provides."""

    name: str
    distribution: str | None
    version: str | None
    provides: dict[str, list[str]]


def disabled_plugins() -> set[str]:
    """Plugin names listed in SEI_DISABLED_PLUGINS (comma separated)."""
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def get_plugin_manager(
    *, entrypoints: bool = True, only: Collection[str] | None = None, strict: bool = False
) -> SeiPlugins:
    """A fresh plugin manager with the SEI hookspecs, loading plugins from entry points.

    `only` restricts loading to those entry-point names (a service loads what its config
    names). With `strict`, a plugin that fails to load raises; otherwise it is recorded in
    `load_errors` for the caller to report.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in disabled_plugins():
        pm.set_blocked(name)
    plugins = SeiPlugins(pm, strict=strict)
    if entrypoints:
        for ep in entry_points(group=ENTRYPOINT_GROUP):
            if only is None or ep.name in only:
                plugins.load_entry_point(ep)
        if only is not None:
            missing = set(only) - {ep.name for ep in entry_points(group=ENTRYPOINT_GROUP)}
            for name in sorted(missing):
                plugins.fail(PluginLoadError(f"plugin {name!r} is not installed (no {ENTRYPOINT_GROUP} entry point)"))
    return plugins


class SeiPlugins:
    """Typed facade over the pluggy manager: the only code that calls hooks."""

    def __init__(self, pm: pluggy.PluginManager, *, strict: bool = False) -> None:
        self._pm = pm
        self._strict = strict
        self._distributions: dict[str, tuple[str, str] | None] = {}
        self._registries: dict[str, Registry] = {}
        self.load_errors: list[PluginLoadError] = []

    def fail(self, error: PluginLoadError) -> None:
        if self._strict:
            raise error
        self.load_errors.append(error)

    def load_entry_point(self, ep: EntryPoint) -> None:
        """Import and register one entry point; a blocked one is skipped."""
        if self._pm.is_blocked(ep.name):
            log.info("plugin %s is disabled by %s", ep.name, DISABLE_ENV)
            return
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not take the CLI down
            self.fail(PluginLoadError(f"plugin {ep.name!r} failed to import: {type(exc).__name__}: {exc}"))
            return
        dist = ep.dist
        self.register(module, ep.name, distribution=(dist.name, dist.version) if dist else None)

    def register(self, plugin: object, name: str | None = None, *, distribution: tuple[str, str] | None = None) -> str:
        """Register a plugin object (a module or an instance with hookimpls); returns its name."""
        try:
            registered = self._pm.register(plugin, name=name)
            self._pm.check_pending()
        except (ValueError, pluggy.PluginValidationError) as exc:
            if name is not None and self._pm.get_plugin(name) is plugin:
                self._pm.unregister(name=name)
            self.fail(PluginLoadError(f"plugin {name or plugin!r} is invalid: {exc}"))
            return name or ""
        if registered is None:  # blocked
            return name or ""
        self._distributions[registered] = distribution
        self._registries.clear()
        return registered

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)
        self._distributions.pop(name, None)
        self._registries.clear()

    def collect(self) -> SeiPlugins:
        """Fill every registry now, so that every plugin's failure is in `load_errors`."""
        self.model_adapters(), self.key_transports(), self.deploy_targets(), self.model_sources()
        return self

    def model_adapters(self) -> AdapterRegistry:
        return self._registry("sei_register_model_adapters", AdapterRegistry)

    def key_transports(self) -> TransportRegistry:
        return self._registry("sei_register_key_transports", TransportRegistry)

    def deploy_targets(self) -> TargetRegistry:
        return self._registry("sei_register_deploy_targets", TargetRegistry)

    def model_sources(self) -> ModelSourceRegistry:
        return self._registry("sei_register_model_sources", ModelSourceRegistry)

    def _registry(self, hook_name: str, factory: Callable[[], R]) -> R:
        if hook_name not in self._registries:
            registry = factory()
            hook = getattr(self._pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # in registration order
                name = impl.plugin_name
                with registry.owned_by(name, self.distribution_name(name)):
                    self._call(name, impl.function, registry=registry)
            self._registries[hook_name] = registry
        return self._registries[hook_name]  # type: ignore[return-value]

    def _call(self, plugin: str, function: Callable[..., Any], **kwargs: Any) -> None:
        try:
            function(**kwargs)
        except DuplicatePluginError:
            raise
        except SeiError as exc:
            self.fail(PluginLoadError(f"plugin {plugin!r}: {exc}"))
        except Exception as exc:
            self.fail(PluginLoadError(f"plugin {plugin!r} failed in its hook: {type(exc).__name__}: {exc}"))

    def distribution_name(self, plugin: str) -> str | None:
        dist = self._distributions.get(plugin)
        return dist[0] if dist else None

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution and the names it provides."""
        provides: dict[str, dict[str, list[str]]] = {}
        for registry in (self.model_adapters(), self.key_transports(), self.deploy_targets(), self.model_sources()):
            for entry in registry:
                provides.setdefault(entry.plugin, {}).setdefault(registry.kind, []).append(entry.cls.name)
        infos = []
        for name in self.plugin_names():
            dist = self._distributions.get(name)
            infos.append(PluginInfo(name, dist[0] if dist else None, dist[1] if dist else None, provides.get(name, {})))
        return infos

    def plugin_names(self) -> list[str]:
        """Names of the registered plugins (blocked names excluded)."""
        return sorted(name for name, plugin in self._pm.list_name_plugin() if plugin is not None)
