"""A dry run's environment rebuilt from exactly what it lists, and served by that environment.

Used by the `aci` and `azureml-online` dry-run tests: a fresh virtual environment (nothing of the
development environment, and no PYTHONPATH reaching it), `pip install` of the dry run's list,
`pip check`, then the dry run's build folder served by that environment's azmlinfsrv through the
local target's `python` option.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from sei_framework import Build, Endpoint

__all__ = ["NO_COMPILE", "fresh_venv", "pip_install", "served_by"]


def _clean_env() -> dict[str, str]:
    """The environment of the children, without anything that would add the development tree to sys.path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE")}


def fresh_venv(folder: Path) -> Path:
    """A new venv (no system site-packages) in `folder`, with this interpreter's Python; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, env=_clean_env())
    return folder / "bin" / "python"


NO_COMPILE = "--no-compile"
"""What these installs skip: byte-compiling every module of every package installed (about three quarters of
pip's CPU time for scikit-learn and pandas); Python compiles the modules a test imports when it imports them."""


def pip_install(python: Path, args: list[str], *, cwd: Path) -> None:
    """`pip install ARGS` into the venv, then `pip check`; and sei_framework must come from the venv."""
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", NO_COMPILE, *args]
    install = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=_clean_env())
    assert install.returncode == 0, install.stderr[-2000:]
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, env=_clean_env())
    assert check.returncode == 0, check.stdout[-2000:]
    where = subprocess.run(
        [str(python), "-I", "-c", "import sei_framework; print(sei_framework.__file__)"],
        capture_output=True, text=True, cwd=python.parent, env=_clean_env(),
    )  # fmt: skip
    assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(python.parent.parent), where


@contextmanager
def served_by(python: Path, build: Path, state_dir: Path) -> Iterator[Endpoint]:
    """The build folder served by `python`'s azmlinfsrv on 127.0.0.1 (the local target); stopped afterwards."""
    from sei_deploy_local import LocalOptions, LocalTarget

    saved = os.environ.pop("PYTHONPATH", None)  # the server is a child of this process: keep it out
    try:
        target = LocalTarget(LocalOptions(state_dir=state_dir, python=python))
        served = Build.open(build)
        endpoint = target.deploy(served)
    finally:
        if saved is not None:
            os.environ["PYTHONPATH"] = saved
    try:
        state = json.loads((state_dir / served.name / "state.json").read_text())
        assert psutil.Process(state["pid"]).cmdline()[0] == str(python)  # served by the fresh environment
        yield endpoint
    finally:
        target.delete(served.name)
