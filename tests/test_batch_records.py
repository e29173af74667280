"""Issue 16 for batch jobs: every prediction bound to its row (the data owner's job record, each result's row
range), to the description it was encrypted for, and to its bytes; multi-output models decrypt to a table."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import Ridge

from batch_fixtures import cancer_fixture, offline_fixture, read_predictions  # noqa: F401  (fixtures)

from sei_framework import BatchError, Client, Deployment
from sei_framework.batch import decrypt_job, describe_build, encrypt_dataset, score_job
from sei_framework.keys import Keyring

SEI = str(Path(sys.executable).parent / "sei")


def scored_job(build: Path, offline, rows: np.ndarray, job: Path, rows_per_shard: int = 100) -> Path:
    np.save(job.parent / f"{job.name}.npy", rows)
    encrypt_dataset(offline, "bulk", job.parent / f"{job.name}.npy", job, rows_per_shard=rows_per_shard)
    score_job(build, job, workers=1)
    return job


def test_shards_swapped_in_the_manifest_are_refused_never_misplaced(cancer, offline, tmp_path):
    """The reproduction: swap two shards' id, sha256 and bytes in manifest.json. The manifest still partitions
    the rows, so only the owner's record and each result's row range can tell."""
    build, _, rows = cancer
    job = scored_job(build, offline, rows[:200], tmp_path / "job")
    manifest = json.loads((job / "manifest.json").read_text())
    first, second = manifest["shards"]
    for key in ("id", "sha256", "bytes"):
        first[key], second[key] = second[key], first[key]
    (job / "manifest.json").write_text(json.dumps(manifest, indent=1))
    with pytest.raises(BatchError, match=f"manifest of job {manifest['job']} changed after it was encrypted"):
        decrypt_job(offline, job, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()

    # Defence in depth: even a manifest the record were to accept, each result names its own rows.
    record = next((tmp_path / "keys" / "batch-jobs").glob("*.json"))
    kept = json.loads(record.read_text())
    kept["manifest_sha256"] = hashlib.sha256((job / "manifest.json").read_bytes()).hexdigest()
    record.write_text(json.dumps(kept))
    with pytest.raises(BatchError, match=r"shard 00001 is for rows \[100, 200\) .* holds rows \[0, 100\)"):
        decrypt_job(offline, job, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_job_this_keyring_has_no_record_of_is_refused(cancer, offline, tmp_path):
    build, _, rows = cancer
    job = scored_job(build, offline, rows[:100], tmp_path / "job")
    (next((tmp_path / "keys" / "batch-jobs").glob("*.json"))).unlink()
    with pytest.raises(BatchError, match="has no record of job .*: decrypt with the keyring folder that encrypted"):
        decrypt_job(offline, job, tmp_path / "out.csv")


def test_the_record_stays_with_the_keys_not_the_job(cancer, offline, tmp_path):
    build, model, rows = cancer
    job = scored_job(build, offline, rows[:100], tmp_path / "job")
    (record,) = (tmp_path / "keys" / "batch-jobs").glob("*.json")
    assert record.stem == json.loads((job / "manifest.json").read_text())["job"]
    assert record.stat().st_mode & 0o077 == 0 and record.parent.stat().st_mode & 0o077 == 0
    assert not any("batch-jobs" in str(path) for path in job.rglob("*"))
    decrypt_job(offline, job, tmp_path / "out.csv")
    assert (read_predictions(tmp_path / "out.csv")["prediction"].to_numpy() == model.predict(rows[:100])).all()


def test_another_builds_description_is_refused(cancer, tmp_path):
    """`sei batch decrypt --describe` with the describe answer of another build of the same model: the same
    weights (so the same parameters and keys: only the description can tell) with other class labels."""
    build, model, rows = cancer
    X, _ = load_breast_cancer(return_X_y=True)
    relabelled = copy.deepcopy(model)
    relabelled[-1].classes_ = np.array(["benign", "malignant"])
    joblib.dump(relabelled, tmp_path / "cancer.joblib")
    np.save(tmp_path / "calibration.npy", X)
    (tmp_path / "cancer.yaml").write_text((build.parent / "cancer.yaml").read_text())
    other = Deployment.from_file(tmp_path / "cancer.yaml").build(tmp_path / "other").path
    env = {**os.environ, "SEI_HOME": str(tmp_path / "home")}

    def sei(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([SEI, "batch", *args], env=env, capture_output=True, text=True, timeout=300)

    for name, folder in (("service.json", build), ("other.json", other)):
        assert sei("describe", str(folder), "--out", str(tmp_path / name)).returncode == 0
    np.save(tmp_path / "rows.npy", rows[:100])
    done = sei("encrypt", "--describe", str(tmp_path / "service.json"), "--model", "bulk",
               "--input", str(tmp_path / "rows.npy"), "--out", str(tmp_path / "job"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    score_job(build, tmp_path / "job", workers=1)
    refused = sei("decrypt", str(tmp_path / "job"), "--out", str(tmp_path / "out.csv"), "--describe", str(tmp_path / "other.json"))
    assert refused.returncode == 1, refused.stdout
    assert "is not the one job" in refused.stderr and "another build" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "out.csv").exists()
    for describe in ([], ["--describe", str(tmp_path / "service.json")]):
        done = sei("decrypt", str(tmp_path / "job"), "--out", str(tmp_path / "out.csv"), *describe)
        assert done.returncode == 0, done.stderr
        assert (read_predictions(tmp_path / "out.csv")["prediction"].to_numpy() == model.predict(rows[:100])).all()


def _changed(body: bytes, at: int) -> bytes:
    """`body` with the first base64 letter or digit from `at` on replaced by another."""
    while not chr(body[at]).isalnum():
        at += 1
    return body[:at] + (b"B" if body[at : at + 1] == b"A" else b"A") + body[at + 1 :]


def test_a_changed_or_truncated_result_is_an_error_never_predictions(cancer, offline, tmp_path):
    build, model, rows = cancer
    job = scored_job(build, offline, rows[:200], tmp_path / "job")
    result = job / "results" / "00001.json"
    good = result.read_bytes()
    for fraction in (0.3, 0.5, 0.7, 0.9):  # one base64 character anywhere in the ciphertexts
        result.write_bytes(_changed(good, int(len(good) * fraction)))
        with pytest.raises(BatchError, match=r"results/00001.json is damaged"):
            decrypt_job(offline, job, tmp_path / "out.parquet")
        assert not (tmp_path / "out.parquet").exists()
    for size in (len(good) // 2, len(good) - 1):  # a partial write
        result.write_bytes(good[:size])
        with pytest.raises(BatchError, match="shard 00001 is not for this job's shard"):
            decrypt_job(offline, job, tmp_path / "out.parquet")
        assert not (tmp_path / "out.parquet").exists()
    result.write_bytes(good)
    decrypt_job(offline, job, tmp_path / "out.parquet")
    assert (read_predictions(tmp_path / "out.parquet")["prediction"].to_numpy() == model.predict(rows[:200])).all()


def test_a_multi_output_regressor_decrypts_to_one_column_per_output(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 6))
    model = Ridge().fit(X, X @ rng.normal(size=(6, 2)) + [1.0, -2.0])
    joblib.dump(model, tmp_path / "two.joblib")
    np.save(tmp_path / "calibration.npy", X)
    config = {"name": "two", "models": [
        {"name": "bulk", "adapter": "sklearn-packed", "path": "two.joblib",
         "options": {"mode": "bulk", "calibration_data": "calibration.npy"}},
        {"name": "rows", "adapter": "sklearn-eiserver", "path": "two.joblib", "options": {"calibration_data": "calibration.npy"}},
    ]}  # fmt: skip
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(config))
    build = Deployment.from_file(tmp_path / "two.yaml").build(tmp_path / "build").path
    offline = Client.offline(describe_build(build), keyring=Keyring(tmp_path / "keys"))
    np.save(tmp_path / "rows.npy", X[:150])
    expected = model.predict(X[:150])
    for name in ("bulk", "rows"):
        encrypt_dataset(offline, name, tmp_path / "rows.npy", tmp_path / name, rows_per_shard=100)
        score_job(build, tmp_path / name, workers=1)
        for out in (tmp_path / f"{name}.parquet", tmp_path / f"{name}.csv"):
            decrypt_job(offline, tmp_path / name, out)
            table = read_predictions(out)
            assert list(table.columns) == ["row", "prediction_0", "prediction_1", "score_0", "score_1"]
            assert list(table["row"]) == list(range(150))
            for i in range(2):
                np.testing.assert_allclose(table[f"prediction_{i}"], expected[:, i], atol=1e-3)
                np.testing.assert_allclose(table[f"score_{i}"], expected[:, i], atol=1e-3)
