"""Fixtures for the concrete-ml adapter's tests, run in the serving environment (`make test`:
.venv-concrete) with $SEI_CONCRETE_PYTHON naming Concrete ML's environment (.venv-concrete-build)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest_plugins = ["sei_framework.testing"]

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def sei_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("sei-home")
    monkeypatch.setenv("SEI_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def compiler() -> str:
    python = os.environ.get("SEI_CONCRETE_PYTHON")
    if not python:
        message = "SEI_CONCRETE_PYTHON does not name Concrete ML's environment (make test sets it)"
        if os.environ.get("SEI_NO_SKIPS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return python


class Trained:
    """Models trained in Concrete ML's environment, held-out rows, and what each should predict."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calibration = folder / "calibration.npy"
        self.X = np.load(folder / "test_X.npy")
        self.y = np.load(folder / "test_y.npy")
        self.expected = json.loads((folder / "expected.json").read_text())

    def path(self, name: str) -> Path:
        """A model file, or the folder of a model compiled with FHEModelDev."""
        folder = self.folder / name
        return folder if folder.is_dir() else self.folder / f"{name}.joblib"


@pytest.fixture(scope="session")
def trained(tmp_path_factory, compiler) -> Trained:
    folder = tmp_path_factory.mktemp("concrete-models")
    subprocess.run([compiler, str(HERE / "train_models.py"), str(folder)], check=True, capture_output=True)
    return Trained(folder)


def write_config(folder: Path, models: list[dict], **extra) -> Path:
    """A service config (inline keys, local target) serving `models`, with room for TFHE keys."""
    config = {
        "name": extra.pop("name", "concrete-svc"),
        "models": models,
        "key_transport": extra.pop("key_transport", {"name": "inline"}),
        "deploy": {"target": "local", "options": {"state_dir": str(folder / "state")}},
        "limits": extra.pop("limits", {"max_public_key_mb": 128, "max_request_mb": 160, "key_cache_mb": 2048}),
        **extra,
    }
    path = folder / "sei.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def concrete_model(trained: Trained, name: str, **options) -> dict:
    return {"name": name, "adapter": "concrete-ml", "path": str(trained.path(name)),
            "options": {"calibration_data": str(trained.calibration), **options}}  # fmt: skip
