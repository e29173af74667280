"""One way to say what a pydantic validation error found: each bad field by its path, never its value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

__all__ = ["field_path", "validation_problems"]


def field_path(loc: Iterable[Any], prefix: str = "") -> str:
    """A pydantic error location as a path: `models[0].options.alpha`, after `prefix`; `<top>` when empty."""
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "<top>"


def validation_problems(error: ValidationError, prefix: str = "", *, limit: int | None = None) -> list[str]:
    """`path: what is wrong` for each problem of `error` (the first `limit`); the input is never shown."""
    found = error.errors(include_input=False, include_url=False)
    return [f"{field_path(e['loc'], prefix)}: {e['msg']}" for e in found[:limit]]
