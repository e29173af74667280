"""Small runs of bench/load_test.py: concurrent clients with their own keys get their own answers; memory stays bounded."""

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
    # A key cache that holds about one client's converted EIServer keys (~9 MB) in its probation
    # quarter: the service keeps evicting and re-reading keys, and every answer must still be right.
    cache_mb = 40
    summary = load_bench().run_load_test(
        clients=5, requests=3, rows=2, transport="local-dir", key_cache_mb=cache_mb, workdir=tmp_path
    )
    assert summary["failures"] == [] and summary["errors"] == 0
    assert summary["requests_ok"] == 15 and summary["all_correct"] is True
    assert summary["distinct_key_ids"] == 5  # every client used its own keys
    assert summary["max_abs_error"] <= 1e-3
    assert summary["still_answers"] is True
    # Memory: the cache's budget plus one request's keys in flight and allocator slack
    assert summary["rss_after_mb"] - summary["rss_before_mb"] <= cache_mb + 40, summary
    # and no growth once the cache is warm (a leak of one key set per request would add 90+ MB)
    assert summary["rss_growth_after_warmup_mb"] <= 24, summary
    assert len(list((tmp_path / "shared-keys").iterdir())) == 5
    assert not (tmp_path / "state" / "load-test" / "state.json").exists()  # deleted afterwards


def test_two_workers_sharing_redis_with_idle_connections_held_open(tmp_path, redis_url):
    """Packed clients against two workers that share quota and keys through Redis, while idle and
    half-sent connections are held open beside them: every answer right, the probe never fails,
    each worker within its key cache budget."""
    summary = load_bench().run_load_test(
        clients=8, requests=3, rows=2, adapter="sklearn-packed", workers=2, state="redis", idle=20,
        key_cache_mb=16, workdir=tmp_path,
    )  # fmt: skip
    assert summary["failures"] == [] and summary["errors"] == 0 and summary["all_correct"] is True
    assert summary["requests_ok"] == 24 and summary["distinct_key_ids"] == 8
    assert summary["still_answers"] is True
    assert summary["idle_connections_opened"] >= 20
    assert summary["probe_max_s"] is not None and summary["probe_max_s"] < 30  # 30: a probe that failed
    assert len(summary["workers_rss_after_mb"]) == 2
    assert summary["worker_growth_max_mb"] <= 16 + 40, summary  # the key cache's budget plus slack
