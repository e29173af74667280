"""The `sei` command. Errors become one line on stderr and an exit code, here and nowhere else."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
from .cli_batch import batch
from .cli_common import csv_header_option, endpoint_with_headers, handle_errors, load_plugins
from .deployment import Deployment
from .columns import BY_POSITION, columns_label
from .rows import read_rows

__all__ = ["main", "cli"]


def _deployment(config: str) -> Deployment:
    return Deployment.from_file(config, plugins=load_plugins())


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what SEI does (never keys or data).")
def cli(verbose: bool) -> None:
    """SEI: serve predictions on data the service never sees."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@handle_errors
def validate(config: str) -> None:
    """Check CONFIG: the core schema, then each named plugin's options."""
    resolved = _deployment(config).validate()
    models = ", ".join(f"{m.config.name} ({m.adapter.name})" for m in resolved.models)
    click.echo(f"{config}: ok; models: {models}; keys: {resolved.transport.name}; target: {resolved.target.name}")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Build folder to write.")
@handle_errors
def build(config: str, out: str) -> None:
    """Write a build folder: score.py, resolved config, model files, requirements."""
    result = _deployment(config).build(out)
    click.echo(f"built {result.name} into {result.path}")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Build folder (default $SEI_HOME/builds/NAME).")
@click.option("--dry-run", "dry_run", type=click.Path(file_okay=False), help="Write what would be submitted into this folder; deploy nothing.")
@handle_errors
def deploy(config: str, out: str | None, dry_run: str | None) -> None:
    """Build CONFIG and deploy it with its target; prints the scoring URI."""
    deployment = _deployment(config)
    if dry_run:
        for path in deployment.dry_run(dry_run):
            click.echo(f"wrote {path}")
        return
    click.echo(deployment.deploy(out).scoring_uri)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@handle_errors
def delete(config: str) -> None:
    """Stop and remove CONFIG's deployment."""
    deployment = _deployment(config)
    found = deployment.delete()
    click.echo(f"deleted {deployment.name}" if found else f"{deployment.name} was not deployed")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@handle_errors
def status(config: str, as_json: bool) -> None:
    """Show what CONFIG's deploy target knows of its deployment: state, scoring URI, log (no secrets)."""
    deployment = _deployment(config)
    found = deployment.status()
    facts = {"name": deployment.name, "target": deployment.config.deploy.target, "state": found.state}
    facts |= {"scoring_uri": found.scoring_uri} if found.scoring_uri else {}
    facts |= found.details
    if as_json:
        click.echo(json.dumps(facts))
        return
    for key, value in facts.items():
        click.echo(f"{key}: {value}")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Build folder (default $SEI_HOME/builds/NAME).")
@handle_errors
def serve(config: str, out: str | None) -> None:
    """Build CONFIG and serve it in the foreground."""
    _deployment(config).serve(out)


@cli.command()
@click.option("--endpoint", required=True, help="Scoring URI of the service.")
@click.option("--model", "model", required=True, help="Model name in the service.")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Rows: a .csv, .parquet or .npy file (docs/cli.md: input files).")  # fmt: skip
@csv_header_option
@click.option("--header", "headers", multiple=True, help="Extra HTTP header 'Name: value' (e.g. authorization).")
@click.option("--token-env", help="Send 'Authorization: Bearer' with the token in this environment variable (kept off the command line).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--config", "config", type=click.Path(dir_okay=False),
    help="Publish keys with this deployment config's key_transport (needed for azure-blob and local-dir).",
)  # fmt: skip
@click.option(
    "--trust-service-transport", is_flag=True,
    help="Use the key transport as the service describes it (its storage account, its folder): trusted services only.",
)  # fmt: skip
@click.option(
    "--allow-insecure-http", is_flag=True,
    help="Send the token and headers over plain http to a host beyond this machine (readable on the way).",
)  # fmt: skip
@handle_errors
def predict(
    endpoint: str,
    model: str,
    input_path: str,
    csv_header: bool | None,
    headers: tuple[str, ...],
    token_env: str | None,
    as_json: bool,
    config: str | None,
    trust_service_transport: bool,
    allow_insecure_http: bool,
) -> None:
    """Encrypt INPUT rows, score them on the service, decrypt and print the predictions.

    Keys travel through the key transport of --config, or through `inline` if the service uses
    it; a transport with credentials or files is never configured by the service unless
    --trust-service-transport.
    """
    from tqdm import tqdm

    from .client import Client

    if config and trust_service_transport:
        raise click.UsageError("--config and --trust-service-transport exclude each other: CONFIG says where keys go")
    plugins = load_plugins()
    transport = Deployment.from_file(config, plugins=plugins).key_transport() if config else None
    client = Client(
        endpoint_with_headers(endpoint, headers, token_env),
        plugins=plugins,
        transport=transport,
        trust_service_transport=trust_service_transport,
        allow_insecure_http=allow_insecure_http,
    )
    # before any request: a bad file sends nothing. NaN (a missing value) is read: a tree model routes it, and the
    # client refuses it for any other model once the description names the adapter, before any row is sent
    rows = read_rows(Path(input_path), header=csv_header, allow_nan=True)
    with tqdm(total=len(rows.values), unit="row", disable=len(rows.values) < 2, file=sys.stderr) as bar:
        result = client.predict(model, rows, progress=bar.update)
    if as_json:
        out = {"scores": result.scores.tolist(), "predictions": result.predictions.tolist()}
        if result.probabilities is not None:
            out["probabilities"] = result.probabilities.tolist()
        out["columns"] = result.columns if result.columns is not None else BY_POSITION
        click.echo(json.dumps(out))
        return
    click.echo(f"columns {columns_label(result.columns)}", err=True)
    for i, (scores, label) in enumerate(zip(result.scores, result.predictions, strict=True)):
        shown = " ".join(f"{s:+.4f}" for s in scores)
        click.echo(f"{i}\tprediction={label}\tscores=[{shown}]")


@cli.command("bench")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Rows (.csv, .parquet or .npy).")
@csv_header_option
@click.option("--out", type=click.Path(file_okay=False), default="bench/results", show_default=True)
@click.option("--repeats", default=20, show_default=True, help="Single-row predictions timed in process.")
@click.option("--e2e-requests", default=20, show_default=True, help="Requests timed through the config's deploy target (0: none).")
@click.option("--bulk-seconds", default=30.0, show_default=True, help="Server time budget per model for bulk scoring.")
@handle_errors
def bench(config: str, input_path: str, csv_header: bool | None, out: str, repeats: int, e2e_requests: int, bulk_seconds: float) -> None:
    """Measure every model of CONFIG side by side; writes bench.json and bench.png into OUT."""
    from .bench import format_table, run_bench

    figures = run_bench(
        _deployment(config), read_rows(Path(input_path), header=csv_header).values, out,
        repeats=repeats, e2e_requests=e2e_requests, bulk_budget_s=bulk_seconds,
    )  # fmt: skip
    click.echo(format_table(figures))
    click.echo(f"wrote {Path(out) / 'bench.json'} and {Path(out) / 'bench.png'}")


@cli.command("plugins")
@handle_errors
def list_plugins() -> None:
    """List every registered plugin, where it comes from and what it provides."""
    for info in load_plugins().plugin_infos():
        source = f"{info.distribution} {info.version}" if info.distribution else "registered directly"
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.provides.items()) or "nothing"
        click.echo(f"{info.name}  ({source})  {provides}")


cli.add_command(batch)


def main() -> None:
    cli(prog_name="sei")
