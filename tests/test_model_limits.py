"""Limits that fit the model: rows per request come from the build, per model, or the build says what to set."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from sei_adapter_sklearn.packed import PackedAdapter
from sei_adapter_sklearn.packed_kernel import ClientKeys, public_key_size, request_size
from sklearn.linear_model import LinearRegression

from bench.kernel_params import choose_params
from sei_framework import BuildError, Client, Deployment, ServiceError
from sei_framework.limits import MB, request_bytes
from sei_framework.serving import ScoringService


def linear_file(path: Path, d: int) -> Path:
    model = LinearRegression()
    model.coef_, model.intercept_, model.n_features_in_ = np.linspace(0.01, 0.02, d), 0.5, d
    joblib.dump(model, path)
    return path


def build(tmp_path: Path, models: list[dict], limits: dict | None = None, name: str = "limits"):
    """Build a config of packed models (name, d, mode, and optional own `limits`) into tmp_path/build."""
    entries = []
    for m in models:
        entry = {"name": m["name"], "adapter": m.get("adapter", "sklearn-packed"),
                 "path": str(linear_file(tmp_path / f"{m['name']}.joblib", m["d"]))}  # fmt: skip
        if entry["adapter"] == "sklearn-packed":
            entry["options"] = {"mode": m.get("mode", "single"), "feature_bounds": [0, 1]}
        else:
            entry["options"] = {"feature_bounds": [-1, 1]}
        if "limits" in m:
            entry["limits"] = m["limits"]
        entries.append(entry)
    config = {"name": name, "models": entries, **({"limits": limits} if limits else {})}
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(config))
    return Deployment.from_file(tmp_path / "svc.yaml").build(tmp_path / "build")


def rows_of(built) -> dict[str, int]:
    return {m["name"]: m["limits"]["max_rows_per_request"] for m in built.manifest["models"]}


def test_request_sizes_are_the_kernels_own():
    for mode, d in (("bulk", 10), ("single", 784), ("single", 5000)):
        params = choose_params(d, 2, mode)
        keys = ClientKeys.generate(params)
        X = np.full((3, d), 0.5)
        message = keys.encrypt_batch(X)[0] if mode == "bulk" else keys.encrypt_row(X[0])
        assert request_size(params) == len(message)
        assert public_key_size(params) == len(keys.public_bytes())
        size = PackedAdapter.request_size({"params": params.to_json()})
        assert size.batch_rows == (4096 if mode == "bulk" else 1)
        as_sent = json.dumps(["x", base64.b64encode(message).decode()])  # a list item as JSON, base64 included
        assert size.batch_bytes == len(as_sent) - len('["x"]')


def test_a_bulk_model_with_default_limits_gets_a_full_batch_and_single_models_are_unchanged(tmp_path):
    built = build(tmp_path, [{"name": "bulk", "d": 10, "mode": "bulk"}, {"name": "single", "d": 10}])
    assert rows_of(built) == {"bulk": 4096, "single": 64}
    service = ScoringService.from_build(built.path)
    described = service.describe()
    assert described["limits"]["max_rows_per_request"] == 64  # the config's, for clients that predate per-model limits
    assert described["models"]["bulk"]["limits"] == {"max_rows_per_request": 4096}
    assert described["models"]["single"]["limits"] == {"max_rows_per_request": 64}


def test_eiserver_models_keep_the_configs_limit(make_deployment, tmp_path):
    assert rows_of(make_deployment().build(tmp_path / "build")) == {"digits": 64, "diabetes": 64}
    built = make_deployment(limits={"max_rows_per_request": 3}).build(tmp_path / "build")
    assert rows_of(built) == {"digits": 3, "diabetes": 3}


def test_the_service_enforces_each_models_own_limit(tmp_path):
    service = ScoringService.from_build(
        build(tmp_path, [{"name": "bulk", "d": 4, "mode": "bulk"}, {"name": "single", "d": 4}]).path
    )

    def refusal(model: str, rows: int, ciphertexts: int) -> dict:
        data = {"n_features": 4, "n_rows": rows, "ciphertexts": ["AAAA"] * ciphertexts}
        answer, _ = service.handle(json.dumps({"model": model, "key_id": "a" * 32, "data": data}))
        return answer["error"]

    assert refusal("single", 65, 65)["code"] == "too_many_rows"
    assert "at most 64 for model 'single'" in refusal("single", 65, 65)["message"]
    assert refusal("single", 64, 64)["code"] != "too_many_rows"
    assert refusal("bulk", 4097, 1)["code"] == "too_many_rows"
    assert refusal("bulk", 4096, 1)["code"] != "too_many_rows"


def test_a_model_too_wide_for_the_request_limit_is_refused_at_build_naming_the_setting(tmp_path):
    """1,600 features: one 4,096-row batch is ~67 MB of base64; the default 64 MB can never hold it."""
    message = (r"model 'wide': its smallest request \(one batch of 4096 rows\) is 66\.8 MB, "
               r"over limits.max_request_mb \(64\); set limits.max_request_mb to at least 67")
    with pytest.raises(BuildError, match=message):
        build(tmp_path, [{"name": "wide", "d": 1600, "mode": "bulk"}])
    assert not (tmp_path / "build").exists()
    built = build(tmp_path, [{"name": "wide", "d": 1600, "mode": "bulk"}], limits={"max_request_mb": 67})
    assert rows_of(built) == {"wide": 4096}


def test_a_models_own_limit_wins_when_it_fits_and_is_refused_naming_both_settings_when_not(tmp_path):
    built = build(tmp_path, [{"name": "bulk", "d": 10, "mode": "bulk", "limits": {"max_rows_per_request": 8192}},
                             {"name": "small", "d": 10, "mode": "bulk", "limits": {"max_rows_per_request": 100}}])
    assert rows_of(built) == {"bulk": 8192, "small": 100}
    with pytest.raises(BuildError, match=r"models\[0\].limits.max_rows_per_request is 8192, .* set "
                                         r"models\[0\].limits.max_rows_per_request to at most 4096, or "
                                         r"limits.max_request_mb to at least 1$"):
        build(tmp_path, [{"name": "bulk", "d": 10, "mode": "bulk", "limits": {"max_rows_per_request": 8192}}],
              limits={"max_request_mb": 0.75})


def test_the_default_is_capped_at_what_fits_and_rounded_to_whole_batches(tmp_path):
    built = build(tmp_path, [{"name": "bulk", "d": 10, "mode": "bulk"}, {"name": "single", "d": 10}],
                  limits={"max_rows_per_request": 10000, "max_request_mb": 2})
    size = PackedAdapter.request_size(built.manifest["models"][1]["metadata"])
    fits = (2 * MB - request_bytes(size, 1) + size.batch_bytes) // size.batch_bytes
    assert rows_of(built) == {"bulk": 8192, "single": fits}  # 10000 rows -> 2 whole batches (4 would fit)
    assert request_bytes(size, fits) <= 2 * MB < request_bytes(size, fits + 1)
    built = build(tmp_path, [{"name": "bulk", "d": 10, "mode": "bulk"}],
                  limits={"max_rows_per_request": 10000, "max_request_mb": 0.75})
    assert rows_of(built) == {"bulk": 4096}  # one batch (0.4 MB) fits, two do not


def test_the_client_sends_full_batches(tmp_path, monkeypatch):
    built = build(tmp_path, [{"name": "bulk", "d": 3, "mode": "bulk"}])
    service = ScoringService.from_build(built.path)
    sent: list[int] = []

    def call(self, body):
        sent.append(body["data"]["n_rows"] if body.get("op", "predict") == "predict" else 0)
        answer, status = service.handle(json.dumps(body))
        if status != 200:
            raise ServiceError(answer["error"]["message"], code=answer["error"]["code"], status=status)
        return answer

    monkeypatch.setattr(Client, "call", call)
    X = np.random.default_rng(0).uniform(0, 1, (5000, 3))
    result = Client("http://127.0.0.1:9/score").predict("bulk", X)
    assert [n for n in sent if n] == [4096, 904]
    reference = service.adapters["bulk"].reference_scores(X)
    np.testing.assert_allclose(result.scores, reference, atol=1e-3)


def test_one_key_set_must_fit_the_key_limits_and_counts_in_a_request_only_where_it_travels_in_one(tmp_path):
    from sei_framework import RequestSize
    from sei_framework.config import LimitsConfig
    from sei_framework.limits import check_key_limits

    size = RequestSize(batch_bytes=1000, public_key_bytes=40 * MB, key_bytes=30 * MB, key_memory_bytes=300 * MB)
    check_key_limits("m", size, LimitsConfig(max_public_key_mb=30, key_cache_mb=1200))  # exactly at both limits
    with pytest.raises(BuildError, match=r"'m': one client's public keys are 30.0 MB as received, over "
                                         r"limits.max_public_key_mb \(29\); set limits.max_public_key_mb to at least 30$"):
        check_key_limits("m", size, LimitsConfig(max_public_key_mb=29, key_cache_mb=1200))
    # the key cache keeps a new key set in its probation quarter: one set may take a quarter of it
    with pytest.raises(BuildError, match=r"hold 300.0 MB once converted, over the 25% of limits.key_cache_mb "
                                         r"\(1199\) that one key set may take; set limits.key_cache_mb to at least 1200$"):
        check_key_limits("m", size, LimitsConfig(max_public_key_mb=30, key_cache_mb=1199))
    # sklearn-packed single mode at 5000 features: its public keys travel in the first request with
    # `inline`, and never with `local-dir`, so a request limit that only the keys break matters to inline only
    params = choose_params(5000, 2, "single")
    need_without_keys = request_bytes(PackedAdapter.request_size({"params": params.to_json()}), 1) - _b64(public_key_size(params))
    limit_mb = (need_without_keys + 64 * 1024) / MB
    with pytest.raises(BuildError, match="limits.max_request_mb"):
        build(tmp_path, [{"name": "wide", "d": 5000}], limits={"max_request_mb": limit_mb})
    config = yaml.safe_load((tmp_path / "svc.yaml").read_text())
    config["key_transport"] = {"name": "local-dir", "options": {"path": str(tmp_path / "keys")}}
    (tmp_path / "svc.yaml").write_text(yaml.safe_dump(config))
    built = Deployment.from_file(tmp_path / "svc.yaml").build(tmp_path / "build")
    assert rows_of(built)["wide"] >= 1


def _b64(n: int) -> int:
    return 4 * -(-n // 3)
