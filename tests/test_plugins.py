"""Hooks and registries: discovery, duplicates, broken and misspelled plugins, blocking, import rules."""

from __future__ import annotations

import ast
import tomllib
import types
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from conftest import with_bounds

import sei_framework
from sei_framework import (
    DuplicatePluginError,
    KeyTransport,
    PluginLoadError,
    PluginOptions,
    UnknownPluginError,
    get_plugin_manager,
    hookimpl,
)
from sei_framework.cli import cli

ROOT = Path(__file__).resolve().parent.parent
BUILT_INS = {"sei_adapter_sklearn", "sei_adapter_trees", "sei_transport_inline", "sei_transport_local_dir", "sei_deploy_local"}


class MemoryTransport(KeyTransport):
    name: ClassVar[str] = "memory"

    class Options(PluginOptions):
        capacity: int = 10

    def publish(self, key_id, public_keys):
        return {}

    def fetch(self, key_id, request):
        return None


def transport_plugin(cls=MemoryTransport):
    module = types.ModuleType("memory_plugin")

    @hookimpl
    def sei_register_key_transports(registry):
        registry.register(cls)

    module.sei_register_key_transports = sei_register_key_transports
    return module


def test_entry_points_load_built_ins_and_the_third_party_fixture():
    plugins = get_plugin_manager().collect()
    assert plugins.load_errors == []
    infos = {info.name: info for info in plugins.plugin_infos()}
    assert BUILT_INS <= set(infos)
    assert {infos[name].distribution for name in BUILT_INS} == {"sei-framework"}
    third_party = infos["sei_transport_sqlite"]
    assert third_party.distribution == "sei-transport-sqlite"
    assert third_party.provides == {"key transport": ["sqlite"]}
    assert plugins.model_adapters().names() == ["sklearn-eiserver", "sklearn-packed", "trees-seal"]
    assert {"inline", "local-dir", "sqlite"} <= set(plugins.key_transports().names())
    assert "local" in plugins.deploy_targets().names()


def test_inline_plugin_registers_and_unregisters(sei_plugins, register_plugin):
    name = register_plugin(transport_plugin())
    entry = sei_plugins.key_transports().entry("memory")
    assert entry.cls is MemoryTransport and entry.plugin == name
    sei_plugins.unregister(name)
    assert "memory" not in sei_plugins.key_transports()


def test_duplicate_name_is_rejected_naming_both_plugins(sei_plugins, register_plugin):
    register_plugin(transport_plugin(), "first_plugin")
    register_plugin(transport_plugin(), "second_plugin")
    with pytest.raises(DuplicatePluginError) as error:
        sei_plugins.key_transports()
    assert "'memory'" in str(error.value)
    assert "first_plugin" in str(error.value) and "second_plugin" in str(error.value)


def test_builtin_name_cannot_be_taken_over():
    class Impostor(MemoryTransport):
        name: ClassVar[str] = "inline"

    plugins = get_plugin_manager()
    plugins.register(transport_plugin(Impostor), "impostor")
    with pytest.raises(DuplicatePluginError, match="sei_transport_inline.*impostor"):
        plugins.key_transports()


def test_misspelled_hook_is_caught(sei_plugins):
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def sei_register_key_transport(registry):  # missing the final "s"
        pass

    module.sei_register_key_transport = sei_register_key_transport
    with pytest.raises(PluginLoadError, match="sei_register_key_transport"):
        sei_plugins.register(module, "typo_plugin")
    assert "typo_plugin" not in sei_plugins.plugin_names()


def test_plugin_failing_in_its_hook_is_reported_not_fatal():
    module = types.ModuleType("broken_plugin")

    @hookimpl
    def sei_register_key_transports(registry):
        raise RuntimeError("cannot find my configuration")

    module.sei_register_key_transports = sei_register_key_transports
    plugins = get_plugin_manager()
    plugins.register(module, "broken_plugin")
    assert "inline" in plugins.key_transports()
    assert [e.message for e in plugins.load_errors] == [
        "plugin 'broken_plugin' failed in its hook: RuntimeError: cannot find my configuration"
    ]


def test_registering_a_non_plugin_class_is_reported(sei_plugins, register_plugin):
    register_plugin(transport_plugin(dict))
    with pytest.raises(PluginLoadError, match="not a KeyTransport"):
        sei_plugins.key_transports()


