"""Pytest fixtures for plugin authors (load with `pytest_plugins = ["sei_framework.testing"]`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .plugins import SeiPlugins, get_plugin_manager

__all__ = ["sei_plugins", "register_plugin"]


@pytest.fixture
def sei_plugins() -> SeiPlugins:
    """A fresh plugin manager with no entry points loaded."""
    return get_plugin_manager(entrypoints=False, strict=True)


@pytest.fixture
def register_plugin(sei_plugins: SeiPlugins) -> Iterator[Callable[..., str]]:
    """Register inline plugin objects on `sei_plugins`; each is unregistered after the test."""
    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        names.append(sei_plugins.register(plugin, name))
        return names[-1]

    yield register
    for name in reversed(names):
        if name in sei_plugins.plugin_names():
            sei_plugins.unregister(name)
