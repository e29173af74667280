"""MLflow model folders (the `sklearn` flavour): their model, read through the allow-list, and their input signature.

MLflow is needed at build time only (the `mlflow` extra: mlflow-skinny and
pandas): the build folds the model into linear.json like any other model file. The folder's model
is a pickle (`pickle`/`cloudpickle`) or a skops file; SEI reads it itself, through the same allow-list
as a model file (model_files.allowed_types plus the adapter's trusted_types), never through the
`skops_trusted_types` the folder's own MLmodel lists, and never adds the folder's code paths to
sys.path. scikit-learn is imported only to load a model, so a client reads signatures without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sei_framework import ModelFileError, install_hint

__all__ = ["MLMODEL", "load_mlflow_model", "signature_columns", "signature_names", "check_columns"]

MLMODEL = "MLmodel"
FLAVOR = "sklearn"
INSTALL_HINT = "MLflow is in the `mlflow` extra of sei-framework: " + install_hint("mlflow")


def load_mlflow_model(path: Path, *, trusted_types: list[str] | None = None) -> tuple[object, dict[str, Any] | None]:
    """The estimator of the MLflow model folder `path` and its signature (`{"inputs": [...]}`, MLflow's
    own JSON form), or None without one. A folder that is not an MLflow model, or has no sklearn
    flavour, is refused by name."""
    path = Path(path)
    if not (path / MLMODEL).is_file():
        raise ModelFileError(
            f"model path {path} is a folder but not an MLflow model (it has no {MLMODEL} file); give a model "
            "file (.joblib, .pkl, .pickle, .skops) or a folder written by mlflow.sklearn.save_model"
        )
    try:
        from mlflow.models import Model
    except ImportError as exc:
        raise ModelFileError(f"MLflow model {path} needs MLflow to be read ({exc}); {INSTALL_HINT}") from None
    try:
        meta = Model.load(str(path))
    except Exception as exc:  # YAML errors, a bad signature, ...
        raise ModelFileError(f"{path / MLMODEL} cannot be read: {type(exc).__name__}: {exc}") from None
    if FLAVOR not in meta.flavors:
        flavors = ", ".join(sorted(meta.flavors)) or "none"
        raise ModelFileError(
            f"MLflow model {path} has no {FLAVOR!r} flavour (its flavours: {flavors}); SEI serves scikit-learn "
            "models saved with mlflow.sklearn.save_model or log_model"
        )
    flavor = meta.flavors[FLAVOR]
    from .model_files import load_model_file  # scikit-learn: a build's, never a client's

    model = load_model_file(_model_file(path, flavor), _format(path, flavor), trusted_types or [])
    signature = None
    if meta.signature is not None and meta.signature.inputs is not None:
        signature = {"inputs": meta.signature.inputs.to_dict()}
    return model, signature


def _format(path: Path, flavor: dict[str, Any]) -> str:
    """The loader for the flavour's serialization format: cloudpickle writes plain pickles for
    scikit-learn models (anything it pickled by value names cloudpickle's functions, which are refused)."""
    chosen = flavor.get("serialization_format", "pickle")
    if chosen not in ("pickle", "cloudpickle", "skops"):
        raise ModelFileError(
            f"MLflow model {path} has serialization format {chosen!r}; SEI reads pickle, cloudpickle, skops"
        )
    return "skops" if chosen == "skops" else "pickle"


def _model_file(path: Path, flavor: dict[str, Any]) -> Path:
    """The flavour's model file, which must be a file inside the folder."""
    name = flavor.get("pickled_model")
    file = (path / str(name)).resolve() if isinstance(name, str) and name else None
    if file is None or not file.is_relative_to(path.resolve()) or not file.is_file():
        raise ModelFileError(
            f"MLflow model {path}: its {FLAVOR} flavour names no model file inside the folder ({name!r})"
        )
    return file


def _inputs(signature: Any) -> list[dict[str, Any]] | None:
    inputs = signature.get("inputs") if isinstance(signature, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(item, dict) for item in inputs):
        return None
    return inputs


def signature_columns(signature: Any) -> int | None:
    """Columns the signature's inputs take: its column count, or a 2-D tensor's last dimension. None
    when it does not say (a tensor whose last dimension is -1)."""
    inputs = _inputs(signature)
    if not inputs:
        return None
    if all(item.get("type") != "tensor" for item in inputs):
        return len(inputs)
    if len(inputs) != 1:
        raise ModelFileError(f"the signature has {len(inputs)} inputs with tensors; a scikit-learn model takes one")
    shape = list((inputs[0].get("tensor-spec") or {}).get("shape") or [])
    if len(shape) == 1:  # one value per row
        return 1
    if len(shape) != 2:
        raise ModelFileError(f"the signature's input tensor has shape {tuple(shape)}; a scikit-learn model takes rows")
    return None if shape[1] == -1 else int(shape[1])


def signature_names(signature: Any) -> list[str] | None:
    """The column names of a column-based signature, in order; None for a tensor signature or none."""
    inputs = _inputs(signature)
    if not inputs or any(item.get("type") == "tensor" or not isinstance(item.get("name"), str) for item in inputs):
        return None
    return [item["name"] for item in inputs]


def check_columns(signature: Any, n_features: int, path: Path) -> None:
    """Build time: the signature's column count must be the folded model's feature count."""
    columns = signature_columns(signature)
    if columns is not None and columns != n_features:
        raise ModelFileError(
            f"MLflow model {path}: its signature takes {columns} input columns but the model takes "
            f"{n_features} features; save it with a signature inferred from the training rows "
            "(mlflow.models.infer_signature)"
        )
