"""A small run of bench/load_test.py: concurrent clients with their own keys get their own answers; memory stays bounded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

LOAD_TEST = Path(__file__).resolve().parent.parent / "bench" / "load_test.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("sei_bench_load_test", LOAD_TEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_concurrent_clients_get_their_own_correct_answers_in_bounded_memory(tmp_path):
    # A key cache too small for two clients' keys (EIServer keys are ~18 MB once converted):
    # the service keeps evicting and re-reading keys, and every answer must still be right.
    cache_mb = 20
    summary = load_bench().run_load_test(
        clients=5, requests=3, rows=2, transport="local-dir", key_cache_mb=cache_mb, workdir=tmp_path
    )
    assert summary["failures"] == [] and summary["errors"] == 0
    assert summary["requests_ok"] == 15 and summary["all_correct"] is True
    assert summary["distinct_key_ids"] == 5  # every client used its own keys
    assert summary["max_abs_error"] <= 1e-3
    assert summary["still_answers"] is True
    # Memory: the cache's budget plus one request's keys in flight and allocator slack. Measured
    # here: +22..38 MB with this cache, +97 MB with a cache that keeps all five clients' keys.
    assert summary["rss_after_mb"] - summary["rss_before_mb"] <= cache_mb + 40, summary
    # and no growth once the cache is warm (a leak of one key set per request would add 90+ MB)
    assert summary["rss_growth_after_warmup_mb"] <= 24, summary
    assert len(list((tmp_path / "shared-keys").iterdir())) == 5
    assert not (tmp_path / "state" / "load-test" / "state.json").exists()  # deleted afterwards
