"""The optional extras of sei-framework, the modules that show each is installed, and the error that
names a missing one (instead of a bare ModuleNotFoundError or a server that exits while starting)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from .errors import SeiError

__all__ = ["EXTRAS", "install_hint", "missing_modules", "require_extra"]

EXTRAS: dict[str, dict[str, str]] = {
    "sklearn": {
        "scikit-learn": "sklearn",
        "joblib": "joblib",
        "encrypted-inference": "encrypted.inference",
        "skops": "skops",
        "seal-python": "seal",
    },
    "client": {"encrypted-inference": "encrypted.inference", "seal-python": "seal", "scipy": "scipy",
               "cryptography": "cryptography"},
    "serve": {"azureml-inference-server-http": "azureml_inference_server_http", "gevent": "gevent", "gunicorn": "gunicorn"},
    "batch": {"distributed": "distributed", "pyarrow": "pyarrow", "fsspec": "fsspec", "cryptography": "cryptography"},
    "batch-azure": {"adlfs": "adlfs"},
    "azure-blob": {"azure-storage-blob": "azure.storage.blob", "azure-identity": "azure.identity"},
    "aci": {"azureml-core": "azureml.core"},
    "azureml-online": {"azure-ai-ml": "azure.ai.ml", "azure-identity": "azure.identity"},
    "redis": {"redis": "redis"},
    "mlflow": {"mlflow-skinny": "mlflow", "pandas": "pandas"},
    "bench": {"matplotlib": "matplotlib"},
    "trees": {"treelite": "treelite", "cryptography": "cryptography"},
}
"""Each extra of pyproject.toml (but `test` and the `azure` bundle): its distributions and their import names."""

# Printed by another interpreter: the modules of argv it cannot find, as a JSON list.
_PROBE = (
    "import importlib.util, json, sys\n"
    "def found(name):\n"
    "    try:\n"
    "        return importlib.util.find_spec(name) is not None\n"
    "    except (ImportError, ValueError):\n"
    "        return False\n"
    "print(json.dumps([name for name in sys.argv[1:] if not found(name)]))\n"
)


def _found(module: str) -> bool:
    try:  # a dotted name imports its parents; a module set to None in sys.modules counts as absent
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(modules: Iterable[str], python: str | Path | None = None) -> list[str]:
    """The modules that cannot be imported here, or by the interpreter `python` when given."""
    modules = list(modules)
    if python is None:
        return [module for module in modules if not _found(module)]
    try:
        done = subprocess.run(
            [str(python), "-c", _PROBE, *modules], capture_output=True, text=True, timeout=60, check=True
        )
        return list(json.loads(done.stdout))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SeiError(f"cannot run the interpreter {python}: {type(exc).__name__}", code="missing_extra") from None


def install_hint(extra: str) -> str:
    """How to add `extra` to this installation: from a clone or from the wheel (docs/install.md)."""
    try:
        version = metadata.version("sei-framework")
    except metadata.PackageNotFoundError:
        version = "<version>"
    return (
        f"pip install -e '.[{extra}]' in a clone of SEI, or pip install "
        f"'sei_framework-{version}-py3-none-any.whl[{extra}]' from `make dist` (docs/install.md)"
    )


def require_extra(
    extra: str,
    what: str,
    error: type[SeiError] = SeiError,
    python: str | Path | None = None,
    modules: Iterable[str] | None = None,
) -> None:
    """Raise `error` naming `extra` when any of its modules (or of `modules`, the ones `what` cannot
    do without) is missing, for the interpreter `python` or else here."""
    missing = missing_modules(EXTRAS[extra].values() if modules is None else modules, python)
    if missing:
        where = f" to {python}" if python is not None else ""
        raise error(
            f"{what} needs the `{extra}` extra of sei-framework (not importable: {', '.join(missing)}); "
            f"add it{where}: {install_hint(extra)}",
            code="missing_extra",
        )
