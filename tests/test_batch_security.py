"""Batch scoring's cluster and files under attack: TLS or loopback only, no credentials in tasks, bounded
reads, a result header that decides a skip, and job files never reached through a symbolic link."""

from __future__ import annotations

import datetime
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from distributed import Client as DaskClient
from distributed import LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from azurite import ACCOUNT_KEY, azurite_fixture  # noqa: F401  (the azurite fixture)
from batch_fixtures import cancer_fixture, offline_fixture, read_predictions  # noqa: F401  (fixtures)

from sei_framework import BatchError, Client
from sei_framework.batch import JobManifest, JobStore, decrypt_job, describe_build, encrypt_dataset, score_job
from sei_framework.batch.cluster import check_scheduler, tls_security
from sei_framework.batch.scoring import MAX_RESULT_HEADER_BYTES, result_header
from sei_framework.keys import Keyring

SEI = str(Path(sys.executable).parent / "sei")


def small_job(offline, rows: np.ndarray, job: Path, shards: int = 2, **options) -> Path:
    np.save(job.parent / f"{job.name}.npy", rows[: 100 * shards])
    encrypt_dataset(offline, "bulk", job.parent / f"{job.name}.npy", job, rows_per_shard=100, **options)
    return job


# --- who may reach the cluster ----------------------------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_tls(folder: Path, tag: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and one certificate it signs (for every role of a test cluster): ca, cert, key files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name(f"{tag} CA")).issuer_name(_name(f"{tag} CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name(f"{tag} dask")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / f"{tag}-ca.pem", folder / f"{tag}-cert.pem", folder / f"{tag}-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.mark.parametrize("address", ["tcp://192.0.2.7:8786", "192.0.2.7:8786", "tcp://dask.example.org:8786",
                                     "ws://[2001:db8::1]:8786"])  # fmt: skip
def test_a_plain_scheduler_off_loopback_is_refused_and_says_why(cancer, offline, tmp_path, address):
    build, model, rows = cancer
    job = small_job(offline, rows, tmp_path / "job", shards=1)
    with pytest.raises(BatchError, match=r"refusing the plain .* tasks are pickles, .* reads the model .*--allow-insecure-scheduler"):
        score_job(build, job, scheduler=address)
    assert not (job / "results").exists()


