"""Every pytest run of `make test` is under the no-skip guard (tests/no_skips.py), the concrete-ml
suite's included: HEAD ran it without the guard, so a skip there passed quietly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _test_recipe() -> list[str]:
    """The pytest command lines of `make test`, as make expands them (`make -n`: printed, nothing run)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under make -j
    done = subprocess.run(["make", "-n", "test"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    return [line.strip() for line in done.stdout.splitlines() if " -m pytest" in line]


def _paths(line: str) -> list[str]:
    rest = line.split(" -m pytest", 1)[1].split()
    return [word for i, word in enumerate(rest) if not word.startswith("-") and rest[i - 1] != "-p"]


def test_every_pytest_line_of_make_test_loads_the_guard():
    runs = _test_recipe()
    assert len(runs) == 4
    for line in runs:
        assert line.startswith("SEI_NO_SKIPS=1 "), line
        under_tests = all(p.startswith("tests/") for p in _paths(line))
        # the main suite's conftest loads the guard; any other folder needs it on the command line
        assert under_tests or ("-p no_skips" in line and f"PYTHONPATH={ROOT / 'tests'} " in line), line


def test_the_two_runs_of_the_main_suite_run_every_test_file_once():
    """One run names its files, the other runs tests/ without exactly those: none left out, none run twice."""
    main = [line for line in _test_recipe() if line.split()[1] == ".venv/bin/python"]
    [named] = [_paths(line) for line in main if _paths(line)]
    [ignored] = [[w.removeprefix("--ignore=") for w in line.split() if w.startswith("--ignore=")] for line in main if not _paths(line)]
    assert named and sorted(named) == sorted(ignored)
    assert all((ROOT / path).is_file() and Path(path).name.startswith("test_") for path in named)


def test_the_concrete_line_fails_a_skip(tmp_path):
    """The concrete line's guard options, run on a folder outside tests/ holding one skipping test."""
    line = next(line for line in _test_recipe() if "sei-adapter-concrete" in line)
    options = re.findall(r"-p \S+", line.split(" -m pytest", 1)[1])
    (tmp_path / "test_skip.py").write_text("import pytest\n\ndef test_a():\n    pytest.skip('no compiler')\n")
    env = {**os.environ, "SEI_NO_SKIPS": "1", "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run([sys.executable, "-m", "pytest", *" ".join(options).split(), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1 and "skipped although SEI_NO_SKIPS=1" in done.stdout, done.stdout[-2000:]
