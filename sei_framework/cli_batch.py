"""`sei batch`: encrypt a data set into shards, score them on Dask, decrypt the predictions in row order."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .cli_common import csv_header_option, endpoint_with_headers, handle_errors, load_plugins
from .errors import BatchError

if TYPE_CHECKING:
    from tqdm import tqdm

    from .client import Client

__all__ = ["batch"]


def _parse_columns(columns: str | None) -> list[str] | None:
    return [c.strip() for c in columns.split(",") if c.strip()] if columns else None


def _bar(total: int | None, what: str) -> tqdm[NoReturn]:
    from tqdm import tqdm

    return tqdm(total=total, unit="row", desc=what, file=sys.stderr, unit_scale=True)


def _described(description_path: str) -> dict[str, Any]:
    """A describe answer from a file (`sei batch describe`)."""
    try:
        description = json.loads(Path(description_path).read_text())
    except (OSError, ValueError) as exc:
        raise BatchError(f"--describe {description_path}: not a readable describe answer ({exc})") from None
    if not isinstance(description, dict) or not isinstance(description.get("models"), dict):
        raise BatchError(f"--describe {description_path}: has no 'models'; write it with `sei batch describe BUILD`")
    return description


def _job_described(job: str) -> dict[str, Any]:
    """The describe answer a job's manifest carries."""
    from .batch import JobManifest, JobStore

    manifest = JobManifest.load(JobStore(job))
    return {"service": manifest.service, "models": {manifest.model: manifest.description}}


def _offline_client(description: dict[str, Any]) -> Client:
    """A client that needs no service, from a describe answer."""
    from .client import Client

    return Client.offline(description, plugins=load_plugins())


@click.group()
def batch() -> None:
    """Batch jobs between a data owner and a model owner (docs/batch.md)."""


@batch.command("describe")
@click.argument("build_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@handle_errors
def describe(build_dir: str, out: str | None) -> None:
    """Model owner: what a data owner needs to encrypt for BUILD_DIR's models (no weights, no keys)."""
    from .batch import describe_build

    text = json.dumps(describe_build(build_dir), indent=1)
    if out:
        Path(out).write_text(text + "\n")
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text)


@batch.command("encrypt")
@click.option("--model", required=True, help="Model name in the service.")
@click.option("--input", "source", required=True, help="Rows: a .csv, .parquet or .npy file (path or fsspec URL).")
@csv_header_option
@click.option("--out", required=True, help="Job folder to write (path, or az://container/job with AZURE_STORAGE_* set).")
@click.option("--endpoint", help="The service's scoring URI: its describe answer gives the parameters.")
@click.option("--describe", "description_path", type=click.Path(dir_okay=False), help="Or a describe answer as a file.")
@click.option("--header", "headers", multiple=True, help="Extra HTTP header 'Name: value' for --endpoint.")
@click.option("--token-env", help="Bearer token for --endpoint, from this environment variable.")
@click.option("--rows-per-shard", type=click.IntRange(min=1), help="Rows per shard (default: whole requests' worth making shards of about 8 MB).")
@click.option("--columns", help="Comma-separated columns of a CSV or Parquet file to read (default: all; by the model's feature names where it has them).")
@click.option("--overwrite", is_flag=True, help="Replace a job already in --out.")
@handle_errors
def encrypt(
    model: str, source: str, csv_header: bool | None, out: str, endpoint: str | None, description_path: str | None, headers: tuple[str, ...],
    token_env: str | None, rows_per_shard: int | None, columns: str | None, overwrite: bool,
) -> None:  # fmt: skip
    """Data owner: encrypt every row of --input into shards of a job folder, with its manifest."""
    from .batch import encrypt_dataset
    from .client import Client

    if endpoint and not description_path:
        client = Client(endpoint_with_headers(endpoint, headers, token_env), plugins=load_plugins())
    elif description_path and not endpoint:
        client = _offline_client(_described(description_path))
    else:
        raise click.UsageError("name the service with exactly one of --endpoint and --describe")
    with _bar(None, "encrypt") as bar:
        report = encrypt_dataset(
            client, model, source, out, rows_per_shard=rows_per_shard, columns=_parse_columns(columns),
            progress=bar.update, overwrite=overwrite, header=csv_header,
        )  # fmt: skip
    click.echo(
        f"job {report.job}: {report.rows} rows in {report.shards} shard{'s' if report.shards != 1 else ''}, "
        f"{report.bytes_per_row:.0f} bytes/row, "
        f"{report.rows / report.seconds:.0f} rows/s, columns {report.columns}; give {out} to the model owner"
    )


