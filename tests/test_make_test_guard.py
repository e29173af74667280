"""Every pytest run of `make test` is under the no-skip guard (tests/no_skips.py), the concrete-ml
suite's included: HEAD ran it without the guard, so a skip there passed quietly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _recipe(lines: list[str], target: str) -> tuple[list[str], list[str]]:
    """A Makefile target's prerequisites and its recipe lines."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return lines[start].split(":", 1)[1].split(), recipe


def _test_recipe() -> list[str]:
    """The pytest lines `make test` runs: its own recipe's and those of its test-* prerequisites."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    prerequisites, recipe = _recipe(lines, "test")
    for target in prerequisites:
        if target.startswith("test-"):
            recipe += _recipe(lines, target)[1]
    return [line for line in recipe if " -m pytest" in line]


def test_every_pytest_line_of_make_test_loads_the_guard():
    runs = _test_recipe()
    assert len(runs) == 3
    for line in runs:
        assert line.startswith("SEI_NO_SKIPS=1 "), line
        rest = line.split(" -m pytest", 1)[1]
        paths = [word for word in rest.split() if not word.startswith("-") and word != "no:cacheprovider"]
        under_tests = all(p.startswith("$(FLOORS_TESTS)") or p.startswith("tests/") for p in paths)
        # the main suite's conftest loads the guard; any other folder needs it on the command line
        assert under_tests or ("-p no_skips" in rest and "PYTHONPATH=$(CURDIR)/tests" in line), line


def test_the_concrete_line_fails_a_skip(tmp_path):
    """The concrete line's guard options, run on a folder outside tests/ holding one skipping test."""
    line = next(line for line in _test_recipe() if "CONCRETE_DIST" in line)
    options = re.findall(r"-p \S+", line.split(" -m pytest", 1)[1])
    (tmp_path / "test_skip.py").write_text("import pytest\n\ndef test_a():\n    pytest.skip('no compiler')\n")
    env = {**os.environ, "SEI_NO_SKIPS": "1", "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run([sys.executable, "-m", "pytest", *" ".join(options).split(), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1 and "skipped although SEI_NO_SKIPS=1" in done.stdout, done.stdout[-2000:]
