"""Each scikit-learn adapter declares and needs only its own backend: a packed-only service does not
install encrypted-inference, and an eiserver-only one runs without seal-python."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from conftest import with_bounds

from sei_framework import Deployment, get_plugin_manager

BACKENDS = {"sklearn-eiserver": "encrypted-inference", "sklearn-packed": "seal-python"}


def build_for(adapter: str, model: str, tmp_path):
    config = {
        "name": f"req-{adapter.split('-')[1]}",
        "models": [with_bounds({"name": "m", "adapter": adapter, "path": model})],
        "key_transport": {"name": "inline"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    return Deployment.from_file(tmp_path / "c.yaml").build(tmp_path / "build")


@pytest.mark.parametrize("adapter, other", [("sklearn-eiserver", "sklearn-packed"), ("sklearn-packed", "sklearn-eiserver")])
def test_a_build_requires_only_its_adapters_backend(adapter, other, model_files, tmp_path):
    names = [r.split("==")[0] for r in build_for(adapter, str(model_files["diabetes"][0]), tmp_path).requirements]
    assert BACKENDS[adapter] in names and BACKENDS[other] not in names
    assert {"scikit-learn", "joblib"} <= set(names)


SERVE_WITHOUT = """
import json, sys
for blocked in sys.argv[2].split(","):
    sys.modules[blocked] = None  # as if not installed: importing it raises ModuleNotFoundError
from sei_framework.serving import ScoringService
service = ScoringService.from_build(sys.argv[1])
body, status = service.handle(json.dumps({"op": "describe"}))
print(json.dumps({"status": status, "adapter": body["models"]["m"]["adapter"]}))
"""


@pytest.mark.parametrize("adapter, blocked", [("sklearn-eiserver", "seal"), ("sklearn-packed", "encrypted")])
def test_a_service_runs_without_the_other_adapters_backend(adapter, blocked, model_files, tmp_path):
    build = build_for(adapter, str(model_files["diabetes"][0]), tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT, str(build.path), blocked],
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"status": 200, "adapter": adapter}


def test_an_adapter_without_its_backend_says_what_to_install(model_files, tmp_path):
    script = textwrap.dedent(
        """
        import sys
        sys.modules["seal"] = None
        from sei_framework import PluginError, get_plugin_manager
        adapters = get_plugin_manager(only=["sei_adapter_sklearn"], strict=True).model_adapters()
        try:
            adapters.get("sklearn-packed").prepare(None, None, None)
        except PluginError as exc:
            print(exc.message)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sklearn-packed adapter needs the Python module 'seal'" in done.stdout and "sei-framework[sklearn]" in done.stdout


def test_both_adapters_register_where_both_backends_are_installed():
    adapters = get_plugin_manager(entrypoints=True).model_adapters()
    assert {"sklearn-eiserver", "sklearn-packed"} <= set(adapters.names())
    assert not adapters.get("sklearn-packed").__name__.startswith("Unavailable")
