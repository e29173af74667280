"""A failed build never blocks the next one: builds are written aside and renamed into place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import pytest

from sei_framework import BuildError, ModelAdapter, get_plugin_manager, hookimpl
from sei_framework import build as build_module
from sei_framework.build import MANIFEST, build
from sei_framework.config import parse_config, resolve_config


class Flaky(ModelAdapter):
    """Writes a file into its model folder, then fails when told to (a crash midway through a build)."""

    name: ClassVar[str] = "flaky"
    fail: ClassVar[bool] = False

    @classmethod
    def prepare(cls, source: Path, options: Any, dest: Path) -> dict[str, Any]:
        (dest / "weights.bin").write_bytes(b"half written" if cls.fail else b"complete")
        if cls.fail:
            raise RuntimeError("disk full")
        return {"generation": source.read_text()}

    def describe(self) -> dict[str, Any]:
        return {}

    def load_public_keys(self, data: bytes) -> Any:
        return data

    def predict(self, data: Any, keys: Any) -> Any:
        return data

    @classmethod
    def client(cls, description: dict[str, Any]):
        raise NotImplementedError


class FlakyPlugin:
    @hookimpl
    def sei_register_model_adapters(self, registry):
        registry.register(Flaky)


@pytest.fixture
def plugins():
    plugins = get_plugin_manager()
    name = plugins.register(FlakyPlugin(), "test_flaky_adapter")
    yield plugins
    plugins.unregister(name)
    Flaky.fail = False


def make(plugins, tmp_path: Path, generation: str, *, fail: bool = False):
    model = tmp_path / "model.txt"
    model.write_text(generation)
    Flaky.fail = fail
    data = {"name": "svc", "models": [{"name": "m", "adapter": "flaky", "path": "model.txt"}]}
    config = parse_config(data, base_dir=tmp_path)
    return resolve_config(config, plugins)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_build_leaves_the_previous_build_and_the_next_one_succeeds(plugins, tmp_path):
    out = tmp_path / "builds" / "svc"
    first = build(make(plugins, tmp_path, "one"), out, plugins)
    assert first.manifest["models"][0]["metadata"] == {"generation": "one"}
    before = snapshot(out)
    with pytest.raises(BuildError, match="adapter 'flaky' failed: RuntimeError: disk full"):
        build(make(plugins, tmp_path, "two", fail=True), out, plugins)
    assert snapshot(out) == before  # the good build, untouched: not half-written, not removed
    assert sorted(p.name for p in out.parent.iterdir()) == ["svc"]  # no temporary folder left behind
    third = build(make(plugins, tmp_path, "three"), out, plugins)
    assert third.manifest["models"][0]["metadata"] == {"generation": "three"}
    assert (out / "models" / "m" / "weights.bin").read_bytes() == b"complete"
    assert sorted(p.name for p in out.parent.iterdir()) == ["svc"]


def test_a_failed_first_build_leaves_nothing(plugins, tmp_path):
    out = tmp_path / "builds" / "svc"
    with pytest.raises(BuildError, match="disk full"):
        build(make(plugins, tmp_path, "one", fail=True), out, plugins)
    assert list(out.parent.iterdir()) == []
    second = build(make(plugins, tmp_path, "two"), out, plugins)
    assert second.manifest["models"][0]["metadata"] == {"generation": "two"}


def test_when_the_new_build_cannot_be_moved_in_the_old_one_is_put_back(plugins, tmp_path, monkeypatch):
    out = tmp_path / "svc"
    build(make(plugins, tmp_path, "one"), out, plugins)
    before = snapshot(out)
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".svc.building-"):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(build_module.os, "rename", rename)
    with pytest.raises(OSError, match="No space left"):
        build(make(plugins, tmp_path, "two"), out, plugins)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.txt", "svc"]
    monkeypatch.setattr(build_module.os, "rename", real_rename)
    build(make(plugins, tmp_path, "three"), out, plugins)
    assert (out / MANIFEST).is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["model.txt", "svc"]


def test_a_file_in_the_way_is_refused(plugins, tmp_path):
    (tmp_path / "svc").write_text("not a folder")
    with pytest.raises(BuildError, match="not a SEI build folder"):
        build(make(plugins, tmp_path, "one"), tmp_path / "svc", plugins)
    assert (tmp_path / "svc").read_text() == "not a folder"
