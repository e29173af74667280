"""One rule for relative paths in a config: they resolve from the config file's folder.

Plugin `Options` declare path fields as `ConfigPath`. `resolve_config` validates options with a
validation context that carries the config's folder; a relative path is taken from there, an
absolute or `~` path as it is. Without that context (options built in code) a relative path is
taken from the working folder. Either way the result is absolute, so the build's resolved config
means the same to a service that runs elsewhere. Symlinks are kept, not followed (a venv's
`bin/python` must stay the venv's).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo

__all__ = ["CONFIG_DIR", "ConfigPath", "config_context", "resolve_path"]

CONFIG_DIR = "sei_config_dir"
"""The validation-context key holding the folder relative paths resolve from."""


def resolve_path(path: Path, base: Path | None = None) -> Path:
    """`path` made absolute: `~` expanded, a relative path joined to `base` (default: the working folder)."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        path = Path(base if base is not None else Path.cwd()).expanduser().absolute() / path
    return Path(os.path.normpath(path))


def config_context(base: Path | None) -> dict[str, Any] | None:
    """The validation context under which `ConfigPath` fields resolve from `base`."""
    return None if base is None else {CONFIG_DIR: Path(base)}


def _resolve(value: Path, info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get(CONFIG_DIR)
    return resolve_path(value, Path(base) if base is not None else None)


ConfigPath = Annotated[Path, AfterValidator(_resolve)]
"""A path option: relative to the config file's folder (see the module docstring), always absolute."""
