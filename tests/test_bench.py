"""`sei bench` on a handful of rows: it runs, writes its JSON and chart, and checks agreement."""

from __future__ import annotations

import json

import numpy as np
import yaml
from click.testing import CliRunner
from conftest import with_bounds

from sei_framework.cli import cli


def test_bench_compares_both_adapters_on_the_same_model(model_files, tmp_path):
    path, model, X = model_files["diabetes"]  # one output: the tutorial path takes ~1 s per row
    config = {
        "name": "bench",
        "models": [
            with_bounds({"name": "tutorial", "adapter": "sklearn-eiserver", "path": str(path), "options": {"convert_keys_once": False}}),
            with_bounds({"name": "eiserver", "adapter": "sklearn-eiserver", "path": str(path)}),
            with_bounds({"name": "packed", "adapter": "sklearn-packed", "path": str(path)}),
            with_bounds({"name": "packed-bulk", "adapter": "sklearn-packed", "path": str(path), "options": {"mode": "bulk"}}),
        ],
        "deploy": {"target": "local", "options": {"state_dir": str(tmp_path / "state")}},
    }
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(config))
    np.save(tmp_path / "rows.npy", X[:4])
    out = tmp_path / "results"
    args = ["bench", str(tmp_path / "bench.yaml"), "--input", str(tmp_path / "rows.npy"), "--out", str(out),
            "--repeats", "2", "--e2e-requests", "2", "--bulk-seconds", "0"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "server ms, one row" in result.stdout and "agreement with plaintext" in result.stdout
    report = json.loads((out / "bench.json").read_text())
    figures = {m["model"]: m for m in report["models"]}
    assert set(figures) == {"tutorial", "eiserver", "packed", "packed-bulk"}
    for m in figures.values():
        assert m["agreement"] == 1.0 and m["max_abs_error"] <= 1e-3
        assert m["rows_checked"] >= 3 and m["bulk_rows"] >= 1
        assert m["server_ms"] > 0 and m["e2e_p95_ms"] >= m["e2e_p50_ms"] > 0
        assert m["bulk_encrypt_ms_per_row"] > 0 and m["bulk_decrypt_ms_per_row"] > 0
    assert figures["packed-bulk"]["bulk_batch_rows"] > figures["packed"]["bulk_batch_rows"]
    assert figures["packed"]["key_bytes"] < figures["eiserver"]["key_bytes"]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_bench_measures_end_to_end_with_the_configs_own_target_and_options(model_files, tmp_path):
    """The core names no plugin: the end-to-end figures come from the config's deploy section as written."""
    from sei_framework import Deployment
    from sei_framework.bench import run_bench

    path, _, X = model_files["diabetes"]
    state = tmp_path / "my-state"
    config = {
        "name": "bench-own-target",
        "models": [with_bounds({"name": "packed", "adapter": "sklearn-packed", "path": str(path)})],
        "deploy": {"target": "local", "options": {"state_dir": str(state)}},
    }
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(config))
    deployment = Deployment.from_file(tmp_path / "bench.yaml")
    out = tmp_path / "out"
    figures = run_bench(deployment, X[:3], out, repeats=2, e2e_requests=2, bulk_budget_s=0)
    assert figures[0].e2e_p50_ms > 0
    assert (state / "bench-own-target").is_dir() and not (out / "state").exists()  # the config's state_dir
    logs = sorted((state / "bench-own-target").iterdir())
    skipped = run_bench(deployment, X[:3], tmp_path / "out2", repeats=2, e2e_requests=0, bulk_budget_s=0)
    assert np.isnan(skipped[0].e2e_p50_ms) and sorted((state / "bench-own-target").iterdir()) == logs  # not deployed
