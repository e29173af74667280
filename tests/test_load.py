"""A small run of bench/load_test.py: concurrent clients with their own keys all get their own answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

LOAD_TEST = Path(__file__).resolve().parent.parent / "bench" / "load_test.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("sei_bench_load_test", LOAD_TEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_three_concurrent_clients_get_their_own_correct_answers(tmp_path):
    # A key cache too small for two clients' keys (EIServer keys are ~18 MB once converted):
    # the service keeps evicting and re-reading keys, and every answer must still be right.
    summary = load_bench().run_load_test(
        clients=3, requests=2, rows=2, transport="local-dir", key_cache_mb=20, workdir=tmp_path
    )
    assert summary["failures"] == [] and summary["errors"] == 0
    assert summary["requests_ok"] == 6 and summary["all_correct"] is True
    assert summary["distinct_key_ids"] == 3  # every client used its own keys
    assert summary["max_abs_error"] <= 1e-3
    assert summary["still_answers"] is True
    assert summary["rss_before_mb"] > 0 and summary["rss_after_mb"] > 0
    assert len(list((tmp_path / "shared-keys").iterdir())) == 3
    assert not (tmp_path / "state" / "load-test" / "state.json").exists()  # deleted afterwards
