"""A missing extra is an error that names it: each optional part of sei-framework, with the modules of
its extra blocked (sys.modules[name] = None, in this process or, through a sitecustomize module, in
`sei` and every process it starts), says which extra to install and how."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from sei_framework import BuildError, DeployError, PluginError, SeiError, install_hint, require_extra
from sei_framework.extras import EXTRAS, missing_modules

BLOCKER = """import os, sys
for name in os.environ.get("SEI_TEST_BLOCKED", "").split(","):
    if name:
        sys.modules[name] = None  # `import name` now fails as if its distribution were not installed
"""
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS_DECLARED = PYPROJECT["project"]["optional-dependencies"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def sei(tmp_path: Path, blocked: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """`sei ARGS` in a subprocess whose imports of `blocked` fail, as do those of the processes it starts."""
    folder = tmp_path / "blocker"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "SEI_TEST_BLOCKED": ",".join(blocked)}
    code = "from sei_framework.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


def assert_names_extra(result: subprocess.CompletedProcess[str], extra: str) -> None:
    assert result.returncode != 0, result.stdout
    assert f"needs the `{extra}` extra of sei-framework" in result.stderr, result.stderr
    assert f"pip install -e '.[{extra}]'" in result.stderr and f".whl[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_every_extra_is_listed_with_the_distributions_pyproject_declares():
    bundles = {"test", "azure"}  # the suite's own extra, and a bundle of three listed ones
    assert set(EXTRAS) == set(EXTRAS_DECLARED) - bundles
    for extra, modules in EXTRAS.items():
        declared = {_name(r) for r in EXTRAS_DECLARED[extra] if not r.startswith("sei-framework[")}
        assert set(modules) == declared, extra


@pytest.mark.parametrize(("distribution", "module"), sorted({d: m for e in EXTRAS.values() for d, m in e.items()}.items()))
def test_each_import_name_belongs_to_its_distribution(distribution, module):
    files = {str(f).replace("\\", "/") for f in metadata.distribution(distribution).files or ()}
    stem = module.replace(".", "/")
    assert any(f.startswith((f"{stem}/__init__.py", f"{stem}.py")) or f.startswith(f"{stem}/") for f in files), (
        f"{distribution} does not install the module {module}"
    )


def test_missing_modules_here_and_in_another_interpreter(monkeypatch):
    assert missing_modules(["json", "no_such_module_sei", "azure.no_such"]) == ["no_such_module_sei", "azure.no_such"]
    assert missing_modules(["json", "no_such_module_sei"], python=sys.executable) == ["no_such_module_sei"]
    monkeypatch.setitem(sys.modules, "gevent", None)
    assert missing_modules(["gevent"]) == ["gevent"]
    with pytest.raises(SeiError, match="cannot run the interpreter"):
        missing_modules(["json"], python="/no/such/python")


def test_require_extra_names_the_extra_the_modules_and_both_ways_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gevent", None)
    with pytest.raises(DeployError) as info:
        require_extra("serve", "the local target", DeployError)
    message = info.value.message
    assert message.startswith("the local target needs the `serve` extra of sei-framework (not importable: gevent)")
    assert info.value.code == "missing_extra"
    assert "pip install -e '.[serve]' in a clone" in message
    assert f"sei_framework-{metadata.version('sei-framework')}-py3-none-any.whl[serve]" in message
    require_extra("sklearn", "anything")  # installed here: no error
    require_extra("serve", "the part that needs only azmlinfsrv", modules=["azureml_inference_server_http"])
    assert "docs/install.md" in install_hint("batch")


@pytest.fixture
def packed_config(tmp_path, model_files) -> Path:
    config = {
        "name": "extras",
        "models": [{"name": "digits", "adapter": "sklearn-packed", "path": str(model_files["digits"][0]),
                    "options": {"feature_bounds": [0.0, 1.0]}}],  # fmt: skip
        "deploy": {"target": "local", "options": {"state_dir": str(tmp_path / "state"), "startup_timeout": 60}},
    }
    path = tmp_path / "extras.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_local_deploy_without_the_serve_extra_names_it(tmp_path, packed_config):
    """azmlinfsrv is the part the local target cannot do without; without gevent alone it serves on
    gunicorn's sync workers and its log says to install the same extra (an environment made from an
    aci dry run's requirements is one such: test_aci.py)."""
    result = sei(tmp_path, ["azureml_inference_server_http"], "deploy", str(packed_config))
    assert_names_extra(result, "serve")
    assert "the local target needs the `serve` extra" in result.stderr
    assert "not importable: azureml_inference_server_http" in result.stderr
    assert "exited while starting" not in result.stderr  # it never starts


