"""examples/tutorial.ipynb runs top to bottom in this venv's kernel, on both of its data paths.

The notebook is committed without outputs; the suite executes it with nbclient, from examples/,
SEI_HOME and the temporary folders in the test's own folder, and afterwards stops any local
deployment left behind (nbclient stops at the first failing cell, before the clean-up cell).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT
from sei_framework import get_plugin_manager

NOTEBOOK = ROOT / "examples" / "tutorial.ipynb"
KERNEL = "sei-test-venv"
PROBE = "import sys\nprint('kernel python:', sys.executable)\nprint('kernel prefix:', sys.prefix)"
AGREEMENT = re.compile(r"(sklearn-[a-z]+): agreement with plaintext predict\(\): (\d+) % \((\d+) of (\d+)\)")


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} has outputs: clear them"


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec whose argv is this interpreter (the venv's), first on JUPYTER_PATH; its name."""
    from ipykernel.kernelspec import write_kernel_spec

    folder = tmp_path / "jupyter"
    write_kernel_spec(folder / "kernels" / KERNEL)
    monkeypatch.setenv("JUPYTER_PATH", str(folder))
    return KERNEL


def stop_local_deployments(sei_home: Path) -> list[str]:
    """Stop every deployment the local target has state for under `sei_home`; the names it stopped."""
    target_class = get_plugin_manager().deploy_targets().get("local")
    target = target_class(target_class.Options())
    state = sei_home / "local"
    names = sorted(path.name for path in state.iterdir() if path.is_dir()) if state.is_dir() else []
    return [name for name in names if target.delete(name)]


def run_notebook(venv_kernel, sei_home: Path, tmp_path: Path, monkeypatch, data: str) -> tuple[str, list[dict]]:
    """Execute the notebook with SEI_TUTORIAL_DATA=`data`; its printed text and its display outputs."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    if data == "mnist":
        monkeypatch.delenv("SEI_TUTORIAL_DATA", raising=False)  # the notebook's default
    else:
        monkeypatch.setenv("SEI_TUTORIAL_DATA", data)
    monkeypatch.setenv("TMPDIR", str(tmp))  # where the notebook makes its working folder, checked below
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(PROBE))  # in memory only
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name=venv_kernel,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # the working folder: examples/
    )
    try:
        client.execute()
    finally:
        # the notebook's last cell stops its deployment; a failure before it must not leave azmlinfsrv running
        leftover = stop_local_deployments(sei_home)
    assert not leftover, f"the notebook left deployments running: {leftover}"
    left = sorted(path.name for path in tmp.glob("sei-tutorial-*"))
    assert not left, f"the notebook did not remove its temporary folder: {left}"
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    return text, outputs


@pytest.mark.parametrize("data", ["mnist", "bundled"])
def test_tutorial_notebook_runs_top_to_bottom(data, venv_kernel, sei_home, tmp_path, monkeypatch):
    text, outputs = run_notebook(venv_kernel, sei_home, tmp_path, monkeypatch, data)

    assert f"kernel python: {sys.executable}\n" in text
    assert f"kernel prefix: {sys.prefix}\n" in text
    if data == "mnist":  # the tutorial's model and MNIST from the repository's data/
        assert "loaded the tutorial's model sklearn_mnist_model.pkl" in text
        assert "784 features, 10 classes" in text
    else:
        assert "trained a LogisticRegression on scikit-learn's bundled digits" in text
        assert "64 features, 10 classes" in text

    agreement = {adapter: tuple(map(int, numbers)) for adapter, *numbers in AGREEMENT.findall(text)}
    assert agreement == {"sklearn-packed": (100, 100, 100), "sklearn-eiserver": (100, 2, 2)}, text

    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == 1, "the notebook shows one figure of digits"
    assert len(images[0]["data"]["image/png"]) > 1000
    assert "server stopped: True" in text
