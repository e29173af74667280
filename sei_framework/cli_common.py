"""What the `sei` command and its `sei batch` group share: plugin loading, the error edge, endpoints."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .base import Endpoint
from .errors import ConfigError, InvalidRequest, SeiError
from .plugins import SeiPlugins, get_plugin_manager

__all__ = ["EXIT_CODES", "csv_header_option", "endpoint_with_headers", "handle_errors", "load_plugins"]

EXIT_CODES: dict[type[SeiError], int] = {ConfigError: 2, InvalidRequest: 3}

F = TypeVar("F", bound=Callable[..., Any])

csv_header_option = click.option(
    "--csv-header/--no-csv-header", "csv_header", default=None,
    help="Whether a CSV input's first line names the columns (default: it must, and a first line holding a number is refused until you say).",
)  # fmt: skip
"""The CSV header rule of sei_framework.rows, for every command that reads rows."""


def load_plugins() -> SeiPlugins:
    """Load every plugin; a broken one is a warning here (it is fatal only in a service)."""
    plugins = get_plugin_manager().collect()
    for error in plugins.load_errors:
        click.secho(f"warning: {error.message}", fg="yellow", err=True)
    return plugins


def handle_errors(command: F) -> F:
    """A SeiError becomes one red line on stderr and the exit code of its kind (1 by default)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SeiError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            code = next((c for t, c in EXIT_CODES.items() if isinstance(exc, t)), 1)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


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