def test_local_deploy_checks_the_interpreter_it_serves_with(tmp_path, packed_config):
    """`python:` another interpreter (here the venv's base Python, which has no SEI extras)."""
    base = Path(sys.base_prefix) / "bin" / "python3"
    assert missing_modules(["azureml_inference_server_http"], python=base)
    config = yaml.safe_load(packed_config.read_text())
    config["deploy"]["options"]["python"] = str(base)
    packed_config.write_text(yaml.safe_dump(config))
    result = sei(tmp_path, [], "deploy", str(packed_config))
    assert_names_extra(result, "serve")
    assert f"add it to {base}: pip install" in result.stderr
    config["deploy"]["options"]["python"] = str(tmp_path / "no-such-python")
    packed_config.write_text(yaml.safe_dump(config))
    result = sei(tmp_path, [], "deploy", str(packed_config))
    assert result.returncode != 0 and "cannot run the interpreter" in result.stderr, result.stderr


def test_a_build_without_the_sklearn_extra_names_it(tmp_path, packed_config):
    """A client needs no scikit-learn (the `client` extra); building a model does."""
    result = sei(tmp_path, ["sklearn"], "build", str(packed_config), "--out", str(tmp_path / "build"))
    assert_names_extra(result, "sklearn")
    assert "building a model with the scikit-learn adapters" in result.stderr


def test_the_sklearn_adapters_without_their_backends_name_the_extras(tmp_path, packed_config):
    """Each adapter needs only its own backend; using one whose backend is missing names the extra."""
    result = sei(tmp_path, ["seal", "encrypted"], "build", str(packed_config), "--out", str(tmp_path / "build"))
    assert result.returncode != 0
    assert "the sklearn-packed adapter needs the Python module 'seal'" in result.stderr, result.stderr
    assert "the `sklearn` extra of sei-framework" in result.stderr and "pip install -e '.[sklearn]'" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("blocked", ["fsspec", "pyarrow", "distributed"])
def test_sei_batch_without_the_batch_extra_names_it(tmp_path, blocked):
    (tmp_path / "build").mkdir()
    assert_names_extra(sei(tmp_path, [blocked], "batch", "describe", str(tmp_path / "build")), "batch")


def test_an_azure_job_folder_without_the_batch_azure_extra_names_it(tmp_path):
    result = sei(tmp_path, ["adlfs"], "batch", "decrypt", "az://container/job", "--out", str(tmp_path / "p.csv"))
    assert_names_extra(result, "batch-azure")


def test_the_aci_target_without_its_extra_names_it(tmp_path):
    result = sei(tmp_path, ["azureml.core"], "deploy", str(ROOT / "configs" / "mnist-aci.yaml"), "--dry-run", "out")
    assert_names_extra(result, "aci")


def test_the_azureml_online_target_without_its_extra_names_it(tmp_path):
    config = ROOT / "configs" / "mnist-online.yaml"
    assert_names_extra(sei(tmp_path, ["azure.ai.ml"], "deploy", str(config), "--dry-run", "out"), "azureml-online")


def test_the_azure_blob_transport_without_its_extra_names_it(monkeypatch):
    from sei_transport_azure_blob.storage import sdk

    monkeypatch.setitem(sys.modules, "azure.storage.blob", None)
    with pytest.raises(PluginError, match=r"needs the `azure-blob` extra of sei-framework .*pip install -e '\.\[azure-blob\]'"):
        sdk()


def test_redis_state_and_the_bench_chart_without_their_extras_name_them(monkeypatch, tmp_path):
    from sei_framework.bench import write_chart
    from sei_framework.state.redis_store import RedisState

    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SeiError, match=r"the `redis` extra of sei-framework .*pip install -e '\.\[redis\]'"):
        RedisState(None, 10, 60.0, namespace="x")  # type: ignore[arg-type]
    with pytest.raises(BuildError, match=r"the `bench` extra of sei-framework: pip install -e '\.\[bench\]'"):
        write_chart([], tmp_path / "chart.png")


def test_an_mlflow_folder_without_the_mlflow_extra_names_it(monkeypatch, tmp_path):
    from sei_adapter_sklearn.mlflow_model import load_mlflow_model
    from sei_adapter_sklearn.model_files import ModelFileError

    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    for name in ("mlflow", "mlflow.models", "mlflow.sklearn"):  # each, as earlier tests may have imported them
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModelFileError, match=r"the `mlflow` extra of sei-framework: pip install -e '\.\[mlflow\]'"):
        load_mlflow_model(tmp_path)
