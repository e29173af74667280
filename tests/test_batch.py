"""Batch jobs end to end on a real Dask LocalCluster: encrypt into shards, score, decrypt in row order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from azurite import azurite_fixture  # noqa: F401  (the azurite fixture)
from batch_fixtures import cancer_fixture, offline_fixture, read_predictions, write_csv  # noqa: F401  (fixtures)

from sei_framework import BatchError, Client, Deployment, InvalidRequest
from sei_framework.batch import JobManifest, JobStore, decrypt_job, describe_build, encrypt_dataset, score_job
from sei_framework.keys import Keyring

ROOT = Path(__file__).resolve().parent.parent
SEI = str(Path(sys.executable).parent / "sei")


def test_csv_to_parquet_on_two_workers_in_row_order_and_rerun_skips(cancer, offline, tmp_path):
    build, model, rows = cancer
    write_csv(tmp_path / "rows.csv", rows)
    job = tmp_path / "job"
    report = encrypt_dataset(offline, "bulk", tmp_path / "rows.csv", job, rows_per_shard=2048)
    assert (report.rows, report.shards) == (len(rows), 5)  # 4 x 2048 + 808: the last shard is short
    manifest = JobManifest.load(JobStore(job))
    assert [s.rows for s in manifest.shards] == [2048] * 4 + [808]
    assert manifest.columns == [f"f{i}" for i in range(30)] and manifest.key_id == offline.session("bulk").key_id

    scored = score_job(build, job, workers=2)
    assert (scored.scored, scored.skipped, scored.workers) == (5, 0, 2)
    out = decrypt_job(offline, job, tmp_path / "predictions.parquet")
    table = read_predictions(tmp_path / "predictions.parquet")
    assert list(table["row"]) == list(range(len(rows)))
    assert (table["prediction"].to_numpy() == model.predict(rows)).all()
    assert np.abs(table["probability_1"].to_numpy() - model.predict_proba(rows)[:, 1]).max() < 1e-3
    summary = json.loads(Path(out.summary).read_text())
    assert summary["rows"] == len(rows) and summary["sha256"] == out.sha256

    before = {p.name: p.stat().st_mtime_ns for p in (job / "results").iterdir()}
    again = score_job(build, job, workers=1)
    assert (again.scored, again.skipped) == (0, 5)
    assert {p.name: p.stat().st_mtime_ns for p in (job / "results").iterdir()} == before


def test_per_row_adapter_npy_to_csv(cancer, offline, tmp_path):
    """sklearn-eiserver has no bulk packing: one ciphertext per row, shards of a few rows."""
    build, model, rows = cancer
    np.save(tmp_path / "rows.npy", rows[:6])
    encrypt_dataset(offline, "rows", tmp_path / "rows.npy", tmp_path / "job", rows_per_shard=3)
    assert score_job(build, tmp_path / "job", workers=2).scored == 2
    decrypt_job(offline, tmp_path / "job", tmp_path / "out.csv")
    table = read_predictions(tmp_path / "out.csv")
    assert list(table["row"]) == list(range(6))
    assert (table["prediction"].to_numpy() == model.predict(rows[:6])).all()
    assert np.abs(table["score"].to_numpy() - model.decision_function(rows[:6])).max() < 1e-3


def test_a_worker_killed_mid_run_changes_nothing(cancer, offline, tmp_path):
    """One of two worker processes is killed while shards are being scored: Dask reschedules its work."""
    from dask.distributed import Client as DaskClient
    from dask.distributed import LocalCluster

    build, model, rows = cancer
    np.save(tmp_path / "rows.npy", rows)
    job = tmp_path / "job"
    encrypt_dataset(offline, "bulk", tmp_path / "rows.npy", job, rows_per_shard=300)  # 30 shards
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    killed = []

    def kill_one_worker_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = len(list((job / "results").glob("*.json"))) if (job / "results").exists() else 0
            if done >= 3:
                with DaskClient(cluster, set_as_default=False) as watcher:
                    pids = watcher.run(os.getpid)
                victim = sorted(pids.values())[0]
                os.kill(victim, signal.SIGKILL)
                killed.append((victim, done))
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_one_worker_mid_run)
    try:
        watcher.start()
        report = score_job(build, job, scheduler=cluster.scheduler_address)
        watcher.join()
        with DaskClient(cluster, set_as_default=False) as dask:  # each live worker loaded the build once
            loaded = dask.run(lambda: len(__import__("sei_framework.batch.scoring").batch.scoring._SCORERS))
    finally:
        cluster.close()
    assert set(loaded.values()) <= {0, 1} and 1 in loaded.values(), loaded
    assert killed and killed[0][1] < 30, "the worker was not killed while shards remained"
    assert report.scored + report.skipped == 30 and not report.failed
    decrypt_job(offline, job, tmp_path / "out.parquet")
    table = read_predictions(tmp_path / "out.parquet")
    assert list(table["row"]) == list(range(len(rows)))
    assert (table["prediction"].to_numpy() == model.predict(rows)).all()


def test_a_run_killed_midway_resumes_without_loss_or_duplicates(cancer, offline, tmp_path):
    build, model, rows = cancer
    np.save(tmp_path / "rows.npy", rows)
    job = tmp_path / "job"
    encrypt_dataset(offline, "bulk", tmp_path / "rows.npy", job, rows_per_shard=150)  # 60 shards
    command = [SEI, "batch", "score", str(build), str(job), "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(job.glob("results/*.json"))) < 2:
            assert process.poll() is None, process.communicate()
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the command and its Dask workers, mid-run
        process.wait()
    first = {p.name: p.stat().st_mtime_ns for p in job.glob("results/*.json")}
    assert 2 <= len(first) < 60, f"{len(first)} results before the kill: not midway"
    report = score_job(build, job, workers=1)
    assert report.skipped >= len(first) and report.scored + report.skipped == 60
    assert all(job.joinpath("results", name).stat().st_mtime_ns == mtime for name, mtime in first.items())
    decrypt_job(offline, job, tmp_path / "out.parquet")
    table = read_predictions(tmp_path / "out.parquet")
    assert list(table["row"]) == list(range(len(rows)))
    assert (table["prediction"].to_numpy() == model.predict(rows)).all()


def test_damaged_and_foreign_inputs_are_errors_never_predictions(cancer, offline, tmp_path):
    build, model, rows = cancer
    np.save(tmp_path / "rows.npy", rows[:5000])
    job = tmp_path / "job"
    encrypt_dataset(offline, "bulk", tmp_path / "rows.npy", job, rows_per_shard=1000)
    shard = job / "shards" / "00002.json"
    body = bytearray(shard.read_bytes())
    body[-20] ^= 1
    shard.write_bytes(bytes(body))
    with pytest.raises(BatchError, match=r"1 of 5 shards .* not scored \(00002: .*does not match its hash"):
        score_job(build, job, workers=1)
    assert sorted(p.stem for p in (job / "results").glob("*.json")) == ["00000", "00001", "00003", "00004"]
    with pytest.raises(BatchError, match=r"1 of 5 shards .* no result yet \(00002\)"):
        decrypt_job(offline, job, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()

    stranger = Client.offline(describe_build(build), keyring=Keyring(tmp_path / "other-keys"))
    (job / "results" / "00002.json").write_text((job / "results" / "00001.json").read_text())  # a result moved
    with pytest.raises(BatchError, match="encrypted with key id"):
        decrypt_job(stranger, job, tmp_path / "out.parquet")
    with pytest.raises(BatchError, match="shard 00002 is not for this job's shard"):
        decrypt_job(offline, job, tmp_path / "out.parquet")

    manifest = json.loads((job / "manifest.json").read_text())
    manifest["shards"][3]["start"] += 1
    (job / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BatchError, match="not a valid SEI batch manifest: .*expected a start of 3000"):
        score_job(build, job, workers=1)


def test_a_job_for_another_version_of_the_model_is_refused(cancer, tmp_path):
    """Shards encrypted for a retrained model (other weights, so other scales) are not scored by the old build."""
    build, model, rows = cancer
    X, y = load_breast_cancer(return_X_y=True)
    retrained = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000)).fit(X, y)
    joblib.dump(retrained, tmp_path / "cancer.joblib")
    np.save(tmp_path / "calibration.npy", X)
    config = yaml.safe_load((build.parent / "cancer.yaml").read_text())
    (tmp_path / "cancer.yaml").write_text(yaml.safe_dump(config))
    new_build = Deployment.from_file(tmp_path / "cancer.yaml").build(tmp_path / "build").path
    client = Client.offline(describe_build(new_build), keyring=Keyring(tmp_path / "keys"))
    np.save(tmp_path / "rows.npy", rows[:10])
    encrypt_dataset(client, "bulk", tmp_path / "rows.npy", tmp_path / "job")
    with pytest.raises(BatchError, match="another version of model 'bulk'"):
        score_job(build, tmp_path / "job", workers=1)
    assert score_job(new_build, tmp_path / "job", workers=1).scored == 1


def test_inputs_are_read_in_chunks_and_checked(cancer, offline, tmp_path):
    build, model, rows = cancer
    table = pa.table({"id": np.arange(100), **{f"f{i}": rows[:100, i] for i in range(30)}, "note": ["x"] * 100})
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=7)
    columns = [f"f{i}" for i in range(30)]
    report = encrypt_dataset(offline, "bulk", tmp_path / "rows.parquet", tmp_path / "job", columns=columns, rows_per_shard=40)
    assert report.shards == 3
    with pytest.raises(BatchError, match="takes 30 features; .* has 32 columns"):
        encrypt_dataset(offline, "bulk", tmp_path / "rows.parquet", tmp_path / "j2", columns=["id", *columns, "id"][:32])
    with pytest.raises(InvalidRequest, match="column 'note' must hold numbers"):
        encrypt_dataset(offline, "bulk", tmp_path / "rows.parquet", tmp_path / "j3", columns=[*columns[:29], "note"])
    with pytest.raises(InvalidRequest, match="has no column 'nope'"):
        encrypt_dataset(offline, "bulk", tmp_path / "rows.parquet", tmp_path / "j4", columns=["nope"])
    with pytest.raises(BatchError, match="already holds a batch job"):
        encrypt_dataset(offline, "bulk", tmp_path / "rows.parquet", tmp_path / "job", columns=columns)
    (tmp_path / "rows.txt").write_text("1,2\n")
    with pytest.raises(InvalidRequest, match="use a .csv"):
        encrypt_dataset(offline, "bulk", tmp_path / "rows.txt", tmp_path / "j5")
    np.save(tmp_path / "flat.npy", rows[:, 0])
    with pytest.raises(InvalidRequest, match="2-D"):
        encrypt_dataset(offline, "bulk", tmp_path / "flat.npy", tmp_path / "j6")


def test_the_cli_runs_the_three_steps(cancer, tmp_path):
    build, model, rows = cancer
    np.save(tmp_path / "rows.npy", rows[:5000])
    env = {**os.environ, "SEI_HOME": str(tmp_path / "home")}

    def sei(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([SEI, "batch", *args], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    assert sei("describe", str(build), "--out", str(tmp_path / "service.json")).returncode == 0
    done = sei("encrypt", "--describe", str(tmp_path / "service.json"), "--model", "bulk",
               "--input", str(tmp_path / "rows.npy"), "--out", str(tmp_path / "job"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "5000 rows in 1 shard," in done.stdout
    manifest = JobManifest.load(JobStore(tmp_path / "job"))  # whole 4096-row batches, shards of about 8 MB
    shard_bytes = manifest.shards[0].bytes / 2 * manifest.rows_per_shard / 4096  # 5000 rows: two batches
    assert manifest.rows_per_shard % 4096 == 0 and 4 * 2**20 < shard_bytes <= 8 * 2**20, manifest.rows_per_shard
    done = sei("score", str(build), str(tmp_path / "job"), "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "1 scored, 0 already scored, of 1 shards" in done.stdout
    done = sei("decrypt", str(tmp_path / "job"), "--out", str(tmp_path / "out.csv"))
    assert done.returncode == 0, done.stderr
    table = read_predictions(tmp_path / "out.csv")
    assert (table["prediction"].to_numpy() == model.predict(rows[:5000])).all()
    missing = sei("decrypt", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.csv"))
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "does not exist" in missing.stderr
    both = sei("encrypt", "--model", "bulk", "--input", "x.npy", "--out", "j")
    assert both.returncode == 2 and "exactly one of --endpoint and --describe" in both.stderr


def test_a_job_in_a_blob_container(cancer, offline, azurite, monkeypatch, tmp_path):
    """The same three steps with the job folder in Azure Storage (Azurite), through fsspec's adlfs; the
    credentials come from the environment of every process, Dask workers included, never the job."""
    from azure.storage.blob import BlobServiceClient

    build, model, rows = cancer
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container("jobs")
    np.save(tmp_path / "rows.npy", rows[:5000])
    report = encrypt_dataset(offline, "bulk", tmp_path / "rows.npy", "az://jobs/june", rows_per_shard=2500)
    assert report.shards == 2
    assert score_job(build, "az://jobs/june", workers=2).scored == 2
    decrypt_job(offline, "az://jobs/june", tmp_path / "out.parquet")
    table = read_predictions(tmp_path / "out.parquet")
    assert (table["prediction"].to_numpy() == model.predict(rows[:5000])).all()
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("jobs")
    names = {blob.name for blob in container.list_blobs()}
    key_id = offline.session("bulk").key_id
    parts = [f"{folder}/0000{i}.json" for folder in ("shards", "results") for i in (0, 1)]
    assert names == {f"june/{name}" for name in [f"keys/{key_id}.pub", "manifest.json", *parts]}
