"""Load scikit-learn model files (joblib, pickle, skops) with clear errors and version warnings."""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import joblib
from sklearn.exceptions import InconsistentVersionWarning

__all__ = ["MODEL_SUFFIXES", "ModelFileError", "load_model", "refused_types"]

logger = logging.getLogger("sei_adapter_sklearn")

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIX = ".skops"
MODEL_SUFFIXES = (*PICKLE_SUFFIXES, SKOPS_SUFFIX)
# Untrusted types from these libraries are accepted by default in .skops files.
_LIBRARY_PREFIXES = ("sklearn.", "numpy.")
_reported: set[tuple[str, str]] = set()  # (file, version) mismatches already logged by this process


class ModelFileError(ValueError):
    """A model file that is missing, of an unknown kind, corrupt, or holds untrusted types."""


def load_model(path: Path | str, *, trusted_types: list[str] | None = None) -> object:
    """Load the model stored at `path`, choosing the loader from the file extension.

    .joblib/.pkl/.pickle files are pickles: a pickle runs code when it is loaded, so only
    load files from people you trust. .skops files are loaded without running code; classes of
    scikit-learn and numpy are trusted, anything else (functions included) must be listed in
    `trusted_types` to be loaded.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"model file {path} is not a regular file")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return _load_logging_versions(path, lambda: _load_pickle(path))
    if suffix == SKOPS_SUFFIX:
        return _load_logging_versions(path, lambda: _load_skops(path, trusted_types or []))
    raise ModelFileError(
        f"model file {path} has unknown extension {suffix or '(none)'!r}; expected one of {', '.join(MODEL_SUFFIXES)}"
    )


def _load_pickle(path: Path) -> object:
    """joblib.load reads joblib dumps and plain pickles alike."""
    try:
        return joblib.load(path)
    except Exception as exc:  # unpickling can raise nearly anything on a bad file
        raise ModelFileError(f"model file {path} could not be unpickled: {type(exc).__name__}: {exc}") from exc


def _load_skops(path: Path, trusted_types: Iterable[str]) -> object:
    """Load a skops file, trusting reported scikit-learn/numpy types and `trusted_types` only."""
    try:
        import skops.io as sio
    except ImportError:
        raise ModelFileError(f"model file {path} needs the 'skops' package: pip install skops") from None
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a bad zip or schema surfaces as many exception types
        raise ModelFileError(f"model file {path} is not a valid skops file: {type(exc).__name__}: {exc}") from exc
    refused = refused_types(untrusted, trusted_types)
    if refused:
        raise ModelFileError(
            f"model file {path} contains untrusted types: {', '.join(refused)}; "
            "pass them in trusted_types only if you trust whoever made the file"
        )
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise ModelFileError(f"model file {path} could not be loaded: {type(exc).__name__}: {exc}") from exc


def refused_types(untrusted: Iterable[str], trusted_types: Iterable[str]) -> list[str]:
    """The types skops reports as untrusted that are neither scikit-learn/numpy classes nor in `trusted_types`."""
    allowed = set(trusted_types)
    return sorted(t for t in untrusted if t not in allowed and not _is_library_class(t))


def _is_library_class(name: str) -> bool:
    """A class (not a function such as numpy.load) defined in scikit-learn or numpy."""
    if not name.startswith(_LIBRARY_PREFIXES):
        return False
    module, _, attribute = name.rpartition(".")
    try:
        return isinstance(getattr(importlib.import_module(module), attribute), type)
    except (ImportError, AttributeError, ValueError):
        return False


def _load_logging_versions(path: Path, load: Callable[[], Any]) -> Any:
    """Run `load`, turning scikit-learn version-mismatch warnings into one log line per file and process."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        model = load()
    mismatches = [w.message for w in caught if isinstance(w.message, InconsistentVersionWarning)]
    for other in caught:
        if not isinstance(other.message, InconsistentVersionWarning):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    first = mismatches[0] if mismatches else None
    if first is not None and (str(path), first.original_sklearn_version) not in _reported:
        _reported.add((str(path), first.original_sklearn_version))
        logger.warning(
            "model file %s was saved by scikit-learn %s and is loaded by %s; check its predictions",
            path,
            first.original_sklearn_version,
            first.current_sklearn_version,
        )
    return model
