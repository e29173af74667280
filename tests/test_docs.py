"""Documented options match the code: docs/config.md lists every option of the core and of every
built-in plugin with its default, and every argument of `Client`, so they cannot drift apart."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from sei_framework import Client, get_plugin_manager
from sei_framework.config import LimitsConfig, ModelLimitsConfig, StateConfig
from sei_framework.plugins import SeiPlugins

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "config.md"
BUILT_IN = "sei-framework"


def sections() -> dict[str, dict[str, str]]:
    """Each `### title` of docs/config.md: its table rows as {option: default as shown}."""
    found: dict[str, dict[str, str]] = {}
    title = None
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip() if line.startswith("### ") else None
            if title:
                found[title] = {}
        elif title and (row := re.match(r"^\| `([a-z_]+)` \| ([^|]*) \|", line)):
            found[title][row.group(1)] = row.group(2).strip()
    return found


def shown(field) -> str:
    if field.default_factory is not None:
        return "derived"
    if field.default is PydanticUndefined:
        return "required"
    if isinstance(field.default, BaseModel):
        return f"`{field.default.model_dump()!r}`"
    return "none" if field.default in (None, [], {}) else f"`{field.default!r}`"


def expected(model: type[BaseModel]) -> dict[str, str]:
    return {name: shown(field) for name, field in model.model_fields.items()}


def built_in_plugins() -> list[tuple[str, str, type[BaseModel]]]:
    plugins: SeiPlugins = get_plugin_manager()
    ours = {info.name for info in plugins.plugin_infos() if info.distribution == BUILT_IN}
    found = []
    for kind, registry in (("model adapter", plugins.model_adapters()), ("key transport", plugins.key_transports()),
                           ("deploy target", plugins.deploy_targets()), ("model source", plugins.model_sources())):  # fmt: skip
        for name in registry.names():
            if registry.entry(name).plugin in ours:
                found.append((kind, name, registry.get(name).Options))
    return found


def test_every_built_in_plugin_is_found():
    names = {name for _, name, _ in built_in_plugins()}
    assert {"sklearn-eiserver", "sklearn-packed", "inline", "local-dir", "azure-blob", "local", "aci", "azureml-online", "azureml"} <= names


@pytest.mark.parametrize("kind, name, options", [(k, n, o) for k, n, o in built_in_plugins()], ids=str)
def test_every_plugin_option_is_documented_with_its_default(kind, name, options):
    documented = sections().get(f"{kind} `{name}`")
    assert documented is not None, f"docs/config.md has no section '### {kind} `{name}`'"
    assert documented == expected(options)


@pytest.mark.parametrize(
    "title, model", [("`limits`", LimitsConfig), ("`state`", StateConfig), ("`models[].limits`", ModelLimitsConfig)]
)
def test_every_core_option_is_documented_with_its_default(title, model):
    assert sections()[title] == expected(model)


@pytest.mark.parametrize("function", [Client.__init__, Client.predict], ids=["Client", "Client.predict"])
def test_every_client_argument_is_documented(function):
    text = REFERENCE.read_text()
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            assert f"| `{name}` |" in text, f"docs/config.md does not document {function.__qualname__}({name}=)"
