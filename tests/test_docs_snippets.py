"""Python snippets of the docs: every one parses; those marked `<!-- docs-test: run -->` (the
self-contained ones) run as they are; the README's Python walkthrough, which needs a deployed
service, calls only methods and arguments that exist."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import types
from pathlib import Path

import pytest
from docs_text import ROOT, blocks, pages

pytest_plugins = ["pytester"]

PYTHON = [b for page in pages() for b in blocks(page) if b.lang in ("python", "py")]
RUN = [b for b in PYTHON if b.run]


def test_the_marked_snippets_are_found():
    assert {str(b.page.relative_to(ROOT)) for b in RUN} >= {"docs/packed-backend.md", "docs/plugins.md"}


@pytest.mark.parametrize("block", PYTHON, ids=str)
def test_every_python_snippet_parses(block):
    ast.parse(block.text, filename=str(block))


def _module(block, folder: Path) -> types.ModuleType:
    """The snippet imported from a file of its own, as a reader would save and run it."""
    path = folder / f"docs_snippet_{block.page.stem.replace('-', '_')}_{block.line}.py"
    path.write_text(block.text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_packed_kernel_snippet_runs(tmp_path):
    block = next(b for b in RUN if b.page.name == "packed-backend.md")
    module = _module(block, tmp_path)  # its asserts compare the decrypted scores with X @ W.T + b
    assert len(module.key_id) == 32


def test_the_plugin_sketch_registers_a_transport(sei_plugins, register_plugin, tmp_path):
    block = next(b for b in RUN if b.page.name == "plugins.md" and "@hookimpl" in b.text)
    module = _module(block, tmp_path)
    register_plugin(module, "docs-sqlite-sketch")
    transport = sei_plugins.key_transports().get("sqlite")
    options = transport.Options.model_validate({"database": str(tmp_path / "keys.sqlite")})
    assert options.database == tmp_path / "keys.sqlite"


def test_the_plugin_test_passes(pytester):
    block = next(b for b in RUN if b.page.name == "plugins.md" and "def test_" in b.text)
    pytester.makepyfile(test_snippet=block.text)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_every_marked_snippet_has_a_test():
    covered = {"packed-backend.md", "plugins.md"}
    assert {b.page.name for b in RUN} <= covered


def test_the_readme_walkthrough_calls_what_exists():
    from sei_framework import Client, Deployment, Prediction

    block = next(b for b in PYTHON if b.page.name == "README.md" and "Deployment.from_file" in b.text)
    types_of = {"Deployment": Deployment, "deployment": Deployment, "client": Client, "result": Prediction}
    for node in ast.walk(ast.parse(block.text)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in types_of:
            owner = types_of[node.value.id]
            assert hasattr(owner, node.attr) or node.attr in getattr(owner, "__dataclass_fields__", {}), (
                f"README: {node.value.id}.{node.attr} does not exist"
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "predict":
            accepted = inspect.signature(Client.predict).parameters
            assert all(k.arg in accepted for k in node.keywords)
