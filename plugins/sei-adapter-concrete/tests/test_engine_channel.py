"""The worker and its Concrete engines exchange frames of data: an engine that a hostile input took
over can make the worker run nothing (the engines used to answer in pickle frames)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from sei_adapter_concrete import runtime


class Gadget:
    """Unpickling this makes a folder: the stand-in for code a hostile engine wants the worker to run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("frame", ["old-engine-frame", "bare-pickle"])
def test_an_engine_that_answers_with_a_pickle_is_stopped_and_nothing_runs_in_the_worker(tmp_path, monkeypatch, frame):
    marker = tmp_path / "ran"
    gadget = pickle.dumps(("ok", Gadget(marker)), protocol=pickle.HIGHEST_PROTOCOL)
    payload = len(gadget).to_bytes(8, "little") + gadget if frame == "old-engine-frame" else gadget
    hostile = tmp_path / "engine.py"
    hostile.write_text(f"import sys, time\nsys.stdout.buffer.write({payload!r})\nsys.stdout.buffer.flush()\ntime.sleep(60)\n")
    monkeypatch.setattr(runtime, "ENGINE_SCRIPT", hostile)
    engine = runtime.EngineProcess("trusted")
    try:
        with pytest.raises(runtime.EngineCrashed, match="it broke the framing"):
            engine.load(runtime.KeyHandle(b"keys"), 30)
        assert not marker.exists()
        assert engine.pid is None  # stopped: the next call starts a fresh engine
    finally:
        engine.stop()
