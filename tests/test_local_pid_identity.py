"""The local target signals the process group in its state file only while the PID still names the
server it started: a PID reused by another process (and its group) is left alone."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sei_deploy_local import LocalOptions, LocalTarget
from sei_deploy_local.process import identity

NAME = "svc"


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen]:
    """A process leading its own group, as the owner of a reused PID would be."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def write_state(folder: Path, state: dict) -> LocalTarget:
    run_dir = folder / NAME
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps({"port": 9, "build": str(folder / "build"), "log": "x", **state}))
    return LocalTarget(LocalOptions(state_dir=str(folder)))


def test_a_reused_pid_is_not_signalled(tmp_path: Path, bystander: subprocess.Popen) -> None:
    """The state names the PID with the start time of the server deploy started, long gone."""
    target = write_state(tmp_path, {"pid": bystander.pid, "started": "another-boot:12345"})
    assert target.endpoint(NAME) is None
    assert target.delete(NAME) is False
    time.sleep(0.3)
    assert bystander.poll() is None  # still running: neither SIGTERM nor SIGKILL reached its group
    assert not (tmp_path / NAME / "state.json").exists()


def test_an_old_state_file_is_checked_by_command_line(tmp_path: Path, bystander: subprocess.Popen) -> None:
    """A state file written before start times were recorded: the PID's command line is not a server of that build."""
    target = write_state(tmp_path, {"pid": bystander.pid})
    assert target.delete(NAME) is False
    time.sleep(0.3)
    assert bystander.poll() is None


@pytest.mark.parametrize("pid", [0, 1, -1, "1", None])
def test_a_state_file_naming_no_plain_pid_signals_nothing(tmp_path: Path, pid: object) -> None:
    target = write_state(tmp_path, {"pid": pid, "started": None})
    assert target.delete(NAME) is False


def test_the_process_deploy_started_is_stopped(tmp_path: Path, bystander: subprocess.Popen) -> None:
    started = identity(bystander.pid)
    assert started is not None and started == identity(bystander.pid)
    target = write_state(tmp_path, {"pid": bystander.pid, "started": started})
    assert target.delete(NAME) is True
    assert bystander.wait(timeout=20) is not None
