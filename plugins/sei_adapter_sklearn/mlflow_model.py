"""MLflow model folders (the `sklearn` flavour), read with MLflow's own loader, and their input signature.

MLflow is needed at build time only (`pip install 'sei-framework[mlflow]'`: mlflow-skinny and
pandas): the build folds the model into linear.json like any other model file. The folder's model
is a pickle (`pickle`/`cloudpickle`: it runs code when loaded, so only load folders from people you
trust) or a skops file, which SEI checks with the same trust rules as a `.skops` file, not with
the `skops_trusted_types` the folder's own MLmodel lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model_files import ModelFileError, _load_logging_versions, refused_types

__all__ = ["MLMODEL", "load_mlflow_model", "signature_columns", "signature_names", "check_columns"]

MLMODEL = "MLmodel"
FLAVOR = "sklearn"
INSTALL_HINT = "pip install 'sei-framework[mlflow]' (mlflow-skinny, pandas)"


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
        import mlflow.sklearn
        from mlflow.models import Model
    except ImportError as exc:
        raise ModelFileError(f"MLflow model {path} needs MLflow to be read: {INSTALL_HINT} ({exc})") from None
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
    _check_skops_types(path, meta.flavors[FLAVOR], trusted_types or [])
    try:
        model = _load_logging_versions(path, lambda: mlflow.sklearn.load_model(str(path)))
    except Exception as exc:
        raise ModelFileError(f"MLflow model {path} could not be loaded: {type(exc).__name__}: {exc}") from None
    signature = None
    if meta.signature is not None and meta.signature.inputs is not None:
        signature = {"inputs": meta.signature.inputs.to_dict()}
    return model, signature


def _check_skops_types(path: Path, flavor: dict[str, Any], trusted_types: list[str]) -> None:
    """A skops-format model: refuse types that neither SEI nor the config trusts (whatever MLmodel says)."""
    if flavor.get("serialization_format") != "skops":
        return
    import skops.io as sio

    file = path / str(flavor.get("pickled_model", "model.skops"))
    try:
        untrusted = sio.get_untrusted_types(file=file)
    except Exception as exc:
        raise ModelFileError(f"MLflow model {path}: {file.name} is not a valid skops file: {type(exc).__name__}: {exc}") from None
    refused = refused_types(untrusted, trusted_types)
    if refused:
        raise ModelFileError(
            f"MLflow model {path} contains untrusted types: {', '.join(refused)}; list them in the adapter's "
            "trusted_types only if you trust whoever made the model"
        )


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


def differences(expected: list[str], given: list[str]) -> str:
    """What differs between the signature's columns and a DataFrame's, in a few words."""
    missing = [name for name in expected if name not in given]
    extra = [name for name in given if name not in expected]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else ""))
    if extra:
        parts.append("unexpected " + ", ".join(map(repr, extra[:5])) + (" ..." if len(extra) > 5 else ""))
    if not parts:
        parts.append("the same columns in another order (expected " + ", ".join(map(repr, expected[:8]))
                     + (" ..." if len(expected) > 8 else "") + ")")
    return "; ".join(parts)
