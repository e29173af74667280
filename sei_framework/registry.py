"""Typed registries that the `sei_register_*` hooks fill, with the plugin behind each entry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

from .base import DeployTarget, KeyTransport, ModelAdapter, ModelSource
from .errors import DuplicatePluginError, PluginLoadError, UnknownPluginError

__all__ = [
    "Registration",
    "Registry",
    "AdapterRegistry",
    "TransportRegistry",
    "TargetRegistry",
    "ModelSourceRegistry",
    "SCHEME_PATTERN",
]

SCHEME_PATTERN = r"[a-z][a-z0-9+.-]+"
"""A model source's name: a URI scheme of two or more characters (one letter would be a Windows drive)."""


class _Named(Protocol):
    """What every registered class has (adapters, transports, targets, model sources)."""

    name: ClassVar[str]


T = TypeVar("T", bound=_Named)


@dataclass(frozen=True)
class Registration(Generic[T]):
    """One registered class and the plugin (and distribution) that registered it."""

    cls: type[T]
    plugin: str
    distribution: str | None


class Registry(Generic[T]):
    """Name -> plugin class; a name registered twice is an error naming both plugins."""

    kind: ClassVar[str]
    base: ClassVar[type]

    def __init__(self) -> None:
        self._entries: dict[str, Registration[T]] = {}
        self._owner: tuple[str, str | None] = ("<direct>", None)

    @contextmanager
    def owned_by(self, plugin: str, distribution: str | None) -> Iterator[None]:
        """Attribute registrations made inside the block to `plugin`."""
        previous, self._owner = self._owner, (plugin, distribution)
        try:
            yield
        finally:
            self._owner = previous

    def register(self, cls: type[T]) -> type[T]:
        """Add `cls` under `cls.name`; returns `cls` so it can be used as a decorator."""
        plugin, distribution = self._owner
        self._check(cls, plugin)  # a plugin's argument: checked, whatever its annotation says
        existing = self._entries.get(cls.name)
        if existing is not None:
            raise DuplicatePluginError(
                f"{self.kind} {cls.name!r} is registered by both plugin {existing.plugin!r} "
                f"and plugin {plugin!r}"
            )
        self._entries[cls.name] = Registration(cls, plugin, distribution)
        return cls

    def _check(self, cls: object, plugin: str) -> str:
        """`cls`'s name, if it is a subclass of the registry's base with a name and an Options model."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginLoadError(f"plugin {plugin!r} registered {cls!r}, which is not a {self.base.__name__}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginLoadError(f"plugin {plugin!r} registered {cls.__name__} without a `name`")
        options = getattr(cls, "Options", None)
        if not (isinstance(options, type) and issubclass(options, BaseModel)):
            raise PluginLoadError(f"{self.kind} {name!r} of plugin {plugin!r}: `Options` is not a pydantic model")
        return name

    def get(self, name: str) -> type[T]:
        """The class registered as `name`, or UnknownPluginError listing what there is."""
        return self.entry(name).cls

    def entry(self, name: str) -> Registration[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownPluginError(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


class AdapterRegistry(Registry[ModelAdapter]):
    kind = "model adapter"
    base = ModelAdapter


class TransportRegistry(Registry[KeyTransport]):
    kind = "key transport"
    base = KeyTransport


class TargetRegistry(Registry[DeployTarget]):
    kind = "deploy target"
    base = DeployTarget


class ModelSourceRegistry(Registry[ModelSource]):
    kind = "model source"
    base = ModelSource

    def _check(self, cls: object, plugin: str) -> str:
        name = super()._check(cls, plugin)
        if not re.fullmatch(SCHEME_PATTERN, name):
            raise PluginLoadError(
                f"{self.kind} {name!r} of plugin {plugin!r}: the name must be a URI scheme "
                "(a lowercase letter, then lowercase letters, digits, '+', '-' or '.'; two characters at least)"
            )
        return name
