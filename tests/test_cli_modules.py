"""Each module of the `sei` command imports on its own (no cycle between cli and cli_batch)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["sei_framework.cli", "sei_framework.cli_batch", "sei_framework.cli_common"])
def test_each_cli_module_imports_alone(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_batch_group_is_part_of_sei():
    from sei_framework.cli import cli

    assert "batch" in cli.commands
