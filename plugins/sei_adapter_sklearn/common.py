"""What both scikit-learn adapters share: options, the folded model file, and reading scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sei_framework import AdapterClient, InvalidRequest, ModelAdapter, PluginError, PluginOptions, Prediction, require_extra

from .linear import LinearModel, NotLinearError, fold
from .mlflow_model import check_columns, differences, load_mlflow_model, signature_names

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


def prepare_linear(source: Path, options: SklearnOptions, dest: Path) -> tuple[LinearModel, dict[str, Any]]:
    """Load and fold a model file or MLflow model folder into `dest/linear.json`; a non-linear model is
    refused by name, and an MLflow signature whose column count is not the model's features too."""
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
    return model, metadata


def load_linear(model_dir: Path) -> LinearModel:
    return LinearModel.from_dict(json.loads((model_dir / LINEAR_FILE).read_text()))


class LinearAdapter(ModelAdapter):
    """Base of the adapters that serve a folded linear model."""

    def __init__(self, model_dir: Path, metadata: dict[str, Any], options: PluginOptions) -> None:
        super().__init__(model_dir, metadata, options)
        self.model = load_linear(model_dir)

    def model_description(self) -> dict[str, Any]:
        """The describe() fields every linear adapter shares (no weights)."""
        return {
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

    def check_input(self, X: Any) -> None:
        """A pandas DataFrame sent to a model with a column-based MLflow signature must have its
        columns, in its order (an array is checked by its feature count only)."""
        expected = signature_names(self.description.get("signature"))
        columns = getattr(X, "columns", None)
        if expected is None or columns is None:
            return
        given = [str(name) for name in columns]
        if given != expected:
            raise InvalidRequest(
                f"the DataFrame's columns are not the {len(expected)} of the model's MLflow signature "
                f"(describe(): signature): {differences(expected, given)}",
                code="wrong_features",
            )

    def interpret(self, scores: np.ndarray) -> Prediction:
        return Prediction(scores, self.model.predict(scores), self.model.predict_proba(scores))
