"""What both scikit-learn adapters share: options, the folded model file, and reading scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sei_framework import AdapterClient, InvalidRequest, ModelAdapter, PluginError, PluginOptions, Prediction, require_extra

from .linear import LinearModel, NotLinearError, fold
from .mlflow_model import check_columns, load_mlflow_model, signature_names

__all__ = ["COMMON_REQUIREMENTS", "SklearnOptions", "LinearAdapter", "LinearClient", "prepare_linear", "load_linear", "readout"]

COMMON_REQUIREMENTS = ("scikit-learn", "joblib")
"""What a service of either adapter needs besides its backend (each adapter adds its own)."""

LINEAR_FILE = "linear.json"
MAX_DESCRIBED_SIZE = 1 << 20
"""The most features or outputs a client believes a service describes (memory for the readout)."""


class SklearnOptions(PluginOptions):
    trusted_types: list[str] = []
    """Exact `module.name`s to load beyond the allow-list (model_files.allowed_types), in any model file."""


def readout(model: LinearModel) -> dict[str, Any]:
    """What a client needs to read scores: everything but the weights."""
    data = model.to_dict()
    data.pop("coef")
    data.pop("intercept")
    return data


def from_readout(description: dict[str, Any]) -> LinearModel:
    """A weightless LinearModel that reads scores like the served one (the client never gets weights)."""
    try:
        shape = (description["n_outputs"], description["n_features"])
        if not all(type(n) is int and 1 <= n <= MAX_DESCRIBED_SIZE for n in shape):
            raise ValueError(f"n_outputs and n_features must be whole numbers from 1 to {MAX_DESCRIBED_SIZE}")
        return LinearModel.from_dict({**description["readout"], "coef": np.zeros(shape), "intercept": np.zeros(shape[0])})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a service we cannot read
        raise InvalidRequest(
            f"the service's description of the model cannot be read: {type(exc).__name__}: {exc}",
            code="invalid_response",
        ) from None


def model_feature_names(estimator: Any, signature: dict[str, Any] | None, n_features: int) -> list[str] | None:
    """The feature names a client selects columns by: the MLflow signature's columns, else the
    `feature_names_in_` scikit-learn kept from a DataFrame the model was fitted on (None: neither)."""
    from_signature = signature_names(signature)
    fitted = getattr(estimator, "feature_names_in_", None)
    from_fit = [str(name) for name in fitted] if fitted is not None else None
    if from_signature is not None and from_fit is not None and from_signature != from_fit:
        raise PluginError(
            "the MLflow signature's columns are not the ones the model was fitted on (feature_names_in_): "
            "save it with a signature inferred from the training DataFrame"
        )
    names = from_signature or from_fit
    if names is not None and (len(names) != n_features or len(set(names)) != len(names)):
        raise PluginError(f"the model names {len(names)} features ({len(set(names))} distinct); it takes {n_features}")
    return names


def prepare_linear(source: Path, options: SklearnOptions, dest: Path) -> tuple[LinearModel, dict[str, Any]]:
    """Load and fold a model file or MLflow model folder into `dest/linear.json`; a non-linear model is
    refused by name, and an MLflow signature whose column count is not the model's features too. The
    model's feature names (signature or `feature_names_in_`) survive the fold in the metadata."""
    require_extra("sklearn", "building a model with the scikit-learn adapters", PluginError)
    from .model_files import ModelFileError, load_model  # scikit-learn and joblib: build time only

    signature = None
    try:
        if Path(source).is_dir():
            estimator, signature = load_mlflow_model(source, trusted_types=options.trusted_types or None)
        else:
            estimator = load_model(source, trusted_types=options.trusted_types or None)
        model = fold(estimator)
        if signature is not None:
            check_columns(signature, model.n_features, source)
    except (NotLinearError, ModelFileError) as exc:
        raise PluginError(str(exc)) from None
    (dest / LINEAR_FILE).write_text(json.dumps(model.to_dict()))
    metadata = {"estimator": model.estimator, "n_features": model.n_features, "n_outputs": model.n_outputs}
    if signature is not None:
        metadata["signature"] = signature
    names = model_feature_names(estimator, signature, model.n_features)
    if names is not None:
        metadata["feature_names"] = names
    return model, metadata


def load_linear(model_dir: Path) -> LinearModel:
    return LinearModel.from_dict(json.loads((model_dir / LINEAR_FILE).read_text()))


class LinearAdapter(ModelAdapter):
    """Base of the adapters that serve a folded linear model."""

    def __init__(self, model_dir: Path, metadata: dict[str, Any], options: PluginOptions) -> None:
        super().__init__(model_dir, metadata, options)
        self.model = load_linear(model_dir)

    def model_description(self) -> dict[str, Any]:
        """The describe() fields every linear adapter shares (no weights); `feature_names`, the columns a
        client selects by name (a build older than them: its signature's names)."""
        names = self.metadata.get("feature_names") or signature_names(self.metadata.get("signature"))
        return {
            **({"feature_names": names} if names else {}),
            "n_features": self.model.n_features,
            "n_outputs": self.model.n_outputs,
            "estimator": self.model.estimator,
            "readout": readout(self.model),
            **({"signature": self.metadata["signature"]} if self.metadata.get("signature") else {}),
        }

    def reference_scores(self, X: np.ndarray) -> np.ndarray:
        return self.model.scores(X)


class LinearClient(AdapterClient):
    """Base of the client halves: reads scores as the estimator's predict/predict_proba would."""

    def __init__(self, description: dict[str, Any]) -> None:
        super().__init__(description)
        self.model = from_readout(description)

    def interpret(self, scores: np.ndarray) -> Prediction:
        return Prediction(scores, self.model.predict(scores), self.model.predict_proba(scores))