def broken_distribution(tmp_path: Path, monkeypatch) -> None:
    """An installed-looking distribution whose plugin module fails to import."""
    (tmp_path / "sei_broken_plugin.py").write_text("raise ImportError('needs a library that is not installed')\n")
    dist = tmp_path / "sei_broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sei-broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[sei_framework]\nsei_broken_plugin = sei_broken_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_broken_plugin_is_a_warning_in_the_cli_and_fatal_in_a_service(tmp_path, monkeypatch):
    broken_distribution(tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    assert "warning: plugin 'sei_broken_plugin' failed to import: ImportError" in result.output
    assert "sklearn-eiserver" in result.output
    with pytest.raises(PluginLoadError, match="sei_broken_plugin"):
        get_plugin_manager(only=["sei_broken_plugin"], strict=True)
    # a service loads only what its config names, so the broken plugin does not stop it
    assert get_plugin_manager(only=["sei_transport_inline"], strict=True).key_transports().names() == ["inline"]


def test_a_service_refuses_a_plugin_that_is_not_installed():
    with pytest.raises(PluginLoadError, match="'sei_missing' is not installed"):
        get_plugin_manager(only=["sei_missing"], strict=True)


def test_blocked_plugin_is_not_loaded(monkeypatch):
    monkeypatch.setenv("SEI_DISABLED_PLUGINS", "sei_transport_sqlite, sei_transport_local_dir, sei_transport_azure_blob")
    plugins = get_plugin_manager().collect()
    assert "sei_transport_sqlite" not in plugins.plugin_names()
    assert set(plugins.key_transports().names()) == {"inline"}


def test_unknown_name_lists_what_is_available():
    with pytest.raises(UnknownPluginError, match="unknown key transport 'carrier-pigeon'; available: .*inline"):
        get_plugin_manager().key_transports().get("carrier-pigeon")


def plugin_sources() -> list[Path]:
    """Plugin code: the built-ins, plugin distributions of their own (not their tests), the fixture's."""
    files = sorted(p for p in (ROOT / "plugins").rglob("*.py") if "tests" not in p.relative_to(ROOT / "plugins").parts)
    files += sorted((ROOT / "tests" / "fixtures").rglob("*.py"))
    return files


@pytest.mark.parametrize("path", plugin_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(path):
    """A built-in plugin can use nothing a third-party plugin could not."""
    public = set(sei_framework.__all__)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sei_framework"):
            assert node.module == "sei_framework", f"{path.name} imports private module {node.module}"
            assert {alias.name for alias in node.names} <= public, f"{path.name} imports non-public names"
        if isinstance(node, ast.Import):
            assert all(not a.name.startswith("sei_framework.") for a in node.names), path.name


def entry_point_plugins() -> set[str]:
    """Top-level modules registered as plugins, the built-ins' and the fixture distribution's."""
    names = set()
    distributions = sorted((ROOT / "tests" / "fixtures").glob("*/pyproject.toml")) + sorted((ROOT / "plugins").glob("*/pyproject.toml"))
    for pyproject in (ROOT / "pyproject.toml", *distributions):
        entry_points = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["sei_framework"]
        names |= {value.split(":")[0].split(".")[0] for value in entry_points.values()}
    return names


@pytest.mark.parametrize("path", plugin_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_never_import_another_plugin(path):
    """What two plugins share goes to the public API or a helper package, never plugin to plugin."""
    plugins = entry_point_plugins()
    own = next(part for part in path.relative_to(ROOT).parts if part.startswith("sei_"))
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported = [node.module]
        elif isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        else:
            continue
        for module in imported:
            top = module.split(".")[0]
            assert top == own or top not in plugins, f"{path.relative_to(ROOT)} imports the plugin {top}"


def test_the_import_rule_knows_every_plugin():
    assert {"sei_deploy_aci", "sei_deploy_azureml_online", "sei_transport_sqlite"} <= entry_point_plugins()


def test_plugins_folder_is_not_a_package():
    assert not (ROOT / "plugins" / "__init__.py").exists()


def source_plugin(name: str = "vault", files: dict | None = None):
    """An inline plugin registering a model source `name:` that copies files from `files` (URI -> path)."""
    from sei_framework import ModelSource

    class VaultSource(ModelSource):
        Options = PluginOptions
        fetched: ClassVar[list] = []

        def check(self, uri):
            if uri.count(":") != 1:
                raise ValueError(f"{uri!r}: write {self.name}:KEY")

        def fetch(self, uri, dest):
            path = dest / Path(files[uri]).name
            path.write_bytes(Path(files[uri]).read_bytes())
            VaultSource.fetched.append(path)
            return path

    VaultSource.name = name
    module = types.ModuleType(f"{name}_plugin")

    @hookimpl
    def sei_register_model_sources(registry):
        registry.register(VaultSource)

    module.sei_register_model_sources = sei_register_model_sources
    return module, VaultSource


def test_model_sources_follow_the_registry_rules(sei_plugins, register_plugin):
    register_plugin(source_plugin()[0], "first_plugin")
    register_plugin(source_plugin()[0], "second_plugin")
    with pytest.raises(DuplicatePluginError, match="model source 'vault' is registered by both plugin 'first_plugin'"):
        sei_plugins.model_sources()
    plugins = get_plugin_manager(entrypoints=False)
    plugins.register(source_plugin("C")[0], "drive_letter")
    assert "C" not in plugins.model_sources()
    assert "the name must be a URI scheme" in plugins.load_errors[0].message


def test_a_model_uri_is_fetched_by_its_source_at_build(model_files, tmp_path):
    from sei_framework.config import ModelConfig, SeiConfig

    module, source = source_plugin(files={"vault:diabetes": model_files["diabetes"][0]})
    plugins = get_plugin_manager()
    plugins.register(module, "vault_plugin")
    data = {"name": "vault", "models": [with_bounds({"name": "m", "adapter": "sklearn-eiserver", "path": "vault:diabetes"})]}
    config = SeiConfig.model_validate(data)
    assert config.models[0].path == "vault:diabetes" and isinstance(config.models[0], ModelConfig)
    build = sei_framework.Deployment(config, plugins=plugins).build(tmp_path / "build")
    assert build.manifest["models"][0]["metadata"]["n_features"] == 10
    assert "vault_plugin" not in build.manifest["plugins"]  # a build-time plugin: the service never loads it
    assert not source.fetched[0].exists()  # the fetched copy is removed once prepared
    bad = SeiConfig.model_validate({**data, "models": [{**data["models"][0], "path": "vault:a:b"}]})
    with pytest.raises(sei_framework.ConfigError, match="models\\[0\\].path: 'vault:a:b': write vault:KEY"):
        sei_framework.Deployment(bad, plugins=plugins).validate()