def test_the_cli_refuses_it_too(cancer, offline, tmp_path):
    build, model, rows = cancer
    job = small_job(offline, rows, tmp_path / "job", shards=1)
    done = subprocess.run([SEI, "batch", "score", str(build), str(job), "--scheduler", "tcp://192.0.2.7:8786"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("error: refusing the plain tcp:// scheduler"), done.stderr
    assert "--allow-insecure-scheduler" in done.stderr


def test_which_schedulers_pass_the_check(tmp_path):
    ca, cert, key = make_tls(tmp_path, "check")
    for address in ("tcp://127.0.0.1:8786", "localhost:8786", "tcp://[::1]:8786", "inproc://x/1/2"):
        check_scheduler(address, None)
    check_scheduler("tcp://192.0.2.7:8786", None, allow_insecure=True)  # the explicit opt-in
    check_scheduler("tls://192.0.2.7:8786", tls_security(ca, cert, key))
    with pytest.raises(BatchError, match="speaks TLS: give the cluster's CA"):
        check_scheduler("tls://192.0.2.7:8786", None)
    with pytest.raises(BatchError, match="plain tcp://: use tls://"):
        check_scheduler("tcp://127.0.0.1:8786", tls_security(ca, cert, key))
    with pytest.raises(BatchError, match="does not exist"):
        tls_security(ca, tmp_path / "missing.pem")


def test_a_job_scored_end_to_end_on_a_tls_cluster(cancer, offline, tmp_path):
    """A real LocalCluster that speaks only TLS with its own CA: `sei batch score --tls-*` scores the job;
    a client without certificates, or with a certificate of another CA, gets nothing scored."""
    build, model, rows = cancer
    job = small_job(offline, rows, tmp_path / "job", shards=3)
    ca, cert, key = make_tls(tmp_path, "cluster")
    _, other_cert, other_key = make_tls(tmp_path, "stranger")
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                           protocol="tls://", host="127.0.0.1", security=tls_security(ca, cert, key, every_role=True))  # fmt: skip
    try:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        with pytest.raises(BatchError, match="speaks TLS"):
            score_job(build, job, scheduler=address)
        with dask.config.set({"distributed.comm.timeouts.connect": "5s"}), pytest.raises(OSError):
            score_job(build, job, scheduler=address, security=tls_security(ca, other_cert, other_key))
        assert not (job / "results").exists()
        done = subprocess.run(
            [SEI, "batch", "score", str(build), str(job), "--scheduler", address, "--tls-ca-file", str(ca),
             "--tls-cert", str(cert), "--tls-key", str(key), "--report", str(tmp_path / "report.json")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        cluster.close()
    assert done.returncode == 0, done.stderr
    assert "3 scored, 0 already scored, of 3 shards" in done.stdout
    assert json.loads((tmp_path / "report.json").read_text())["scheduler"] == address
    decrypt_job(offline, job, tmp_path / "out.parquet")
    assert (read_predictions(tmp_path / "out.parquet")["prediction"].to_numpy() == model.predict(rows[:300])).all()


def test_the_local_cluster_speaks_tls(cancer, offline, tmp_path):
    """Without --scheduler the LocalCluster runs on loopback with a throwaway certificate: another user of
    this machine cannot submit work to it."""
    build, model, rows = cancer
    report = score_job(build, small_job(offline, rows, tmp_path / "job", shards=1), workers=1)
    assert report.scored == 1 and report.scheduler.startswith("tls://127.0.0.1:"), report.scheduler


# --- credentials never in a task ----------------------------------------------------------------------------


class TaskRecorder(SchedulerPlugin):
    """Keeps every task's run spec as the scheduler would send it to a worker (pickled)."""

    def __init__(self) -> None:
        self.payloads: dict[str, bytes] = {}

    def update_graph(self, scheduler, *, keys, **kwargs) -> None:
        import cloudpickle

        for key in keys:
            self.payloads[str(key)] = cloudpickle.dumps(scheduler.tasks[key].run_spec)


def test_storage_credentials_never_travel_in_a_task(cancer, offline, azurite, monkeypatch, tmp_path):
    """The job folder in Azure Storage (Azurite) with its credentials passed as storage options, none in any
    worker's environment: the workers get them once from a worker plugin, and no task carries them."""
    from azure.storage.blob import BlobServiceClient

    build, model, rows = cancer
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    options = {"connection_string": azurite.connection_string}
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container("secure")
    np.save(tmp_path / "rows.npy", rows[:300])
    encrypt_dataset(offline, "bulk", tmp_path / "rows.npy", "az://secure/job", rows_per_shard=100, storage_options=options)
    assert ACCOUNT_KEY not in repr(JobStore("az://secure/job", options))
    assert ACCOUNT_KEY.encode() not in pickle.dumps(JobStore("az://secure/job", options))

    recorder = TaskRecorder()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        cluster.scheduler.add_plugin(recorder, name="task-recorder")
        report = score_job(build, "az://secure/job", scheduler=cluster.scheduler_address, storage_options=options)
        with DaskClient(cluster, set_as_default=False) as dask_client:  # the run over, no worker keeps them
            kept = dask_client.run(lambda: len(__import__("sei_framework.batch.storage").batch.storage._OPTIONS))
        assert set(kept.values()) == {0} and len(kept) == 2, kept
        assert not [name for name in cluster.scheduler.worker_plugins if name.startswith("sei-storage-")]
    finally:
        cluster.close()
    assert report.scored == 3 and not report.failed
    shard_tasks = {key: payload for key, payload in recorder.payloads.items() if key.startswith("sei-")}
    assert len(shard_tasks) == 3, sorted(recorder.payloads)
    for key, payload in recorder.payloads.items():
        assert ACCOUNT_KEY.encode() not in payload and b"devstoreaccount1" not in payload, key
    decrypt_job(offline, "az://secure/job", tmp_path / "out.parquet", storage_options=options)
    assert (read_predictions(tmp_path / "out.parquet")["prediction"].to_numpy() == model.predict(rows[:300])).all()


# --- bounded reads and the result header ---------------------------------------------------------------


def test_a_shard_over_the_builds_request_limit_is_refused_unread(cancer, offline, tmp_path):
    """The manifest may declare any size; the scorer reads a shard whole, so no more than the build's
    limits.max_request_mb, as a request (the old scorer read whatever the manifest declared)."""
    build, model, rows = cancer
    job = small_job(offline, rows, tmp_path / "job", shards=2)
    manifest = json.loads((job / "manifest.json").read_text())
    manifest["shards"][1]["bytes"] = 65 * 2**20  # over the default limits.max_request_mb of 64
    (job / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BatchError, match=r"1 of 2 shards .*\(00001: shard 00001 .* over the 67108864 this build scores "
                                         r"at once \(limits.max_request_mb"):  # fmt: skip
        score_job(build, job, workers=1)
    assert sorted(p.name for p in (job / "results").iterdir()) == ["00000.json"]


def test_encrypt_fits_shards_under_the_services_request_limit(cancer, tmp_path):
    """The data owner's side of the same bound: default shards fit the describe answer's max_request_bytes,
    and a shard over it is refused at encryption, naming the limit."""
    build, model, rows = cancer
    description = describe_build(build)
    assert description["limits"]["max_request_bytes"] == 64 * 2**20  # the build's limits.max_request_mb
    description["limits"]["max_request_bytes"] = 3 * 2**20
    client = Client.offline(description, keyring=Keyring(tmp_path / "keys"))
    np.save(tmp_path / "rows.npy", rows)
    encrypt_dataset(client, "bulk", tmp_path / "rows.npy", tmp_path / "job")
    shards = JobManifest.load(JobStore(tmp_path / "job")).shards
    assert len(shards) > 1 and all(shard.bytes <= 3 * 2**20 for shard in shards), [s.bytes for s in shards]
    with pytest.raises(BatchError, match=r"shard 00000 is \d+ bytes; the service scores shards of at most 3145728 bytes"):
        encrypt_dataset(client, "bulk", tmp_path / "rows.npy", tmp_path / "big", rows_per_shard=9000)


def test_a_resumed_run_decides_from_the_result_header_alone(cancer, offline, tmp_path):
    """A finished result is skipped from its header line and its size, without the result being read or
    parsed; a header that names another shard, or a size that differs, is rescored."""
    build, model, rows = cancer
    job = small_job(offline, rows, tmp_path / "job", shards=3)
    assert score_job(build, job, workers=1).scored == 3
    results = job / "results"
    originals = {p.name: p.read_bytes() for p in results.iterdir()}
    head, body = originals["00000.json"].split(b"\n", 1)
    header = json.loads(head)
    assert len(head) < MAX_RESULT_HEADER_BYTES and header["result_bytes"] == len(body)
    assert header["format"] == "sei-batch-result/2"

    # 00000: its result replaced by 64 MiB of zeros that the header declares: a parse would fail, a skip reads none of it
    big = 64 * 2**20
    line = json.dumps({**header, "result_bytes": big}, separators=(",", ":")).encode() + b"\n"
    with open(results / "00000.json", "wb") as handle:
        handle.write(line)
        handle.truncate(len(line) + big)
    # 00001: the header of 00002's result; 00002: one byte short
    (results / "00001.json").write_bytes(originals["00002.json"])
    (results / "00002.json").write_bytes(originals["00002.json"][:-1])
    mtime = (results / "00000.json").stat().st_mtime_ns
    report = score_job(build, job, workers=1)
    assert (report.scored, report.skipped) == (2, 1)
    assert (results / "00000.json").stat().st_mtime_ns == mtime
    manifest = JobManifest.load(JobStore(job))
    for shard in manifest.shards[1:]:  # rescored: a result for exactly its own shard again
        assert result_header(JobStore(job), manifest, shard) is not None
        assert (results / f"{shard.id}.json").read_bytes() != originals["00002.json"][: -1 if shard.id == "00002" else None]

    # decrypt reads exactly what the header declares and checks its hash: zeros are damage, never a prediction
    with pytest.raises(BatchError, match=r"00000.json is damaged .* delete it and run `sei batch score` again"):
        decrypt_job(offline, job, tmp_path / "out.parquet")
    (results / "00000.json").write_bytes(originals["00000.json"])
    decrypt_job(offline, job, tmp_path / "out.parquet")
    assert (read_predictions(tmp_path / "out.parquet")["prediction"].to_numpy() == model.predict(rows[:300])).all()


def test_a_header_declaring_more_than_a_result_may_be_is_never_read(cancer, offline, tmp_path):
    build, model, rows = cancer
    job = small_job(offline, rows, tmp_path / "job", shards=1)
    assert score_job(build, job, workers=1).scored == 1
    path = job / "results" / "00000.json"
    head = path.read_bytes().split(b"\n", 1)[0]
    huge = 5 * 2**30  # a sparse file: no disk, and nothing of it is read
    line = json.dumps({**json.loads(head), "result_bytes": huge}).encode() + b"\n"
    with open(path, "wb") as handle:
        handle.write(line)
        handle.truncate(len(line) + huge)
    manifest = JobManifest.load(JobStore(job))
    assert result_header(JobStore(job), manifest, manifest.shards[0]) is None
    with pytest.raises(BatchError, match="not for this job's shard"):
        decrypt_job(offline, job, tmp_path / "out.parquet")
    assert score_job(build, job, workers=1).scored == 1  # rescored
    decrypt_job(offline, job, tmp_path / "out.parquet")


# --- no symbolic link is followed in a job folder ------------------------------------------------------------


def test_symbolic_links_planted_in_a_job_folder_are_refused(cancer, offline, tmp_path):
    """A link at a shard's name, or at the shards/ or results/ folder, is never followed: the scorer opens
    every part of the path with O_NOFOLLOW, so a link swapped in after a check is refused as well."""
    build, model, rows = cancer
    job = small_job(offline, rows, tmp_path / "job", shards=3)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(job / "shards", elsewhere / "shards")
    (elsewhere / "results").mkdir()

    (job / "shards" / "00000.json").unlink()  # a link at a shard's own name, to the same bytes
    (job / "shards" / "00000.json").symlink_to(elsewhere / "shards" / "00000.json")
    (job / "results").symlink_to(elsewhere / "results", target_is_directory=True)  # results would land elsewhere
    with pytest.raises(BatchError, match=r"3 of 3 shards") as refused:
        score_job(build, job, workers=1)
    assert "00000: " in str(refused.value) and "symbolic link" in str(refused.value)
    assert str(refused.value).count("a folder on its way is a symbolic link") >= 2
    assert list((elsewhere / "results").iterdir()) == []

    (job / "results").unlink()
    shutil.rmtree(job / "shards")
    (job / "shards").symlink_to(elsewhere / "shards", target_is_directory=True)  # every shard through a linked folder
    with pytest.raises(BatchError, match=r"3 of 3 shards .*a folder on its way is a symbolic link"):
        score_job(build, job, workers=1)
    assert not (job / "results").exists()
