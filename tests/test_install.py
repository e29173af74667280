"""Install per role (docs/install.md): the wheel that `make dist` builds passes `twine check`, and a client
machine installs it with the `client` extra alone (no scikit-learn) into a fresh venv, from which
`sei predict` gets encrypted predictions from a service of both sklearn adapters."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml
from fresh_env import _clean_env, fresh_venv, pip_install

from conftest import ROOT, project_files
from sei_framework import Deployment

BLOCKED_ON_A_CLIENT = ["sklearn", "joblib", "skops", "mlflow", "pandas", "azureml_inference_server_http", "gevent"]
INSTALL = ROOT / "docs" / "install.md"
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_nothing_claims_sei_framework_installs_from_pypi():
    claim = re.compile(r"pip install ['\"]?sei-framework|install sei-framework\[")
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in project_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if claim.search(line)
    ]
    assert not hits, "sei-framework is not on PyPI: install from a clone or the wheel (docs/install.md)\n" + "\n".join(hits)


def test_the_install_page_names_real_extras_and_the_wheel_make_dist_builds():
    text = INSTALL.read_text()
    named = set(re.findall(r"`([a-z-]+)`", text)) & set(EXTRAS)
    assert {"sklearn", "serve", "client", "batch", "mlflow", "azure-blob"} <= named
    for extras in re.findall(r"pip install (?:-e )?'[^']*\[([a-z,-]+)\]'", text):
        assert set(extras.split(",")) <= set(EXTRAS), extras
    assert f"sei_framework-{VERSION}-py3-none-any.whl" in text
    readme = (ROOT / "README.md").read_text()
    assert "[docs/install.md](docs/install.md)" in readme and "make demo" in readme


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist and wheel, built as `make dist` builds them, and checked by twine."""
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["sei_framework-0.1.0-py3-none-any.whl", "sei_framework-0.1.0.tar.gz"]
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count("PASSED") == 2, check.stdout + check.stderr
    return out


def test_make_dist_builds_and_checks_what_this_test_does():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndist: ", 1)[1].split("\n\n", 1)[0]
    assert "$(PY) -m build --outdir dist ." in recipe and "$(PY) -m twine check --strict dist/*" in recipe


def test_the_wheel_holds_every_package_and_the_entry_points(dist):
    import zipfile

    with zipfile.ZipFile(dist / "sei_framework-0.1.0-py3-none-any.whl") as wheel:
        names = wheel.namelist()
        entry_points = wheel.read("sei_framework-0.1.0.dist-info/entry_points.txt").decode()
        metadata = wheel.read("sei_framework-0.1.0.dist-info/METADATA").decode()
    for package in ("sei_framework", "score_template", "sei_adapter_sklearn", "sei_deploy_local", "sei_transport_inline"):
        assert f"{package}/__init__.py" in names
    assert "score_template/score.py" in names and "sei_framework/py.typed" in names
    assert "sei = sei_framework.cli:main" in entry_points and "sei_adapter_sklearn = sei_adapter_sklearn" in entry_points
    assert "Provides-Extra: client" in metadata and "Provides-Extra: serve" in metadata


def test_a_client_machine_installs_the_wheel_with_the_client_extra_and_predicts(
    dist, tmp_path, model_files
):  # fmt: skip
    python = fresh_venv(tmp_path / "client-venv")
    wheel = dist / "sei_framework-0.1.0-py3-none-any.whl"
    pip_install(python, [f"{wheel}[client]"], cwd=tmp_path)
    absent = subprocess.run(
        [str(python), "-I", "-c", "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])",
         *BLOCKED_ON_A_CLIENT],
        capture_output=True, text=True, env=_clean_env(),
    )  # fmt: skip
    assert absent.stdout.strip() == "[]", f"the client extra installed more than a client needs: {absent.stdout}"

    path, model, X = model_files["digits"]
    config = {
        "name": "client-install",
        "models": [{"name": name, "adapter": adapter, "path": str(path), "options": {"feature_bounds": [0.0, 1.0]}}
                   for name, adapter in (("packed", "sklearn-packed"), ("eiserver", "sklearn-eiserver"))],
        "key_transport": {"name": "inline"},
        "deploy": {"target": "local", "options": {"state_dir": str(tmp_path / "state")}},
    }  # fmt: skip
    (tmp_path / "service.yaml").write_text(yaml.safe_dump(config))
    rows = X[:3]
    np.save(tmp_path / "rows.npy", rows)
    deployment = Deployment.from_file(tmp_path / "service.yaml")
    endpoint = deployment.deploy(tmp_path / "build")
    try:
        sei = python.parent / "sei"
        env = {**_clean_env(), "SEI_HOME": str(tmp_path / "client-home")}
        for name in ("packed", "eiserver"):
            done = subprocess.run(
                [str(sei), "predict", "--endpoint", endpoint.scoring_uri, "--model", name, "--input", "rows.npy", "--json"],
                capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            answer = json.loads(done.stdout)
            assert answer["predictions"] == model.predict(rows).tolist(), name
            np.testing.assert_allclose(answer["scores"], model.decision_function(rows), atol=1e-2)
    finally:
        deployment.delete()


def test_the_client_path_imports_no_build_or_service_extra(tmp_path, model_files):
    """In this environment too: with scikit-learn and the service's packages blocked, a client loads
    the plugins, makes keys and encrypts for both adapters."""
    from sei_framework.serving import ScoringService

    config = {
        "name": "closure",
        "models": [{"name": name, "adapter": adapter, "path": str(model_files["digits"][0]),
                    "options": {"feature_bounds": [0.0, 1.0]}}
                   for name, adapter in (("packed", "sklearn-packed"), ("eiserver", "sklearn-eiserver"))],
        "key_transport": {"name": "inline"},
    }  # fmt: skip
    (tmp_path / "service.yaml").write_text(yaml.safe_dump(config))
    build = Deployment.from_file(tmp_path / "service.yaml").build(tmp_path / "build")
    (tmp_path / "describe.json").write_text(json.dumps(ScoringService.from_build(build.path).describe()))
    script = """
import json, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
import numpy as np
from sei_framework import Client, get_plugin_manager
assert not get_plugin_manager().collect().load_errors
client = Client.offline(json.load(open("describe.json")))
for model in ("packed", "eiserver"):
    adapter = client.model(model)
    adapter.use_keys(*adapter.generate_keys())
    assert adapter.encrypt(np.full((2, 64), 0.5))
print(sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in ("sklearn", "joblib", "skops", "gevent")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, ",".join(BLOCKED_ON_A_CLIENT)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