@batch.command("score")
@click.argument("build_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("job")
@click.option("--results", help="Write results here instead of beside the shards (a folder or fsspec URL).")
@click.option("--scheduler", help="Address of an existing Dask scheduler (default: a LocalCluster on this machine).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="LocalCluster worker processes.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Threads per LocalCluster worker.")
@click.option("--report", type=click.Path(dir_okay=False), help="Also write the run's figures here as JSON.")
@click.option("--tls-ca-file", type=click.Path(exists=True, dir_okay=False), help="CA certificate of the Dask cluster's TLS.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="This client's TLS certificate (PEM; may hold the key).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="This client's TLS private key (PEM).")
@click.option("--allow-insecure-scheduler", is_flag=True,
              help="Accept a plain tcp:// --scheduler off loopback: whoever reaches it runs code on the workers.")  # fmt: skip
@handle_errors
def score(
    build_dir: str, job: str, results: str | None, scheduler: str | None, workers: int, threads: int, report: str | None,
    tls_ca_file: str | None, tls_cert: str | None, tls_key: str | None, allow_insecure_scheduler: bool,
) -> None:  # fmt: skip
    """Model owner: score every shard of JOB with BUILD_DIR's model on Dask; shards already scored are skipped."""
    from .batch import JobManifest, JobStore, score_job

    security = None
    if tls_ca_file or tls_cert or tls_key:
        if not (tls_ca_file and tls_cert):
            raise click.UsageError("TLS needs --tls-ca-file and --tls-cert (and --tls-key unless the cert file holds it)")
        from .batch.cluster import tls_security

        security = tls_security(tls_ca_file, tls_cert, tls_key, every_role=scheduler is None)
    if scheduler is not None:
        from .batch.cluster import check_scheduler

        check_scheduler(scheduler, security, allow_insecure_scheduler)  # before any progress bar
    total = JobManifest.load(JobStore(job)).n_rows
    with _bar(total, "score") as bar:
        done = score_job(
            build_dir, job, results=results, scheduler=scheduler, workers=workers, threads_per_worker=threads,
            progress=bar.update, security=security, allow_insecure_scheduler=allow_insecure_scheduler,
        )  # fmt: skip
    if report:
        Path(report).write_text(json.dumps(done.to_json(), indent=1) + "\n")
    click.echo(
        f"job {done.job}: {done.scored} scored, {done.skipped} already scored, of {done.shards} shards, on "
        f"{done.workers} workers in {done.seconds:.1f} s ({done.scoring_seconds:.1f} s after the workers loaded the build)"
    )


@batch.command("decrypt")
@click.argument("job")
@click.option("--out", required=True, help="Predictions file: .csv or .parquet (rows in input order, column 'row').")
@click.option("--results", help="Where the model owner wrote the results, if not beside the shards.")
@click.option("--describe", "description_path", type=click.Path(dir_okay=False), help="Describe answer (default: the job's own).")
@handle_errors
def decrypt(job: str, out: str, results: str | None, description_path: str | None) -> None:
    """Data owner: decrypt JOB's results into --out, every row exactly once, in input order."""
    from .batch import JobManifest, JobStore, decrypt_job

    total = JobManifest.load(JobStore(job)).n_rows
    client = _offline_client(_described(description_path) if description_path else _job_described(job))
    with _bar(total, "decrypt") as bar:
        report = decrypt_job(client, job, out, results=results, progress=bar.update)
    click.echo(f"wrote {report.rows} predictions to {out} (sha256 {report.sha256}); summary: {report.summary}")
