"""The `sei` command. Errors become one line on stderr and an exit code, here and nowhere else."""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
import numpy as np

from .base import Endpoint
from .deployment import Deployment
from .errors import ConfigError, InvalidRequest, SeiError
from .plugins import SeiPlugins, get_plugin_manager

__all__ = ["main", "cli"]

EXIT_CODES: dict[type[SeiError], int] = {ConfigError: 2, InvalidRequest: 3}
P = ParamSpec("P")
R = TypeVar("R")


def _plugins() -> SeiPlugins:
    """Load every plugin; a broken one is a warning here (it is fatal only in a service)."""
    plugins = get_plugin_manager().collect()
    for error in plugins.load_errors:
        click.secho(f"warning: {error.message}", fg="yellow", err=True)
    return plugins


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SeiError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            code = next((c for t, c in EXIT_CODES.items() if isinstance(exc, t)), 1)
            sys.exit(code)

    return wrapper


def _deployment(config: str) -> Deployment:
    return Deployment.from_file(config, plugins=_plugins())


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
@click.option("--out", type=click.Path(file_okay=False), help="Build folder (default $SEI_HOME/builds/NAME).")
@handle_errors
def serve(config: str, out: str | None) -> None:
    """Build CONFIG and serve it in the foreground."""
    _deployment(config).serve(out)


def read_rows(path: Path) -> np.ndarray:
    """Rows from a .npy or .csv file (a header line is skipped when it is not numeric)."""
    if path.suffix == ".npy":
        try:
            rows = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise InvalidRequest(f"{path}: not a readable .npy array ({exc})") from None
    elif path.suffix == ".csv":
        with open(path, newline="") as handle:
            lines = [line for line in csv.reader(handle) if line]
        try:
            rows = np.array(lines, dtype=np.float64)
        except ValueError:
            try:
                rows = np.array(lines[1:], dtype=np.float64)
            except ValueError:
                raise InvalidRequest(f"{path}: every value must be a number") from None
    else:
        raise InvalidRequest(f"{path}: input must be a .npy or .csv file")
    rows = np.atleast_2d(rows)
    if rows.ndim != 2:
        raise InvalidRequest(f"{path}: expected one row or a table of rows, got shape {rows.shape}")
    if rows.size == 0:
        raise InvalidRequest(f"{path}: has no rows to predict")
    if not np.issubdtype(rows.dtype, np.number) or not np.all(np.isfinite(rows)):
        raise InvalidRequest(f"{path}: every value must be a finite number")
    return rows


def endpoint_with_headers(endpoint: str, headers: tuple[str, ...], token_env: str | None) -> Endpoint:
    """The endpoint with --header values and the bearer token of --token-env (never on the command line)."""
    header_map = {}
    for header in headers:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise InvalidRequest(f"--header must be 'Name: value', got {name.strip()!r} without a colon")
        header_map[name.strip()] = value.strip()
    if token_env:
        token = os.environ.get(token_env, "")
        if not token:
            raise InvalidRequest(f"--token-env {token_env}: the environment variable is not set")
        header_map["Authorization"] = f"Bearer {token}"
    return Endpoint(endpoint, header_map)


@cli.command()
@click.option("--endpoint", required=True, help="Scoring URI of the service.")
@click.option("--model", "model", required=True, help="Model name in the service.")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False))
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
    plugins = _plugins()
    transport = Deployment.from_file(config, plugins=plugins).key_transport() if config else None
    client = Client(
        endpoint_with_headers(endpoint, headers, token_env),
        plugins=plugins,
        transport=transport,
        trust_service_transport=trust_service_transport,
        allow_insecure_http=allow_insecure_http,
    )
    rows = read_rows(Path(input_path))
    with tqdm(total=len(rows), unit="row", disable=len(rows) < 2, file=sys.stderr) as bar:
        result = client.predict(model, rows, progress=bar.update)
    if as_json:
        out = {"scores": result.scores.tolist(), "predictions": result.predictions.tolist()}
        if result.probabilities is not None:
            out["probabilities"] = result.probabilities.tolist()
        click.echo(json.dumps(out))
        return
    for i, (scores, label) in enumerate(zip(result.scores, result.predictions, strict=True)):
        shown = " ".join(f"{s:+.4f}" for s in scores)
        click.echo(f"{i}\tprediction={label}\tscores=[{shown}]")


@cli.command("bench")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Rows (.npy or .csv).")
@click.option("--out", type=click.Path(file_okay=False), default="bench/results", show_default=True)
@click.option("--repeats", default=20, show_default=True, help="Single-row predictions timed in process.")
@click.option("--e2e-requests", default=20, show_default=True, help="Requests timed through the config's deploy target (0: none).")
@click.option("--bulk-seconds", default=30.0, show_default=True, help="Server time budget per model for bulk scoring.")
@handle_errors
def bench(config: str, input_path: str, out: str, repeats: int, e2e_requests: int, bulk_seconds: float) -> None:
    """Measure every model of CONFIG side by side; writes bench.json and bench.png into OUT."""
    from .bench import format_table, run_bench

    figures = run_bench(
        _deployment(config), read_rows(Path(input_path)), out,
        repeats=repeats, e2e_requests=e2e_requests, bulk_budget_s=bulk_seconds,
    )  # fmt: skip
    click.echo(format_table(figures))
    click.echo(f"wrote {Path(out) / 'bench.json'} and {Path(out) / 'bench.png'}")


@cli.command("plugins")
@handle_errors
def list_plugins() -> None:
    """List every registered plugin, where it comes from and what it provides."""
    for info in _plugins().plugin_infos():
        source = f"{info.distribution} {info.version}" if info.distribution else "registered directly"
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.provides.items()) or "nothing"
        click.echo(f"{info.name}  ({source})  {provides}")


from .cli_batch import batch  # noqa: E402  (the `sei batch` group uses the helpers above)

cli.add_command(batch)


def main() -> None:
    cli(prog_name="sei")
